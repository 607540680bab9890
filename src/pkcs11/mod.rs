//! Keys held in a PKCS#11 token (HSM, smart card, SoftHSM), through the
//! `cryptoki` binding: loading the module, finding the token and the key,
//! logging in, a pool of sessions (one per signing thread) and signing.
//! `uri.rs` reads RFC 7512 URIs, `generate.rs` makes keys in the token,
//! `public_key.rs` turns the token's attributes into a public key.
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
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::keys::KeyAlgo;

mod generate;
mod public_key;
mod uri;
pub use uri::{PinSource, Pkcs11Uri, is_uri};

use public_key::{bit_len, curve_of, ec_point_spki, public_object, rsa_spki};

/// Where the PIN comes from when the URI names none.
pub const PIN_ENV: &str = "DEVCERT_PKCS11_PIN";

/// The PIN for `token`: the URI's, else `$DEVCERT_PKCS11_PIN`, else a
/// prompt when stdin is a terminal. None: log in without one (a PIN pad).
fn read_pin(uri: &Pkcs11Uri, token: &str, pin_pad: bool) -> Result<Option<Zeroizing<String>>> {
    let fail = |why: String| Error::new(ErrorKind::Passphrase, "no PIN", why);
    let pin = match &uri.pin {
        Some(PinSource::Value(v)) => Zeroizing::new(v.to_string()),
        Some(PinSource::File(path)) => {
            let raw = crate::passphrase::read_secret_file(
                &path.display().to_string(),
                "cannot read PIN file",
            )?;
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
