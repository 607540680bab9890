use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use devcert::digest::Digest;
use devcert::error::{Error, Result};
use devcert::input::{load_certificate, load_certificates};
use devcert::registry::auth::{Decision, authorize};
use devcert::registry::crl::{build_crl, write_crl};
use devcert::registry::{Added, DeviceQuery, DeviceRecord, Registry, Status, normalize_serial};

use super::{PassArgs, load_ca, print_json, read_input, warn_all};

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
    after_help = "Examples:\n  devcert registry ca add CA.crt\n  devcert issue --cn dev-1 --ca CA.crt --ca-key CA.key --registry devcert.db --out-dir dev-1\n  devcert registry device list --ca-serial 5A3F... --status inactive --json\n  devcert registry device deactivate 4B1C...\n  devcert registry crl --ca CA.crt --ca-key CA.key -o ca.crl --force   # then SIGHUP the broker"
)]
pub struct RegistryArgs {
    /// Registry database (SQLite; created by the first command that writes to it)
    #[arg(
        long,
        global = true,
        env = "DEVCERT_REGISTRY",
        default_value = "devcert.db",
        value_name = "PATH"
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
    /// Register, find, activate, deactivate and delete device certificates
    #[command(
        subcommand,
        after_help = "Examples:\n  devcert registry device list --status inactive\n  devcert registry device deactivate 4B1C..."
    )]
    Device(DeviceCommand),
    /// Decide as the broker does on connect (exit 0 accepted, 3 refused)
    #[command(after_help = "Examples:\n  devcert registry auth client-test/client_chain.crt")]
    Auth(AuthArgs),
    /// Write the CRL of a CA's inactive devices (reason certificateHold)
    #[command(
        after_help = "Examples:\n  devcert registry crl --ca CA.crt --ca-key CA.key -o ca.crl --force   # then SIGHUP the broker"
    )]
    Crl(CrlArgs),
}

#[derive(Subcommand)]
enum CaCommand {
    /// Register a CA certificate
    #[command(after_help = "Examples:\n  devcert registry ca add CA.crt")]
    Add {
        #[arg(value_name = "CA.crt")]
        file: String,
    },
    /// List registered CAs with their device counts
    #[command(after_help = "Examples:\n  devcert registry ca list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
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
    #[command(after_help = "Examples:\n  devcert registry device show 4B1C... --json")]
    Show {
        #[arg(value_parser = normalize_serial)]
        serial: String,
        #[arg(long)]
        json: bool,
    },
    /// Let a device connect again (drops it from the next CRL)
    #[command(
        after_help = "Examples:\n  devcert registry device activate 4B1C...\n  devcert registry crl --ca CA.crt --ca-key CA.key -o ca.crl --force"
    )]
    Activate {
        #[arg(value_parser = normalize_serial)]
        serial: String,
    },
    /// Keep a device off the broker (certificateHold in the next CRL)
    #[command(
        after_help = "Examples:\n  devcert registry device deactivate 4B1C...\n  devcert registry crl --ca CA.crt --ca-key CA.key -o ca.crl --force"
    )]
    Deactivate {
        #[arg(value_parser = normalize_serial)]
        serial: String,
    },
    /// Forget a device (`auth` registers it again on its next connection)
    #[command(after_help = "Examples:\n  devcert registry device delete 4B1C...")]
    Delete {
        #[arg(value_parser = normalize_serial)]
        serial: String,
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
    /// Only active or inactive devices
    #[arg(long, value_parser = |s: &str| s.parse::<Status>())]
    status: Option<Status>,
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
    /// Print {"ok", "serial", "registered", "reason"} instead of ACCEPTED/REFUSED
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CrlArgs {
    /// The CA certificate (must be registered)
    #[arg(long, value_name = "FILE")]
    ca: String,
    /// The CA's private key
    #[arg(long, value_name = "FILE")]
    ca_key: String,
    /// Days until nextUpdate: refresh the CRL before then, or brokers refuse every device
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Write DER instead of PEM
    #[arg(long)]
    der: bool,
    #[command(flatten)]
    pass: PassArgs,
    #[command(flatten)]
    out: super::OutArgs,
}

pub fn run(a: RegistryArgs) -> Result<ExitCode> {
    let db = a.db.as_str();
    match a.command {
        RegistryCommand::Ca(CaCommand::Add { file }) => {
            let ca = load_certificate(&read_input(&file)?, "cannot read CA certificate")?;
            let added = Registry::open(db)?.add_ca(&ca)?;
            let serial = devcert::sign::serial_hex(ca.cert.tbs_certificate().serial_number());
            match added {
                Added::New => note!("registered CA {serial}"),
                Added::AlreadyRegistered => note!("CA {serial} was already registered"),
            }
        }
        RegistryCommand::Ca(CaCommand::List { json }) => {
            let cas = if missing(db) {
                Vec::new()
            } else {
                Registry::open_existing(db)?.cas()?
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
        RegistryCommand::Device(cmd) => device(db, cmd)?,
        RegistryCommand::Auth(args) => {
            let chain = load_certificates(&read_input(&args.file)?, "cannot read certificate")?;
            let decision = authorize(&mut Registry::open_existing(db)?, &chain, SystemTime::now())?;
            if args.json {
                let (serial, registered, reason) = match &decision {
                    Decision::Accepted { serial, registered } => (Some(serial), *registered, None),
                    Decision::Refused(why) => (None, false, Some(why)),
                };
                print_json(&serde_json::json!({
                    "ok": reason.is_none(), "serial": serial, "registered": registered, "reason": reason,
                }))?;
            } else {
                devcert::output::write_stdout(format!("{decision}\n").as_bytes())?;
            }
            if let Decision::Refused(_) = decision {
                return Ok(ExitCode::from(3));
            }
        }
        RegistryCommand::Crl(args) => crl(db, args)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A listing of a registry that does not exist is empty (with a warning,
/// for a mistyped `--db`), and creates nothing.
fn missing(db: &str) -> bool {
    let missing = std::fs::symlink_metadata(db).is_err();
    if missing {
        super::warn(format!(
            "registry {db} does not exist: nothing is registered"
        ));
    }
    missing
}

fn device(db: &str, cmd: DeviceCommand) -> Result<()> {
    if let DeviceCommand::List(l) = &cmd
        && missing(db)
    {
        let empty: [DeviceRecord; 0] = [];
        return if l.json { print_json(&empty) } else { Ok(()) };
    }
    // Only `ca add` creates a database: a device needs a registered CA.
    let mut reg = Registry::open_existing(db)?;
    match cmd {
        DeviceCommand::Add { file } => {
            let cert = load_certificate(&read_input(&file)?, "cannot read certificate")?;
            let serial = devcert::sign::serial_hex(cert.cert.tbs_certificate().serial_number());
            match reg.add_device(&cert)? {
                Added::New => note!("registered device {serial}"),
                Added::AlreadyRegistered => note!("device {serial} was already registered"),
            }
        }
        DeviceCommand::List(l) => {
            let q = DeviceQuery {
                serial: l.serial,
                ca_serial: l.ca_serial,
                status: l.status,
                limit: l.limit,
            };
            list(&reg, &q, l.json)?;
        }
        DeviceCommand::Show { serial, json } => {
            let d = reg.device(&serial)?;
            if json {
                print_json(&d)?;
            } else {
                let text = format!(
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
                devcert::output::write_stdout(text.as_bytes())?;
            }
        }
        DeviceCommand::Activate { serial } => {
            reg.set_status(&serial, Status::Active)?;
            note!(
                "device {serial} activated (the broker plugin admits it at its next connect; CRL mode: write a new CRL and reload the broker)"
            );
        }
        DeviceCommand::Deactivate { serial } => {
            reg.set_status(&serial, Status::Inactive)?;
            note!(
                "device {serial} deactivated (the broker plugin disconnects it; CRL mode: write a new CRL and reload the broker)"
            );
        }
        DeviceCommand::Delete { serial } => {
            reg.delete_device(&serial)?;
            note!("device {serial} deleted");
        }
    }
    Ok(())
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
                let obj = serde_json::to_string(&d).unwrap_or_default();
                write!(out, "{sep}{obj}")
            } else {
                writeln!(
                    out,
                    "{:<40}  {:<8}  until {}  CA {}  {}",
                    d.serial,
                    d.status.as_str(),
                    d.not_after,
                    d.ca_serial,
                    d.subject
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
    // Refuse an existing output before a CRL number is used up.
    devcert::output::refuse_existing(&a.out.out, a.out.force)?;
    let ca = load_ca(&a.ca, &a.ca_key, &a.pass, Digest::Sha256)?;
    let mut reg = Registry::open_existing(db)?;
    let crl = build_crl(&mut reg, &ca, a.days)?;
    warn_all(&crl.warnings);
    write_crl(&crl, &ca, &a.out.out, a.der, a.out.force)?;
    if a.out.out != "-" {
        note!(
            "crl: CRL number {} with {} held device(s), valid {} days, written to {}",
            crl.number,
            crl.held.len(),
            a.days,
            a.out.out
        );
    }
    Ok(())
}
