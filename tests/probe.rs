//! `sftp-operator probe` against the real data plane: the task the operator rendered (with the
//! probe account) run on atmoz's image with OpenSSH, its secrets converged into moto, and the
//! operator's own SSH/SFTP client logging in. Each broken case fails with its reason.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::dataplane::{self, Options, Task};
use common::{RunProc, World, aws_cli, eventually};
use sftp_operator::reconcile::{self, Reach};
use sftp_operator::render::Desired;

/// The efs example with the probe account, converged; the rendering and the host-key secret's
/// value as ECS would hand them to a task.
struct Converged {
    world: World,
    manifest: String,
    desired: Desired,
    host_keys: String,
}

fn converged() -> Converged {
    let world = World::new();
    let manifest = world.manifest("probed.yaml");
    let text = std::fs::read_to_string(world.manifest("efs.yaml")).unwrap();
    std::fs::write(&manifest, format!("{text}  probe: {{enabled: true}}\n")).unwrap();
    let (code, out, err, _) = world.run(&["converge", "-f", &manifest]);
    assert_eq!(code, 0, "converge:\n{out}{err}");
    assert!(out.contains("+ probe-key secret sftp-operator/efs-drop/probe-key"), "{out}");
    let (code, out, _, ops) = world.run(&["converge", "-f", &manifest]);
    assert_eq!((code, common::Proxy::mutating(&ops)), (0, vec![]), "a second converge changes nothing:\n{out}");

    let services = validated(&manifest);
    let clients = common::clients(&world.proxy, &world.endpoint);
    let options = reconcile::Options { owner: "sftp-operator".into(), adopt: false, prune: false };
    let prepared = world.proxy.block_on(reconcile::prepare(&clients, &services, &options, Reach::default())).unwrap();
    let desired = prepared.desired.into_iter().next().unwrap();
    let secret = aws_cli(
        &world.endpoint,
        &["secretsmanager", "get-secret-value", "--secret-id", "sftp-operator/efs-drop/host-keys"],
    );
    let host_keys = secret["SecretString"].as_str().unwrap().to_owned();
    Converged { world, manifest, desired, host_keys }
}

/// The services of the manifest file at `path`.
fn validated(path: &str) -> Vec<sftp_operator::validate::Service> {
    let text = std::fs::read_to_string(path).unwrap();
    sftp_operator::validate::load_and_validate(&[sftp_operator::load::SourceFile { path: path.into(), text }]).unwrap()
}

/// A `/home` volume for the task, world-traversable like a host directory.
fn home() -> tempfile::TempDir {
    let h = tempfile::tempdir().unwrap();
    std::fs::set_permissions(h.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    h
}

fn start(image: &Path, d: &Desired, host_keys: &str, home: &Path) -> Task {
    Task::start(image, d, host_keys, Some(home), Options::default())
}

/// `probe --endpoint ADDR` for the converged service: (exit code, stdout, stderr).
fn probe(c: &Converged, endpoint: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["probe", "-f", &c.manifest, "--endpoint", endpoint];
    args.extend(extra);
    let (code, out, err, _) = c.world.run(&args);
    (code, out, err)
}

#[test]
fn the_probe_logs_in_writes_reads_back_and_deletes_through_the_real_server() {
    let Some(image) = dataplane::image() else { return };
    let c = converged();
    let home = home();
    let task = start(image, &c.desired, &c.host_keys, home.path());
    let endpoint = task.publish();

    let (code, out, err) = probe(&c, &endpoint, &[]);
    println!("{out}"); // the step times, for the record
    assert_eq!(code, 0, "{out}{err}\n{}", task.log());
    assert!(out.starts_with(&format!("efs-drop given {endpoint}  ok  ")), "{out}");
    for step in ["connect", "authenticate", "session", "write", "read", "delete"] {
        let timed = regex::Regex::new(&format!(r"[(,] ?{step} \d+\.\d{{3}}s")).unwrap();
        assert!(timed.is_match(&out), "{step}'s time: {out}");
    }
    assert!(task.log().contains("Accepted publickey for sftp-probe"), "{}", task.log());
    let dir = home.path().join("sftp-probe/probe");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the probe's file is deleted");

    let (code, out, _) = probe(&c, &endpoint, &["-o", "json"]);
    assert_eq!(code, 0);
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reports[0]["ok"], true);
    assert_eq!(reports[0]["endpoint"], endpoint.as_str());
    assert_eq!(reports[0]["steps"].as_array().unwrap().len(), 6, "{out}");
}

#[test]
fn a_key_the_server_does_not_authorise_fails_as_login_refused() {
    let Some(image) = dataplane::image() else { return };
    let c = converged();
    // The task authorises another key for the probe account than the one in its secret.
    let service = validated(&c.manifest).remove(0);
    let other = sftp_operator::sshkeys::generate_probe_key("another").unwrap();
    let wrong = sftp_operator::render::render_probed(&service, "sftp-operator", Some(&other.public), None);
    let home = home();
    let task = start(image, &wrong, &c.host_keys, home.path());

    let (code, out, _) = probe(&c, &task.publish(), &["-o", "json"]);
    assert_eq!(code, 1, "{out}");
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reports[0]["reason"], "login-refused", "{out}");
    assert!(!out.contains("PRIVATE KEY"), "no key material in the output");
}

#[test]
fn an_unwritable_probe_directory_fails_at_write() {
    let Some(image) = dataplane::image() else { return };
    let c = converged();
    let home = home();
    let task = start(image, &c.desired, &c.host_keys, home.path());
    // The storage went read-only for the account (a root-owned directory, as after a bad restore).
    let dir = home.path().join("sftp-probe/probe");
    std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (code, out, _) = probe(&c, &task.publish(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED: write: "), "{out}");
    assert!(out.to_lowercase().contains("permission denied"), "{out}");
}

#[test]
fn a_task_with_other_host_keys_fails_as_host_key_changed() {
    let Some(image) = dataplane::image() else { return };
    let c = converged();
    let other = sftp_operator::sshkeys::generate_host_keys("impostor", 3072).unwrap();
    let home = home();
    let task = start(image, &c.desired, &other.secret_json, home.path());

    let (code, out, _) = probe(&c, &task.publish(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED: host key changed: the server offered SHA256:"), "{out}");
    let offered = sftp_operator::sshkeys::parse_public_key(&other.public_keys[0]).unwrap().fingerprint;
    assert!(out.contains(&offered), "names the key the server offered ({offered}): {out}");
    assert!(!task.log().contains("Accepted publickey"), "nothing was sent to an impostor:\n{}", task.log());
}

/// `run` probing the converged service at `endpoint` every second, and the name of one of its
/// probe series for that endpoint.
fn probing(c: &Converged, endpoint: &str) -> (RunProc, impl Fn(&str) -> String) {
    let run = RunProc::start(
        &c.world.endpoint,
        &["-f", &c.manifest, "--probe-interval", "1s", "--probe-endpoint", &format!("efs-drop={endpoint}")],
    );
    let endpoint = endpoint.to_owned();
    (run, move |name: &str| format!("sftp_operator_{name}{{endpoint=\"{endpoint}\",service=\"efs-drop\"}}"))
}

#[test]
fn run_probes_on_its_cadence_and_prometheus_scrapes_the_outcome() {
    let Some(image) = dataplane::image() else { return };
    let c = converged();
    let good_home = home();
    let task = start(image, &c.desired, &c.host_keys, good_home.path());
    let endpoint = task.publish();
    let (run, series) = probing(&c, &endpoint);

    eventually("the probe passes", || run.metric(&series("probe_success")) == Some(1.0));
    assert_eq!(run.metric(&series("host_key_mismatch")), Some(0.0));
    let (_, body) = run.get("/metrics").unwrap();
    assert!(body.contains("sftp_operator_probe_duration_seconds_count{endpoint="), "{body}");
    assert!(!body.contains("PRIVATE KEY"), "no key material in metrics");
    if let Some(prom) = common::Prometheus::scraping(&run) {
        eventually("Prometheus has scraped the probe", || {
            prom.value("sftp_operator_probe_success{service=\"efs-drop\"}") == Some(1.0)
        });
    }
    drop(run);

    // The same service answered by a server with other host keys: a mismatch, never a login.
    let other = sftp_operator::sshkeys::generate_host_keys("impostor", 3072).unwrap();
    let home2 = home();
    let impostor = start(image, &c.desired, &other.secret_json, home2.path());
    let endpoint = impostor.publish();
    let (run, series) = probing(&c, &endpoint);
    eventually("the mismatch is exported", || run.metric(&series("host_key_mismatch")) == Some(1.0));
    assert_eq!(run.metric(&series("probe_success")), Some(0.0));
    let failures = "sftp_operator_probe_failures_total{reason=\"host-key-changed\",service=\"efs-drop\"}";
    assert!(run.metric(failures).is_some_and(|n| n >= 1.0));
    assert!(!impostor.log().contains("Accepted publickey"), "{}", impostor.log());
}

/// ListSecrets can lag minutes behind a creation: a pass that does not see the probe-key secret
/// listed reads it by name and renders its key, instead of generating another one that no
/// secret holds (a task definition authorising a key nobody has, and a new revision each pass).
#[test]
fn a_probe_secret_missing_from_the_listing_is_read_by_name_not_made_again() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let hide = Arc::new(AtomicBool::new(false));
    let hiding = hide.clone();
    let world = World::rewriting(move |op, body| {
        if op == "ListSecrets" && hiding.load(Ordering::Relaxed) {
            let list = body["SecretList"].as_array_mut().unwrap();
            list.retain(|s| !s["Name"].as_str().unwrap_or_default().ends_with("/probe-key"));
        }
    });
    let manifest = world.manifest("probed.yaml");
    let text = std::fs::read_to_string(world.manifest("efs.yaml")).unwrap();
    std::fs::write(&manifest, format!("{text}  probe: {{enabled: true}}\n")).unwrap();
    let (code, out, err, _) = world.run(&["converge", "-f", &manifest]);
    assert_eq!(code, 0, "{out}{err}");

    hide.store(true, Ordering::Relaxed);
    let (code, out, err, ops) = world.run(&["converge", "-f", &manifest]);
    assert_eq!((code, common::Proxy::mutating(&ops)), (0, vec![]), "nothing to change:\n{out}{err}");
    assert!(ops.iter().any(|o| o == "DescribeSecret"), "{ops:?}");
}
