//! A throw-away PostgreSQL server per test: a copy of a cluster made once
//! by `initdb` (cached under cargo's test temp folder), started on a free
//! 127.0.0.1 port with its socket in a temp folder, stopped by its PID when
//! dropped (also on panic). As root, the server runs as the `postgres`
//! user: PostgreSQL refuses to run as root.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The bootstrap superuser of the test clusters, and its password (long
/// and odd, so a test can assert it is never echoed).
pub const PG_USER: &str = "devcert";
pub const PG_PASSWORD: &str = "Pw-q7Zx3-never-echoed";
/// A database created in the template, so every server has it.
pub const PG_DB: &str = "registry";

/// Which database a test's registry lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `mod sqlite` and `mod postgres`, each with a `#[test]` per name calling
/// `NAME(Backend)` (the caller imports `Backend`): one test body, run on
/// both registry databases.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(super::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(super::Backend::Postgres) })*
        }
    };
}

/// The registry a test of backend `b` works on: `reg.db` (in the test's
/// folder), or a database of a PostgreSQL server of its own (returned with
/// it); `None` when PostgreSQL is missing outside CI.
pub fn registry_under_test(b: Backend) -> Option<(String, Option<PgServer>)> {
    Some(match b {
        Backend::Sqlite => ("reg.db".into(), None),
        Backend::Postgres => {
            let pg = PgServer::start()?;
            (pg.url(), Some(pg))
        }
    })
}

/// The PostgreSQL programs (initdb, postgres, psql), or `None` outside CI
/// when PostgreSQL is not installed (the test prints SKIPPED).
pub fn pg_bin() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .find(|d| d.join("initdb").is_file())
            // Often a symlink (/usr/local/bin/initdb): psql and postgres sit beside its target.
            .and_then(|d| {
                Some(
                    d.join("initdb")
                        .canonicalize()
                        .ok()?
                        .parent()?
                        .to_path_buf(),
                )
            })
            .filter(|d| d.join("postgres").is_file() && d.join("psql").is_file())
    });
    let found = from_path.or_else(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").is_file())
            .collect();
        dirs.sort();
        dirs.pop()
    });
    super::required(found, "PostgreSQL", "postgresql")
}

/// uid/gid of the `postgres` user when running as root.
fn run_as() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    if id("-u")? != 0 {
        return None;
    }
    let user = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "running as root, PostgreSQL needs an unprivileged user 'postgres' (the postgresql package makes it)"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((user("-u"), user("-g")))
}

fn as_server_user(cmd: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
    }
}

/// The initdb'd cluster every server starts from (made once per build).
fn template(bin: &Path, owner: Option<(u32, u32)>) -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let done = base.join("pg-template");
        if done.join("data/PG_VERSION").exists() {
            return done;
        }
        let tmp = tempfile::Builder::new()
            .prefix("pg-template-")
            .tempdir_in(base)
            .expect("temp dir");
        chown(tmp.path(), owner);
        let pw = tmp.path().join("pw");
        std::fs::write(&pw, PG_PASSWORD).unwrap();
        chown(&pw, owner);
        let data = tmp.path().join("data");
        let out = as_server_user(&mut Command::new(bin.join("initdb")), owner)
            .args(["-D", data.to_str().unwrap(), "-U", PG_USER, "--pwfile"])
            .arg(&pw)
            .args([
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ])
            .env("LC_ALL", "C")
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&pw).unwrap();
        // The database every test uses, made once here.
        let mut server = PgServer::start_in(bin, owner, tmp.path().to_path_buf());
        server.psql("postgres", &format!("CREATE DATABASE {PG_DB}"));
        server.stop();
        drop(server);
        let dir = tmp.keep();
        // Another test process may have won the race: either copy is fine.
        if std::fs::rename(&dir, &done).is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        done
    })
}

/// A running PostgreSQL server, stopped (by PID) when dropped.
pub struct PgServer {
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    /// Holds `data/` and `sock/`; None for the template's own start.
    _dir: Option<tempfile::TempDir>,
    root: PathBuf,
    child: Option<Child>,
    pub port: u16,
    /// Settings beyond the common ones (TLS), kept across restarts.
    extra: Vec<String>,
}

impl PgServer {
    /// A fresh server with an empty `registry` database, or `None` when
    /// PostgreSQL is missing outside CI.
    pub fn start() -> Option<PgServer> {
        PgServer::start_with(|_, _| {}, &[])
    }

    /// A fresh server speaking TLS with this certificate and key (PEM),
    /// listening on 127.0.0.1 and 127.0.0.2, whose TCP clients must use TLS
    /// (`hostssl` only) and whose log says of each connection whether it
    /// is encrypted ([`PgServer::connections`]).
    pub fn start_tls(cert: &Path, key: &Path) -> Option<PgServer> {
        PgServer::start_with(
            |data, owner| {
                for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                    let to = data.join(to);
                    std::fs::copy(from, &to).expect("copy the TLS files");
                    // PostgreSQL refuses a key others can read.
                    std::fs::set_permissions(
                        &to,
                        std::os::unix::fs::PermissionsExt::from_mode(0o600),
                    )
                    .unwrap();
                    chown(&to, owner);
                }
                std::fs::write(
                    data.join("pg_hba.conf"),
                    "local all all trust\nhostssl all all 127.0.0.0/8 scram-sha-256\n",
                )
                .unwrap();
            },
            &[
                "-c",
                "ssl=on",
                "-c",
                "log_connections=on",
                "-h",
                "127.0.0.1,127.0.0.2",
            ],
        )
    }

    /// A copy of the template, changed by `setup(data_dir, owner)`, started
    /// with `extra` arguments.
    fn start_with(
        setup: impl FnOnce(&Path, Option<(u32, u32)>),
        extra: &[&str],
    ) -> Option<PgServer> {
        let bin = pg_bin()?;
        let owner = run_as();
        let template = template(&bin, owner);
        let dir = tempfile::Builder::new()
            .prefix("devcert-pg-")
            .tempdir()
            .expect("temp dir");
        chown(dir.path(), owner);
        // cp -a keeps the owner and the 0700 mode PostgreSQL insists on.
        let ok = Command::new("cp")
            .arg("-a")
            .arg(template.join("data"))
            .arg(dir.path())
            .status()
            .expect("run cp");
        assert!(ok.success(), "cannot copy the template cluster");
        setup(&dir.path().join("data"), owner);
        let mut s = PgServer::new_in(&bin, owner, dir.path().to_path_buf());
        s.extra = extra.iter().map(|a| a.to_string()).collect();
        s.restart();
        s._dir = Some(dir);
        Some(s)
    }

    fn start_in(bin: &Path, owner: Option<(u32, u32)>, root: PathBuf) -> PgServer {
        let mut s = PgServer::new_in(bin, owner, root);
        s.restart();
        s
    }

    /// A server of the cluster in `root/data`, not started yet.
    fn new_in(bin: &Path, owner: Option<(u32, u32)>, root: PathBuf) -> PgServer {
        let sock = root.join("sock");
        if !sock.exists() {
            std::fs::create_dir(&sock).unwrap();
            chown(&sock, owner);
        }
        PgServer {
            bin: bin.to_path_buf(),
            owner,
            _dir: None,
            root,
            child: None,
            port: 0,
            extra: Vec::new(),
        }
    }

    /// Starts the server (again) on a free port, its own one if it had one.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        for attempt in 0..5 {
            if self.port == 0 || attempt > 0 {
                self.port = free_port();
            }
            let mut postgres = Command::new(self.bin.join("postgres"));
            postgres
                .arg("-D")
                .arg(self.root.join("data"))
                .arg("-k")
                .arg(self.root.join("sock"))
                .args(["-p", &self.port.to_string(), "-h", "127.0.0.1"])
                // Later settings win: `extra` may listen elsewhere.
                .args(&self.extra)
                // A test server: durability is not under test, speed is welcome.
                .args([
                    "-c",
                    "fsync=off",
                    "-c",
                    "shared_buffers=16MB",
                    "-c",
                    "max_connections=50",
                ]);
            self.child = Some(spawn_logged(
                &mut postgres,
                self.owner,
                &self.root.join("server.log"),
            ));
            if self.wait_ready() {
                return;
            }
            let text = std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default();
            self.stop();
            assert!(
                text.contains("could not bind") || text.contains("could not create"),
                "postgres did not start:\n{text}"
            );
        }
        panic!("postgres did not start on 5 free ports");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        let pidfile = self.root.join("data/postmaster.pid");
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            // The pid file's last line says "ready" once connections are accepted.
            if std::fs::read_to_string(&pidfile)
                .is_ok_and(|t| t.lines().any(|l| l.trim() == "ready"))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Fast shutdown (SIGINT to the postmaster, by PID), waited for.
    pub fn stop(&mut self) {
        stop(self.child.take());
    }

    /// `postgres://devcert:PASSWORD@127.0.0.1:PORT/DB`.
    pub fn url_of(&self, db: &str) -> String {
        format!(
            "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// The URL of the test database.
    pub fn url(&self) -> String {
        self.url_of(PG_DB)
    }

    /// The URL without a password (for PGPASSWORD / .pgpass tests), and
    /// what devcert names the registry in messages.
    pub fn url_without_password(&self) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{PG_DB}", self.port)
    }

    /// psql over the Unix socket (trusted), stopping at the first error.
    pub fn psql_cmd(&self, db: &str, sql: &str) -> super::Out {
        super::Cmd::new(&self.root, self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.root.join("sock"))
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                PG_USER,
                "-d",
                db,
                "-c",
                sql,
            ])
            .run()
    }

    /// [`PgServer::psql_cmd`] that must succeed; its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.psql_cmd(db, sql);
        assert!(
            out.code == Some(0),
            "psql failed on {sql}: {}",
            out.describe()
        );
        out.stdout_str()
    }

    /// The server log's `connection authorized` lines, in order (with
    /// `log_connections`, each says whether TLS was used: `SSL enabled`).
    pub fn connections(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("server.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("connection authorized"))
            .map(str::to_string)
            .collect()
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sock")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `cmd` started as the server user, its output into `log` (made afresh).
fn spawn_logged(cmd: &mut Command, owner: Option<(u32, u32)>, log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    chown(log, owner);
    let program = cmd.get_program().to_owned();
    as_server_user(cmd, owner)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("start {program:?}: {e}"))
}

/// SIGINT by PID (fast shutdown for the postmaster, safe shutdown for
/// PgBouncer), waited for; SIGKILL if still running 30 s later.
fn stop(child: Option<Child>) {
    let Some(mut child) = child else {
        return;
    };
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// PgBouncer in front of a [`PgServer`], as docs/registry.md advises:
/// session pooling, on a free 127.0.0.1 port, its files in a temp folder,
/// stopped by PID when dropped (also on panic). Logins are checked against
/// the server's own SCRAM verifier of [`PG_USER`] (no plain password on
/// disk), so a wrong password is refused as by the server itself.
pub struct PgBouncer {
    dir: tempfile::TempDir,
    /// The server's psql, for the admin console.
    psql: PathBuf,
    child: Option<Child>,
    pub port: u16,
}

impl PgBouncer {
    /// PgBouncer in front of `server`'s test database, or `None` when
    /// PgBouncer is missing outside CI.
    pub fn start(server: &PgServer) -> Option<PgBouncer> {
        let exe = super::required(super::which_or_sbin("pgbouncer"), "PgBouncer", "pgbouncer")?;
        let owner = server.owner;
        let dir = tempfile::Builder::new()
            .prefix("devcert-pgbouncer-")
            .tempdir()
            .expect("temp dir");
        chown(dir.path(), owner);
        let verifier = server.psql(
            PG_DB,
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{PG_USER}'"),
        );
        assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
        let users = dir.path().join("users.txt");
        std::fs::write(&users, format!("\"{PG_USER}\" \"{}\"\n", verifier.trim())).unwrap();
        std::fs::set_permissions(&users, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        chown(&users, owner);
        let mut b = PgBouncer {
            psql: server.bin.join("psql"),
            dir,
            child: None,
            port: 0,
        };
        for _ in 0..5 {
            b.port = free_port();
            let ini = b.dir.path().join("pgbouncer.ini");
            std::fs::write(
                &ini,
                format!(
                    "[databases]\n{PG_DB} = host=127.0.0.1 port={} dbname={PG_DB}\n\
                     [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {}\n\
                     unix_socket_dir =\npool_mode = session\n\
                     auth_type = scram-sha-256\nauth_file = {}\n\
                     stats_users = {PG_USER}\n",
                    server.port,
                    b.port,
                    users.display()
                ),
            )
            .unwrap();
            chown(&ini, owner);
            // Without `logfile`, PgBouncer logs to stderr: into this file.
            let log = b.dir.path().join("pgbouncer.log");
            b.child = Some(spawn_logged(Command::new(&exe).arg(&ini), owner, &log));
            if b.wait_ready() {
                return Some(b);
            }
            stop(b.child.take());
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                text.contains("Address already in use"),
                "pgbouncer did not start:\n{text}"
            );
        }
        panic!("pgbouncer did not start on 5 free ports");
    }

    /// Listening, or exited (false).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `postgres://devcert:PASSWORD@127.0.0.1:PORT/registry` through PgBouncer.
    pub fn url(&self) -> String {
        self.url_with(PG_PASSWORD)
    }

    pub fn url_with(&self, password: &str) -> String {
        format!(
            "postgres://{PG_USER}:{password}@127.0.0.1:{}/{PG_DB}",
            self.port
        )
    }

    /// What devcert names the registry in messages.
    pub fn url_without_password(&self) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{PG_DB}", self.port)
    }

    /// A `SHOW ...` of PgBouncer's admin console (psql over TCP, with the
    /// password): its unaligned rows, `|`-separated, with a header line.
    pub fn show(&self, what: &str) -> String {
        let out = super::Cmd::new(self.dir.path(), &self.psql)
            .env("PGPASSWORD", PG_PASSWORD)
            .args(["-X", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .args([
                &self.port.to_string(),
                "-U",
                PG_USER,
                "-d",
                "pgbouncer",
                "-c",
                &format!("SHOW {what}"),
            ])
            .run();
        assert!(out.code == Some(0), "SHOW {what}: {}", out.describe());
        out.stdout_str()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        stop(self.child.take());
    }
}

/// A port nothing listens on right now (the server retries on a clash).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}
