use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use devcert::digest::Digest;
use devcert::error::{Error, Result};
use devcert::input::{load_certificate, load_certificates};
use devcert::registry::auth::{Decision, authorize, authorize_dry_run};
use devcert::registry::crl::{Crl, build_crl, is_own_crl_file, same_issuer_twice, write_crls};
use devcert::registry::{
    Added, DeviceQuery, DeviceRecord, DeviceRef, Registry, RevokeReason, Status, normalize_serial,
};

use super::{PassArgs, Pkcs11Args, load_ca, print_json, read_input, warn_all};

/// Who the audit trail names for changes made with this command.
const CLI_ACTOR: &str = "cli";

/// What a registry change did, on stderr (stdout carries only the product);
/// `--quiet` silences it.
macro_rules! note {
    ($($arg:tt)*) => {
        if !super::quiet() {
            eprintln!($($arg)*);
        }
    };
}

/// Device-certificate registry: CAs, devices, broker decisions and CRLs
#[derive(Args)]
#[command(
    after_help = "Examples:\n  devcert registry ca add CA.crt\n  devcert issue --cn dev-1 --ca CA.crt --ca-key CA.key --registry devcert.db --out-dir dev-1\n  devcert registry device list --ca-serial 5A3F... --status inactive --json\n  devcert registry device deactivate --cn sensor-0042\n  devcert registry device revoke fleet/sensor-0042/client.crt\n  devcert registry crl --ca CA.crt --ca-key CA.key -o ca.crl   # then reload the broker"
)]
pub struct RegistryArgs {
    /// Registry: a SQLite file (created by the first command that writes to
    /// it) or a postgres://USER@HOST/DBNAME URL (password from PGPASSWORD or
    /// ~/.pgpass)
    #[arg(
        long,
        global = true,
        env = "DEVCERT_REGISTRY",
        // The variable may hold a URL with a password: never in --help.
        hide_env_values = true,
        default_value = "devcert.db",
        value_name = "PATH|URL"
    )]
    db: String,
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Register and list CAs
    #[command(
        subcommand,
        after_help = "Examples:\n  devcert registry ca add CA.crt\n  devcert registry ca list --json"
    )]
    Ca(CaCommand),
    /// Register, find, activate, deactivate, revoke and delete device certificates
    #[command(
        subcommand,
        after_help = "Examples:\n  devcert registry device list --status inactive\n  devcert registry device deactivate 4B1C...\n  devcert registry device revoke --cn sensor-0042"
    )]
    Device(DeviceCommand),
    /// Decide as the broker does on connect (exit 0 accepted, 3 refused)
    #[command(after_help = "Examples:\n  devcert registry auth client-test/client_chain.crt")]
    Auth(AuthArgs),
    /// Write the CRL of each CA's inactive (certificateHold) and revoked devices into one file
    #[command(
        after_help = "Examples:\n  devcert registry crl --ca CA.crt --ca-key CA.key -o ca.crl   # then reload the broker\n  devcert registry crl --ca A.crt --ca-key A.key --ca B.crt --ca-key B.key -o fleet.crl"
    )]
    Crl(CrlArgs),
    /// Write the whole registry as JSON Lines (backup, or a move to another database)
    #[command(
        after_help = "Examples:\n  devcert registry --db devcert.db export -o registry.jsonl\n  devcert registry --db postgres://devcert@db.example/devcert import registry.jsonl"
    )]
    Export {
        #[command(flatten)]
        out: super::OutArgs,
    },
    /// Load a registry export, all or nothing (into an empty registry unless --merge)
    #[command(
        after_help = "Examples:\n  devcert registry --db postgres://devcert@db.example/devcert import registry.jsonl\n  devcert registry --db devcert.db import --merge other.jsonl"
    )]
    Import {
        /// The export file (`-`: standard input)
        #[arg(value_name = "FILE")]
        file: String,
        /// Add to a registry that is not empty (what is already there with the same data is skipped)
        #[arg(long)]
        merge: bool,
    },
    /// Serve the web console and the JSON API over this registry
    #[command(
        after_help = "Examples:\n  devcert registry serve --db devcert.db            # http://127.0.0.1:8080, token in devcert.db.token\n  devcert registry serve --read-only --listen 127.0.0.1:9000\n  curl -H \"Authorization: Bearer $(head -1 devcert.db.token)\" -X POST http://127.0.0.1:8080/api/devices/4B1C.../deactivate"
    )]
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed)
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    listen: std::net::SocketAddr,
    /// File whose first line is the token for changes (default: DB.token, made 0600 when missing; required for PostgreSQL)
    #[arg(long, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Refuse every change (403); reading stays open
    #[arg(long)]
    read_only: bool,
}

#[derive(Subcommand)]
enum CaCommand {
    /// Register a CA certificate
    #[command(after_help = "Examples:\n  devcert registry ca add CA.crt")]
    Add {
        #[arg(value_name = "CA.crt")]
        file: String,
    },
    /// List registered CAs with their issuer's device counts
    #[command(after_help = "Examples:\n  devcert registry ca list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Write the registered CA certificates as one PEM bundle (a broker's cafile)
    #[command(after_help = "Examples:\n  devcert registry ca export -o cafile.pem")]
    Export {
        #[command(flatten)]
        out: super::OutArgs,
    },
}

/// A device, named by serial, certificate file or common name.
#[derive(Args)]
struct DeviceName {
    /// The device's serial (hex) or the path of its certificate file
    #[arg(
        value_name = "SN|CERT",
        required_unless_present = "cn",
        conflicts_with = "cn"
    )]
    device: Option<String>,
    /// The device whose subject has this common name (exactly one must match)
    #[arg(long, value_name = "CN")]
    cn: Option<String>,
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Register a device certificate (its CA must be registered)
    #[command(after_help = "Examples:\n  devcert registry device add client-test/client.crt")]
    Add {
        #[arg(value_name = "CERT")]
        file: String,
    },
    /// List devices, filtered
    #[command(
        after_help = "Examples:\n  devcert registry device list\n  devcert registry device list --serial 4B1C...   # one device\n  devcert registry device list --ca-serial 5A3F... --status active --json"
    )]
    List(ListArgs),
    /// Show one device
    #[command(
        after_help = "Examples:\n  devcert registry device show 4B1C... --json\n  devcert registry device show --cn sensor-0042"
    )]
    Show {
        #[command(flatten)]
        name: DeviceName,
        #[arg(long)]
        json: bool,
    },
    /// Let a held device connect again (drops it from the next CRL); a revoked one stays revoked
    #[command(
        after_help = "Examples:\n  devcert registry device activate 4B1C...\n  devcert registry crl --ca CA.crt --ca-key CA.key -o ca.crl"
    )]
    Activate {
        #[command(flatten)]
        name: DeviceName,
    },
    /// Keep a device off the broker until activated (certificateHold in the next CRL)
    #[command(
        after_help = "Examples:\n  devcert registry device deactivate 4B1C...\n  devcert registry crl --ca CA.crt --ca-key CA.key -o ca.crl"
    )]
    Deactivate {
        #[command(flatten)]
        name: DeviceName,
    },
    /// Revoke a device for good (lost, stolen, retired): in every later CRL, refused by auth forever
    #[command(
        after_help = "Examples:\n  devcert registry device revoke --cn sensor-0042\n  devcert registry device revoke fleet/sensor-0042/client.crt --reason cessationOfOperation\n  devcert registry crl --ca CA.crt --ca-key CA.key -o ca.crl"
    )]
    Revoke {
        #[command(flatten)]
        name: DeviceName,
        /// The CRL's reasonCode: keyCompromise, cessationOfOperation, superseded, affiliationChanged or unspecified
        #[arg(long, default_value = "keyCompromise", value_parser = |s: &str| s.parse::<RevokeReason>())]
        reason: RevokeReason,
    },
    /// Forget a device (`auth` registers it again on its next connection, unless revoked)
    #[command(
        after_help = "Examples:\n  devcert registry device delete 4B1C...\n  devcert registry device delete --cn old-sensor --force   # an inactive one"
    )]
    Delete {
        #[command(flatten)]
        name: DeviceName,
        /// Delete an inactive device too (it leaves the CRL; `revoke` keeps it off for good)
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
struct ListArgs {
    /// Only the device with this serial
    #[arg(long, value_parser = normalize_serial)]
    serial: Option<String>,
    /// Only devices of the CA with this serial
    #[arg(long, value_parser = normalize_serial)]
    ca_serial: Option<String>,
    /// Only active, inactive or revoked devices
    #[arg(long, value_parser = |s: &str| s.parse::<Status>())]
    status: Option<Status>,
    /// Only devices whose (most specific) common name is exactly CN
    #[arg(long, value_name = "CN")]
    cn: Option<String>,
    /// Only devices whose subject contains TEXT (ASCII case ignored)
    #[arg(long, value_name = "TEXT")]
    subject_contains: Option<String>,
    /// At most N devices
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AuthArgs {
    /// The device certificate or chain (leaf first) the device presents
    #[arg(value_name = "CHAIN_OR_CERT")]
    file: String,
    /// Print {"ok", "serial", "registered", "reason", "dry_run"} instead of ACCEPTED/REFUSED
    #[arg(long)]
    json: bool,
    /// Decide without writing anything (an unknown device is not registered)
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
struct CrlArgs {
    /// A CA certificate (must be registered); repeat with --ca-key for one file holding each CA's CRL
    #[arg(long, value_name = "FILE", required = true)]
    ca: Vec<String>,
    /// The private key of the --ca at the same position: a file, or a pkcs11: URI (docs/hsm.md)
    #[arg(long, value_name = "FILE|URI", required = true)]
    ca_key: Vec<String>,
    /// Days until nextUpdate: refresh the CRL before then, or brokers refuse every device
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Write DER instead of PEM
    #[arg(long)]
    der: bool,
    #[command(flatten)]
    pass: PassArgs,
    #[command(flatten)]
    pkcs11: Pkcs11Args,
    #[command(flatten)]
    out: super::OutArgs,
}

impl RegistryArgs {
    /// `registry serve`, which handles SIGTERM/SIGINT itself.
    pub fn serves(&self) -> bool {
        matches!(self.command, RegistryCommand::Serve(_))
    }
}

pub fn run(a: RegistryArgs) -> Result<ExitCode> {
    let db = a.db.as_str();
    match a.command {
        RegistryCommand::Ca(CaCommand::Add { file }) => {
            let ca = load_certificate(&read_input(&file)?, "cannot read CA certificate")?;
            let mut reg = Registry::open(db)?;
            let added = reg.add_ca(&ca, CLI_ACTOR)?;
            let tbs = ca.cert.tbs_certificate();
            let serial = devcert::sign::serial_hex(tbs.serial_number());
            match added {
                Added::New => note!("registered CA {serial}"),
                Added::AlreadyRegistered => note!("CA {serial} was already registered"),
            }
            if let Some(other) = reg.same_issuer_as(&ca)? {
                note!(
                    "same issuer (name and key) as registered CA {other}: they share devices and CRLs"
                );
            } else if let Some(other) =
                reg.same_name_other_key(tbs.subject(), Some(tbs.subject_public_key_info()))?
            {
                note!(
                    "same name as registered CA {other}, different key: a separate issuer, with its own devices and CRL"
                );
            }
        }
        RegistryCommand::Ca(CaCommand::List { json }) => {
            let cas = match existing(db)? {
                Some(reg) => reg.cas()?,
                None => Vec::new(),
            };
            if json {
                print_json(&cas)?;
            } else {
                let mut out = String::new();
                for c in &cas {
                    out.push_str(&format!(
                        "{:<40}  {:>8} devices  until {}  {}\n",
                        c.serial, c.devices, c.not_after, c.subject
                    ));
                }
                devcert::output::write_stdout(out.as_bytes())?;
            }
        }
        RegistryCommand::Ca(CaCommand::Export { out }) => {
            let bundle = Registry::open_existing(db)?.ca_bundle()?;
            if bundle.is_empty() {
                return Err(Error::refused("nothing to export", "no CA is registered").file(db));
            }
            devcert::output::write_file(
                &out.out,
                bundle.as_bytes(),
                devcert::output::Mode::Public,
                out.force,
            )?;
        }
        RegistryCommand::Device(cmd) => device(db, cmd)?,
        RegistryCommand::Auth(args) => {
            let chain = load_certificates(&read_input(&args.file)?, "cannot read certificate")?;
            let mut reg = Registry::open_existing(db)?;
            let decision = if args.dry_run {
                authorize_dry_run(&mut reg, &chain, SystemTime::now())?
            } else {
                authorize(&mut reg, &chain, SystemTime::now())?
            };
            if args.json {
                let (serial, registered, reason) = match &decision {
                    Decision::Accepted { serial, registered } => (Some(serial), *registered, None),
                    Decision::Refused(why) => (None, false, Some(why)),
                };
                print_json(&serde_json::json!({
                    "ok": reason.is_none(), "serial": serial, "registered": registered, "reason": reason,
                    "dry_run": args.dry_run,
                }))?;
            } else {
                let line = match &decision {
                    Decision::Accepted {
                        serial,
                        registered: true,
                    } if args.dry_run => format!(
                        "ACCEPTED: device {serial} would be registered as active (dry run: nothing written)"
                    ),
                    d => d.to_string(),
                };
                devcert::output::write_stdout(format!("{line}\n").as_bytes())?;
            }
            if let Decision::Refused(_) = decision {
                return Ok(ExitCode::from(3));
            }
        }
        RegistryCommand::Crl(args) => crl(db, args)?,
        RegistryCommand::Serve(args) => devcert::server::serve(devcert::server::Config {
            db: db.to_string(),
            listen: args.listen,
            token_file: args.token_file,
            read_only: args.read_only,
        })?,
        RegistryCommand::Export { out } => export(db, &out)?,
        RegistryCommand::Import { file, merge } => {
            let mut reg = Registry::open(db)?;
            let counts = if file == "-" {
                reg.import(&mut std::io::stdin().lock(), "<stdin>", merge)?
            } else {
                let f = std::fs::File::open(&file)
                    .map_err(|e| Error::io("cannot read registry export", &file, &e))?;
                reg.import(&mut std::io::BufReader::new(f), &file, merge)?
            };
            note!(
                "imported {} CA(s) and {} device(s) into {} ({} revocation(s), {} audit record(s)){}",
                counts.cas,
                counts.devices,
                reg.label(),
                counts.revocations,
                counts.audit,
                if counts.skipped > 0 {
                    format!(" ({} already there, skipped)", counts.skipped)
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The registry, or `None` (with a warning, for a mistyped `--db`) when
/// there is none: a listing of it is empty, and creates nothing.
fn existing(db: &str) -> Result<Option<Registry>> {
    let reg = Registry::open_if_exists(db)?;
    if reg.is_none() {
        super::warn(format!(
            "registry {} does not exist: nothing is registered",
            devcert::registry::store::label(db)
        ));
    }
    Ok(reg)
}

/// `registry export`: to stdout, or atomically to a file (0644: an export
/// holds certificates and states, no keys).
fn export(db: &str, out: &super::OutArgs) -> Result<()> {
    devcert::output::refuse_existing(&out.out, out.force)?;
    let mut reg = Registry::open_existing(db)?;
    let counts = if out.out == "-" {
        let mut stdout = BufWriter::new(std::io::stdout().lock());
        let counts = reg.export(&mut stdout, "<stdout>")?;
        stdout
            .flush()
            .map_err(|e| Error::io("cannot write export", "<stdout>", &e))?;
        counts
    } else {
        let path = std::path::Path::new(&out.out);
        let staged = devcert::output::stage(path, b"", devcert::output::Mode::Public)?;
        let io = |e: std::io::Error| Error::io("cannot write export", &out.out, &e);
        let mut file = BufWriter::new(staged.writer().map_err(io)?);
        let counts = reg.export(&mut file, &out.out)?;
        file.flush().map_err(io)?;
        drop(file);
        devcert::output::commit(staged, out.force)?;
        counts
    };
    if out.out != "-" {
        note!(
            "exported {} CA(s) and {} device(s) to {} ({} revocation(s), {} audit record(s))",
            counts.cas,
            counts.devices,
            out.out,
            counts.revocations,
            counts.audit
        );
    }
    Ok(())
}

fn device(db: &str, cmd: DeviceCommand) -> Result<()> {
    let reg = if let DeviceCommand::List(_) = &cmd {
        existing(db)?
    } else {
        // Only `ca add` creates a database: a device needs a registered CA.
        Some(Registry::open_existing(db)?)
    };
    let Some(mut reg) = reg else {
        let empty: [DeviceRecord; 0] = [];
        let json = matches!(&cmd, DeviceCommand::List(l) if l.json);
        return if json { print_json(&empty) } else { Ok(()) };
    };
    match cmd {
        DeviceCommand::Add { file } => {
            let cert = load_certificate(&read_input(&file)?, "cannot read certificate")?;
            let serial = devcert::sign::serial_hex(cert.cert.tbs_certificate().serial_number());
            match reg.add_device(&cert, CLI_ACTOR)? {
                Added::New => note!("registered device {serial}"),
                Added::AlreadyRegistered => note!("device {serial} was already registered"),
            }
        }
        DeviceCommand::List(l) => {
            let q = DeviceQuery {
                serial: l.serial,
                ca_serial: l.ca_serial,
                status: l.status,
                cn: l.cn,
                subject_contains: l.subject_contains,
                limit: l.limit,
                after: None,
            };
            list(&reg, &q, l.json)?;
        }
        DeviceCommand::Show { name, json } => {
            let d = reg.device(&reg.resolve_device(&name.to_ref()?)?)?;
            if json {
                print_json(&d)?;
            } else {
                let mut text = format!(
                    "serial:        {}\nsubject:       {}\nstatus:        {}\nCA serial:     {}\nnot before:    {}\nnot after:     {}\nregistered at: {}\nfirst connect: {}\nlast connect:  {}\n",
                    d.serial,
                    d.subject,
                    d.status.as_str(),
                    d.ca_serial,
                    d.not_before,
                    d.not_after,
                    d.registered_at,
                    d.first_connected_at.as_deref().unwrap_or("never"),
                    d.last_connected_at.as_deref().unwrap_or("never"),
                );
                if let (Some(at), Some(reason)) = (&d.revoked_at, &d.revocation_reason) {
                    text.push_str(&format!("revoked at:    {at} ({reason})\n"));
                }
                devcert::output::write_stdout(text.as_bytes())?;
            }
        }
        DeviceCommand::Activate { name } => {
            let serial = reg.resolve_device(&name.to_ref()?)?;
            reg.set_status(&serial, Status::Active, CLI_ACTOR)?;
            note!(
                "device {serial} activated (the broker plugin admits it at its next connect; CRL mode: write a new CRL and reload the broker)"
            );
        }
        DeviceCommand::Deactivate { name } => {
            let serial = reg.resolve_device(&name.to_ref()?)?;
            reg.set_status(&serial, Status::Inactive, CLI_ACTOR)?;
            note!(
                "device {serial} deactivated (the broker plugin disconnects it; CRL mode: write a new CRL and reload the broker)"
            );
        }
        DeviceCommand::Revoke { name, reason } => {
            let device = name.to_ref()?;
            // A stolen device that never connected is named by its
            // certificate: register it, so it can be revoked.
            if let DeviceRef::Cert(cert) = &device
                && reg.add_device(cert, CLI_ACTOR)? == Added::New
            {
                note!(
                    "registered device {}",
                    devcert::sign::serial_hex(cert.cert.tbs_certificate().serial_number())
                );
            }
            let serial = reg.resolve_device(&device)?;
            if reg.revoke_device(&serial, reason, CLI_ACTOR)? {
                note!(
                    "device {serial} revoked ({}), for good (the broker plugin disconnects it; CRL mode: write a new CRL and reload the broker)",
                    reason.as_str()
                );
            } else {
                note!("device {serial} was already revoked (its first revocation is kept)");
            }
        }
        DeviceCommand::Delete { name, force } => {
            let serial = reg.resolve_device(&name.to_ref()?)?;
            match reg.delete_device(&serial, force, CLI_ACTOR)? {
                Status::Revoked => note!(
                    "device {serial} deleted; its revocation is kept (the CRL keeps listing it, auth refuses it)"
                ),
                _ => note!("device {serial} deleted"),
            }
        }
    }
    Ok(())
}

impl DeviceName {
    /// A serial, or else an existing file (its certificate), or else the
    /// common name given with `--cn`.
    fn to_ref(&self) -> Result<DeviceRef> {
        if let Some(cn) = &self.cn {
            return Ok(DeviceRef::Cn(cn.clone()));
        }
        let arg = self.device.as_deref().unwrap_or_default();
        let is_file = std::fs::metadata(arg).is_ok();
        match (normalize_serial(arg), is_file) {
            (Ok(serial), false) => Ok(DeviceRef::Serial(serial)),
            (Err(why), false) if !arg.contains(['/', '.']) => super::usage(format!(
                "{why}: name a device by its serial, its certificate file or --cn CN"
            )),
            // A file, or a path: read as a certificate (errors name the file).
            _ => {
                let cert = load_certificate(&read_input(arg)?, "cannot read device certificate")?;
                Ok(DeviceRef::Cert(Box::new(cert)))
            }
        }
    }
}

/// Streams the matching devices: a JSON array, or one line per device.
fn list(reg: &Registry, q: &DeviceQuery, json: bool) -> Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut count = 0u64;
    let mut io_result = Ok(());
    reg.list_devices(q, &mut |d: DeviceRecord| {
        if io_result.is_ok() {
            io_result = if json {
                let sep = if count == 0 { "[\n" } else { ",\n" };
                let obj = devcert::escape::json(serde_json::to_string(&d).unwrap_or_default());
                write!(out, "{sep}{obj}")
            } else {
                writeln!(
                    out,
                    "{:<40}  {:<8}  until {}  CA {}  {}",
                    d.serial,
                    d.status.as_str(),
                    d.not_after,
                    d.ca_serial,
                    devcert::escape::text(&d.subject)
                )
            };
        }
        count += 1;
        Ok(())
    })?;
    if json {
        let end: &[u8] = if count == 0 { b"[]\n" } else { b"\n]\n" };
        io_result = io_result.and_then(|()| out.write_all(end));
    }
    match io_result.and_then(|()| out.flush()) {
        // `| head` closing the pipe is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("cannot write output", "<stdout>", &e))
        }
        _ => Ok(()),
    }
}

fn crl(db: &str, a: CrlArgs) -> Result<()> {
    if a.ca.len() != a.ca_key.len() {
        super::usage(format!(
            "{} --ca but {} --ca-key: give each CA certificate with its key",
            a.ca.len(),
            a.ca_key.len()
        ));
    }
    if a.der && a.ca.len() > 1 {
        super::usage("--der writes one CRL: give one --ca, or write PEM".into());
    }
    let cas =
        a.ca.iter()
            .zip(&a.ca_key)
            .map(|(ca, key)| {
                let writes = super::files_of(&[&a.out.out]);
                load_ca(ca, key, &a.pass, &a.pkcs11, Digest::Sha256, &writes)
            })
            .collect::<Result<Vec<_>>>()?;
    if let Some(why) = same_issuer_twice(&cas) {
        super::usage(why);
    }
    // The file this command wrote for these CAs is replaced without --force.
    let force = a.out.force || (a.out.out != "-" && is_own_crl_file(&a.out.out, &cas));
    // Refuse an existing output before a CRL number is used up.
    devcert::output::refuse_existing(&a.out.out, force)?;
    let mut reg = Registry::open_existing(db)?;
    let crls = cas
        .iter()
        .map(|ca| build_crl(&mut reg, ca, a.days).map(|crl| (crl, ca)))
        .collect::<Result<Vec<(Crl, _)>>>()?;
    for (crl, _) in &crls {
        warn_all(&crl.warnings);
    }
    write_crls(&crls, &a.out.out, a.der, force)?;
    if a.out.out != "-" {
        for (crl, ca) in &crls {
            note!(
                "crl: CRL number {} of {} with {} held and {} revoked device(s), valid {} days, written to {}",
                crl.number,
                ca.cert.label,
                crl.held(),
                crl.revoked(),
                a.days,
                a.out.out
            );
        }
    }
    Ok(())
}
