//! Keys held in a PKCS#11 token (HSM, smart card, SoftHSM): RFC 7512 URIs,
//! loading the module, finding the token and the key, logging in, a pool of
//! sessions (one per signing thread), signing and generating keys — all
//! through the `cryptoki` binding.
//!
//! The PIN is never part of an error, a label or a `Debug` print: a URI is
//! shown without its query (`pin-value`, `pin-source`, `module-path`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;
use der::{Decode, Encode};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Curve, KeyAlgo, OID_EC_PUBLIC_KEY, OID_RSA_ENCRYPTION};

/// Where the PIN comes from when the URI names none.
pub const PIN_ENV: &str = "DEVCERT_PKCS11_PIN";

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
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in '{s}'"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
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

/// The PIN for `token`: the URI's, else `$DEVCERT_PKCS11_PIN`, else a
/// prompt when stdin is a terminal. None: log in without one (a PIN pad).
fn read_pin(uri: &Pkcs11Uri, token: &str, pin_pad: bool) -> Result<Option<Zeroizing<String>>> {
    let fail = |why: String| Error::new(ErrorKind::Passphrase, "no PIN", why);
    let pin = match &uri.pin {
        Some(PinSource::Value(v)) => Zeroizing::new(v.to_string()),
        Some(PinSource::File(path)) => {
            let raw =
                Zeroizing::new(std::fs::read(path).map_err(|e| {
                    Error::io("cannot read PIN file", path.display().to_string(), &e)
                })?);
            let line = crate::passphrase::strip_one_newline(&raw);
            Zeroizing::new(String::from_utf8(line.to_vec()).map_err(|_| {
                fail("the PIN file is not UTF-8 text".into()).file(path.display().to_string())
            })?)
        }
        None => match std::env::var(PIN_ENV) {
            Ok(v) => Zeroizing::new(v),
            Err(_) if pin_pad => return Ok(None),
            Err(_) => {
                use std::io::IsTerminal;
                if !std::io::stdin().is_terminal() {
                    return Err(fail(format!(
                        "token '{token}' needs a PIN and stdin is not a terminal"
                    ))
                    .file(uri.to_string())
                    .hint(format!(
                        "add ?pin-source=file:/path/to/pin to the URI, or set {PIN_ENV}"
                    )));
                }
                Zeroizing::new(
                    rpassword::prompt_password(format!("PIN for token '{token}': "))
                        .map_err(|e| Error::io("cannot read PIN", "<tty>", &e))?,
                )
            }
        },
    };
    if pin.is_empty() {
        return Err(fail(format!("empty PIN for token '{token}'")).file(uri.to_string()));
    }
    Ok(Some(pin))
}

/// A short reason for a module's return value.
fn reason(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, func) => {
            rv_text(*rv).unwrap_or_else(|| format!("{rv:?} in C_{func:?}"))
        }
        CkError::LibraryLoading(e) => e.to_string(),
        CkError::MissingSymbol(s) => format!("not a PKCS#11 module (no {s})"),
        other => other.to_string(),
    }
}

fn rv_text(rv: RvError) -> Option<String> {
    Some(
        match rv {
            RvError::PinIncorrect | RvError::PinLenRange => "wrong PIN",
            RvError::PinLocked => "the user PIN is locked (too many wrong PINs)",
            RvError::PinExpired => "the user PIN has expired",
            RvError::TokenNotPresent | RvError::DeviceRemoved => "the token was removed",
            RvError::KeyFunctionNotPermitted => "the key may not be used to sign",
            RvError::MechanismInvalid => "the token cannot do this mechanism",
            RvError::SessionCount => "the token has no free session",
            RvError::UserNotLoggedIn => "not logged in",
            _ => return None,
        }
        .into(),
    )
}

fn token_error(what: &str, uri: &Pkcs11Uri, e: &CkError) -> Error {
    let kind = match e {
        CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange | RvError::PinLocked, _) => {
            ErrorKind::Passphrase
        }
        _ => ErrorKind::Token,
    };
    Error::new(kind, what, reason(e)).file(uri.to_string())
}

/// Loads and initialises a module once per process: a second key in the
/// same module (a parent and a child CA in one token) shares it.
fn load_module(path: &Path) -> Result<Pkcs11> {
    static LOADED: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());
    let what = "cannot load PKCS#11 module";
    let label = path.display().to_string();
    let canonical = path
        .canonicalize()
        .map_err(|e| Error::io(what, label.clone(), &e))?;
    let mut loaded = LOADED
        .lock()
        .map_err(|_| Error::new(ErrorKind::Token, what, "an earlier use failed").file(&label))?;
    if let Some((_, ctx)) = loaded.iter().find(|(p, _)| *p == canonical) {
        return Ok(ctx.clone());
    }
    let fail = |e: CkError| Error::new(ErrorKind::Token, what, reason(&e)).file(&label);
    let ctx = Pkcs11::new(&canonical).map_err(fail)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail(e)),
    }
    loaded.push((canonical, ctx.clone()));
    Ok(ctx)
}

/// The module the URI's `module-path` names, else `module`.
fn module_for(uri: &Pkcs11Uri, module: Option<&Path>) -> Result<Pkcs11> {
    match uri.module_path.as_deref().or(module) {
        Some(path) => load_module(path),
        None => Err(Error::new(
            ErrorKind::Token,
            "no PKCS#11 module",
            "a pkcs11: key needs the module (the .so) of its token",
        )
        .file(uri.to_string())
        .hint("give --pkcs11-module PATH or set DEVCERT_PKCS11_MODULE (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)")),
    }
}

/// The one initialised token the URI names.
fn find_token(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<(Slot, TokenInfo)> {
    let fail = |e: CkError| token_error("cannot list PKCS#11 tokens", uri, &e);
    let mut found = Vec::new();
    let mut labels = Vec::new();
    for slot in ctx.get_slots_with_token().map_err(fail)? {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if !info.token_initialized() {
            continue;
        }
        labels.push(format!("'{}'", info.label().trim_end()));
        let is = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w == have.trim_end())
        };
        if is(&uri.token, info.label())
            && is(&uri.manufacturer, info.manufacturer_id())
            && is(&uri.model, info.model())
            && is(&uri.serial, info.serial_number())
            && uri.slot_id.is_none_or(|s| s == slot.id())
        {
            found.push((slot, info));
        }
    }
    let refuse = |why: String| {
        Error::new(ErrorKind::Token, "cannot open PKCS#11 token", why).file(uri.to_string())
    };
    match found.len() {
        1 => Ok(found.remove(0)),
        0 if labels.is_empty() => Err(refuse("the module has no initialised token".into())),
        0 => Err(refuse(format!(
            "no token matches (the module has {})",
            labels.join(", ")
        ))),
        n => Err(refuse(format!("{n} tokens match ({})", labels.join(", ")))
            .hint("add token=LABEL or serial=... to the URI")),
    }
}

/// Logs the session in as the user, unless the token needs no login.
fn login(session: &Session, info: &TokenInfo, uri: &Pkcs11Uri) -> Result<()> {
    if !info.login_required() {
        return Ok(());
    }
    let token = info.label().trim_end();
    let pin = read_pin(uri, token, info.protected_authentication_path())?;
    let auth = pin.as_ref().map(|p| AuthPin::from(p.as_str()));
    match session.login(UserType::User, auth.as_ref()) {
        // Another key of this process logged in to the same token already.
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(e) => Err(token_error(
            &format!("cannot log in to token '{token}'"),
            uri,
            &e,
        )),
    }
}

/// Idle sessions, and how many are open: a signing thread takes one (or
/// opens one) and gives it back, so `batch` gets one session per worker
/// and waits for one when the token allows no more.
struct Sessions {
    idle: Mutex<(Vec<Session>, usize)>,
    returned: Condvar,
}

impl Sessions {
    /// The pool, starting with the session that logged in.
    fn new(first: Session) -> Sessions {
        Sessions {
            idle: Mutex::new((vec![first], 1)),
            returned: Condvar::new(),
        }
    }
}

/// A private key in a token, ready to sign from several threads.
pub struct TokenKey {
    ctx: Pkcs11,
    slot: Slot,
    uri: Pkcs11Uri,
    key: ObjectHandle,
    /// The public key object `generate` made with it (destroyed with it).
    public: Option<ObjectHandle>,
    algo: KeyAlgo,
    spki: Option<Vec<u8>>,
    sessions: Sessions,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenKey({}, {})", self.uri, self.algo)
    }
}

fn attr_bytes(attrs: &[Attribute], want: AttributeType) -> Option<Vec<u8>> {
    attrs.iter().find_map(|a| match (a, want) {
        (Attribute::EcParams(v), AttributeType::EcParams)
        | (Attribute::EcPoint(v), AttributeType::EcPoint)
        | (Attribute::Modulus(v), AttributeType::Modulus)
        | (Attribute::PublicExponent(v), AttributeType::PublicExponent)
        | (Attribute::Label(v), AttributeType::Label)
        | (Attribute::Id(v), AttributeType::Id) => Some(v.clone()),
        _ => None,
    })
}

fn attr_bool(attrs: &[Attribute], want: AttributeType) -> Option<bool> {
    attrs.iter().find_map(|a| match (a, want) {
        (Attribute::Sign(b), AttributeType::Sign)
        | (Attribute::AlwaysAuthenticate(b), AttributeType::AlwaysAuthenticate)
        | (Attribute::Extractable(b), AttributeType::Extractable)
        | (Attribute::Sensitive(b), AttributeType::Sensitive) => Some(*b),
        _ => None,
    })
}

/// The template that finds the URI's object (class added by the caller).
fn object_template(uri: &Pkcs11Uri) -> Vec<Attribute> {
    let mut t = Vec::new();
    if let Some(label) = &uri.object {
        t.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        t.push(Attribute::Id(id.clone()));
    }
    t
}

impl TokenKey {
    /// Opens the private key the URI names: loads the module, finds the
    /// token, logs in and finds exactly one private key.
    pub fn open(uri: &Pkcs11Uri, module: Option<&Path>) -> Result<TokenKey> {
        let refuse = |why: String| {
            Error::new(ErrorKind::Token, "cannot use PKCS#11 key", why).file(uri.to_string())
        };
        if uri.object.is_none() && uri.id.is_none() {
            return Err(refuse("the URI names no key".into())
                .hint("add object=LABEL (or id=...) to the URI"));
        }
        if let Some(t) = uri.object_type.as_deref().filter(|t| *t != "private") {
            return Err(refuse(format!(
                "the URI names a {t} object (type={t}); signing needs the private key"
            ))
            .hint("use type=private, or leave type out"));
        }
        let ctx = module_for(uri, module)?;
        let (slot, info) = find_token(&ctx, uri)?;
        let session = ctx
            .open_ro_session(slot)
            .map_err(|e| token_error("cannot open PKCS#11 session", uri, &e))?;
        login(&session, &info, uri)?;
        let fail = |e: CkError| token_error("cannot use PKCS#11 key", uri, &e);
        let mut template = object_template(uri);
        template.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
        let keys = session.find_objects(&template).map_err(fail)?;
        let token = info.label().trim_end();
        let key = match keys.as_slice() {
            [k] => *k,
            [] => {
                // Name what is there instead, e.g. only the public half.
                let others = session.find_objects(&object_template(uri)).map_err(fail)?;
                let classes: Vec<String> = others
                    .iter()
                    .filter_map(|h| session.get_attributes(*h, &[AttributeType::Class]).ok())
                    .flatten()
                    .filter_map(|a| match a {
                        Attribute::Class(c) if c == ObjectClass::PUBLIC_KEY => {
                            Some("a public key".to_string())
                        }
                        Attribute::Class(c) if c == ObjectClass::CERTIFICATE => {
                            Some("a certificate".to_string())
                        }
                        Attribute::Class(c) => Some(format!("a {c} object")),
                        _ => None,
                    })
                    .collect();
                return Err(if classes.is_empty() {
                    refuse(format!("token '{token}' has no such private key"))
                } else {
                    refuse(format!(
                        "token '{token}' holds only {} by that name, not its private key",
                        classes.join(" and ")
                    ))
                    .hint(
                        "import or generate the private key in the token; a public key cannot sign",
                    )
                });
            }
            many => {
                return Err(refuse(format!(
                    "{} private keys in token '{token}' match",
                    many.len()
                ))
                .hint("add id=... to the URI to pick one"));
            }
        };
        let attrs = session
            .get_attributes(
                key,
                &[
                    AttributeType::KeyType,
                    AttributeType::Sign,
                    AttributeType::AlwaysAuthenticate,
                    AttributeType::Id,
                    AttributeType::Label,
                ],
            )
            .map_err(fail)?;
        if attr_bool(&attrs, AttributeType::Sign) == Some(false) {
            return Err(refuse("the key may not sign (CKA_SIGN is false)".into()));
        }
        if attr_bool(&attrs, AttributeType::AlwaysAuthenticate) == Some(true) {
            return Err(refuse(
                "the key asks for the PIN before every signature (CKA_ALWAYS_AUTHENTICATE), which devcert does not support".into(),
            )
            .hint("use a key without it (on a YubiKey: PIV slot 9a or 9d, not 9c)"));
        }
        let key_type = attrs.iter().find_map(|a| match a {
            Attribute::KeyType(t) => Some(*t),
            _ => None,
        });
        let (algo, spki) = match key_type {
            Some(t) if t == KeyType::EC => {
                let params = session
                    .get_attributes(key, &[AttributeType::EcParams])
                    .map_err(fail)?;
                let curve =
                    curve_of(&attr_bytes(&params, AttributeType::EcParams).unwrap_or_default())
                        .map_err(refuse)?;
                // The private key has no CKA_EC_POINT: find its public half.
                let point = public_object(&session, &attrs)
                    .and_then(|h| session.get_attributes(h, &[AttributeType::EcPoint]).ok())
                    .and_then(|a| attr_bytes(&a, AttributeType::EcPoint));
                let spki = point
                    .map(|p| ec_point_spki(curve, &p))
                    .transpose()
                    .map_err(refuse)?;
                (KeyAlgo::Ec(curve), spki)
            }
            Some(t) if t == KeyType::RSA => {
                let want = [AttributeType::Modulus, AttributeType::PublicExponent];
                let mut parts = session.get_attributes(key, &want).map_err(fail)?;
                if attr_bytes(&parts, AttributeType::PublicExponent).is_none() {
                    if let Some(h) = public_object(&session, &attrs) {
                        parts = session.get_attributes(h, &want).map_err(fail)?;
                    }
                }
                let n = attr_bytes(&parts, AttributeType::Modulus)
                    .ok_or_else(|| refuse("the RSA key has no readable modulus".into()))?;
                let spki = attr_bytes(&parts, AttributeType::PublicExponent)
                    .map(|e| rsa_spki(&n, &e))
                    .transpose()
                    .map_err(refuse)?;
                (KeyAlgo::Rsa(bit_len(&n)), spki)
            }
            other => {
                return Err(refuse(format!(
                    "the key is {}; devcert signs with EC (P-256, P-384) and RSA keys",
                    other.map_or("of an unknown type".to_string(), |t| format!("a {t} key"))
                )));
            }
        };
        if let KeyAlgo::Rsa(bits) = algo
            && bits < 2048
        {
            return Err(refuse(format!(
                "the RSA key has {bits} bits; devcert signs with 2048 or more"
            )));
        }
        Ok(TokenKey {
            ctx,
            slot,
            uri: uri.clone(),
            key,
            public: None,
            algo,
            spki,
            sessions: Sessions::new(session),
        })
    }

    /// Generates a key pair in the token under the URI's `object` label (and
    /// `id`, else the public key's SHA-1 key id, as the certificate's
    /// subjectKeyIdentifier): private, sensitive, never extractable, for
    /// signing only. Refuses a label or id the token already has.
    pub fn generate(uri: &Pkcs11Uri, module: Option<&Path>, algo: KeyAlgo) -> Result<TokenKey> {
        let what = "cannot generate a key in the PKCS#11 token";
        let refuse = |why: String| Error::new(ErrorKind::Token, what, why).file(uri.to_string());
        let Some(label) = &uri.object else {
            return Err(
                refuse("the URI names no object".into()).hint("add object=LABEL to the URI")
            );
        };
        if uri.object_type.as_deref().is_some_and(|t| t != "private") {
            return Err(refuse("a new key is a private key: leave type= out".into()));
        }
        if let KeyAlgo::Rsa(bits) = algo
            && !(2048..=4096).contains(&bits)
        {
            return Err(refuse(format!(
                "RSA keys in a token are 2048 to 4096 bits, not {bits}"
            )));
        }
        let ctx = module_for(uri, module)?;
        let (slot, info) = find_token(&ctx, uri)?;
        let fail = |e: CkError| token_error(what, uri, &e);
        let session = ctx.open_rw_session(slot).map_err(fail)?;
        login(&session, &info, uri)?;
        let token = info.label().trim_end();
        for (name, attr) in [
            ("label", Some(Attribute::Label(label.as_bytes().to_vec()))),
            ("id", uri.id.clone().map(Attribute::Id)),
        ] {
            let Some(attr) = attr else { continue };
            if !session.find_objects(&[attr]).map_err(fail)?.is_empty() {
                return Err(refuse(format!(
                    "token '{token}' already has an object with this {name}; devcert never replaces a key in a token"
                ))
                .hint("choose another object= (or delete the old key with pkcs11-tool --delete-object)"));
            }
        }
        let mut common = vec![
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        if let Some(id) = &uri.id {
            common.push(Attribute::Id(id.clone()));
        }
        // Signing only: a CA key that can also decrypt or unwrap is one
        // more way to misuse it.
        let mut public = common.clone();
        public.extend([
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
        ]);
        let mut private = common;
        private.extend([
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
        ]);
        let mechanism = match algo {
            KeyAlgo::Ec(curve) => {
                let oid = curve.oid().to_der().map_err(|e| refuse(e.to_string()))?;
                public.push(Attribute::EcParams(oid));
                private.push(Attribute::Derive(false));
                Mechanism::EccKeyPairGen
            }
            KeyAlgo::Rsa(bits) => {
                public.extend([
                    Attribute::ModulusBits((bits as u64).into()),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                ]);
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        let (pub_h, priv_h) = session
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(fail)?;
        let mut key = TokenKey {
            ctx,
            slot,
            uri: uri.clone(),
            key: priv_h,
            public: Some(pub_h),
            algo,
            spki: None,
            sessions: Sessions::new(session),
        };
        // From here on a failure takes the new objects away again.
        match key.finish_generated() {
            Ok(()) => Ok(key),
            Err(e) => {
                let _ = key.destroy();
                Err(e)
            }
        }
    }

    /// Reads the new public key, sets the id and proves the pair signs.
    fn finish_generated(&mut self) -> Result<()> {
        let what = "cannot generate a key in the PKCS#11 token";
        let refuse =
            |why: String| Error::new(ErrorKind::Token, what, why).file(self.uri.to_string());
        let pub_h = self.public.ok_or_else(|| refuse("no public key".into()))?;
        let spki = self.with_session(|s| {
            let want = [
                AttributeType::EcPoint,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
            ];
            s.get_attributes(pub_h, &want)
        })?;
        let spki = match self.algo {
            KeyAlgo::Ec(curve) => ec_point_spki(
                curve,
                &attr_bytes(&spki, AttributeType::EcPoint)
                    .ok_or_else(|| refuse("no CKA_EC_POINT".into()))?,
            ),
            KeyAlgo::Rsa(_) => rsa_spki(
                &attr_bytes(&spki, AttributeType::Modulus)
                    .ok_or_else(|| refuse("no CKA_MODULUS".into()))?,
                &attr_bytes(&spki, AttributeType::PublicExponent)
                    .ok_or_else(|| refuse("no CKA_PUBLIC_EXPONENT".into()))?,
            ),
        }
        .map_err(refuse)?;
        if self.uri.id.is_none() {
            let parsed = spki::SubjectPublicKeyInfoOwned::from_der(&spki)
                .map_err(|e| refuse(e.to_string()))?;
            let id = crate::profile::key_id(&parsed);
            let (private, public) = (self.key, pub_h);
            self.with_session(|s| {
                s.update_attributes(private, &[Attribute::Id(id.clone())])?;
                s.update_attributes(public, &[Attribute::Id(id.clone())])
            })
            .map_err(|e| {
                e.hint("give id=... in the URI if the token does not let devcert set it")
            })?;
        }
        if !self.proves(&spki)? {
            return Err(refuse(
                "the new key's signature does not verify with its public key".into(),
            ));
        }
        self.spki = Some(spki);
        Ok(())
    }

    /// Removes a key `generate` made (when what it was made for failed).
    pub fn destroy(&self) -> Result<()> {
        let Some(public) = self.public else {
            return Ok(());
        };
        let key = self.key;
        self.with_session(|s| {
            s.destroy_object(key)?;
            s.destroy_object(public)
        })
    }

    pub fn algo(&self) -> KeyAlgo {
        self.algo
    }

    /// The public key, when the token shows it (an EC private key alone
    /// does not carry its point).
    pub fn spki_der(&self) -> Option<&[u8]> {
        self.spki.as_deref()
    }

    /// The URI without its query (no PIN), for messages.
    pub fn label(&self) -> String {
        self.uri.to_string()
    }

    /// Whether this key is the private half of `spki_der`: it signs a
    /// challenge and the signature must verify with that public key. This
    /// works on every token, with or without a public key object.
    pub fn proves(&self, spki_der: &[u8]) -> Result<bool> {
        let digest = crate::digest::Digest::Sha256;
        let challenge = b"devcert: does this token key match the certificate?";
        let alg = crate::crypto::signature_algorithm(self.algo, digest);
        let sig = crate::crypto::token_signature(self, digest, challenge)?;
        Ok(crate::crypto::verify(spki_der, &alg, challenge, &sig).is_ok())
    }

    /// The token's raw signature: CKM_ECDSA over a hash (r||s returned),
    /// or CKM_RSA_PKCS over a DigestInfo. Hashing and DER stay on the host,
    /// so every token that signs at all can, and a CRL is not sent whole.
    pub(crate) fn sign_raw(&self, input: &[u8]) -> Result<Vec<u8>> {
        let mechanism = match self.algo {
            KeyAlgo::Ec(_) => Mechanism::Ecdsa,
            KeyAlgo::Rsa(_) => Mechanism::RsaPkcs,
        };
        let key = self.key;
        self.with_session(|s| s.sign(&mechanism, key, input))
    }

    /// Runs `f` on a session of the pool.
    fn with_session<T>(&self, f: impl FnOnce(&Session) -> cryptoki::error::Result<T>) -> Result<T> {
        let session = self.checkout()?;
        let out = f(&session);
        if let Ok(mut idle) = self.sessions.idle.lock() {
            idle.0.push(session);
            self.sessions.returned.notify_one();
        }
        out.map_err(|e| token_error("PKCS#11 operation failed", &self.uri, &e))
    }

    fn checkout(&self) -> Result<Session> {
        let poisoned = || {
            Error::new(
                ErrorKind::Token,
                "PKCS#11 operation failed",
                "a signing thread failed",
            )
            .file(self.uri.to_string())
        };
        let mut idle = self.sessions.idle.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(s) = idle.0.pop() {
                return Ok(s);
            }
            match self.ctx.open_ro_session(self.slot) {
                Ok(s) => {
                    idle.1 += 1;
                    return Ok(s);
                }
                // The token allows no more: wait for a session to come back.
                Err(CkError::Pkcs11(RvError::SessionCount, _)) if idle.1 > 0 => {
                    idle = self.sessions.returned.wait(idle).map_err(|_| poisoned())?;
                }
                Err(e) => return Err(token_error("cannot open PKCS#11 session", &self.uri, &e)),
            }
        }
    }
}

/// The public key object beside a private key: same id, else same label.
fn public_object(session: &Session, private_attrs: &[Attribute]) -> Option<ObjectHandle> {
    let by = |attr: Attribute| {
        session
            .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), attr])
            .ok()
            .filter(|v| v.len() == 1)
            .map(|v| v[0])
    };
    attr_bytes(private_attrs, AttributeType::Id)
        .filter(|id| !id.is_empty())
        .and_then(|id| by(Attribute::Id(id)))
        .or_else(|| {
            attr_bytes(private_attrs, AttributeType::Label).and_then(|l| by(Attribute::Label(l)))
        })
}

/// The curve of CKA_EC_PARAMS (a DER namedCurve OID).
fn curve_of(params: &[u8]) -> Result<Curve, String> {
    let oid = der::asn1::ObjectIdentifier::from_der(params)
        .map_err(|_| "the EC key's parameters are not a named curve".to_string())?;
    Curve::from_oid(&oid)
        .ok_or_else(|| format!("unsupported EC curve {oid} (devcert supports P-256 and P-384)"))
}

/// SubjectPublicKeyInfo for CKA_EC_POINT: a DER OCTET STRING holding the
/// uncompressed point, as the standard says (some tokens give it bare).
fn ec_point_spki(curve: Curve, ec_point: &[u8]) -> Result<Vec<u8>, String> {
    let field_bytes = match curve {
        Curve::P256 => 32,
        Curve::P384 => 48,
    };
    let bare_len = 1 + 2 * field_bytes;
    let point = if ec_point.len() == bare_len {
        ec_point.to_vec()
    } else {
        der::asn1::OctetString::from_der(ec_point)
            .map_err(|_| format!("the token's public key is not a {curve} point"))?
            .as_bytes()
            .to_vec()
    };
    let valid = match curve {
        Curve::P256 => p256::PublicKey::from_sec1_bytes(&point).is_ok(),
        Curve::P384 => p384::PublicKey::from_sec1_bytes(&point).is_ok(),
    };
    if !valid {
        return Err(format!(
            "the token's public key is not a valid {curve} point"
        ));
    }
    let curve_oid = curve.oid();
    spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some((&curve_oid).into()),
        },
        subject_public_key: der::asn1::BitStringRef::from_bytes(&point)
            .map_err(|e| e.to_string())?,
    }
    .to_der()
    .map_err(|e| e.to_string())
}

/// SubjectPublicKeyInfo for an RSA modulus and exponent (big-endian).
fn rsa_spki(n: &[u8], e: &[u8]) -> Result<Vec<u8>, String> {
    fn uint(b: &[u8]) -> Result<der::asn1::UintRef<'_>, String> {
        der::asn1::UintRef::new(b).map_err(|e| e.to_string())
    }
    let pkcs1 = pkcs1::RsaPublicKey {
        modulus: uint(n)?,
        public_exponent: uint(e)?,
    }
    .to_der()
    .map_err(|e| e.to_string())?;
    spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: OID_RSA_ENCRYPTION,
            parameters: Some(der::asn1::AnyRef::NULL),
        },
        subject_public_key: der::asn1::BitStringRef::from_bytes(&pkcs1)
            .map_err(|e| e.to_string())?,
    }
    .to_der()
    .map_err(|e| e.to_string())
}

fn bit_len(n: &[u8]) -> usize {
    let lead = n.iter().take_while(|&&b| b == 0).count();
    (n.len() - lead) * 8 - n.get(lead).map_or(0, |b| b.leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn rsa_bits_ignore_leading_zeros() {
        assert_eq!(bit_len(&[0, 0x80, 0]), 16);
        assert_eq!(bit_len(&[0x01, 0]), 9);
    }

    #[test]
    fn ec_points_come_wrapped_or_bare() {
        let key = crate::keys::PrivateKey::generate(KeyAlgo::Ec(Curve::P256)).unwrap();
        let spki = spki::SubjectPublicKeyInfoRef::from_der(key.spki_der()).unwrap();
        let point = spki.subject_public_key.raw_bytes();
        let wrapped = der::asn1::OctetString::new(point)
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(
            ec_point_spki(Curve::P256, &wrapped).unwrap(),
            key.spki_der()
        );
        assert_eq!(ec_point_spki(Curve::P256, point).unwrap(), key.spki_der());
        assert!(ec_point_spki(Curve::P384, point).is_err());
    }
}
