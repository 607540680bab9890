//! Where passphrases come from. Never the command line (it ends up in
//! shell history and `ps`); a file, an environment variable, or a prompt,
//! and a prompt only when stdin is a terminal, so CI never hangs.

use std::io::{IsTerminal, Read};
use std::sync::RwLock;

use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, Default)]
pub enum PassphraseSource {
    File(String),
    Env(String),
    /// No source given: prompt if stdin is a terminal, else fail.
    #[default]
    Prompt,
}

impl PassphraseSource {
    pub fn from_options(file: Option<&str>, env: Option<&str>) -> PassphraseSource {
        match (file, env) {
            (Some(f), _) => PassphraseSource::File(f.to_string()),
            (None, Some(v)) => PassphraseSource::Env(v.to_string()),
            (None, None) => PassphraseSource::Prompt,
        }
    }

    /// Reads the passphrase; `purpose` says what it is for ("private key
    /// client.key") in the prompt and errors.
    pub fn read(&self, purpose: &str, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
        let pass = match self {
            PassphraseSource::File(path) => {
                let raw = read_secret_file(path, "cannot read passphrase file")?;
                Zeroizing::new(strip_one_newline(&raw).to_vec())
            }
            PassphraseSource::Env(var) => {
                let v = std::env::var_os(var).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Passphrase,
                        "no passphrase",
                        format!("environment variable {var} is not set"),
                    )
                    .file(format!("${var}"))
                })?;
                Zeroizing::new(v.into_encoded_bytes())
            }
            PassphraseSource::Prompt => {
                if !std::io::stdin().is_terminal() {
                    return Err(Error::new(
                        ErrorKind::Passphrase,
                        "no passphrase",
                        format!("{purpose} needs a passphrase and stdin is not a terminal"),
                    )
                    .hint("give --passphrase-file FILE or --passphrase-env VAR"));
                }
                let first = Zeroizing::new(
                    rpassword::prompt_password(format!("Passphrase for {purpose}: "))
                        .map_err(|e| Error::io("cannot read passphrase", "<tty>", &e))?,
                );
                if confirm {
                    let again = Zeroizing::new(
                        rpassword::prompt_password("Repeat passphrase: ")
                            .map_err(|e| Error::io("cannot read passphrase", "<tty>", &e))?,
                    );
                    if *first != *again {
                        return Err(Error::new(
                            ErrorKind::Passphrase,
                            "no passphrase",
                            "the two passphrases differ",
                        ));
                    }
                }
                Zeroizing::new(first.as_bytes().to_vec())
            }
        };
        if pass.is_empty() {
            let e = Error::new(
                ErrorKind::Passphrase,
                "no passphrase",
                format!("empty passphrase for {purpose}"),
            );
            return Err(match self {
                PassphraseSource::File(path) => e.file(path),
                PassphraseSource::Env(var) => e.file(format!("${var}")),
                // The caller names the key the passphrase is for.
                PassphraseSource::Prompt => e,
            });
        }
        Ok(pass)
    }
}

/// A passphrase longer than this is refused; `--passphrase-file
/// /dev/zero` must not read gigabytes first. (OpenSSL reads at most 1 KiB.)
pub const MAX_PASSPHRASE_BYTES: u64 = 64 * 1024;

/// Environment variables that hold secrets: a config's `$ENV::` may not
/// copy them (into an error message, or into a certificate).
static PROTECTED_ENV_VARS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Variables that always hold secrets, whatever the command line says.
const ALWAYS_PROTECTED: &[&str] = &[crate::pkcs11::PIN_ENV];

/// Marks `var` (given to `--passphrase-env`) as holding a secret.
pub fn protect_env_var(var: &str) {
    if let Ok(mut vars) = PROTECTED_ENV_VARS.write() {
        vars.push(var.to_string());
    }
}

/// Whether `var` holds a secret (see [`protect_env_var`]).
pub fn is_protected_env_var(var: &str) -> bool {
    ALWAYS_PROTECTED.contains(&var)
        || PROTECTED_ENV_VARS
            .read()
            .map_or(true, |vars| vars.iter().any(|v| v == var))
}

/// Reads a passphrase (or PIN) file, at most [`MAX_PASSPHRASE_BYTES`];
/// `what` heads the error ("cannot read passphrase file").
pub fn read_secret_file(path: &str, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(what, path, &e))?;
    let mut raw = Zeroizing::new(Vec::new());
    file.take(MAX_PASSPHRASE_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Error::io(what, path, &e))?;
    if raw.len() as u64 > MAX_PASSPHRASE_BYTES {
        return Err(Error::new(
            ErrorKind::Passphrase,
            what,
            format!("longer than {} KiB", MAX_PASSPHRASE_BYTES >> 10),
        )
        .file(path));
    }
    Ok(raw)
}

/// OpenSSL's `file:` strips one trailing newline; so do we.
pub(crate) fn strip_one_newline(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\r\n")
        .or_else(|| b.strip_suffix(b"\n"))
        .unwrap_or(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_exactly_one_newline() {
        assert_eq!(strip_one_newline(b"pw\r\n"), b"pw");
        assert_eq!(strip_one_newline(b"pw\n\n"), b"pw\n");
        assert_eq!(strip_one_newline(b"pw"), b"pw");
    }
}
