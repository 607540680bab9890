//! The human form of a [`Report`]: one section per item, labels aligned,
//! every extension on its own line.

use std::fmt::Write;

use time::{Duration, OffsetDateTime};

use super::extensions::{ExtensionInfo, value_text};
use super::{CertInfo, CrlInfo, CsrInfo, Item, PrivateKeyInfo, PublicKeyInfo, Report};
use crate::escape;

/// Renders the report; `now` decides "expires in" / "expired ... ago".
/// Every string taken from the input goes out through [`escape::text`].
pub fn render(report: &Report, now: OffsetDateTime) -> String {
    let mut out = String::new();
    let label = escape::text(&report.label);
    let encoding = if report.pem { "PEM" } else { "DER" };
    let n = report.items.len();
    if n > 1 {
        let all_certs = report
            .items
            .iter()
            .all(|i| matches!(i, Item::Certificate(_)));
        let what = if all_certs { "Chain of" } else { "Bundle of" };
        let noun = if all_certs { "certificates" } else { "objects" };
        let _ = writeln!(out, "{label}: {what} {n} {noun} ({encoding})");
    }
    for (i, item) in report.items.iter().enumerate() {
        if n > 1 {
            let _ = write!(out, "\n[{}/{n}] ", i + 1);
        }
        let head = match n {
            1 => format!("{label}: "),
            _ => String::new(),
        };
        let enc = if n == 1 { encoding } else { "" };
        match item {
            Item::Certificate(c) => certificate(&mut out, &head, enc, c, now),
            Item::Csr(c) => csr(&mut out, &head, enc, c),
            Item::PrivateKey(k) => private_key(&mut out, &head, enc, k),
            Item::PublicKey(p) => {
                let _ = writeln!(out, "{head}Public key{}", paren(&[enc, p.format]));
                public_key(&mut out, &p.public_key);
            }
            Item::Crl(c) => crl(&mut out, &head, enc, c, now),
            Item::EcParameters { curve } => {
                let _ = writeln!(out, "{head}EC parameters{}", paren(&[enc]));
                field(&mut out, "Curve", curve);
            }
        }
    }
    out
}

/// ` (a, b)` of the non-empty parts, or nothing.
fn paren(parts: &[&str]) -> String {
    let parts: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn field(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "  {:<22}{}", format!("{label}:"), escape::text(value));
}

fn certificate(out: &mut String, head: &str, enc: &str, c: &CertInfo, now: OffsetDateTime) {
    let version = format!("X.509 v{}", c.version);
    let _ = writeln!(out, "{head}Certificate{}", paren(&[enc, &version]));
    field(out, "Subject", &c.subject);
    field(out, "Issuer", &c.issuer);
    field(out, "Serial", &c.serial);
    field(out, "Not before", &c.not_before);
    let status = match c.validity {
        Some((nb, _)) if now < nb => format!(" (not yet valid: starts in {})", span(nb - now)),
        Some((_, na)) if now >= na => format!(" (expired {} ago)", span(now - na)),
        Some((_, na)) => format!(" (expires in {})", span(na - now)),
        None => String::new(),
    };
    field(out, "Not after", &format!("{}{status}", c.not_after));
    public_key(out, &c.public_key);
    field(out, "Signature algorithm", &c.signature_algorithm);
    extensions(out, "Extensions", &c.extensions);
    field(out, "SHA-256 fingerprint", &c.sha256_fingerprint);
}

fn csr(out: &mut String, head: &str, enc: &str, c: &CsrInfo) {
    let _ = writeln!(out, "{head}Certificate signing request{}", paren(&[enc]));
    field(out, "Subject", &c.subject);
    public_key(out, &c.public_key);
    let verdict = match c.signature_valid {
        Some(true) => "valid",
        Some(false) => "DOES NOT VERIFY",
        None => "not checked: unsupported key type",
    };
    field(
        out,
        "Signature algorithm",
        &format!("{} ({verdict})", c.signature_algorithm),
    );
    extensions(out, "Requested extensions", &c.requested_extensions);
    if !c.other_attributes.is_empty() {
        field(out, "Other attributes", &c.other_attributes.join(", "));
    }
}

fn private_key(out: &mut String, head: &str, enc: &str, k: &PrivateKeyInfo) {
    let state = if k.encrypted {
        "encrypted"
    } else {
        "not encrypted"
    };
    let _ = writeln!(out, "{head}Private key{}", paren(&[enc, k.format, state]));
    if let Some(scheme) = &k.encryption {
        field(out, "Encryption", scheme);
    }
    match &k.public_key {
        Some(p) => public_key(out, p),
        None if k.encrypted => field(out, "Key", "needs the passphrase to read (not decrypted)"),
        None => {}
    }
    if let Some(why) = &k.problem {
        field(out, "Problem", why);
    }
}

fn public_key(out: &mut String, p: &PublicKeyInfo) {
    let mut desc = p.algorithm.clone();
    if let Some(curve) = &p.curve {
        desc.push(' ');
        desc.push_str(curve);
    }
    if let Some(bits) = p.bits {
        desc.push_str(&format!(" {bits} bits"));
    }
    field(out, "Public key", &desc);
    if let Some(fp) = &p.sha256_fingerprint {
        field(out, "Public key SHA-256", fp);
    }
}

fn crl(out: &mut String, head: &str, enc: &str, c: &CrlInfo, now: OffsetDateTime) {
    let version = format!("v{}", c.version);
    let _ = writeln!(out, "{head}CRL{}", paren(&[enc, &version]));
    field(out, "Issuer", &c.issuer);
    field(out, "This update", &c.this_update);
    if let Some(next) = &c.next_update {
        let status = match c.next_update_time {
            Some(t) if now >= t => format!(" (overdue by {})", span(now - t)),
            Some(t) => format!(" (in {})", span(t - now)),
            None => String::new(),
        };
        field(out, "Next update", &format!("{next}{status}"));
    }
    field(out, "Signature algorithm", &c.signature_algorithm);
    extensions(out, "Extensions", &c.extensions);
    field(
        out,
        "Revoked",
        &format!("{} certificate(s)", c.revoked.len()),
    );
    for r in &c.revoked {
        let mut line = format!("    {}  {}", r.serial, r.revocation_date);
        if let Some(reason) = &r.reason {
            line.push_str("  ");
            line.push_str(reason);
        }
        let _ = writeln!(out, "{}", escape::text(&line));
        for e in r.extensions.iter().filter(|e| e.name != Some("CRLReason")) {
            let _ = writeln!(out, "      {}", extension_line(e));
        }
    }
    field(out, "SHA-256 fingerprint", &c.sha256_fingerprint);
}

fn extensions(out: &mut String, label: &str, list: &[ExtensionInfo]) {
    if list.is_empty() {
        field(out, label, "none");
        return;
    }
    let _ = writeln!(out, "  {label}:");
    for e in list {
        let _ = writeln!(out, "    {}", extension_line(e));
    }
}

fn extension_line(e: &ExtensionInfo) -> String {
    let name = e.name.map_or(e.oid.clone(), str::to_string);
    let critical = if e.critical { " (critical)" } else { "" };
    let line = format!("{name}{critical}: {}", value_text(&e.value));
    escape::text(&line).into_owned()
}

/// A duration for people: whole days, else hours, else minutes.
fn span(d: Duration) -> String {
    let secs = d.whole_seconds();
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if secs >= 86_400 {
        // Rounded: a certificate issued for 30 days just now "expires in 30 days".
        plural((secs + 43_200) / 86_400, "day")
    } else if secs >= 3_600 {
        plural(secs / 3_600, "hour")
    } else {
        plural(secs / 60, "minute")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_round_to_days() {
        assert_eq!(span(Duration::days(30) - Duration::seconds(3)), "30 days");
        assert_eq!(span(Duration::days(1)), "1 day");
        assert_eq!(span(Duration::hours(5)), "5 hours");
        assert_eq!(span(Duration::seconds(59)), "0 minutes");
    }
}
