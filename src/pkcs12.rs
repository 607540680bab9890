//! PKCS#12 (`.p12`/`.pfx`) bundles of a device key and its chain, for
//! clients that load a keystore rather than PEM files (Java's
//! `KeyStore.getInstance("PKCS12")`, Windows, Android).
//!
//! The encoding is done by the `p12-keystore` crate; this module picks the
//! algorithms, checks the inputs belong together and names the entry.

use p12_keystore::{
    Certificate as P12Cert, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm,
    PrivateKey as P12Key, PrivateKeyChain,
};
use serde::Serialize;
use sha1::Digest as _;

use crate::error::{Error, ErrorKind, Result};
use crate::input::LoadedCert;
use crate::keys::PrivateKey;

/// Which algorithms protect the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum P12Profile {
    /// PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for key and certificates,
    /// HMAC-SHA256 integrity MAC: what OpenSSL 3 and JDK 12+ write.
    Modern,
    /// pbeWithSHAAnd3-KeyTripleDES-CBC for key and certificates and an
    /// HMAC-SHA1 MAC: readable by Java 8 before 8u301, Windows before
    /// Server 2019 / 10 1709, and OpenSSL 3 without `-legacy` (no RC2).
    Legacy,
}

/// Key-derivation iterations. PBES2 at 100 000 rounds stays well under a
/// second on a small device's JVM; the legacy scheme uses Java 8's own
/// counts (50 000 for encryption, 100 000 for the MAC).
const MODERN_ITERATIONS: u32 = 100_000;
const LEGACY_ENC_ITERATIONS: u32 = 50_000;
const LEGACY_MAC_ITERATIONS: u32 = 100_000;

impl P12Profile {
    /// Human-readable names, for reports.
    pub fn encryption_name(self) -> &'static str {
        match self {
            P12Profile::Modern => "PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC",
            P12Profile::Legacy => "pbeWithSHAAnd3-KeyTripleDES-CBC",
        }
    }

    pub fn mac_name(self) -> &'static str {
        match self {
            P12Profile::Modern => "HMAC-SHA256",
            P12Profile::Legacy => "HMAC-SHA1",
        }
    }

    fn params(self) -> (EncryptionAlgorithm, u32, MacAlgorithm, u32) {
        match self {
            P12Profile::Modern => (
                EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
                MODERN_ITERATIONS,
                MacAlgorithm::HmacSha256,
                MODERN_ITERATIONS,
            ),
            P12Profile::Legacy => (
                EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
                LEGACY_ENC_ITERATIONS,
                MacAlgorithm::HmacSha1,
                LEGACY_MAC_ITERATIONS,
            ),
        }
    }
}

/// What went into a bundle, for the `--json` report.
#[derive(Debug, Clone, Serialize)]
pub struct P12Contents {
    pub friendly_name: String,
    pub encryption: &'static str,
    pub mac: &'static str,
    pub certificates: usize,
}

/// Bundles `key` with `chain` (leaf first, each certificate signed by the
/// next) under `friendly_name`, protected by `passphrase`.
///
/// The leaf must carry `key`'s public key: a keystore whose key and
/// certificate differ loads fine and fails only at the TLS handshake.
pub fn build_pkcs12(
    key: &PrivateKey,
    chain: &[LoadedCert],
    friendly_name: &str,
    passphrase: &[u8],
    profile: P12Profile,
) -> Result<(Vec<u8>, P12Contents)> {
    const WHAT: &str = "cannot build PKCS#12";
    let leaf = chain
        .first()
        .ok_or_else(|| Error::parse(WHAT, "no certificate given"))?;
    let leaf_spki = der::Encode::to_der(leaf.cert.tbs_certificate().subject_public_key_info())
        .map_err(|e| Error::crypto(WHAT, e))?;
    if !key.matches_spki(&leaf_spki) {
        return Err(
            Error::refused(WHAT, "the private key does not belong to the certificate")
                .file(&leaf.label)
                .hint("the first certificate (the leaf) must be the one issued for this key"),
        );
    }
    let password = std::str::from_utf8(passphrase).map_err(|_| {
        Error::new(
            ErrorKind::Passphrase,
            WHAT,
            "the passphrase is not UTF-8 text (PKCS#12 passwords are Unicode)",
        )
    })?;
    let p12_err = |e: p12_keystore::error::Error| Error::crypto(WHAT, e);
    let certs = chain
        .iter()
        .map(|c| P12Cert::from_der(&c.der).map_err(|e| Error::crypto(WHAT, e).file(&c.label)))
        .collect::<Result<Vec<_>>>()?;
    // localKeyID ties the key to its certificate; OpenSSL uses the SHA-1
    // of the certificate, so do we.
    let local_key_id = sha1::Sha1::digest(&leaf.der).to_vec();
    let entry = PrivateKeyChain::new(
        local_key_id,
        P12Key::from_der(key.pkcs8_der()).map_err(p12_err)?,
        certs,
    );
    let mut store = KeyStore::new();
    store.add_entry(friendly_name, KeyStoreEntry::PrivateKeyChain(entry));
    let (enc, enc_iter, mac, mac_iter) = profile.params();
    let bytes = store
        .writer(password)
        .encryption_algorithm(enc)
        .encryption_iterations(enc_iter)
        .mac_algorithm(mac)
        .mac_iterations(mac_iter)
        .write()
        .map_err(p12_err)?;
    Ok((
        bytes,
        P12Contents {
            friendly_name: friendly_name.to_string(),
            encryption: profile.encryption_name(),
            mac: profile.mac_name(),
            certificates: chain.len(),
        },
    ))
}
