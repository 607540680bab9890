//! RFC 7512 `pkcs11:` URIs as devcert reads them: which token, which
//! object, and (in the query) the PIN and the module. Shown, they keep
//! only their path: no PIN reaches a message or a `Debug` print.

use std::fmt;
use std::path::PathBuf;

use zeroize::Zeroizing;

/// Whether a key argument is a PKCS#11 URI rather than a file name.
pub fn is_uri(arg: &str) -> bool {
    arg.get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("pkcs11:"))
}

/// Where a URI's PIN comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PinSource {
    /// `pin-value=`: in the URI itself.
    Value(Zeroizing<String>),
    /// `pin-source=file:/path`: one line of a file.
    File(PathBuf),
}

/// An RFC 7512 `pkcs11:` URI, as far as devcert uses it: which token
/// (token, manufacturer, model, serial, slot-id), which object (object, id,
/// type) and, in the query, the PIN and the module.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub token: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub slot_id: Option<u64>,
    pub object: Option<String>,
    pub id: Option<Vec<u8>>,
    /// `type=`: devcert only uses private keys.
    pub object_type: Option<String>,
    pub pin: Option<PinSource>,
    pub module_path: Option<PathBuf>,
}

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinSource::Value(_) => f.write_str("PinSource::Value(<redacted>)"),
            PinSource::File(p) => write!(f, "PinSource::File({})", p.display()),
        }
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({self})")
    }
}

/// The URI's path attributes, percent-encoded where needed: what the user
/// wrote, minus the query, so no PIN ever reaches a message.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let text = [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("serial", &self.serial),
        ];
        for (name, value) in text {
            if let Some(v) = value {
                parts.push(format!("{name}={}", pct_encode(v.as_bytes())));
            }
        }
        if let Some(s) = self.slot_id {
            parts.push(format!("slot-id={s}"));
        }
        if let Some(v) = &self.object {
            parts.push(format!("object={}", pct_encode(v.as_bytes())));
        }
        if let Some(id) = &self.id {
            let hex: String = id.iter().map(|b| format!("%{b:02x}")).collect();
            parts.push(format!("id={hex}"));
        }
        if let Some(t) = &self.object_type {
            parts.push(format!("type={}", pct_encode(t.as_bytes())));
        }
        write!(f, "pkcs11:{}", parts.join(";"))
    }
}

fn pct_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~:[]@!$'()*+,&".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn pct_decode(s: &str) -> Result<Vec<u8>, String> {
    crate::input::percent_decode(s).ok_or_else(|| format!("bad percent-encoding in '{s}'"))
}

impl Pkcs11Uri {
    /// Parses `pkcs11:path-attrs[?query-attrs]`. Attributes devcert would
    /// have to ignore are refused: a key must never be picked on less than
    /// the user asked for.
    pub fn parse(uri: &str) -> Result<Pkcs11Uri, String> {
        if !is_uri(uri) {
            return Err("a PKCS#11 URI starts with 'pkcs11:'".into());
        }
        let rest = &uri[7..];
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut u = Pkcs11Uri::default();
        let mut seen = std::collections::HashSet::new();
        let attrs = path
            .split(';')
            .map(|a| (a, false))
            .chain(query.split('&').map(|a| (a, true)));
        for (attr, in_query) in attrs.filter(|(a, _)| !a.is_empty()) {
            let (name, raw) = attr
                .split_once('=')
                .ok_or_else(|| format!("'{attr}' is not NAME=VALUE"))?;
            let name = name.to_ascii_lowercase();
            if !seen.insert(name.clone()) {
                return Err(format!("attribute '{name}' is given twice"));
            }
            let bytes = pct_decode(raw)?;
            let text = || {
                String::from_utf8(bytes.clone())
                    .map_err(|_| format!("attribute '{name}' is not UTF-8"))
            };
            let place = |want_query: bool| {
                if want_query == in_query {
                    Ok(())
                } else if want_query {
                    Err(format!("'{name}' belongs in the query (after '?')"))
                } else {
                    Err(format!("'{name}' belongs in the path (before '?')"))
                }
            };
            match name.as_str() {
                "token" | "manufacturer" | "model" | "serial" | "object" | "type" | "id"
                | "slot-id" => place(false)?,
                "pin-value" | "pin-source" | "module-path" => place(true)?,
                _ => {}
            }
            match name.as_str() {
                "token" => u.token = Some(text()?),
                "manufacturer" => u.manufacturer = Some(text()?),
                "model" => u.model = Some(text()?),
                "serial" => u.serial = Some(text()?),
                "object" => u.object = Some(text()?),
                "id" => u.id = Some(bytes),
                "slot-id" => {
                    u.slot_id = Some(
                        text()?
                            .parse()
                            .map_err(|_| format!("slot-id '{raw}' is not a number"))?,
                    )
                }
                "type" => {
                    let t = text()?;
                    if !["private", "public", "cert", "secret-key", "data"].contains(&t.as_str()) {
                        return Err(format!(
                            "type '{t}' is not private, public, cert, secret-key or data"
                        ));
                    }
                    u.object_type = Some(t);
                }
                "pin-value" => u.pin = Some(PinSource::Value(Zeroizing::new(text()?))),
                "pin-source" => {
                    let t = text()?;
                    let path = t
                        .strip_prefix("file://")
                        .or_else(|| t.strip_prefix("file:"))
                        .or_else(|| t.starts_with('/').then_some(t.as_str()))
                        .ok_or_else(|| {
                            format!("pin-source '{t}' is not a file (write file:/path/to/pin)")
                        })?;
                    u.pin = Some(PinSource::File(PathBuf::from(path)));
                }
                "module-path" => u.module_path = Some(PathBuf::from(text()?)),
                other => {
                    return Err(format!(
                        "devcert does not support the URI attribute '{other}' (it knows token, manufacturer, model, serial, slot-id, object, id, type, pin-value, pin-source, module-path)"
                    ));
                }
            }
        }
        if seen.contains("pin-value") && seen.contains("pin-source") {
            return Err("give pin-value or pin-source, not both".into());
        }
        Ok(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn uri_attributes_parse_and_decode() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=My%20Token;object=CA;id=%01%a2;type=private?pin-source=file:/run/pin&module-path=/usr/lib/x.so",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("My Token"));
        assert_eq!(u.object.as_deref(), Some("CA"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 0xa2][..]));
        assert_eq!(u.pin, Some(PinSource::File("/run/pin".into())));
        assert_eq!(u.module_path.as_deref(), Some(Path::new("/usr/lib/x.so")));
        // Case-insensitive scheme; file:// accepted.
        let u = Pkcs11Uri::parse("PKCS11:object=k?pin-source=file:///p").unwrap();
        assert_eq!(u.pin, Some(PinSource::File("/p".into())));
    }

    #[test]
    fn display_never_shows_the_pin() {
        let u = Pkcs11Uri::parse("pkcs11:token=L;object=A%20B?pin-value=123456").unwrap();
        assert_eq!(u.to_string(), "pkcs11:token=L;object=A%20B");
        assert!(!format!("{u:?}").contains("123456"));
    }

    #[test]
    fn bad_uris_are_refused() {
        for bad in [
            "pkcs11:token=L;token=M",
            "pkcs11:object=a;library-version=1",
            "pkcs11:object=a?pin-value=1&pin-source=file:/x",
            "pkcs11:object=%zz",
            "pkcs11:object",
            "pkcs11:type=key",
            "pkcs11:object=a?pin-source=|/bin/cat",
            "pkcs11:pin-value=1",
            "pkcs11:object=a?token=L",
            "file.pem",
        ] {
            assert!(Pkcs11Uri::parse(bad).is_err(), "{bad}");
        }
    }
}
