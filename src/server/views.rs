//! The console's HTML, written with maud: checked at compile time, every
//! value escaped, no template files to ship beside the binary.

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use maud::{DOCTYPE, Markup, html};

use super::api::ListParams;
use super::auth::Session;
use super::change::Change;
use crate::registry::{AuditRecord, CaRecord, DeviceRecord, Status};

/// A rendered page and its status.
pub struct Page {
    pub status: StatusCode,
    pub body: Markup,
}

/// Who is looking: shapes the navigation and which buttons show.
pub struct Viewer<'a> {
    pub session: Option<&'a Session>,
    pub read_only: bool,
}

impl Viewer<'_> {
    fn can_change(&self) -> bool {
        !self.read_only
    }
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("style.css"),
    )
}

fn layout(v: &Viewer, title: &str, notice: Option<&str>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · devcert" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header {
                    a.brand href="/" { "devcert registry" }
                    nav {
                        a href="/" { "Devices" }
                        a href="/cas" { "CAs" }
                        @if v.read_only { span.badge.ro { "read-only" } }
                        @match v.session {
                            Some(s) => {
                                form.inline method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    span.who { "signed in (" (s.actor) ")" }
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                            None => { a href="/login" { "Sign in" } }
                        }
                    }
                }
                main {
                    @if let Some(n) = notice { p.notice role="status" { (n) } }
                    (content)
                }
            }
        }
    }
}

/// A refusal or failure, said plainly.
pub fn error_page(v: &Viewer, status: StatusCode, message: &str, hint: Option<&str>) -> Page {
    let title = status.canonical_reason().unwrap_or("Error");
    Page {
        status,
        body: layout(
            v,
            title,
            None,
            html! {
                h1 { (title) }
                p.error role="alert" { (message) }
                @if let Some(h) = hint { p.hint { (h) } }
                p { a href="/" { "Back to the devices" } }
            },
        ),
    }
}

fn status_badge(s: Status) -> Markup {
    html! { span class={ "status " (s.as_str()) } { (s.as_str()) } }
}

/// `%`-encodes a query value (everything but unreserved characters).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The device list with its search form and a link to the next page.
pub fn devices(
    v: &Viewer,
    p: &ListParams,
    list: &[DeviceRecord],
    next_after: Option<&str>,
    notice: Option<&str>,
) -> Markup {
    let val = |o: &Option<String>| o.clone().unwrap_or_default();
    let status = val(&p.status);
    let filters: String = [
        ("serial", &p.serial),
        ("ca_serial", &p.ca_serial),
        ("q", &p.q),
        ("status", &p.status),
    ]
    .iter()
    .filter_map(|(k, o)| {
        o.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| format!("{k}={}&", url_encode(s)))
    })
    .collect();
    layout(
        v,
        "Devices",
        notice,
        html! {
            h1 { "Devices" }
            form.search method="get" action="/" {
                label { "Device serial" input name="serial" value=(val(&p.serial)) placeholder="4B1C…" autocomplete="off"; }
                label { "CA serial" input name="ca_serial" value=(val(&p.ca_serial)) autocomplete="off"; }
                label { "Subject contains" input name="q" value=(val(&p.q)) placeholder="CN=dev-1" autocomplete="off"; }
                label { "Status"
                    select name="status" {
                        option value="" selected[status.is_empty()] { "any" }
                        option value="active" selected[status == "active"] { "active" }
                        option value="inactive" selected[status == "inactive"] { "inactive" }
                        option value="revoked" selected[status == "revoked"] { "revoked" }
                    }
                }
                button type="submit" { "Search" }
                a href="/" { "Clear" }
            }
            @if list.is_empty() {
                p.empty { "No device matches." }
            } @else {
                table.devices {
                    thead { tr { th { "Serial" } th { "Status" } th { "Subject" } th { "CA serial" } th { "Valid until" } } }
                    tbody {
                        @for d in list {
                            tr {
                                td.serial { a href={ "/devices/" (d.serial) } { (d.serial) } }
                                td { (status_badge(d.status)) }
                                td { (d.subject) }
                                td.serial { a href={ "/?ca_serial=" (d.ca_serial) } { (d.ca_serial) } }
                                td { (d.not_after) }
                            }
                        }
                    }
                }
            }
            nav.pages {
                @if p.after.as_deref().is_some_and(|a| !a.is_empty()) {
                    a href={ "/?" (filters) } { "« First page" }
                }
                @if let Some(after) = next_after {
                    a rel="next" href={ "/?" (filters) "after=" (url_encode(after)) } { "Next page »" }
                }
            }
        },
    )
}

/// One device: its certificate, state, actions and audit trail.
pub fn device(v: &Viewer, d: &DeviceRecord, audit: &[AuditRecord], notice: Option<&str>) -> Markup {
    let now = crate::sign::format_time(std::time::SystemTime::now());
    let expired = d.not_after < now;
    layout(
        v,
        &format!("Device {}", d.serial),
        notice,
        html! {
            h1 { "Device " span.serial { (d.serial) } " " (status_badge(d.status)) }
            dl.record {
                dt { "Subject" } dd { (d.subject) }
                dt { "Serial" } dd.serial { (d.serial) }
                dt { "CA serial" } dd.serial { a href={ "/?ca_serial=" (d.ca_serial) } { (d.ca_serial) } }
                dt { "Valid from" } dd { (d.not_before) }
                dt { "Valid until" } dd { (d.not_after) @if expired { " " span.status.inactive { "expired" } } }
                dt { "Status" } dd id="status" { (d.status.as_str()) }
                dt { "Registered" } dd { (d.registered_at) }
                dt { "First connected" } dd { (d.first_connected_at.as_deref().unwrap_or("never")) }
                dt { "Last connected" } dd { (d.last_connected_at.as_deref().unwrap_or("never")) }
                @if let (Some(at), Some(reason)) = (&d.revoked_at, &d.revocation_reason) {
                    dt { "Revoked" } dd { (at) " (" (reason) ")" }
                }
            }
            @if v.can_change() {
                div.actions {
                    @match d.status {
                        Status::Active => a.button href={ "/devices/" (d.serial) "/deactivate" } { "Deactivate" },
                        Status::Inactive => a.button href={ "/devices/" (d.serial) "/activate" } { "Activate" },
                        Status::Revoked => {},
                    }
                    @if d.status != Status::Revoked {
                        a.button.danger href={ "/devices/" (d.serial) "/revoke" } { "Revoke" }
                    }
                    a.button.danger href={ "/devices/" (d.serial) "/delete" } { "Delete" }
                }
            }
            h2 { "Audit trail" }
            @if audit.is_empty() {
                p.empty { "No change recorded." }
            } @else {
                table.audit {
                    thead { tr { th { "When" } th { "Who" } th { "What" } } }
                    tbody { @for a in audit { tr { td { (a.at) } td { (a.actor) } td { (a.action) } } } }
                }
            }
        },
    )
}

/// "Really?" — the form that performs the change, with its options.
pub fn confirm(v: &Viewer, d: &DeviceRecord, change: Change, csrf: &str) -> Markup {
    let action = change.name();
    let verb = capitalize(action);
    layout(
        v,
        &format!("{verb} {}", d.serial),
        None,
        html! {
            h1 { (verb) " device?" }
            dl.record {
                dt { "Serial" } dd.serial { (d.serial) }
                dt { "Subject" } dd { (d.subject) }
                dt { "Status" } dd { (status_badge(d.status)) }
            }
            p { (change.effect()) }
            form.confirm method="post" action={ "/devices/" (d.serial) "/" (action) } {
                input type="hidden" name="csrf" value=(csrf);
                @if let Change::Revoke(_) = change {
                    label { "Reason "
                        select name="reason" {
                            @for r in ["keyCompromise", "cessationOfOperation", "superseded", "affiliationChanged", "unspecified"] {
                                option value=(r) { (r) }
                            }
                        }
                    }
                }
                @if matches!(change, Change::Delete { .. }) && d.status == Status::Inactive {
                    p.error { "This device is inactive: deleting it lifts the hold (it leaves the CRL and its next connection registers it again). To keep it off for good, revoke it instead." }
                    label { input type="checkbox" name="force" value="1"; " Delete it anyway" }
                }
                button.button.danger[change != Change::Activate] type="submit" id="confirm" { "Yes, " (action) }
                " "
                a href={ "/devices/" (d.serial) } { "Cancel" }
            }
        },
    )
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The registered CAs with their device counts, and the upload form.
pub fn cas(v: &Viewer, list: &[CaRecord], notice: Option<&str>) -> Markup {
    layout(
        v,
        "CAs",
        notice,
        html! {
            h1 { "Certificate authorities" }
            @if list.is_empty() {
                p.empty { "No CA is registered." }
            } @else {
                table.cas {
                    thead { tr { th { "Serial" } th { "Subject" } th { "Devices" } th { "Valid until" } th { "Key id" } } }
                    tbody {
                        @for c in list {
                            tr {
                                td.serial { (c.serial) }
                                td { (c.subject) }
                                td.num { a href={ "/?ca_serial=" (c.serial) } { (c.devices) } }
                                td { (c.not_after) }
                                td.serial { (c.ski) }
                            }
                        }
                    }
                }
            }
            @if v.can_change() {
                h2 { "Register a CA" }
                @match v.session {
                    Some(s) => {
                        form.upload method="post" action="/cas" enctype="multipart/form-data" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            label { "CA certificate (PEM or DER) " input type="file" name="cert" required; }
                            button type="submit" { "Register" }
                        }
                    }
                    None => p { a href="/login?next=/cas" { "Sign in" } " to register a CA." },
                }
            }
        },
    )
}

/// The sign-in form: the token, and the form's own CSRF value.
pub fn login(v: &Viewer, csrf: &str, next: &str, error: Option<&str>) -> Markup {
    layout(
        v,
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            p { "Paste the console token: the first line of the token file "
                code { "registry serve" } " printed at start (" code { "DB.token" } " or " code { "--token-file" } ")." }
            form.login method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label { "Token " input type="password" name="token" id="token" autocomplete="current-password" required autofocus; }
                button type="submit" id="sign-in" { "Sign in" }
            }
        },
    )
}
