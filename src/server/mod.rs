//! `devcert registry serve`: a server-rendered web console for people and a
//! JSON API for scripts, over the same [`Registry`] the CLI and the broker
//! plugin use. Handlers are a few lines calling the registry; the rules
//! (status changes, audit, refusals) stay in `registry`.

mod api;
mod auth;
mod change;
mod pages;
mod pool;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::{Error, ErrorKind, Result};
use crate::registry::Registry;

pub use auth::{TokenOrigin, load_token};

/// Largest request body: a CA certificate PEM (or a sign-in form) fits with
/// room to spare; anything bigger is refused with 413 before it is read.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How `registry serve` runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The registry (`Registry::open` value: a SQLite file or a URL).
    pub db: String,
    pub listen: SocketAddr,
    /// `--token-file`; without it the token lives beside a SQLite registry.
    pub token_file: Option<PathBuf>,
    pub read_only: bool,
}

/// What every handler shares.
pub(crate) struct AppState {
    pub pool: Arc<pool::Pool>,
    pub token: auth::Token,
    pub sessions: auth::Sessions,
    pub read_only: bool,
}

type Shared = Arc<AppState>;

/// Every route of the console and the API, in one place.
fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(pages::devices))
        .route("/devices/{serial}", get(pages::device))
        .route(
            "/devices/{serial}/{action}",
            get(pages::confirm).post(pages::change),
        )
        .route("/cas", get(pages::cas).post(pages::add_ca))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/style.css", get(views::stylesheet))
        .route("/api/devices", get(api::devices))
        .route(
            "/api/devices/{serial}",
            get(api::device).delete(api::delete),
        )
        .route("/api/devices/{serial}/{action}", post(api::change))
        .route("/api/cas", get(api::cas).post(api::add_ca))
        .fallback(|| async { api::ApiError::not_found("no such page") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Pages are never cached, framed or allowed to load anything foreign.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// Opens the registry, then serves until SIGTERM or SIGINT. Prints
/// `listening on http://ADDR` on stderr once connections are accepted.
pub fn serve(cfg: Config) -> Result<()> {
    // Fail before listening: a registry that cannot be opened, a bad token.
    drop(Registry::open_existing(&cfg.db)?);
    let (token, origin) = load_token(&cfg.db, cfg.token_file.as_deref())?;
    if let TokenOrigin::Created(path) = &origin {
        eprintln!("token written to {} (mode 0600)", path.display());
    } else if let TokenOrigin::Beside(path) = &origin {
        eprintln!("token read from {}", path.display());
    }
    let state = Arc::new(AppState {
        pool: pool::Pool::new(&cfg.db),
        token,
        sessions: auth::Sessions::default(),
        read_only: cfg.read_only,
    });
    // The last reference to the connections is dropped at the end, outside
    // the runtime: a PostgreSQL client's drop blocks on a runtime of its
    // own, which tokio refuses inside another (a panic on SIGTERM).
    let pool = Arc::clone(&state.pool);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the server", "registry serve", &e))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| Error::io("cannot listen", cfg.listen.to_string(), &e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("cannot listen", cfg.listen.to_string(), &e))?;
        if !addr.ip().is_loopback() {
            eprintln!(
                "warning: listening beyond this machine on {addr}: put a TLS reverse proxy in front (docs/console.md)"
            );
        }
        if cfg.read_only {
            eprintln!("read-only: every change is refused (403)");
        }
        eprintln!("listening on http://{addr}");
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| Error::io("server failed", addr.to_string(), &e))
    })?;
    // Requests still running get a moment to finish; then the process ends.
    rt.shutdown_timeout(Duration::from_secs(5));
    drop(pool);
    eprintln!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// The HTTP status a library error stands for, shared by API and console.
fn status_of(e: &Error) -> StatusCode {
    match e.kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Parse => StatusCode::BAD_REQUEST,
        ErrorKind::Refused | ErrorKind::Exists => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Server-side failures are logged (the client sees the same line); the
/// user's own mistakes are not.
fn log_if_internal(status: StatusCode, e: &Error) {
    if status.is_server_error() {
        eprintln!("error: {e}");
    }
}

impl IntoResponse for views::Page {
    fn into_response(self) -> Response {
        (self.status, axum::response::Html(self.body.into_string())).into_response()
    }
}
