//! What a public or private key is: algorithm, size or curve, format and
//! the SHA-256 fingerprint of its public half. Private key material is
//! never copied into the result.

use const_oid::ObjectIdentifier;
use der::Decode;
use pkcs8::pkcs5::{EncryptionScheme, pbes2};
use serde::Serialize;
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use crate::batch::fingerprint;
use crate::keys::{Curve, KeyAlgo, KeyEncoding, OID_EC_PUBLIC_KEY, PrivateKey, spki_algo};

/// A public key as certificates, CSRs and key files show it.
#[derive(Debug, Clone, Serialize)]
pub struct PublicKeyInfo {
    /// `RSA`, `EC`, `Ed25519`, ... or the algorithm OID.
    pub algorithm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits: Option<usize>,
    /// OpenSSL's curve name (`prime256v1`) or the curve OID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curve: Option<String>,
    /// SHA-256 of the SubjectPublicKeyInfo DER (`openssl pkey -pubout
    /// -outform DER | openssl dgst -sha256`), the same for a key, its CSR
    /// and its certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256_fingerprint: Option<String>,
}

/// A private key file: how it is stored and, when it can be read without a
/// passphrase, what key it holds.
#[derive(Debug, Clone, Serialize)]
pub struct PrivateKeyInfo {
    /// `PKCS#8`, `SEC1` or `PKCS#1`.
    pub format: &'static str,
    pub encrypted: bool,
    /// The scheme of an encrypted key (`PBES2 PBKDF2-HMAC-SHA256 ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// Absent for an encrypted key: reading it needs the passphrase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyInfo>,
    /// Why the key could not be fully read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A public key file.
#[derive(Debug, Clone, Serialize)]
pub struct PublicKeyFile {
    /// `SPKI` (`BEGIN PUBLIC KEY`) or `PKCS#1` (`BEGIN RSA PUBLIC KEY`).
    pub format: &'static str,
    pub public_key: PublicKeyInfo,
}

const fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

const ALGORITHMS: &[(ObjectIdentifier, &str)] = &[
    (oid("1.2.840.113549.1.1.10"), "RSASSA-PSS"),
    (oid("1.2.840.10040.4.1"), "DSA"),
    (oid("1.3.101.110"), "X25519"),
    (oid("1.3.101.111"), "X448"),
    (oid("1.3.101.112"), "Ed25519"),
    (oid("1.3.101.113"), "Ed448"),
];

/// Curves devcert does not use but should name.
const OTHER_CURVES: &[(ObjectIdentifier, &str)] = &[
    (oid("1.3.132.0.35"), "secp521r1"),
    (oid("1.3.132.0.10"), "secp256k1"),
    (oid("1.3.36.3.3.2.8.1.1.7"), "brainpoolP256r1"),
    (oid("1.3.36.3.3.2.8.1.1.11"), "brainpoolP384r1"),
];

pub fn describe_spki(spki_der: &[u8]) -> PublicKeyInfo {
    let mut info = match SubjectPublicKeyInfoRef::from_der(spki_der) {
        Ok(spki) => match spki_algo(&spki) {
            Some(algo) => from_algo(algo),
            None => describe_algorithm(&spki.algorithm),
        },
        Err(e) => PublicKeyInfo {
            algorithm: format!("unreadable ({e})"),
            bits: None,
            curve: None,
            sha256_fingerprint: None,
        },
    };
    info.sha256_fingerprint = Some(fingerprint(spki_der));
    info
}

fn from_algo(algo: KeyAlgo) -> PublicKeyInfo {
    let (algorithm, bits, curve) = match algo {
        KeyAlgo::Rsa(bits) => ("RSA", Some(bits), None),
        KeyAlgo::Ec(c) => ("EC", None, Some(c.openssl_name().to_string())),
    };
    PublicKeyInfo {
        algorithm: algorithm.into(),
        bits,
        curve,
        sha256_fingerprint: None,
    }
}

/// An algorithm devcert cannot use, named as far as possible.
fn describe_algorithm(alg: &AlgorithmIdentifierRef<'_>) -> PublicKeyInfo {
    let name = |table: &[(ObjectIdentifier, &str)], o: &ObjectIdentifier| {
        table
            .iter()
            .find(|(k, _)| k == o)
            .map_or(o.to_string(), |(_, n)| n.to_string())
    };
    let (algorithm, curve) = if alg.oid == OID_EC_PUBLIC_KEY {
        let curve = alg
            .parameters_oid()
            .ok()
            .map(|c| match Curve::from_oid(&c) {
                Some(known) => known.openssl_name().to_string(),
                None => name(OTHER_CURVES, &c),
            });
        (
            "EC".to_string(),
            curve.or(Some("explicit parameters".into())),
        )
    } else {
        (name(ALGORITHMS, &alg.oid), None)
    };
    PublicKeyInfo {
        algorithm,
        bits: None,
        curve,
        sha256_fingerprint: None,
    }
}

/// A private key block in a known encoding.
pub fn describe_private(
    der: &[u8],
    encoding: KeyEncoding,
    curve_hint: Option<Curve>,
) -> PrivateKeyInfo {
    let format = match encoding {
        KeyEncoding::Pkcs8 | KeyEncoding::EncryptedPkcs8 => "PKCS#8",
        KeyEncoding::Sec1 => "SEC1",
        KeyEncoding::Pkcs1 => "PKCS#1",
    };
    let mut info = PrivateKeyInfo {
        format,
        encrypted: encoding == KeyEncoding::EncryptedPkcs8,
        encryption: None,
        public_key: None,
        problem: None,
    };
    if info.encrypted {
        info.encryption = Some(encryption_scheme(der));
        return info;
    }
    match PrivateKey::from_unencrypted(der, encoding, curve_hint) {
        Ok(key) => info.public_key = Some(describe_spki(key.spki_der())),
        Err(why) => {
            // Still say what the key is when its header can be read.
            info.public_key = pkcs8::PrivateKeyInfoRef::from_der(der)
                .ok()
                .map(|k| describe_algorithm(&k.algorithm));
            info.problem = Some(why);
        }
    }
    info
}

/// The encryption of an `EncryptedPrivateKeyInfo`, as OpenSSL names its parts.
fn encryption_scheme(der: &[u8]) -> String {
    let Ok(enc) = pkcs8::EncryptedPrivateKeyInfoRef::from_der(der) else {
        return "unknown scheme".into();
    };
    let EncryptionScheme::Pbes2(params) = &enc.encryption_algorithm else {
        return format!("PBES1 {} (legacy)", enc.encryption_algorithm.oid());
    };
    let kdf = match &params.kdf {
        pbes2::Kdf::Pbkdf2(p) => {
            let prf = match p.prf {
                pbes2::Pbkdf2Prf::HmacWithSha1 => "SHA1",
                pbes2::Pbkdf2Prf::HmacWithSha224 => "SHA224",
                pbes2::Pbkdf2Prf::HmacWithSha256 => "SHA256",
                pbes2::Pbkdf2Prf::HmacWithSha384 => "SHA384",
                pbes2::Pbkdf2Prf::HmacWithSha512 => "SHA512",
                _ => "?",
            };
            format!("PBKDF2-HMAC-{prf}, {} iterations", p.iteration_count)
        }
        pbes2::Kdf::Scrypt(_) => "scrypt".to_string(),
        other => other.oid().to_string(),
    };
    let cipher = match params.encryption {
        pbes2::EncryptionScheme::Aes128Cbc { .. } => "AES-128-CBC",
        pbes2::EncryptionScheme::Aes192Cbc { .. } => "AES-192-CBC",
        pbes2::EncryptionScheme::Aes256Cbc { .. } => "AES-256-CBC",
        pbes2::EncryptionScheme::Aes128Gcm { .. } => "AES-128-GCM",
        pbes2::EncryptionScheme::Aes256Gcm { .. } => "AES-256-GCM",
        pbes2::EncryptionScheme::DesEde3Cbc { .. } => "DES-EDE3-CBC",
        _ => "other cipher",
    };
    format!("PBES2, {kdf}, {cipher}")
}

/// A `BEGIN RSA PUBLIC KEY` (PKCS#1) block as an SPKI, so it is described
/// and fingerprinted like any other public key.
pub fn pkcs1_public_to_spki(der: &[u8]) -> Option<Vec<u8>> {
    use der::Encode;
    pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(der).ok()?;
    spki::SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: crate::keys::OID_RSA_ENCRYPTION,
            parameters: Some(der::asn1::AnyRef::NULL),
        },
        subject_public_key: der::asn1::BitStringRef::from_bytes(der).ok()?,
    }
    .to_der()
    .ok()
}
