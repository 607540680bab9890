//! A `postgres://` registry URL: parsed once into settings, credentials
//! found the way libpq finds them (URL, `PGPASSWORD`, `~/.pgpass`), and a
//! label for messages that never shows the password.

use std::fmt;
use std::time::Duration;

/// How long a connection attempt may take before the command fails
/// (libpq waits forever by default; a broker or a CLI must not).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, unverified (libpq's default).
    Prefer,
    /// TLS, unverified unless a root certificate is given (as libpq).
    Require,
    /// TLS, the server's chain verified against the root certificates.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" | "allow" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(format!(
                    "sslmode '{s}' is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

/// One server to try: a TCP host or a Unix socket folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub port: u16,
}

impl Host {
    pub fn is_socket(&self) -> bool {
        self.name.starts_with('/')
    }
}

/// The connection settings of a registry URL. `Debug` and [`Settings::label`]
/// never show the password.
#[derive(Clone)]
pub struct Settings {
    pub hosts: Vec<Host>,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub sslmode: SslMode,
    /// PEM file of the roots that verify the server (`sslrootcert`).
    pub sslrootcert: Option<String>,
    pub connect_timeout: Duration,
    /// `read-write`: skip standbys when several hosts are listed.
    pub read_write: bool,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("hosts", &self.hosts)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_write", &self.read_write)
            .finish()
    }
}

/// Whether a registry value names a PostgreSQL database (else a SQLite file).
pub fn is_url(value: &str) -> bool {
    let lower = value.get(..13).unwrap_or(value).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// Where the password came from the environment (tests pass their own).
pub struct Env {
    pub pgpassword: Option<String>,
    /// The contents of the password file, if readable and private.
    pub pgpass: Option<String>,
    /// A password file ignored for its permissions (named when the server
    /// then refuses the login).
    pub pgpass_ignored: Option<String>,
    pub default_user: Option<String>,
}

impl Env {
    /// The process's environment, as libpq reads it. A `.pgpass` readable
    /// by group or others is ignored, as libpq does.
    pub fn from_process() -> Env {
        use std::os::unix::fs::PermissionsExt as _;
        let path = std::env::var_os("PGPASSFILE")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")));
        let mut env = Env {
            pgpassword: std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()),
            pgpass: None,
            pgpass_ignored: None,
            default_user: std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .ok(),
        };
        if let Some(p) = path
            && let Ok(meta) = std::fs::metadata(&p)
        {
            if meta.permissions().mode() & 0o077 != 0 {
                env.pgpass_ignored = Some(p.display().to_string());
            } else {
                env.pgpass = std::fs::read_to_string(&p).ok();
            }
        }
        env
    }
}

impl Settings {
    /// Parses `postgres://[USER[:PASS]@][HOST[:PORT][,HOST[:PORT]...]]/[DBNAME][?PARAM=VALUE&...]`.
    /// Errors never quote the URL (it may hold a password).
    pub fn parse(url: &str, env: &Env) -> Result<Settings, String> {
        let rest = url
            .split_once("://")
            .map(|(_, r)| r)
            .ok_or("not a postgres:// URL")?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        // The last '@' ends the credentials: a password may hold '@' only
        // percent-encoded, but be lenient.
        let (userinfo, hostlist) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, mut password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((name, pass)) => (decode(name, "user name")?, Some(decode(pass, "password")?)),
                None => (decode(u, "user name")?, None),
            },
            None => (String::new(), None),
        };
        let mut hosts = Vec::new();
        if !hostlist.is_empty() {
            for h in hostlist.split(',') {
                hosts.push(parse_host(h)?);
            }
        }
        if path.contains('/') {
            return Err("the database name may not contain '/' (percent-encode it)".into());
        }
        let mut dbname = decode(path, "database name")?;
        let mut s = Settings {
            hosts,
            user,
            password: None,
            dbname: String::new(),
            sslmode: SslMode::Prefer,
            sslrootcert: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_write: false,
        };
        let mut socket_dir = None;
        let mut port = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode(v, k)?;
            match k {
                "sslmode" => s.sslmode = SslMode::parse(&v)?,
                "sslrootcert" => s.sslrootcert = Some(v),
                "connect_timeout" => {
                    let secs: u64 = v
                        .parse()
                        .ok()
                        .filter(|&n| (1..=3600).contains(&n))
                        .ok_or("connect_timeout must be 1 to 3600 seconds")?;
                    s.connect_timeout = Duration::from_secs(secs);
                }
                "host" => socket_dir = Some(v),
                "port" => port = Some(parse_port(&v)?),
                "user" => s.user = v,
                "dbname" => dbname = v,
                "password" => password = Some(v),
                "target_session_attrs" => match v.as_str() {
                    "any" => s.read_write = false,
                    "read-write" => s.read_write = true,
                    _ => return Err("target_session_attrs must be any or read-write".into()),
                },
                "application_name" => {}
                _ => return Err(format!("unknown URL parameter '{k}'")),
            }
        }
        if let Some(dir) = socket_dir {
            if !s.hosts.is_empty() {
                return Err("give the host in the URL or as ?host=, not both".into());
            }
            s.hosts.push(Host {
                name: dir,
                port: 5432,
            });
        }
        if s.hosts.is_empty() {
            // libpq's default: the local server's socket.
            s.hosts.push(Host {
                name: "/var/run/postgresql".into(),
                port: 5432,
            });
        }
        if let Some(p) = port {
            for h in &mut s.hosts {
                h.port = p;
            }
        }
        if s.user.is_empty() {
            s.user = env
                .default_user
                .clone()
                .ok_or("no user name in the URL (and neither PGUSER nor USER is set)")?;
        }
        s.dbname = if dbname.is_empty() {
            s.user.clone()
        } else {
            dbname
        };
        if matches!(s.sslmode, SslMode::Disable | SslMode::Prefer) && s.sslrootcert.is_some() {
            // Harmless in libpq; here it would silently verify nothing.
            return Err("sslrootcert needs sslmode=verify-ca or verify-full".into());
        }
        s.password = password.or_else(|| env.pgpassword.clone()).or_else(|| {
            let pgpass = env.pgpass.as_deref()?;
            s.hosts
                .iter()
                .find_map(|h| pgpass_lookup(pgpass, h, &s.dbname, &s.user))
        });
        Ok(s)
    }

    /// The URL without its password (and without parameters): what
    /// messages name as the registry.
    pub fn label(&self) -> String {
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .map(|h| {
                if h.is_socket() {
                    String::new()
                } else if h.name.contains(':') {
                    format!("[{}]:{}", h.name, h.port)
                } else {
                    format!("{}:{}", h.name, h.port)
                }
            })
            .collect();
        let socket = self
            .hosts
            .iter()
            .find(|h| h.is_socket())
            .map(|h| format!("?host={}", h.name))
            .unwrap_or_default();
        format!(
            "postgres://{}@{}/{}{}",
            self.user,
            hosts.join(","),
            self.dbname,
            socket
        )
    }
}

/// A URL with its password replaced, for messages about a URL that did
/// not even parse.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, q)) => {
            let q: Vec<String> = q
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("port '{s}' is not a number from 1 to 65535"))
}

fn parse_host(h: &str) -> Result<Host, String> {
    // [v6]:port, host:port, host
    let (name, port) = if let Some(v6) = h.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("unclosed '[' in the host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("unexpected text after ']' in the host".into()),
        };
        (addr.to_string(), port)
    } else {
        match h.split_once(':') {
            Some((n, p)) => (decode(n, "host")?, Some(p)),
            None => (decode(h, "host")?, None),
        }
    };
    if name.is_empty() {
        return Err("an empty host in the host list".into());
    }
    Ok(Host {
        name,
        port: port.map(parse_port).transpose()?.unwrap_or(5432),
    })
}

/// Percent-decoding; `what` names the part in the error (never its value).
fn decode(s: &str, what: &str) -> Result<String, String> {
    let bytes = crate::input::percent_decode(s)
        .ok_or_else(|| format!("bad percent-encoding in the {what}"))?;
    String::from_utf8(bytes).map_err(|_| format!("the {what} is not UTF-8"))
}

/// The password of the first matching `~/.pgpass` line
/// (`host:port:database:user:password`, `*` matches anything, `\` escapes).
/// As libpq, a socket connection matches the host name `localhost`.
fn pgpass_lookup(text: &str, host: &Host, dbname: &str, user: &str) -> Option<String> {
    let host_name = if host.is_socket() {
        "localhost"
    } else {
        &host.name
    };
    let port = host.port.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let f = pgpass_fields(line)?;
            let ok = |pat: &str, v: &str| pat == "*" || pat == v;
            (ok(&f[0], host_name) && ok(&f[1], &port) && ok(&f[2], dbname) && ok(&f[3], user))
                .then(|| f[4].clone())
        })
}

fn pgpass_fields(line: &str) -> Option<[String; 5]> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next().unwrap_or('\\')),
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => fields.last_mut()?.push(c),
        }
    }
    fields.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            pgpassword: None,
            pgpass: None,
            pgpass_ignored: None,
            default_user: Some("me".into()),
        }
    }

    #[test]
    fn full_url() {
        let s = Settings::parse(
            "postgresql://dev%40ops:s3cr%3At@db.example:6543/fleet?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3",
            &env(),
        )
        .unwrap();
        assert_eq!(s.user, "dev@ops");
        assert_eq!(s.password.as_deref(), Some("s3cr:t"));
        assert_eq!(
            s.hosts,
            vec![Host {
                name: "db.example".into(),
                port: 6543
            }]
        );
        assert_eq!(s.dbname, "fleet");
        assert_eq!(s.sslmode, SslMode::VerifyFull);
        assert_eq!(s.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert_eq!(s.label(), "postgres://dev@ops@db.example:6543/fleet");
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cr"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn defaults_and_sockets() {
        let s = Settings::parse("postgres:///reg", &env()).unwrap();
        assert_eq!(s.user, "me");
        assert_eq!(s.hosts[0].name, "/var/run/postgresql");
        assert_eq!(s.sslmode, SslMode::Prefer);
        assert_eq!(s.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        let s = Settings::parse("postgres://u@/reg?host=/tmp/pg&port=5433", &env()).unwrap();
        assert_eq!(
            s.hosts,
            vec![Host {
                name: "/tmp/pg".into(),
                port: 5433
            }]
        );
        assert_eq!(s.label(), "postgres://u@/reg?host=/tmp/pg");
        let s = Settings::parse(
            "postgres://u@h1,h2:5433,[::1]:7/?target_session_attrs=read-write",
            &env(),
        )
        .unwrap();
        assert_eq!(s.hosts.len(), 3);
        assert_eq!(s.hosts[1].port, 5433);
        assert_eq!(
            s.hosts[2],
            Host {
                name: "::1".into(),
                port: 7
            }
        );
        assert_eq!(s.dbname, "u", "the database defaults to the user name");
        assert!(s.read_write);
    }

    #[test]
    fn password_sources_in_libpq_order() {
        let mut e = env();
        e.pgpass = Some(
            "# comment\nother:*:*:*:nope\nlocalhost:5432:*:u:sock\\:pw\n127.0.0.1:*:reg:u:filepw\n"
                .into(),
        );
        let s = Settings::parse("postgres://u@127.0.0.1/reg", &e).unwrap();
        assert_eq!(s.password.as_deref(), Some("filepw"));
        let s = Settings::parse("postgres://u@/reg?host=/run/pg", &e).unwrap();
        assert_eq!(s.password.as_deref(), Some("sock:pw"));
        e.pgpassword = Some("envpw".into());
        let s = Settings::parse("postgres://u@127.0.0.1/reg", &e).unwrap();
        assert_eq!(s.password.as_deref(), Some("envpw"));
        let s = Settings::parse("postgres://u:urlpw@127.0.0.1/reg", &e).unwrap();
        assert_eq!(s.password.as_deref(), Some("urlpw"));
        let s = Settings::parse(
            "postgres://x@127.0.0.1/reg",
            &Env {
                pgpassword: None,
                ..e
            },
        )
        .unwrap();
        assert_eq!(s.password, None);
    }

    #[test]
    fn bad_urls_are_named_without_the_password() {
        for (url, needle) in [
            ("postgres://u:pw@h:99999/db", "port"),
            ("postgres://u:pw@h/db?sslmode=maybe", "sslmode"),
            ("postgres://u:pw@h/db?foo=1", "unknown URL parameter 'foo'"),
            ("postgres://u:p%zzw@h/db", "password"),
            ("postgres://u:pw@h/db?connect_timeout=0", "connect_timeout"),
            ("postgres://u:pw@h/a/b", "database name"),
            ("postgres://u:pw@h/db?sslrootcert=ca.pem", "sslrootcert"),
            ("postgres://u:pw@[::1/db", "'['"),
        ] {
            let e = Settings::parse(url, &env()).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
            assert!(!e.contains("pw"), "{url}: the password leaked: {e}");
        }
    }

    #[test]
    fn redaction_and_detection() {
        assert_eq!(
            redact("postgres://u:secret@h:5/db?password=x&a=b"),
            "postgres://u:***@h:5/db?password=***&a=b"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert!(is_url("POSTGRESQL://x"));
        assert!(is_url("postgres://x"));
        assert!(!is_url("postgres.db"));
        assert!(!is_url("./postgres://x"));
    }
}
