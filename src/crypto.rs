//! Signing and signature verification over raw bytes: the one place that
//! knows signature algorithm identifiers.
//!
//! Signing goes through ring where it has the (curve, digest) pair, since it
//! is 3-5x faster than the pure-Rust signers (PITFALLS.md); the rest (e.g. a
//! P-256 key with `--digest sha384`) uses the RustCrypto signers. Verification
//! uses the RustCrypto verifiers for every pair, including SHA-1 for old CAs.
//! A key in a PKCS#11 token signs through the same [`Signer`]: the host
//! hashes, the token signs (see `pkcs11.rs`).

use std::path::Path;
use std::sync::Arc;

use der::Decode;
use der::asn1::{AnyRef, ObjectIdentifier};
use pkcs1::DecodeRsaPublicKey;
use pkcs8::DecodePrivateKey;
use sha2::Digest as _;
use signature::hazmat::{PrehashSigner, PrehashVerifier};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoRef};

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::input::Input;
use crate::keys::{Curve, KeyAlgo, OID_EC_PUBLIC_KEY, OID_RSA_ENCRYPTION, PrivateKey};
use crate::passphrase::PassphraseSource;
use crate::pkcs11::{Pkcs11Uri, TokenKey};

const ECDSA_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const RSA_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// The signature AlgorithmIdentifier for `algo` with `digest`, encoded as
/// OpenSSL does (RSA with NULL parameters, ECDSA with none).
pub fn signature_algorithm(algo: KeyAlgo, digest: Digest) -> AlgorithmIdentifierOwned {
    let (oid, null) = match (algo, digest) {
        (KeyAlgo::Ec(_), Digest::Sha256) => (ECDSA_SHA256, false),
        (KeyAlgo::Ec(_), Digest::Sha384) => (ECDSA_SHA384, false),
        (KeyAlgo::Ec(_), Digest::Sha512) => (ECDSA_SHA512, false),
        (KeyAlgo::Rsa(_), Digest::Sha256) => (RSA_SHA256, true),
        (KeyAlgo::Rsa(_), Digest::Sha384) => (RSA_SHA384, true),
        (KeyAlgo::Rsa(_), Digest::Sha512) => (RSA_SHA512, true),
    };
    AlgorithmIdentifierOwned {
        oid,
        parameters: null.then(|| der::asn1::Any::from(AnyRef::NULL)),
    }
}

/// A short name for a signature algorithm OID (`ecdsa-with-SHA256`), as
/// OpenSSL prints it.
pub fn signature_algorithm_name(oid: &ObjectIdentifier) -> String {
    match *oid {
        ECDSA_SHA1 => "ecdsa-with-SHA1".into(),
        ECDSA_SHA256 => "ecdsa-with-SHA256".into(),
        ECDSA_SHA384 => "ecdsa-with-SHA384".into(),
        ECDSA_SHA512 => "ecdsa-with-SHA512".into(),
        RSA_SHA1 => "sha1WithRSAEncryption".into(),
        RSA_SHA256 => "sha256WithRSAEncryption".into(),
        RSA_SHA384 => "sha384WithRSAEncryption".into(),
        RSA_SHA512 => "sha512WithRSAEncryption".into(),
        // Algorithms devcert does not sign with, named for `inspect`.
        other => match other.to_string().as_str() {
            "1.2.840.113549.1.1.4" => "md5WithRSAEncryption".into(),
            "1.2.840.113549.1.1.10" => "rsassaPss".into(),
            "1.3.101.112" => "ED25519".into(),
            "1.3.101.113" => "ED448".into(),
            dotted => dotted.into(),
        },
    }
}

/// A private key to sign with: read from a file, or kept in a PKCS#11
/// token and used there.
pub struct SigningKey {
    /// The file name, or the URI without its query (never a PIN).
    label: String,
    held: Held,
}

enum Held {
    File(PrivateKey),
    Token(Arc<TokenKey>),
}

impl SigningKey {
    pub fn file(key: PrivateKey, label: impl Into<String>) -> SigningKey {
        SigningKey {
            label: label.into(),
            held: Held::File(key),
        }
    }

    pub fn token(key: TokenKey) -> SigningKey {
        SigningKey {
            label: key.label(),
            held: Held::Token(Arc::new(key)),
        }
    }

    /// Opens `arg`: a `pkcs11:` URI (the token's module from the URI's
    /// `module-path`, else `module`), or a key file in any format devcert
    /// reads (`pass` asked only if it is encrypted).
    pub fn open(arg: &str, pass: &PassphraseSource, module: Option<&Path>) -> Result<SigningKey> {
        if crate::pkcs11::is_uri(arg) {
            let uri = Pkcs11Uri::parse(arg).map_err(|why| {
                // The URI may hold a PIN: name the argument, not its text.
                Error::new(ErrorKind::Parse, "invalid PKCS#11 URI", why).file("pkcs11:")
            })?;
            return Ok(SigningKey::token(TokenKey::open(&uri, module)?));
        }
        let input = Input::read(arg)?;
        let loaded = PrivateKey::load(&input, pass);
        input.wipe();
        Ok(SigningKey::file(loaded?.0, arg))
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn algo(&self) -> KeyAlgo {
        match &self.held {
            Held::File(k) => k.algo(),
            Held::Token(t) => t.algo(),
        }
    }

    /// The key read from a file, for what only a file key does (encode).
    pub fn file_key(&self) -> Option<&PrivateKey> {
        match &self.held {
            Held::File(k) => Some(k),
            Held::Token(_) => None,
        }
    }

    /// The token key, for what only a token key does (`destroy`).
    pub fn token_key(&self) -> Option<&TokenKey> {
        match &self.held {
            Held::File(_) => None,
            Held::Token(t) => Some(t),
        }
    }

    /// SubjectPublicKeyInfo DER of the public half.
    pub fn spki_der(&self) -> Result<&[u8]> {
        match &self.held {
            Held::File(k) => Ok(k.spki_der()),
            Held::Token(t) => t.spki_der().ok_or_else(|| {
                Error::new(
                    ErrorKind::Token,
                    "cannot read the public key",
                    "the token has no public key object beside this private key",
                )
                .file(&self.label)
                .hint("import the public key into the token with the same id")
            }),
        }
    }

    /// Whether this key is the private half of `spki_der`.
    pub fn matches_spki(&self, spki_der: &[u8]) -> Result<bool> {
        match &self.held {
            Held::File(k) => Ok(k.matches_spki(spki_der)),
            Held::Token(t) => t.proves(spki_der),
        }
    }

    pub fn signer(&self, digest: Digest) -> Result<Signer> {
        match &self.held {
            Held::File(k) => Signer::new(k, digest),
            Held::Token(t) => Ok(Signer {
                backend: Backend::Token(Arc::clone(t)),
                digest,
                algorithm: signature_algorithm(t.algo(), digest),
            }),
        }
    }
}

/// A token's signature over `msg`: hashed here, signed there, ECDSA's
/// raw r||s turned into the DER ECDSA-Sig-Value X.509 wants.
pub(crate) fn token_signature(key: &TokenKey, digest: Digest, msg: &[u8]) -> Result<Vec<u8>> {
    let h = hash(digest, msg);
    match key.algo() {
        KeyAlgo::Ec(curve) => {
            let raw = key.sign_raw(&h)?;
            let bad = |e: ecdsa::Error| {
                Error::crypto("the token returned a malformed ECDSA signature", e).file(key.label())
            };
            Ok(match curve {
                Curve::P256 => p256::ecdsa::Signature::from_slice(&raw)
                    .map_err(bad)?
                    .to_der()
                    .as_bytes()
                    .to_vec(),
                Curve::P384 => p384::ecdsa::Signature::from_slice(&raw)
                    .map_err(bad)?
                    .to_der()
                    .as_bytes()
                    .to_vec(),
            })
        }
        KeyAlgo::Rsa(_) => {
            let mut digest_info = pkcs1v15_scheme(digest).prefix.to_vec();
            digest_info.extend_from_slice(&h);
            key.sign_raw(&digest_info)
        }
    }
}

enum Backend {
    Token(Arc<TokenKey>),
    RingEc(ring::signature::EcdsaKeyPair),
    RingRsa(
        ring::signature::RsaKeyPair,
        &'static dyn ring::signature::RsaEncoding,
    ),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa(rsa::PrivateKey),
}

/// A private key ready to sign with one digest.
pub struct Signer {
    backend: Backend,
    digest: Digest,
    algorithm: AlgorithmIdentifierOwned,
}

impl Signer {
    pub fn new(key: &PrivateKey, digest: Digest) -> Result<Signer> {
        let der = key.pkcs8_der();
        let err = |e: &dyn std::fmt::Display| Error::crypto("cannot use key for signing", e);
        let rng = ring::rand::SystemRandom::new();
        use ring::signature as rs;
        let ring_ec = match (key.algo(), digest) {
            (KeyAlgo::Ec(c @ Curve::P256), Digest::Sha256)
            | (KeyAlgo::Ec(c @ Curve::P384), Digest::Sha384) => {
                Some(crate::keys::ring_signing_alg(c))
            }
            _ => None,
        };
        let backend = match (key.algo(), ring_ec) {
            (_, Some(alg)) => {
                Backend::RingEc(rs::EcdsaKeyPair::from_pkcs8(alg, der, &rng).map_err(|e| err(&e))?)
            }
            (KeyAlgo::Ec(Curve::P256), None) => {
                Backend::P256(p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|e| err(&e))?)
            }
            (KeyAlgo::Ec(Curve::P384), None) => {
                Backend::P384(p384::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|e| err(&e))?)
            }
            (KeyAlgo::Rsa(bits), None) => {
                let encoding: &'static dyn ring::signature::RsaEncoding = match digest {
                    Digest::Sha256 => &rs::RSA_PKCS1_SHA256,
                    Digest::Sha384 => &rs::RSA_PKCS1_SHA384,
                    Digest::Sha512 => &rs::RSA_PKCS1_SHA512,
                };
                // ring refuses keys under 2048 bits; those still sign, slower.
                match rs::RsaKeyPair::from_pkcs8(der) {
                    Ok(kp) if bits >= 2048 => Backend::RingRsa(kp, encoding),
                    _ => Backend::Rsa(rsa::PrivateKey::from_pkcs8_der(der).map_err(|e| err(&e))?),
                }
            }
        };
        Ok(Signer {
            backend,
            digest,
            algorithm: signature_algorithm(key.algo(), digest),
        })
    }

    pub fn algorithm(&self) -> &AlgorithmIdentifierOwned {
        &self.algorithm
    }

    /// The signature over `msg` (DER ECDSA-Sig-Value or PKCS#1 v1.5 bytes).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        let err = |e: &dyn std::fmt::Display| Error::crypto("signing failed", e);
        let rng = ring::rand::SystemRandom::new();
        match &self.backend {
            Backend::Token(t) => token_signature(t, self.digest, msg),
            Backend::RingEc(kp) => Ok(kp.sign(&rng, msg).map_err(|e| err(&e))?.as_ref().to_vec()),
            Backend::RingRsa(kp, enc) => {
                let mut sig = vec![0u8; kp.public().modulus_len()];
                kp.sign(*enc, &rng, msg, &mut sig).map_err(|e| err(&e))?;
                Ok(sig)
            }
            Backend::P256(k) => {
                let s: p256::ecdsa::DerSignature = k
                    .sign_prehash(&hash(self.digest, msg))
                    .map_err(|e| err(&e))?;
                Ok(s.as_bytes().to_vec())
            }
            Backend::P384(k) => {
                let s: p384::ecdsa::DerSignature = k
                    .sign_prehash(&hash(self.digest, msg))
                    .map_err(|e| err(&e))?;
                Ok(s.as_bytes().to_vec())
            }
            Backend::Rsa(k) => k
                .sign(pkcs1v15_scheme(self.digest), &hash(self.digest, msg))
                .map_err(|e| err(&e)),
        }
    }
}

fn hash(digest: Digest, msg: &[u8]) -> Vec<u8> {
    match digest {
        Digest::Sha256 => sha2::Sha256::digest(msg).to_vec(),
        Digest::Sha384 => sha2::Sha384::digest(msg).to_vec(),
        Digest::Sha512 => sha2::Sha512::digest(msg).to_vec(),
    }
}

fn pkcs1v15_scheme(digest: Digest) -> rsa::Pkcs1v15Sign {
    match digest {
        Digest::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        Digest::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        Digest::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
    }
}

/// ring's verifier for this curve and ECDSA digest, if it has one.
fn ring_ecdsa(
    curve: Curve,
    sig_oid: ObjectIdentifier,
) -> Option<&'static ring::signature::EcdsaVerificationAlgorithm> {
    use ring::signature as r;
    match (curve, sig_oid) {
        (Curve::P256, ECDSA_SHA256) => Some(&r::ECDSA_P256_SHA256_ASN1),
        (Curve::P256, ECDSA_SHA384) => Some(&r::ECDSA_P256_SHA384_ASN1),
        (Curve::P384, ECDSA_SHA256) => Some(&r::ECDSA_P384_SHA256_ASN1),
        (Curve::P384, ECDSA_SHA384) => Some(&r::ECDSA_P384_SHA384_ASN1),
        _ => None,
    }
}

/// Checks `sig` over `msg` with the public key `spki_der` under the
/// signature algorithm `alg`. The error says why, in the user's terms.
pub fn verify(
    spki_der: &[u8],
    alg: &AlgorithmIdentifierOwned,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|e| format!("unreadable public key ({e})"))?;
    let key_bytes = spki.subject_public_key.raw_bytes();
    let bad = || "signature does not verify".to_string();
    match (spki.algorithm.oid, alg.oid) {
        (OID_EC_PUBLIC_KEY, ECDSA_SHA1 | ECDSA_SHA256 | ECDSA_SHA384 | ECDSA_SHA512) => {
            let curve = spki
                .algorithm
                .parameters_oid()
                .ok()
                .and_then(|o| Curve::from_oid(&o))
                .ok_or("unsupported EC curve (devcert supports P-256 and P-384)")?;
            // The key is checked (and a bad one named) by the RustCrypto
            // types in every case.
            let valid = match curve {
                Curve::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes).is_ok(),
                Curve::P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes).is_ok(),
            };
            if !valid {
                return Err("invalid EC public key".into());
            }
            // ring verifies the same signatures about five times faster (the
            // broker plugin checks a chain on a device's first connect); it
            // takes uncompressed points with SHA-256/384 only.
            if let (Some(ring_alg), Some(4)) = (ring_ecdsa(curve, alg.oid), key_bytes.first()) {
                return ring::signature::UnparsedPublicKey::new(ring_alg, key_bytes)
                    .verify(msg, sig)
                    .map_err(|_| bad());
            }
            let prehash = match alg.oid {
                ECDSA_SHA1 => sha1::Sha1::digest(msg).to_vec(),
                ECDSA_SHA256 => hash(Digest::Sha256, msg),
                ECDSA_SHA384 => hash(Digest::Sha384, msg),
                _ => hash(Digest::Sha512, msg),
            };
            match curve {
                Curve::P256 => {
                    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map_err(|_| "invalid EC public key")?;
                    let s = p256::ecdsa::DerSignature::from_bytes(sig).map_err(|_| bad())?;
                    vk.verify_prehash(&prehash, &s).map_err(|_| bad())
                }
                Curve::P384 => {
                    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map_err(|_| "invalid EC public key")?;
                    let s = p384::ecdsa::DerSignature::from_bytes(sig).map_err(|_| bad())?;
                    vk.verify_prehash(&prehash, &s).map_err(|_| bad())
                }
            }
        }
        (OID_RSA_ENCRYPTION, RSA_SHA1 | RSA_SHA256 | RSA_SHA384 | RSA_SHA512) => {
            let key = rsa::PublicKey::from_pkcs1_der(key_bytes)
                .map_err(|e| format!("invalid RSA public key ({e})"))?;
            let (scheme, prehash) = match alg.oid {
                RSA_SHA1 => (
                    rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
                    sha1::Sha1::digest(msg).to_vec(),
                ),
                RSA_SHA256 => (pkcs1v15_scheme(Digest::Sha256), hash(Digest::Sha256, msg)),
                RSA_SHA384 => (pkcs1v15_scheme(Digest::Sha384), hash(Digest::Sha384, msg)),
                _ => (pkcs1v15_scheme(Digest::Sha512), hash(Digest::Sha512, msg)),
            };
            key.verify(scheme, &prehash, sig).map_err(|_| bad())
        }
        (key_oid, sig_oid) => Err(format!(
            "unsupported signature algorithm {} for a {} key",
            signature_algorithm_name(&sig_oid),
            if key_oid == OID_RSA_ENCRYPTION {
                "RSA".to_string()
            } else if key_oid == OID_EC_PUBLIC_KEY {
                "EC".to_string()
            } else {
                key_oid.to_string()
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_and_digest_signs_and_verifies() {
        for algo in [
            KeyAlgo::Ec(Curve::P256),
            KeyAlgo::Ec(Curve::P384),
            KeyAlgo::Rsa(2048),
        ] {
            let key = PrivateKey::generate(algo).unwrap();
            for digest in [Digest::Sha256, Digest::Sha384, Digest::Sha512] {
                let s = Signer::new(&key, digest).unwrap();
                let sig = s.sign(b"message").unwrap();
                verify(key.spki_der(), s.algorithm(), b"message", &sig).unwrap();
                assert!(verify(key.spki_der(), s.algorithm(), b"messagE", &sig).is_err());
            }
        }
    }
}
