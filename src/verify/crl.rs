//! Revocation as OpenSSL 3.0 checks it (`check_revocation`, `get_crl_sk`,
//! `check_crl`, `cert_crl` in crypto/x509/x509_vfy.c): the leaf only
//! (`-crl_check`, what Mosquitto's `crlfile` sets) or every certificate of
//! the path (`-crl_check_all`); of several CRLs for one issuer the best
//! scored one is used — currently valid before out of time, then the newest
//! thisUpdate — and only that one.

use der::Decode;
use der::asn1::ObjectIdentifier;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::crl::dp::IssuingDistributionPoint;
use x509_cert::ext::pkix::name::DistributionPointName;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlReason};

use super::{CanonName, CertFacts, OID_AKI, Policy, akid_matches, canonical_name};
use crate::error::{Error, Result};
use crate::input::Input;
use crate::sign::verify_signed;

const OID_CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");
const OID_CRL_REASON: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.21");
const OID_DELTA_CRL: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.27");
const OID_IDP: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.28");
const OID_CERT_ISSUER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.29");

/// A parsed CRL with its bytes and what OpenSSL caches about it.
pub struct LoadedCrl {
    pub crl: CertificateList,
    pub der: Vec<u8>,
    pub label: String,
    issuer_canon: CanonName,
    aki: Option<AuthorityKeyIdentifier>,
    idp: Option<IssuingDistributionPoint>,
    /// A critical extension OpenSSL does not handle (CRL or entry level).
    unhandled_critical: Option<ObjectIdentifier>,
    /// Delta CRLs, indirect CRLs, reason-partitioned CRLs and undecodable
    /// IDPs are never used (OpenSSL without extended CRL support).
    unusable: bool,
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
            Ok(LoadedCrl::new(crl, b.der, input.label.clone()))
        })
        .collect()
}

impl LoadedCrl {
    fn new(crl: CertificateList, der: Vec<u8>, label: String) -> LoadedCrl {
        let tbs = &crl.tbs_cert_list;
        let exts = tbs.crl_extensions.as_deref().unwrap_or(&[]);
        let (mut aki, mut idp, mut unusable) = (None, None, false);
        for e in exts {
            let v = e.extn_value.as_bytes();
            match e.extn_id {
                OID_AKI => aki = AuthorityKeyIdentifier::from_der(v).ok(),
                OID_DELTA_CRL => unusable = true,
                OID_IDP => match IssuingDistributionPoint::from_der(v) {
                    Ok(i) => {
                        unusable |= i.indirect_crl || i.only_some_reasons.is_some();
                        idp = Some(i);
                    }
                    Err(_) => unusable = true,
                },
                _ => {}
            }
        }
        let entry_exts = tbs
            .revoked_certificates
            .iter()
            .flatten()
            .flat_map(|r| r.crl_entry_extensions.iter().flatten());
        let unhandled_critical = exts
            .iter()
            .filter(|e| ![OID_IDP, OID_AKI, OID_DELTA_CRL].contains(&e.extn_id))
            .chain(entry_exts.filter(|e| e.extn_id != OID_CERT_ISSUER))
            .find(|e| e.critical)
            .map(|e| e.extn_id);
        LoadedCrl {
            issuer_canon: canonical_name(&tbs.issuer),
            crl,
            der,
            label,
            aki,
            idp,
            unhandled_critical,
            unusable,
        }
    }

    fn time_valid(&self, policy: &Policy) -> bool {
        let tbs = &self.crl.tbs_cert_list;
        policy.at >= tbs.this_update.to_system_time()
            && tbs
                .next_update
                .is_none_or(|n| policy.at < n.to_system_time())
    }

    /// OpenSSL's crl_crldp_check: the IDP's only-user/only-CA/only-attribute
    /// flags, and its distribution point against the certificate's CRLDP
    /// (full names sharing a name, or equal).
    fn in_scope(&self, subject: &CertFacts) -> bool {
        let Some(idp) = &self.idp else { return true };
        let is_ca = subject.bc.as_ref().is_some_and(|(_, b)| b.ca);
        if idp.only_contains_attribute_certs
            || (is_ca && idp.only_contains_user_certs)
            || (!is_ca && idp.only_contains_ca_certs)
        {
            return false;
        }
        let Some(want) = &idp.distribution_point else {
            return true;
        };
        subject.crl_dps.iter().any(|dp| {
            dp.crl_issuer.is_none()
                && dp
                    .distribution_point
                    .as_ref()
                    .is_some_and(|have| match (have, want) {
                        (
                            DistributionPointName::FullName(a),
                            DistributionPointName::FullName(b),
                        ) => a.iter().any(|n| b.contains(n)),
                        _ => have == want,
                    })
        })
    }
}

/// Revocation of the certificates at `path` positions (leaf first; the last
/// one is the trust anchor) per `policy`. No CRL given: nothing to check.
pub(super) fn check_revocation(
    facts: &[CertFacts],
    path: &[usize],
    crls: &[LoadedCrl],
    policy: &Policy,
) -> std::result::Result<(), String> {
    if crls.is_empty() {
        return Ok(());
    }
    let last = if policy.crl_check_all { path.len() } else { 1 };
    for depth in 0..last {
        let subject = &facts[path[depth]];
        // The anchor's CRL is its own (OpenSSL takes the last certificate
        // as its own issuer; a partial-chain anchor's CRL cannot be checked).
        let issuer = &facts[path[(depth + 1).min(path.len() - 1)]];
        if depth + 1 == path.len() && !subject.self_issued {
            return Err(format!(
                "unable to get CRL issuer certificate for {}",
                subject.display
            ));
        }
        let Some(crl) = best_crl(subject, issuer, crls, policy) else {
            return Err(format!(
                "unable to get certificate CRL for {}",
                subject.display
            ));
        };
        check_crl(crl, subject, issuer, policy)?;
        if is_revoked(crl, subject) {
            return Err(format!(
                "certificate revoked: {} (CRL {})",
                subject.display, crl.label
            ));
        }
    }
    Ok(())
}

/// get_crl_sk: among the CRLs naming the subject's issuer whose AKI fits
/// the issuer certificate, the best score (no unhandled critical
/// extension, currently valid), ties going to the strictly newest
/// thisUpdate, else the first given.
fn best_crl<'a>(
    subject: &CertFacts,
    issuer: &CertFacts,
    crls: &'a [LoadedCrl],
    policy: &Policy,
) -> Option<&'a LoadedCrl> {
    let mut best: Option<(&LoadedCrl, (bool, bool))> = None;
    for crl in crls {
        if crl.unusable
            || crl.issuer_canon != subject.issuer_canon
            || !akid_matches(issuer, crl.aki.as_ref())
        {
            continue;
        }
        let score = (crl.unhandled_critical.is_none(), crl.time_valid(policy));
        let better = match best {
            None => true,
            Some((b, s)) => {
                score > s
                    || (score == s
                        && crl.crl.tbs_cert_list.this_update.to_system_time()
                            > b.crl.tbs_cert_list.this_update.to_system_time())
            }
        };
        if better {
            best = Some((crl, score));
        }
    }
    best.map(|(c, _)| c)
}

/// check_crl + the critical-extension part of cert_crl, in OpenSSL's order.
fn check_crl(
    crl: &LoadedCrl,
    subject: &CertFacts,
    issuer: &CertFacts,
    policy: &Policy,
) -> std::result::Result<(), String> {
    if let Some(ku) = &issuer.ku
        && !ku.crl_sign()
    {
        return Err(format!(
            "key usage does not include CRL signing: {}",
            issuer.display
        ));
    }
    if !crl.in_scope(subject) {
        return Err(format!(
            "different CRL scope: {} does not cover {}",
            crl.label, subject.display
        ));
    }
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
    verify_signed(&crl.der, &issuer.spki).map_err(|_| {
        format!(
            "CRL signature failure: {} is not signed by {}",
            crl.label, issuer.display
        )
    })?;
    if let Some(oid) = crl.unhandled_critical {
        return Err(format!(
            "unhandled critical CRL extension {oid}: {}",
            crl.label
        ));
    }
    let exts = tbs.crl_extensions.as_deref().unwrap_or(&[]);
    if policy.strict && !exts.iter().any(|e| e.extn_id == OID_CRL_NUMBER) {
        return Err(format!("RFC 5280: CRL lacks a cRLNumber: {}", crl.label));
    }
    Ok(())
}

/// Listed, unless the entry's reason is removeFromCRL.
fn is_revoked(crl: &LoadedCrl, subject: &CertFacts) -> bool {
    let entries = crl.crl.tbs_cert_list.revoked_certificates.iter().flatten();
    entries
        .filter(|r| r.serial_number == subject.serial)
        .any(|r| {
            !r.crl_entry_extensions.iter().flatten().any(|e| {
                e.extn_id == OID_CRL_REASON
                    && CrlReason::from_der(e.extn_value.as_bytes())
                        .is_ok_and(|r| r == CrlReason::RemoveFromCRL)
            })
        })
}
