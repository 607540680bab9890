//! Path validation for client (device) certificates, judged the way an
//! OpenSSL-based broker such as Mosquitto judges them: `openssl verify
//! -purpose sslclient [-crl_check | -crl_check_all]` semantics (libssl
//! verifies a client's certificate with the `ssl_client` purpose), with a
//! backtracking path builder (OpenSSL's gives up on some valid graphs).
//! `strict` adds the RFC 5280 conformance checks x509-limbo expects and
//! plain OpenSSL skips (docs/verify.md lists every difference).

mod crl;
pub use crl::{LoadedCrl, load_crls};

use crate::sign::format_time;
use std::collections::HashSet;
use std::time::SystemTime;

use der::asn1::BitString;
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode, Tag, Tagged};
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, ExtendedKeyUsage, KeyUsage,
    SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;

use crate::input::LoadedCert;
use crate::name::to_rfc4514;
use crate::sign::verify_signed;

const OID_BC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_KU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_SKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const OID_AKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
const OID_CRL_DP: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.31");
const OID_NS_CERT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113730.1.1");
const OID_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
/// Netscape certificate type bits (first octet): SSL client, any CA, SSL CA.
const NS_SSL_CLIENT: u8 = 0x80;
const NS_SSL_CA: u8 = 0x04;
const NS_ANY_CA: u8 = 0x07;
/// Extensions OpenSSL 3.0 accepts critical (X509_supported_extension):
/// nsCertType, KU, SAN, BC, policies, CRL DP, EKU, IP/AS blocks, OCSP
/// no-check, policy constraints/mappings, inhibitAnyPolicy and proxy info.
/// nameConstraints is left out: devcert does not enforce it, so a critical
/// one is refused rather than ignored.
const HANDLED_CRITICAL: [&str; 14] = [
    "2.16.840.1.113730.1.1",
    "2.5.29.15",
    "2.5.29.17",
    "2.5.29.19",
    "2.5.29.32",
    "2.5.29.31",
    "2.5.29.37",
    "1.3.6.1.5.5.7.1.7",
    "1.3.6.1.5.5.7.1.8",
    "1.3.6.1.5.5.7.48.1.5",
    "2.5.29.36",
    "2.5.29.33",
    "2.5.29.54",
    "1.3.6.1.5.5.7.1.14",
];
/// Exploration budget: pathological graphs must end quickly. Signature
/// checks dominate (0.3–0.7 ms each for P-256 here); a real chain needs a few, a
/// hundred same-name intermediates without key ids would need 10,000.
const MAX_DEPTH: usize = 32;
const MAX_STEPS: usize = 4096;
const MAX_SIGNATURE_CHECKS: usize = 256;

/// How to judge.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub at: SystemTime,
    pub strict: bool,
    /// Check revocation of every certificate of the path, not only the
    /// leaf (OpenSSL's `-crl_check_all`); needs a CRL from every issuer.
    pub crl_check_all: bool,
    /// Any trusted certificate is an anchor, self-signed or not
    /// (OpenSSL's `-partial_chain`).
    pub partial_chain: bool,
}

/// The verdict: `Ok` with the validated path (leaf first), or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok(Vec<usize>),
    /// No path reaches a trusted CA.
    NoPath(String),
    /// A path to a trusted CA exists, but fails a check (expired, revoked...).
    Rejected(String),
}

/// What a certificate's extensions say, decoded once.
struct CertFacts {
    der: Vec<u8>,
    serial: SerialNumber,
    subject_canon: CanonName,
    issuer_canon: CanonName,
    subject_empty: bool,
    spki: Vec<u8>,
    self_issued: bool,
    version1: bool,
    bc: Option<(bool, BasicConstraints)>,
    ku: Option<KeyUsage>,
    eku: Option<Vec<ObjectIdentifier>>,
    /// First octet of nsCertType.
    ns_cert_type: Option<u8>,
    ski: Option<Vec<u8>>,
    aki: Option<AuthorityKeyIdentifier>,
    crl_dps: Vec<DistributionPoint>,
    /// Why the certificate is unusable whatever the path, if it is.
    invalid: Option<String>,
    unhandled_critical: Option<ObjectIdentifier>,
    not_before: SystemTime,
    not_after: SystemTime,
    sig_alg_consistent: bool,
    display: String,
}

impl CertFacts {
    fn new(c: &LoadedCert) -> CertFacts {
        let tbs = c.cert.tbs_certificate();
        let exts = tbs.extensions().map(|e| e.as_slice()).unwrap_or(&[]);
        let mut invalid = None;
        let mut seen = HashSet::new();
        let mut unhandled_critical = None;
        let (mut bc, mut ku, mut eku, mut ns_cert_type) = (None, None, None, None);
        let (mut ski, mut aki, mut crl_dps) = (None, None, Vec::new());
        for e in exts {
            if !seen.insert(e.extn_id) {
                invalid.get_or_insert_with(|| format!("duplicate extension {}", e.extn_id));
            }
            let v = e.extn_value.as_bytes();
            let bad = |what: &str| Some(format!("malformed {what} extension"));
            match e.extn_id {
                OID_BC => match BasicConstraints::from_der(v) {
                    Ok(b) => bc = Some((e.critical, b)),
                    Err(_) => invalid = bad("basicConstraints"),
                },
                OID_KU => match KeyUsage::from_der(v) {
                    Ok(k) => ku = Some(k),
                    Err(_) => invalid = bad("keyUsage"),
                },
                OID_EKU => match ExtendedKeyUsage::from_der(v) {
                    Ok(x) => eku = Some(x.0),
                    Err(_) => invalid = bad("extendedKeyUsage"),
                },
                OID_NS_CERT_TYPE => match BitString::from_der(v) {
                    Ok(b) => ns_cert_type = Some(b.raw_bytes().first().copied().unwrap_or(0)),
                    Err(_) => invalid = bad("nsCertType"),
                },
                OID_SKI => match SubjectKeyIdentifier::from_der(v) {
                    Ok(k) => ski = Some(k.0.as_bytes().to_vec()),
                    Err(_) => invalid = bad("subjectKeyIdentifier"),
                },
                OID_AKI => match AuthorityKeyIdentifier::from_der(v) {
                    Ok(k) => aki = Some(k),
                    Err(_) => invalid = bad("authorityKeyIdentifier"),
                },
                OID_CRL_DP => match CrlDistributionPoints::from_der(v) {
                    Ok(d) => crl_dps = d.0,
                    Err(_) => invalid = bad("cRLDistributionPoints"),
                },
                _ => {}
            }
            if e.critical && !HANDLED_CRITICAL.contains(&e.extn_id.to_string().as_str()) {
                unhandled_critical.get_or_insert(e.extn_id);
            }
        }
        let subject_canon = canonical_name(tbs.subject());
        let issuer_canon = canonical_name(tbs.issuer());
        CertFacts {
            der: c.der.clone(),
            serial: tbs.serial_number().clone(),
            self_issued: subject_canon == issuer_canon,
            subject_empty: tbs.subject().is_empty(),
            subject_canon,
            issuer_canon,
            spki: tbs.subject_public_key_info().to_der().unwrap_or_default(),
            version1: tbs.version() == x509_cert::certificate::Version::V1,
            bc,
            ku,
            eku,
            ns_cert_type,
            ski,
            aki,
            crl_dps,
            invalid,
            unhandled_critical,
            not_before: tbs.validity().not_before.to_system_time(),
            not_after: tbs.validity().not_after.to_system_time(),
            sig_alg_consistent: tbs.signature() == c.cert.signature_algorithm(),
            display: format!("{} [{}]", c.label, to_rfc4514(tbs.subject())),
        }
    }

    /// OpenSSL's X509_check_ca: 0 not a CA, 1 basicConstraints CA:TRUE,
    /// 3 a v1 self-issued root, 4 no basicConstraints but keyUsage with
    /// keyCertSign, 5 no basicConstraints/keyUsage but a Netscape CA type.
    fn ca_kind(&self) -> u8 {
        if self.ku.is_some_and(|k| !k.key_cert_sign()) {
            return 0;
        }
        match &self.bc {
            Some((_, bc)) => u8::from(bc.ca),
            None if self.version1 && self.self_issued => 3,
            None if self.ku.is_some() => 4,
            None if self.ns_cert_type.is_some_and(|n| n & NS_ANY_CA != 0) => 5,
            None => 0,
        }
    }

    /// `extendedKeyUsage`, if present, lists clientAuth. OpenSSL does not
    /// count anyExtendedKeyUsage for the sslclient purpose.
    fn eku_allows_client(&self) -> bool {
        self.eku
            .as_ref()
            .is_none_or(|eku| eku.contains(&OID_CLIENT_AUTH))
    }
}

/// OpenSSL's X509_check_akid: an authorityKeyIdentifier, where present,
/// must name `issuer` (key id against its SKI, serial, issuer name).
fn akid_matches(issuer: &CertFacts, aki: Option<&AuthorityKeyIdentifier>) -> bool {
    let Some(aki) = aki else { return true };
    if let (Some(id), Some(ski)) = (&aki.key_identifier, &issuer.ski)
        && id.as_bytes() != ski.as_slice()
    {
        return false;
    }
    if let Some(sn) = &aki.authority_cert_serial_number
        && *sn != issuer.serial
    {
        return false;
    }
    let dir_name = aki
        .authority_cert_issuer
        .iter()
        .flatten()
        .find_map(|g| match g {
            GeneralName::DirectoryName(n) => Some(n),
            _ => None,
        });
    dir_name.is_none_or(|n| canonical_name(n) == issuer.issuer_canon)
}

/// A name in OpenSSL's canonical form: per RDN, its (type, value) pairs.
pub(crate) type CanonName = Vec<Vec<(ObjectIdentifier, Vec<u8>)>>;

/// A name compared as OpenSSL compares names (`x509_name_canon`): per RDN,
/// string values in UTF-8 with ASCII case and ASCII whitespace folded,
/// whatever the string type; other values by their DER.
pub(crate) fn canonical_name(name: &Name) -> CanonName {
    name.iter_rdn()
        .map(|rdn| {
            let mut atvs: Vec<(ObjectIdentifier, Vec<u8>)> = rdn
                .iter()
                .map(|atv| (atv.oid, canonical_value(&atv.value)))
                .collect();
            atvs.sort();
            atvs
        })
        .collect()
}

fn canonical_value(v: &der::asn1::Any) -> Vec<u8> {
    let text = match v.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::VisibleString => {
            std::str::from_utf8(v.value()).ok().map(str::to_string)
        }
        // OpenSSL reads a T61String as Latin-1.
        Tag::TeletexString => Some(v.value().iter().map(|&b| b as char).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = v
                .value()
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    };
    match text {
        Some(t) => canon_text(&t),
        // Not text (or text that does not decode): compared by its DER,
        // marked so it never equals a text value.
        None => [&[0u8][..], &v.to_der().unwrap_or_default()].concat(),
    }
}

/// OpenSSL's `asn1_string_canon`: leading and trailing ASCII whitespace
/// dropped, inner runs made one space, ASCII letters lowercased; every
/// other character (`K`, U+212A KELVIN SIGN, U+00A0 NO-BREAK SPACE, `Ä`)
/// is kept as it is.
fn canon_text(t: &str) -> Vec<u8> {
    // ossl_isspace: space, \t, \n, \v, \f, \r.
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut out = vec![1u8];
    let mut in_space = false;
    for b in t.as_bytes().iter().skip_while(|b| space(b)) {
        if space(b) {
            in_space = true;
            continue;
        }
        if in_space {
            out.push(b' ');
            in_space = false;
        }
        out.push(b.to_ascii_lowercase());
    }
    out
}

struct Search<'a> {
    facts: &'a [CertFacts],
    trusted: &'a [bool],
    partial_chain: bool,
    steps: usize,
    /// Cache: does cert `child` verify under this key (SPKI DER)?
    signed_by: std::collections::HashMap<(usize, &'a [u8]), bool>,
    /// Set when a signature check was refused for lack of budget.
    exhausted: bool,
}

impl Search<'_> {
    fn issued_by(&mut self, child: usize, parent: usize) -> bool {
        let f = self.facts;
        if f[child].issuer_canon != f[parent].subject_canon
            || !akid_matches(&f[parent], f[child].aki.as_ref())
        {
            return false;
        }
        let key = (child, f[parent].spki.as_slice());
        if let Some(&ok) = self.signed_by.get(&key) {
            return ok;
        }
        if self.signed_by.len() >= MAX_SIGNATURE_CHECKS {
            self.exhausted = true;
            return false;
        }
        let ok = verify_signed(&f[child].der, &f[parent].spki).is_ok();
        self.signed_by.insert(key, ok);
        ok
    }

    /// Depth-first: every path from `path`'s last cert up to a trust anchor.
    fn paths(&mut self, cur: usize, path: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        self.steps += 1;
        if self.steps > MAX_STEPS || path.len() > MAX_DEPTH || out.len() >= 16 {
            return;
        }
        // OpenSSL trusts a store certificate as an anchor only if it is
        // self-issued (no -partial_chain); otherwise it looks further up.
        if self.trusted[cur] && (self.facts[cur].self_issued || self.partial_chain) {
            out.push(path.clone());
            return;
        }
        // Trusted issuers first, as OpenSSL prefers the store.
        let mut order: Vec<usize> = (0..self.facts.len()).collect();
        order.sort_by_key(|&i| !self.trusted[i]);
        for cand in order {
            // The same certificate twice (also as a duplicate in another file) is a loop.
            if path
                .iter()
                .any(|&p| self.facts[p].der == self.facts[cand].der)
            {
                continue;
            }
            if self.issued_by(cur, cand) {
                path.push(cand);
                self.paths(cand, path, out);
                path.pop();
            }
        }
    }
}

/// Judges `leaf` (index 0 of `certs`) against the `trusted` anchors, with
/// `untrusted` intermediates and `crls`.
pub fn verify(
    leaf: &LoadedCert,
    untrusted: &[LoadedCert],
    trusted: &[LoadedCert],
    crls: &[LoadedCrl],
    policy: &Policy,
) -> Verdict {
    let all: Vec<&LoadedCert> = std::iter::once(leaf)
        .chain(untrusted)
        .chain(trusted)
        .collect();
    let facts: Vec<CertFacts> = all.iter().map(|c| CertFacts::new(c)).collect();
    let trusted_ders: HashSet<&[u8]> = trusted.iter().map(|c| c.der.as_slice()).collect();
    let is_trusted: Vec<bool> = facts
        .iter()
        .map(|f| trusted_ders.contains(f.der.as_slice()))
        .collect();
    let mut search = Search {
        facts: &facts,
        trusted: &is_trusted,
        partial_chain: policy.partial_chain,
        steps: 0,
        signed_by: Default::default(),
        exhausted: false,
    };
    let mut paths = Vec::new();
    search.paths(0, &mut vec![0], &mut paths);
    if paths.is_empty() {
        if search.exhausted || search.steps > MAX_STEPS {
            return Verdict::NoPath(format!(
                "no path found within the search budget ({MAX_SIGNATURE_CHECKS} signature \
                 checks, {MAX_STEPS} steps): too many candidate issuers for {}",
                facts[0].display
            ));
        }
        return Verdict::NoPath(no_path_reason(&facts, &mut search));
    }
    let mut first_reason = None;
    for p in paths {
        match check_path(&facts, &p, crls, policy) {
            Ok(()) => return Verdict::Ok(p),
            Err(r) => {
                first_reason.get_or_insert(r);
            }
        }
    }
    Verdict::Rejected(first_reason.unwrap_or_else(|| "no valid path".into()))
}

fn no_path_reason(facts: &[CertFacts], search: &mut Search<'_>) -> String {
    let leaf = &facts[0];
    // Walk the chain as far as it goes to say where it breaks.
    let mut cur = 0usize;
    let mut seen = vec![0usize];
    loop {
        let next = (0..facts.len()).find(|&i| !seen.contains(&i) && search.issued_by(cur, i));
        match next {
            Some(n) => {
                seen.push(n);
                cur = n;
            }
            None => break,
        }
    }
    let top = &facts[cur];
    if cur == 0 && leaf.self_issued {
        return format!("self-signed certificate not trusted: {}", leaf.display);
    }
    if top.self_issued && cur != 0 {
        return format!(
            "self-signed certificate in certificate chain is not trusted: {}",
            top.display
        );
    }
    if (0..facts.len()).any(|i| i != cur && facts[cur].issuer_canon == facts[i].subject_canon) {
        return format!(
            "certificate signature failure: no issuer's key verifies {}",
            top.display
        );
    }
    format!("unable to get local issuer certificate for {}", top.display)
}

fn check_path(
    facts: &[CertFacts],
    path: &[usize],
    crls: &[LoadedCrl],
    policy: &Policy,
) -> Result<(), String> {
    let n = path.len();
    let mut below_non_self_issued = 0usize;
    for (depth, &i) in path.iter().enumerate() {
        let f = &facts[i];
        let who = &f.display;
        let is_anchor = depth == n - 1;
        if let Some(why) = &f.invalid {
            return Err(format!("invalid certificate ({why}): {who}"));
        }
        if let Some(oid) = &f.unhandled_critical {
            return Err(format!("unhandled critical extension {oid}: {who}"));
        }
        if policy.at < f.not_before {
            return Err(format!(
                "certificate is not yet valid (it starts {}): {who}",
                format_time(f.not_before)
            ));
        }
        // OpenSSL: expired at notAfter; RFC 5280: valid through notAfter.
        if policy.at > f.not_after || (policy.at == f.not_after && !policy.strict) {
            return Err(format!(
                "certificate has expired (it ended {}): {who}",
                format_time(f.not_after)
            ));
        }
        if !is_anchor && !f.sig_alg_consistent {
            return Err(format!(
                "certificate signature failure (signature algorithm mismatch): {who}"
            ));
        }
        if depth == 0 {
            check_leaf(f, policy.strict)?;
        } else {
            check_ca(f, below_non_self_issued, is_anchor, policy.strict)?;
        }
        if depth > 0 && !f.self_issued {
            below_non_self_issued += 1;
        }
        if policy.strict {
            check_strict(f, depth, is_anchor)?;
        }
    }
    crl::check_revocation(facts, path, crls, policy)
}

/// What `-purpose sslclient` asks of the end entity.
fn check_leaf(f: &CertFacts, strict: bool) -> Result<(), String> {
    let who = &f.display;
    let purpose = |why: &str| Err(format!("unsupported certificate purpose: {why}: {who}"));
    if !f.eku_allows_client() {
        return purpose("extendedKeyUsage lacks clientAuth");
    }
    if let Some(ku) = &f.ku
        && !(ku.digital_signature() || ku.key_agreement())
    {
        return purpose("keyUsage lacks digitalSignature");
    }
    if f.ns_cert_type.is_some_and(|n| n & NS_SSL_CLIENT == 0) {
        return purpose("nsCertType lacks SSL client");
    }
    // -x509_strict: a leaf is a CA by basicConstraints or not at all.
    if strict && !matches!(f.ca_kind(), 0 | 1) {
        return Err(format!("invalid CA certificate (as an end entity): {who}"));
    }
    Ok(())
}

/// What OpenSSL asks of an issuer: a CA (intermediates by basicConstraints
/// only; the anchor also as a v1 root, by keyUsage or nsCertType unless
/// strict), keyCertSign, the sslclient purpose, pathLen.
fn check_ca(f: &CertFacts, below: usize, is_anchor: bool, strict: bool) -> Result<(), String> {
    let who = &f.display;
    if let Some(ku) = &f.ku
        && !ku.key_cert_sign()
    {
        return Err(format!(
            "key usage does not include certificate signing: {who}"
        ));
    }
    let kind = f.ca_kind();
    if kind == 0 || (kind != 1 && (!is_anchor || strict)) || f.subject_empty {
        return Err(format!("invalid CA certificate: {who}"));
    }
    if !f.eku_allows_client() {
        return Err(format!(
            "unsupported certificate purpose: CA's extendedKeyUsage lacks clientAuth: {who}"
        ));
    }
    if kind == 5 && f.ns_cert_type.is_some_and(|n| n & NS_SSL_CA == 0) {
        return Err(format!(
            "unsupported certificate purpose: nsCertType lacks SSL CA: {who}"
        ));
    }
    if let Some((_, bc)) = &f.bc
        && let Some(max) = bc.path_len_constraint
        && below > usize::from(max)
    {
        return Err(format!("path length constraint exceeded: {who}"));
    }
    Ok(())
}

/// RFC 5280 conformance that plain OpenSSL (and so the broker) skips.
fn check_strict(f: &CertFacts, depth: usize, is_anchor: bool) -> Result<(), String> {
    let who = &f.display;
    if depth > 0 {
        match &f.bc {
            Some((true, _)) => {}
            Some((false, _)) => {
                return Err(format!(
                    "RFC 5280: a CA's basicConstraints must be critical: {who}"
                ));
            }
            None => return Err(format!("RFC 5280: a CA must have basicConstraints: {who}")),
        }
        if f.ski.is_none() {
            return Err(format!(
                "RFC 5280: a CA must have a subjectKeyIdentifier: {who}"
            ));
        }
    }
    if !is_anchor && f.aki.is_none() {
        return Err(format!(
            "RFC 5280: authorityKeyIdentifier is required: {who}"
        ));
    }
    if let (Some(ku), Some((_, bc))) = (&f.ku, &f.bc)
        && ku.key_cert_sign()
        && !bc.ca
    {
        return Err(format!(
            "RFC 5280: keyCertSign without basicConstraints CA:TRUE: {who}"
        ));
    }
    Ok(())
}
