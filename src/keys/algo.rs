//! What kind of key: curves, algorithms as `--algo` names them, and the
//! formats a key is read from or written in.

use std::fmt;
use std::str::FromStr;

use pkcs8::ObjectIdentifier;

use super::{OID_P256, OID_P384};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Curve::P256 => OID_P256,
            Curve::P384 => OID_P384,
        }
    }

    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Curve> {
        match *oid {
            OID_P256 => Some(Curve::P256),
            OID_P384 => Some(Curve::P384),
            _ => None,
        }
    }

    /// The name OpenSSL prints (`ASN1 OID: prime256v1`).
    pub fn openssl_name(self) -> &'static str {
        match self {
            Curve::P256 => "prime256v1",
            Curve::P384 => "secp384r1",
        }
    }
}

impl FromStr for Curve {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "prime256v1" | "secp256r1" => Ok(Curve::P256),
            "p384" | "p-384" | "secp384r1" => Ok(Curve::P384),
            _ => Err(format!("unknown curve '{s}' (use p256 or p384)")),
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        })
    }
}

/// What kind of key to make or what kind a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgo {
    Ec(Curve),
    Rsa(usize),
}

pub const RSA_SIZES: [usize; 3] = [2048, 3072, 4096];

impl KeyAlgo {
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyAlgo::Rsa(_))
    }

    /// `--algo` with separate `--bits`/`--curve` flags applied on top.
    fn with_overrides(self, bits: Option<usize>, curve: Option<Curve>) -> Result<KeyAlgo, String> {
        match (self, bits, curve) {
            (KeyAlgo::Rsa(_), Some(b), None) => KeyAlgo::from_str(&format!("rsa:{b}")),
            (KeyAlgo::Ec(_), None, Some(c)) => Ok(KeyAlgo::Ec(c)),
            (KeyAlgo::Rsa(_), _, Some(_)) => Err("--curve applies to EC keys, not RSA".into()),
            (KeyAlgo::Ec(_), Some(_), _) => Err("--bits applies to RSA keys, not EC".into()),
            (algo, None, None) => Ok(algo),
        }
    }
}

/// `--algo` as given: the algorithm, and whether its size or curve was
/// named (`rsa:3072`, `p384`) or left to a default (`rsa`, `ec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgoSpec {
    pub algo: KeyAlgo,
    sized: bool,
}

impl FromStr for AlgoSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        Ok(AlgoSpec {
            algo: s.parse()?,
            sized: lower != "ec" && lower != "rsa",
        })
    }
}

impl AlgoSpec {
    /// A config's `default_bits` sizes a bare `rsa`, as `openssl req
    /// -newkey rsa` does.
    pub fn with_default_bits(self, bits: Option<usize>) -> Result<KeyAlgo, String> {
        match (self.algo, bits) {
            (KeyAlgo::Rsa(_), Some(b)) if !self.sized => format!("rsa:{b}")
                .parse()
                .map_err(|e| format!("default_bits: {e}")),
            _ => Ok(self.algo),
        }
    }

    /// `--bits`/`--curve` on top of `--algo`; they may not contradict a
    /// size or curve `--algo` names.
    pub fn with_overrides(
        self,
        bits: Option<usize>,
        curve: Option<Curve>,
    ) -> Result<KeyAlgo, String> {
        let algo = self.algo.with_overrides(bits, curve)?;
        if self.sized && algo != self.algo {
            return Err(format!(
                "--algo says {} but --bits/--curve say {algo}: give one",
                self.algo
            ));
        }
        Ok(algo)
    }
}

impl FromStr for KeyAlgo {
    type Err = String;
    /// `ec`, `rsa`, `rsa:BITS`, `ec:CURVE` or a bare curve name.
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let (kind, param) = match lower.split_once(':') {
            Some((k, p)) => (k, Some(p)),
            None => (lower.as_str(), None),
        };
        match (kind, param) {
            ("ec", None) => Ok(KeyAlgo::Ec(Curve::P256)),
            ("ec", Some(c)) => Ok(KeyAlgo::Ec(c.parse()?)),
            ("rsa", None) => Ok(KeyAlgo::Rsa(2048)),
            ("rsa", Some(b)) => match b.parse::<usize>() {
                Ok(bits) if RSA_SIZES.contains(&bits) => Ok(KeyAlgo::Rsa(bits)),
                _ => Err(format!(
                    "unsupported RSA size '{b}' (use 2048, 3072 or 4096)"
                )),
            },
            (_, None) => lower.parse::<Curve>().map(KeyAlgo::Ec).map_err(|_| {
                format!("unknown algorithm '{s}' (use ec, rsa, rsa:BITS, ec:CURVE, p256 or p384)")
            }),
            _ => Err(format!(
                "unknown algorithm '{s}' (use ec, rsa, rsa:BITS, ec:CURVE, p256 or p384)"
            )),
        }
    }
}

impl fmt::Display for KeyAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgo::Ec(c) => write!(f, "EC {c}"),
            KeyAlgo::Rsa(bits) => write!(f, "RSA {bits}"),
        }
    }
}

/// Output encodings of a private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    Pkcs8,
    Sec1,
    Pkcs1,
}

impl FromStr for KeyFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "pkcs8" => Ok(KeyFormat::Pkcs8),
            "sec1" => Ok(KeyFormat::Sec1),
            "pkcs1" => Ok(KeyFormat::Pkcs1),
            _ => Err(format!(
                "unknown key format '{s}' (use pkcs8, sec1 or pkcs1)"
            )),
        }
    }
}

impl KeyFormat {
    /// Whether keys of `algo` can be written in this format.
    pub fn check(self, algo: KeyAlgo) -> Result<(), String> {
        match (self, algo) {
            (KeyFormat::Sec1, KeyAlgo::Rsa(_)) => {
                Err("--format sec1 is for EC keys; RSA keys use pkcs8 or pkcs1".into())
            }
            (KeyFormat::Pkcs1, KeyAlgo::Ec(_)) => {
                Err("--format pkcs1 is for RSA keys; EC keys use pkcs8 or sec1".into())
            }
            _ => Ok(()),
        }
    }
}

/// How a key file was encoded, as found when loading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    Pkcs8,
    EncryptedPkcs8,
    Sec1,
    Pkcs1,
}

impl fmt::Display for KeyEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyEncoding::Pkcs8 => "PKCS#8",
            KeyEncoding::EncryptedPkcs8 => "encrypted PKCS#8",
            KeyEncoding::Sec1 => "SEC1",
            KeyEncoding::Pkcs1 => "PKCS#1",
        })
    }
}
