//! OpenSSL's attribute table (`tbl_standard.h`, `obj_dat.h` names) and how
//! a value becomes an ASN.1 string: the allowed types and lengths of each
//! attribute, narrowed by the `string_mask`, the first type that holds
//! every character winning.

use super::*;

// OpenSSL's B_ASN1_* bits, so the masks below read like OpenSSL's.
const PRINTABLE: u32 = 0x0002;
const T61: u32 = 0x0004;
const IA5: u32 = 0x0010;
const BMP: u32 = 0x0800;
const UTF8: u32 = 0x2000;
const DIRSTRING: u32 = PRINTABLE | T61 | BMP | UTF8;
const PKCS9STRING: u32 = DIRSTRING | IA5;

/// OpenSSL's `string_mask`: which string types `req` may pick for
/// attributes whose type is not fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StringMask {
    /// UTF8String only (OpenSSL 3's default and RFC 5280's advice).
    #[default]
    Utf8Only,
    /// Any type: PrintableString, then T61String, BMPString, UTF8String.
    Default,
    /// No BMPString or UTF8String (non-Latin-1 text is refused).
    Nombstr,
    /// No T61String (so non-printable text becomes BMPString when it fits).
    Pkix,
}

impl StringMask {
    fn bits(self) -> u32 {
        match self {
            StringMask::Utf8Only => UTF8,
            StringMask::Default => u32::MAX,
            StringMask::Nombstr => !(BMP | UTF8),
            StringMask::Pkix => !T61,
        }
    }

    pub(super) fn openssl_name(self) -> &'static str {
        match self {
            StringMask::Utf8Only => "utf8only",
            StringMask::Default => "default",
            StringMask::Nombstr => "nombstr",
            StringMask::Pkix => "pkix",
        }
    }
}

impl FromStr for StringMask {
    type Err = Error;

    /// OpenSSL's names, case-sensitive as OpenSSL compares them.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "utf8only" => Ok(StringMask::Utf8Only),
            "default" => Ok(StringMask::Default),
            "nombstr" => Ok(StringMask::Nombstr),
            "pkix" => Ok(StringMask::Pkix),
            _ => Err(Error::new(
                ErrorKind::Config,
                "invalid string_mask",
                format!("unknown string_mask '{s}'"),
            )
            .hint("use utf8only (the default), default, nombstr or pkix")),
        }
    }
}

/// How OpenSSL encodes one attribute's value.
#[derive(Clone, Copy)]
pub(super) struct Rule {
    /// Allowed types (B_ASN1_* bits).
    types: u32,
    /// `STABLE_NO_MASK`: the types are fixed, `string_mask` does not apply.
    fixed: bool,
    /// Length limits in characters, as in OpenSSL's `tbl_standard.h`.
    min: usize,
    max: Option<usize>,
}

/// Attributes absent from OpenSSL's table: any directory string, no limits.
const ANY_DIRSTRING: Rule = Rule {
    types: DIRSTRING,
    fixed: false,
    min: 0,
    max: None,
};

const fn dir(min: usize, max: usize) -> Rule {
    Rule {
        types: DIRSTRING,
        fixed: false,
        min,
        max: Some(max),
    }
}

const fn fixed(types: u32, min: usize, max: Option<usize>) -> Rule {
    Rule {
        types,
        fixed: true,
        min,
        max,
    }
}

struct Attribute {
    oid: ObjectIdentifier,
    /// OpenSSL's short name (what `-nameopt RFC2253` prints).
    short: &'static str,
    long: &'static str,
    rule: Rule,
}

const fn attr(oid: &str, short: &'static str, long: &'static str, rule: Rule) -> Attribute {
    Attribute {
        oid: ObjectIdentifier::new_unwrap(oid),
        short,
        long,
        rule,
    }
}

/// OpenSSL's upper bound for name-like attributes (`ub_name`).
const UB_NAME: usize = 32768;

/// The DN attributes devcert knows, with OpenSSL's names and encoding rules.
static ATTRIBUTES: &[Attribute] = &[
    attr("2.5.4.6", "C", "countryName", fixed(PRINTABLE, 2, Some(2))),
    attr("2.5.4.8", "ST", "stateOrProvinceName", dir(1, 128)),
    attr("2.5.4.7", "L", "localityName", dir(1, 128)),
    attr("2.5.4.10", "O", "organizationName", dir(1, 64)),
    attr("2.5.4.11", "OU", "organizationalUnitName", dir(1, 64)),
    attr("2.5.4.3", "CN", "commonName", dir(1, 64)),
    attr(
        "1.2.840.113549.1.9.1",
        "emailAddress",
        "emailAddress",
        fixed(IA5, 1, Some(128)),
    ),
    attr(
        "2.5.4.5",
        "serialNumber",
        "serialNumber",
        fixed(PRINTABLE, 1, Some(64)),
    ),
    attr(
        "2.5.4.46",
        "dnQualifier",
        "dnQualifier",
        fixed(PRINTABLE, 0, None),
    ),
    attr(
        "0.9.2342.19200300.100.1.25",
        "DC",
        "domainComponent",
        fixed(IA5, 1, None),
    ),
    attr(
        "0.9.2342.19200300.100.1.3",
        "mail",
        "rfc822Mailbox",
        fixed(IA5, 1, Some(256)),
    ),
    attr("0.9.2342.19200300.100.1.1", "UID", "userId", ANY_DIRSTRING),
    attr("2.5.4.9", "street", "streetAddress", ANY_DIRSTRING),
    attr("2.5.4.12", "title", "title", ANY_DIRSTRING),
    attr("2.5.4.13", "description", "description", ANY_DIRSTRING),
    attr(
        "2.5.4.15",
        "businessCategory",
        "businessCategory",
        ANY_DIRSTRING,
    ),
    attr("2.5.4.16", "postalAddress", "postalAddress", ANY_DIRSTRING),
    attr("2.5.4.17", "postalCode", "postalCode", ANY_DIRSTRING),
    attr("2.5.4.18", "postOfficeBox", "postOfficeBox", ANY_DIRSTRING),
    attr("2.5.4.4", "SN", "surname", dir(1, UB_NAME)),
    attr("2.5.4.42", "GN", "givenName", dir(1, UB_NAME)),
    attr("2.5.4.43", "initials", "initials", dir(1, UB_NAME)),
    attr("2.5.4.41", "name", "name", dir(1, UB_NAME)),
    attr(
        "2.5.4.44",
        "generationQualifier",
        "generationQualifier",
        ANY_DIRSTRING,
    ),
    attr("2.5.4.65", "pseudonym", "pseudonym", ANY_DIRSTRING),
    attr("2.5.4.72", "role", "role", ANY_DIRSTRING),
    attr(
        "2.5.4.97",
        "organizationIdentifier",
        "organizationIdentifier",
        ANY_DIRSTRING,
    ),
    attr(
        "1.2.840.113549.1.9.2",
        "unstructuredName",
        "unstructuredName",
        Rule {
            types: PKCS9STRING,
            fixed: false,
            min: 1,
            max: None,
        },
    ),
    attr(
        "1.2.840.113549.1.9.8",
        "unstructuredAddress",
        "unstructuredAddress",
        Rule {
            types: DIRSTRING,
            fixed: false,
            min: 1,
            max: None,
        },
    ),
    attr(
        "1.3.6.1.4.1.311.60.2.1.3",
        "jurisdictionC",
        "jurisdictionCountryName",
        fixed(PRINTABLE, 2, Some(2)),
    ),
    attr(
        "1.3.6.1.4.1.311.60.2.1.2",
        "jurisdictionST",
        "jurisdictionStateOrProvinceName",
        ANY_DIRSTRING,
    ),
    attr(
        "1.3.6.1.4.1.311.60.2.1.1",
        "jurisdictionL",
        "jurisdictionLocalityName",
        ANY_DIRSTRING,
    ),
];

fn by_oid(oid: &ObjectIdentifier) -> Option<&'static Attribute> {
    ATTRIBUTES.iter().find(|a| a.oid == *oid)
}

/// The short name OpenSSL prints for a DN attribute (`CN`, `emailAddress`,
/// `DC`, ...), or `None` for an attribute devcert does not know.
pub fn attribute_short_name(oid: &ObjectIdentifier) -> Option<&'static str> {
    by_oid(oid).map(|a| a.short)
}

/// Resolves a field name as OpenSSL's `OBJ_txt2obj` does: short name, then
/// long name (both case-sensitive), then a dotted OID.
pub(super) fn lookup(field: &str) -> Option<(ObjectIdentifier, Rule)> {
    if let Some(a) = ATTRIBUTES
        .iter()
        .find(|a| a.short == field)
        .or_else(|| ATTRIBUTES.iter().find(|a| a.long == field))
    {
        return Some((a.oid, a.rule));
    }
    if !field.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let oid = ObjectIdentifier::new(field).ok()?;
    Some((oid, by_oid(&oid).map_or(ANY_DIRSTRING, |a| a.rule)))
}

/// Encodes `value` as OpenSSL's `ASN1_mbstring_ncopy` would; the error text
/// is the reason only (callers add where).
pub(super) fn encode_value(
    field: &str,
    rule: Rule,
    mask: StringMask,
    value: &str,
) -> std::result::Result<Any, String> {
    let chars = value.chars().count();
    if chars < rule.min {
        return Err(if rule.min == 1 {
            format!("{field} must not be empty")
        } else {
            format!("{field} must be {} characters, got {chars}", rule.min)
        });
    }
    if let Some(max) = rule.max.filter(|&max| chars > max) {
        return Err(if max == rule.min {
            format!("{field} must be {max} characters, got {chars}")
        } else {
            format!("{field} must be at most {max} characters, got {chars}")
        });
    }
    if value.contains('\0') {
        return Err(format!("{field} contains a NUL character"));
    }
    let allowed = if rule.fixed {
        rule.types
    } else {
        rule.types & mask.bits()
    };
    let mut types = allowed;
    for c in value.chars() {
        let narrowed = types & !char_excludes(c);
        if narrowed == 0 {
            return Err(refusal(field, allowed, rule.fixed, mask, c));
        }
        types = narrowed;
    }
    let (tag, bytes) = if types & PRINTABLE != 0 {
        (Tag::PrintableString, latin1(value))
    } else if types & IA5 != 0 {
        (Tag::Ia5String, latin1(value))
    } else if types & T61 != 0 {
        (Tag::TeletexString, latin1(value))
    } else if types & BMP != 0 {
        let utf16 = value.encode_utf16().flat_map(u16::to_be_bytes).collect();
        (Tag::BmpString, utf16)
    } else {
        (Tag::Utf8String, value.as_bytes().to_vec())
    };
    Any::new(tag, bytes).map_err(|e| format!("{field} cannot be encoded: {e}"))
}

/// The types a character rules out (OpenSSL's `type_str`).
fn char_excludes(c: char) -> u32 {
    let mut out = 0;
    if !is_printable_string_char(c) {
        out |= PRINTABLE;
    }
    if !c.is_ascii() {
        out |= IA5;
    }
    if u32::from(c) > 0xff {
        out |= T61;
    }
    if u32::from(c) > 0xffff {
        out |= BMP;
    }
    out
}

/// ASN.1 PrintableString's alphabet (OpenSSL's `ossl_isasn1print`).
fn is_printable_string_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

/// Only called once every character is known to be at most U+00FF.
fn latin1(value: &str) -> Vec<u8> {
    value
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

fn refusal(field: &str, allowed: u32, fixed: bool, mask: StringMask, c: char) -> String {
    if fixed && allowed == PRINTABLE {
        format!(
            "{field} must be a PrintableString (A-Z a-z 0-9 space ' ( ) + , - . / : = ?); {c:?} is not allowed"
        )
    } else if fixed && allowed == IA5 {
        format!("{field} must be ASCII (an IA5String); {c:?} is not allowed")
    } else {
        format!(
            "{field}: {c:?} cannot be written with string_mask = {} (OpenSSL refuses it too); use string_mask = utf8only",
            mask.openssl_name()
        )
    }
}
