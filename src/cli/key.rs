use clap::Args;
use devcert::error::Result;
use devcert::keys::{AlgoSpec, Curve, KeyFormat, PrivateKey};
use devcert::output::{Mode, write_file};

use serde_json::json;

use super::{JsonArg, OutArgs, PassArgs, usage};

/// Generate a private key (replaces `openssl genpkey` / `ecparam -genkey`)
#[derive(Args)]
#[command(
    after_help = "Examples:\n  devcert key -o client.key                  # EC P-256, PKCS#8 PEM\n  devcert key --algo rsa --bits 2048 -o client.key\n  devcert key --curve p384 --format sec1 -o client.key"
)]
pub struct KeyArgs {
    /// ec, rsa, rsa:BITS, ec:CURVE or a curve name
    #[arg(long, default_value = "ec")]
    algo: AlgoSpec,
    /// RSA modulus size
    #[arg(long, value_parser = ["2048", "3072", "4096"])]
    bits: Option<String>,
    /// EC curve: p256 (prime256v1, secp256r1, P-256) or p384 (secp384r1, P-384)
    #[arg(long)]
    curve: Option<Curve>,
    /// pkcs8 (BEGIN PRIVATE KEY), sec1 (BEGIN EC PRIVATE KEY) or pkcs1 (BEGIN RSA PRIVATE KEY)
    #[arg(long, default_value = "pkcs8")]
    format: KeyFormat,
    /// Encrypt the key (PKCS#8 PBES2, PBKDF2-SHA256, AES-256-CBC)
    #[arg(long)]
    encrypt: bool,
    #[command(flatten)]
    pass: PassArgs,
    #[command(flatten)]
    out: OutArgs,
    #[command(flatten)]
    json: JsonArg,
}

pub fn run(a: KeyArgs) -> Result<()> {
    a.json.check_out(&a.out.out);
    let bits = a.bits.as_deref().and_then(|b| b.parse().ok());
    let algo = a
        .algo
        .with_overrides(bits, a.curve)
        .unwrap_or_else(|m| usage(m));
    a.format.check(algo).unwrap_or_else(|m| usage(m));
    // `key` reads no key: its passphrase options only serve --encrypt.
    if !a.encrypt && (a.pass.passphrase_file.is_some() || a.pass.passphrase_env.is_some()) {
        usage(super::UNENCRYPTED.into());
    }
    if a.encrypt && a.format != KeyFormat::Pkcs8 {
        usage("--encrypt writes encrypted PKCS#8; drop --format or use --format pkcs8".into());
    }
    let pass = if a.encrypt {
        Some(
            a.pass
                .source()
                .read("the new key", true)
                .map_err(|e| super::about_output(e, &a.out.out))?,
        )
    } else {
        None
    };
    let key = PrivateKey::generate(algo)?;
    let pem = key.encode(a.format, true, pass.as_deref().map(|p| p.as_slice()))?;
    write_file(&a.out.out, &pem, Mode::Secret, a.out.force)?;
    a.json.print(|| {
        Ok(json!({
            "files": { "key": a.out.out },
            "algorithm": algo.to_string(),
            "encrypted": a.encrypt,
        }))
    })
}
