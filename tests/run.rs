//! `sftp-operator run` against the emulator: manifest watching, ECS events through
//! EventBridge → SQS, leader election on DynamoDB, graceful shutdown, metrics.

mod common;

use common::{Proxy, RunProc, World, aws_cli, edit_file as edit, eventually};

impl World {
    /// A manifest directory holding only the given examples.
    fn manifests(&self, names: &[&str]) -> std::path::PathBuf {
        let d = self.dir.path().join("manifests");
        std::fs::create_dir_all(&d).unwrap();
        for n in names {
            std::fs::copy(self.dir.path().join(n), d.join(n)).unwrap();
        }
        d
    }
}

#[test]
fn run_converges_follows_manifest_edits_and_keeps_the_last_good_set() {
    let w = World::new();
    let dir = w.manifests(&["efs.yaml", "hostpath.yaml"]);
    let run =
        RunProc::start(&w.proxy.url, &["-f", dir.to_str().unwrap(), "--resync", "1h", "--manifest-poll", "200ms"]);
    eventually("readyz", || run.get("/readyz").is_some_and(|(s, _)| s == 200));
    assert_eq!(w.desired_count("efs-drop"), 1);
    assert_eq!(w.desired_count("hostpath-drop"), 1);
    assert!(run.metric("sftp_operator_reconcile_total{result=\"success\",service=\"efs-drop\"}").unwrap_or(0.0) >= 1.0);

    // An edit is picked up without waiting for the (1 h) resync.
    edit(&dir.join("efs.yaml"), "  port: 30010\n", "  port: 30010\n  desiredCount: 2\n");
    eventually("desiredCount 2 after the edit", || w.desired_count("efs-drop") == 2);

    // An invalid edit is rejected whole: counted, and the last good set stays in force.
    edit(&dir.join("efs.yaml"), "desiredCount: 2", "desiredCount: 2\n  bogus: true");
    eventually("manifest error counted", || {
        run.metric("sftp_operator_manifest_load_errors_total").unwrap_or(0.0) >= 1.0
    });
    assert_eq!(w.desired_count("efs-drop"), 2);
    assert_eq!(run.get("/healthz").map(|r| r.0), Some(200));

    // Metrics: valid exposition format, and through promtool where it is installed.
    let (_, body) = run.get("/metrics").unwrap();
    assert!(body.contains("sftp_operator_aws_api_calls_total{"), "{body}");
    assert!(body.contains("sftp_operator_build_info{version="), "{body}");
    assert!(!body.contains("PRIVATE KEY") && !body.contains("ssh-ed25519"), "no key material in metrics");
    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(body.as_bytes())?;
            c.wait_with_output()
        })
    {
        // promtool exits 1 on errors; lint warnings alone keep exit 0... print them either way.
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        assert!(std::env::var_os("CI").is_none(), "promtool is missing: .ci/run installs Debian's prometheus package");
    }
    scraped_by_prometheus(&run);
}

/// A real Prometheus server (Debian's package) on loopback scrapes the operator; its query
/// API must return reconcile totals above zero.
fn scraped_by_prometheus(run: &RunProc) {
    let Some(prom) = common::Prometheus::scraping(run) else { return };
    eventually("Prometheus has scraped sftp_operator_reconcile_total", || {
        prom.value("sum(sftp_operator_reconcile_total)").is_some_and(|x| x > 0.0)
    });
}

#[test]
fn a_configmap_style_symlink_swap_triggers_a_reconcile() {
    let w = World::new();
    let all = w.manifests(&["efs.yaml"]);
    // Kubernetes mounts a ConfigMap as `..data -> ..2024_x` with `file -> ..data/file`.
    let mount = w.dir.path().join("mount");
    std::fs::create_dir_all(mount.join("..v1")).unwrap();
    std::fs::copy(all.join("efs.yaml"), mount.join("..v1/efs.yaml")).unwrap();
    std::os::unix::fs::symlink("..v1", mount.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/efs.yaml", mount.join("efs.yaml")).unwrap();
    let run =
        RunProc::start(&w.proxy.url, &["-f", mount.to_str().unwrap(), "--resync", "1h", "--manifest-poll", "30s"]);
    eventually("readyz", || run.get("/readyz").is_some_and(|(s, _)| s == 200));
    assert_eq!(w.desired_count("efs-drop"), 1);

    std::fs::create_dir_all(mount.join("..v2")).unwrap();
    let text = std::fs::read_to_string(mount.join("..v1/efs.yaml")).unwrap();
    std::fs::write(mount.join("..v2/efs.yaml"), text.replace("  port: 30010\n", "  port: 30010\n  desiredCount: 3\n"))
        .unwrap();
    std::os::unix::fs::symlink("..v2", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    // The poll is 30 s: seeing the change sooner means inotify caught the swap.
    eventually("desiredCount 3 after the swap", || w.desired_count("efs-drop") == 3);
}

#[test]
fn an_ecs_event_through_eventbridge_moves_the_a_record_without_a_resync() {
    let w = World::new();
    let dir = w.manifests(&["campus.yaml"]);
    let q = aws_cli(&w.endpoint, &["sqs", "create-queue", "--queue-name", "sftp-operator-events"]);
    let queue_url = q["QueueUrl"].as_str().unwrap().to_owned();
    let attrs = aws_cli(
        &w.endpoint,
        &["sqs", "get-queue-attributes", "--queue-url", &queue_url, "--attribute-names", "QueueArn"],
    );
    let queue_arn = attrs["Attributes"]["QueueArn"].as_str().unwrap().to_owned();
    let pattern = r#"{"source":["aws.ecs"],"detail-type":["ECS Task State Change"]}"#;
    aws_cli(&w.endpoint, &["events", "put-rule", "--name", "sftp-operator-ecs-tasks", "--event-pattern", pattern]);
    aws_cli(
        &w.endpoint,
        &[
            "events",
            "put-targets",
            "--rule",
            "sftp-operator-ecs-tasks",
            "--targets",
            &format!("Id=sqs,Arn={queue_arn}"),
        ],
    );

    let run = RunProc::start(
        &w.proxy.url,
        &["-f", dir.to_str().unwrap(), "--resync", "1h", "--events-queue-url", &queue_url],
    );
    eventually("readyz", || run.get("/readyz").is_some_and(|(s, _)| s == 200));

    // Play ECS: a task starts on instance A, and ECS emits its event.
    let inst = |i: usize| w.instance(i);
    let start = |i: usize| w.start_task("campus-sftp", i);
    let event = |status: &str| w.put_task_event("campus-sftp", status);
    let t = start(0);
    event("RUNNING");
    eventually("A record = instance A", || w.a_values("sftp-direct.example.edu.") == vec![inst(0).1]);

    // Failover: the task stops, another starts on instance B.
    w.stop_task(&t);
    start(1);
    event("RUNNING");
    eventually("A record = instance B", || w.a_values("sftp-direct.example.edu.") == vec![inst(1).1]);

    // A poison message is deleted and counted; the loop keeps running.
    aws_cli(&w.endpoint, &["sqs", "send-message", "--queue-url", &queue_url, "--message-body", "{not json"]);
    eventually("malformed counted", || {
        run.metric("sftp_operator_events_received_total{result=\"malformed\"}").unwrap_or(0.0) >= 1.0
    });
    eventually("queue drained", || {
        let a = aws_cli(
            &w.endpoint,
            &["sqs", "get-queue-attributes", "--queue-url", &queue_url, "--attribute-names", "All"],
        );
        a["Attributes"]["ApproximateNumberOfMessages"] == "0"
            && a["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"
    });
    assert_eq!(run.get("/healthz").map(|r| r.0), Some(200));
}

#[test]
fn only_the_leader_mutates_and_a_standby_takes_over_when_it_dies() {
    let w = World::new();
    let dir = w.manifests(&["efs.yaml"]);
    w.create_lease_table("sftp-operator-lease");
    let proxy_b = Proxy::start(&w.endpoint);
    let args = [
        "-f",
        dir.to_str().unwrap(),
        "--resync",
        "1h",
        "--manifest-poll",
        "200ms",
        "--lease-table",
        "sftp-operator-lease",
        "--lease-duration",
        "3s",
    ];
    let a = RunProc::start(&w.proxy.url, &args);
    eventually("a leads", || a.metric("sftp_operator_leader") == Some(1.0));
    let b = RunProc::start(&proxy_b.url, &args);
    eventually("b ready as standby", || b.get("/readyz").is_some_and(|(s, _)| s == 200));
    assert_eq!(b.metric("sftp_operator_leader"), Some(0.0));
    eventually("a converged", || w.desired_count("efs-drop") == 1);
    w.proxy.take();
    proxy_b.take();

    edit(&dir.join("efs.yaml"), "  port: 30010\n", "  port: 30010\n  desiredCount: 2\n");
    eventually("the leader applied the edit", || w.desired_count("efs-drop") == 2);
    let b_mutating: Vec<String> = Proxy::mutating(&proxy_b.take()).into_iter().filter(|o| o != "UpdateItem").collect();
    assert_eq!(b_mutating, Vec::<String>::new(), "the standby must not change AWS");
    assert!(Proxy::mutating(&w.proxy.take()).contains(&"UpdateService".to_owned()));

    // SIGKILL the leader: no release, so b takes over once the lease expires.
    a.signal("-KILL");
    eventually("b leads", || b.metric("sftp_operator_leader") == Some(1.0));
    edit(&dir.join("efs.yaml"), "desiredCount: 2", "desiredCount: 3");
    eventually("the new leader applied the edit", || w.desired_count("efs-drop") == 3);
}

#[test]
fn sigterm_exits_zero_and_releases_the_lease() {
    let w = World::new();
    let dir = w.manifests(&["efs.yaml"]);
    w.create_lease_table("lease");
    let mut run = RunProc::start(&w.proxy.url, &["-f", dir.to_str().unwrap(), "--lease-table", "lease"]);
    eventually("leader", || run.metric("sftp_operator_leader") == Some(1.0));
    let items = aws_cli(&w.endpoint, &["dynamodb", "scan", "--table-name", "lease"]);
    assert_eq!(items["Count"], 1);
    run.signal("-TERM");
    let status = run.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let items = aws_cli(&w.endpoint, &["dynamodb", "scan", "--table-name", "lease"]);
    assert_eq!(items["Count"], 0, "lease released: {items}");
}

/// A resync is one batched pass: over one resync period, exactly the AWS operations of one
/// no-op `converge` of the same services (one observe for all of them), not one observe per
/// service.
#[test]
fn a_resync_issues_the_calls_of_one_batched_converge() {
    let w = World::new();
    let dir = w.manifests(&["campus.yaml", "efs.yaml", "hostpath.yaml", "s3.yaml"]);
    let d = dir.to_str().unwrap();
    let (code, out, err, _) = w.run(&["converge", "-f", d]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err, mut converge) = w.run(&["converge", "-f", d]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(Proxy::mutating(&converge), Vec::<String>::new(), "in sync");

    let run = RunProc::start(&w.proxy.url, &["-f", d, "--resync", "3s"]);
    let passes = || run.metric("sftp_operator_reconcile_total{result=\"success\",service=\"efs-drop\"}").unwrap_or(0.0);
    // The first pass (a deep one) is done once ready; the next one is the first resync.
    eventually("readyz", || run.get("/readyz").is_some_and(|(s, _)| s == 200));
    let first = passes();
    w.proxy.take();
    eventually("one resync", || passes() > first);
    let mut resync = w.proxy.take();
    let count = |ops: &[String], op: &str| ops.iter().filter(|o| *o == op).count();
    assert_eq!(count(&resync, "DescribeServices"), count(&converge, "DescribeServices"), "{resync:?}");
    converge.sort();
    resync.sort();
    assert_eq!(resync, converge);
}
