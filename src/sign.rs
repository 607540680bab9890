//! Issuing certificates: a CA (certificate + key) signs a subject name and
//! public key with an extension profile. The TBSCertificate is assembled
//! from x509-cert's component types so that the issuer name is the CA's
//! subject DER byte for byte and the extensions keep the profile's layout
//! (rcgen re-encodes names and reorders extensions; see PITFALLS.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{AnyRef, BitString, GeneralizedTime, UtcTime};
use der::{Decode, Encode, Sequence};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::certificate::Version;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use crate::crypto::{Signer, SigningKey};
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::input::LoadedCert;
use crate::profile::{ExtContext, ExtensionProfile};

#[derive(Sequence)]
struct TbsCertificate {
    #[asn1(
        context_specific = "0",
        tag_mode = "EXPLICIT",
        default = "Default::default"
    )]
    version: Version,
    serial: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    spki: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Vec<Extension>>,
}

#[derive(Sequence)]
struct Validity {
    not_before: Time,
    not_after: Time,
}

/// Any signed X.509 object: certificate, CRL, or CSR.
#[derive(Sequence)]
pub(crate) struct Signed<'a> {
    pub tbs: AnyRef<'a>,
    pub algorithm: AlgorithmIdentifierOwned,
    pub signature: BitString,
}

/// Signs DER `tbs` and wraps it as `SEQUENCE { tbs, algorithm, signature }`.
pub(crate) fn sign_der(signer: &Signer, tbs: &[u8]) -> Result<Vec<u8>> {
    let enc = |e: der::Error| Error::crypto("cannot encode signed object", e);
    let sig = signer.sign(tbs)?;
    Signed {
        tbs: AnyRef::from_der(tbs).map_err(enc)?,
        algorithm: signer.algorithm().clone(),
        signature: BitString::from_bytes(&sig).map_err(enc)?,
    }
    .to_der()
    .map_err(enc)
}

/// Checks the signature of a signed object (`der`) with `issuer_spki_der`.
pub fn verify_signed(der: &[u8], issuer_spki_der: &[u8]) -> Result<(), String> {
    let signed = Signed::from_der(der).map_err(|e| format!("malformed signed object ({e})"))?;
    let tbs = signed.tbs.to_der().map_err(|e| e.to_string())?;
    let sig = signed
        .signature
        .as_bytes()
        .ok_or("signature has unused bits")?;
    crate::crypto::verify(issuer_spki_der, &signed.algorithm, &tbs, sig)
}

/// When a certificate stops being valid.
#[derive(Debug, Clone, Copy)]
pub enum Lifetime {
    Days(u32),
    NotAfter(SystemTime),
}

/// The fields of one certificate to issue, minus its issuer.
pub struct CertRequest<'a> {
    pub subject: &'a Name,
    pub spki: &'a SubjectPublicKeyInfoOwned,
    pub profile: &'a ExtensionProfile,
    pub lifetime: Lifetime,
    /// None: a fresh random serial.
    pub serial: Option<SerialNumber>,
}

/// A signed certificate and what the caller should tell the user.
pub struct Issued {
    pub der: Vec<u8>,
    pub serial: SerialNumber,
    pub not_after: SystemTime,
    pub warnings: Vec<String>,
}

/// A CA certificate with its private key, checked to belong together.
pub struct CaSigner {
    pub cert: LoadedCert,
    signer: Signer,
}

impl CaSigner {
    /// Refuses a key that does not match the certificate, a certificate
    /// that is not a CA, and an expired (or not yet valid) CA.
    /// A key in a token proves it matches by signing a challenge.
    pub fn new(cert: LoadedCert, key: &SigningKey, digest: Digest) -> Result<CaSigner> {
        let key_label = key.label();
        let tbs = &cert.cert.tbs_certificate();
        let cert_spki = tbs.subject_public_key_info().to_der().unwrap_or_default();
        if !key.matches_spki(&cert_spki)? {
            return Err(Error::refused(
                "CA key does not match the CA certificate",
                format!("{key_label} is not the key of {}", cert.label),
            )
            .file(key_label));
        }
        let is_ca = matches!(tbs.get_extension::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca);
        if !is_ca {
            return Err(Error::refused(
                "not a CA certificate",
                "it has no basicConstraints CA:TRUE",
            )
            .file(&cert.label));
        }
        let now = SystemTime::now();
        let v = tbs.validity();
        if v.not_after.to_system_time() < now {
            return Err(Error::refused(
                "CA certificate has expired",
                format!("notAfter was {}", v.not_after),
            )
            .file(&cert.label));
        }
        if v.not_before.to_system_time() > now {
            return Err(Error::refused(
                "CA certificate is not valid yet",
                format!("notBefore is {}", v.not_before),
            )
            .file(&cert.label));
        }
        let signer = key.signer(digest)?;
        Ok(CaSigner { cert, signer })
    }

    pub fn issue(&self, req: &CertRequest<'_>) -> Result<Issued> {
        let ca_tbs = self.cert.cert.tbs_certificate();
        let issued = build_certificate(&self.signer, ca_tbs.subject(), Some(&self.cert.cert), req)?;
        let mut warnings = issued.warnings;
        // Seconds past the CA's end are what a child made just after its
        // CA with the same lifetime gets: not worth a warning.
        let ca_end = ca_tbs.validity().not_after.to_system_time();
        if let Ok(past) = issued.not_after.duration_since(ca_end)
            && past >= Duration::from_secs(86_400)
        {
            warnings.push(format!(
                "the certificate's notAfter ({}) is {} days past the CA's ({}); clients will reject it after that",
                format_time(issued.not_after),
                past.as_secs() / 86_400,
                ca_tbs.validity().not_after
            ));
        }
        warnings.extend(self.forbidden(&issued.der, req.subject));
        Ok(Issued { warnings, ..issued })
    }

    /// What the CA's own certificate forbids that this certificate does:
    /// signing at all without keyCertSign, or another CA under pathlen 0.
    /// Verifiers (OpenSSL, `devcert verify`) reject such a certificate;
    /// it is made (as OpenSSL's `x509 -req` makes it) with a warning.
    fn forbidden(&self, der: &[u8], subject: &Name) -> Vec<String> {
        let ca = self.cert.cert.tbs_certificate();
        let label = &self.cert.label;
        let mut warnings = Vec::new();
        if let Ok(Some((_, ku))) = ca.get_extension::<KeyUsage>()
            && !ku.key_cert_sign()
        {
            warnings.push(format!(
                "the CA's keyUsage lacks keyCertSign: verifiers reject every certificate {label} signs"
            ));
        }
        let issues_a_ca = || {
            x509_cert::Certificate::from_der(der).is_ok_and(|c| {
                matches!(c.tbs_certificate().get_extension::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca)
            })
        };
        // A self-issued CA (a renewal under the same name) does not count
        // against the path length.
        if let Ok(Some((_, bc))) = ca.get_extension::<BasicConstraints>()
            && bc.path_len_constraint == Some(0)
            && crate::verify::canonical_name(subject) != crate::verify::canonical_name(ca.subject())
            && issues_a_ca()
        {
            warnings.push(format!(
                "{label} has pathlen 0: it may not sign another CA; verifiers reject this certificate and every certificate under it"
            ));
        }
        warnings
    }

    /// Signs another DER to-be-signed structure (a CRL's TBSCertList).
    pub fn sign_tbs(&self, tbs: &[u8]) -> Result<Vec<u8>> {
        sign_der(&self.signer, tbs)
    }

    /// The signature AlgorithmIdentifier this CA signs with.
    pub fn algorithm(&self) -> &AlgorithmIdentifierOwned {
        self.signer.algorithm()
    }
}

/// Assembles and signs one certificate. `issuer_cert` None = self-signed.
pub(crate) fn build_certificate(
    signer: &Signer,
    issuer: &Name,
    issuer_cert: Option<&x509_cert::Certificate>,
    req: &CertRequest<'_>,
) -> Result<Issued> {
    let serial = match &req.serial {
        Some(s) => s.clone(),
        None => random_serial()?,
    };
    let now = SystemTime::now();
    let not_after = match req.lifetime {
        Lifetime::Days(d) => now + Duration::from_secs(u64::from(d) * 86_400),
        Lifetime::NotAfter(t) => t,
    };
    if not_after <= now {
        return Err(Error::new(
            ErrorKind::Refused,
            "invalid validity",
            "notAfter is in the past",
        )
        // Only --not-after can name a past time (--days is at least 1).
        .file("--not-after"));
    }
    let built = req.profile.build(&ExtContext {
        subject_spki: req.spki,
        issuer: issuer_cert,
        subject_name: req.subject,
        serial: &serial,
        certificate: true,
    })?;
    let tbs = TbsCertificate {
        // OpenSSL writes v1 when a profile yields no extensions.
        version: if built.extensions.is_empty() {
            Version::V1
        } else {
            Version::V3
        },
        serial: serial.clone(),
        signature: signer.algorithm().clone(),
        issuer: issuer.clone(),
        validity: Validity {
            not_before: x509_time(now)?,
            not_after: x509_time(not_after)?,
        },
        subject: req.subject.clone(),
        spki: req.spki.clone(),
        extensions: (!built.extensions.is_empty()).then_some(built.extensions),
    };
    let tbs_der = tbs
        .to_der()
        .map_err(|e| Error::crypto("cannot encode certificate", e))?;
    let der = sign_der(signer, &tbs_der)?;
    Ok(Issued {
        der,
        serial,
        // As encoded (whole seconds), so comparisons with the CA's agree.
        not_after: tbs.validity.not_after.to_system_time(),
        warnings: built.warnings,
    })
}

/// RFC 5280 time: UTCTime through 2049, GeneralizedTime from 2050.
pub(crate) fn x509_time(t: SystemTime) -> Result<Time> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::crypto("invalid time", "before 1970"))?
        .as_secs();
    let d = Duration::from_secs(secs);
    let bad = |e: der::Error| Error::new(ErrorKind::Refused, "invalid validity", e.to_string());
    // 2050-01-01T00:00:00Z
    if secs < 2_524_608_000 {
        Ok(Time::UtcTime(UtcTime::from_unix_duration(d).map_err(bad)?))
    } else {
        Ok(Time::GeneralTime(
            GeneralizedTime::from_unix_duration(d).map_err(bad)?,
        ))
    }
}

/// A random positive serial of exactly 20 octets (158 random bits): far
/// past the 64 bits CA/B asks for, and never from a shared serial file.
pub fn random_serial() -> Result<SerialNumber> {
    let mut b = [0u8; 20];
    getrandom::fill(&mut b).map_err(|e| Error::crypto("no randomness", e))?;
    // Top bit clear keeps it positive in 20 octets; the next bit set keeps
    // the length fixed (no leading zero byte to strip).
    b[0] = (b[0] & 0x7f) | 0x40;
    SerialNumber::new(&b).map_err(|e| Error::crypto("cannot make serial", e))
}

/// Parses a serial as users write it: hex, any case, optional `0x` and colons.
pub fn parse_serial(s: &str) -> Result<SerialNumber, String> {
    let hex: String = s
        .trim()
        .trim_start_matches("0x")
        .trim_start_matches("0X")
        .chars()
        .filter(|&c| c != ':')
        .collect();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("'{s}' is not a hex serial number"));
    }
    let padded = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    };
    let bytes: Vec<u8> = (0..padded.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&padded[i..i + 2], 16).ok())
        .collect();
    let trimmed: &[u8] = {
        let lead = bytes.iter().take_while(|&&b| b == 0).count();
        &bytes[lead..]
    };
    if trimmed.is_empty() {
        return Err("serial number must be positive (not zero)".into());
    }
    if trimmed.len() > 20 || (trimmed.len() == 20 && trimmed[0] >= 0x80) {
        return Err("serial number is longer than 20 octets".into());
    }
    SerialNumber::new(trimmed).map_err(|e| e.to_string())
}

/// Upper-case hex without colons, as `openssl x509 -serial` prints.
pub fn serial_hex(serial: &SerialNumber) -> String {
    integer_hex(serial.as_bytes())
}

/// A DER INTEGER's content (two's complement) as OpenSSL prints it:
/// upper-case hex of the magnitude, `-` before a negative one, `00` for zero.
pub fn integer_hex(bytes: &[u8]) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let magnitude: Vec<u8> = if negative {
        // Two's complement: invert, then add one from the last byte up.
        let mut m: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for b in m.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
        m
    } else {
        bytes.to_vec()
    };
    // The DER content keeps a 0x00 sign byte before a high bit; OpenSSL does not print it.
    let lead = magnitude.iter().take_while(|&&b| b == 0).count();
    let hex: String = magnitude[lead..]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    match (hex.is_empty(), negative) {
        (true, _) => "00".into(),
        (false, true) => format!("-{hex}"),
        (false, false) => hex,
    }
}

/// RFC 3339 in UTC, second precision.
pub fn format_time(t: SystemTime) -> String {
    // From<SystemTime> keeps times before 1970 (certificates have them).
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

/// Parses RFC 3339 (`2030-01-01T00:00:00Z`).
pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    let dt = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("'{s}' is not an RFC 3339 time such as 2030-01-01T00:00:00Z"))?;
    let secs = dt.unix_timestamp();
    if secs < 0 {
        return Err(format!("'{s}' is before 1970"));
    }
    Ok(UNIX_EPOCH + Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_parse_like_users_write_them() {
        assert_eq!(serial_hex(&parse_serial("0a:1b").unwrap()), "0A1B");
        assert_eq!(serial_hex(&parse_serial("0x0A1B").unwrap()), "0A1B");
        assert_eq!(serial_hex(&parse_serial("00ff").unwrap()), "FF");
        assert!(parse_serial("0").is_err());
        assert!(parse_serial("xyz").is_err());
        assert!(parse_serial(&"7f".repeat(21)).is_err());
        assert!(parse_serial(&"7f".repeat(20)).is_ok());
    }

    #[test]
    fn negative_and_zero_integers_print_as_openssl() {
        assert_eq!(integer_hex(&[0xff]), "-01");
        assert_eq!(integer_hex(&[0x80]), "-80");
        assert_eq!(integer_hex(&[0xff, 0x00]), "-0100");
        assert_eq!(integer_hex(&[0x00]), "00");
        assert_eq!(integer_hex(&[0x00, 0x80]), "80");
    }

    #[test]
    fn random_serials_are_20_octets_positive_and_distinct() {
        let a = random_serial().unwrap();
        let b = random_serial().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_bytes().len(), 20);
        assert!(a.as_bytes()[0] < 0x80);
    }

    #[test]
    fn times_roundtrip() {
        let t = parse_time("2030-01-01T00:00:00Z").unwrap();
        assert_eq!(format_time(t), "2030-01-01T00:00:00Z");
        assert!(matches!(x509_time(t).unwrap(), Time::UtcTime(_)));
        assert!(matches!(
            x509_time(parse_time("2051-01-01T00:00:00Z").unwrap()).unwrap(),
            Time::GeneralTime(_)
        ));
    }
}
