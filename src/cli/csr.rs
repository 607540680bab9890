use clap::Args;
use devcert::crypto::SigningKey;
use devcert::csr::build_csr;
use devcert::digest::Digest;
use devcert::error::Result;
use devcert::keys::{AlgoSpec, KeyFormat, PrivateKey, pem_encode};
use devcert::name::to_rfc4514;
use devcert::output::{Mode, refuse_existing, refuse_same_file, write_file, write_key_and};
use devcert::profile::san_extension;
use serde_json::json;

use super::subject::resolve_subject;
use super::{
    JsonArg, OutArgs, OutPassArgs, PassArgs, Pkcs11Args, key_algo, parse_digest, usage, warn_all,
};

/// Create a certificate signing request (replaces `openssl req -new`)
#[derive(Args)]
#[command(
    after_help = "Examples:\n  devcert csr --key client.key --config client.csr.cfg -o client.csr\n  devcert csr --new-key rsa:2048 --key-out client.key --config client.csr.cfg -o client.csr\n  devcert csr --key client.key --subject \"/C=CN/O=ALI/CN=client-test\" --san DNS:dev1.example -o client.csr"
)]
pub struct CsrArgs {
    /// The private key to sign the request with: a file, or a pkcs11: URI (docs/hsm.md)
    #[arg(
        long,
        value_name = "FILE|URI",
        required_unless_present = "new_key",
        conflicts_with = "new_key"
    )]
    key: Option<String>,
    /// Generate a new key (ec, rsa, rsa:BITS, ec:CURVE) and write it to --key-out
    #[arg(long, value_name = "ALGO", requires = "key_out")]
    new_key: Option<AlgoSpec>,
    /// Where to write the new key (PKCS#8, mode 0600)
    #[arg(long, value_name = "FILE", requires = "new_key")]
    key_out: Option<String>,
    /// OpenSSL req config (`[req]` with prompt = no and distinguished_name)
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "subject",
        conflicts_with = "subject"
    )]
    config: Option<String>,
    /// Subject as /C=CN/O=ALI/CN=client-test
    #[arg(long)]
    subject: Option<String>,
    /// subjectAltName entries: DNS:a,IP:1.2.3.4,email:x@y,URI:..
    #[arg(long)]
    san: Option<String>,
    /// Signature digest (default: the config's default_md, else sha256)
    #[arg(long, value_parser = parse_digest)]
    digest: Option<Digest>,
    #[command(flatten)]
    pass: PassArgs,
    #[command(flatten)]
    pkcs11: Pkcs11Args,
    #[command(flatten)]
    out_pass: OutPassArgs,
    #[command(flatten)]
    out: OutArgs,
    #[command(flatten)]
    json: JsonArg,
}

pub fn run(a: CsrArgs) -> Result<()> {
    a.json.check_out(&a.out.out);
    if a.key_out.as_deref() == Some("-") {
        usage("--key-out must name a file: a new key never goes to standard output".into());
    }
    // Refused overwrites are found before a key is generated.
    if let Some(path) = &a.key_out {
        refuse_same_file(path, &a.out.out)?;
        refuse_existing(path, a.out.force)?;
    }
    refuse_existing(&a.out.out, a.out.force)?;
    let subject = resolve_subject(a.config.as_deref(), a.subject.as_deref(), None)?;
    let req = subject.req.as_ref();
    let extra = match &a.san {
        Some(list) => vec![san_extension(list).map_err(|e| e.file("--san"))?],
        None => Vec::new(),
    };
    let digest = a
        .digest
        .or(req.and_then(|r| r.digest))
        .unwrap_or(Digest::Sha256);
    let key = match (&a.key, &a.new_key, &a.key_out) {
        (Some(arg), _, _) => SigningKey::open(arg, &a.pass.source(), a.pkcs11.module())?,
        (None, Some(spec), Some(path)) => {
            SigningKey::file(PrivateKey::generate(key_algo(*spec, req)?)?, path)
        }
        _ => usage("give --key FILE or --new-key ALGO".into()),
    };
    let built = build_csr(
        key.spki_der()?,
        &key.signer(digest)?,
        &subject.name,
        req.and_then(|r| r.extensions.as_ref()),
        extra,
    )?;
    warn_all(&built.warnings);
    let csr_pem = pem_encode("CERTIFICATE REQUEST", &built.der);
    if let (Some(path), None, Some(new_key)) = (&a.key_out, &a.key, key.file_key()) {
        let pass = a.out_pass.passphrase(&a.pass, "the new key", path)?;
        let pem = new_key.encode(
            KeyFormat::Pkcs8,
            true,
            pass.as_deref().map(|p| p.as_slice()),
        )?;
        write_key_and(path, &pem, &a.out.out, csr_pem.as_bytes(), a.out.force)?;
    } else {
        write_file(&a.out.out, csr_pem.as_bytes(), Mode::Public, a.out.force)?;
    }
    let new_key = a.key.is_none().then_some(a.key_out);
    a.json.print(|| {
        Ok(json!({
            "files": { "csr": a.out.out, "key": new_key },
            "subject": to_rfc4514(&subject.name),
            "algorithm": key.algo().to_string(),
        }))
    })
}
