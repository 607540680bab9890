//! The JSON API: the same objects `device list --json` and `ca list --json`
//! print, and the same registry methods the CLI calls.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::ApiChange;
use super::change::Change;
use super::{Shared, log_if_internal, status_of};
use crate::error::{Error, Result};
use crate::registry::{Added, CaRecord, DeviceQuery, DeviceRecord, Status, normalize_serial};

/// Page size when `limit` is not given, and the largest one allowed.
pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 1000;

/// An error as JSON: `{"error": "...", "hint": ...}` with its status.
pub struct ApiError {
    status: StatusCode,
    error: String,
    hint: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            hint: None,
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, what)
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            hint: Some(
                "send Authorization: Bearer TOKEN (the first line of the token file)".into(),
            ),
            ..ApiError::new(StatusCode::UNAUTHORIZED, "a change needs the bearer token")
        }
    }

    pub fn read_only() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "the server is read-only (--read-only): changes are refused",
        )
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = status_of(&e);
        log_if_internal(status, &e);
        ApiError {
            status,
            error: e.to_string(),
            hint: e.hint,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error, "hint": self.hint });
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

/// The query string of `GET /api/devices` (and the console's list page).
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    pub serial: Option<String>,
    pub ca_serial: Option<String>,
    pub status: Option<String>,
    pub q: Option<String>,
    pub limit: Option<String>,
    pub after: Option<String>,
}

impl ListParams {
    /// The registry query these parameters ask for; empty fields are
    /// unset (a search form sends them all).
    pub fn query(&self, default_limit: u64) -> Result<DeviceQuery> {
        let serial = |name: &str, v: &Option<String>| -> Result<Option<String>> {
            given(v)
                .map(|s| {
                    normalize_serial(s).map_err(|why| Error::parse(format!("bad {name}"), why))
                })
                .transpose()
        };
        let status = given(&self.status)
            .map(|s| {
                s.parse::<Status>()
                    .map_err(|why| Error::parse("bad status", why))
            })
            .transpose()?;
        let limit = match given(&self.limit) {
            None => default_limit,
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    Error::parse(
                        "bad limit",
                        format!("'{s}' is not a number from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        Ok(DeviceQuery {
            serial: serial("serial", &self.serial)?,
            ca_serial: serial("ca_serial", &self.ca_serial)?,
            status,
            subject_contains: given(&self.q).map(str::to_string),
            after: serial("after", &self.after)?,
            limit: Some(limit),
            ..DeviceQuery::default()
        })
    }
}

/// A parameter's value, unless absent or blank.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The devices matching `q`, collected.
pub async fn find(state: &Shared, q: DeviceQuery) -> Result<Vec<DeviceRecord>> {
    state
        .pool
        .run(move |reg| {
            let mut out = Vec::new();
            reg.list_devices(&q, &mut |d| {
                out.push(d);
                Ok(())
            })?;
            Ok(out)
        })
        .await
}

/// A serial from the URL path, in stored form.
pub fn path_serial(raw: &str) -> Result<String> {
    normalize_serial(raw).map_err(|why| Error::parse("bad serial", why))
}

pub async fn devices(
    State(state): State<Shared>,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Vec<DeviceRecord>>> {
    let q = p.query(DEFAULT_LIMIT)?;
    Ok(Json(find(&state, q).await?))
}

pub async fn device(
    State(state): State<Shared>,
    Path(serial): Path<String>,
) -> ApiResult<Json<DeviceRecord>> {
    let serial = path_serial(&serial)?;
    Ok(Json(state.pool.run(move |reg| reg.device(&serial)).await?))
}

/// Options of a change: `?reason=` (revoke), `?force=true` (delete).
#[derive(Debug, Default, Deserialize)]
pub struct ChangeParams {
    reason: Option<String>,
    #[serde(default)]
    force: bool,
}

/// `POST /api/devices/{serial}/{activate|deactivate|revoke}`: the device
/// as it now is.
pub async fn change(
    ApiChange(actor): ApiChange,
    State(state): State<Shared>,
    Path((serial, action)): Path<(String, String)>,
    Query(p): Query<ChangeParams>,
) -> ApiResult<Json<DeviceRecord>> {
    let change = Change::parse(&action, p.reason.as_deref(), p.force)?;
    if let Change::Delete { .. } = change {
        return Err(ApiError::not_found(
            "a device is deleted with DELETE /api/devices/{serial}",
        ));
    }
    let serial = path_serial(&serial)?;
    let d = state
        .pool
        .run(move |reg| {
            change.apply(reg, &serial, actor)?;
            reg.device(&serial)
        })
        .await?;
    eprintln!("{actor}: {} device {}", change.name(), d.serial);
    Ok(Json(d))
}

/// `DELETE /api/devices/{serial}[?force=true]`.
pub async fn delete(
    ApiChange(actor): ApiChange,
    State(state): State<Shared>,
    Path(serial): Path<String>,
    Query(p): Query<ChangeParams>,
) -> ApiResult<StatusCode> {
    let serial = path_serial(&serial)?;
    let s = serial.clone();
    let change = Change::Delete { force: p.force };
    state
        .pool
        .run(move |reg| change.apply(reg, &s, actor))
        .await?;
    eprintln!("{actor}: delete device {serial}");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn cas(State(state): State<Shared>) -> ApiResult<Json<Vec<CaRecord>>> {
    Ok(Json(state.pool.run(|reg| reg.cas()).await?))
}

/// Registers a CA from its PEM (or DER) certificate; the CA's record, 201
/// when it is new, 200 when it was already registered.
pub async fn add_ca(
    ApiChange(actor): ApiChange,
    State(state): State<Shared>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CaRecord>)> {
    // An oversized body (413) answers in JSON like every other refusal.
    let body = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    let (added, ca) = register_ca(&state, "request body", body.to_vec(), actor.into()).await?;
    let status = match added {
        Added::New => StatusCode::CREATED,
        Added::AlreadyRegistered => StatusCode::OK,
    };
    Ok((status, Json(ca)))
}

/// Registers an uploaded CA certificate (API body or console upload).
pub async fn register_ca(
    state: &Shared,
    label: &str,
    bytes: Vec<u8>,
    actor: String,
) -> Result<(Added, CaRecord)> {
    let input = crate::input::Input::from_bytes(label, bytes);
    let cert = crate::input::load_certificate(&input, "cannot read CA certificate")?;
    let serial = crate::sign::serial_hex(cert.cert.tbs_certificate().serial_number());
    let (added, ca) = state
        .pool
        .run(move |reg| {
            let added = reg.add_ca(&cert, &actor)?;
            let ca = reg.cas()?.into_iter().find(|c| c.serial == serial);
            Ok((added, ca))
        })
        .await?;
    let ca = ca.ok_or_else(|| Error::refused("cannot register CA", "it vanished at once"))?;
    if added == Added::New {
        eprintln!("registered CA {}", ca.serial);
    }
    Ok((added, ca))
}
