//! Concurrency and faults (issue 6, item 6): processes signing at once, a
//! batch killed with SIGKILL and re-run, a full disk.
mod common;
use common::*;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

fn serial_of(t: &TestDir, cert: &str) -> String {
    t.openssl_ok(&["x509", "-in", cert, "-noout", "-serial"])
        .trim()
        .trim_start_matches("serial=")
        .to_string()
}

#[test]
fn sixteen_processes_signing_at_once_get_distinct_serials() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    let children: Vec<_> = (0..16)
        .map(|i| {
            Command::new(DEVCERT)
                .args([
                    "sign",
                    "--csr",
                    "client.csr",
                    "--ca",
                    "CA.crt",
                    "--ca-key",
                    "CA.key",
                ])
                .args(["-o", &format!("c{i}.crt")])
                .current_dir(t.root())
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        let status = c.wait_timeout(Duration::from_secs(60)).unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "a signer failed or hung"
        );
    }
    let serials: BTreeSet<String> = (0..16)
        .map(|i| serial_of(&t, &format!("c{i}.crt")))
        .collect();
    assert_eq!(serials.len(), 16, "duplicate serials: {serials:?}");
    for i in 0..16 {
        t.assert_openssl_verify(&["-CAfile", "CA.crt"], &format!("c{i}.crt"));
    }
}

#[test]
fn sixteen_processes_signing_into_one_registry_get_distinct_registered_serials() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    let children: Vec<_> = (0..16)
        .map(|i| {
            Command::new(DEVCERT)
                .args([
                    "sign",
                    "--csr",
                    "client.csr",
                    "--ca",
                    "CA.crt",
                    "--ca-key",
                    "CA.key",
                ])
                .args(["--registry", "reg.db", "-o", &format!("c{i}.crt")])
                .current_dir(t.root())
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let mut c = c;
        let status = c.wait_timeout(Duration::from_secs(60)).unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "a signer failed or hung: {err}"
        );
    }
    let serials: BTreeSet<String> = (0..16)
        .map(|i| serial_of(&t, &format!("c{i}.crt")))
        .collect();
    assert_eq!(serials.len(), 16, "duplicate serials: {serials:?}");
    for i in 0..16 {
        t.assert_openssl_verify(&["-CAfile", "CA.crt"], &format!("c{i}.crt"));
    }
    let out = t
        .devcert(&["registry", "--db", "reg.db", "device", "list", "--json"])
        .ok();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let registered: BTreeSet<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        registered, serials,
        "the registry holds exactly the 16 issued serials"
    );
    let cas = t
        .devcert(&["registry", "--db", "reg.db", "ca", "list", "--json"])
        .ok();
    let cas: serde_json::Value = serde_json::from_slice(&cas.stdout).unwrap();
    assert_eq!(
        cas.as_array().unwrap().len(),
        1,
        "the CA is registered once"
    );
}

/// A batch killed with SIGKILL mid-run: every device folder it left is
/// complete (folders appear whole), the rest are temp folders. Then devices
/// damaged the ways a user or another program can leave them (a file
/// missing, a file cut short, a key from elsewhere): the re-run refuses
/// them as not complete (never skips them); with --force it redoes exactly
/// those and the unfinished ones, and afterwards every device verifies with
/// openssl, its key is its certificate's, and the manifest lists each
/// device once with the serial on disk.
#[test]
fn a_batch_killed_mid_run_leaves_nothing_a_rerun_accepts_as_complete() {
    let t = TestDir::new();
    t.ec_ca("CA");
    const N: usize = 40;
    let args = [
        "batch",
        "--algo",
        "rsa:2048",
        "--count",
        "40",
        "--cn-prefix",
        "dev",
        "--jobs",
        "2",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--out-dir",
        "fleet",
    ];
    let mut child = Command::new(DEVCERT)
        .args(args)
        .current_dir(t.root())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once a few devices are in place (or give up waiting after 60 s).
    let start = Instant::now();
    while device_folders(&t).len() < 4 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let finished_early = child.try_wait().unwrap().is_some();
    child.kill().unwrap();
    child.wait().unwrap();
    let complete = device_folders(&t);
    println!(
        "killed after {:.2} s with {} device folders{}",
        start.elapsed().as_secs_f64(),
        complete.len(),
        if finished_early {
            " (it had already finished)"
        } else {
            ""
        }
    );
    assert!(
        !finished_early,
        "the batch finished before it could be killed"
    );
    assert!(
        !t.exists("fleet/manifest.json"),
        "a killed run must not leave a manifest"
    );
    for d in &complete {
        for f in FIVE {
            assert!(t.exists(&format!("{d}/{f}")), "a kill left {d} without {f}");
        }
    }
    assert!(
        complete.len() >= 3,
        "expected a few complete devices: {complete:?}"
    );

    // Damage complete devices.
    let (missing, cut, stale) = (&complete[0], &complete[1], &complete[2]);
    std::fs::remove_file(t.path(&format!("{missing}/client_chain.crt"))).unwrap();
    let crt = t.read(&format!("{cut}/client.crt"));
    t.write(&format!("{cut}/client.crt"), &crt[..crt.len() / 2]);
    // A key from elsewhere next to the certificate.
    t.openssl_ok(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &format!("{stale}/client.key"),
    ]);
    // Refused, and nothing there touched (devices the other worker made
    // meanwhile are new and complete; the killed run's temp folders go).
    let damaged = t.listing();
    t.devcert(&args)
        .fails_naming(&["fleet/dev", "not a complete device"]);
    let after = t.listing();
    for (k, v) in damaged.iter().filter(|(k, _)| !k.contains(".devcert-")) {
        assert!(after.get(k) == Some(v), "{k} changed by a refused run");
    }
    for d in device_folders(&t).iter().filter(|d| !complete.contains(d)) {
        for f in FIVE {
            assert!(
                t.exists(&format!("{d}/{f}")),
                "the refused run left {d} without {f}"
            );
        }
    }

    // Complete now: the killed run's, minus the three damaged, plus what
    // the refused run's other worker finished before it stopped.
    let complete_now = device_folders(&t).len() - 3;
    let out = t
        .devcert_cmd()
        .args(args)
        .args(["--force", "--manifest-csv", "fleet.csv"])
        .run()
        .ok();
    println!("re-run: {}", out.stderr.trim());
    let csv = t.read_str("fleet.csv");
    assert_eq!(csv.lines().count(), N + 1, "{csv}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&t.read("fleet/manifest.json")).unwrap();
    let rows = manifest.as_array().expect("manifest is an array");
    assert_eq!(rows.len(), N);
    let mut serials = BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        let dir = format!("fleet/dev{:04}", i + 1);
        assert_eq!(row["cn"], format!("dev{:04}", i + 1));
        let crt = format!("{dir}/client.crt");
        t.assert_openssl_verify(&["-CAfile", "CA.crt"], &crt);
        let serial = serial_of(&t, &crt);
        assert_eq!(
            row["serial"].as_str().unwrap(),
            serial,
            "{dir}: manifest serial"
        );
        assert!(
            csv.lines()
                .any(|l| l.starts_with(&format!("dev{:04},{serial},", i + 1))),
            "{dir}: not in the CSV with serial {serial}"
        );
        assert!(serials.insert(serial), "duplicate serial in {dir}");
        let cert_pub = t.openssl_ok(&["x509", "-in", &crt, "-noout", "-pubkey"]);
        for key in ["client.key", "client_pkcs8.key"] {
            let key_pub = t.openssl_ok(&["pkey", "-in", &format!("{dir}/{key}"), "-pubout"]);
            assert_eq!(
                key_pub, cert_pub,
                "{dir}/{key} is not the certificate's key"
            );
        }
        let chain = t.read_str(&format!("{dir}/client_chain.crt"));
        assert!(
            chain.starts_with(&t.read_str(&crt)),
            "{dir}: chain does not start with the leaf"
        );
        for damaged in [missing, cut, stale] {
            if &dir == damaged {
                assert_eq!(row["status"], "issued", "{dir} was damaged, must be redone");
            }
        }
    }
    assert_no_temps(&t, "fleet");
    let skipped = rows.iter().filter(|r| r["status"] == "skipped").count();
    println!(
        "re-run kept {skipped} complete devices and issued {}",
        N - skipped
    );
    assert_eq!(skipped, complete_now, "undamaged complete devices are kept");
}

const FIVE: [&str; 5] = [
    "client.key",
    "client.csr",
    "client.crt",
    "client_pkcs8.key",
    "client_chain.crt",
];

/// `fleet/devNNNN` folders (not temp folders), sorted.
fn device_folders(t: &TestDir) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(t.path("fleet"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("dev"))
                .map(|n| format!("fleet/{n}"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// No `.devcert-*` file or folder anywhere under `dir`.
#[track_caller]
fn assert_no_temps(t: &TestDir, dir: &str) {
    let mut found = Vec::new();
    collect_temps(&t.path(dir), &mut found);
    assert!(found.is_empty(), "temp files left: {found:?}");
}

/// Starts devcert with `DEVCERT_TEST_STOP_AT=point` and waits until it has
/// stopped itself there (state T in /proc).
fn run_until(t: &TestDir, point: &str, args: &[&str]) -> std::process::Child {
    let child = Command::new(DEVCERT)
        .args(args)
        .env("DEVCERT_TEST_STOP_AT", point)
        .current_dir(t.root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stat = format!("/proc/{}/stat", child.id());
    let start = Instant::now();
    loop {
        let state = std::fs::read_to_string(&stat).unwrap_or_default();
        // "PID (comm) STATE ...": the state follows the last ')'.
        if state
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('T'))
        {
            return child;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "devcert never reached {point}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn registered(t: &TestDir, db: &str) -> usize {
    if !t.exists(db) {
        return 0;
    }
    let out = t
        .devcert(&["registry", "--db", db, "device", "list", "--json"])
        .ok();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array().unwrap().len()
}

/// The group commit's crash points: killed after a chunk's files are
/// synced but before they are renamed, nothing is a device yet (temp
/// folders only, removed by the re-run, which issues everything); killed
/// after the renames are synced but before the chunk is recorded, the
/// devices are complete and the re-run skips them, registers them and
/// lists them. Neither leaves a manifest or registry row for a device that
/// is not complete on disk.
#[test]
fn a_batch_killed_between_data_sync_and_record_is_healed_by_a_rerun() {
    for (point, expect_devices) in [("batch-synced", false), ("batch-renamed", true)] {
        let t = TestDir::new();
        t.ec_ca("CA");
        let args = [
            "batch",
            "--count",
            "30",
            "--cn-prefix",
            "dev",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--registry",
            "reg.db",
            "--out-dir",
            "fleet",
        ];
        let mut child = run_until(&t, point, &args);
        child.kill().unwrap();
        child.wait().unwrap();
        let folders = device_folders(&t);
        let temps = std::fs::read_dir(t.path("fleet"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".devcert-"))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .count();
        println!(
            "{point}: {} device folders, {temps} temp folders",
            folders.len()
        );
        assert!(
            !t.exists("fleet/manifest.json"),
            "{point}: manifest written"
        );
        assert_eq!(
            registered(&t, "reg.db"),
            0,
            "{point}: registered before recorded"
        );
        if expect_devices {
            assert_eq!(folders.len(), 30, "{point}: the chunk is in place");
            for d in &folders {
                t.assert_openssl_verify(&["-CAfile", "CA.crt"], &format!("{d}/client.crt"));
            }
        } else {
            assert!(
                folders.is_empty(),
                "{point}: a device folder before the rename: {folders:?}"
            );
            assert_eq!(temps, 30, "{point}: the chunk's temp folders");
        }
        let out = t.devcert_cmd().args(args).arg("--json").run().ok();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (issued, skipped) = if expect_devices { (0, 30) } else { (30, 0) };
        assert_eq!(
            (doc["issued"].as_u64(), doc["skipped"].as_u64()),
            (Some(issued), Some(skipped)),
            "{point}: {doc}"
        );
        assert_no_temps(&t, "fleet");
        assert_eq!(
            registered(&t, "reg.db"),
            30,
            "{point}: the re-run registers all"
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&t.read("fleet/manifest.json")).unwrap();
        assert_eq!(manifest.as_array().unwrap().len(), 30);
        for d in device_folders(&t) {
            t.assert_openssl_verify(&["-CAfile", "CA.crt"], &format!("{d}/client.crt"));
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP remove the temp files of the interrupted
/// write (keys among them) and end the process as the signal does: a
/// single-file writer (`key`), a multi-file one (`issue`), and `batch`
/// (temp folders). Each is stopped where its temp files exist, signalled,
/// then continued.
#[test]
fn signals_remove_temp_files() {
    let cases: [(&str, &[&str]); 4] = [
        ("staged", &["key", "-o", "out/k.key"]),
        (
            "staged",
            &[
                "registry",
                "--db",
                "r.db",
                "crl",
                "--ca",
                "CA.crt",
                "--ca-key",
                "CA.key",
                "-o",
                "out/ca.crl",
            ],
        ),
        (
            "staged",
            &[
                "issue",
                "--cn",
                "d",
                "--ca",
                "CA.crt",
                "--ca-key",
                "CA.key",
                "--out-dir",
                "out/d",
            ],
        ),
        (
            "batch-synced",
            &[
                "batch",
                "--count",
                "5",
                "--cn-prefix",
                "b",
                "--ca",
                "CA.crt",
                "--ca-key",
                "CA.key",
                "--out-dir",
                "out/fleet",
            ],
        ),
    ];
    for (sig, name) in [(15, "TERM"), (2, "INT"), (1, "HUP")] {
        for (point, args) in cases {
            let t = TestDir::new();
            t.ec_ca("CA");
            t.devcert(&["registry", "--db", "r.db", "ca", "add", "CA.crt"])
                .ok();
            std::fs::create_dir(t.path("out")).unwrap();
            let mut child = run_until(&t, point, args);
            let mut temps = Vec::new();
            collect_temps(&t.path("out"), &mut temps);
            assert!(!temps.is_empty(), "{}: no temp file at {point}", args[0]);
            let pid = child.id().to_string();
            // The shell's own kill: no procps needed.
            for s in [name, "CONT"] {
                let ok = Command::new("sh")
                    .args(["-c", &format!("kill -{s} {pid}")])
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
            let status = child.wait_timeout(Duration::from_secs(30)).unwrap();
            use std::os::unix::process::ExitStatusExt;
            let status = status.expect("the process did not end on the signal");
            assert_eq!(
                status.signal(),
                Some(sig),
                "{} on SIG{name}: {status:?}",
                args[0]
            );
            let mut left = Vec::new();
            collect_temps(&t.path("out"), &mut left);
            assert!(left.is_empty(), "{} on SIG{name} left {left:?}", args[0]);
        }
    }
}

fn collect_temps(p: &std::path::Path, found: &mut Vec<String>) {
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(".devcert-") {
            found.push(e.path().display().to_string());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_temps(&e.path(), found);
        }
    }
}

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A disk that fills up mid-write (a 64 KiB tmpfs, mostly filled): a clear
/// error naming the file, and none of the files of the call left behind.
#[test]
fn a_full_disk_is_a_clear_error_and_leaves_no_partial_files() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let mnt = t.path("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::piped())
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            println!(
                "skipped: cannot mount a tmpfs ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            println!("skipped: cannot run mount ({e})");
            return;
        }
    }
    let _guard = Mount(mnt.clone());
    // Leave about 6 KiB: room for the first files of an RSA-4096 device,
    // not all five (about 12 KiB).
    let mut size = 64 * 1024 - 6 * 1024;
    loop {
        match std::fs::write(mnt.join("filler"), vec![0u8; size]) {
            Ok(()) => break,
            Err(_) if size > 4096 => size -= 4096,
            Err(e) => panic!("cannot fill the tmpfs: {e}"),
        }
    }
    let before = t.listing();
    let out = t
        .devcert(&[
            "issue",
            "--algo",
            "rsa:4096",
            "--cn",
            "d",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--out-dir",
            "small/dev",
        ])
        .fails_naming(&["small/dev", "no space left on device"]);
    println!("issue on a full disk: {}", out.error_line());
    t.assert_unchanged(&before);

    // The same for single-file writers, once there is no room at all.
    let free = 64 * 1024 - size;
    std::fs::write(mnt.join("filler2"), vec![0u8; free]).ok();
    let before = t.listing();
    for args in [
        &["key", "--algo", "rsa:4096", "-o", "small/k.key"][..],
        &[
            "ca",
            "--subject",
            "/CN=R",
            "--key-out",
            "small/ca.key",
            "-o",
            "small/ca.crt",
        ],
    ] {
        let out = t
            .devcert(args)
            .fails_naming(&["small/", "no space left on device"]);
        println!("{} on a full disk: {}", args[0], out.error_line());
    }
    t.assert_unchanged(&before);
}
