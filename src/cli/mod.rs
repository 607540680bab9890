//! Command-line definitions: one file per command, each with its clap
//! arguments and a short `run` that calls into the library and prints.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use devcert::crypto::SigningKey;
use devcert::digest::Digest;
use devcert::error::{Error, Result};
use devcert::escape;
use devcert::input::{Input, load_certificate};
use devcert::keys::PrivateKey;
use devcert::passphrase::PassphraseSource;
use devcert::sign::CaSigner;

mod batch;
mod ca;
mod chain;
mod completions;
mod csr;
mod inspect;
mod issue;
mod key;
mod man;
mod p12;
mod pkcs8;
mod registry;
mod sign;
mod subject;
mod verify;

#[derive(Parser)]
#[command(
    name = "devcert",
    version,
    about = "Issue and manage X.509 device certificates for MQTT/IoT fleets"
)]
#[command(propagate_version = true, after_help = SEED_EXAMPLE)]
pub struct Cli {
    /// Print no warnings, progress or summaries on stderr (errors still are)
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

const SEED_EXAMPLE: &str = "\
The broker guide's OpenSSL workflow, with devcert:
  devcert ca --subject \"/CN=Device Root CA\" --key-out CA.key -o CA.crt
  devcert issue --config client.csr.cfg --profile client.crt.cfg --days 500 \\
      --ca CA.crt --ca-key CA.key --out-dir client
  devcert verify --ca CA.crt client/client_chain.crt

Exit codes: 0 ok, 1 failed, 2 usage error, 3 verification said no.
User guide: docs/guide.md; every command has --help with examples.";

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
    Inspect(inspect::InspectArgs),
    #[command(visible_alias = "pkcs12")]
    P12(p12::P12Args),
    Completions(completions::CompletionsArgs),
    Man(man::ManArgs),
    Registry(registry::RegistryArgs),
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    QUIET.store(cli.quiet, Ordering::Relaxed);
    // Commands that write remove their temp files when interrupted;
    // `registry serve` stops on these signals itself.
    if !matches!(&cli.command, Command::Registry(r) if r.serves()) {
        devcert::output::remove_temps_on_signals()?;
    }
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
        Command::Inspect(a) => inspect::run(a).map(|()| ExitCode::SUCCESS),
        Command::P12(a) => p12::run(a).map(|()| ExitCode::SUCCESS),
        Command::Completions(a) => completions::run(a).map(|()| ExitCode::SUCCESS),
        Command::Man(a) => man::run(a).map(|()| ExitCode::SUCCESS),
        Command::Registry(a) => registry::run(a),
    }
}

/// Error, hint and warning lines can quote the input (a CN, a file name):
/// escaped, so they stay one line each and cannot drive a terminal.
pub fn report_error(e: &Error) {
    eprintln!("error: {}", escape::text(&e.to_string()));
    if let Some(h) = &e.hint {
        eprintln!("hint: {}", escape::text(h));
    }
}

static QUIET: AtomicBool = AtomicBool::new(false);

/// `-q/--quiet`: warnings, progress and summaries stay off stderr.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

pub fn warn(warning: impl std::fmt::Display) {
    if !quiet() {
        eprintln!("warning: {}", escape::text(&warning.to_string()));
    }
}

pub fn warn_all(warnings: &[String]) {
    warnings.iter().for_each(warn);
}

/// `--json`: what a command wrote, as one JSON document on stdout.
#[derive(Args, Clone, Copy)]
pub struct JsonArg {
    /// Print a JSON summary of what was written (paths, serial, subject, fingerprint)
    #[arg(long)]
    pub json: bool,
}

impl JsonArg {
    /// The summary describes files written with -o; when the product itself
    /// goes to stdout there is no room for it.
    pub fn check_out(self, out: &str) {
        if self.json && out == "-" {
            usage("--json describes the written files; give -o FILE".into());
        }
    }

    /// Prints the report `make` builds, only with --json (describing a
    /// certificate is not free, and most runs do not ask for it).
    pub fn print(self, make: impl FnOnce() -> Result<serde_json::Value>) -> Result<()> {
        if self.json {
            print_json(&make()?)
        } else {
            Ok(())
        }
    }
}

/// One JSON document on stdout.
pub fn print_json(report: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(report)
        .map(devcert::escape::json)
        .map_err(|e| Error::crypto("cannot print JSON", e))?;
    text.push('\n');
    devcert::output::write_stdout(text.as_bytes())
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

/// A passphrase for the written key without `--encrypt` would leave the
/// key unencrypted while the user believes otherwise.
pub const UNENCRYPTED: &str =
    "a passphrase for the written key without --encrypt would write it unencrypted: add --encrypt";

impl OutPassArgs {
    /// The output passphrase when `--encrypt` is given.
    pub fn passphrase(
        &self,
        input: &PassArgs,
        purpose: &str,
        file: &str,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        if !self.encrypt {
            if self.out_passphrase_file.is_some() || self.out_passphrase_env.is_some() {
                usage(UNENCRYPTED.into());
            }
            return Ok(None);
        }
        out_pass_source(&self.out_passphrase_file, &self.out_passphrase_env, input)
            .read(purpose, true)
            .map(Some)
            .map_err(|e| about_output(e, file))
    }
}

/// CLI.md: the output passphrase comes from `--out-passphrase-file/-env`,
/// else from the input passphrase options.
pub fn out_pass_source(
    file: &Option<String>,
    env: &Option<String>,
    input: &PassArgs,
) -> PassphraseSource {
    match (file, env) {
        (None, None) => input.source(),
        (f, e) => PassphraseSource::from_options(f.as_deref(), e.as_deref()),
    }
}

/// An error about the output `out` names it, unless that is stdout.
pub fn about_output(e: Error, out: &str) -> Error {
    if out == "-" { e } else { e.file(out) }
}

pub fn read_input(path: &str) -> Result<Input> {
    Input::read(path)
}

/// `--pkcs11-module`: the module of the token a `pkcs11:` key URI names.
#[derive(Args, Clone, Default)]
pub struct Pkcs11Args {
    /// PKCS#11 module (.so) of the token holding a pkcs11: key
    #[arg(long, value_name = "PATH", env = "DEVCERT_PKCS11_MODULE")]
    pub pkcs11_module: Option<std::path::PathBuf>,
}

impl Pkcs11Args {
    pub fn module(&self) -> Option<&std::path::Path> {
        self.pkcs11_module.as_deref()
    }
}

pub fn load_key(path: &str, pass: &PassArgs) -> Result<PrivateKey> {
    let input = read_input(path)?;
    let loaded = PrivateKey::load(&input, &pass.source());
    input.wipe();
    Ok(loaded?.0)
}

/// The output paths among `outs` that name files (`-` is stdout).
pub fn files_of<'a>(outs: &[&'a str]) -> Vec<&'a std::path::Path> {
    outs.iter()
        .filter(|o| **o != "-")
        .map(|o| std::path::Path::new(*o))
        .collect()
}

/// Loads a CA certificate and its key (a file or a token's) and checks
/// they may sign. `writes`: the files the command will write, none of
/// which may be the CA's own (not even with --force).
pub fn load_ca(
    ca: &str,
    ca_key: &str,
    pass: &PassArgs,
    pkcs11: &Pkcs11Args,
    digest: Digest,
    writes: &[&std::path::Path],
) -> Result<CaSigner> {
    devcert::output::refuse_overwriting_ca(
        writes.iter().copied(),
        &[("--ca", ca), ("--ca-key", ca_key)],
    )?;
    let cert = load_certificate(&read_input(ca)?, "cannot read CA certificate")?;
    let key = SigningKey::open(ca_key, &pass.source(), pkcs11.module())?;
    CaSigner::new(cert, &key, digest)
}

/// The key `--algo` asks for, sized by the config's `default_bits` when it
/// is a bare `rsa`.
pub fn key_algo(
    spec: devcert::keys::AlgoSpec,
    req: Option<&devcert::csr::ReqConfig>,
) -> Result<devcert::keys::KeyAlgo> {
    req.map_or(Ok(spec.algo), |r| r.key_algo(spec))
}

/// A combination clap could not rule out: a usage error (exit 2).
pub fn usage(msg: String) -> ! {
    use clap::CommandFactory;
    let cli = Cli::command();
    // Show the usage of the command that was run, as clap's own errors do.
    let name = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut cmd = match name.and_then(|n| cli.find_subcommand(&n).cloned()) {
        Some(sub) => {
            let bin = format!("devcert {}", sub.get_name());
            sub.bin_name(bin)
        }
        None => cli,
    };
    cmd.error(clap::error::ErrorKind::ArgumentConflict, msg)
        .exit()
}

pub fn parse_digest(s: &str) -> std::result::Result<Digest, String> {
    s.parse()
}
