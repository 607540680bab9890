use clap::Args;
use devcert::ca::{DEFAULT_CA_DAYS, make_intermediate, make_root};
use devcert::crypto::SigningKey;
use devcert::digest::Digest;
use devcert::error::{Error, ErrorKind, Result};
use devcert::inspect::describe_certificate;
use devcert::keys::{AlgoSpec, KeyFormat, PrivateKey, pem_encode};
use devcert::output::{Mode, refuse_existing, refuse_same_file, write_file, write_key_and};
use devcert::pkcs11::{Pkcs11Uri, TokenKey, is_uri};
use serde_json::json;

use super::subject::{ValidityArgs, resolve_subject};
use super::{
    JsonArg, OutPassArgs, PassArgs, Pkcs11Args, files_of, key_algo, load_ca, parse_digest, usage,
    warn_all,
};

/// Create a CA: a self-signed root, or an intermediate with --ca/--ca-key
#[derive(Args)]
#[command(
    after_help = "Examples:\n  devcert ca --subject \"/CN=Device Root CA\" --key-out CA.key -o CA.crt\n  devcert ca --algo rsa --subject \"/O=ACME/CN=Fleet Sub CA\" --ca CA.crt --ca-key CA.key --pathlen 0 --key-out sub.key -o sub.crt\n  devcert ca --subject \"/CN=Device Root CA\" --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --key-out \"pkcs11:token=ca;object=root?pin-source=file:pin.txt\" -o CA.crt"
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
    /// Where to write the CA's new private key (mode 0600), or a pkcs11: URI to make it in a token
    #[arg(long, value_name = "FILE|URI")]
    key_out: String,
    /// Parent CA certificate (makes an intermediate CA)
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    ca: Option<String>,
    /// Parent CA private key: a file, or a pkcs11: URI (docs/hsm.md)
    #[arg(long, value_name = "FILE|URI", requires = "ca")]
    ca_key: Option<String>,
    /// Signature digest
    #[arg(long, value_parser = parse_digest, default_value = "sha256")]
    digest: Digest,
    #[command(flatten)]
    pass: PassArgs,
    #[command(flatten)]
    pkcs11: Pkcs11Args,
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
    let token = is_uri(&a.key_out)
        .then(|| Pkcs11Uri::parse(&a.key_out))
        .transpose()
        .map_err(|why| {
            Error::new(ErrorKind::Parse, "invalid PKCS#11 URI", why).file("--key-out")
        })?;
    match &token {
        Some(_) if a.out_pass.encrypt => {
            usage("--encrypt applies to a key file; a key made in a token never leaves it".into())
        }
        // Found before the token holds a key nobody gets a certificate for.
        Some(_) => refuse_existing(&a.out, a.force)?,
        None => refuse_same_file(&a.key_out, &a.out)?,
    }
    let subject = resolve_subject(a.config.as_deref(), a.subject.as_deref(), None)?;
    let lifetime = a.validity.lifetime(DEFAULT_CA_DAYS);
    let parent = match (&a.ca, &a.ca_key) {
        (Some(ca), Some(key)) => {
            let writes = files_of(&[&a.key_out, &a.out]);
            Some(load_ca(ca, key, &a.pass, &a.pkcs11, a.digest, &writes)?)
        }
        _ => None,
    };
    let pass = match token {
        Some(_) => None,
        None => a
            .out_pass
            .passphrase(&a.pass, "the new CA key", &a.key_out)?,
    };
    let algo = key_algo(a.algo, subject.req.as_ref())?;
    let key = match &token {
        Some(uri) => SigningKey::token(TokenKey::generate(uri, a.pkcs11.module(), algo)?),
        None => SigningKey::file(PrivateKey::generate(algo)?, &a.key_out),
    };
    let made = (|| {
        let issued = match &parent {
            Some(p) => make_intermediate(p, &key, &subject.name, lifetime, a.pathlen)?,
            None => make_root(&key, &subject.name, lifetime, a.pathlen, a.digest)?,
        };
        warn_all(&issued.warnings);
        let cert_pem = pem_encode("CERTIFICATE", &issued.der);
        match key.file_key() {
            Some(file_key) => {
                let key_pem = file_key.encode(
                    KeyFormat::Pkcs8,
                    true,
                    pass.as_deref().map(|p| p.as_slice()),
                )?;
                write_key_and(&a.key_out, &key_pem, &a.out, cert_pem.as_bytes(), a.force)?;
            }
            None => write_file(&a.out, cert_pem.as_bytes(), Mode::Public, a.force)?,
        }
        Ok(issued)
    })();
    // Nothing half-made: a token key without its certificate goes again.
    let issued = match (made, key.token_key()) {
        (Ok(issued), _) => issued,
        (Err(e), Some(t)) => {
            let _ = t.destroy();
            return Err(e);
        }
        (Err(e), None) => return Err(e),
    };
    a.json.print(|| {
        Ok(json!({
            "files": { "key": key.label(), "certificate": a.out },
            "certificate": describe_certificate(&issued.der)?,
        }))
    })
}
