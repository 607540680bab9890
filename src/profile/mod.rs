//! Extension profiles: OpenSSL's `-extfile` / `x509v3_config` syntax turned
//! into X.509 extensions that are byte-identical to what OpenSSL 3.0's
//! `x509 -req -extfile F [-extensions SECT]` writes, plus the built-in
//! `device` and `ca` profiles and the lints `devcert sign` warns with.
//!
//! A profile is parsed (and every value checked) when it is read, so errors
//! name the file and line before anything is signed; the DER values that
//! depend on the keys and the issuer are made by [`ExtensionProfile::build`].
//!
//! OpenSSL 3.0 behaviours reproduced here (each confirmed by experiment):
//! - extensions appear in the profile's order; a repeated extension replaces
//!   the earlier one and takes the later position (`X509V3_CTX_REPLACE`);
//! - a certificate then gets `subjectKeyIdentifier=hash` when the profile
//!   names none, and after it `authorityKeyIdentifier=keyid,issuer` when the
//!   profile names none and the certificate is not self-signed; `=none`
//!   suppresses either;
//! - `keyid` takes the issuer certificate's own SKI value; a CA without SKI
//!   has no key id (no hash fallback), so `keyid` alone or `keyid:always`
//!   is an error there, and `keyid,issuer` falls back to issuer name+serial;
//! - for a self-signed certificate `keyid` (without `always`) is suppressed,
//!   and `keyid:always` uses the SKI built so far, else the key's hash.

use std::net::IpAddr;

use const_oid::ObjectIdentifier;
use const_oid::db::rfc3280::EMAIL_ADDRESS;
use const_oid::db::rfc5280::{
    ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_BASIC_CONSTRAINTS, ID_CE_CERTIFICATE_POLICIES,
    ID_CE_CRL_DISTRIBUTION_POINTS, ID_CE_EXT_KEY_USAGE, ID_CE_ISSUER_ALT_NAME, ID_CE_KEY_USAGE,
    ID_CE_SUBJECT_ALT_NAME, ID_CE_SUBJECT_KEY_IDENTIFIER, ID_PE_AUTHORITY_INFO_ACCESS,
};
use const_oid::db::rfc5912::{ID_EC_PUBLIC_KEY, RSA_ENCRYPTION};
use der::asn1::{Ia5String, OctetString};
use der::flagset::FlagSet;
use der::{Decode, Encode};
use sha1::{Digest, Sha1};
use x509_cert::Certificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName, GeneralNames};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityKeyIdentifier, BasicConstraints, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::openssl_conf::{Config, DEFAULT_SECTION, Entry};

mod parse;
pub(crate) use parse::{EKU_NAMES, KEY_USAGE_NAMES};
use parse::{general_name, parse_entry};

/// Netscape comment (`nsComment`), an IA5String.
const NS_COMMENT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113730.1.13");

/// A parsed extension profile: what each line asks for, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionProfile {
    /// The file name (or `device` / `ca`) that warnings and errors name.
    label: String,
    entries: Vec<ProfileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProfileEntry {
    line: usize,
    critical: bool,
    spec: ExtSpec,
}

/// One extension as the profile describes it, before keys and issuer are known.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ExtSpec {
    BasicConstraints {
        ca: bool,
        pathlen: Option<u8>,
    },
    KeyUsage(FlagSet<KeyUsages>),
    /// The `device` built-in: digitalSignature, plus keyEncipherment for RSA keys.
    DeviceKeyUsage,
    ExtendedKeyUsage(Vec<ObjectIdentifier>),
    SubjectKeyId(SkiSpec),
    AuthorityKeyId(AkiSpec),
    SubjectAltName(Vec<NameSpec>),
    IssuerAltName(Vec<NameSpec>),
    CrlDistributionPoints(Vec<GeneralName>),
    AuthorityInfoAccess(Vec<AccessDescription>),
    NsComment(Ia5String),
    CertificatePolicies(Vec<ObjectIdentifier>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SkiSpec {
    Hash,
    /// `none`: no SKI, and none added by default either.
    Suppressed,
    Value(Vec<u8>),
}

/// `authorityKeyIdentifier`'s options: each of keyid and issuer is off,
/// on (when needed) or `always`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AkiSpec {
    keyid: Want,
    issuer: Want,
    /// devcert's built-ins use the SHA-1 of a CA key that has no SKI
    /// (RFC 5280 method 1) where OpenSSL would have no key id.
    hash_fallback: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Want {
    Off,
    On,
    Always,
}

/// A general name, or a copy instruction resolved when building.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NameSpec {
    Name(GeneralName),
    /// `email:copy`: the subject DN's emailAddress values.
    EmailCopy,
    /// `issuer:copy` (issuerAltName only): the issuer's subjectAltName.
    IssuerCopy,
}

/// What [`ExtensionProfile::build`] needs to know about the certificate.
pub struct ExtContext<'a> {
    pub subject_spki: &'a SubjectPublicKeyInfoOwned,
    /// The issuing CA certificate; None when self-signed (issuer key =
    /// subject key, issuer name = subject_name, issuer serial = serial).
    pub issuer: Option<&'a Certificate>,
    pub subject_name: &'a Name,
    pub serial: &'a SerialNumber,
    /// true for a certificate (a default SKI and AKI are added as OpenSSL 3's
    /// `x509 -req` does); false for a CSR's requested extensions (nothing
    /// added; an authorityKeyIdentifier is skipped with a warning).
    pub certificate: bool,
}

/// The extensions to write, and the lint warnings for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltExtensions {
    pub extensions: Vec<Extension>,
    pub warnings: Vec<String>,
}

impl ExtensionProfile {
    /// Reads the profile in `section` of `conf`; `None` means the unnamed top
    /// section, as `x509 -extfile` without `-extensions` does.
    pub fn from_config(conf: &Config, section: Option<&str>) -> Result<Self> {
        let name = section.unwrap_or(DEFAULT_SECTION);
        let sect = conf.section(name).ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "invalid config",
                format!("no section [{name}] for the extensions"),
            )
            .file(conf.label.clone())
        })?;
        let mut budget = parse::MAX_PROFILE_ITEMS;
        let entries = sect
            .entries
            .iter()
            .map(|e| parse_entry(conf, e, &mut budget))
            .collect::<Result<_>>()?;
        Ok(ExtensionProfile {
            label: conf.label.clone(),
            entries,
        })
    }

    /// The built-in `device` profile.
    pub fn device() -> Self {
        let aki = AkiSpec {
            keyid: Want::On,
            issuer: Want::Off,
            hash_fallback: true,
        };
        builtin(
            "device",
            vec![
                (
                    true,
                    ExtSpec::BasicConstraints {
                        ca: false,
                        pathlen: None,
                    },
                ),
                (true, ExtSpec::DeviceKeyUsage),
                (
                    false,
                    ExtSpec::ExtendedKeyUsage(vec![const_oid::db::rfc5280::ID_KP_CLIENT_AUTH]),
                ),
                (false, ExtSpec::SubjectKeyId(SkiSpec::Hash)),
                (false, ExtSpec::AuthorityKeyId(aki)),
            ],
        )
    }

    /// The built-in `ca` profile (root or intermediate).
    pub fn ca(pathlen: Option<u8>) -> Self {
        let aki = AkiSpec {
            keyid: Want::Always,
            issuer: Want::Off,
            hash_fallback: true,
        };
        let usage = KeyUsages::KeyCertSign | KeyUsages::CRLSign;
        builtin(
            "ca",
            vec![
                (true, ExtSpec::BasicConstraints { ca: true, pathlen }),
                (true, ExtSpec::KeyUsage(usage)),
                (false, ExtSpec::SubjectKeyId(SkiSpec::Hash)),
                (false, ExtSpec::AuthorityKeyId(aki)),
            ],
        )
    }

    /// The profile's label (file name, `device` or `ca`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Makes the extensions for one certificate (or CSR) in OpenSSL's order.
    pub fn build(&self, ctx: &ExtContext) -> Result<BuiltExtensions> {
        let mut warnings = self.lints(ctx.subject_spki);
        // `None` marks an extension the profile suppressed (`=none`): it keeps
        // the default from being added, then is dropped, as OpenSSL does.
        let mut built: Vec<(ObjectIdentifier, Option<Extension>)> = Vec::new();
        for entry in &self.entries {
            if !ctx.certificate && matches!(entry.spec, ExtSpec::AuthorityKeyId(_)) {
                warnings.push(format!(
                    "{}:{}: authorityKeyIdentifier is skipped in a certificate request",
                    self.label, entry.line
                ));
                continue;
            }
            let (oid, ext) = self.build_entry(entry, ctx, &built)?;
            built.retain(|(o, _)| *o != oid);
            built.push((oid, ext));
        }
        // OpenSSL adds the default key ids only to a certificate that has
        // extensions; an empty profile gives a v1 certificate without any.
        if ctx.certificate && !self.entries.is_empty() {
            add_default_key_ids(ctx, &mut built)?;
        }
        Ok(BuiltExtensions {
            extensions: built.into_iter().filter_map(|(_, e)| e).collect(),
            warnings,
        })
    }

    fn build_entry(
        &self,
        entry: &ProfileEntry,
        ctx: &ExtContext,
        built: &[(ObjectIdentifier, Option<Extension>)],
    ) -> Result<(ObjectIdentifier, Option<Extension>)> {
        let fail = |why: String| {
            Error::config(&self.label, entry.line, why)
                .hint("OpenSSL would refuse this profile too")
        };
        let (oid, value) = match &entry.spec {
            ExtSpec::BasicConstraints { ca, pathlen } => (
                ID_CE_BASIC_CONSTRAINTS,
                Some(encode(&BasicConstraints {
                    ca: *ca,
                    path_len_constraint: *pathlen,
                })?),
            ),
            ExtSpec::KeyUsage(usage) => (ID_CE_KEY_USAGE, Some(encode(usage)?)),
            ExtSpec::DeviceKeyUsage => {
                let mut usage = FlagSet::from(KeyUsages::DigitalSignature);
                if ctx.subject_spki.algorithm.oid == RSA_ENCRYPTION {
                    usage |= KeyUsages::KeyEncipherment;
                }
                (ID_CE_KEY_USAGE, Some(encode(&usage)?))
            }
            ExtSpec::ExtendedKeyUsage(oids) => (ID_CE_EXT_KEY_USAGE, Some(encode(oids)?)),
            ExtSpec::SubjectKeyId(ski) => (ID_CE_SUBJECT_KEY_IDENTIFIER, ski_value(ski, ctx)?),
            ExtSpec::AuthorityKeyId(aki) => (
                ID_CE_AUTHORITY_KEY_IDENTIFIER,
                aki_value(aki, ctx, built).map_err(fail)?,
            ),
            ExtSpec::SubjectAltName(names) => (
                ID_CE_SUBJECT_ALT_NAME,
                Some(encode(&resolve_names(names, ctx, built)?)?),
            ),
            ExtSpec::IssuerAltName(names) => (
                ID_CE_ISSUER_ALT_NAME,
                Some(encode(&resolve_names(names, ctx, built)?)?),
            ),
            ExtSpec::CrlDistributionPoints(uris) => {
                // OpenSSL makes one DistributionPoint per listed name.
                let points: Vec<DistributionPoint> = uris
                    .iter()
                    .map(|n| DistributionPoint {
                        distribution_point: Some(DistributionPointName::FullName(vec![n.clone()])),
                        reasons: None,
                        crl_issuer: None,
                    })
                    .collect();
                (ID_CE_CRL_DISTRIBUTION_POINTS, Some(encode(&points)?))
            }
            ExtSpec::AuthorityInfoAccess(list) => {
                (ID_PE_AUTHORITY_INFO_ACCESS, Some(encode(list)?))
            }
            ExtSpec::NsComment(text) => (NS_COMMENT, Some(encode(text)?)),
            ExtSpec::CertificatePolicies(oids) => {
                let policies: Vec<PolicyInformation> = oids
                    .iter()
                    .map(|&policy_identifier| PolicyInformation {
                        policy_identifier,
                        policy_qualifiers: None,
                    })
                    .collect();
                (ID_CE_CERTIFICATE_POLICIES, Some(encode(&policies)?))
            }
        };
        let ext = value
            .map(|v| make_extension(oid, entry.critical, v))
            .transpose()?;
        Ok((oid, ext))
    }

    /// RFC 5280 contradictions worth a warning (OpenSSL writes them silently).
    fn lints(&self, spki: &SubjectPublicKeyInfoOwned) -> Vec<String> {
        // A repeated basicConstraints replaces the earlier one: the last counts.
        let is_ca = self.entries.iter().rev().find_map(|e| match e.spec {
            ExtSpec::BasicConstraints { ca, .. } => Some(ca),
            _ => None,
        }) == Some(true);
        let is_ec = spki.algorithm.oid == ID_EC_PUBLIC_KEY;
        let mut warnings = Vec::new();
        for entry in &self.entries {
            let ExtSpec::KeyUsage(usage) = entry.spec else {
                continue;
            };
            let at = format!("{}:{}", self.label, entry.line);
            for (bit, name) in [
                (KeyUsages::KeyCertSign, "keyCertSign"),
                (KeyUsages::CRLSign, "cRLSign"),
            ] {
                if !is_ca && usage.contains(bit) {
                    warnings.push(format!(
                        "{at}: keyUsage {name} on a CA:FALSE certificate contradicts RFC 5280"
                    ));
                }
            }
            for (bit, name) in [
                (KeyUsages::KeyEncipherment, "keyEncipherment"),
                (KeyUsages::DataEncipherment, "dataEncipherment"),
            ] {
                if is_ec && usage.contains(bit) {
                    warnings.push(format!(
                        "{at}: keyUsage {name} does not apply to an EC key (ECDSA cannot encrypt)"
                    ));
                }
            }
        }
        warnings
    }
}

fn builtin(label: &str, specs: Vec<(bool, ExtSpec)>) -> ExtensionProfile {
    let entries = specs
        .into_iter()
        .enumerate()
        .map(|(i, (critical, spec))| ProfileEntry {
            line: i + 1,
            critical,
            spec,
        })
        .collect();
    ExtensionProfile {
        label: label.to_string(),
        entries,
    }
}

/// OpenSSL's `do_X509_sign`: a default SKI (hash), then a default AKI
/// (`keyid, issuer`, only when not self-signed), each unless the profile
/// named one.
fn add_default_key_ids(
    ctx: &ExtContext,
    built: &mut Vec<(ObjectIdentifier, Option<Extension>)>,
) -> Result<()> {
    let named = |b: &[(ObjectIdentifier, Option<Extension>)], oid| b.iter().any(|(o, _)| *o == oid);
    if !named(built, ID_CE_SUBJECT_KEY_IDENTIFIER) {
        let value = ski_value(&SkiSpec::Hash, ctx)?;
        let ext = value
            .map(|v| make_extension(ID_CE_SUBJECT_KEY_IDENTIFIER, false, v))
            .transpose()?;
        built.push((ID_CE_SUBJECT_KEY_IDENTIFIER, ext));
    }
    if !named(built, ID_CE_AUTHORITY_KEY_IDENTIFIER) && !is_self_signed(ctx) {
        let spec = AkiSpec {
            keyid: Want::On,
            issuer: Want::On,
            hash_fallback: false,
        };
        let value = aki_value(&spec, ctx, built).map_err(|why| {
            Error::new(ErrorKind::Config, "cannot add authorityKeyIdentifier", why)
        })?;
        let ext = value
            .map(|v| make_extension(ID_CE_AUTHORITY_KEY_IDENTIFIER, false, v))
            .transpose()?;
        built.push((ID_CE_AUTHORITY_KEY_IDENTIFIER, ext));
    }
    Ok(())
}

/// OpenSSL's test: the signing key is the subject's own key.
fn is_self_signed(ctx: &ExtContext) -> bool {
    match ctx.issuer {
        None => true,
        Some(ca) => ca.tbs_certificate().subject_public_key_info() == ctx.subject_spki,
    }
}

fn ski_value(spec: &SkiSpec, ctx: &ExtContext) -> Result<Option<Vec<u8>>> {
    let id = match spec {
        SkiSpec::Hash => key_id(ctx.subject_spki),
        SkiSpec::Suppressed => return Ok(None),
        SkiSpec::Value(v) => v.clone(),
    };
    Ok(Some(encode(&octets(id)?)?))
}

/// The AKI value as OpenSSL 3.0's `v2i_AUTHORITY_KEYID` makes it; `Ok(None)`
/// when it comes out empty (OpenSSL then drops it). Errors are the reason only.
fn aki_value(
    spec: &AkiSpec,
    ctx: &ExtContext,
    built: &[(ObjectIdentifier, Option<Extension>)],
) -> std::result::Result<Option<Vec<u8>>, String> {
    let self_signed = is_self_signed(ctx);
    let mut keyid = None;
    // Unless forced with `always`, a self-signed certificate gets no key id.
    if spec.keyid == Want::Always || (spec.keyid == Want::On && !self_signed) {
        keyid = issuer_key_id(ctx, built, spec.hash_fallback)?;
        if keyid.is_none() && (spec.keyid == Want::Always || spec.issuer == Want::Off) {
            return Err("unable to get the issuer's key id: the CA certificate has no subjectKeyIdentifier (write 'keyid,issuer' to fall back to its name and serial)".into());
        }
    }
    let mut aki = AuthorityKeyIdentifier {
        key_identifier: keyid.map(octets).transpose().map_err(|e| e.why)?,
        ..Default::default()
    };
    if spec.issuer == Want::Always || (spec.issuer == Want::On && aki.key_identifier.is_none()) {
        let (name, serial) = match ctx.issuer {
            None => (ctx.subject_name.clone(), ctx.serial.clone()),
            Some(ca) => (
                ca.tbs_certificate().issuer().clone(),
                ca.tbs_certificate().serial_number().clone(),
            ),
        };
        aki.authority_cert_issuer = Some(vec![GeneralName::DirectoryName(name)]);
        aki.authority_cert_serial_number = Some(serial);
    }
    if aki == AuthorityKeyIdentifier::default() {
        return Ok(None);
    }
    aki.to_der().map(Some).map_err(|e| e.to_string())
}

/// The key id for the AKI: the issuer certificate's own SKI value; for a
/// self-signed certificate the SKI built so far, else the key's hash.
fn issuer_key_id(
    ctx: &ExtContext,
    built: &[(ObjectIdentifier, Option<Extension>)],
    hash_fallback: bool,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let Some(ca) = ctx.issuer else {
        return match built
            .iter()
            .find(|(o, _)| *o == ID_CE_SUBJECT_KEY_IDENTIFIER)
        {
            Some((_, Some(ext))) => decode_ski(ext).map(Some),
            // `subjectKeyIdentifier=none` leaves nothing to point at.
            Some((_, None)) => Ok(None),
            None => Ok(Some(key_id(ctx.subject_spki))),
        };
    };
    let tbs = ca.tbs_certificate();
    let ski = tbs
        .extensions()
        .into_iter()
        .flatten()
        .find(|e| e.extn_id == ID_CE_SUBJECT_KEY_IDENTIFIER);
    match ski {
        Some(ext) => decode_ski(ext).map(Some),
        None if hash_fallback => Ok(Some(key_id(tbs.subject_public_key_info()))),
        None => Ok(None),
    }
}

fn decode_ski(ext: &Extension) -> std::result::Result<Vec<u8>, String> {
    SubjectKeyIdentifier::from_der(ext.extn_value.as_bytes())
        .map(|ski| ski.0.as_bytes().to_vec())
        .map_err(|e| format!("the issuer's subjectKeyIdentifier is malformed: {e}"))
}

/// Expands `email:copy` / `issuer:copy` into names.
fn resolve_names(
    specs: &[NameSpec],
    ctx: &ExtContext,
    built: &[(ObjectIdentifier, Option<Extension>)],
) -> Result<GeneralNames> {
    let mut names = Vec::new();
    for spec in specs {
        match spec {
            NameSpec::Name(n) => names.push(n.clone()),
            NameSpec::EmailCopy => {
                for atv in ctx.subject_name.iter().filter(|a| a.oid == EMAIL_ADDRESS) {
                    let email = Ia5String::new(atv.value.value()).map_err(|e| {
                        Error::parse("cannot copy the subject's emailAddress", e.to_string())
                    })?;
                    names.push(GeneralName::Rfc822Name(email));
                }
            }
            NameSpec::IssuerCopy => names.extend(issuer_alt_names(ctx, built)?),
        }
    }
    Ok(names)
}

/// The issuer's subjectAltName entries (none when it has no SAN).
fn issuer_alt_names(
    ctx: &ExtContext,
    built: &[(ObjectIdentifier, Option<Extension>)],
) -> Result<GeneralNames> {
    let san = match ctx.issuer {
        Some(ca) => ca
            .tbs_certificate()
            .extensions()
            .into_iter()
            .flatten()
            .find(|e| e.extn_id == ID_CE_SUBJECT_ALT_NAME),
        None => built
            .iter()
            .find(|(o, _)| *o == ID_CE_SUBJECT_ALT_NAME)
            .and_then(|(_, e)| e.as_ref()),
    };
    match san {
        None => Ok(Vec::new()),
        Some(ext) => GeneralNames::from_der(ext.extn_value.as_bytes())
            .map_err(|e| Error::parse("cannot copy the issuer's subjectAltName", e.to_string())),
    }
}

fn make_extension(oid: ObjectIdentifier, critical: bool, value: Vec<u8>) -> Result<Extension> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: octets(value)?,
    })
}

fn octets(bytes: Vec<u8>) -> Result<OctetString> {
    OctetString::new(bytes).map_err(|e| Error::crypto("cannot encode an extension", e))
}

fn encode<T: Encode>(value: &T) -> Result<Vec<u8>> {
    value
        .to_der()
        .map_err(|e| Error::crypto("cannot encode an extension", e))
}

/// The SHA-1 key id of a public key (RFC 5280 method 1: SHA-1 of the
/// subjectPublicKey BIT STRING contents), as OpenSSL computes `hash`.
pub fn key_id(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec()
}

/// `--san DNS:a,IP:1.2.3.4,email:x@y,URI:https://..` → a subjectAltName
/// extension (not critical).
pub fn san_extension(list: &str) -> Result<Extension> {
    let bad = |why: String| {
        Error::new(ErrorKind::Parse, "invalid --san", why)
            .hint("write TYPE:VALUE items separated by commas, e.g. DNS:host.example,IP:10.0.0.1")
    };
    let mut names = Vec::new();
    for item in list.split(',').map(str::trim) {
        let (kind, value) = item
            .split_once(':')
            .ok_or_else(|| bad(format!("'{item}' is not TYPE:VALUE")))?;
        names.push(general_name(kind.trim(), value.trim()).map_err(bad)?);
    }
    make_extension(ID_CE_SUBJECT_ALT_NAME, false, encode(&names)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;
    use x509_cert::request::CertReq;

    /// A temporary folder where `openssl` makes keys, CAs, CSRs and
    /// certificates to compare against.
    struct Lab {
        dir: tempfile::TempDir,
    }

    impl Lab {
        fn new() -> Lab {
            Lab {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn openssl(&self, args: &[&str]) -> std::process::Output {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(self.dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out
        }

        fn newkey(algo: &str) -> Vec<&'static str> {
            match algo {
                "rsa" => vec!["-newkey", "rsa:2048"],
                _ => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            }
        }

        /// A self-signed CA `name.crt` / `name.key`; `addext` as `req -addext`.
        fn ca(&self, name: &str, algo: &str, addext: &[&str]) {
            let (key, crt, subj) = (
                format!("{name}.key"),
                format!("{name}.crt"),
                format!("/O=Lab/CN={name}"),
            );
            let mut args = vec!["req", "-x509", "-nodes", "-days", "30", "-subj", &subj];
            args.extend(Lab::newkey(algo));
            args.extend(["-keyout", &key, "-out", &crt]);
            for ext in addext {
                args.extend(["-addext", ext]);
            }
            self.openssl(&args);
        }

        /// A CSR `name.csr` with key `name.key`.
        fn csr(&self, name: &str, algo: &str, subj: &str) {
            let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
            let mut args = vec!["req", "-new", "-nodes", "-subj", subj];
            args.extend(Lab::newkey(algo));
            args.extend(["-keyout", &key, "-out", &csr]);
            self.openssl(&args);
        }

        fn csr_spki(&self, name: &str) -> SubjectPublicKeyInfoOwned {
            let out = self.openssl(&["req", "-in", &format!("{name}.csr"), "-outform", "DER"]);
            CertReq::from_der(&out.stdout).unwrap().info.public_key
        }

        fn cert(&self, name: &str) -> Certificate {
            let out = self.openssl(&["x509", "-in", name, "-outform", "DER"]);
            Certificate::from_der(&out.stdout).unwrap()
        }

        /// Signs `csr` with CA `ca` (or self-signs with the CSR's key when
        /// `ca` is None) using `profile` as the extfile.
        fn sign(
            &self,
            csr: &str,
            ca: Option<&str>,
            profile: &str,
            sect: Option<&str>,
        ) -> Certificate {
            std::fs::write(self.path("p.cfg"), profile).unwrap();
            let csr_file = format!("{csr}.csr");
            let mut args = vec!["x509", "-req", "-in", &csr_file, "-set_serial", "1"];
            let (ca_crt, ca_key, self_key) = ca
                .map_or((String::new(), String::new(), format!("{csr}.key")), |c| {
                    (format!("{c}.crt"), format!("{c}.key"), String::new())
                });
            match ca {
                Some(_) => args.extend(["-CA", &ca_crt, "-CAkey", &ca_key]),
                None => args.extend(["-signkey", &self_key]),
            }
            args.extend(["-extfile", "p.cfg", "-outform", "DER", "-out", "out.der"]);
            if let Some(s) = sect {
                args.extend(["-extensions", s]);
            }
            self.openssl(&args);
            Certificate::from_der(&std::fs::read(self.path("out.der")).unwrap()).unwrap()
        }

        /// Builds `profile`'s extensions for what `cert` was issued from.
        fn build(
            &self,
            profile: &ExtensionProfile,
            csr: &str,
            ca: Option<&str>,
            cert: &Certificate,
        ) -> BuiltExtensions {
            let spki = self.csr_spki(csr);
            let issuer = ca.map(|c| self.cert(&format!("{c}.crt")));
            let tbs = cert.tbs_certificate();
            let ctx = ExtContext {
                subject_spki: &spki,
                issuer: issuer.as_ref(),
                subject_name: tbs.subject(),
                serial: tbs.serial_number(),
                certificate: true,
            };
            profile.build(&ctx).unwrap()
        }

        /// Signs with openssl and with our code; asserts identical extensions.
        fn check(
            &self,
            csr: &str,
            ca: Option<&str>,
            text: &str,
            sect: Option<&str>,
        ) -> BuiltExtensions {
            let cert = self.sign(csr, ca, text, sect);
            let conf = Config::parse(text, "p.cfg").unwrap();
            let profile = ExtensionProfile::from_config(&conf, sect).unwrap();
            let built = self.build(&profile, csr, ca, &cert);
            assert_exts_eq(&built.extensions, &cert);
            built
        }
    }

    fn assert_exts_eq(ours: &[Extension], cert: &Certificate) {
        let theirs = cert
            .tbs_certificate()
            .extensions()
            .cloned()
            .unwrap_or_default();
        let hex = |e: &[Extension]| {
            e.iter()
                .map(|x| {
                    let der = x.to_der().unwrap();
                    format!(
                        "{} {}",
                        x.extn_id,
                        der.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(hex(ours), hex(&theirs));
    }

    fn oids(exts: &[Extension]) -> Vec<ObjectIdentifier> {
        exts.iter().map(|e| e.extn_id).collect()
    }

    const SEED: &str = "authorityKeyIdentifier=keyid,issuer\nbasicConstraints=CA:FALSE\nkeyUsage = digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment, keyCertSign\n";

    /// One lab shared by the tests that only read from it (CA and CSR
    /// generation dominates the run time).
    fn lab() -> Lab {
        let lab = Lab::new();
        lab.ca("ecca", "ec", &[]);
        lab.csr(
            "ec",
            "ec",
            "/C=CN/O=ALI/emailAddress=dev@example.com/CN=client-test",
        );
        lab
    }

    #[test]
    fn seed_profile_matches_openssl_order_and_warns_on_ec() {
        let lab = lab();
        let built = lab.check("ec", Some("ecca"), SEED, None);
        assert_eq!(
            oids(&built.extensions),
            [
                ID_CE_AUTHORITY_KEY_IDENTIFIER,
                ID_CE_BASIC_CONSTRAINTS,
                ID_CE_KEY_USAGE,
                ID_CE_SUBJECT_KEY_IDENTIFIER
            ]
        );
        assert_eq!(
            built.warnings,
            [
                "p.cfg:3: keyUsage keyCertSign on a CA:FALSE certificate contradicts RFC 5280",
                "p.cfg:3: keyUsage keyEncipherment does not apply to an EC key (ECDSA cannot encrypt)",
                "p.cfg:3: keyUsage dataEncipherment does not apply to an EC key (ECDSA cannot encrypt)",
            ]
        );
    }

    #[test]
    fn defaults_ski_then_aki_and_none_suppresses_them() {
        let lab = lab();
        let built = lab.check("ec", Some("ecca"), "basicConstraints=CA:FALSE\n", None);
        assert_eq!(
            oids(&built.extensions),
            [
                ID_CE_BASIC_CONSTRAINTS,
                ID_CE_SUBJECT_KEY_IDENTIFIER,
                ID_CE_AUTHORITY_KEY_IDENTIFIER
            ]
        );
        // An explicit SKI keeps its place; the AKI is still appended.
        let built = lab.check(
            "ec",
            Some("ecca"),
            "subjectKeyIdentifier=hash\nbasicConstraints=CA:FALSE\n",
            None,
        );
        assert_eq!(
            oids(&built.extensions),
            [
                ID_CE_SUBJECT_KEY_IDENTIFIER,
                ID_CE_BASIC_CONSTRAINTS,
                ID_CE_AUTHORITY_KEY_IDENTIFIER
            ]
        );
        let built = lab.check(
            "ec",
            Some("ecca"),
            "basicConstraints=CA:FALSE\nsubjectKeyIdentifier=none\nauthorityKeyIdentifier=none\n",
            None,
        );
        assert_eq!(oids(&built.extensions), [ID_CE_BASIC_CONSTRAINTS]);
        lab.check(
            "ec",
            Some("ecca"),
            "basicConstraints=CA:FALSE\nsubjectKeyIdentifier=0a:0B:0c\n",
            None,
        );
        // A repeated extension replaces the earlier one at the later place.
        lab.check(
            "ec",
            Some("ecca"),
            "keyUsage=digitalSignature\nbasicConstraints=CA:FALSE\nkeyUsage=keyAgreement\n",
            None,
        );
    }

    #[test]
    fn aki_options_against_normal_custom_ski_and_no_ski_cas() {
        let lab = lab();
        lab.ca("cski", "ec", &["subjectKeyIdentifier=0102030405"]);
        lab.ca(
            "noski",
            "ec",
            &["subjectKeyIdentifier=none", "authorityKeyIdentifier=none"],
        );
        for ca in ["ecca", "cski", "noski"] {
            for aki in [
                "keyid,issuer",
                "issuer",
                "issuer:always",
                "keyid,issuer:always",
            ] {
                let text = format!("basicConstraints=CA:FALSE\nauthorityKeyIdentifier={aki}\n");
                lab.check("ec", Some(ca), &text, None);
            }
        }
        for ca in ["ecca", "cski"] {
            for aki in ["keyid", "keyid:always", "keyid:always,issuer:always"] {
                let text = format!("basicConstraints=CA:FALSE\nauthorityKeyIdentifier={aki}\n");
                lab.check("ec", Some(ca), &text, None);
            }
        }
        // The custom SKI is copied, not recomputed from the CA key.
        let cert = lab.sign("ec", Some("cski"), SEED, None);
        let built = lab.build(&ExtensionProfile::device(), "ec", Some("cski"), &cert);
        let aki = built
            .extensions
            .iter()
            .find(|e| e.extn_id == ID_CE_AUTHORITY_KEY_IDENTIFIER)
            .unwrap();
        assert_eq!(aki.extn_value.as_bytes(), [0x30, 7, 0x80, 5, 1, 2, 3, 4, 5]);
        // OpenSSL has no key id for a CA without SKI: `keyid` alone is an error.
        let conf = Config::parse(
            "basicConstraints=CA:FALSE\nauthorityKeyIdentifier=keyid\n",
            "p.cfg",
        )
        .unwrap();
        let profile = ExtensionProfile::from_config(&conf, None).unwrap();
        let spki = lab.csr_spki("ec");
        let noski = lab.cert("noski.crt");
        let ctx = ExtContext {
            subject_spki: &spki,
            issuer: Some(&noski),
            subject_name: cert.tbs_certificate().subject(),
            serial: cert.tbs_certificate().serial_number(),
            certificate: true,
        };
        let err = profile.build(&ctx).unwrap_err();
        assert_eq!(err.file.as_deref(), Some("p.cfg:2"));
        // The built-in device profile falls back to the CA key's hash instead.
        let built = ExtensionProfile::device().build(&ctx).unwrap();
        let aki = built
            .extensions
            .iter()
            .find(|e| e.extn_id == ID_CE_AUTHORITY_KEY_IDENTIFIER)
            .unwrap();
        let want = key_id(noski.tbs_certificate().subject_public_key_info());
        assert_eq!(&aki.extn_value.as_bytes()[4..], want.as_slice());
    }

    #[test]
    fn self_signed_aki_forms() {
        let lab = lab();
        for aki in [
            "keyid",
            "keyid,issuer",
            "keyid:always",
            "issuer:always",
            "keyid:always,issuer:always",
        ] {
            let text = format!("basicConstraints=critical,CA:TRUE\nauthorityKeyIdentifier={aki}\n");
            lab.check("ec", None, &text, None);
        }
        lab.check(
            "ec",
            None,
            "subjectKeyIdentifier=0102030405\nauthorityKeyIdentifier=keyid:always\n",
            None,
        );
    }

    #[test]
    fn builtins_match_equivalent_extfiles() {
        let lab = lab();
        lab.ca("rsaca", "rsa", &[]);
        lab.csr("rsa", "rsa", "/CN=rsa-device");
        let device = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature{}\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";
        for (csr, ca, extra) in [
            ("ec", "ecca", ""),
            ("rsa", "rsaca", ",keyEncipherment"),
            ("ec", "rsaca", ""),
        ] {
            let cert = lab.sign(csr, Some(ca), &device.replace("{}", extra), None);
            let built = lab.build(&ExtensionProfile::device(), csr, Some(ca), &cert);
            assert_exts_eq(&built.extensions, &cert);
            assert!(built.warnings.is_empty(), "{:?}", built.warnings);
        }
        let ca = "basicConstraints=critical,CA:TRUE{}\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n";
        for (pathlen, ca_cert) in [
            (None, None),
            (Some(0), None),
            (Some(1), Some("ecca")),
            (None, Some("rsaca")),
        ] {
            let text = ca.replace(
                "{}",
                &pathlen.map_or(String::new(), |n| format!(",pathlen:{n}")),
            );
            let cert = lab.sign("ec", ca_cert, &text, None);
            let built = lab.build(&ExtensionProfile::ca(pathlen), "ec", ca_cert, &cert);
            assert_exts_eq(&built.extensions, &cert);
            assert!(built.warnings.is_empty(), "{:?}", built.warnings);
        }
    }

    #[test]
    fn names_usages_and_other_extensions() {
        let lab = lab();
        let text = "\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, Key Agreement, encipherOnly, decipherOnly
extendedKeyUsage = critical, serverAuth, clientAuth, codeSigning, emailProtection, timeStamping, OCSPSigning, ipsecIKE, msCodeInd, msCodeCom, msCTLSign, msEFS, anyExtendedKeyUsage, 1.2.3.4.5
subjectAltName = @alt
issuerAltName = issuer:copy, DNS:ca.example
crlDistributionPoints = URI:http://crl.example/a.crl, URI:http://crl.example/b.crl
authorityInfoAccess = OCSP;URI:http://ocsp.example, caIssuers;URI:http://ca.example/ca.crt
nsComment = \"devcert test\"
certificatePolicies = 1.3.6.1.4.1.99999.1, 2.23.140.1.2.1
[alt]
DNS.1 = device-1.example
DNS.2 = *.example
IP.1 = 192.168.0.1
IP.2 = fe80::1:2
email.1 = copy
email.2 = a@b.example
URI.1 = https://device.example/x
RID.1 = 1.2.3.4
";
        lab.check("ec", Some("ecca"), text, None);
        lab.check(
            "ec",
            Some("ecca"),
            "subjectAltName=critical,DNS:a.example, IP:10.0.0.1, IP:2001:db8::7, email:copy\n",
            None,
        );
    }

    #[test]
    fn empty_profile_gives_no_extensions_and_last_bc_counts_for_lints() {
        let lab = lab();
        let text = "# only a comment\n[other]\nbasicConstraints=CA:FALSE\n";
        assert!(
            lab.check("ec", Some("ecca"), text, None)
                .extensions
                .is_empty()
        );
        let text = "basicConstraints=CA:TRUE\nbasicConstraints=CA:FALSE\nkeyUsage=keyCertSign\n";
        let built = lab.check("ec", Some("ecca"), text, None);
        assert_eq!(
            built.warnings,
            ["p.cfg:3: keyUsage keyCertSign on a CA:FALSE certificate contradicts RFC 5280"]
        );
    }

    #[test]
    fn extensions_section_is_chosen() {
        let lab = lab();
        let text = "keyUsage=keyCertSign\n[dev]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n";
        let built = lab.check("ec", Some("ecca"), text, Some("dev"));
        assert!(built.warnings.is_empty());
        let conf = Config::parse(text, "p.cfg").unwrap();
        let err = ExtensionProfile::from_config(&conf, Some("nope")).unwrap_err();
        assert!(err.why.contains("[nope]"), "{err}");
    }

    #[test]
    fn bad_profiles_name_the_line() {
        let cases = [
            (
                "basicConstraints=CA:FALSE\n\nfrobnicate=yes\n",
                3,
                "frobnicate",
            ),
            ("keyUsage=digitalSignature, keyCertsign\n", 1, "keyCertsign"),
            ("basicConstraints=CA:maybe\n", 1, "maybe"),
            ("basicConstraints=CA:TRUE,pathlen:-1\n", 1, "pathlen"),
            ("extendedKeyUsage=clientauth\n", 1, "clientauth"),
            ("subjectKeyIdentifier=xyz\n", 1, "xyz"),
            ("authorityKeyIdentifier=keyid:sometimes\n", 1, "sometimes"),
            ("subjectAltName=IP:1.2.3\n", 1, "1.2.3"),
            ("subjectAltName=@missing\n", 1, "missing"),
            ("a=1\n[s]\nsubjectAltName=dirName:x\n", 3, "dirName"),
            ("authorityInfoAccess=OCSP:http://x\n", 1, "METHOD"),
            ("keyUsage=DER:03020780\n", 1, "DER"),
        ];
        for (text, line, needle) in cases {
            let conf = Config::parse(text, "bad.cfg").unwrap();
            let sect = text.contains("[s]").then_some("s");
            let err = ExtensionProfile::from_config(&conf, sect).unwrap_err();
            assert_eq!(
                err.file.as_deref(),
                Some(format!("bad.cfg:{line}").as_str()),
                "{text}"
            );
            assert!(err.why.contains(needle), "{text}: {}", err.why);
        }
    }

    #[test]
    fn csr_mode_adds_nothing_and_skips_aki() {
        let lab = lab();
        let spki = lab.csr_spki("ec");
        let name = Name::default();
        let serial = SerialNumber::new(&[1]).unwrap();
        let ctx = ExtContext {
            subject_spki: &spki,
            issuer: None,
            subject_name: &name,
            serial: &serial,
            certificate: false,
        };
        let conf = Config::parse(
            "basicConstraints=CA:FALSE\nauthorityKeyIdentifier=keyid\n",
            "req.cfg",
        )
        .unwrap();
        let built = ExtensionProfile::from_config(&conf, None)
            .unwrap()
            .build(&ctx)
            .unwrap();
        assert_eq!(oids(&built.extensions), [ID_CE_BASIC_CONSTRAINTS]);
        assert_eq!(built.warnings.len(), 1);
        assert!(built.warnings[0].starts_with("req.cfg:2: authorityKeyIdentifier"));
    }

    #[test]
    fn san_extension_parses_and_rejects() {
        let ext = san_extension(
            "DNS:a.example, IP:1.2.3.4,IP:::1,email:x@y.example,URI:https://u.example/p",
        )
        .unwrap();
        assert_eq!(ext.extn_id, ID_CE_SUBJECT_ALT_NAME);
        assert!(!ext.critical);
        let names = GeneralNames::from_der(ext.extn_value.as_bytes()).unwrap();
        assert_eq!(names.len(), 5);
        assert_eq!(
            names[0],
            GeneralName::DnsName(Ia5String::new("a.example").unwrap())
        );
        assert_eq!(
            names[1],
            GeneralName::IpAddress(OctetString::new(vec![1, 2, 3, 4]).unwrap())
        );
        assert_eq!(
            names[2],
            GeneralName::from(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
        );
        assert_eq!(
            names[4],
            GeneralName::UniformResourceIdentifier(Ia5String::new("https://u.example/p").unwrap())
        );
        for bad in [
            "",
            "a.example",
            "DNS:",
            "IP:300.1.1.1",
            "FOO:x",
            "DNS:ä.example",
            "DNS:a,,DNS:b",
        ] {
            let err = san_extension(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Parse, "{bad}");
        }
    }

    #[test]
    fn key_id_is_sha1_of_the_key_bits() {
        let lab = lab();
        let cert = lab.cert("ecca.crt");
        let spki = cert.tbs_certificate().subject_public_key_info();
        let out = lab.openssl(&[
            "x509",
            "-in",
            "ecca.crt",
            "-noout",
            "-ext",
            "subjectKeyIdentifier",
        ]);
        let text = String::from_utf8_lossy(&out.stdout)
            .replace(':', "")
            .to_lowercase();
        let hex: String = key_id(spki).iter().map(|b| format!("{b:02x}")).collect();
        assert!(text.contains(&hex), "{text} vs {hex}");
    }
}
