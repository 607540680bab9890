//! The CAs the workflow presumes: a self-signed root, or an intermediate
//! signed by a parent CA. Both carry keyUsage keyCertSign + cRLSign, since a
//! broker with a CRL configured refuses every device of a CA without cRLSign.

use der::Decode;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::name::Name;

use crate::crypto::SigningKey;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::profile::ExtensionProfile;
use crate::sign::{CaSigner, CertRequest, Issued, Lifetime, build_certificate};

/// Default CA lifetime (CLI.md: 3650 days for `ca`).
pub const DEFAULT_CA_DAYS: u32 = 3650;

/// A self-signed root CA certificate for `key`.
pub fn make_root(
    key: &SigningKey,
    subject: &Name,
    lifetime: Lifetime,
    pathlen: Option<u8>,
    digest: Digest,
) -> Result<Issued> {
    let spki = SubjectPublicKeyInfoOwned::from_der(key.spki_der()?)
        .map_err(|e| Error::crypto("cannot encode key", e))?;
    let signer = key.signer(digest)?;
    let profile = ExtensionProfile::ca(pathlen);
    build_certificate(
        &signer,
        subject,
        None,
        &CertRequest {
            subject,
            spki: &spki,
            profile: &profile,
            lifetime,
            serial: None,
        },
    )
}

/// An intermediate CA certificate for `key`, signed by `parent`.
pub fn make_intermediate(
    parent: &CaSigner,
    key: &SigningKey,
    subject: &Name,
    lifetime: Lifetime,
    pathlen: Option<u8>,
) -> Result<Issued> {
    let spki = SubjectPublicKeyInfoOwned::from_der(key.spki_der()?)
        .map_err(|e| Error::crypto("cannot encode key", e))?;
    let profile = ExtensionProfile::ca(pathlen);
    parent.issue(&CertRequest {
        subject,
        spki: &spki,
        profile: &profile,
        lifetime,
        serial: None,
    })
}
