//! Who may change the registry: the bearer token (API) or a console session
//! signed in with that token, each form carrying the session's CSRF token.
//! Secrets never appear in URLs or logs; sessions live in memory only (a
//! restart signs everyone out).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::Digest as _;

use super::Shared;
use super::api::ApiError;
use crate::error::{Error, Result};

/// How long a console sign-in lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sign-ins kept at once; the oldest goes first beyond it.
const MAX_SESSIONS: usize = 1024;
pub const SESSION_COOKIE: &str = "devcert_session";
/// The sign-in form's own CSRF value (double-submit: cookie and field).
pub const LOGIN_COOKIE: &str = "devcert_login";
/// Who the audit trail names for API changes.
const TOKEN_ACTOR: &str = "api-token";

/// The secret that authorises changes; only its digest is kept.
pub struct Token([u8; 32]);

impl Token {
    fn new(secret: &str) -> Token {
        Token(sha2::Sha256::digest(secret.as_bytes()).into())
    }

    /// Compares digests in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        ct_eq(&self.0, &sha2::Sha256::digest(presented.as_bytes()))
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where the token came from, for the start-up message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    File(PathBuf),
    /// `DB.token`, made by an earlier start.
    Beside(PathBuf),
    /// `DB.token`, made now.
    Created(PathBuf),
}

/// The token: the first line of `token_file`, else `DB.token` beside a
/// SQLite registry (made, random and 0600, when missing).
pub fn load_token(db: &str, token_file: Option<&Path>) -> Result<(Token, TokenOrigin)> {
    if let Some(path) = token_file {
        return Ok((read_token(path)?, TokenOrigin::File(path.to_path_buf())));
    }
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        return Err(Error::refused(
            "cannot start the console",
            "a PostgreSQL registry has no folder for the token",
        )
        .hint("pass --token-file FILE (its first line is the token)"));
    }
    let path = PathBuf::from(format!("{db}.token"));
    if path.exists() {
        return Ok((read_token(&path)?, TokenOrigin::Beside(path)));
    }
    let secret = random_hex(32)?;
    let label = path.display().to_string();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("cannot write the token", &label, &e))?;
    f.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("cannot write the token", &label, &e))?;
    Ok((Token::new(&secret), TokenOrigin::Created(path)))
}

fn read_token(path: &Path) -> Result<Token> {
    let label = path.display().to_string();
    let what = "cannot read the token";
    let meta = fs::metadata(path).map_err(|e| Error::io(what, &label, &e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(
            Error::refused(what, "others may read it (mode is not 0600)")
                .file(&label)
                .hint(format!("chmod 600 {label}")),
        );
    }
    let text = fs::read_to_string(path).map_err(|e| Error::io(what, &label, &e))?;
    let secret = text.lines().next().unwrap_or("").trim();
    if secret.len() < 16 {
        return Err(Error::refused(
            what,
            "its first line must hold a token of at least 16 characters",
        )
        .file(&label));
    }
    Ok(Token::new(secret))
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| Error::crypto("cannot make a random token", e))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A signed-in console user.
#[derive(Clone)]
pub struct Session {
    /// Goes into every form; a POST without it is refused.
    pub csrf: String,
    /// Names the session in the audit trail without revealing its cookie.
    pub actor: String,
    expires: Instant,
}

impl Session {
    pub fn check_csrf(&self, presented: &str) -> bool {
        ct_eq(self.csrf.as_bytes(), presented.as_bytes())
    }
}

/// The console's sign-ins, by the digest of their cookie value.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

impl Sessions {
    /// A new sign-in: the cookie value to set.
    pub fn create(&self) -> Result<String> {
        let id = random_hex(32)?;
        let key: [u8; 32] = sha2::Sha256::digest(id.as_bytes()).into();
        let actor = format!("console:{}", &hex(&key)[..8]);
        let session = Session {
            csrf: random_hex(32)?,
            actor,
            expires: Instant::now() + SESSION_TTL,
        };
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(key, session);
        Ok(id)
    }

    fn find(&self, id: &str) -> Option<Session> {
        let key: [u8; 32] = sha2::Sha256::digest(id.as_bytes()).into();
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&key)
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    pub fn remove(&self, id: &str) {
        let key: [u8; 32] = sha2::Sha256::digest(id.as_bytes()).into();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(parts: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    parts
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A cookie only this site's own pages send back, never scripts.
pub fn set_cookie(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

pub fn session_cookie(id: &str) -> String {
    set_cookie(SESSION_COOKIE, id, SESSION_TTL.as_secs())
}

/// The console user of this request, if signed in.
pub struct SignedIn(pub Option<Session>);

impl FromRequestParts<Shared> for SignedIn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        Ok(SignedIn(
            cookie(&parts.headers, SESSION_COOKIE).and_then(|id| state.sessions.find(id)),
        ))
    }
}

/// An API change: the bearer token was presented (else 401) and the
/// server is not read-only (else 403). Holds the audit trail's actor.
pub struct ApiChange(pub &'static str);

impl FromRequestParts<Shared> for ApiChange {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(t) if state.token.matches(t) => {}
            _ => return Err(ApiError::unauthorized()),
        }
        if state.read_only {
            return Err(ApiError::read_only());
        }
        Ok(ApiChange(TOKEN_ACTOR))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_first_line_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        fs::write(&f, "0123456789abcdef0123\nsecond line\n").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            load_token("x.db", Some(&f)).is_err(),
            "world-readable token accepted"
        );
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        let (t, _) = load_token("x.db", Some(&f)).unwrap();
        assert!(t.matches("0123456789abcdef0123"));
        assert!(!t.matches("second line"));
    }

    #[test]
    fn token_beside_the_database_is_made_once_0600() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("reg.db").display().to_string();
        let (t1, o1) = load_token(&db, None).unwrap();
        let path = PathBuf::from(format!("{db}.token"));
        assert_eq!(o1, TokenOrigin::Created(path.clone()));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (_, o2) = load_token(&db, None).unwrap();
        assert_eq!(o2, TokenOrigin::Beside(path.clone()));
        let secret = fs::read_to_string(&path).unwrap();
        assert!(t1.matches(secret.trim()));
        assert!(load_token("postgres://h/db", None).is_err());
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; devcert_session_x=2; devcert_session=3"
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("3"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
