//! Reading input files: a size cap, `-` for stdin, PEM (any number of
//! blocks, lenient about line length) or DER detected from the bytes, and
//! loaders for certificates and CSRs that say what they found instead.

use std::io::Read;

use der::Decode;
use x509_cert::Certificate;
use x509_cert::request::CertReq;

use crate::error::{Error, ErrorKind, Result};

/// Larger inputs are refused before they are read in full: no certificate
/// material a device tool handles comes near this.
pub const MAX_INPUT_BYTES: u64 = 10 * 1024 * 1024;

/// The bytes of one input and the name to use for it in messages.
#[derive(Debug, Clone)]
pub struct Input {
    pub label: String,
    pub bytes: Vec<u8>,
}

/// One certificate-material object from an input: a PEM block, or the
/// whole file when it is DER (`tag` is then `None`).
#[derive(Debug, Clone)]
pub struct Block {
    pub tag: Option<String>,
    pub der: Vec<u8>,
    /// The PEM block carried RFC 1421 headers (`Proc-Type`, `DEK-Info`).
    pub has_headers: bool,
}

impl Input {
    /// Reads `path`, or standard input when `path` is `-`.
    pub fn read(path: &str) -> Result<Input> {
        let what = "cannot read input";
        let mut bytes = Vec::new();
        if path == "-" {
            std::io::stdin()
                .take(MAX_INPUT_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(what, "<stdin>", &e))?;
        } else {
            let file = std::fs::File::open(path).map_err(|e| Error::io(what, path, &e))?;
            let meta = file.metadata().map_err(|e| Error::io(what, path, &e))?;
            if meta.is_dir() {
                return Err(
                    Error::new(ErrorKind::Io, what, "is a directory, not a file").file(path),
                );
            }
            // A regular file says its size: refuse without reading a byte.
            if meta.len() > MAX_INPUT_BYTES {
                return Err(too_large(path));
            }
            file.take(MAX_INPUT_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(what, path, &e))?;
        }
        let label = if path == "-" {
            "<stdin>".to_string()
        } else {
            path.to_string()
        };
        if bytes.len() as u64 > MAX_INPUT_BYTES {
            return Err(too_large(&label));
        }
        if bytes.is_empty() {
            return Err(Error::parse(what, "file is empty").file(label));
        }
        Ok(Input { label, bytes })
    }

    pub fn from_bytes(label: impl Into<String>, bytes: Vec<u8>) -> Input {
        Input {
            label: label.into(),
            bytes,
        }
    }

    /// Overwrites the bytes (a private key file's, once it is loaded).
    pub fn wipe(mut self) {
        zeroize::Zeroize::zeroize(&mut self.bytes);
    }

    /// Whether the input looks like PEM text rather than DER.
    pub fn is_pem(&self) -> bool {
        memfind(&self.bytes, b"-----BEGIN ").is_some()
    }

    /// Splits the input into blocks: every PEM block, or the DER whole.
    pub fn blocks(&self) -> Result<Vec<Block>> {
        if self.is_pem() {
            let pems = pem::parse_many(&self.bytes).map_err(|e| {
                Error::parse(
                    "cannot read input",
                    format!("malformed PEM: {}", pem_reason(&e)),
                )
                .file(&self.label)
            })?;
            // parse_many skips a block whose END line is missing; count BEGINs to notice.
            let begins = self
                .bytes
                .windows(11)
                .filter(|w| w == b"-----BEGIN ")
                .count();
            if pems.len() != begins {
                return Err(Error::parse(
                    "cannot read input",
                    "malformed PEM: a BEGIN line has no matching END (truncated?)",
                )
                .file(&self.label));
            }
            return Ok(pems
                .into_iter()
                .map(|p| Block {
                    tag: Some(p.tag().to_string()),
                    has_headers: p.headers().iter().next().is_some(),
                    der: p.into_contents(),
                })
                .collect());
        }
        if self.bytes.first() != Some(&0x30) {
            return Err(Error::parse("cannot read input", "neither PEM nor DER").file(&self.label));
        }
        Ok(vec![Block {
            tag: None,
            der: self.bytes.clone(),
            has_headers: false,
        }])
    }
}

fn too_large(label: &str) -> Error {
    Error::parse(
        "cannot read input",
        format!("larger than {} MiB", MAX_INPUT_BYTES >> 20),
    )
    .file(label)
}

fn pem_reason(e: &pem::PemError) -> String {
    match e {
        pem::PemError::MissingEndTag | pem::PemError::MalformedFraming => {
            "a BEGIN line has no matching END (truncated?)".into()
        }
        pem::PemError::MismatchedTags(a, b) => format!("BEGIN {a} ends with END {b}"),
        pem::PemError::InvalidData(_) => "invalid base64 data (truncated or corrupted?)".into(),
        other => other.to_string(),
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A human name for a PEM tag, for "expected X, found Y" messages.
/// `%XX` escapes (RFC 3986) decoded; `None` for a bad escape (callers
/// word the error: a URL may hold a password not to be repeated).
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

pub fn describe_tag(tag: &str) -> String {
    match tag {
        "CERTIFICATE" | "TRUSTED CERTIFICATE" => "a certificate".into(),
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => "a certificate signing request".into(),
        "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
            "a private key".into()
        }
        "PUBLIC KEY" | "RSA PUBLIC KEY" => "a public key".into(),
        "X509 CRL" => "a CRL".into(),
        other => format!("a '{other}' PEM block"),
    }
}

/// What a DER object of unknown kind is, for "expected X, found Y"
/// messages when the bytes do not parse as what was expected.
pub fn describe_der(der: &[u8]) -> Option<&'static str> {
    if Certificate::from_der(der).is_ok() {
        Some("a certificate (DER)")
    } else if CertReq::from_der(der).is_ok() {
        Some("a certificate signing request (DER)")
    } else if <x509_cert::crl::CertificateList>::from_der(der).is_ok() {
        Some("a CRL (DER)")
    } else if pkcs8::PrivateKeyInfoRef::from_der(der).is_ok()
        || pkcs8::EncryptedPrivateKeyInfoRef::from_der(der).is_ok()
        || sec1::EcPrivateKey::from_der(der).is_ok()
    {
        Some("a private key (DER)")
    } else if spki::SubjectPublicKeyInfoRef::from_der(der).is_ok() {
        Some("a public key (DER)")
    } else {
        None
    }
}

/// The reason a block did not parse as `expected`: what it is instead when
/// that can be told, else the parser's own words after `fallback`.
pub fn not_a(expected: &str, block: &Block, fallback: &str, err: impl std::fmt::Display) -> String {
    match (&block.tag, describe_der(&block.der)) {
        (None, Some(found)) if !found.starts_with(expected) => {
            format!("expected {expected}, found {found}")
        }
        _ => format!("{fallback} ({err})"),
    }
}

/// A parsed certificate together with the exact bytes it was read from.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub cert: Certificate,
    pub der: Vec<u8>,
    /// `file` or `file#N` for the N-th certificate of a bundle.
    pub label: String,
}

/// Every certificate in the input (PEM bundle or one DER certificate).
/// Any other kind of block is an error naming it.
pub fn load_certificates(input: &Input, what: &str) -> Result<Vec<LoadedCert>> {
    let blocks = input.blocks().map_err(|e| Error {
        what: what.into(),
        ..e
    })?;
    let many = blocks.len() > 1;
    let mut out = Vec::new();
    for (i, block) in blocks.into_iter().enumerate() {
        if let Some(tag) = &block.tag
            && tag != "CERTIFICATE"
            && tag != "TRUSTED CERTIFICATE"
        {
            return Err(Error::parse(
                what,
                format!("expected a certificate, found {}", describe_tag(tag)),
            )
            .file(&input.label));
        }
        let label = if many {
            format!("{}#{}", input.label, i + 1)
        } else {
            input.label.clone()
        };
        let cert = Certificate::from_der(&block.der).map_err(|e| {
            let why = not_a("a certificate", &block, "not a valid X.509 certificate", e);
            Error::parse(what, why).file(&label)
        })?;
        out.push(LoadedCert {
            cert,
            der: block.der,
            label,
        });
    }
    Ok(out)
}

/// Exactly one certificate.
pub fn load_certificate(input: &Input, what: &str) -> Result<LoadedCert> {
    let mut certs = load_certificates(input, what)?;
    if certs.len() != 1 {
        return Err(Error::parse(
            what,
            format!("expected one certificate, found {}", certs.len()),
        )
        .file(&input.label));
    }
    Ok(certs.remove(0))
}

/// Exactly one certificate signing request.
pub fn load_csr(input: &Input) -> Result<(CertReq, Vec<u8>)> {
    let what = "cannot read CSR";
    let blocks = input.blocks().map_err(|e| Error {
        what: what.into(),
        ..e
    })?;
    if blocks.len() != 1 {
        return Err(Error::parse(
            what,
            format!("expected one CSR, found {} PEM blocks", blocks.len()),
        )
        .file(&input.label));
    }
    let block = &blocks[0];
    if let Some(tag) = &block.tag
        && tag != "CERTIFICATE REQUEST"
        && tag != "NEW CERTIFICATE REQUEST"
    {
        return Err(Error::parse(
            what,
            format!(
                "expected a certificate signing request, found {}",
                describe_tag(tag)
            ),
        )
        .file(&input.label));
    }
    let csr = CertReq::from_der(&block.der).map_err(|e| {
        let why = not_a(
            "a certificate signing request",
            block,
            "not a valid PKCS#10 request",
            e,
        );
        Error::parse(what, why).file(&input.label)
    })?;
    Ok((csr, block.der.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_neither_pem_nor_der() {
        let e = Input::from_bytes("x.crt", b"hello".to_vec())
            .blocks()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read input (x.crt): neither PEM nor DER"
        );
    }

    #[test]
    fn truncated_pem_is_named() {
        let e = Input::from_bytes("x.crt", b"-----BEGIN CERTIFICATE-----\nMIIB\n".to_vec())
            .blocks()
            .unwrap_err();
        assert!(e.why.contains("truncated"), "{}", e.why);
    }

    #[test]
    fn wrong_kind_is_named() {
        let input = Input::from_bytes(
            "k.pem",
            b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n".to_vec(),
        );
        let e = load_certificate(&input, "cannot read CA certificate").unwrap_err();
        assert_eq!(e.why, "expected a certificate, found a private key");
    }
}
