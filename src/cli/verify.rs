use std::process::ExitCode;
use std::time::SystemTime;

use clap::Args;
use devcert::error::Result;
use devcert::input::load_certificates;
use devcert::sign::parse_time;
use devcert::verify::{Policy, Verdict, load_crls, verify};
use serde_json::json;

use super::{print_json, read_input};

/// Verify a device certificate or chain against a CA (replaces `openssl verify -CAfile`)
#[derive(Args)]
#[command(
    after_help = "Prints OK (exit 0) or REJECTED: <reason> (exit 3); unreadable input is an error (exit 1).\nWith --json: {\"ok\": true|false, \"reason\": null|\"...\"}, same exit codes.\n\nExamples:\n  devcert verify --ca CA.crt client.crt\n  devcert verify --ca CA.crt client_chain.crt\n  devcert verify --ca root.crt --untrusted sub.crt --crl ca.crl client.crt\n  devcert verify --ca CA.crt --at \"$(date -u -d '+90 days' +%FT%TZ)\" client_chain.crt\n\n--at asks \"will this device still be accepted then?\" (a date inside the\ncertificate's validity: OK; past notAfter: REJECTED). With --crl, --at also\njudges the CRL at that time: a CRL expires in days (nextUpdate), so use a\n--at after it only with the CRL that will be in force then."
)]
pub struct VerifyArgs {
    /// Certificate or chain file (leaf first); extra certificates count as untrusted
    #[arg(value_name = "FILE")]
    file: String,
    /// Trusted CA certificate(s)
    #[arg(long, value_name = "FILE", required = true)]
    ca: Vec<String>,
    /// Untrusted intermediate certificate(s)
    #[arg(long, value_name = "FILE")]
    untrusted: Vec<String>,
    /// CRL(s) to check the leaf's revocation against (PEM or DER), as `openssl verify -crl_check`
    #[arg(long, value_name = "FILE")]
    crl: Vec<String>,
    /// Check every certificate of the path against the CRLs (as `-crl_check_all`); needs one per issuer
    #[arg(long, requires = "crl")]
    crl_check_all: bool,
    /// Judge at this time instead of now (RFC 3339)
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    at: Option<SystemTime>,
    /// Also enforce RFC 5280 rules that OpenSSL-based brokers skip
    #[arg(long)]
    strict: bool,
    /// Accept a path ending at any trusted certificate, not only a self-signed one
    #[arg(long)]
    partial_chain: bool,
    /// Print the verdict as {"ok": bool, "reason": string or null}
    #[arg(long)]
    json: bool,
}

pub fn run(a: VerifyArgs) -> Result<ExitCode> {
    let mut chain = load_certificates(&read_input(&a.file)?, "cannot read certificate")?;
    let leaf = chain.remove(0);
    let mut untrusted = chain;
    for path in &a.untrusted {
        untrusted.extend(load_certificates(
            &read_input(path)?,
            "cannot read untrusted certificates",
        )?);
    }
    let mut trusted = Vec::new();
    for path in &a.ca {
        trusted.extend(load_certificates(
            &read_input(path)?,
            "cannot read CA certificate",
        )?);
    }
    let mut crls = Vec::new();
    for path in &a.crl {
        crls.extend(load_crls(&read_input(path)?)?);
    }
    let policy = Policy {
        at: a.at.unwrap_or_else(SystemTime::now),
        strict: a.strict,
        crl_check_all: a.crl_check_all,
        partial_chain: a.partial_chain,
    };
    let (reason, code) = match verify(&leaf, &untrusted, &trusted, &crls, &policy) {
        Verdict::Ok(_) => (None, ExitCode::SUCCESS),
        Verdict::Rejected(why) | Verdict::NoPath(why) => (Some(why), ExitCode::from(3)),
    };
    if a.json {
        print_json(&json!({ "ok": reason.is_none(), "reason": reason }))?;
    } else {
        let line = match &reason {
            None => "OK\n".to_string(),
            Some(why) => format!("REJECTED: {}\n", devcert::escape::text(why)),
        };
        devcert::output::write_stdout(line.as_bytes())?;
    }
    Ok(code)
}
