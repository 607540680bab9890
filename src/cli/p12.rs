use std::io::IsTerminal;

use clap::Args;
use devcert::chain::order_chain;
use devcert::error::Result;
use devcert::input::load_certificates;
use devcert::inspect::describe_certificate;
use devcert::name::common_name_of;
use devcert::output::{Mode, write_file};
use devcert::pkcs12::{P12Profile, build_pkcs12};
use serde_json::json;

use super::{JsonArg, OutArgs, PassArgs, load_key, out_pass_source, read_input, usage, warn};

/// Bundle a key and its certificate chain into a PKCS#12 (.p12/.pfx) keystore
#[derive(Args)]
#[command(after_help = "\
The passphrase protects the keystore; if --key is encrypted, the same options
decrypt it (use --out-passphrase-file/-env for a different keystore passphrase).

Examples:
  devcert p12 --key client/client_pkcs8.key --cert client/client_chain.crt --passphrase-file pw.txt -o client.p12
  devcert p12 --key client.key --cert client.crt --chain CA.crt --name client-test --passphrase-env P12_PASS -o client.p12
  devcert p12 --legacy --key client.key --cert client_chain.crt --passphrase-file pw.txt -o client-legacy.p12
      (3DES + SHA-1 MAC, for Java 8 before 8u301 / old Windows)

Java: KeyStore.getInstance(\"PKCS12\").load(in, pass); the alias is --name.
Check: openssl pkcs12 -info -nokeys -in client.p12 -passin file:pw.txt")]
pub struct P12Args {
    /// The device's private key (any format devcert reads)
    #[arg(long, value_name = "FILE")]
    key: String,
    /// The device certificate, or its chain file (leaf first)
    #[arg(long, value_name = "FILE")]
    cert: String,
    /// More certificates for the chain (intermediates, the CA); repeatable
    #[arg(long, value_name = "FILE")]
    chain: Vec<String>,
    /// Friendly name (Java alias) of the entry (default: the certificate's CN)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Old algorithms (3DES, SHA-1 MAC) for Java 8 before 8u301 and old Windows
    #[arg(long)]
    legacy: bool,
    #[command(flatten)]
    pass: PassArgs,
    /// Keystore passphrase file, when it differs from the key's (--passphrase-file)
    #[arg(long, value_name = "FILE")]
    out_passphrase_file: Option<String>,
    /// Keystore passphrase variable, when it differs from the key's (--passphrase-env)
    #[arg(long, value_name = "VAR", conflicts_with = "out_passphrase_file")]
    out_passphrase_env: Option<String>,
    #[command(flatten)]
    out: OutArgs,
    #[command(flatten)]
    json: JsonArg,
}

pub fn run(a: P12Args) -> Result<()> {
    a.json.check_out(&a.out.out);
    if a.out.out == "-" && std::io::stdout().is_terminal() {
        usage("a PKCS#12 file is binary; give -o FILE (or redirect stdout)".into());
    }
    let key = load_key(&a.key, &a.pass)?;
    let mut certs = Vec::new();
    for path in std::iter::once(&a.cert).chain(&a.chain) {
        certs.extend(load_certificates(
            &read_input(path)?,
            "cannot read certificate",
        )?);
    }
    // Leaf first and every link checked: Java and Windows build the TLS
    // client chain from this order.
    let chain = order_chain(certs, true)?;
    let name = a
        .name
        .or_else(|| common_name_of(chain[0].cert.tbs_certificate().subject()))
        .unwrap_or_else(|| "devcert".into());
    let passphrase = out_pass_source(&a.out_passphrase_file, &a.out_passphrase_env, &a.pass)
        .read("the PKCS#12 keystore", true)
        .map_err(|e| super::about_output(e, &a.out.out))?;
    if !passphrase.is_ascii() {
        warn(
            "the passphrase is not ASCII: OpenSSL reads the keystore, Java's PKCS12 KeyStore refuses it",
        );
    }
    let profile = if a.legacy {
        P12Profile::Legacy
    } else {
        P12Profile::Modern
    };
    let (bytes, contents) = build_pkcs12(&key, &chain, &name, &passphrase, profile)?;
    write_file(&a.out.out, &bytes, Mode::Secret, a.out.force)?;
    a.json.print(|| {
        Ok(json!({
            "files": { "pkcs12": a.out.out },
            "friendly_name": contents.friendly_name,
            "encryption": contents.encryption,
            "mac": contents.mac,
            "certificates": contents.certificates,
            "certificate": describe_certificate(&chain[0].der)?,
        }))
    })
}
