//! The console's pages: each handler reads or changes the registry through
//! the pool and renders a view. Changes need a signed-in session, the
//! form's CSRF token and a server that is not read-only.

use axum::Form;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::api::{ListParams, find, path_serial, register_ca};
use super::auth::{self, LOGIN_COOKIE, SESSION_COOKIE, Session, SignedIn};
use super::change::Change;
use super::views::{self, Page, Viewer};
use super::{Shared, log_if_internal, status_of};
use crate::error::Error;
use crate::registry::Added;

/// Devices per console page.
const PAGE_SIZE: u64 = 50;
/// Audit rows shown on a device page.
const AUDIT_ROWS: u32 = 50;

type PageResult = std::result::Result<Response, Page>;

fn viewer<'a>(state: &Shared, s: &'a Option<Session>) -> Viewer<'a> {
    Viewer {
        session: s.as_ref(),
        read_only: state.read_only,
    }
}

/// A library error as a page with its status and hint.
fn refused(v: &Viewer, e: Error) -> Page {
    let status = status_of(&e);
    log_if_internal(status, &e);
    views::error_page(v, status, &e.to_string(), e.hint.as_deref())
}

fn html(m: maud::Markup) -> Response {
    axum::response::Html(m.into_string()).into_response()
}

/// Outcome messages carried across a redirect (fixed texts, never echoed).
#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
    serial: Option<String>,
}

impl Done {
    fn notice(&self) -> Option<String> {
        let serial = self.serial.as_deref().and_then(|s| path_serial(s).ok());
        let text = match (self.done.as_deref()?, serial) {
            ("activate", _) => "Device activated: it may connect again.".into(),
            ("deactivate", _) => {
                "Device deactivated: the broker refuses its next connection.".into()
            }
            ("revoke", _) => "Device revoked, for good.".into(),
            ("delete", Some(s)) => format!("Device {s} deleted."),
            ("ca-added", Some(s)) => format!("CA {s} registered."),
            ("ca-known", Some(s)) => format!("CA {s} was already registered."),
            ("signed-in", _) => "Signed in.".into(),
            ("signed-out", _) => "Signed out.".into(),
            _ => return None,
        };
        Some(text)
    }
}

pub async fn devices(
    State(state): State<Shared>,
    SignedIn(s): SignedIn,
    Query(p): Query<ListParams>,
    Query(done): Query<Done>,
) -> PageResult {
    let v = viewer(&state, &s);
    let mut q = p.query(PAGE_SIZE).map_err(|e| refused(&v, e))?;
    // One more than a page tells whether there is a next page.
    let size = q.limit.unwrap_or(PAGE_SIZE);
    q.limit = Some(size + 1);
    let mut list = find(&state, q).await.map_err(|e| refused(&v, e))?;
    let more = list.len() as u64 > size;
    list.truncate(size as usize);
    let next = more
        .then(|| list.last().map(|d| d.serial.clone()))
        .flatten();
    Ok(html(views::devices(
        &v,
        &p,
        &list,
        next.as_deref(),
        done.notice().as_deref(),
    )))
}

pub async fn device(
    State(state): State<Shared>,
    SignedIn(s): SignedIn,
    Path(serial): Path<String>,
    Query(done): Query<Done>,
) -> PageResult {
    let v = viewer(&state, &s);
    let serial = path_serial(&serial).map_err(|e| refused(&v, e))?;
    let (d, audit) = state
        .pool
        .run(move |reg| Ok((reg.device(&serial)?, reg.audit(&serial, AUDIT_ROWS)?)))
        .await
        .map_err(|e| refused(&v, e))?;
    Ok(html(views::device(
        &v,
        &d,
        &audit,
        done.notice().as_deref(),
    )))
}

/// The session a change needs: signed in (else off to sign in, coming back
/// to `back`), and not read-only. The error is the response to send.
#[allow(clippy::result_large_err)]
fn change_allowed<'a>(state: &Shared, v: &Viewer<'a>, back: &str) -> Result<&'a Session, Response> {
    if state.read_only {
        return Err(views::error_page(
            v,
            StatusCode::FORBIDDEN,
            "The console is read-only (--read-only): changes are refused.",
            None,
        )
        .into_response());
    }
    v.session.ok_or_else(|| {
        Redirect::to(&format!("/login?next={}", views::url_encode(back))).into_response()
    })
}

fn csrf_ok(v: &Viewer, session: &Session, presented: &str) -> Result<(), Page> {
    if session.check_csrf(presented) {
        return Ok(());
    }
    Err(views::error_page(
        v,
        StatusCode::FORBIDDEN,
        "The form is stale or was not sent by this console (CSRF token mismatch).",
        Some("reload the page and try again"),
    ))
}

/// The confirmation step of every change.
pub async fn confirm(
    State(state): State<Shared>,
    SignedIn(s): SignedIn,
    Path((serial, a)): Path<(String, String)>,
) -> Result<Response, Response> {
    let v = viewer(&state, &s);
    let change = Change::parse(&a, None, false).map_err(|e| refused(&v, e).into_response())?;
    let serial = path_serial(&serial).map_err(|e| refused(&v, e).into_response())?;
    let session = change_allowed(&state, &v, &format!("/devices/{serial}/{a}"))?;
    let d = state
        .pool
        .run(move |reg| reg.device(&serial))
        .await
        .map_err(|e| refused(&v, e).into_response())?;
    Ok(html(views::confirm(&v, &d, change, &session.csrf)))
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The confirmation form: CSRF token and the change's options.
#[derive(Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    csrf: String,
    reason: Option<String>,
    #[serde(default)]
    force: Option<String>,
}

/// Performs a confirmed change, then shows the device (or the list).
pub async fn change(
    State(state): State<Shared>,
    SignedIn(s): SignedIn,
    Path((serial, a)): Path<(String, String)>,
    Form(form): Form<ChangeForm>,
) -> Result<Response, Response> {
    let v = viewer(&state, &s);
    let change = Change::parse(&a, form.reason.as_deref(), form.force.is_some())
        .map_err(|e| refused(&v, e).into_response())?;
    let serial = path_serial(&serial).map_err(|e| refused(&v, e).into_response())?;
    let session = change_allowed(&state, &v, &format!("/devices/{serial}/{a}"))?;
    csrf_ok(&v, session, &form.csrf).map_err(IntoResponse::into_response)?;
    let actor = session.actor.clone();
    let sn = serial.clone();
    state
        .pool
        .run(move |reg| change.apply(reg, &sn, &actor))
        .await
        .map_err(|e| refused(&v, e).into_response())?;
    eprintln!("{}: {} device {serial}", session.actor, change.name());
    let to = match change {
        Change::Delete { .. } => format!("/?done=delete&serial={serial}"),
        _ => format!("/devices/{serial}?done={}", change.name()),
    };
    Ok(Redirect::to(&to).into_response())
}

pub async fn cas(
    State(state): State<Shared>,
    SignedIn(s): SignedIn,
    Query(done): Query<Done>,
) -> PageResult {
    let v = viewer(&state, &s);
    let list = state
        .pool
        .run(|reg| reg.cas())
        .await
        .map_err(|e| refused(&v, e))?;
    Ok(html(views::cas(&v, &list, done.notice().as_deref())))
}

/// Registers an uploaded CA certificate (multipart: `csrf`, `cert`).
pub async fn add_ca(
    State(state): State<Shared>,
    SignedIn(s): SignedIn,
    mut form: Multipart,
) -> Result<Response, Response> {
    let v = viewer(&state, &s);
    let session = change_allowed(&state, &v, "/cas")?;
    let bad = |why: String| {
        views::error_page(
            &v,
            StatusCode::BAD_REQUEST,
            &why,
            Some("choose the CA's certificate file (PEM or DER) and try again"),
        )
        .into_response()
    };
    let (mut csrf, mut cert) = (String::new(), None);
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err((
                    e.status(),
                    bad(format!("cannot read the upload: {}", e.body_text())),
                )
                    .into_response());
            }
        };
        let name = field.name().unwrap_or("").to_string();
        let file = field.file_name().unwrap_or("uploaded CA").to_string();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Err((
                    e.status(),
                    bad(format!("cannot read the upload: {}", e.body_text())),
                )
                    .into_response());
            }
        };
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "cert" => cert = Some((file, bytes.to_vec())),
            _ => {}
        }
    }
    csrf_ok(&v, session, &csrf).map_err(IntoResponse::into_response)?;
    let Some((file, bytes)) = cert.filter(|(_, b)| !b.is_empty()) else {
        return Err(bad("No certificate was uploaded.".into()));
    };
    let (added, ca) = register_ca(&state, &file, bytes, session.actor.clone())
        .await
        .map_err(|e| refused(&v, e).into_response())?;
    let done = if added == Added::New {
        "ca-added"
    } else {
        "ca-known"
    };
    Ok(Redirect::to(&format!("/cas?done={done}&serial={}", ca.serial)).into_response())
}

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Only a path of this site: `next` must never send the user elsewhere.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

pub async fn login_form(
    State(state): State<Shared>,
    SignedIn(s): SignedIn,
    Query(n): Query<Next>,
) -> Response {
    let v = viewer(&state, &s);
    login_page(&v, local_path(n.next.as_deref()), None, StatusCode::OK)
}

/// The sign-in form with a fresh double-submit CSRF value.
fn login_page(v: &Viewer, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let csrf = match auth::random_hex(16) {
        Ok(c) => c,
        Err(e) => return refused(v, e).into_response(),
    };
    let cookie = auth::set_cookie(LOGIN_COOKIE, &csrf, 3600);
    (
        status,
        [(header::SET_COOKIE, cookie)],
        html(views::login(v, &csrf, next, error)),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

pub async fn login(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let v = viewer(&state, &None);
    let next = local_path(f.next.as_deref()).to_string();
    let pre = auth::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if pre.is_empty() || pre != f.csrf {
        return login_page(
            &v,
            &next,
            Some("The sign-in form expired; please try again."),
            StatusCode::FORBIDDEN,
        );
    }
    if !state.token.matches(f.token.trim()) {
        // Slows guessing; a 256-bit token is out of reach anyway.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        return login_page(&v, &next, Some("Wrong token."), StatusCode::UNAUTHORIZED);
    }
    let id = match state.sessions.create() {
        Ok(id) => id,
        Err(e) => return refused(&v, e).into_response(),
    };
    let to = if next == "/" {
        "/?done=signed-in".to_string()
    } else {
        next
    };
    let mut res = Redirect::to(&to).into_response();
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        auth::session_cookie(&id).parse().expect("cookie is ASCII"),
    );
    h.append(
        header::SET_COOKIE,
        auth::set_cookie(LOGIN_COOKIE, "", 0)
            .parse()
            .expect("cookie is ASCII"),
    );
    res
}

pub async fn logout(
    State(state): State<Shared>,
    SignedIn(s): SignedIn,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let v = viewer(&state, &s);
    if let Some(session) = &s {
        if let Err(p) = csrf_ok(&v, session, &form.csrf) {
            return p.into_response();
        }
        if let Some(id) = auth::cookie(&headers, SESSION_COOKIE) {
            state.sessions.remove(id);
        }
    }
    let mut res = Redirect::to("/?done=signed-out").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(SESSION_COOKIE, "", 0)
            .parse()
            .expect("cookie is ASCII"),
    );
    res
}
