use clap::Args;
use devcert::chain::order_chain;
use devcert::error::Result;
use devcert::input::load_certificates;
use devcert::inspect::describe_certificate;
use devcert::keys::pem_encode;
use devcert::output::{Mode, write_file};
use serde_json::json;

use super::{JsonArg, OutArgs, read_input};

/// Build a leaf-first certificate chain (replaces `cat client.crt CA.crt > client_chain.crt`)
#[derive(Args)]
#[command(
    after_help = "Examples:\n  devcert chain client.crt CA.crt -o client_chain.crt\n  devcert chain CA.crt sub.crt client.crt --sort -o client_chain.crt"
)]
pub struct ChainArgs {
    /// Certificates, leaf first, then each issuer
    #[arg(value_name = "CERT", required = true)]
    certs: Vec<String>,
    /// Put the certificates in leaf-to-root order
    #[arg(long)]
    sort: bool,
    #[command(flatten)]
    out: OutArgs,
    #[command(flatten)]
    json: JsonArg,
}

pub fn run(a: ChainArgs) -> Result<()> {
    a.json.check_out(&a.out.out);
    let mut certs = Vec::new();
    for path in &a.certs {
        certs.extend(load_certificates(
            &read_input(path)?,
            "cannot read certificate",
        )?);
    }
    let ordered = order_chain(certs, a.sort)?;
    let pem: String = ordered
        .iter()
        .map(|c| pem_encode("CERTIFICATE", &c.der))
        .collect();
    write_file(&a.out.out, pem.as_bytes(), Mode::Public, a.out.force)?;
    let certificates = ordered
        .iter()
        .map(|c| describe_certificate(&c.der))
        .collect::<Result<Vec<_>>>()?;
    a.json.print(|| {
        Ok(json!({
            "files": { "chain": a.out.out },
            "certificates": certificates,
        }))
    })
}
