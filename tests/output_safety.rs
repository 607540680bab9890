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
