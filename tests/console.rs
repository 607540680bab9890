//! `devcert registry serve`: the JSON API over real HTTP (curl), the
//! console in a real headless Chromium over WebDriver (chromedriver), and
//! the console beside CLI processes changing the same registry. Every
//! answer is compared with what the CLI prints (`--json`) and the registry
//! is read back with Python's sqlite3 or psql. The API, the console's forms
//! and the concurrency test run on SQLite and PostgreSQL.
mod common;
use common::pg::{Backend, PG_DB, PgServer};
use common::*;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A test folder and the registry under test: `reg.db`, or a database of
/// a PostgreSQL server of its own.
struct Site {
    t: TestDir,
    /// What `--db` / `--registry` get.
    db: String,
    pg: Option<PgServer>,
}

impl std::ops::Deref for Site {
    type Target = TestDir;
    fn deref(&self) -> &TestDir {
        &self.t
    }
}

/// The token file `registry serve` is given on PostgreSQL (it has no file
/// to put one beside).
const PG_TOKEN_FILE: &str = "pg.token";

impl Site {
    /// `None` when PostgreSQL is missing outside CI (the test is skipped).
    fn new(b: Backend) -> Option<Site> {
        let (db, pg) = common::pg::registry_under_test(b)?;
        let t = TestDir::new();
        if pg.is_some() {
            let token = t.write(PG_TOKEN_FILE, "tok-pg-0123456789abcdefghij\n");
            std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        Some(Site { t, db, pg })
    }

    /// The API token of a server started without `--token-file`.
    fn token(&self) -> String {
        let file = if self.pg.is_some() {
            PG_TOKEN_FILE
        } else {
            "reg.db.token"
        };
        self.read_str(file).lines().next().unwrap().to_string()
    }

    /// Rows of the audit trail as (actor, action, serial), read with the
    /// database's own client.
    fn audit_rows(&self) -> Vec<(String, String, String)> {
        let text = match &self.pg {
            Some(pg) => pg.psql(
                PG_DB,
                "SELECT coalesce(json_agg(json_build_array(actor, action, serial) ORDER BY id), '[]') FROM audit",
            ),
            None => Cmd::new(self.root(), "python3")
                .args([
                    "-c",
                    "import json,sqlite3;c=sqlite3.connect('reg.db');print(json.dumps(c.execute('select actor,action,serial from audit order by id').fetchall()))",
                ])
                .run()
                .ok()
                .stdout_str(),
        };
        serde_json::from_str(&text).unwrap()
    }
}

/// A running `registry serve`, stopped by its PID when dropped.
struct Server {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the server on a free port and waits for `listening on`.
    fn start(t: &Site, extra: &[&str]) -> Server {
        let token_file = match t.pg {
            Some(_) if !extra.contains(&"--token-file") => vec!["--token-file", PG_TOKEN_FILE],
            _ => vec![],
        };
        let mut child = Command::new(DEVCERT)
            .current_dir(t.root())
            .args([
                "registry",
                "--db",
                &t.db,
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .args(token_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start devcert registry serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("no 'listening on' line:\n{}", log.lock().unwrap())
            });
        Server { child, url, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, then the exit status (the server stops on its own).
    fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP exchange through curl: status, headers, body.
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// `curl` with `args` (method, headers, data) against `url`.
fn curl(t: &TestDir, url: &str, args: &[&str], stdin: Option<&[u8]>) -> Reply {
    let hdr = t.path(&format!("h{}", std::process::id()));
    let mut cmd = Cmd::new(t.root(), "curl")
        .args(["-sS", "--max-time", "60", "-D"])
        .arg(hdr.as_os_str())
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .arg(url);
    if let Some(data) = stdin {
        cmd = cmd.args(["--data-binary", "@-"]).stdin(data.to_vec());
    }
    let out = cmd.run().ok();
    let text = out.stdout_str();
    let (body, code) = text.rsplit_once('\n').expect("curl wrote the status");
    Reply {
        status: code.trim().parse().unwrap(),
        headers: std::fs::read_to_string(&hdr).unwrap_or_default(),
        body: body.to_string(),
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

fn reg(t: &Site, args: &[&str]) -> Out {
    let mut all = vec!["registry", "--db", &t.db];
    all.extend_from_slice(args);
    t.devcert(&all)
}

fn cli_json(t: &Site, args: &[&str]) -> Value {
    let out = reg(t, args).ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A CA `CA.crt` and `n` devices `dev-I/` registered; their serials.
fn fleet(t: &Site, n: usize) -> Vec<String> {
    t.devcert(&[
        "ca",
        "--subject",
        "/O=Fleet/CN=Fleet CA",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .ok();
    let names: String = (1..=n).map(|i| format!("dev-{i:04}\n")).collect();
    t.write("names.txt", names);
    t.devcert(&[
        "batch",
        "--names",
        "names.txt",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--registry",
        &t.db,
        "--out-dir",
        "fleet",
    ])
    .ok();
    let list = cli_json(t, &["device", "list", "--json"]);
    list.as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap().to_string())
        .collect()
}

/// The chain file of device `cn` written by `fleet`.
fn chain_of(t: &TestDir, cn: &str) -> String {
    let dir = t.path("fleet").join(cn);
    let chain = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("chain.crt"))
        .unwrap_or_else(|| panic!("no chain in {}", dir.display()));
    chain.display().to_string()
}

both_backends!(
    api_answers_as_the_cli_and_guards_every_change,
    console_sign_in_confirm_and_csrf,
    console_and_eight_cli_processes_lose_nothing,
);

fn api_answers_as_the_cli_and_guards_every_change(b: Backend) {
    let Some(t) = Site::new(b) else { return };
    let serials = fleet(&t, 5);
    let mut srv = Server::start(&t, &[]);
    let token = t.token();
    if t.pg.is_none() {
        t.assert_mode("reg.db.token", 0o600);
        assert!(srv.log().contains("reg.db.token"), "{}", srv.log());
    }
    let api = |path: &str| format!("{}{path}", srv.url);

    // Reads: the very objects the CLI prints.
    let all = curl(&t, &api("/api/devices"), &[], None);
    assert_eq!(all.status, 200);
    assert!(
        all.headers
            .to_lowercase()
            .contains("content-type: application/json")
    );
    assert_eq!(all.json(), cli_json(&t, &["device", "list", "--json"]));
    let one = curl(
        &t,
        &api(&format!("/api/devices?serial={}", serials[2])),
        &[],
        None,
    );
    assert_eq!(
        one.json(),
        cli_json(&t, &["device", "list", "--serial", &serials[2], "--json"])
    );
    let ca_serial = cli_json(&t, &["ca", "list", "--json"])[0]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let by_ca = curl(
        &t,
        &api(&format!("/api/devices?ca_serial={ca_serial}&status=active")),
        &[],
        None,
    );
    assert_eq!(by_ca.json(), all.json());
    let by_subject = curl(&t, &api("/api/devices?q=dev-0003"), &[], None).json();
    assert_eq!(by_subject.as_array().unwrap().len(), 1, "{by_subject}");
    assert!(
        by_subject[0]["subject"]
            .as_str()
            .unwrap()
            .contains("CN=dev-0003")
    );
    assert_eq!(
        curl(&t, &api("/api/devices?q=DEV-"), &[], None).json(),
        all.json(),
        "q is case-insensitive"
    );
    assert_eq!(
        curl(&t, &api("/api/devices?q=%25"), &[], None).json(),
        Value::Array(vec![]),
        "% is literal"
    );
    let show = cli_json(&t, &["device", "show", &serials[0], "--json"]);
    assert_eq!(
        curl(&t, &api(&format!("/api/devices/{}", serials[0])), &[], None).json(),
        show
    );
    let colons = serials[0]
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap().to_lowercase())
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(
        curl(&t, &api(&format!("/api/devices/{colons}")), &[], None).json(),
        show
    );
    assert_eq!(
        curl(&t, &api("/api/cas"), &[], None).json(),
        cli_json(&t, &["ca", "list", "--json"])
    );

    // Keyset paging: pages of 2 put together are the whole list.
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let page = curl(
            &t,
            &api(&format!("/api/devices?limit=2&after={after}")),
            &[],
            None,
        )
        .json();
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap()["serial"].as_str().unwrap().to_string();
        paged.extend(page);
    }
    assert_eq!(Value::Array(paged), all.json());

    // Bad parameters: 400 with a reason; unknown serials: 404.
    for bad in [
        "/api/devices?status=gone",
        "/api/devices?limit=0",
        "/api/devices?limit=1001",
        "/api/devices?serial=xyz",
        "/api/devices/not-hex",
    ] {
        let r = curl(&t, &api(bad), &[], None);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains("bad"),
            "{}",
            r.body
        );
    }
    let r = curl(&t, &api("/api/devices?after=0BADC0DE"), &[], None);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = curl(&t, &api("/api/devices/0BADC0DE"), &[], None);
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("0BADC0DE is not registered")
    );

    // Changes: 401 without the token or with a wrong one, nothing changed.
    let target = &serials[1];
    let deactivate = api(&format!("/api/devices/{target}/deactivate"));
    for auth in [
        vec![],
        vec!["-H".to_string(), bearer("wrong-token-0123456789")],
        vec!["-H".to_string(), format!("Authorization: Basic {token}")],
    ] {
        let mut args: Vec<&str> = vec!["-X", "POST"];
        args.extend(auth.iter().map(String::as_str));
        let r = curl(&t, &deactivate, &args, None);
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(
            r.headers
                .to_lowercase()
                .contains("www-authenticate: bearer")
        );
    }
    assert_eq!(
        curl(
            &t,
            &api(&format!("/api/devices/{target}")),
            &["-X", "DELETE"],
            None
        )
        .status,
        401
    );
    assert_eq!(
        curl(
            &t,
            &api("/api/cas"),
            &["-X", "POST"],
            Some(t.read("CA.crt").as_slice())
        )
        .status,
        401
    );
    assert_eq!(
        cli_json(&t, &["device", "show", target, "--json"])["status"],
        "active"
    );

    // With the token: the answer is the device as `device show` now prints it,
    // and the broker's decision follows at once.
    let auth = bearer(&token);
    let r = curl(&t, &deactivate, &["-X", "POST", "-H", &auth], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        cli_json(&t, &["device", "show", target, "--json"])
    );
    assert_eq!(r.json()["status"], "inactive");
    refused_inactive(reg(&t, &["auth", &chain_of(&t, "dev-0002")]));
    let r = curl(
        &t,
        &api(&format!("/api/devices/{target}/activate")),
        &["-X", "POST", "-H", &auth],
        None,
    );
    assert_eq!(r.json()["status"], "active");
    reg(&t, &["auth", &chain_of(&t, "dev-0002")]).ok();
    let r = curl(
        &t,
        &api("/api/devices/0BADC0DE/deactivate"),
        &["-X", "POST", "-H", &auth],
        None,
    );
    assert_eq!(r.status, 404);
    let r = curl(
        &t,
        &api(&format!("/api/devices/{}", serials[4])),
        &["-X", "DELETE", "-H", &auth],
        None,
    );
    assert_eq!(r.status, 204);
    reg(&t, &["device", "show", &serials[4]]).fails_naming(&["not registered"]);
    assert_eq!(
        curl(
            &t,
            &api(&format!("/api/devices/{}", serials[4])),
            &["-X", "DELETE", "-H", &auth],
            None
        )
        .status,
        404
    );

    // Revoke is permanent (409 on activate); an inactive device is deleted
    // only with force=true, as `device delete --force`.
    let r = curl(
        &t,
        &api(&format!(
            "/api/devices/{}/revoke?reason=superseded",
            serials[3]
        )),
        &["-X", "POST", "-H", &auth],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        cli_json(&t, &["device", "show", &serials[3], "--json"])
    );
    assert_eq!(r.json()["status"], "revoked");
    let r = curl(
        &t,
        &api(&format!("/api/devices/{}/activate", serials[3])),
        &["-X", "POST", "-H", &auth],
        None,
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("revoked"), "{}", r.body);
    let r = curl(
        &t,
        &api(&format!("/api/devices/{}/revoke?reason=bogus", serials[3])),
        &["-X", "POST", "-H", &auth],
        None,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    curl(&t, &deactivate, &["-X", "POST", "-H", &auth], None);
    let r = curl(
        &t,
        &api(&format!("/api/devices/{target}")),
        &["-X", "DELETE", "-H", &auth],
        None,
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.json()["hint"].as_str().unwrap().contains("revoke"),
        "{}",
        r.body
    );
    let r = curl(
        &t,
        &api(&format!("/api/devices/{target}?force=true")),
        &["-X", "DELETE", "-H", &auth],
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        curl(
            &t,
            &api(&format!("/api/devices/{target}/explode")),
            &["-X", "POST", "-H", &auth],
            None
        )
        .status,
        404
    );

    // CAs: bad, oversized, not a CA, new, known.
    let r = curl(
        &t,
        &api("/api/cas"),
        &["-X", "POST", "-H", &auth],
        Some(b"not a certificate"),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let big = vec![b'A'; devcert::server::BODY_LIMIT + 1];
    let r = curl(
        &t,
        &api("/api/cas"),
        &["-X", "POST", "-H", &auth],
        Some(&big),
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.json()["error"].is_string());
    let leaf = std::fs::read(t.path("fleet").join("dev-0001").join("client.crt")).unwrap();
    let r = curl(
        &t,
        &api("/api/cas"),
        &["-X", "POST", "-H", &auth],
        Some(&leaf),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("basicConstraints CA:TRUE"), "{}", r.body);
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Second CA",
        "--key-out",
        "CA2.key",
        "-o",
        "CA2.crt",
    ])
    .ok();
    let r = curl(
        &t,
        &api("/api/cas"),
        &["-X", "POST", "-H", &auth],
        Some(&t.read("CA2.crt")),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let cas = cli_json(&t, &["ca", "list", "--json"]);
    assert_eq!(r.json(), cas[1]);
    assert_eq!(
        r.json()["serial"].as_str().unwrap(),
        t.openssl_ok(&["x509", "-in", "CA2.crt", "-noout", "-serial"])
            .trim()
            .trim_start_matches("serial=")
    );
    let r = curl(
        &t,
        &api("/api/cas"),
        &["-X", "POST", "-H", &auth],
        Some(&t.read("CA2.crt")),
    );
    assert_eq!(r.status, 200);

    // The CLI writes the same audit trail, as "cli"; every change is in it.
    reg(&t, &["device", "deactivate", &serials[0]]).ok();
    let rows = t.audit_rows();
    let want = [
        ("api-token", "deactivate", target.as_str()),
        ("api-token", "activate", target.as_str()),
        ("api-token", "delete", serials[4].as_str()),
        ("api-token", "revoke", serials[3].as_str()),
        ("api-token", "deactivate", target.as_str()),
        ("api-token", "delete", target.as_str()),
        ("api-token", "ca add", cas[1]["serial"].as_str().unwrap()),
        ("cli", "deactivate", serials[0].as_str()),
    ];
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(got, want);
    // ... shown on the device page, newest first.
    let page = curl(&t, &api(&format!("/devices/{}", serials[3])), &[], None).body;
    assert!(
        page.contains("superseded") && page.contains("revoke</td>"),
        "{page}"
    );
    curl(
        &t,
        &api(&format!("/api/devices/{}/deactivate", serials[2])),
        &["-X", "POST", "-H", &auth],
        None,
    );
    curl(
        &t,
        &api(&format!("/api/devices/{}/activate", serials[2])),
        &["-X", "POST", "-H", &auth],
        None,
    );
    let page = curl(&t, &api(&format!("/devices/{}", serials[2])), &[], None).body;
    let (first, second) = (
        page.find("activate</td>").unwrap(),
        page.find("deactivate</td>").unwrap(),
    );
    assert!(first < second, "newest first:\n{page}");
    assert!(page.contains("api-token"));

    // No secret in the log; SIGTERM stops it cleanly.
    let st = srv.terminate();
    assert!(st.success(), "{st:?}\n{}", srv.log());
    let log = srv.log();
    assert!(
        !log.contains(&token),
        "the token leaked into the log:\n{log}"
    );
    assert!(log.contains("api-token: deactivate device"), "{log}");
    assert!(log.trim_end().ends_with("stopped"), "{log}");
}

#[test]
fn read_only_and_token_file() {
    let t = Site::new(Backend::Sqlite).unwrap();
    let serials = fleet(&t, 1);
    t.write(
        "secret.txt",
        "tok-0123456789abcdefghij\nignored second line\n",
    );
    std::fs::set_permissions(
        t.path("secret.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    // A token file others may read is refused before listening.
    reg(
        &t,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            "secret.txt",
        ],
    )
    .fails_naming(&["secret.txt", "0600"]);
    std::fs::set_permissions(
        t.path("secret.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    let srv = Server::start(&t, &["--token-file", "secret.txt", "--read-only"]);
    t.assert_no_file("reg.db.token");
    let url = format!("{}/api/devices/{}/deactivate", srv.url, serials[0]);
    assert_eq!(curl(&t, &url, &["-X", "POST"], None).status, 401);
    let r = curl(
        &t,
        &url,
        &["-X", "POST", "-H", &bearer("tok-0123456789abcdefghij")],
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("read-only"));
    let r = curl(
        &t,
        &format!("{}/api/cas", srv.url),
        &["-X", "POST", "-H", &bearer("tok-0123456789abcdefghij")],
        Some(&t.read("CA.crt")),
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        curl(&t, &format!("{}/api/devices", srv.url), &[], None).status,
        200
    );
    assert_eq!(
        cli_json(&t, &["device", "show", &serials[0], "--json"])["status"],
        "active"
    );
    // The console offers no change either.
    let page = curl(
        &t,
        &format!("{}/devices/{}", srv.url, serials[0]),
        &[],
        None,
    );
    assert!(
        page.body.contains("read-only") && !page.body.contains("Deactivate"),
        "{}",
        page.body
    );

    // A missing registry is refused, nothing is created.
    t.devcert(&[
        "registry",
        "--db",
        "nope.db",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ])
    .fails_naming(&["nope.db"]);
    t.assert_no_file("nope.db");
    t.assert_no_file("nope.db.token");
}

/// The console over plain HTTP: sign-in cookie flags, the confirmation
/// step, CSRF refusals.
fn console_sign_in_confirm_and_csrf(b: Backend) {
    let Some(t) = Site::new(b) else { return };
    let serials = fleet(&t, 2);
    let srv = Server::start(&t, &[]);
    let token = t.token();
    let jar = t.p("jar");
    let c = |path: &str, args: &[&str]| {
        let mut a = vec!["-b", jar.as_str(), "-c", jar.as_str()];
        a.extend_from_slice(args);
        curl(&t, &format!("{}{path}", srv.url), &a, None)
    };
    let sn = &serials[0];
    // Not signed in: the confirmation sends to the sign-in page, a POST too.
    let r = c(&format!("/devices/{sn}/deactivate"), &[]);
    assert_eq!(r.status, 303);
    assert!(
        r.headers.contains(&format!(
            "location: /login?next=%2Fdevices%2F{sn}%2Fdeactivate"
        )),
        "{}",
        r.headers
    );
    assert_eq!(
        c(
            &format!("/devices/{sn}/deactivate"),
            &["-X", "POST", "-d", "csrf=x"]
        )
        .status,
        303
    );

    // Sign in: a login form without its cookie, or a wrong token, is refused.
    let form = c("/login", &[]);
    let csrf = between(&form.body, "name=\"csrf\" value=\"", "\"");
    let r = curl(
        &t,
        &format!("{}/login", srv.url),
        &["-d", &format!("csrf={csrf}&token={token}")],
        None,
    );
    assert_eq!(r.status, 403, "no login cookie");
    let r = c("/login", &["-d", &format!("csrf={csrf}&token=wrong")]);
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Wrong token"));
    let form = c("/login", &[]);
    let csrf = between(&form.body, "name=\"csrf\" value=\"", "\"");
    let r = c(
        "/login",
        &[
            "-d",
            &format!("csrf={csrf}&token={token}&next=//evil.example/"),
        ],
    );
    assert_eq!(r.status, 303);
    assert!(
        r.headers.contains("location: /?done=signed-in"),
        "no open redirect: {}",
        r.headers
    );
    let set = r
        .headers
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie: devcert_session="))
        .expect("session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!r.headers.contains(&token));

    // The confirmation page carries the session's CSRF token; a POST
    // without it changes nothing.
    let confirm = c(&format!("/devices/{sn}/deactivate"), &[]);
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Deactivate device?"));
    let csrf = between(&confirm.body, "name=\"csrf\" value=\"", "\"");
    let r = c(
        &format!("/devices/{sn}/deactivate"),
        &["-X", "POST", "-d", "csrf=forged"],
    );
    assert_eq!(r.status, 403);
    assert!(r.body.contains("CSRF"));
    assert_eq!(
        cli_json(&t, &["device", "show", sn, "--json"])["status"],
        "active"
    );
    let r = c(
        &format!("/devices/{sn}/deactivate"),
        &["-X", "POST", "-d", &format!("csrf={csrf}")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        cli_json(&t, &["device", "show", sn, "--json"])["status"],
        "inactive"
    );
    let page = c(&format!("/devices/{sn}?done=deactivate"), &[]);
    assert!(page.body.contains("Device deactivated"));
    assert!(
        page.body.contains("console:"),
        "the audit trail names the session"
    );

    // Refusals are said plainly.
    let r = c("/devices/0BADC0DE", &[]);
    assert_eq!(r.status, 404);
    assert!(r.body.contains("serial 0BADC0DE is not registered"));
    assert_eq!(c(&format!("/devices/{sn}/explode"), &[]).status, 404);
    let r = c(
        &format!("/devices/{}/delete", serials[1]),
        &["-X", "POST", "-d", &format!("csrf={csrf}")],
    );
    assert_eq!(r.status, 303);
    assert!(
        r.headers
            .contains(&format!("location: /?done=delete&serial={}", serials[1]))
    );
    let r = c(
        &format!("/devices/{}/delete", serials[1]),
        &["-X", "POST", "-d", &format!("csrf={csrf}")],
    );
    assert_eq!(r.status, 404);

    // The CA upload refuses what is not a CA, and registers one.
    let upload = |file: &str| {
        c(
            "/cas",
            &[
                "-F",
                &format!("csrf={csrf}"),
                "-F",
                &format!("cert=@{file}"),
            ],
        )
    };
    let r = upload(&t.path("fleet/dev-0001/client.crt").display().to_string());
    assert_eq!(r.status, 409);
    assert!(r.body.contains("basicConstraints CA:TRUE"));
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Uploaded CA",
        "--key-out",
        "U.key",
        "-o",
        "U.crt",
    ])
    .ok();
    let r = upload(&t.p("U.crt"));
    assert_eq!(r.status, 303, "{}", r.body);
    let back = between(&r.headers, "location: ", "\r");
    let cas = c(back, &[]).body;
    assert!(
        cas.contains("CN=Uploaded CA") && cas.contains("registered."),
        "{cas}"
    );
    assert_eq!(
        cli_json(&t, &["ca", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    drop(srv);
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let i = s
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in\n{s}"))
        + start.len();
    &s[i..i + s[i..].find(end).unwrap()]
}

/// The console and 8 CLI processes change statuses at once: every change
/// lands, every one is audited.
fn console_and_eight_cli_processes_lose_nothing(b: Backend) {
    let Some(t) = Site::new(b) else { return };
    let serials = fleet(&t, 24);
    let srv = Server::start(&t, &[]);
    let token = t.token();
    // Devices 0..16: two each for 8 CLI workers; 16..24: the API.
    let mut workers = Vec::new();
    for w in 0..8 {
        let mine = serials[w * 2..w * 2 + 2].to_vec();
        let root = t.root().to_path_buf();
        let db = t.db.clone();
        workers.push(std::thread::spawn(move || {
            for round in 0..3 {
                for sn in &mine {
                    let verb = if round % 2 == 0 {
                        "deactivate"
                    } else {
                        "activate"
                    };
                    let out = Command::new(DEVCERT)
                        .current_dir(&root)
                        .args(["registry", "--db", &db, "device", verb, sn])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }));
    }
    let auth = bearer(&token);
    for round in 0..3 {
        for sn in &serials[16..] {
            let verb = if round % 2 == 0 {
                "deactivate"
            } else {
                "activate"
            };
            let r = curl(
                &t,
                &format!("{}/api/devices/{sn}/{verb}", srv.url),
                &["-X", "POST", "-H", &auth],
                None,
            );
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
    for w in workers {
        w.join().unwrap();
    }
    // Three rounds end deactivated; 24 devices × 3 changes are audited.
    let list = cli_json(&t, &["device", "list", "--json"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "inactive"),
        "{list}"
    );
    let rows = t.audit_rows();
    assert_eq!(rows.len(), 24 * 3);
    assert_eq!(rows.iter().filter(|r| r.0 == "cli").count(), 16 * 3);
    assert_eq!(rows.iter().filter(|r| r.0 == "api-token").count(), 8 * 3);
    for sn in &serials {
        assert_eq!(rows.iter().filter(|r| &r.2 == sn).count(), 3, "{sn}");
    }
    drop(srv);
}

// ---------------------------------------------------------------------------
// A real browser
// ---------------------------------------------------------------------------

/// chromedriver (and so Chromium), or None outside CI when missing.
fn find_chromedriver() -> Option<PathBuf> {
    let found = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    required(found, "chromedriver", "chromium chromium-driver")
}

fn chromium_binary() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/lib/chromium/chromium",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

/// chromedriver on a free port, killed when dropped.
/// chromedriver on a free port. Dropped (also on a panic), it stops and so
/// does every Chromium process using `profile`: killing chromedriver alone
/// leaves its browser running.
struct Driver {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl Driver {
    fn start(exe: &Path, log: &Path, profile: &Path) -> Driver {
        let port = common::broker::free_port();
        let child = Command::new(exe)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let d = Driver {
            child,
            port,
            profile: profile.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The browsers this test started, by PID: their command line names
        // this test's own profile folder.
        let needle = format!("--user-data-dir={}", self.profile.display());
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if cmdline
                .split(|&b| b == 0)
                .any(|arg| arg == needle.as_bytes())
            {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

#[test]
fn browser_signs_in_finds_and_deactivates_a_device() {
    let Some(chromedriver) = find_chromedriver() else {
        return;
    };
    let t = Site::new(Backend::Sqlite).unwrap();
    let serials = fleet(&t, 12);
    let srv = Server::start(&t, &[]);
    let token = t.token();
    let target = serials[6].clone(); // dev-0007
    let profile = t.path("chromium-profile");
    let driver = Driver::start(&chromedriver, &t.path("chromedriver.log"), &profile);
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,860",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut opts = serde_json::json!({ "args": args });
    if let Some(bin) = chromium_binary() {
        opts["binary"] = bin.into();
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), opts);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let png = rt.block_on(async {
        use fantoccini::{ClientBuilder, Locator};
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let b = ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await;
        let b = b.unwrap_or_else(|e| panic!("WebDriver session: {e}"));
        // An element of the page a click leads to (pages load asynchronously).
        let el = |loc: Locator<'static>| b.wait().at_most(Duration::from_secs(15)).for_element(loc);
        let result: Result<Vec<u8>, fantoccini::error::CmdError> = async {
            // Sign in with the token.
            b.goto(&format!("{}/login", srv.url)).await?;
            el(Locator::Id("token")).await?.send_keys(&token).await?;
            el(Locator::Id("sign-in")).await?.click().await?;
            let notice = el(Locator::Css("p.notice")).await?.text().await?;
            assert_eq!(notice, "Signed in.");
            // Search the serial (lower case, as people type it): one row.
            el(Locator::Css("input[name=serial]"))
                .await?
                .send_keys(&target.to_lowercase())
                .await?;
            el(Locator::Css("form.search button[type=submit]"))
                .await?
                .click()
                .await?;
            let link = format!("a[href='/devices/{target}']");
            let deadline = Instant::now() + Duration::from_secs(15);
            while b
                .find_all(Locator::Css("table.devices tbody tr"))
                .await?
                .len()
                != 1
            {
                assert!(
                    Instant::now() < deadline,
                    "the search did not narrow the list to one device"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Open the device, Deactivate, confirm.
            b.find(Locator::Css(&link)).await?.click().await?;
            assert_eq!(el(Locator::Id("status")).await?.text().await?, "active");
            el(Locator::LinkText("Deactivate")).await?.click().await?;
            el(Locator::Id("confirm")).await?;
            assert!(
                b.find(Locator::Css("h1"))
                    .await?
                    .text()
                    .await?
                    .contains("Deactivate device?")
            );
            b.find(Locator::Id("confirm")).await?.click().await?;
            // The new state, the notice and the audit row.
            assert_eq!(el(Locator::Id("status")).await?.text().await?, "inactive");
            let notice = el(Locator::Css("p.notice")).await?.text().await?;
            assert!(notice.contains("deactivated"), "{notice}");
            let audit = b.find(Locator::Css("table.audit")).await?.text().await?;
            assert!(
                audit.contains("console:") && audit.contains("deactivate"),
                "{audit}"
            );
            assert!(!b.current_url().await?.as_str().contains(&token));
            b.screenshot().await
        }
        .await;
        let _ = b.close().await;
        result.unwrap_or_else(|e| panic!("browser step failed: {e}\nserver log:\n{}", srv.log()))
    });
    drop(driver);

    // A real PNG, kept as a test artifact (and, on request, for the docs).
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let artifact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    std::fs::write(&artifact, &png).unwrap();
    println!("screenshot: {}", artifact.display());
    if std::env::var_os("DEVCERT_DOCS_SCREENSHOT").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/docs/console.png"),
            &png,
        )
        .unwrap();
    }

    // The CLI and the broker's decision agree with the browser.
    assert_eq!(
        cli_json(&t, &["device", "show", &target, "--json"])["status"],
        "inactive"
    );
    refused_inactive(reg(&t, &["auth", &chain_of(&t, "dev-0007")]));
    reg(&t, &["auth", &chain_of(&t, "dev-0006")]).ok();
    drop(srv);
}

/// `registry auth` said no because the device is inactive (exit 3).
fn refused_inactive(out: Out) {
    let out = out.code(3);
    assert!(
        out.stdout_str().contains("is inactive"),
        "{}",
        out.describe()
    );
}
