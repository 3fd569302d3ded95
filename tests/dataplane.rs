//! What users touch, with the real components: the task definition the operator renders, run as
//! ECS runs it on atmoz's image (its own entrypoint and scripts, Debian's OpenSSH), and OpenSSH's
//! `sftp` client logging in. See `common/dataplane.rs` for how a task is played.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::dataplane::{self, Auth, Options, Task, keypair};
use sftp_operator::render::{self, Desired};
use sftp_operator::{load, sshkeys, validate};

/// A password and its SHA-512 crypt hash (`openssl passwd -6 -salt abcdefgh 'correct horse'`).
const PASSWORD: &str = "correct horse";
const PASSWORD_HASH: &str =
    "$6$abcdefgh$yIZAF3gQPvtKZO/9qOJKffAKKbtS3ef3qmwyugk4uWVjX8YZf/GV3A8SkFxEPY0T56CcilGrHKLffBsp6dLMG.";
/// How `status` names the direct record's endpoint in this manifest.
const DIRECT_HOST: &str = "sftp-direct.example.edu";
const HOST_PORT: u16 = 30000;

/// The users' key pairs, made once per test process by `ssh-keygen`.
struct Keys {
    _dir: tempfile::TempDir,
    alice_ed25519: (PathBuf, String),
    alice_rsa: (PathBuf, String),
    bob_ecdsa: (PathBuf, String),
    partner_ed25519: (PathBuf, String),
    stranger: (PathBuf, String),
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        Keys {
            alice_ed25519: keypair(d, "alice-ed25519", "ed25519"),
            alice_rsa: keypair(d, "alice-rsa", "rsa"),
            bob_ecdsa: keypair(d, "bob-ecdsa", "ecdsa"),
            partner_ed25519: keypair(d, "partner", "ed25519"),
            stranger: keypair(d, "stranger", "ed25519"),
            _dir: dir,
        }
    })
}

/// The host-key secret's value, as the operator generates it (same JSON shape, same generator).
fn host_keys() -> &'static sshkeys::GeneratedHostKeys {
    static HOST: OnceLock<sshkeys::GeneratedHostKeys> = OnceLock::new();
    HOST.get_or_init(|| sshkeys::generate_host_keys("dataplane-test", sshkeys::DEFAULT_RSA_HOST_KEY_BITS).unwrap())
}

fn user(name: &str, uid: u32, dir: &str, keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!("    - {{name: {name}, uid: {uid}, gid: 100, directories: [{dir}], keys: [{}]}}\n", keys.join(", "))
}

fn password_user() -> String {
    format!("    - {{name: carol, uid: 1004, gid: 100, directories: [upload], passwordHash: \"{PASSWORD_HASH}\"}}\n")
}

/// The full cast: alice with two keys (ed25519, rsa), bob (ecdsa), a user with a dot in its
/// name, and a password user.
fn everyone() -> String {
    let k = keys();
    [
        user("alice", 1001, "upload", &[&k.alice_ed25519.1, &k.alice_rsa.1]),
        user("bob", 1002, "upload", &[&k.bob_ecdsa.1]),
        user("partner.genomics", 2001, "incoming", &[&k.partner_ed25519.1]),
        password_user(),
    ]
    .concat()
}

fn manifest(users: &str, storage: &str) -> String {
    format!(
        r#"apiVersion: sftp-operator/v1alpha1
kind: SftpService
metadata: {{name: dataplane}}
spec:
  cluster: sftp
  port: {HOST_PORT}
  users:
{users}  storage: {storage}
  taskRoleArn: arn:aws:iam::123456789012:role/sftp-task
  executionRoleArn: arn:aws:iam::123456789012:role/sftp-exec
  loadBalancer: {{arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/sftp/0123456789abcdef", listenerPort: 22}}
  access: {{securityGroupId: sg-0123456789abcdef0, allowedCidrs: [192.0.2.0/24]}}
  dns: {{zone: example.edu., record: {DIRECT_HOST}.}}
  logging: {{audit: true}}
"#
    )
}

fn service(text: &str) -> validate::Service {
    let src = load::SourceFile { path: PathBuf::from("dataplane.yaml"), text: text.to_owned() };
    let docs = load::parse_sources(&[src]).expect("parses");
    validate::validate(&docs).unwrap_or_else(|d| panic!("{d}")).remove(0)
}

fn rendered(users: &str) -> Desired {
    render::render(&service(&manifest(users, "{hostPath: /srv/sftp}")), "test")
}

/// A `/home` for tasks: world-traversable like a host directory, so other uids can reach files.
fn home() -> tempfile::TempDir {
    let h = tempfile::tempdir().unwrap();
    std::fs::set_permissions(h.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    h
}

fn start(image: &Path, d: &Desired, home: &Path) -> Task {
    Task::start(image, d, &host_keys().secret_json, Some(home), Options::default())
}

fn key(k: &(PathBuf, String)) -> Auth<'_> {
    Auth::Key(&k.0)
}

/// A small file to upload, and where a download of it goes.
fn payload(dir: &Path, text: &str) -> (PathBuf, PathBuf) {
    let up = dir.join("payload.txt");
    std::fs::write(&up, text).unwrap();
    (up, dir.join("downloaded.txt"))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn every_key_user_logs_in_with_a_public_key_uploads_lists_and_downloads() {
    let Some(image) = dataplane::image() else { return };
    let d = rendered(&everyone());
    let home = home();
    let task = start(image, &d, home.path());
    let k = keys();
    let cases = [
        ("alice", &k.alice_ed25519, "upload"),
        ("alice", &k.alice_rsa, "upload"),
        ("bob", &k.bob_ecdsa, "upload"),
        ("partner.genomics", &k.partner_ed25519, "incoming"),
    ];
    for (i, (name, pair, dir)) in cases.iter().enumerate() {
        let scratch = tempfile::tempdir().unwrap();
        let text = format!("hello from {name}, key {i}\n");
        let (up, down) = payload(scratch.path(), &text);
        let file = format!("{dir}/hello-{i}.txt");
        let s = task.sftp(
            name,
            key(pair),
            None,
            &format!("put {} {file}\nls -l {dir}\nget {file} {}\n", up.display(), down.display()),
        );
        assert!(s.ok, "{name} with key {i}: {}\n{}\ntask log:\n{}", s.stdout, s.stderr, task.log());
        assert!(s.stdout.contains(&format!("hello-{i}.txt")), "the listing shows the upload: {}", s.stdout);
        assert_eq!(std::fs::read_to_string(&down).unwrap(), text, "{name} downloads what it uploaded");
        assert_eq!(std::fs::read_to_string(home.path().join(name).join(&file)).unwrap(), text);

        let root_write = task.sftp(name, key(pair), None, &format!("put {} /at-the-root.txt\n", up.display()));
        assert!(!root_write.ok, "{name} wrote the chroot root: {}", root_write.stdout);
        assert!(!home.path().join(name).join("at-the-root.txt").exists());
    }
    // logging.audit: sshd names the user and the key's fingerprint for every login.
    for f in &d.key_fingerprints {
        let line = format!("Accepted publickey for {} from 127.0.0.1", f.user);
        assert!(task.wait_for_log(&line), "no `{line}`:\n{}", task.log());
        assert!(
            task.log().lines().any(|l| l.contains(&line) && l.contains(&f.fingerprint)),
            "no login of {} with {} in the log:\n{}",
            f.user,
            f.fingerprint,
            task.log()
        );
    }
}

#[test]
fn a_key_user_cannot_log_in_with_a_password_or_a_stranger_key() {
    let Some(image) = dataplane::image() else { return };
    let home = home();
    let task = start(image, &rendered(&everyone()), home.path());
    let s = task.sftp("alice", key(&keys().stranger), None, "ls\n");
    assert!(!s.ok && s.stderr.contains("Permission denied"), "{}\n{}", s.stdout, s.stderr);
    let s = task.sftp("alice", Auth::Password(PASSWORD), None, "ls\n");
    assert!(!s.ok, "alice has no password: {}", s.stdout);
}

#[test]
fn the_host_key_is_the_secrets_and_stays_the_same_on_the_next_task() {
    let Some(image) = dataplane::image() else { return };
    let d = rendered(&everyone());
    let home = home();
    let scratch = tempfile::tempdir().unwrap();
    let known_hosts = scratch.path().join("known_hosts");
    let lines: Vec<String> =
        host_keys().public_keys.iter().map(|k| sshkeys::known_hosts_line(DIRECT_HOST, HOST_PORT, k)).collect();
    std::fs::write(&known_hosts, lines.join("\n") + "\n").unwrap();
    let alias = format!("[{DIRECT_HOST}]:{HOST_PORT}");
    let strict = Some((known_hosts.as_path(), alias.as_str()));

    for round in ["first task", "next task"] {
        let task = start(image, &d, home.path());
        let s = task.sftp("alice", key(&keys().alice_ed25519), strict, "ls\n");
        assert!(s.ok, "{round}: {}\n{}", s.stdout, s.stderr);
    }
    // The check could fail: a task with other host keys is refused by the same known_hosts.
    let other = sshkeys::generate_host_keys("other", sshkeys::DEFAULT_RSA_HOST_KEY_BITS).unwrap();
    let task = Task::start(image, &d, &other.secret_json, Some(home.path()), Options::default());
    let s = task.sftp("alice", key(&keys().alice_ed25519), strict, "ls\n");
    assert!(!s.ok && s.stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"), "{}", s.stderr);
}

#[test]
fn a_password_user_logs_in_with_its_password_and_a_wrong_one_is_refused() {
    let Some(image) = dataplane::image() else { return };
    let home = home();
    let task = start(image, &rendered(&everyone()), home.path());
    let scratch = tempfile::tempdir().unwrap();
    let (up, _) = payload(scratch.path(), "by password\n");
    let s = task.sftp("carol", Auth::Password(PASSWORD), None, &format!("put {} upload/p.txt\n", up.display()));
    assert!(s.ok, "{}\n{}\ntask log:\n{}", s.stdout, s.stderr, task.log());
    assert_eq!(std::fs::read_to_string(home.path().join("carol/upload/p.txt")).unwrap(), "by password\n");
    let s = task.sftp("carol", Auth::Password("correct horse battery"), None, "ls\n");
    assert!(!s.ok, "a wrong password logged in: {}", s.stdout);
    assert!(!task.log().contains(PASSWORD_HASH) && !task.log().contains("$6$"), "the hash is in the log");
}

/// What releases before this one left in a persistent `/home`: `.ssh` root 0700 holding the
/// queued keys and an `authorized_keys` owned by the user.
fn plant_old_release_state(home: &Path, user: &str, uid: u32, key: &str) {
    let ssh = home.join(user).join(".ssh");
    std::fs::create_dir_all(ssh.join("keys")).unwrap();
    std::fs::write(ssh.join("keys/sftp-operator.pub"), format!("{key}\n")).unwrap();
    std::fs::write(ssh.join("authorized_keys"), format!("{key}\n")).unwrap();
    std::os::unix::fs::chown(ssh.join("authorized_keys"), Some(uid), None).unwrap();
    for (p, m) in [(ssh.join("authorized_keys"), 0o600), (ssh.join("keys"), 0o700), (ssh.clone(), 0o700)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }
}

#[test]
fn the_next_task_on_the_same_home_lets_current_keys_in_and_refuses_removed_keys_and_users() {
    let Some(image) = dataplane::image() else { return };
    let k = keys();
    let home = home();
    // A home as today's release leaves it, with a key that is no longer in any manifest.
    plant_old_release_state(home.path(), "alice", 1001, &k.stranger.1);
    plant_old_release_state(home.path(), "bob", 1002, &k.bob_ecdsa.1);

    let task = start(image, &rendered(&everyone()), home.path());
    for (name, pair) in [("alice", &k.alice_ed25519), ("alice", &k.alice_rsa), ("bob", &k.bob_ecdsa)] {
        let s = task.sftp(name, key(pair), None, "ls\n");
        assert!(s.ok, "{name} after an old release: {}\ntask log:\n{}", s.stderr, task.log());
    }
    assert!(!task.sftp("alice", key(&k.stranger), None, "ls\n").ok, "a key left in the home logged in");
    assert!(!home.path().join("alice/.ssh").exists(), "the old release's .ssh is gone");
    drop(task);

    // Next revision: alice keeps one key, bob is gone.
    let fewer = [user("alice", 1001, "upload", &[&k.alice_ed25519.1]), password_user()].concat();
    let task = start(image, &rendered(&fewer), home.path());
    assert!(task.sftp("alice", key(&k.alice_ed25519), None, "ls\n").ok, "{}", task.log());
    assert!(!task.sftp("alice", key(&k.alice_rsa), None, "ls\n").ok, "a removed key logged in");
    assert!(!task.sftp("bob", key(&k.bob_ecdsa), None, "ls\n").ok, "a removed user logged in");
}

#[test]
fn a_logged_in_user_cannot_add_a_key_for_itself_or_anyone() {
    let Some(image) = dataplane::image() else { return };
    let k = keys();
    let home = home();
    let task = start(image, &rendered(&everyone()), home.path());
    let scratch = tempfile::tempdir().unwrap();
    let evil = scratch.path().join("evil.pub");
    std::fs::write(&evil, format!("{}\n", k.stranger.1)).unwrap();
    let e = evil.display();
    let attempts = format!(
        "-mkdir /.ssh\n-put {e} /.ssh/authorized_keys\n-put {e} /authorized_keys\n-mkdir upload/.ssh\n\
         -put {e} upload/.ssh/authorized_keys\n-put {e} upload/authorized_keys\n-symlink upload /.ssh\n\
         -rename upload /.ssh\n-put {e} /.ssh/authorized_keys2\n"
    );
    let s = task.sftp("alice", key(&k.alice_ed25519), None, &attempts);
    assert!(s.ok, "{}\n{}", s.stdout, s.stderr);
    assert!(!home.path().join("alice/.ssh").exists(), "alice made a .ssh in her chroot");
    for who in ["alice", "bob", "carol", "partner.genomics"] {
        assert!(!task.sftp(who, key(&k.stranger), None, "ls\n").ok, "the planted key logs in as {who}");
    }
    // The keys sshd reads are root's, outside every chroot.
    let dir = task.changed_file("/etc/ssh/authorized_keys");
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!((meta.uid(), mode(&dir)), (0, 0o755));
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!((std::fs::metadata(&p).unwrap().uid(), mode(&p)), (0, 0o644), "{}", p.display());
    }
}

#[test]
fn uploads_get_atmoz_stock_modes_and_a_shared_gid_can_read_them() {
    let Some(image) = dataplane::image() else { return };
    let home = home();
    let task = start(image, &rendered(&everyone()), home.path());
    let scratch = tempfile::tempdir().unwrap();
    let (up, _) = payload(scratch.path(), "for the group\n");
    let s = task.sftp(
        "alice",
        key(&keys().alice_ed25519),
        None,
        &format!("mkdir upload/sub\nput {} upload/sub/shared.txt\n", up.display()),
    );
    assert!(s.ok, "{}", s.stderr);
    let sub = home.path().join("alice/upload/sub");
    let file = sub.join("shared.txt");
    assert_eq!(mode(&home.path().join("alice")), 0o755, "the chroot home");
    assert_eq!(mode(&home.path().join("alice/upload")), 0o755, "atmoz's upload directory");
    assert_eq!(mode(&sub), 0o755, "a directory alice made");
    assert_eq!(mode(&file), 0o644, "a file alice uploaded");
    assert_eq!(std::fs::metadata(&file).unwrap().gid(), 100, "alice's primary group");
    // bob (uid 1002) shares gid 100: he can read it where the files live.
    let read = Command::new("setpriv")
        .args(["--reuid=1002", "--regid=100", "--clear-groups", "cat"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    assert_eq!(String::from_utf8_lossy(&read.stdout), "for the group\n");
}

#[test]
fn s3_storage_calls_goofys_per_user_and_sshd_starts() {
    let Some(image) = dataplane::image() else { return };
    let k = keys();
    let users =
        [user("alice", 1001, "upload", &[&k.alice_ed25519.1]), user("bob", 1002, "data", &[&k.bob_ecdsa.1])].concat();
    let d = render::render(
        &service(&manifest(&users, "{s3: {bucket: drop-bucket, image: example/atmoz-goofys:1}}")),
        "test",
    );
    // A recording stand-in for goofys: says how it was called, as which user, and succeeds.
    let goofys = "#!/bin/sh\necho \"goofys-stand-in uid=$(id -u) $*\"\n";
    let options = Options { files: vec![("/usr/local/bin/goofys".into(), goofys.into(), 0o755)], ..Default::default() };
    let task = Task::start(image, &d, &host_keys().secret_json, None, options);
    let log = task.log();
    for expected in [
        "goofys-stand-in uid=0 -o allow_other --uid 1001 --gid 100 --file-mode=0660 --dir-mode=0770 drop-bucket:alice /home/alice/upload",
        "goofys-stand-in uid=0 -o allow_other --uid 1002 --gid 100 --file-mode=0660 --dir-mode=0770 drop-bucket:bob /home/bob/data",
    ] {
        assert!(log.contains(expected), "no `{expected}` in:\n{log}");
    }
    assert!(task.sftp("alice", key(&k.alice_ed25519), None, "ls\n").ok, "{log}");
}

#[test]
fn the_prelude_runs_under_busybox_sh_as_on_the_alpine_image() {
    let Some(image) = dataplane::image() else { return };
    let syntax = Command::new("busybox").args(["sh", "-n", "-c", render::PRELUDE]).output().unwrap();
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    let home = home();
    let options = Options { busybox_sh: true, ..Default::default() };
    let task = Task::start(image, &rendered(&everyone()), &host_keys().secret_json, Some(home.path()), options);
    let k = keys();
    assert!(task.sftp("alice", key(&k.alice_rsa), None, "ls\n").ok, "{}", task.log());
    assert!(task.sftp("partner.genomics", key(&k.partner_ed25519), None, "ls\n").ok, "{}", task.log());
    assert!(task.sftp("carol", Auth::Password(PASSWORD), None, "ls\n").ok, "{}", task.log());
}

/// Validation refuses line breaks in keys; even if one got through, key text only ever reaches
/// its own user's file, never another user's or a path.
#[test]
fn key_text_cannot_name_a_user_or_a_path_even_past_validation() {
    let Some(image) = dataplane::image() else { return };
    let k = keys();
    let mut s = service(&manifest(&everyone(), "{hostPath: /srv/sftp}"));
    let alice = s.users.iter_mut().find(|u| u.name == "alice").unwrap();
    alice.keys[0].comment = format!("x\nbob {}\n../../root {}", k.stranger.1, k.stranger.1);
    let home = home();
    let task = start(image, &render::render(&s, "test"), home.path());
    assert!(!task.sftp("bob", key(&k.stranger), None, "ls\n").ok, "the key text planted a key for bob");
    assert!(task.sftp("bob", key(&k.bob_ecdsa), None, "ls\n").ok, "{}", task.log());
    let mut files: Vec<String> = std::fs::read_dir(task.changed_file("/etc/ssh/authorized_keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["alice", "bob", "carol", "partner.genomics"]);
    assert!(!home.path().join("root").exists() && !task.changed_file("/root/.ssh").exists());
}

/// Every account the image has is refused as a manifest user (atmoz would skip creating it).
#[test]
fn every_account_of_the_image_is_refused_as_a_user_name() {
    let Some(image) = dataplane::image() else { return };
    let passwd = std::fs::read_to_string(image.join("etc/passwd")).unwrap();
    for name in passwd.lines().filter_map(|l| l.split(':').next()) {
        assert!(validate::IMAGE_ACCOUNTS.contains(&name), "`{name}` of the image is not in IMAGE_ACCOUNTS");
        let text = manifest(&user(name, 1001, "upload", &[&keys().alice_ed25519.1]), "{hostPath: /srv/sftp}");
        let src = load::SourceFile { path: PathBuf::from("m.yaml"), text };
        let err = validate::validate(&load::parse_sources(&[src]).unwrap()).expect_err(name).to_string();
        assert!(err.contains("spec.users[0].name"), "{name}: {err}");
    }
}

// ---- The SFTP server's security policy (`spec.security`, `users[].allowedCidrs`) ----

/// The image's OpenSSH version as ssh-audit's policies name it (`9.2`).
fn openssh_version(image: &Path) -> String {
    let out = Command::new("chroot").arg(image).args(["/usr/sbin/sshd", "-V"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = text.strip_prefix("OpenSSH_").and_then(|r| r.split([',', 'p', ' ']).next()).unwrap_or_default();
    assert!(!v.is_empty(), "sshd -V: {text}");
    v.to_owned()
}

/// ssh-audit's newest built-in hardened policy for OpenSSH `version`, as a custom policy file
/// that also admits `kex-strict-s-v00@openssh.com`: Debian backported OpenSSH 9.6's strict key
/// exchange (the Terrapin fix) into its 9.2, which the built-in 9.2 policy predates (ssh-audit's
/// own note on distribution backports says to do exactly this). Nothing else is changed.
fn hardened_policy(version: &str, dir: &Path) -> PathBuf {
    let script = r#"
import json, sys
from ssh_audit.builtin_policies import BUILTIN_POLICIES as B
prefix = f"Hardened OpenSSH Server v{sys.argv[1]} (version "
name = max((n for n in B if n.startswith(prefix)), key=lambda n: int(n[len(prefix):-1]))
p = B[name]
kex = p["kex"] + [k for k in ["kex-strict-s-v00@openssh.com"] if k not in p["kex"]]
j = ", ".join
print(f'name = "{name}, with Debian\'s strict-KEX backport"')
print(f'version = {p["version"]}')
print(f'host keys = {j(p["host_keys"])}')
print(f'optional host keys = {j(p["optional_host_keys"])}')
print(f'key exchanges = {j(kex)}')
print(f'ciphers = {j(p["ciphers"])}')
print(f'macs = {j(p["macs"])}')
print(f'host_key_sizes = {json.dumps(p["hostkey_sizes"])}')
print(f'dh_modulus_sizes = {json.dumps(p["dh_modulus_sizes"])}')
"#;
    let out = Command::new(common::venv_bin("python3")).args(["-c", script, version]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = dir.join("hardened.txt");
    std::fs::write(&file, &out.stdout).unwrap();
    file
}

/// ssh-audit (PyPI) against the task with [`hardened_policy`]: (passed, its report).
fn ssh_audit(task: &Task, version: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let policy = hardened_policy(version, dir.path());
    let bin = common::venv_bin("ssh-audit");
    let out = task.in_netns(bin.to_str().unwrap()).arg("-P").arg(&policy).arg("127.0.0.1").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_default_policy_passes_ssh_audits_hardened_policy_and_compatible_does_not() {
    let Some(image) = dataplane::image() else { return };
    let version = openssh_version(image);
    let k = keys();
    let users = user("alice", 1001, "upload", &[&k.alice_ed25519.1]);
    let home = home();
    let modern = Task::start(image, &rendered(&users), &host_keys().secret_json, Some(home.path()), Options::default());
    let (passed, report) = ssh_audit(&modern, &version);
    println!("modern:\n{report}");
    assert!(passed, "{report}");
    drop(modern);

    let text =
        manifest(&users, "{hostPath: /srv/sftp}").replace("  logging:", "  security: {policy: compatible}\n  logging:");
    let compatible = render::render(&service(&text), "test");
    let task = Task::start(image, &compatible, &host_keys().secret_json, Some(home.path()), Options::default());
    let (passed, report) = ssh_audit(&task, &version);
    println!("compatible (OpenSSH's defaults, as atmoz ships them):\n{report}");
    assert!(!passed, "OpenSSH's defaults fail the hardened policy:\n{report}");
}

#[test]
fn a_key_only_service_refuses_passwords_and_a_password_service_keeps_them() {
    let Some(image) = dataplane::image() else { return };
    let k = keys();
    let home = home();
    // A password beside keys under `publicKey` is refused before anything runs.
    let keyed = format!(
        "    - {{name: alice, uid: 1001, gid: 100, directories: [upload], keys: [\"{}\"], passwordHash: \"{PASSWORD_HASH}\"}}\n",
        k.alice_ed25519.1
    );
    let text = manifest(&keyed, "{hostPath: /srv/sftp}")
        .replace("  logging:", "  security: {authentication: publicKey}\n  logging:");
    let problems =
        validate::validate(&load::parse_sources(&[load::SourceFile { path: "m.yaml".into(), text }]).unwrap());
    assert!(problems.unwrap_err().to_string().contains("spec.users[0].passwordHash"), "refused at the hash");

    let key_only = rendered(&user("alice", 1001, "upload", &[&k.alice_ed25519.1]));
    let task = start(image, &key_only, home.path());
    assert!(task.sftp("alice", key(&k.alice_ed25519), None, "ls\n").ok);
    let pw = task.sftp("alice", Auth::Password(PASSWORD), None, "ls\n");
    assert!(!pw.ok);
    // sshd offers public keys only: the client never gets to send a password.
    assert!(pw.stderr.contains("Permission denied (publickey)"), "no password method offered: {}", pw.stderr);
    drop(task);

    let task = start(image, &rendered(&password_user()), home.path());
    assert!(task.sftp("carol", Auth::Password(PASSWORD), None, "ls\n").ok, "{}", task.log());
}

#[test]
fn a_users_networks_admit_it_only_from_there_and_leave_the_others_alone() {
    let Some(image) = dataplane::image() else { return };
    let k = keys();
    let alice = format!(
        "    - {{name: alice, uid: 1001, gid: 100, directories: [upload], keys: [\"{}\"], allowedCidrs: [127.0.0.2/32]}}\n",
        k.alice_ed25519.1
    );
    let users = format!("{alice}{}", user("bob", 1002, "upload", &[&k.bob_ecdsa.1]));
    let text = manifest(&users, "{hostPath: /srv/sftp}")
        .replace("allowedCidrs: [192.0.2.0/24]", "allowedCidrs: [192.0.2.0/24, 127.0.0.0/8]");
    let d = render::render(&service(&text), "test");
    let home = home();
    let task = start(image, &d, home.path());

    assert!(task.sftp_from("127.0.0.2", "alice", key(&k.alice_ed25519), None, "ls\n").ok, "{}", task.log());
    let outside = task.sftp_from("127.0.0.1", "alice", key(&k.alice_ed25519), None, "ls\n");
    assert!(!outside.ok, "alice from outside her network: {}", outside.stderr);
    assert!(task.log().contains("not allowed because not listed in AllowUsers"), "{}", task.log());
    for source in ["127.0.0.1", "127.0.0.2"] {
        assert!(task.sftp_from(source, "bob", key(&k.bob_ecdsa), None, "ls\n").ok, "bob from {source}");
    }

    // A user's network outside the service's is refused before anything runs.
    let wide = text.replace("allowedCidrs: [127.0.0.2/32]", "allowedCidrs: [10.0.0.0/8]");
    let src = load::SourceFile { path: "m.yaml".into(), text: wide };
    let problems = validate::validate(&load::parse_sources(&[src]).unwrap()).unwrap_err();
    assert!(problems.to_string().contains("spec.users[0].allowedCidrs[0]: `10.0.0.0/8` is not inside"), "{problems}");
}
