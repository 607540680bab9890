//! Private keys: generate, load from every format OpenSSL writes (PKCS#8
//! plain or encrypted, SEC1 with or without its `EC PARAMETERS` block,
//! PKCS#1; PEM or DER), and encode as PKCS#8, SEC1 or PKCS#1.
//!
//! A loaded key is held as normalised PKCS#8 DER (the layout of
//! `openssl pkcs8 -topk8`: the EC public key kept, the curve only in the
//! algorithm identifier), zeroized on drop.

use std::fmt;

use der::{Decode, Encode};
use getrandom::SysRng;
use pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, ObjectIdentifier};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::input::{Input, describe_tag};
use crate::passphrase::PassphraseSource;

pub const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub const OID_RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// PBKDF2-HMAC-SHA256 rounds for `--encrypt` (OWASP's 2023 figure). Java,
/// OpenSSL and Python all read PBES2/PBKDF2/AES-256-CBC; scrypt Java can't.
const PBKDF2_ROUNDS: u32 = 600_000;

mod algo;
pub use algo::{AlgoSpec, Curve, KeyAlgo, KeyEncoding, KeyFormat, RSA_SIZES};

pub struct PrivateKey {
    algo: KeyAlgo,
    pkcs8: Zeroizing<Vec<u8>>,
    spki: Vec<u8>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.algo)
    }
}

/// Runs `$body` with `$T` bound to the curve's `SecretKey` type.
macro_rules! with_curve {
    ($curve:expr, $T:ident => $body:expr) => {
        match $curve {
            Curve::P256 => {
                type $T = p256::SecretKey;
                $body
            }
            Curve::P384 => {
                type $T = p384::SecretKey;
                $body
            }
        }
    };
}

fn crypto_err(e: impl fmt::Display) -> Error {
    Error::crypto("key operation failed", e)
}

impl PrivateKey {
    pub fn generate(algo: KeyAlgo) -> Result<PrivateKey> {
        let pkcs8 = match algo {
            KeyAlgo::Ec(curve) => {
                // ring's generator is several times faster than the generic
                // one and emits exactly the normalised PKCS#8 layout.
                let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(
                    ring_signing_alg(curve),
                    &ring::rand::SystemRandom::new(),
                )
                .map_err(|_| crypto_err("EC key generation failed"))?;
                // ring's document already has the normalised layout and the
                // public point: no need to redo the (slow) generic arithmetic.
                return PrivateKey::from_ring_ec(curve, doc.as_ref()).map_err(crypto_err);
            }
            KeyAlgo::Rsa(bits) => {
                let key = rsa::PrivateKey::new(&mut SysRng, bits).map_err(crypto_err)?;
                Zeroizing::new(key.to_pkcs8_der().map_err(crypto_err)?.as_bytes().to_vec())
            }
        };
        PrivateKey::from_pkcs8_der(&pkcs8).map_err(crypto_err)
    }

    fn from_ring_ec(curve: Curve, der: &[u8]) -> Result<PrivateKey, String> {
        let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|e| e.to_string())?;
        let ec =
            sec1::EcPrivateKey::from_der(info.private_key.as_bytes()).map_err(|e| e.to_string())?;
        let point = ec
            .public_key
            .ok_or("generated key lacks its public point")?;
        Ok(PrivateKey {
            algo: KeyAlgo::Ec(curve),
            pkcs8: Zeroizing::new(der.to_vec()),
            spki: ec_spki(curve, point)?,
        })
    }

    /// Parses and normalises an unencrypted PKCS#8 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, String> {
        let info = pkcs8::PrivateKeyInfoRef::from_der(der)
            .map_err(|e| format!("not a PKCS#8 private key ({e})"))?;
        match info.algorithm.oid {
            OID_EC_PUBLIC_KEY => {
                let curve_oid = info.algorithm.parameters_oid().map_err(|_| {
                    "EC key without a named curve (explicit parameters are not supported)"
                        .to_string()
                })?;
                let curve = Curve::from_oid(&curve_oid).ok_or_else(|| {
                    format!("unsupported EC curve {curve_oid} (devcert supports P-256 and P-384)")
                })?;
                let ec = sec1::EcPrivateKey::from_der(info.private_key.as_bytes())
                    .map_err(|e| format!("invalid EC key ({e})"))?;
                // The inner SEC1 key may repeat the curve; it must agree.
                if let Some(inner) = &ec.parameters {
                    let inner = named_curve(inner)?;
                    if inner != curve_oid {
                        return Err(format!(
                            "the key's curve contradicts itself: PKCS#8 names {}, the EC key inside names {}",
                            curve_name(&curve_oid),
                            curve_name(&inner)
                        ));
                    }
                }
                ec_from_parts(curve, &ec)
            }
            OID_RSA_ENCRYPTION => {
                let key = rsa::PrivateKey::from_pkcs8_der(der)
                    .map_err(|e| format!("invalid RSA key ({e})"))?;
                Self::from_rsa(&key)
            }
            other => Err(format!(
                "unsupported key algorithm {other} (devcert supports EC P-256/P-384 and RSA)"
            )),
        }
    }

    fn from_ec<C>(curve: Curve, key: &elliptic_curve::SecretKey<C>) -> Result<PrivateKey, String>
    where
        elliptic_curve::SecretKey<C>: EncodePrivateKey,
        elliptic_curve::PublicKey<C>: EncodePublicKey,
        C: elliptic_curve::CurveArithmetic,
    {
        let pkcs8 = key.to_pkcs8_der().map_err(|e| e.to_string())?;
        let spki = key
            .public_key()
            .to_public_key_der()
            .map_err(|e| e.to_string())?;
        Ok(PrivateKey {
            algo: KeyAlgo::Ec(curve),
            pkcs8: Zeroizing::new(pkcs8.as_bytes().to_vec()),
            spki: spki.into_vec(),
        })
    }

    fn from_rsa(key: &rsa::PrivateKey) -> Result<PrivateKey, String> {
        use rsa::traits::PublicKeyParts;
        let bits = key.n().bit_width_vartime() as usize;
        let pkcs8 = key.to_pkcs8_der().map_err(|e| e.to_string())?;
        let spki = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| e.to_string())?;
        Ok(PrivateKey {
            algo: KeyAlgo::Rsa(bits),
            pkcs8: Zeroizing::new(pkcs8.as_bytes().to_vec()),
            spki: spki.into_vec(),
        })
    }

    /// Loads a private key in any supported encoding. The passphrase is
    /// read only if the key turns out to be encrypted.
    pub fn load(input: &Input, pass: &PassphraseSource) -> Result<(PrivateKey, KeyEncoding)> {
        let what = "cannot read private key";
        let label = &input.label;
        let fail = |why: String| Error::parse(what, why).file(label.clone());
        let blocks = WipedBlocks(input.blocks().map_err(|e| Error {
            what: what.into(),
            ..e
        })?);
        // OpenSSL's `ecparam -genkey` writes an EC PARAMETERS block first.
        let mut curve_hint = None;
        let mut keys = Vec::new();
        for b in &blocks.0 {
            match b.tag.as_deref() {
                Some("EC PARAMETERS") => {
                    curve_hint = ObjectIdentifier::from_der(&b.der)
                        .ok()
                        .and_then(|o| Curve::from_oid(&o));
                }
                Some(
                    "PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY",
                )
                | None => keys.push(b),
                Some(other) => {
                    return Err(fail(format!(
                        "expected a private key, found {}",
                        describe_tag(other)
                    )));
                }
            }
        }
        let block = match keys.as_slice() {
            [one] => *one,
            [] => return Err(fail("no private key in the file".into())),
            _ => {
                return Err(fail(format!(
                    "expected one private key, found {}",
                    keys.len()
                )));
            }
        };
        if block.has_headers {
            return Err(Error::new(
                ErrorKind::Parse,
                what,
                "legacy OpenSSL encryption (Proc-Type: 4,ENCRYPTED) is not supported",
            )
            .file(label.clone())
            .hint(format!(
                "convert it first: openssl pkcs8 -topk8 -v2 aes-256-cbc -in {label} -out key.p8"
            )));
        }
        let der = Zeroizing::new(block.der.clone());
        let encoding = match block.tag.as_deref() {
            Some("PRIVATE KEY") => KeyEncoding::Pkcs8,
            Some("ENCRYPTED PRIVATE KEY") => KeyEncoding::EncryptedPkcs8,
            Some("EC PRIVATE KEY") => KeyEncoding::Sec1,
            Some("RSA PRIVATE KEY") => KeyEncoding::Pkcs1,
            _ => sniff_der(&der).ok_or_else(|| {
                fail(match crate::input::describe_der(&der) {
                    Some(found) => format!("expected a private key, found {found}"),
                    None => "not a private key (PKCS#8, SEC1 or PKCS#1)".into(),
                })
            })?,
        };
        if encoding == KeyEncoding::EncryptedPkcs8 {
            let key = decrypt_pkcs8(&der, pass, label)?;
            return Ok((key, encoding));
        }
        PrivateKey::from_unencrypted(&der, encoding, curve_hint)
            .map(|k| (k, encoding))
            .map_err(fail)
    }

    /// Parses an unencrypted key in a known encoding; a SEC1 key's curve
    /// must agree with `curve_hint` (from an `EC PARAMETERS` block).
    pub fn from_unencrypted(
        der: &[u8],
        encoding: KeyEncoding,
        curve_hint: Option<Curve>,
    ) -> Result<PrivateKey, String> {
        match encoding {
            KeyEncoding::Pkcs8 => PrivateKey::from_pkcs8_der(der),
            KeyEncoding::Sec1 => from_sec1(der, curve_hint),
            KeyEncoding::Pkcs1 => {
                let key = rsa::PrivateKey::from_pkcs1_der(der)
                    .map_err(|e| format!("invalid PKCS#1 RSA key ({e})"))?;
                PrivateKey::from_rsa(&key)
            }
            KeyEncoding::EncryptedPkcs8 => Err("the key is encrypted".into()),
        }
    }

    pub fn algo(&self) -> KeyAlgo {
        self.algo
    }

    /// Normalised PKCS#8 DER.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// SubjectPublicKeyInfo DER of the public half.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// Encodes the key; `pem` selects PEM text over DER; `encrypt` (PKCS#8
    /// only) wraps it in PBES2 with that passphrase.
    pub fn encode(
        &self,
        format: KeyFormat,
        pem: bool,
        encrypt: Option<&[u8]>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        format
            .check(self.algo)
            .map_err(|e| Error::new(ErrorKind::Parse, "cannot encode key", e))?;
        let (tag, der): (&str, Zeroizing<Vec<u8>>) = match (format, encrypt) {
            (KeyFormat::Pkcs8, None) => ("PRIVATE KEY", Zeroizing::new(self.pkcs8.to_vec())),
            (KeyFormat::Pkcs8, Some(pass)) => {
                ("ENCRYPTED PRIVATE KEY", self.encrypted_pkcs8(pass)?)
            }
            (_, Some(_)) => {
                return Err(Error::new(
                    ErrorKind::Parse,
                    "cannot encode key",
                    "encryption needs PKCS#8 output (--format pkcs8)",
                ));
            }
            (KeyFormat::Sec1, None) => ("EC PRIVATE KEY", self.sec1_der()?),
            (KeyFormat::Pkcs1, None) => {
                let key = rsa::PrivateKey::from_pkcs8_der(&self.pkcs8).map_err(crypto_err)?;
                (
                    "RSA PRIVATE KEY",
                    Zeroizing::new(key.to_pkcs1_der().map_err(crypto_err)?.as_bytes().to_vec()),
                )
            }
        };
        if !pem {
            return Ok(der);
        }
        Ok(Zeroizing::new(pem_encode(tag, &der).into_bytes()))
    }

    fn sec1_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        let KeyAlgo::Ec(curve) = self.algo else {
            return Err(crypto_err("SEC1 needs an EC key"));
        };
        with_curve!(curve, K => {
            let key = K::from_pkcs8_der(&self.pkcs8).map_err(crypto_err)?;
            Ok(key.to_sec1_der().map_err(crypto_err)?)
        })
    }

    fn encrypted_pkcs8(&self, pass: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        getrandom::fill(&mut salt)
            .and_then(|_| getrandom::fill(&mut iv))
            .map_err(crypto_err)?;
        let params = pkcs8::pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(
            PBKDF2_ROUNDS,
            &salt,
            iv,
        )
        .map_err(crypto_err)?;
        let info = pkcs8::PrivateKeyInfoRef::from_der(&self.pkcs8).map_err(crypto_err)?;
        let doc = info.encrypt_with_params(params, pass).map_err(crypto_err)?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// Whether `spki_der` is this key's public key.
    pub fn matches_spki(&self, spki_der: &[u8]) -> bool {
        self.spki == spki_der
    }
}

/// The decoded blocks of a key file, wiped when dropped.
struct WipedBlocks(Vec<crate::input::Block>);

impl Drop for WipedBlocks {
    fn drop(&mut self) {
        for b in &mut self.0 {
            zeroize::Zeroize::zeroize(&mut b.der);
        }
    }
}

/// PEM with LF line endings and 64-column base64, as OpenSSL writes.
pub fn pem_encode(tag: &str, der: &[u8]) -> String {
    let p = pem::Pem::new(tag, der.to_vec());
    pem::encode_config(
        &p,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Guesses the encoding of a bare DER key from its structure.
pub fn sniff_der(der: &[u8]) -> Option<KeyEncoding> {
    if pkcs8::PrivateKeyInfoRef::from_der(der).is_ok() {
        Some(KeyEncoding::Pkcs8)
    } else if pkcs8::EncryptedPrivateKeyInfoRef::from_der(der).is_ok() {
        Some(KeyEncoding::EncryptedPkcs8)
    } else if sec1::EcPrivateKey::from_der(der).is_ok() {
        Some(KeyEncoding::Sec1)
    } else if pkcs1::RsaPrivateKey::<der::asn1::UintRef<'_>>::from_der(der).is_ok() {
        Some(KeyEncoding::Pkcs1)
    } else {
        None
    }
}

/// ring's ECDSA algorithm with the curve's own digest.
pub(crate) fn ring_signing_alg(curve: Curve) -> &'static ring::signature::EcdsaSigningAlgorithm {
    match curve {
        Curve::P256 => &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        Curve::P384 => &ring::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
    }
}

fn ec_spki(curve: Curve, point: &[u8]) -> Result<Vec<u8>, String> {
    let curve_oid = curve.oid();
    spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some((&curve_oid).into()),
        },
        subject_public_key: der::asn1::BitStringRef::from_bytes(point)
            .map_err(|e| e.to_string())?,
    }
    .to_der()
    .map_err(|e| e.to_string())
}

/// An EC key from its SEC1 parts, normalised. ring checks a key that
/// carries its public point far faster than the generic arithmetic (which
/// dominated `devcert issue`); keys without a point, or that ring refuses,
/// take the generic path, which also rejects a point that does not match.
fn ec_from_parts(curve: Curve, ec: &sec1::EcPrivateKey<'_>) -> Result<PrivateKey, String> {
    if let Some(point) = ec.public_key {
        let enc = |e: der::Error| e.to_string();
        let inner = Zeroizing::new(
            sec1::EcPrivateKey {
                private_key: ec.private_key,
                parameters: None,
                public_key: Some(point),
            }
            .to_der()
            .map_err(enc)?,
        );
        let curve_oid = curve.oid();
        let algorithm = pkcs8::AlgorithmIdentifierRef {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some((&curve_oid).into()),
        };
        let octets = der::asn1::OctetStringRef::new(&inner).map_err(enc)?;
        let normalized = Zeroizing::new(
            pkcs8::PrivateKeyInfoRef::new(algorithm, octets)
                .to_der()
                .map_err(enc)?,
        );
        let rng = ring::rand::SystemRandom::new();
        if ring::signature::EcdsaKeyPair::from_pkcs8(ring_signing_alg(curve), &normalized, &rng)
            .is_ok()
        {
            return PrivateKey::from_ring_ec(curve, &normalized);
        }
    }
    with_curve!(curve, K => {
        let key = K::from_slice(ec.private_key).map_err(|_| "invalid EC private key".to_string())?;
        let built = PrivateKey::from_ec(curve, &key)?;
        if let Some(point) = ec.public_key
            && ec_spki(curve, point)? != built.spki
        {
            return Err("the key's public point does not match its private scalar".into());
        }
        Ok(built)
    })
}

/// A SEC1 key must name its curve: OpenSSL refuses one that does not, and
/// guessing from the scalar's length could take a P-256 key for another
/// 256-bit curve's. An `EC PARAMETERS` block before it must agree.
fn from_sec1(der: &[u8], params_block: Option<Curve>) -> Result<PrivateKey, String> {
    let parsed =
        sec1::EcPrivateKey::from_der(der).map_err(|e| format!("invalid SEC1 EC key ({e})"))?;
    let Some(params) = &parsed.parameters else {
        return Err("the SEC1 EC key names no curve (its parameters are missing)".into());
    };
    let oid = named_curve(params)?;
    let curve = Curve::from_oid(&oid)
        .ok_or_else(|| format!("unsupported EC curve {}", curve_name(&oid)))?;
    if let Some(block) = params_block
        && block != curve
    {
        return Err(format!(
            "the EC PARAMETERS block names {block}, the key names {curve}"
        ));
    }
    ec_from_parts(curve, &parsed)
}

/// The named curve of SEC1 parameters; explicit curve parameters are refused.
fn named_curve(params: &sec1::EcParameters) -> Result<ObjectIdentifier, String> {
    params.named_curve().ok_or_else(|| {
        "EC key with explicit curve parameters (only named curves are supported)".into()
    })
}

/// A curve OID as people know it.
fn curve_name(oid: &ObjectIdentifier) -> String {
    match Curve::from_oid(oid) {
        Some(c) => format!("{c} ({})", c.openssl_name()),
        None => oid.to_string(),
    }
}

fn decrypt_pkcs8(der: &[u8], pass: &PassphraseSource, label: &str) -> Result<PrivateKey> {
    let what = "cannot read private key";
    let enc = pkcs8::EncryptedPrivateKeyInfoRef::from_der(der)
        .map_err(|e| Error::parse(what, format!("invalid encrypted PKCS#8 ({e})")).file(label))?;
    if enc.encryption_algorithm.pbes2().is_none() {
        return Err(Error::parse(
            what,
            "encrypted with a legacy PKCS#5 v1 / PKCS#12 scheme; only PBES2 is supported",
        )
        .file(label)
        .hint(format!(
            "convert it first: openssl pkcs8 -topk8 -v2 aes-256-cbc -in {label} -out key.p8"
        )));
    }
    if let Some(params) = enc.encryption_algorithm.pbes2() {
        check_kdf_cost(&params.kdf).map_err(|why| {
            Error::parse(what, why)
                .file(label)
                .hint("re-encrypt it with devcert pkcs8 --encrypt (PBKDF2, 600000 rounds)")
        })?;
    }
    let pw = pass
        .read(&format!("private key {label}"), false)
        .map_err(|e| e.file(label))?;
    let doc = enc.decrypt(pw.as_slice()).map_err(|e| match e {
        pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::DecryptFailed)
        | pkcs8::Error::Asn1(_) => Error::new(
            ErrorKind::Passphrase,
            what,
            "wrong passphrase (or the file is corrupted)",
        )
        .file(label),
        other => Error::parse(what, format!("cannot decrypt: {other}")).file(label),
    })?;
    PrivateKey::from_pkcs8_der(doc.as_bytes()).map_err(|why| Error::parse(what, why).file(label))
}

/// PBKDF2 rounds accepted in a key file: 16x what `--encrypt` writes, a
/// few seconds of work. A hostile file naming 4 billion must not hang us.
pub const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;
/// scrypt memory (128 * N * r * p bytes) accepted in a key file: 8x
/// OpenSSL's default (N=16384, r=8, p=1 is 16 MiB).
pub const MAX_SCRYPT_BYTES: u64 = 128 << 20;

/// Refuses key-derivation parameters that would take absurd time or memory
/// (or that the KDF itself cannot take: scrypt N must be a power of two).
fn check_kdf_cost(kdf: &pkcs8::pkcs5::pbes2::Kdf) -> Result<(), String> {
    if let Some(p) = kdf.pbkdf2()
        && p.iteration_count > MAX_PBKDF2_ROUNDS
    {
        return Err(format!(
            "its PBKDF2 iteration count {} is over the limit of {MAX_PBKDF2_ROUNDS}",
            p.iteration_count
        ));
    }
    if let Some(p) = kdf.scrypt() {
        let n = p.cost_parameter;
        if n < 2 || !n.is_power_of_two() || p.block_size == 0 || p.parallelization == 0 {
            return Err(format!(
                "invalid scrypt parameters (N={n}, r={}, p={})",
                p.block_size, p.parallelization
            ));
        }
        let bytes =
            128u128 * u128::from(n) * u128::from(p.block_size) * u128::from(p.parallelization);
        if bytes > u128::from(MAX_SCRYPT_BYTES) {
            return Err(format!(
                "its scrypt cost (N={n}, r={}, p={}) needs more than {} MiB",
                p.block_size,
                p.parallelization,
                MAX_SCRYPT_BYTES >> 20
            ));
        }
    }
    Ok(())
}

/// The SubjectPublicKeyInfo's algorithm as a [`KeyAlgo`], if supported.
pub fn spki_algo(spki: &spki::SubjectPublicKeyInfoRef<'_>) -> Option<KeyAlgo> {
    match spki.algorithm.oid {
        OID_EC_PUBLIC_KEY => spki
            .algorithm
            .parameters_oid()
            .ok()
            .and_then(|o| Curve::from_oid(&o))
            .map(KeyAlgo::Ec),
        OID_RSA_ENCRYPTION => {
            let key = pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(
                spki.subject_public_key.raw_bytes(),
            )
            .ok()?;
            let n = key.modulus.as_bytes();
            let lead = n.iter().take_while(|&&b| b == 0).count();
            let bits = (n.len() - lead) * 8 - n.get(lead).map_or(0, |b| b.leading_zeros() as usize);
            Some(KeyAlgo::Rsa(bits))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algo_spec_defaults_and_overrides() {
        let spec = |s: &str| s.parse::<AlgoSpec>().unwrap();
        assert_eq!(
            spec("rsa").with_default_bits(Some(3072)),
            Ok(KeyAlgo::Rsa(3072))
        );
        assert_eq!(
            spec("RSA:2048").with_default_bits(Some(3072)),
            Ok(KeyAlgo::Rsa(2048))
        );
        assert_eq!(
            spec("ec").with_default_bits(Some(3072)),
            Ok(KeyAlgo::Ec(Curve::P256))
        );
        assert!(spec("rsa").with_default_bits(Some(1000)).is_err());
        assert_eq!(
            spec("rsa").with_overrides(Some(4096), None),
            Ok(KeyAlgo::Rsa(4096))
        );
        assert_eq!(
            spec("ec").with_overrides(None, Some(Curve::P384)),
            Ok(KeyAlgo::Ec(Curve::P384))
        );
        assert_eq!(
            spec("rsa:4096").with_overrides(Some(4096), None),
            Ok(KeyAlgo::Rsa(4096))
        );
        assert!(spec("rsa:3072").with_overrides(Some(4096), None).is_err());
        assert!(
            spec("p384")
                .with_overrides(None, Some(Curve::P256))
                .is_err()
        );
    }

    #[test]
    fn algo_aliases() {
        assert_eq!("ec".parse::<KeyAlgo>().unwrap(), KeyAlgo::Ec(Curve::P256));
        assert_eq!("rsa".parse::<KeyAlgo>().unwrap(), KeyAlgo::Rsa(2048));
        assert_eq!("rsa:4096".parse::<KeyAlgo>().unwrap(), KeyAlgo::Rsa(4096));
        assert_eq!(
            "ec:secp384r1".parse::<KeyAlgo>().unwrap(),
            KeyAlgo::Ec(Curve::P384)
        );
        assert_eq!(
            "prime256v1".parse::<KeyAlgo>().unwrap(),
            KeyAlgo::Ec(Curve::P256)
        );
        assert_eq!(
            "P-384".parse::<KeyAlgo>().unwrap(),
            KeyAlgo::Ec(Curve::P384)
        );
        assert!("rsa:1000".parse::<KeyAlgo>().is_err());
        assert!("dsa".parse::<KeyAlgo>().is_err());
    }

    #[test]
    fn ec_roundtrips_through_every_format() {
        let key = PrivateKey::generate(KeyAlgo::Ec(Curve::P256)).unwrap();
        for (fmt, tag) in [
            (KeyFormat::Pkcs8, "PRIVATE KEY"),
            (KeyFormat::Sec1, "EC PRIVATE KEY"),
        ] {
            let pem = key.encode(fmt, true, None).unwrap();
            assert!(
                std::str::from_utf8(&pem)
                    .unwrap()
                    .starts_with(&format!("-----BEGIN {tag}-----\n"))
            );
            let (back, _) = PrivateKey::load(
                &Input::from_bytes("k", pem.to_vec()),
                &PassphraseSource::Prompt,
            )
            .unwrap();
            assert_eq!(back.pkcs8_der(), key.pkcs8_der());
            // The fast path for generated keys must give the SPKI the generic path computes.
            assert_eq!(back.spki_der(), key.spki_der());
        }
        assert!(key.encode(KeyFormat::Pkcs1, true, None).is_err());
    }

    /// An encrypted key whose KDF parameters are `kdf`; the ciphertext is
    /// junk, so only a check before decryption can answer sensibly.
    fn encrypted_with(kdf: pkcs8::pkcs5::pbes2::Kdf) -> Input {
        use pkcs8::pkcs5::pbes2;
        let params = pbes2::Parameters {
            kdf,
            encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: [7; 16] },
        };
        let der = pkcs8::EncryptedPrivateKeyInfoRef {
            encryption_algorithm: params.into(),
            encrypted_data: der::asn1::OctetStringRef::new(&[0u8; 48]).unwrap(),
        }
        .to_der()
        .unwrap();
        Input::from_bytes("hostile.key", der)
    }

    #[test]
    fn absurd_kdf_costs_are_refused_before_asking_for_a_passphrase() {
        use pkcs8::pkcs5::pbes2::{Kdf, Pbkdf2Params, Pbkdf2Prf, ScryptParams};
        let salt = pkcs8::pkcs5::pbes2::Salt::new([1u8; 16]).unwrap();
        let pbkdf2 = |rounds| {
            Kdf::Pbkdf2(Pbkdf2Params {
                salt,
                iteration_count: rounds,
                key_length: None,
                prf: Pbkdf2Prf::HmacWithSha256,
            })
        };
        let scrypt = |n, r, p| {
            Kdf::Scrypt(ScryptParams {
                salt,
                cost_parameter: n,
                block_size: r,
                parallelization: p,
                key_length: None,
            })
        };
        for (kdf, needle) in [
            (pbkdf2(u32::MAX), "iteration count"),
            (scrypt(1 << 30, 8, 1), "scrypt cost"),
            (scrypt(16384, 8, 65535), "scrypt cost"),
            (scrypt(0, 8, 1), "invalid scrypt"),
            (scrypt(1000, 8, 1), "invalid scrypt"),
        ] {
            // Prompt + no TTY would fail differently: the cap comes first.
            let e = PrivateKey::load(&encrypted_with(kdf), &PassphraseSource::Prompt).unwrap_err();
            assert!(e.why.contains(needle), "{e}");
            assert_eq!(e.file.as_deref(), Some("hostile.key"));
        }
        // Within the caps: on to the passphrase (none here: no TTY).
        let e = PrivateKey::load(&encrypted_with(pbkdf2(600_000)), &PassphraseSource::Prompt)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Passphrase);
    }

    #[test]
    fn encrypted_roundtrip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        let bad = dir.path().join("bad");
        std::fs::write(&good, "secret\n").unwrap();
        std::fs::write(&bad, "nope").unwrap();
        let key = PrivateKey::generate(KeyAlgo::Ec(Curve::P384)).unwrap();
        let enc = key
            .encode(KeyFormat::Pkcs8, false, Some(b"secret"))
            .unwrap();
        let input = Input::from_bytes("k.der", enc.to_vec());
        let src = PassphraseSource::File(good.to_str().unwrap().into());
        let (back, how) = PrivateKey::load(&input, &src).unwrap();
        assert_eq!(how, KeyEncoding::EncryptedPkcs8);
        assert_eq!(back.pkcs8_der(), key.pkcs8_der());
        let e = PrivateKey::load(
            &input,
            &PassphraseSource::File(bad.to_str().unwrap().into()),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Passphrase);
    }
}
