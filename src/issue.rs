//! The seed's whole workflow for one device, in memory and then on disk:
//! key, CSR, certificate, PKCS#8 key and leaf-then-CA chain, written under
//! the seed's five file names all together or not at all.

use std::path::Path;

use der::Decode;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use zeroize::Zeroizing;

use crate::crypto::Signer;
use crate::csr::build_csr;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::keys::{KeyAlgo, KeyFormat, PrivateKey, pem_encode};
use crate::output::{Mode, Staged, commit_all, commit_files, create_folders, parents_of, stage};
use crate::profile::ExtensionProfile;
use crate::sign::{CaSigner, CertRequest, Lifetime};

pub const KEY_FILE: &str = "client.key";
pub const CSR_FILE: &str = "client.csr";
pub const CERT_FILE: &str = "client.crt";
pub const PKCS8_FILE: &str = "client_pkcs8.key";
pub const CHAIN_FILE: &str = "client_chain.crt";
pub const DEVICE_FILES: [&str; 5] = [KEY_FILE, CSR_FILE, CERT_FILE, PKCS8_FILE, CHAIN_FILE];

/// What one device gets.
pub struct DeviceSpec<'a> {
    pub algo: KeyAlgo,
    pub subject: &'a Name,
    /// `req_extensions` of the CSR config, if any.
    pub req_extensions: Option<&'a ExtensionProfile>,
    pub profile: &'a ExtensionProfile,
    pub lifetime: Lifetime,
    pub digest: Digest,
    /// Encrypt both key files with this passphrase.
    pub key_passphrase: Option<&'a [u8]>,
}

/// The five files of one device, ready to write.
pub struct DeviceFiles {
    /// The key PEM (both key files hold it), wiped when dropped.
    pub key: Zeroizing<Vec<u8>>,
    pub csr: Vec<u8>,
    pub cert: Vec<u8>,
    pub chain: Vec<u8>,
    pub cert_der: Vec<u8>,
    pub serial: SerialNumber,
    pub warnings: Vec<String>,
}

/// Runs the workflow in memory. The CSR is made and signed like
/// `openssl req -new`; the certificate takes the CSR's subject and key.
pub fn make_device(ca: &CaSigner, spec: &DeviceSpec<'_>) -> Result<DeviceFiles> {
    let key = PrivateKey::generate(spec.algo)?;
    let csr = build_csr(
        key.spki_der(),
        &Signer::new(&key, spec.digest)?,
        spec.subject,
        spec.req_extensions,
        Vec::new(),
    )?;
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(key.spki_der())
        .map_err(|e| Error::crypto("cannot encode key", e))?;
    let issued = ca.issue(&CertRequest {
        subject: spec.subject,
        spki: &spki,
        profile: spec.profile,
        lifetime: spec.lifetime,
        serial: None,
    })?;
    let key_pem = key.encode(KeyFormat::Pkcs8, true, spec.key_passphrase)?;
    let cert_pem = pem_encode("CERTIFICATE", &issued.der);
    let chain = format!("{cert_pem}{}", pem_encode("CERTIFICATE", &ca.cert.der));
    let mut warnings = csr.warnings;
    warnings.extend(issued.warnings);
    Ok(DeviceFiles {
        key: key_pem,
        csr: pem_encode("CERTIFICATE REQUEST", &csr.der).into_bytes(),
        cert: cert_pem.into_bytes(),
        chain: chain.into_bytes(),
        cert_der: issued.der,
        serial: issued.serial,
        warnings,
    })
}

impl DeviceFiles {
    /// The five files: name, bytes, mode.
    pub fn contents(&self) -> [(&'static str, &[u8], Mode); 5] {
        [
            (KEY_FILE, self.key.as_slice(), Mode::Secret),
            (CSR_FILE, self.csr.as_slice(), Mode::Public),
            (CERT_FILE, self.cert.as_slice(), Mode::Public),
            (PKCS8_FILE, self.key.as_slice(), Mode::Secret),
            (CHAIN_FILE, self.chain.as_slice(), Mode::Public),
        ]
    }
}

/// Writes the five files into `dir` (created with its parents if missing).
/// All or nothing: if any of the five exists and `force` is off, nothing
/// is written; on failure none of the five remains and a folder this call
/// created is removed again. Other files in `dir` are never touched. On
/// success the files and the names of the folders created are durable.
pub fn write_device(dir: &Path, files: &DeviceFiles, force: bool) -> Result<()> {
    let label = dir.display().to_string();
    if !force
        && let Some(f) = DEVICE_FILES
            .iter()
            .find(|f| dir.join(f).symlink_metadata().is_ok())
    {
        return Err(crate::output::exists_error(
            &dir.join(f).display().to_string(),
        ));
    }
    let created =
        create_folders(dir).map_err(|e| Error::io("cannot create output folder", &label, &e))?;
    let fresh = created.last().is_some_and(|d| d == dir);
    let result = stage_all(dir, files).and_then(|staged| {
        if fresh {
            // Nothing to refuse or keep aside in a new folder; the new
            // folders' own names are synced with the files'.
            commit_files(staged, false, &parents_of(&created))
        } else {
            commit_all(staged, force)
        }
    });
    if result.is_err() {
        // Staged temp files are already gone (dropped); remove created folders.
        for d in created.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
    result
}

fn stage_all(dir: &Path, f: &DeviceFiles) -> Result<Vec<Staged>> {
    f.contents()
        .into_iter()
        .map(|(name, data, mode)| stage(&dir.join(name), data, mode))
        .collect()
}
