use clap::Args;
use devcert::csr::verify_csr;
use devcert::digest::Digest;
use devcert::error::Result;
use devcert::input::load_csr;
use devcert::inspect::describe_certificate;
use devcert::keys::pem_encode;
use devcert::output::{Mode, write_file};
use devcert::registry::register_issued;
use devcert::sign::{CertRequest, parse_serial};
use serde_json::json;
use x509_cert::serial_number::SerialNumber;

use super::subject::{ProfileArgs, ValidityArgs};
use super::{JsonArg, OutArgs, PassArgs, Pkcs11Args, load_ca, parse_digest, read_input, warn_all};

/// Sign a CSR with a CA (replaces `openssl x509 -req -CA -CAkey -CAcreateserial -extfile`)
#[derive(Args)]
#[command(
    after_help = "Examples:\n  devcert sign --csr client.csr --ca CA.crt --ca-key CA.key --profile client.crt.cfg --days 500 -o client.crt\n  devcert sign --csr client.csr --ca CA.crt --ca-key CA.key -o client.crt      # built-in device profile"
)]
pub struct SignArgs {
    /// The certificate signing request
    #[arg(long, value_name = "FILE")]
    csr: String,
    /// The CA certificate
    #[arg(long, value_name = "FILE")]
    ca: String,
    /// The CA's private key: a file, or a pkcs11: URI (docs/hsm.md)
    #[arg(long, value_name = "FILE|URI")]
    ca_key: String,
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    validity: ValidityArgs,
    /// Serial number in hex (default: 20 random octets)
    #[arg(long, value_name = "HEX", value_parser = parse_serial)]
    serial: Option<SerialNumber>,
    /// Signature digest
    #[arg(long, value_parser = parse_digest, default_value = "sha256")]
    digest: Digest,
    #[command(flatten)]
    pass: PassArgs,
    #[command(flatten)]
    pkcs11: Pkcs11Args,
    /// Register the certificate (and the CA if new) in this registry (a SQLite file or a postgres:// URL)
    #[arg(long, value_name = "DB")]
    registry: Option<String>,
    #[command(flatten)]
    out: OutArgs,
    #[command(flatten)]
    json: JsonArg,
}

/// Default device validity (CLI.md).
pub const DEFAULT_DEVICE_DAYS: u32 = 365;

pub fn run(a: SignArgs) -> Result<()> {
    a.json.check_out(&a.out.out);
    let input = read_input(&a.csr)?;
    let (csr, csr_der) = load_csr(&input)?;
    verify_csr(&csr_der, &csr, &input.label)?;
    let profile = a.profile.load()?;
    let writes = super::files_of(&[&a.out.out]);
    let ca = load_ca(&a.ca, &a.ca_key, &a.pass, &a.pkcs11, a.digest, &writes)?;
    let issued = ca.issue(&CertRequest {
        subject: &csr.info.subject,
        spki: &csr.info.public_key,
        profile: &profile,
        lifetime: a.validity.lifetime(DEFAULT_DEVICE_DAYS),
        serial: a.serial.clone(),
    })?;
    warn_all(&issued.warnings);
    let write = || {
        write_file(
            &a.out.out,
            pem_encode("CERTIFICATE", &issued.der).as_bytes(),
            Mode::Public,
            a.out.force,
        )
    };
    match &a.registry {
        Some(db) => register_issued(db, &ca.cert, &issued.der, write)?,
        None => write()?,
    }
    a.json.print(|| {
        Ok(json!({
            "files": { "certificate": a.out.out },
            "certificate": describe_certificate(&issued.der)?,
        }))
    })
}
