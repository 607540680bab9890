//! Certificate chains in the order TLS clients send them: the leaf first,
//! then each issuer. Every link is checked by name and by signature, so a
//! broker never gets a chain that cannot work.

use der::Encode;

use crate::error::{Error, ErrorKind, Result};
use crate::input::LoadedCert;
use crate::name::to_rfc4514;
use crate::sign::verify_signed;

/// Whether `child` names `parent` as issuer and `parent`'s key signed it.
pub fn is_issued_by(child: &LoadedCert, parent: &LoadedCert) -> bool {
    let ct = child.cert.tbs_certificate();
    let pt = parent.cert.tbs_certificate();
    let same_name = match (ct.issuer().to_der(), pt.subject().to_der()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    same_name
        && pt
            .subject_public_key_info()
            .to_der()
            .is_ok_and(|spki| verify_signed(&child.der, &spki).is_ok())
}

fn describe(c: &LoadedCert) -> String {
    format!(
        "{} [{}]",
        c.label,
        to_rfc4514(c.cert.tbs_certificate().subject())
    )
}

/// Checks (or with `sort`, finds) the leaf-to-root order of `certs`.
/// A certificate given twice (`chain leaf+CA.pem CA.crt`) is kept once:
/// a self-signed CA "signs itself" and would otherwise pass as a link.
pub fn order_chain(mut certs: Vec<LoadedCert>, sort: bool) -> Result<Vec<LoadedCert>> {
    let mut seen = std::collections::HashSet::new();
    certs.retain(|c| seen.insert(c.der.clone()));
    if certs.is_empty() {
        return Err(Error::new(
            ErrorKind::Parse,
            "cannot build chain",
            "no certificates given",
        ));
    }
    let ordered = if sort { sort_chain(certs)? } else { certs };
    for pair in ordered.windows(2) {
        if !is_issued_by(&pair[0], &pair[1]) {
            let hint = if sort {
                "a certificate between them is missing"
            } else {
                "list the leaf first, then each issuer, or use --sort"
            };
            return Err(Error::new(
                ErrorKind::Refused,
                "broken chain",
                format!(
                    "{} is not signed by {}",
                    describe(&pair[0]),
                    describe(&pair[1])
                ),
            )
            .file(pair[0].label.clone())
            .hint(hint));
        }
    }
    Ok(ordered)
}

/// The files certificates came from, for an error about several of them.
fn labels<'a>(certs: impl Iterator<Item = &'a LoadedCert>) -> String {
    let mut files: Vec<&str> = certs.map(|c| c.label.as_str()).collect();
    files.dedup();
    files.join(", ")
}

/// Orders certificates leaf first: start at the one that issued nothing
/// else, then repeatedly take its issuer. Leftovers mean a gap.
fn sort_chain(mut pool: Vec<LoadedCert>) -> Result<Vec<LoadedCert>> {
    let issues_another = |i: usize, pool: &[LoadedCert]| {
        pool.iter()
            .enumerate()
            .any(|(j, c)| j != i && is_issued_by(c, &pool[i]))
    };
    let leaves: Vec<usize> = (0..pool.len())
        .filter(|&i| !issues_another(i, &pool))
        .collect();
    let leaf = match leaves.as_slice() {
        [one] => *one,
        [] => {
            return Err(Error::new(
                ErrorKind::Refused,
                "broken chain",
                "no leaf: the certificates issue each other in a loop",
            )
            .file(labels(pool.iter())));
        }
        many => {
            let names: Vec<String> = many.iter().map(|&i| describe(&pool[i])).collect();
            return Err(Error::new(
                ErrorKind::Refused,
                "broken chain",
                format!(
                    "several certificates could be the leaf: {}",
                    names.join(", ")
                ),
            )
            .file(labels(many.iter().map(|&i| &pool[i])))
            .hint("a certificate linking them is missing"));
        }
    };
    let mut top = pool.remove(leaf);
    let mut out = Vec::new();
    while let Some(pos) = pool.iter().position(|c| is_issued_by(&top, c)) {
        out.push(std::mem::replace(&mut top, pool.remove(pos)));
    }
    out.push(top);
    if let Some(left) = pool.first() {
        let last = &out[out.len() - 1];
        return Err(Error::new(
            ErrorKind::Refused,
            "broken chain",
            format!(
                "{} is not signed by {} or any other given certificate",
                describe(last),
                describe(left)
            ),
        )
        .file(last.label.clone())
        .hint("a certificate between them is missing"));
    }
    Ok(out)
}
