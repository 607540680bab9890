//! Certificate signing requests: the `[req]` section of an OpenSSL config,
//! building and signing a PKCS#10 request as `openssl req -new` does, and
//! checking a request's own signature before anything is issued from it.

use der::asn1::{Any, SetOfVec};
use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::attr::Attribute;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::request::{CertReq, CertReqInfo, Version};

use crate::crypto::Signer;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{AlgoSpec, KeyAlgo, RSA_SIZES};
use crate::name::{StringMask, name_from_section};
use crate::openssl_conf::Config;
use crate::profile::{ExtContext, ExtensionProfile};
use crate::sign::sign_der;

const OID_EXTENSION_REQUEST: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");

/// What a `[req]` section asks for.
#[derive(Debug, Clone)]
pub struct ReqConfig {
    pub subject: Name,
    pub digest: Option<Digest>,
    pub default_bits: Option<usize>,
    /// Why `default_bits` cannot size an RSA key, naming its line; only an
    /// error when a bare `rsa` asks for it (EC keys ignore it, as OpenSSL).
    default_bits_error: Option<Error>,
    /// The `req_extensions` section, if any.
    pub extensions: Option<ExtensionProfile>,
}

impl ReqConfig {
    pub fn from_config(conf: &Config) -> Result<ReqConfig> {
        let Some(req) = conf.section("req") else {
            return Err(conf.error(1, "no [req] section"));
        };
        match req.get("prompt") {
            Some(e) if e.value.eq_ignore_ascii_case("no") => {}
            Some(e) => {
                return Err(conf
                    .error(e.line, format!("prompt = {} is not supported", e.value))
                    .hint("devcert never prompts for DN fields: set prompt = no and give the values in the distinguished_name section"));
            }
            None => {
                return Err(conf
                    .error(req.line, "[req] has no 'prompt = no'")
                    .hint("devcert never prompts for DN fields: add prompt = no and give the values in the distinguished_name section"));
            }
        }
        let mask = match conf.get("req", "string_mask") {
            Some(e) => e
                .value
                .parse::<StringMask>()
                .map_err(|err| conf.error(e.line, err.why))?,
            None => StringMask::default(),
        };
        let dn = conf
            .get("req", "distinguished_name")
            .ok_or_else(|| conf.error(req.line, "[req] has no distinguished_name"))?;
        if conf.section(&dn.value).is_none() {
            return Err(conf.error(dn.line, format!("section [{}] not found", dn.value)));
        }
        let subject = name_from_section(conf, &dn.value, mask)?;
        let digest = match conf.get("req", "default_md") {
            Some(e) if e.value.eq_ignore_ascii_case("default") => None,
            Some(e) => Some(
                e.value
                    .parse::<Digest>()
                    .map_err(|why| conf.error(e.line, why))?,
            ),
            None => None,
        };
        let default_bits = match conf.get("req", "default_bits") {
            Some(e) => Some(e.value.parse::<usize>().map_err(|_| {
                conf.error(
                    e.line,
                    format!("default_bits '{}' is not a number", e.value),
                )
            })?),
            None => None,
        };
        let default_bits_error = conf
            .get("req", "default_bits")
            .filter(|_| !default_bits.is_some_and(|b| RSA_SIZES.contains(&b)))
            .map(|e| {
                conf.error(
                    e.line,
                    format!(
                        "default_bits {} is not a supported RSA size (2048, 3072 or 4096)",
                        e.value
                    ),
                )
            });
        let extensions = match conf.get("req", "req_extensions") {
            Some(e) => {
                if conf.section(&e.value).is_none() {
                    return Err(conf.error(e.line, format!("section [{}] not found", e.value)));
                }
                Some(ExtensionProfile::from_config(conf, Some(&e.value))?)
            }
            None => None,
        };
        Ok(ReqConfig {
            subject,
            digest,
            default_bits,
            default_bits_error,
            extensions,
        })
    }

    /// The key `--algo` asks for under this config: a bare `rsa` takes
    /// `default_bits`, as `openssl req -newkey rsa` does.
    pub fn key_algo(&self, spec: AlgoSpec) -> Result<KeyAlgo> {
        spec.with_default_bits(self.default_bits).map_err(|why| {
            self.default_bits_error
                .clone()
                .unwrap_or_else(|| Error::new(ErrorKind::Config, "invalid config", why))
        })
    }
}

/// A signed request and the warnings its extensions raised.
pub struct BuiltCsr {
    pub der: Vec<u8>,
    pub warnings: Vec<String>,
}

/// Builds and signs a PKCS#10 request. `extensions` go into an
/// extensionRequest attribute; with none, the attribute set is empty
/// (`A0 00`), as OpenSSL writes it. `signer` (a file's or a token's key)
/// is the private half of `spki_der`.
pub fn build_csr(
    spki_der: &[u8],
    signer: &Signer,
    subject: &Name,
    profile: Option<&ExtensionProfile>,
    extra: Vec<Extension>,
) -> Result<BuiltCsr> {
    let enc = |e: der::Error| Error::crypto("cannot encode CSR", e);
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der).map_err(enc)?;
    let mut extensions = Vec::new();
    let mut warnings = Vec::new();
    if let Some(p) = profile {
        // A CSR has no serial yet; the profile only needs one for AKI, which it skips in CSRs.
        let serial = x509_cert::serial_number::SerialNumber::new(&[1]).map_err(enc)?;
        let built = p.build(&ExtContext {
            subject_spki: &spki,
            issuer: None,
            subject_name: subject,
            serial: &serial,
            certificate: false,
        })?;
        extensions = built.extensions;
        warnings = built.warnings;
    }
    // --san replaces a subjectAltName from the config rather than duplicating
    // it (which `openssl req -addext` refuses); say so, it is easy to miss.
    for ext in extra {
        let before = extensions.len();
        extensions.retain(|e| e.extn_id != ext.extn_id);
        if extensions.len() != before {
            warnings
                .push("--san replaces the subjectAltName of the config's req_extensions".into());
        }
        extensions.push(ext);
    }
    let mut attributes = SetOfVec::new();
    if !extensions.is_empty() {
        let value = Any::encode_from(&extensions).map_err(enc)?;
        let mut values = SetOfVec::new();
        values.insert(value).map_err(enc)?;
        attributes
            .insert(Attribute {
                oid: OID_EXTENSION_REQUEST,
                values,
            })
            .map_err(enc)?;
    }
    let info = CertReqInfo {
        version: Version::V1,
        subject: subject.clone(),
        public_key: spki,
        attributes,
    };
    let der = sign_der(signer, &info.to_der().map_err(enc)?)?;
    Ok(BuiltCsr { der, warnings })
}

/// Refuses a request whose signature does not verify with its own key.
pub fn verify_csr(csr_der: &[u8], csr: &CertReq, label: &str) -> Result<()> {
    let spki = csr
        .info
        .public_key
        .to_der()
        .map_err(|e| Error::parse("cannot read CSR", e.to_string()).file(label))?;
    crate::sign::verify_signed(csr_der, &spki)
        .map_err(|why| Error::refused("CSR signature does not verify", why).file(label))
}
