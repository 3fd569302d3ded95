//! `manifests/iam-policy.json` allows every AWS operation the operator calls. The list of
//! calls comes from the operator's own call counter (`--calls-out` for one-shot commands,
//! `aws_api_calls_total` for `run`) after a full converge + run + status + delete.

mod common;

use std::collections::BTreeSet;

use common::{RunProc, World, eventually, operator};

/// SDK service names (as the call counter reports them) → IAM service prefixes.
fn iam_prefix(service: &str) -> String {
    match service {
        "ECS" => "ecs",
        "EC2" => "ec2",
        "Elastic Load Balancing v2" => "elasticloadbalancing",
        "Route 53" => "route53",
        "ServiceDiscovery" => "servicediscovery",
        "Secrets Manager" => "secretsmanager",
        "SQS" => "sqs",
        "DynamoDB" => "dynamodb",
        "EventBridge" => "events",
        other => panic!("unknown service in the call counter: {other}"),
    }
    .to_owned()
}

fn calls_from_file(path: &std::path::Path) -> BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{}:{}", iam_prefix(c["service"].as_str().unwrap()), c["operation"].as_str().unwrap()))
        .collect()
}

fn policy_actions() -> Vec<String> {
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("manifests/iam-policy.json").unwrap()).unwrap();
    let mut out = Vec::new();
    for st in p["Statement"].as_array().unwrap() {
        assert_eq!(st["Effect"], "Allow");
        match &st["Action"] {
            serde_json::Value::String(a) => out.push(a.clone()),
            serde_json::Value::Array(a) => out.extend(a.iter().map(|x| x.as_str().unwrap().to_owned())),
            other => panic!("bad Action {other}"),
        }
    }
    out
}

fn allowed(action: &str, policy: &[String]) -> bool {
    policy.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => p == action,
    })
}

#[test]
fn the_iam_policy_allows_every_call_the_operator_makes() {
    let w = World::new();
    let (moto, dir) = (&w.moto, &w.dir);
    let m = dir.path().to_string_lossy().into_owned();
    let calls = dir.path().join("calls.json");
    let calls_s = calls.to_string_lossy().into_owned();
    let mut used = BTreeSet::new();

    let (code, out, err) = operator(&moto.url, &["converge", "--ensure-events", "--calls-out", &calls_s, "-f", &m]);
    assert_eq!(code, 0, "{out}{err}");
    used.extend(calls_from_file(&calls));
    let queue_url =
        out.lines().find_map(|l| l.strip_prefix("Events queue (for `run --events-queue-url`): ")).unwrap().to_owned();

    w.create_lease_table("lease");
    // A task, so run's pass reads placement too; an event, so it reads the queue.
    w.start_task("campus-sftp", 0);
    let mut run = RunProc::start(&moto.url, &["-f", &m, "--lease-table", "lease", "--events-queue-url", &queue_url]);
    eventually("ready", || run.get("/readyz").is_some_and(|(s, _)| s == 200));
    w.put_task_event("campus-sftp", "RUNNING");
    eventually("event handled", || {
        run.metric("sftp_operator_events_received_total{result=\"handled\"}").unwrap_or(0.0) >= 1.0
    });
    let (_, metrics) = run.get("/metrics").unwrap();
    for line in metrics.lines().filter(|l| l.starts_with("sftp_operator_aws_api_calls_total{")) {
        let label =
            |k: &str| line.split(&format!("{k}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
        used.insert(format!("{}:{}", iam_prefix(&label("service")), label("operation")));
    }
    run.signal("-TERM");
    assert_eq!(run.child.wait().unwrap().code(), Some(0));
    used.insert("dynamodb:DeleteItem".into()); // the lease release, after the last scrape

    let (code, out, err) = operator(&moto.url, &["status", "-f", &m]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = operator(&moto.url, &["delete", "--calls-out", &calls_s, "-f", &m]);
    assert_eq!(code, 0, "{out}{err}");
    used.extend(calls_from_file(&calls));

    let policy = policy_actions();
    let missing: Vec<&String> = used.iter().filter(|a| !allowed(a, &policy)).collect();
    assert!(missing.is_empty(), "manifests/iam-policy.json lacks: {missing:?}\n(all calls: {used:?})");
    // And nothing broad: no service-wide wildcards.
    assert!(policy.iter().all(|a| !a.ends_with(":*")), "{policy:?}");
    println!("operations the operator called: {}", used.len());
}
