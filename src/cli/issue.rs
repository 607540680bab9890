use std::path::PathBuf;

use clap::Args;
use devcert::digest::Digest;
use devcert::error::Result;
use devcert::inspect::describe_certificate;
use devcert::issue::{DEVICE_FILES, DeviceSpec, make_device, write_device};
use devcert::keys::AlgoSpec;
use devcert::registry::register_issued;
use serde_json::json;

use super::sign::DEFAULT_DEVICE_DAYS;
use super::subject::{ProfileArgs, ValidityArgs, resolve_subject};
use super::{
    JsonArg, OutPassArgs, PassArgs, Pkcs11Args, key_algo, load_ca, parse_digest, warn_all,
};

/// Issue one device: key, CSR, certificate, PKCS#8 key and chain in one step
#[derive(Args)]
#[command(
    after_help = "Examples:\n  devcert issue --config client.csr.cfg --ca CA.crt --ca-key CA.key --profile client.crt.cfg --days 500 --out-dir device1\n  devcert issue --algo rsa --cn client-test --ca CA.crt --ca-key CA.key --out-dir device2\n\nWrites client.key, client.csr, client.crt, client_pkcs8.key and client_chain.crt into --out-dir."
)]
pub struct IssueArgs {
    /// ec, rsa, rsa:BITS, ec:CURVE or a curve name
    #[arg(long, default_value = "ec")]
    algo: AlgoSpec,
    /// OpenSSL req config (`[req]` with prompt = no and distinguished_name);
    /// with --cn, a template whose CN is replaced
    #[arg(long, value_name = "FILE", conflicts_with = "subject")]
    config: Option<String>,
    /// Subject as /C=CN/O=ALI/CN=client-test
    #[arg(long, conflicts_with = "cn")]
    subject: Option<String>,
    /// Subject with only a common name
    #[arg(long, required_unless_present_any = ["config", "subject"])]
    cn: Option<String>,
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
    /// Signature digest (default: the config's default_md, else sha256)
    #[arg(long, value_parser = parse_digest)]
    digest: Option<Digest>,
    #[command(flatten)]
    pass: PassArgs,
    #[command(flatten)]
    pkcs11: Pkcs11Args,
    #[command(flatten)]
    out_pass: OutPassArgs,
    /// Folder for the five files (created if missing)
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Replace existing device files in the folder
    #[arg(long)]
    force: bool,
    /// Register the certificate (and the CA if new) in this registry (a SQLite file or a postgres:// URL)
    #[arg(long, value_name = "DB")]
    registry: Option<String>,
    #[command(flatten)]
    json: JsonArg,
}

pub fn run(a: IssueArgs) -> Result<()> {
    let subject = resolve_subject(a.config.as_deref(), a.subject.as_deref(), a.cn.as_deref())?;
    let req = subject.req.as_ref();
    let digest = a
        .digest
        .or(req.and_then(|r| r.digest))
        .unwrap_or(Digest::Sha256);
    let profile = a.profile.load()?;
    let outputs = DEVICE_FILES.map(|f| a.out_dir.join(f));
    let writes = outputs.each_ref().map(PathBuf::as_path);
    let ca = load_ca(&a.ca, &a.ca_key, &a.pass, &a.pkcs11, digest, &writes)?;
    let pass =
        a.out_pass
            .passphrase(&a.pass, "the device key", &a.out_dir.display().to_string())?;
    let files = make_device(
        &ca,
        &DeviceSpec {
            algo: key_algo(a.algo, req)?,
            subject: &subject.name,
            req_extensions: req.and_then(|r| r.extensions.as_ref()),
            profile: &profile,
            lifetime: a.validity.lifetime(DEFAULT_DEVICE_DAYS),
            digest,
            key_passphrase: pass.as_deref().map(|p| p.as_slice()),
        },
    )?;
    warn_all(&files.warnings);
    let write = || write_device(&a.out_dir, &files, a.force);
    match &a.registry {
        Some(db) => register_issued(db, &ca.cert, &files.cert_der, write)?,
        None => write()?,
    }
    a.json.print(|| device_report(&a.out_dir, &files.cert_der))
}

/// `--json` of one device folder: its five files and its certificate.
pub fn device_report(dir: &std::path::Path, cert_der: &[u8]) -> Result<serde_json::Value> {
    let [key, csr, certificate, pkcs8, chain] =
        DEVICE_FILES.map(|f| dir.join(f).display().to_string());
    Ok(json!({
        "dir": dir.display().to_string(),
        "files": {
            "key": key, "csr": csr, "certificate": certificate,
            "pkcs8": pkcs8, "chain": chain,
        },
        "certificate": describe_certificate(cert_der)?,
    }))
}
