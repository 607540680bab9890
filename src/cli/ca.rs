use clap::Args;
use devcert::ca::{DEFAULT_CA_DAYS, make_intermediate, make_root};
use devcert::digest::Digest;
use devcert::error::Result;
use devcert::inspect::describe_certificate;
use devcert::keys::{AlgoSpec, KeyFormat, PrivateKey, pem_encode};
use devcert::output::{refuse_same_file, write_key_and};
use serde_json::json;

use super::subject::{ValidityArgs, resolve_subject};
use super::{JsonArg, OutPassArgs, PassArgs, key_algo, load_ca, parse_digest, usage, warn_all};

/// Create a CA: a self-signed root, or an intermediate with --ca/--ca-key
#[derive(Args)]
#[command(
    after_help = "Examples:\n  devcert ca --subject \"/CN=Device Root CA\" --key-out CA.key -o CA.crt\n  devcert ca --algo rsa --subject \"/O=ACME/CN=Fleet Sub CA\" --ca CA.crt --ca-key CA.key --pathlen 0 --key-out sub.key -o sub.crt"
)]
pub struct CaArgs {
    /// ec, rsa, rsa:BITS, ec:CURVE or a curve name
    #[arg(long, default_value = "ec")]
    algo: AlgoSpec,
    /// Subject as /C=CN/O=ALI/CN=Device Root CA
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    subject: Option<String>,
    /// OpenSSL req config whose distinguished_name is the CA's subject
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    #[command(flatten)]
    validity: ValidityArgs,
    /// basicConstraints pathLenConstraint
    #[arg(long, value_name = "N")]
    pathlen: Option<u8>,
    /// Where to write the CA's new private key (mode 0600)
    #[arg(long, value_name = "FILE")]
    key_out: String,
    /// Parent CA certificate (makes an intermediate CA)
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    ca: Option<String>,
    /// Parent CA private key
    #[arg(long, value_name = "FILE", requires = "ca")]
    ca_key: Option<String>,
    /// Signature digest
    #[arg(long, value_parser = parse_digest, default_value = "sha256")]
    digest: Digest,
    #[command(flatten)]
    pass: PassArgs,
    #[command(flatten)]
    out_pass: OutPassArgs,
    /// Output certificate (`-` or absent: standard output)
    #[arg(short = 'o', long = "out", value_name = "PATH", default_value = "-")]
    out: String,
    /// Replace existing output files
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    json: JsonArg,
}

pub fn run(a: CaArgs) -> Result<()> {
    a.json.check_out(&a.out);
    if a.key_out == "-" {
        usage("--key-out must name a file: a CA key never goes to standard output".into());
    }
    refuse_same_file(&a.key_out, &a.out)?;
    let subject = resolve_subject(a.config.as_deref(), a.subject.as_deref(), None)?;
    let lifetime = a.validity.lifetime(DEFAULT_CA_DAYS);
    let parent = match (&a.ca, &a.ca_key) {
        (Some(ca), Some(key)) => Some(load_ca(ca, key, &a.pass, a.digest)?),
        _ => None,
    };
    let pass = a.out_pass.passphrase(&a.pass, "the new CA key")?;
    let algo = key_algo(a.algo, subject.req.as_ref())?;
    let key = PrivateKey::generate(algo)?;
    let issued = match &parent {
        Some(p) => make_intermediate(p, &key, &subject.name, lifetime, a.pathlen)?,
        None => make_root(&key, &subject.name, lifetime, a.pathlen, a.digest)?,
    };
    warn_all(&issued.warnings);
    let key_pem = key.encode(
        KeyFormat::Pkcs8,
        true,
        pass.as_deref().map(|p| p.as_slice()),
    )?;
    let cert_pem = pem_encode("CERTIFICATE", &issued.der);
    write_key_and(&a.key_out, &key_pem, &a.out, cert_pem.as_bytes(), a.force)?;
    a.json.print(json!({
        "files": { "key": a.key_out, "certificate": a.out },
        "certificate": describe_certificate(&issued.der)?,
    }))
}
