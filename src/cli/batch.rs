use std::io::{BufRead, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use devcert::batch::{BatchJob, SubjectTemplate, manifest_path, numbered_names, read_names};
use devcert::digest::Digest;
use devcert::error::{Error, ErrorKind, Result};
use devcert::issue::DeviceSpec;
use devcert::keys::AlgoSpec;
use devcert::output::{Mode, commit, exists_error, stage};
use devcert::registry::Bulk;
use serde_json::json;

use super::sign::DEFAULT_DEVICE_DAYS;
use super::subject::{ProfileArgs, ValidityArgs, read_config};
use super::{JsonArg, PassArgs, Pkcs11Args, load_ca, parse_digest, quiet, read_input};

/// Issue a fleet: one folder per device with the five `issue` files
#[derive(Args)]
#[command(
    after_help = "Examples:\n  devcert batch --ca CA.crt --ca-key CA.key --count 1000 --cn-prefix dev- --out-dir fleet\n  devcert batch --ca CA.crt --ca-key CA.key --names devices.txt --config client.csr.cfg --profile client.crt.cfg --days 500 --out-dir fleet\n\nRe-running skips complete devices and redoes half-written ones."
)]
pub struct BatchArgs {
    /// The CA certificate
    #[arg(long, value_name = "FILE")]
    ca: String,
    /// The CA's private key: a file, or a pkcs11: URI (docs/hsm.md)
    #[arg(long, value_name = "FILE|URI")]
    ca_key: String,
    /// ec, rsa, rsa:BITS, ec:CURVE or a curve name
    #[arg(long, default_value = "ec")]
    algo: AlgoSpec,
    /// File with one device CN per line (# comments, blank lines ignored)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["count", "cn_prefix"], required_unless_present = "count")]
    names: Option<String>,
    /// Number of devices, named <PREFIX><number>
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000), requires = "cn_prefix")]
    count: Option<u64>,
    /// CN prefix for --count
    #[arg(long, value_name = "PREFIX")]
    cn_prefix: Option<String>,
    /// OpenSSL req config used as subject template; its CN is replaced per device
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    validity: ValidityArgs,
    /// Signature digest (default: the template's default_md, else sha256)
    #[arg(long, value_parser = parse_digest)]
    digest: Option<Digest>,
    /// Parallel workers (default: all cores)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    jobs: Option<u64>,
    /// Also write the manifest as CSV to this file (`-`: standard output)
    #[arg(long, value_name = "FILE")]
    manifest_csv: Option<PathBuf>,
    /// Replace an existing --manifest-csv file that is not a devcert manifest
    /// (a re-run replaces its own manifests without it)
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pass: PassArgs,
    #[command(flatten)]
    pkcs11: Pkcs11Args,
    /// Register every device (and the CA if new) in this registry database
    #[arg(long, value_name = "DB")]
    registry: Option<String>,
    /// Folder for the fleet (created if missing)
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    #[command(flatten)]
    json: JsonArg,
}

const CSV_HEADER: &str = "cn,serial,not_after,sha256_fingerprint,dir";

pub fn run(a: BatchArgs) -> Result<()> {
    let csv_to_stdout = a.manifest_csv.as_deref() == Some(Path::new("-"));
    if csv_to_stdout && a.json.json {
        super::usage("--manifest-csv - and --json would both write to standard output".into());
    } else if let Some(p) = &a.manifest_csv {
        let json = manifest_path(&a.out_dir);
        if std::path::absolute(p).ok() == std::path::absolute(&json).ok() {
            super::usage(format!(
                "--manifest-csv {} is where the JSON manifest goes",
                p.display()
            ));
        }
        refuse_foreign_csv(p, a.force)?;
    }
    let names = match (&a.names, a.count, &a.cn_prefix) {
        (Some(path), _, _) => {
            let input = read_input(path)?;
            let text = String::from_utf8(input.bytes).map_err(|_| {
                Error::parse("cannot read names", "not UTF-8 text").file(&input.label)
            })?;
            read_names(&text, &input.label)?
        }
        (None, Some(n), Some(prefix)) => numbered_names(prefix, n as usize)?,
        _ => super::usage("give --names FILE or --count N --cn-prefix PFX".into()),
    };
    let (template, req) = match &a.config {
        Some(path) => {
            let conf = read_config(path)?;
            let req = devcert::csr::ReqConfig::from_config(&conf)?;
            (SubjectTemplate::from_config(conf)?, Some(req))
        }
        None => (SubjectTemplate::Cn, None),
    };
    let digest = a
        .digest
        .or(req.as_ref().and_then(|r| r.digest))
        .unwrap_or(Digest::Sha256);
    let algo = super::key_algo(a.algo, req.as_ref())?;
    let profile = a.profile.load()?;
    let ca = load_ca(&a.ca, &a.ca_key, &a.pass, &a.pkcs11, digest)?;
    // Opened before any device is made, so a bad database costs nothing.
    let mut registry = a
        .registry
        .as_deref()
        .map(|db| Bulk::new(db, &ca.cert))
        .transpose()?;
    std::fs::create_dir_all(&a.out_dir).map_err(|e| {
        Error::io(
            "cannot create output folder",
            a.out_dir.display().to_string(),
            &e,
        )
    })?;
    let _lock = lock_out_dir(&a.out_dir)?;
    let jobs = a.jobs.map(|j| j as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let placeholder = devcert::name::common_name("placeholder")?;
    let job = BatchJob {
        ca: &ca,
        names: &names,
        template: &template,
        spec: DeviceSpec {
            algo,
            subject: &placeholder,
            req_extensions: req.as_ref().and_then(|r| r.extensions.as_ref()),
            profile: &profile,
            lifetime: a.validity.lifetime(DEFAULT_DEVICE_DAYS),
            digest,
            key_passphrase: None,
        },
        out_dir: &a.out_dir,
        jobs,
    };
    let bar = (std::io::stderr().is_terminal() && !quiet()).then(|| {
        let bar = indicatif::ProgressBar::new(names.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} devices  {per_sec}  ETA {eta}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    // The manifest is streamed to a temp file and renamed when complete.
    let manifest_target = manifest_path(&a.out_dir);
    // Named like output.rs's temp files, so a killed run's are cleaned up.
    devcert::batch::remove_stale_temps(&a.out_dir);
    let mut manifest = temp_in(&a.out_dir).map_err(|e| {
        Error::io(
            "cannot write manifest",
            manifest_target.display().to_string(),
            &e,
        )
    })?;
    // The CSV too: a killed run leaves no half CSV under its name.
    let mut csv = match &a.manifest_csv {
        Some(p) => {
            let err =
                |e: std::io::Error| Error::io("cannot write manifest", p.display().to_string(), &e);
            // To stdout, the CSV waits in the out dir until the batch is done.
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ if csv_to_stdout => a.out_dir.as_path(),
                _ => std::path::Path::new("."),
            };
            let mut f = BufWriter::new(temp_in(dir).map_err(err)?);
            writeln!(f, "{CSV_HEADER}").map_err(err)?;
            Some(f)
        }
        None => None,
    };
    let started = Instant::now();
    let result = {
        let mut out = BufWriter::new(manifest.as_file_mut());
        let r = job.run(
            &mut out,
            csv.as_mut().map(|c| c as &mut dyn Write),
            &|| {
                if let Some(b) = &bar {
                    b.inc(1);
                }
            },
            &mut |der| registry.as_mut().map_or(Ok(()), |r| r.add(der)),
        );
        // Register what is on disk even when the batch failed part-way.
        let flushed = registry.as_mut().map_or(Ok(()), |r| r.flush());
        let r = r.and_then(|s| flushed.map(|()| s));
        r.and_then(|s| {
            out.flush().map(|()| s).map_err(|e| {
                Error::io(
                    "cannot write manifest",
                    manifest_target.display().to_string(),
                    &e,
                )
            })
        })
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let summary = result?;
    if let Some((first, warnings)) = &summary.warnings {
        let others = match summary.warned - 1 {
            0 => String::new(),
            n => format!(" and {n} other device(s)"),
        };
        for w in warnings {
            super::warn(format!("{first}{others}: {w}"));
        }
    }
    if let (Some(c), Some(p)) = (csv, &a.manifest_csv) {
        let err =
            |e: std::io::Error| Error::io("cannot write manifest", p.display().to_string(), &e);
        let temp = c.into_inner().map_err(|e| err(e.into_error()))?;
        let bytes = std::fs::read(temp.path()).map_err(err)?;
        if csv_to_stdout {
            devcert::output::write_stdout(&bytes)?;
        } else {
            commit(stage(p, &bytes, Mode::Public)?, true)?;
        }
    }
    let bytes = std::fs::read(manifest.path()).map_err(|e| {
        Error::io(
            "cannot write manifest",
            manifest_target.display().to_string(),
            &e,
        )
    })?;
    commit(stage(&manifest_target, &bytes, Mode::Public)?, true)?;
    let secs = started.elapsed().as_secs_f64();
    a.json.print(json!({
        "out_dir": a.out_dir.display().to_string(),
        "manifest": manifest_target.display().to_string(),
        "manifest_csv": a.manifest_csv.as_ref().map(|p| p.display().to_string()),
        "devices": names.len(),
        "issued": summary.issued,
        "skipped": summary.skipped,
    }))?;
    if quiet() {
        return Ok(());
    }
    eprintln!(
        "batch: {} devices in {} ({} issued, {} already complete) in {:.2} s, {:.0} devices/s",
        names.len(),
        a.out_dir.display(),
        summary.issued,
        summary.skipped,
        secs,
        summary.issued as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// An existing file at `--manifest-csv` is replaced only when it is the
/// manifest of an earlier batch (re-runs must work) or with `--force`.
fn refuse_foreign_csv(p: &Path, force: bool) -> Result<()> {
    if force || p.symlink_metadata().is_err() {
        return Ok(());
    }
    let mut first = String::new();
    let ours = std::fs::File::open(p)
        .and_then(|f| std::io::BufReader::new(f.take(256)).read_line(&mut first))
        .is_ok()
        && first.trim_end() == CSV_HEADER;
    if ours {
        return Ok(());
    }
    Err(exists_error(&p.display().to_string())
        .hint("it is not a devcert manifest; use --force to replace it"))
}

fn temp_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".devcert-")
        .suffix(".tmp")
        .tempfile_in(dir)
}

/// One batch at a time per folder: a second one would take the first's
/// half-written devices for leftovers of a killed run and remove their temp
/// files. The lock (flock on the folder itself, no lock file to leave
/// behind) goes when the process ends, however it ends.
fn lock_out_dir(dir: &Path) -> Result<std::fs::File> {
    let label = dir.display().to_string();
    let f =
        std::fs::File::open(dir).map_err(|e| Error::io("cannot open output folder", &label, &e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            ErrorKind::Refused,
            "output folder is busy",
            "another devcert batch is writing to it",
        )
        .file(label)
        .hint("wait for it to finish, then re-run: complete devices are skipped")),
        // A filesystem without flock still gets its batch, as before.
        Err(std::fs::TryLockError::Error(_)) => Ok(f),
    }
}
