//! Output safety (issue 6, item 3): the symlink rule, `--force` replacing
//! atomically with private keys kept 0600, and a failure after partial work
//! leaving nothing of what the call created (and, with `--force`, putting
//! back what it had replaced). See docs/security.md.
mod common;
use common::*;

fn is_symlink(t: &TestDir, name: &str) -> bool {
    std::fs::symlink_metadata(t.path(name))
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

/// No leftover `.devcert-*` temp or kept-aside file anywhere under the dir.
#[track_caller]
fn assert_no_temp_files(t: &TestDir) {
    let temps: Vec<String> = t
        .listing()
        .into_keys()
        .filter(|k| k.contains(".devcert-") || k.contains(".tmp"))
        .collect();
    assert!(temps.is_empty(), "temp files left behind: {temps:?}");
}

#[test]
fn an_output_symlink_is_refused_and_force_replaces_the_link_never_its_target() {
    let t = TestDir::new();
    t.write("victim.txt", "precious\n");
    std::os::unix::fs::symlink("victim.txt", t.path("client.key")).unwrap();
    std::os::unix::fs::symlink("nowhere/at/all", t.path("dangling.key")).unwrap();

    t.devcert(&["key", "-o", "client.key"])
        .fails_naming(&["client.key", "exists"]);
    t.devcert(&["key", "-o", "dangling.key"])
        .fails_naming(&["dangling.key", "exists"]);
    assert_eq!(t.read_str("victim.txt"), "precious\n");
    assert!(is_symlink(&t, "client.key") && is_symlink(&t, "dangling.key"));

    t.devcert_cmd()
        .umask(0o000)
        .args(["key", "--force", "-o", "client.key"])
        .run()
        .ok();
    assert_eq!(
        t.read_str("victim.txt"),
        "precious\n",
        "the link's target was written"
    );
    assert!(!is_symlink(&t, "client.key"), "the link itself is replaced");
    t.assert_mode("client.key", 0o600);
    t.assert_mode("victim.txt", 0o644 & !0o022);
    t.openssl_ok(&["pkey", "-in", "client.key", "-noout"]);
    assert!(!t.exists("nowhere"));
    assert_no_temp_files(&t);
}

#[test]
fn issue_refuses_a_symlinked_device_file_and_force_replaces_only_the_link() {
    let t = TestDir::new();
    t.ec_ca("CA");
    std::fs::create_dir(t.path("dev")).unwrap();
    t.write("elsewhere.crt", "keep me\n");
    std::os::unix::fs::symlink("../elsewhere.crt", t.path("dev/client.crt")).unwrap();
    let args = [
        "issue",
        "--cn",
        "d1",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--out-dir",
        "dev",
    ];
    t.devcert(&args).fails_naming(&["client.crt", "exists"]);
    assert_eq!(std::fs::read_dir(t.path("dev")).unwrap().count(), 1);
    t.devcert_cmd().args(args).arg("--force").run().ok();
    assert_eq!(t.read_str("elsewhere.crt"), "keep me\n");
    assert!(!is_symlink(&t, "dev/client.crt"));
    t.assert_openssl_verify(&["-CAfile", "CA.crt"], "dev/client.crt");
}

#[test]
fn force_keeps_private_keys_0600_under_umask_000_for_every_key_writer() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.write("pw", "correct horse\n");
    for name in ["k.key", "p8.key", "root.key", "root.crt"] {
        t.write(name, "old, world-readable\n");
        std::fs::set_permissions(
            t.path(name),
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .unwrap();
    }
    let runs: [&[&str]; 3] = [
        &["key", "--force", "-o", "k.key"],
        &["pkcs8", "CA.key", "--force", "-o", "p8.key"],
        &[
            "ca",
            "--subject",
            "/CN=R",
            "--key-out",
            "root.key",
            "-o",
            "root.crt",
            "--force",
            "--encrypt",
            "--passphrase-file",
            "pw",
        ],
    ];
    for args in runs {
        t.devcert_cmd().umask(0o000).args(args).run().ok();
    }
    for key in ["k.key", "p8.key", "root.key"] {
        t.assert_mode(key, 0o600);
    }
    t.assert_mode("root.crt", 0o644);
    t.openssl_ok(&["pkey", "-in", "root.key", "-passin", "file:pw", "-noout"]);
    assert_no_temp_files(&t);
}

/// `issue --force` into a folder where the 4th file (client_pkcs8.key)
/// cannot be written (a directory sits there): the three already renamed
/// into place are removed, the old client.key it replaced comes back.
#[test]
fn issue_failing_at_the_fourth_file_removes_the_first_three_and_restores_what_they_replaced() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.write("dev/client.key", "OLD KEY\n");
    t.write("dev/client_pkcs8.key/blocker", "a directory in the way\n");
    t.write("dev/notes.txt", "unrelated\n");
    let before = t.listing();
    t.devcert(&[
        "issue",
        "--cn",
        "d1",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--out-dir",
        "dev",
        "--force",
    ])
    .fails_naming(&["client_pkcs8.key"]);
    t.assert_unchanged(&before);
    assert_eq!(t.read_str("dev/client.key"), "OLD KEY\n");
    t.assert_no_file("dev/client.csr");
    t.assert_no_file("dev/client.crt");
    assert_no_temp_files(&t);
}

/// `ca` writes the key first, then the certificate: when the certificate
/// cannot be written, the new CA key does not stay behind either.
#[test]
fn ca_failing_at_the_certificate_leaves_no_key() {
    let t = TestDir::new();
    std::fs::create_dir(t.path("ca.crt")).unwrap();
    t.write("ca.crt/blocker", "x");
    let before = t.listing();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=R",
        "--key-out",
        "ca.key",
        "-o",
        "ca.crt",
        "--force",
    ])
    .fails_naming(&["ca.crt"]);
    t.assert_unchanged(&before);
}

/// Issue 17, item 2: a batch never writes through a link or over files it
/// did not write. A device folder that is a link (to root's folder, say),
/// a file, or a folder holding someone else's files (a foreign
/// `client.key`, a `client.key` link) is refused without `--force`, naming
/// it, with nothing touched; with `--force` the link itself is replaced
/// by a real device folder and the link's target is never opened. The same
/// for a `manifest.json` that is a link.
#[test]
fn batch_never_writes_through_links_or_over_files_it_did_not_write() {
    let t = TestDir::new();
    t.ec_ca("CA");
    std::fs::create_dir_all(t.path("victim")).unwrap();
    t.write("victim/client.key", "root's key\n");
    t.write("victim.txt", "precious\n");
    let link = |to: &str, at: &str| std::os::unix::fs::symlink(t.path(to), t.path(at)).unwrap();
    let plant: [(&str, &dyn Fn(&str), &str); 4] = [
        ("link to a folder", &|d| link("victim", d), "symbolic link"),
        (
            "a foreign key",
            &|d| {
                std::fs::create_dir(t.path(d)).unwrap();
                t.write(&format!("{d}/client.key"), "someone else's key\n");
            },
            "not a complete device",
        ),
        (
            "a key that is a link",
            &|d| {
                std::fs::create_dir(t.path(d)).unwrap();
                link("victim.txt", &format!("{d}/client.key"));
            },
            "not a complete device",
        ),
        ("a file", &|d| drop(t.write(d, "a file\n")), "not a folder"),
    ];
    for (i, (what, plant, why)) in plant.into_iter().enumerate() {
        let fleet = format!("fleet{i}");
        std::fs::create_dir(t.path(&fleet)).unwrap();
        let dir = format!("{fleet}/d0001");
        plant(&dir);
        let args = [
            "batch",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--count",
            "1",
            "--cn-prefix",
            "d",
            "--out-dir",
            &fleet,
        ];
        let before = t.listing();
        t.devcert(&args)
            .fails_naming(&[&dir, why])
            .stderr_has("--force");
        t.assert_unchanged(&before);
        t.devcert_cmd().args(args).arg("--force").run().ok();
        assert_eq!(t.read_str("victim/client.key"), "root's key\n", "{what}");
        assert_eq!(t.read_str("victim.txt"), "precious\n", "{what}");
        assert_eq!(std::fs::read_dir(t.path("victim")).unwrap().count(), 1);
        assert!(!is_symlink(&t, &dir), "{what}: {dir} is still a link");
        assert!(!is_symlink(&t, &format!("{dir}/client.key")), "{what}");
        let crt = format!("{dir}/client.crt");
        let key = format!("{dir}/client.key");
        t.assert_openssl_verify(&["-CAfile", "CA.crt"], &crt);
        assert_eq!(
            t.openssl_ok(&["pkey", "-in", &key, "-pubout"]),
            t.openssl_ok(&["x509", "-in", &crt, "-noout", "-pubkey"]),
            "{what}: {key} is not the certificate's key"
        );
    }
    // A manifest.json that is a link is refused too, and replaced (not
    // written through) with --force.
    std::fs::remove_file(t.path("fleet0/manifest.json")).unwrap();
    link("victim.txt", "fleet0/manifest.json");
    let args = [
        "batch",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--count",
        "1",
        "--cn-prefix",
        "d",
        "--out-dir",
        "fleet0",
    ];
    t.devcert(&args)
        .fails_naming(&["fleet0/manifest.json", "exists"]);
    t.devcert_cmd().args(args).arg("--force").run().ok();
    assert_eq!(t.read_str("victim.txt"), "precious\n");
    assert!(!is_symlink(&t, "fleet0/manifest.json"));
    assert_no_temp_files(&t);
}

/// Issue 17, item 9: folders that will hold private keys are created
/// without group/other write whatever the umask (under umask 000 they were
/// 0777: anyone could swap the keys or plant links): `issue`'s out dir and
/// its parents, `batch`'s out dir and device folders.
#[test]
fn key_folders_are_never_group_or_world_writable() {
    let t = TestDir::new();
    t.ec_ca("CA");
    for umask in [0o000, 0o002, 0o022] {
        let base = format!("u{umask:03o}");
        let run = |args: &[&str]| t.devcert_cmd().umask(umask).args(args).run().ok();
        run(&[
            "issue",
            "--cn",
            "d",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--out-dir",
            &format!("{base}/a/b/dev"),
        ]);
        run(&[
            "batch",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--count",
            "2",
            "--cn-prefix",
            "f",
            "--out-dir",
            &format!("{base}/x/fleet"),
        ]);
        for dir in [
            "",
            "/a",
            "/a/b",
            "/a/b/dev",
            "/x",
            "/x/fleet",
            "/x/fleet/f0001",
            "/x/fleet/f0002",
        ] {
            let dir = format!("{base}{dir}");
            let mode = t.mode(&dir);
            if dir != base {
                assert_eq!(mode & 0o022, 0, "{dir} is {mode:o} under umask {umask:03o}");
                assert_eq!(mode, 0o755 & !umask, "{dir} under umask {umask:03o}");
            }
        }
        t.assert_mode(&format!("{base}/a/b/dev/client.key"), 0o600);
        t.assert_mode(&format!("{base}/x/fleet/f0001/client_pkcs8.key"), 0o600);
    }
}

/// Issue 17, item 13: a device name that is one of the batch's own files
/// (`manifest.json`, a CSV manifest written into the out dir) is refused
/// before any device is made or registered, naming the names file's line.
#[test]
fn device_names_that_are_the_batch_own_files_are_refused_up_front() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.write("names.txt", "dev-1\nmanifest.json\n");
    t.write("names2.txt", "dev-1\nlist.csv\n");
    let before = t.listing();
    let base = [
        "batch",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--registry",
        "reg.db",
    ];
    t.devcert(&[&base[..], &["--names", "names.txt", "--out-dir", "fleet"]].concat())
        .fails_naming(&["names.txt:2", "manifest.json"]);
    t.devcert(
        &[
            &base[..],
            &[
                "--names",
                "names2.txt",
                "--out-dir",
                "fleet",
                "--manifest-csv",
                "fleet/list.csv",
            ],
        ]
        .concat(),
    )
    .fails_naming(&["names2.txt:2", "list.csv"]);
    t.assert_unchanged(&before);
    // The same CSV name elsewhere is no collision.
    t.devcert(
        &[
            &base[..],
            &[
                "--names",
                "names2.txt",
                "--out-dir",
                "fleet",
                "--manifest-csv",
                "list.csv",
            ],
        ]
        .concat(),
    )
    .ok();
    t.assert_openssl_verify(&["-CAfile", "CA.crt"], "fleet/list.csv/client.crt");
}

/// `-o /dev/null --force` once replaced the device with a regular file
/// (as root: the machine's /dev/null). A character device or FIFO at an
/// output path is written into and stays what it was; no `--force` needed.
#[test]
fn devices_and_fifos_are_written_into_never_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let t = TestDir::new();
    let fifo = t.path("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap());
    t.devcert(&["key", "-o", "pipe"]).ok();
    let pem = reader.join().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    t.write("k.pem", &pem);
    t.openssl_ok(&["pkey", "-in", "k.pem", "-noout"]);
    assert!(
        std::fs::symlink_metadata(t.path("pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // The listing below reads every file: a FIFO would block it.
    std::fs::remove_file(t.path("pipe")).unwrap();

    // A private null device (mknod needs root, as CI runs; /dev/null itself
    // is never risked in a test).
    let null = t.path("null");
    let mknod = std::process::Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .output()
        .unwrap();
    if !mknod.status.success() {
        println!("SKIPPED: mknod needs root");
        return;
    }
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Null CA",
        "--key-out",
        "null",
        "-o",
        "CA.crt",
    ])
    .ok();
    t.devcert(&["key", "-o", "null"]).ok();
    t.devcert(&["key", "--force", "-o", "null"]).ok();
    let kind = std::fs::symlink_metadata(&null).unwrap().file_type();
    assert!(kind.is_char_device(), "the device was replaced: {kind:?}");
    assert_no_temp_files(&t);
}
