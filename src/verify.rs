//! Path validation for client (device) certificates, judged the way an
//! OpenSSL-based broker such as Mosquitto judges them: `openssl verify
//! -purpose sslclient [-crl_check]` semantics, with a backtracking path
//! builder (OpenSSL's gives up on some valid graphs). `strict` adds the
//! RFC 5280 conformance checks x509-limbo expects and plain OpenSSL skips
//! (docs/verify.md lists every difference).

use std::collections::HashSet;
use std::time::SystemTime;

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode, Tag, Tagged};
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
use x509_cert::name::Name;

use crate::error::{Error, Result};
use crate::input::{Input, LoadedCert};
use crate::name::to_rfc4514;
use crate::sign::verify_signed;

const OID_BC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_KU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_SKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const OID_AKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
const OID_CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");
const OID_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
const OID_ANY_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");
/// Extensions a verifier may see critical without rejecting the cert:
/// the ones enforced here, plus those that do not restrict validation
/// (SAN, IAN, policies, CRL DP, AIA, SCTs).
const HANDLED_CRITICAL: [&str; 9] = [
    "2.5.29.19",
    "2.5.29.15",
    "2.5.29.37",
    "2.5.29.17",
    "2.5.29.18",
    "2.5.29.32",
    "2.5.29.31",
    "2.5.29.54",
    "1.3.6.1.4.1.11129.2.4.2",
];
/// Exploration budget: pathological graphs must end quickly.
const MAX_DEPTH: usize = 32;
const MAX_STEPS: usize = 4096;

/// How to judge.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub at: SystemTime,
    pub strict: bool,
    /// Any trusted certificate is an anchor, self-signed or not
    /// (OpenSSL's `-partial_chain`).
    pub partial_chain: bool,
}

/// The verdict: `Ok` with the validated path (leaf first), or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok(Vec<usize>),
    Rejected(String),
}

/// A parsed CRL with its bytes.
pub struct LoadedCrl {
    pub crl: CertificateList,
    pub der: Vec<u8>,
    pub label: String,
}

/// Every CRL in the input (PEM `X509 CRL` blocks or one DER CRL).
pub fn load_crls(input: &Input) -> Result<Vec<LoadedCrl>> {
    let what = "cannot read CRL";
    let blocks = input.blocks().map_err(|e| Error {
        what: what.into(),
        ..e
    })?;
    blocks
        .into_iter()
        .map(|b| {
            if let Some(tag) = &b.tag
                && tag != "X509 CRL"
            {
                return Err(Error::parse(
                    what,
                    format!("expected a CRL, found {}", crate::input::describe_tag(tag)),
                )
                .file(&input.label));
            }
            let crl = CertificateList::from_der(&b.der).map_err(|e| {
                let why = crate::input::not_a("a CRL", &b, "not a valid CRL", e);
                Error::parse(what, why).file(&input.label)
            })?;
            Ok(LoadedCrl {
                crl,
                der: b.der,
                label: input.label.clone(),
            })
        })
        .collect()
}

/// What a certificate's extensions say, decoded once.
struct CertFacts {
    der: Vec<u8>,
    subject_canon: Vec<Vec<(ObjectIdentifier, String)>>,
    issuer_canon: Vec<Vec<(ObjectIdentifier, String)>>,
    subject_empty: bool,
    spki: Vec<u8>,
    self_issued: bool,
    version1: bool,
    bc: Option<(bool, BasicConstraints)>,
    ku: Option<KeyUsage>,
    eku: Option<Vec<ObjectIdentifier>>,
    has_ski: bool,
    has_aki: bool,
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
        let (mut bc, mut ku, mut eku, mut has_ski, mut has_aki) = (None, None, None, false, false);
        for e in exts {
            if !seen.insert(e.extn_id) {
                invalid.get_or_insert_with(|| format!("duplicate extension {}", e.extn_id));
            }
            let v = e.extn_value.as_bytes();
            let bad = |what: &str| format!("malformed {what} extension");
            match e.extn_id {
                OID_BC => match BasicConstraints::from_der(v) {
                    Ok(b) => bc = Some((e.critical, b)),
                    Err(_) => invalid = Some(bad("basicConstraints")),
                },
                OID_KU => match KeyUsage::from_der(v) {
                    Ok(k) => ku = Some(k),
                    Err(_) => invalid = Some(bad("keyUsage")),
                },
                OID_EKU => match ExtendedKeyUsage::from_der(v) {
                    Ok(x) => eku = Some(x.0),
                    Err(_) => invalid = Some(bad("extendedKeyUsage")),
                },
                OID_SKI => {
                    has_ski = true;
                    if e.critical {
                        invalid.get_or_insert_with(|| {
                            "subjectKeyIdentifier must not be critical".into()
                        });
                    }
                }
                OID_AKI => {
                    has_aki = true;
                    if e.critical {
                        unhandled_critical.get_or_insert(e.extn_id);
                    }
                }
                oid if e.critical && !HANDLED_CRITICAL.contains(&oid.to_string().as_str()) => {
                    unhandled_critical.get_or_insert(oid);
                }
                _ => {}
            }
        }
        let subject_canon = canonical_name(tbs.subject());
        let issuer_canon = canonical_name(tbs.issuer());
        CertFacts {
            der: c.der.clone(),
            self_issued: subject_canon == issuer_canon,
            subject_empty: tbs.subject().is_empty(),
            subject_canon,
            issuer_canon,
            spki: tbs.subject_public_key_info().to_der().unwrap_or_default(),
            version1: tbs.version() == x509_cert::certificate::Version::V1,
            bc,
            ku,
            eku,
            has_ski,
            has_aki,
            invalid,
            unhandled_critical,
            not_before: tbs.validity().not_before.to_system_time(),
            not_after: tbs.validity().not_after.to_system_time(),
            sig_alg_consistent: tbs.signature() == c.cert.signature_algorithm(),
            display: format!("{} [{}]", c.label, to_rfc4514(tbs.subject())),
        }
    }

    /// OpenSSL's X509_check_ca: may this certificate issue others?
    fn is_ca(&self) -> bool {
        match &self.bc {
            Some((_, bc)) => bc.ca,
            // A v1 self-signed root is a CA (OpenSSL's V1_ROOT), and so is a
            // certificate without basicConstraints whose keyUsage allows
            // keyCertSign (X509_check_ca returns 4 for it).
            None => {
                (self.version1 && self.self_issued) || self.ku.is_some_and(|k| k.key_cert_sign())
            }
        }
    }
}

/// A name compared as OpenSSL compares names: per RDN, attribute types
/// with string values case-folded and whitespace-collapsed, whatever the
/// string type; other values by their DER.
fn canonical_name(name: &Name) -> Vec<Vec<(ObjectIdentifier, String)>> {
    name.iter_rdn()
        .map(|rdn| {
            let mut atvs: Vec<(ObjectIdentifier, String)> = rdn
                .iter()
                .map(|atv| (atv.oid, canonical_value(&atv.value)))
                .collect();
            atvs.sort();
            atvs
        })
        .collect()
}

fn canonical_value(v: &der::asn1::Any) -> String {
    let text = match v.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::VisibleString => {
            std::str::from_utf8(v.value()).ok().map(str::to_string)
        }
        Tag::TeletexString => Some(v.value().iter().map(|&b| b as char).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = v
                .value()
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    };
    match text {
        Some(t) => t
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
        None => format!(
            "#{}",
            v.to_der()
                .unwrap_or_default()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
    }
}

struct Search<'a> {
    facts: &'a [CertFacts],
    trusted: &'a [bool],
    partial_chain: bool,
    steps: usize,
    /// Cache: does cert `child` verify under the key of cert `parent`?
    signed_by: std::collections::HashMap<(usize, usize), bool>,
}

impl Search<'_> {
    fn issued_by(&mut self, child: usize, parent: usize) -> bool {
        let f = self.facts;
        if f[child].issuer_canon != f[parent].subject_canon {
            return false;
        }
        *self
            .signed_by
            .entry((child, parent))
            .or_insert_with(|| verify_signed(&f[child].der, &f[parent].spki).is_ok())
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
    };
    let mut paths = Vec::new();
    search.paths(0, &mut vec![0], &mut paths);
    if paths.is_empty() {
        return Verdict::Rejected(no_path_reason(&facts, &mut search));
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
            return Err(format!("certificate is not yet valid: {who}"));
        }
        if policy.at >= f.not_after {
            return Err(format!("certificate has expired: {who}"));
        }
        if !is_anchor && !f.sig_alg_consistent {
            return Err(format!(
                "certificate signature failure (signature algorithm mismatch): {who}"
            ));
        }
        if depth == 0 {
            check_leaf_purpose(f)?;
        } else {
            check_ca(f, below_non_self_issued)?;
        }
        if depth > 0 && !f.self_issued {
            below_non_self_issued += 1;
        }
        if policy.strict {
            check_strict(f, depth, is_anchor)?;
        }
    }
    check_revocation(facts, path, crls, policy)
}

/// What `-purpose sslclient` asks of the end entity.
fn check_leaf_purpose(f: &CertFacts) -> Result<(), String> {
    if let Some(eku) = &f.eku
        && !eku
            .iter()
            .any(|o| *o == OID_CLIENT_AUTH || *o == OID_ANY_EKU)
    {
        return Err(format!(
            "unsupported certificate purpose: extendedKeyUsage lacks clientAuth: {}",
            f.display
        ));
    }
    if let Some(ku) = &f.ku
        && !(ku.digital_signature() || ku.key_agreement())
    {
        return Err(format!(
            "unsupported certificate purpose: keyUsage lacks digitalSignature: {}",
            f.display
        ));
    }
    Ok(())
}

fn check_ca(f: &CertFacts, below: usize) -> Result<(), String> {
    let who = &f.display;
    if !f.is_ca() || f.subject_empty {
        return Err(format!("invalid CA certificate: {who}"));
    }
    if let Some(ku) = &f.ku
        && !ku.key_cert_sign()
    {
        return Err(format!(
            "key usage does not include certificate signing: {who}"
        ));
    }
    if let Some(eku) = &f.eku
        && !eku
            .iter()
            .any(|o| *o == OID_CLIENT_AUTH || *o == OID_ANY_EKU)
    {
        return Err(format!(
            "unsupported certificate purpose: CA's extendedKeyUsage lacks clientAuth: {who}"
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
        if !f.has_ski {
            return Err(format!(
                "RFC 5280: a CA must have a subjectKeyIdentifier: {who}"
            ));
        }
    }
    if !is_anchor && !f.has_aki {
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

fn check_revocation(
    facts: &[CertFacts],
    path: &[usize],
    crls: &[LoadedCrl],
    policy: &Policy,
) -> Result<(), String> {
    if crls.is_empty() {
        return Ok(());
    }
    for (depth, pair) in path.windows(2).enumerate() {
        let (subject, issuer) = (&facts[pair[0]], &facts[pair[1]]);
        let issuer_name = &subject.issuer_canon;
        let candidates: Vec<&LoadedCrl> = crls
            .iter()
            .filter(|c| canonical_name(&c.crl.tbs_cert_list.issuer) == *issuer_name)
            .collect();
        if candidates.is_empty() {
            // As `-crl_check`: the leaf's CRL is required, others only if given.
            if depth == 0 {
                return Err(format!(
                    "unable to get certificate CRL for {}",
                    subject.display
                ));
            }
            continue;
        }
        if let Some(ku) = &issuer.ku
            && !ku.crl_sign()
        {
            return Err(format!(
                "key usage does not include CRL signing: {}",
                issuer.display
            ));
        }
        let serial = x509_cert::Certificate::from_der(&subject.der)
            .map(|c| c.tbs_certificate().serial_number().clone())
            .map_err(|e| e.to_string())?;
        for crl in candidates {
            check_crl(crl, issuer, policy)?;
            let revoked = crl
                .crl
                .tbs_cert_list
                .revoked_certificates
                .as_deref()
                .unwrap_or(&[]);
            if revoked.iter().any(|r| r.serial_number == serial) {
                return Err(format!(
                    "certificate revoked: {} (CRL {})",
                    subject.display, crl.label
                ));
            }
        }
    }
    Ok(())
}

fn check_crl(crl: &LoadedCrl, issuer: &CertFacts, policy: &Policy) -> Result<(), String> {
    verify_signed(&crl.der, &issuer.spki).map_err(|_| {
        format!(
            "CRL signature failure: {} is not signed by {}",
            crl.label, issuer.display
        )
    })?;
    let tbs = &crl.crl.tbs_cert_list;
    if policy.at < tbs.this_update.to_system_time() {
        return Err(format!("CRL is not yet valid: {}", crl.label));
    }
    if let Some(next) = tbs.next_update
        && policy.at >= next.to_system_time()
    {
        return Err(format!(
            "CRL has expired: {} (nextUpdate {next})",
            crl.label
        ));
    }
    let exts = tbs.crl_extensions.as_deref().unwrap_or(&[]);
    if let Some(e) = exts.iter().find(|e| e.critical) {
        return Err(format!(
            "unhandled critical CRL extension {}: {}",
            e.extn_id, crl.label
        ));
    }
    if policy.strict && !exts.iter().any(|e| e.extn_id == OID_CRL_NUMBER) {
        return Err(format!("RFC 5280: CRL lacks a cRLNumber: {}", crl.label));
    }
    Ok(())
}
