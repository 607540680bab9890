//! The library's one error type. Every failure carries what was being done,
//! which file it concerns and why, so the binary can print the single
//! `error: <what> (<file>): <why>` line CLI.md promises.

use std::fmt;

/// What kind of failure this is; lets callers (and tests) branch without
/// matching on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file or stream could not be read or written.
    Io,
    /// Input was read but is not what was expected (bad PEM/DER, wrong kind).
    Parse,
    /// An OpenSSL-style config or profile line is wrong.
    Config,
    /// An output exists and `--force` was not given.
    Exists,
    /// A passphrase is missing or wrong.
    Passphrase,
    /// The inputs are well-formed but the operation is refused
    /// (CSR signature bad, CA key mismatch, CA expired, ...).
    Refused,
    /// A cryptographic primitive failed.
    Crypto,
    /// A registry (database) operation failed.
    Registry,
    /// A PKCS#11 module, token or token key failed or was not found.
    Token,
    /// What was asked for (a device serial) is not registered.
    NotFound,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    /// What was being done or read, e.g. "cannot read private key".
    pub what: String,
    /// The file (optionally `file:line`) the error concerns.
    pub file: Option<String>,
    /// Why it failed, in the user's terms.
    pub why: String,
    /// An optional next step for the user.
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, what: impl Into<String>, why: impl Into<String>) -> Self {
        Error {
            kind,
            what: what.into(),
            file: None,
            why: why.into(),
            hint: None,
        }
    }

    /// Attach the file the error is about (kept if one is already set).
    pub fn file(mut self, file: impl Into<String>) -> Self {
        if self.file.is_none() {
            self.file = Some(file.into());
        }
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn io(what: impl Into<String>, file: impl Into<String>, err: &std::io::Error) -> Self {
        Error::new(ErrorKind::Io, what, io_reason(err)).file(file)
    }

    pub fn parse(what: impl Into<String>, why: impl Into<String>) -> Self {
        Error::new(ErrorKind::Parse, what, why)
    }

    pub fn config(file: &str, line: usize, why: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, "invalid config", why).file(format!("{file}:{line}"))
    }

    pub fn refused(what: impl Into<String>, why: impl Into<String>) -> Self {
        Error::new(ErrorKind::Refused, what, why)
    }

    pub fn crypto(what: impl Into<String>, why: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Crypto, what, why.to_string())
    }
}

/// io::Error's Display adds "(os error 2)"; users want the plain reason.
fn io_reason(err: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match err.kind() {
        K::NotFound => "no such file or directory".into(),
        K::PermissionDenied => "permission denied".into(),
        K::AlreadyExists => "file exists".into(),
        K::IsADirectory => "is a directory".into(),
        K::StorageFull => "no space left on device".into(),
        _ => {
            let s = err.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.what)?;
        if let Some(file) = &self.file {
            write!(f, " ({file})")?;
        }
        write!(f, ": {}", self.why)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_and_reason() {
        let e = Error::parse("cannot read certificate", "not PEM or DER").file("ca.crt");
        assert_eq!(
            e.to_string(),
            "cannot read certificate (ca.crt): not PEM or DER"
        );
    }

    #[test]
    fn io_reason_drops_os_error_suffix() {
        let err = std::io::Error::from_raw_os_error(28);
        let e = Error::io("cannot write", "x", &err);
        assert!(!e.why.contains("os error"), "{}", e.why);
    }
}
