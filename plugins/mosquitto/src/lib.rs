//! The devcert Mosquitto 2.0 plugin (plugin API v5): a thin `extern "C"`
//! shim. Each broker event is handed to `devcert::registry::broker::Session`
//! (ordinary Rust, the same decision code as `devcert registry auth`); the
//! answers become Mosquitto return codes, kicks and one log line per
//! decision. No panic may unwind into the broker: every entry point runs
//! under `catch_unwind`, and after a panic the plugin refuses every device
//! (fail closed) instead of trusting half-updated state.
//!
//! The `mosquitto_*` functions live in the broker and OpenSSL's in the
//! libcrypto it links: both stay undefined here, resolved when the broker
//! loads the plugin (so no headers or -dev packages are needed to build).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Instant, SystemTime};

use devcert::registry::broker::{Options, Outcome, Session, Verdict};

// Layouts as in Mosquitto 2.0's mosquitto_broker.h / mosquitto_plugin.h.
#[repr(C)]
pub struct MosquittoOpt {
    key: *const c_char,
    value: *const c_char,
}

#[repr(C)]
struct EvtBasicAuth {
    future: *mut c_void,
    client: *mut c_void,
    username: *mut c_char,
    password: *mut c_char,
    future2: [*mut c_void; 4],
}

#[repr(C)]
struct EvtDisconnect {
    future: *mut c_void,
    client: *mut c_void,
    reason: c_int,
}

type Callback = extern "C" fn(c_int, *mut c_void, *mut c_void) -> c_int;

const EVT_BASIC_AUTH: c_int = 3;
const EVT_TICK: c_int = 9;
const EVT_DISCONNECT: c_int = 10;

const ERR_SUCCESS: c_int = 0;
const ERR_UNKNOWN: c_int = 13;
const ERR_AUTH: c_int = 11;
const ERR_PLUGIN_DEFER: c_int = 17;
const ERR_INVAL: c_int = 3;

const LOG_INFO: c_int = 1 << 0;
const LOG_NOTICE: c_int = 1 << 1;
const LOG_WARNING: c_int = 1 << 2;
const LOG_ERR: c_int = 1 << 3;

unsafe extern "C" {
    fn mosquitto_callback_register(
        id: *mut c_void,
        event: c_int,
        cb: Callback,
        event_data: *const c_void,
        userdata: *mut c_void,
    ) -> c_int;
    fn mosquitto_callback_unregister(
        id: *mut c_void,
        event: c_int,
        cb: Callback,
        event_data: *const c_void,
    ) -> c_int;
    fn mosquitto_log_printf(level: c_int, fmt: *const c_char, ...);
    fn mosquitto_client_id(client: *const c_void) -> *const c_char;
    fn mosquitto_client_certificate(client: *const c_void) -> *mut c_void;
    fn mosquitto_set_username(client: *mut c_void, username: *const c_char) -> c_int;
    fn mosquitto_kick_client_by_username(username: *const c_char, with_will: bool) -> c_int;
    fn i2d_X509(x: *const c_void, out: *mut *mut u8) -> c_int;
    fn X509_free(x: *mut c_void);
}

/// What `mosquitto_plugin_init` hands back as userdata.
struct Plugin {
    id: *mut c_void,
    session: Session,
    /// Set when a panic was caught: state may be inconsistent, refuse all.
    poisoned: bool,
}

fn log(level: c_int, msg: &str) {
    // A NUL inside a message would cut it; none of ours has one, but be safe.
    let line = CString::new(format!("devcert: {}", msg.replace('\0', "?")))
        .unwrap_or_else(|_| CString::from(c"devcert: (unprintable message)"));
    unsafe { mosquitto_log_printf(level, c"%s".as_ptr(), line.as_ptr()) };
}

/// Runs `f` and turns a panic into a log line and `on_panic`.
fn guard(what: &str, on_panic: c_int, f: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(rc) => rc,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log(
                LOG_ERR,
                &format!("internal error in {what} ({msg}): refusing devices from now on"),
            );
            on_panic
        }
    }
}

/// The plugin state behind a callback's userdata (null-checked).
///
/// # Safety
/// `userdata` is the pointer `mosquitto_plugin_init` returned, alive until
/// `mosquitto_plugin_cleanup`; the broker calls plugins from one thread.
unsafe fn plugin<'a>(userdata: *mut c_void) -> Option<&'a mut Plugin> {
    unsafe { userdata.cast::<Plugin>().as_mut() }
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The client's certificate as DER, or `None` when it sent none.
fn client_certificate(client: *mut c_void) -> Option<Vec<u8>> {
    let x509 = unsafe { mosquitto_client_certificate(client) };
    if x509.is_null() {
        return None;
    }
    let mut der = Vec::new();
    let len = unsafe { i2d_X509(x509, std::ptr::null_mut()) };
    if len > 0 {
        der.resize(len as usize, 0);
        let mut out = der.as_mut_ptr();
        let written = unsafe { i2d_X509(x509, &mut out) };
        der.truncate(written.max(0) as usize);
    }
    // mosquitto_client_certificate returns a new reference.
    unsafe { X509_free(x509) };
    // An empty encoding is handed on as bytes, so it is refused (not deferred).
    Some(der)
}

fn describe(v: &Verdict, client_id: &str) -> String {
    let decision = match v.outcome {
        Outcome::Accept => "accepted",
        Outcome::Refuse => "refused",
        Outcome::Defer => "deferred",
    };
    format!(
        "{decision} client_id={client_id:?} serial={}: {}",
        v.serial.as_deref().unwrap_or("-"),
        v.reason
    )
}

extern "C" fn on_basic_auth(_event: c_int, data: *mut c_void, userdata: *mut c_void) -> c_int {
    guard("connect", ERR_AUTH, || {
        let (Some(p), Some(ev)) = (unsafe { plugin(userdata) }, unsafe {
            data.cast::<EvtBasicAuth>().as_ref()
        }) else {
            return ERR_AUTH;
        };
        let client_id = text(unsafe { mosquitto_client_id(ev.client) });
        if p.poisoned {
            log(
                LOG_WARNING,
                &format!(
                    "refused client_id={client_id:?}: plugin disabled by an earlier internal error"
                ),
            );
            return ERR_AUTH;
        }
        let started = Instant::now();
        let cert = client_certificate(ev.client);
        let r = catch_unwind(AssertUnwindSafe(|| {
            p.session.connect(
                ev.client as usize,
                &client_id,
                cert.as_deref(),
                SystemTime::now(),
            )
        }));
        let mut v = match r {
            Ok(v) => v,
            Err(_) => {
                p.poisoned = true;
                log(
                    LOG_ERR,
                    &format!(
                        "refused client_id={client_id:?}: internal error; refusing devices from now on"
                    ),
                );
                return ERR_AUTH;
            }
        };
        if v.outcome == Outcome::Accept {
            // The serial becomes the MQTT username: it names the device in
            // ACLs and is how a deactivated device is kicked later.
            let name = v.serial.as_deref().and_then(|s| CString::new(s).ok());
            let set = name.map(|n| unsafe { mosquitto_set_username(ev.client, n.as_ptr()) });
            if set != Some(ERR_SUCCESS) {
                v.outcome = Outcome::Refuse;
                v.reason = format!("cannot set the MQTT username (error {set:?})");
                p.session.disconnect(ev.client as usize);
            }
        }
        let (level, rc) = match v.outcome {
            Outcome::Accept => (LOG_NOTICE, ERR_SUCCESS),
            Outcome::Refuse => (LOG_WARNING, ERR_AUTH),
            Outcome::Defer => (LOG_INFO, ERR_PLUGIN_DEFER),
        };
        let cost = started.elapsed().as_micros();
        log(level, &format!("{} ({cost} us)", describe(&v, &client_id)));
        rc
    })
}

extern "C" fn on_disconnect(_event: c_int, data: *mut c_void, userdata: *mut c_void) -> c_int {
    guard("disconnect", ERR_SUCCESS, || {
        if let (Some(p), Some(ev)) = (unsafe { plugin(userdata) }, unsafe {
            data.cast::<EvtDisconnect>().as_ref()
        }) {
            p.session.disconnect(ev.client as usize);
        }
        ERR_SUCCESS
    })
}

extern "C" fn on_tick(_event: c_int, _data: *mut c_void, userdata: *mut c_void) -> c_int {
    guard("tick", ERR_SUCCESS, || {
        let Some(p) = (unsafe { plugin(userdata) }) else {
            return ERR_SUCCESS;
        };
        if p.poisoned {
            return ERR_SUCCESS;
        }
        let report = p.session.tick(Instant::now());
        if let Some(problem) = report.problem {
            log(LOG_WARNING, &problem);
        }
        for k in report.kicks {
            log(
                LOG_NOTICE,
                &format!(
                    "disconnected client_id={:?} serial={}: {}",
                    k.client_ids.join(","),
                    k.serial,
                    k.reason
                ),
            );
            if let Ok(name) = CString::new(k.serial) {
                unsafe { mosquitto_kick_client_by_username(name.as_ptr(), false) };
            }
        }
        ERR_SUCCESS
    })
}

// No ACL_CHECK: in Mosquitto 2.0.11 a plugin granting access overrides the
// acl_file, and "every plugin deferred" is a denial. A plugin answering for
// admitted devices would thus either bypass the acl_file or deny everything
// without one (both measured). A device
// refused while connected is kicked in the very TICK that sees the change,
// so nothing of it is handled after that moment anyway.
const CALLBACKS: [(c_int, Callback); 3] = [
    (EVT_BASIC_AUTH, on_basic_auth),
    (EVT_DISCONNECT, on_disconnect),
    (EVT_TICK, on_tick),
];

/// Plugin API v5 (Mosquitto 2.0), if the broker offers it.
#[unsafe(no_mangle)]
pub extern "C" fn mosquitto_plugin_version(count: c_int, versions: *const c_int) -> c_int {
    guard("version", -1, || {
        if versions.is_null() || count <= 0 {
            return -1;
        }
        let offered = unsafe { std::slice::from_raw_parts(versions, count as usize) };
        if offered.contains(&5) { 5 } else { -1 }
    })
}

/// # Safety
/// Called by Mosquitto with its plugin id, a place for userdata and the
/// `plugin_opt_*` pairs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_init(
    id: *mut c_void,
    userdata: *mut *mut c_void,
    options: *const MosquittoOpt,
    option_count: c_int,
) -> c_int {
    guard("init", ERR_UNKNOWN, || {
        if userdata.is_null() {
            return ERR_INVAL;
        }
        let pairs: Vec<(String, String)> = if options.is_null() || option_count <= 0 {
            Vec::new()
        } else {
            unsafe { std::slice::from_raw_parts(options, option_count as usize) }
                .iter()
                .map(|o| (text(o.key), text(o.value)))
                .collect()
        };
        let opts = match Options::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            Ok(o) => o,
            Err(why) => {
                log(LOG_ERR, &format!("not loaded: {why}"));
                return ERR_INVAL;
            }
        };
        let mut session = Session::new(opts);
        let o = session.options();
        log(
            LOG_INFO,
            &format!(
                "registry {} (re-checking connected devices every {} ms)",
                o.registry,
                o.poll.as_millis()
            ),
        );
        // Not fatal: devices are refused until the registry can be read.
        if let Err(e) = session.check_registry() {
            log(
                LOG_WARNING,
                &format!("registry not usable yet, refusing devices until it is: {e}"),
            );
        }
        let plugin = Box::into_raw(Box::new(Plugin {
            id,
            session,
            poisoned: false,
        }));
        for (event, cb) in CALLBACKS {
            let rc = unsafe {
                mosquitto_callback_register(id, event, cb, std::ptr::null(), plugin.cast())
            };
            if rc != ERR_SUCCESS {
                log(
                    LOG_ERR,
                    &format!("not loaded: cannot register for event {event} (error {rc})"),
                );
                unregister(id);
                drop(unsafe { Box::from_raw(plugin) });
                return rc;
            }
        }
        unsafe { *userdata = plugin.cast() };
        ERR_SUCCESS
    })
}

fn unregister(id: *mut c_void) {
    for (event, cb) in CALLBACKS {
        unsafe { mosquitto_callback_unregister(id, event, cb, std::ptr::null()) };
    }
}

/// # Safety
/// Called once by Mosquitto with the userdata `mosquitto_plugin_init` set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_cleanup(
    userdata: *mut c_void,
    _options: *const MosquittoOpt,
    _option_count: c_int,
) -> c_int {
    guard("cleanup", ERR_SUCCESS, || {
        if userdata.is_null() {
            return ERR_SUCCESS;
        }
        let mut plugin = unsafe { Box::from_raw(userdata.cast::<Plugin>()) };
        unregister(plugin.id);
        if let Err(e) = plugin.session.flush() {
            log(LOG_WARNING, &e.to_string());
        }
        ERR_SUCCESS
    })
}
