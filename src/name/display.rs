//! Names shown as RFC 4514 text, as `openssl x509 -nameopt
//! RFC2253,-esc_msb` shows them.

use super::*;

/// The name as RFC 4514 text, equal to what
/// `openssl x509 -noout -subject -nameopt RFC2253,-esc_msb` prints after
/// `subject=`: most specific RDN first (and, as OpenSSL does, the
/// attributes of a multi-valued RDN in reverse DER order), OpenSSL's short
/// names, `,+"\<>;` and a leading `#` or leading/trailing space escaped
/// with `\`, control characters as `\XX`, unknown attributes and
/// non-string values as `OID=#<hex DER>`.
///
/// Text is kept as UTF-8 (the `-esc_msb` choice): plain `-nameopt RFC2253`
/// would print every byte of a multibyte character as `\XX`, which is
/// correct RFC 4514 but unreadable for names like `Zürich`. T61String is
/// read as Latin-1 and BMPString as UCS-2, as OpenSSL does; a UTF8String
/// holding invalid UTF-8 gets its high bytes escaped as `\XX`.
pub fn to_rfc4514(name: &Name) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.into_iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let atvs: Vec<_> = rdn.iter().collect();
        for (j, atv) in atvs.into_iter().rev().enumerate() {
            if j > 0 {
                out.push('+');
            }
            match attribute_short_name(&atv.oid) {
                Some(short) => {
                    out.push_str(short);
                    out.push('=');
                    push_value(&mut out, &atv.value);
                }
                None => {
                    out.push_str(&atv.oid.to_string());
                    out.push('=');
                    push_hex_der(&mut out, &atv.value);
                }
            }
        }
    }
    out
}

fn push_value(out: &mut String, value: &Any) {
    let bytes = value.value();
    let text: Option<Vec<char>> = match value.tag() {
        Tag::Utf8String => match std::str::from_utf8(bytes) {
            Ok(s) => Some(s.chars().collect()),
            Err(_) => {
                push_escaped_bytes(out, bytes);
                return;
            }
        },
        Tag::PrintableString
        | Tag::Ia5String
        | Tag::TeletexString
        | Tag::NumericString
        | Tag::VisibleString
        | Tag::UtcTime
        | Tag::GeneralizedTime => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString if bytes.len().is_multiple_of(2) => bytes
            .chunks_exact(2)
            .map(|p| char::from_u32(u32::from(u16::from_be_bytes([p[0], p[1]]))))
            .collect(),
        _ => None,
    };
    match text {
        Some(chars) => push_escaped(out, &chars),
        None => push_hex_der(out, value),
    }
}

fn push_escaped(out: &mut String, chars: &[char]) {
    let last = chars.len().saturating_sub(1);
    for (i, &c) in chars.iter().enumerate() {
        push_escaped_char(out, c, i == 0, i == last);
    }
}

/// OpenSSL's `do_esc_char` with the RFC 2253 flags minus `ESC_MSB`.
fn push_escaped_char(out: &mut String, c: char, first: bool, last: bool) {
    match c {
        '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
            out.push('\\');
            out.push(c);
        }
        '#' if first => out.push_str("\\#"),
        ' ' if first || last => out.push_str("\\ "),
        // Controls (C1 and bidi too) as their UTF-8 bytes, RFC 4514's \XX.
        c if crate::escape::is_unsafe(c) => {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        }
        c => out.push(c),
    }
}

/// A UTF8String that is not UTF-8: what OpenSSL's byte-wise printer does,
/// with high bytes escaped so the result stays a valid string.
fn push_escaped_bytes(out: &mut String, bytes: &[u8]) {
    let last = bytes.len().saturating_sub(1);
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii() {
            push_escaped_char(out, char::from(b), i == 0, i == last);
        } else {
            out.push_str(&format!("\\{b:02X}"));
        }
    }
}

fn push_hex_der(out: &mut String, value: &Any) {
    out.push('#');
    match value.to_der() {
        Ok(der) => {
            for b in der {
                out.push_str(&format!("{b:02X}"));
            }
        }
        // Only a value too long for DER fails to encode; show its content.
        Err(_) => {
            for b in value.value() {
                out.push_str(&format!("{b:02X}"));
            }
        }
    }
}

/// The most specific common name of a name shown by [`to_rfc4514`] (the
/// first `CN=` there, the last in DER order, as [`super::common_name_of`]
/// picks it); `None` when there is none or it is shown as `#<hex>`. For
/// records that kept only the text (registries made before devcert stored
/// the common name).
pub fn common_name_of_rfc4514(text: &str) -> Option<String> {
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        // One attribute: `TYPE=value` up to an unescaped `,` or `+`.
        let mut ty = String::new();
        let mut value = Vec::new();
        let mut in_value = false;
        let mut hex_form = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' if in_value => match chars.next() {
                    Some(h)
                        if h.is_ascii_hexdigit()
                            && chars.peek().is_some_and(char::is_ascii_hexdigit) =>
                    {
                        let l = chars.next()?;
                        value.push(u8::from_str_radix(&format!("{h}{l}"), 16).ok()?);
                    }
                    Some(e) => value.extend_from_slice(e.encode_utf8(&mut [0; 4]).as_bytes()),
                    None => return None,
                },
                ',' | '+' if in_value => break,
                '=' if !in_value => {
                    in_value = true;
                    hex_form = chars.peek() == Some(&'#');
                }
                c if in_value => value.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                c => ty.push(c),
            }
        }
        if ty == "CN" {
            return match hex_form || value.is_empty() {
                true => None,
                false => String::from_utf8(value).ok(),
            };
        }
    }
    None
}

#[cfg(test)]
mod cn_tests {
    use super::*;

    #[test]
    fn common_name_comes_back_from_its_rfc4514_text() {
        for subject in [
            "/CN=sensor-1",
            "/C=DE/O=Acme, Inc./CN=a\\+b,c\\\\d",
            "/O=y/CN=x+serialNumber=5",
            "/CN=outer/O=x/CN=#inner ",
            "/CN= spaced /serialNumber=7",
            "/CN=Zürich <x>;\"q\"",
            "/O=no cn here",
        ] {
            let name = crate::name::parse_subject(subject, StringMask::Utf8Only).unwrap();
            assert_eq!(
                common_name_of_rfc4514(&to_rfc4514(&name)),
                crate::name::common_name_of(&name),
                "{subject} shown as {}",
                to_rfc4514(&name)
            );
        }
    }
}
