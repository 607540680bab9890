use std::io::Write;

use clap::Args;
use devcert::error::{Error, Result};
use devcert::inspect::{inspect, json, text};

use super::read_input;

/// Show what a certificate, chain, CSR, key or CRL file holds (replaces `openssl x509/req/pkey/crl -text`)
#[derive(Args)]
#[command(
    after_help = "PEM or DER, any number of PEM blocks; `-` reads standard input. Private key material is never printed.\n\nExamples:\n  devcert inspect client.crt\n  devcert inspect --json client_chain.crt\n  devcert inspect client.key"
)]
pub struct InspectArgs {
    /// File to inspect (`-`: standard input)
    #[arg(value_name = "FILE")]
    file: String,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let report = inspect(&read_input(&args.file)?)?;
    let out = if args.json {
        json::to_string(&report)? + "\n"
    } else {
        text::render(&report, time::OffsetDateTime::now_utc())
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`| head`) is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("cannot write output", "<stdout>", &e))
        }
        _ => Ok(()),
    }
}
