use clap::Args;
use devcert::error::Result;
use devcert::keys::{KeyFormat, PrivateKey};
use devcert::output::{Mode, write_file};
use serde_json::json;

use super::{JsonArg, OutArgs, OutPassArgs, PassArgs, read_input};

/// Convert a private key to PKCS#8 (replaces `openssl pkcs8 -topk8 -nocrypt`)
#[derive(Args)]
#[command(
    after_help = "Examples:\n  devcert pkcs8 client.key -o client_pkcs8.key\n  devcert pkcs8 client.key --der -o client_pkcs8.der\n  devcert pkcs8 enc.key --passphrase-file pw.txt -o client_pkcs8.key"
)]
pub struct Pkcs8Args {
    /// The key: PKCS#8 (plain or encrypted), SEC1, PKCS#1; PEM or DER
    #[arg(value_name = "KEY")]
    key: String,
    /// Write DER instead of PEM
    #[arg(long)]
    der: bool,
    #[command(flatten)]
    pass: PassArgs,
    #[command(flatten)]
    out_pass: OutPassArgs,
    #[command(flatten)]
    out: OutArgs,
    #[command(flatten)]
    json: JsonArg,
}

pub fn run(a: Pkcs8Args) -> Result<()> {
    a.json.check_out(&a.out.out);
    let input = read_input(&a.key)?;
    let loaded = PrivateKey::load(&input, &a.pass.source());
    input.wipe();
    let (key, _) = loaded?;
    let pass = a
        .out_pass
        .passphrase(&a.pass, "the PKCS#8 key", &a.out.out)?;
    let bytes = key.encode(
        KeyFormat::Pkcs8,
        !a.der,
        pass.as_deref().map(|p| p.as_slice()),
    )?;
    write_file(&a.out.out, &bytes, Mode::Secret, a.out.force)?;
    a.json.print(|| {
        Ok(json!({
            "files": { "key": a.out.out },
            "algorithm": key.algo().to_string(),
            "encrypted": pass.is_some(),
            "der": a.der,
        }))
    })
}
