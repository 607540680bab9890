use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use devcert::batch::{Batch, CsvOut, DeviceNames, manifest_path};
use devcert::digest::Digest;
use devcert::error::{Error, Result};
use devcert::issue::DeviceSpec;
use devcert::keys::AlgoSpec;
use devcert::template::SubjectTemplate;
use serde_json::json;

use super::sign::DEFAULT_DEVICE_DAYS;
use super::subject::{ProfileArgs, ValidityArgs, read_config, subject_arg};
use super::{JsonArg, PassArgs, Pkcs11Args, load_ca, parse_digest, quiet, read_input};

/// Issue a fleet: one folder per device with the five `issue` files
#[derive(Args)]
#[command(
    after_help = "Examples:\n  devcert batch --ca CA.crt --ca-key CA.key --count 1000 --cn-prefix dev- --out-dir fleet\n  devcert batch --ca CA.crt --ca-key CA.key --count 800 --start 201 --cn-prefix dev- --subject /C=CN/O=ALI --out-dir fleet\n  devcert batch --ca CA.crt --ca-key CA.key --names devices.txt --config client.csr.cfg --profile client.crt.cfg --days 500 --out-dir fleet\n\nRe-running skips complete devices. A device folder that exists but is not a\ncomplete device (a link, someone else's files) is refused unless --force.\nmanifest.json lists every complete device in --out-dir."
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
    #[arg(long, value_name = "FILE", conflicts_with_all = ["count", "cn_prefix", "start", "width"], required_unless_present = "count")]
    names: Option<String>,
    /// Number of devices, named <PREFIX><number>
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000), requires = "cn_prefix")]
    count: Option<u64>,
    /// CN prefix for --count
    #[arg(long, value_name = "PREFIX")]
    cn_prefix: Option<String>,
    /// First number for --count (default 1)
    #[arg(long, value_name = "N", requires = "count", value_parser = clap::value_parser!(u64).range(0..=u64::MAX / 2))]
    start: Option<u64>,
    /// Digits of the numbers (default 4, more when a number needs them)
    #[arg(long, value_name = "W", requires = "count", value_parser = clap::value_parser!(u64).range(1..=20))]
    width: Option<u64>,
    /// OpenSSL req config used as subject template; its CN is replaced per device
    #[arg(long, value_name = "FILE", conflicts_with = "subject")]
    config: Option<String>,
    /// Subject template as /C=CN/O=ALI/OU=MQTT; its CN, if any, is replaced per device
    #[arg(long)]
    subject: Option<String>,
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
    /// Redo device folders that are not complete devices (their five files
    /// are replaced; a link or file at a device's path is replaced by a
    /// folder, never followed), and replace manifests devcert did not write
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pass: PassArgs,
    #[command(flatten)]
    pkcs11: Pkcs11Args,
    /// Register every device (and the CA if new) in this registry (a SQLite file or a postgres:// URL)
    #[arg(long, value_name = "DB")]
    registry: Option<String>,
    /// Folder for the fleet (created if missing)
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    #[command(flatten)]
    json: JsonArg,
}

pub fn run(a: BatchArgs) -> Result<()> {
    let csv = match a.manifest_csv.as_deref() {
        None => None,
        Some(p) if p == Path::new("-") => {
            if a.json.json {
                super::usage(
                    "--manifest-csv - and --json would both write to standard output".into(),
                );
            }
            Some(CsvOut::Stdout)
        }
        Some(p) => {
            let json = manifest_path(&a.out_dir);
            if std::path::absolute(p).ok() == std::path::absolute(&json).ok() {
                super::usage(format!(
                    "--manifest-csv {} is where the JSON manifest goes",
                    p.display()
                ));
            }
            Some(CsvOut::File(p.to_path_buf()))
        }
    };
    let names = match (&a.names, a.count, &a.cn_prefix) {
        (Some(path), _, _) => {
            let input = read_input(path)?;
            let text = String::from_utf8(input.bytes).map_err(|_| {
                Error::parse("cannot read names", "not UTF-8 text").file(&input.label)
            })?;
            DeviceNames::from_text(&text, &input.label)?
        }
        (None, Some(n), Some(prefix)) => {
            DeviceNames::numbered(prefix, a.start.unwrap_or(1), n, a.width.map(|w| w as usize))?
        }
        _ => super::usage("give --names FILE or --count N --cn-prefix PFX".into()),
    };
    let (template, req) = match (&a.config, &a.subject) {
        (Some(path), _) => {
            let conf = read_config(path)?;
            let req = devcert::csr::ReqConfig::from_config(&conf)?;
            (SubjectTemplate::from_config(conf)?, Some(req))
        }
        (None, Some(s)) => (SubjectTemplate::Subject(subject_arg(s)?), None),
        (None, None) => (SubjectTemplate::Cn, None),
    };
    let digest = a
        .digest
        .or(req.as_ref().and_then(|r| r.digest))
        .unwrap_or(Digest::Sha256);
    let algo = super::key_algo(a.algo, req.as_ref())?;
    let profile = a.profile.load()?;
    let ca = load_ca(&a.ca, &a.ca_key, &a.pass, &a.pkcs11, digest, &[])?;
    let jobs = a.jobs.map(|j| j as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let placeholder = devcert::name::common_name("placeholder")?;
    let batch = Batch {
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
        force: a.force,
        csv,
        registry: a.registry.as_deref(),
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
    let started = Instant::now();
    let result = batch.run(&|done, total| {
        if let Some(b) = &bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = result?;
    let secs = started.elapsed().as_secs_f64();
    if let Some((first, warnings)) = &report.warnings {
        let others = match report.warned - 1 {
            0 => String::new(),
            n => format!(" and {n} other device(s)"),
        };
        for w in warnings {
            super::warn(format!("{first}{others}: {w}"));
        }
    }
    a.json.print(|| {
        Ok(json!({
            "out_dir": a.out_dir.display().to_string(),
            "manifest": report.manifest.display().to_string(),
            "manifest_csv": a.manifest_csv.as_ref().map(|p| p.display().to_string()),
            "devices": report.devices,
            "issued": report.issued,
            "skipped": report.skipped,
            "earlier": report.earlier,
        }))
    })?;
    if quiet() {
        return Ok(());
    }
    let earlier = match report.earlier {
        0 => String::new(),
        n => format!("; the manifest also lists {n} device(s) of earlier runs"),
    };
    // A rate only means something when devices were made.
    let rate = match report.issued {
        0 => String::new(),
        n => format!(", {:.0} devices/s", n as f64 / secs.max(1e-9)),
    };
    eprintln!(
        "batch: {} devices in {} ({} issued, {} already complete) in {:.2} s{rate}{earlier}",
        report.devices,
        a.out_dir.display(),
        report.issued,
        report.skipped,
        secs,
    );
    Ok(())
}
