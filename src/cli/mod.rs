//! Command-line definitions: one file per command, each with its clap
//! arguments and a short `run` that calls into the library and prints.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use devcert::digest::Digest;
use devcert::error::{Error, Result};
use devcert::input::{Input, load_certificate};
use devcert::keys::PrivateKey;
use devcert::passphrase::PassphraseSource;
use devcert::sign::CaSigner;

mod batch;
mod ca;
mod chain;
mod csr;
mod issue;
mod key;
mod pkcs8;
mod sign;
mod subject;
mod verify;

#[derive(Parser)]
#[command(
    name = "devcert",
    version,
    about = "Issue and manage X.509 device certificates for MQTT/IoT fleets"
)]
#[command(propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Key(key::KeyArgs),
    Csr(csr::CsrArgs),
    Sign(sign::SignArgs),
    Pkcs8(pkcs8::Pkcs8Args),
    Chain(chain::ChainArgs),
    Ca(ca::CaArgs),
    Issue(issue::IssueArgs),
    Batch(batch::BatchArgs),
    Verify(verify::VerifyArgs),
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Key(a) => key::run(a).map(|()| ExitCode::SUCCESS),
        Command::Csr(a) => csr::run(a).map(|()| ExitCode::SUCCESS),
        Command::Sign(a) => sign::run(a).map(|()| ExitCode::SUCCESS),
        Command::Pkcs8(a) => pkcs8::run(a).map(|()| ExitCode::SUCCESS),
        Command::Chain(a) => chain::run(a).map(|()| ExitCode::SUCCESS),
        Command::Ca(a) => ca::run(a).map(|()| ExitCode::SUCCESS),
        Command::Issue(a) => issue::run(a).map(|()| ExitCode::SUCCESS),
        Command::Batch(a) => batch::run(a).map(|()| ExitCode::SUCCESS),
        Command::Verify(a) => verify::run(a),
    }
}

pub fn report_error(e: &Error) {
    eprintln!("error: {e}");
    if let Some(h) = &e.hint {
        eprintln!("hint: {h}");
    }
}

pub fn warn_all(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// `-o/--out` and `--force`, shared by every command that writes one file.
#[derive(Args, Clone)]
pub struct OutArgs {
    /// Output file (`-` or absent: standard output)
    #[arg(short = 'o', long = "out", value_name = "PATH", default_value = "-")]
    pub out: String,
    /// Replace an existing output file
    #[arg(long)]
    pub force: bool,
}

/// Where the passphrase of an encrypted input key comes from.
#[derive(Args, Clone, Default)]
pub struct PassArgs {
    /// Read the passphrase from this file (one trailing newline is stripped)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<String>,
    /// Read the passphrase from this environment variable
    #[arg(long, value_name = "VAR", conflicts_with = "passphrase_file")]
    pub passphrase_env: Option<String>,
}

impl PassArgs {
    pub fn source(&self) -> PassphraseSource {
        PassphraseSource::from_options(
            self.passphrase_file.as_deref(),
            self.passphrase_env.as_deref(),
        )
    }
}

/// Where the passphrase for an encrypted output key comes from; falls back
/// to the input passphrase options.
#[derive(Args, Clone, Default)]
pub struct OutPassArgs {
    /// Encrypt the written private key (PBES2, PBKDF2-SHA256, AES-256-CBC)
    #[arg(long)]
    pub encrypt: bool,
    /// Passphrase file for the written key (default: --passphrase-file)
    #[arg(long, value_name = "FILE")]
    pub out_passphrase_file: Option<String>,
    /// Passphrase variable for the written key (default: --passphrase-env)
    #[arg(long, value_name = "VAR", conflicts_with = "out_passphrase_file")]
    pub out_passphrase_env: Option<String>,
}

impl OutPassArgs {
    /// The output passphrase when `--encrypt` is given.
    pub fn passphrase(
        &self,
        input: &PassArgs,
        purpose: &str,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        if !self.encrypt {
            return Ok(None);
        }
        let src = match (&self.out_passphrase_file, &self.out_passphrase_env) {
            (None, None) => input.source(),
            (f, e) => PassphraseSource::from_options(f.as_deref(), e.as_deref()),
        };
        src.read(purpose, true).map(Some)
    }
}

pub fn read_input(path: &str) -> Result<Input> {
    Input::read(path)
}

pub fn load_key(path: &str, pass: &PassArgs) -> Result<PrivateKey> {
    let input = read_input(path)?;
    let loaded = PrivateKey::load(&input, &pass.source());
    input.wipe();
    Ok(loaded?.0)
}

/// Loads a CA certificate and key and checks they may sign.
pub fn load_ca(ca: &str, ca_key: &str, pass: &PassArgs, digest: Digest) -> Result<CaSigner> {
    let cert = load_certificate(&read_input(ca)?, "cannot read CA certificate")?;
    let key = load_key(ca_key, pass)?;
    CaSigner::new(cert, &key, digest, ca_key)
}

/// A combination clap could not rule out: a usage error (exit 2).
pub fn usage(msg: String) -> ! {
    use clap::CommandFactory;
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, msg)
        .exit()
}

pub fn parse_digest(s: &str) -> std::result::Result<Digest, String> {
    s.parse()
}
