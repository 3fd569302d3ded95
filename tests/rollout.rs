//! Rollouts followed to their outcome — `converge --wait`, `status` and `run` — against ECS
//! deployments that moto cannot play (its deployments never progress). The proxy rewrites each
//! DescribeServices answer that has `efs-drop` on its new revision into the next step of a real
//! rollout: one that completes, and one that the circuit breaker rolls back.

mod common;

use std::sync::{Arc, Mutex};

use common::{RunProc, World, eventually};
use serde_json::{Value, json};

const SERVICE: &str = "efs-drop";
const BREAKER: &str = "ECS deployment circuit breaker: tasks failed to start.";

/// How the rollout of revision 2 goes.
#[derive(Clone, Copy)]
enum Script {
    Completes,
    RollsBack,
}

fn deployment(id: &str, status: &str, td: &str, state: &str, running: i32) -> Value {
    let reason = match state {
        "FAILED" => BREAKER.to_owned(),
        _ => format!("ECS deployment {id} {}.", state.to_lowercase().replace('_', " ")),
    };
    json!({
        "id": id, "status": status, "taskDefinition": td, "desiredCount": 1, "pendingCount": 1 - running,
        "runningCount": running, "failedTasks": if state == "FAILED" { 3 } else { 0 },
        "rolloutState": state, "rolloutStateReason": reason, "launchType": "EC2",
    })
}

/// The service as ECS reports it at `step` of its rollout of `ours` over `previous`.
fn play(script: Script, step: usize, service: &mut Value, ours: &str, previous: &str) {
    let d = deployment;
    let (deployments, runs) = match (script, step) {
        (Script::Completes, 0) => (
            vec![d("ecs-svc/2", "PRIMARY", ours, "IN_PROGRESS", 0), d("ecs-svc/1", "ACTIVE", previous, "COMPLETED", 1)],
            ours,
        ),
        (Script::Completes, 1) => (
            vec![d("ecs-svc/2", "PRIMARY", ours, "IN_PROGRESS", 1), d("ecs-svc/1", "ACTIVE", previous, "COMPLETED", 0)],
            ours,
        ),
        (Script::Completes, _) => (vec![d("ecs-svc/2", "PRIMARY", ours, "COMPLETED", 1)], ours),
        (Script::RollsBack, 0) => (
            vec![d("ecs-svc/2", "PRIMARY", ours, "IN_PROGRESS", 0), d("ecs-svc/1", "ACTIVE", previous, "COMPLETED", 1)],
            ours,
        ),
        // The circuit breaker: ours FAILED, a new PRIMARY deployment of the previous revision.
        (Script::RollsBack, 1) => (
            vec![d("ecs-svc/3", "PRIMARY", previous, "IN_PROGRESS", 0), d("ecs-svc/2", "ACTIVE", ours, "FAILED", 0)],
            previous,
        ),
        // The rollback completes: not our success.
        (Script::RollsBack, 2) => (
            vec![d("ecs-svc/3", "PRIMARY", previous, "COMPLETED", 1), d("ecs-svc/2", "ACTIVE", ours, "FAILED", 0)],
            previous,
        ),
        // ECS drops our deployment from the list.
        (Script::RollsBack, _) => (vec![d("ecs-svc/3", "PRIMARY", previous, "COMPLETED", 1)], previous),
    };
    service["deployments"] = json!(deployments);
    service["taskDefinition"] = json!(runs);
}

/// A world whose proxy plays `script` for `efs-drop`: each DescribeServices answer in which moto
/// has the service on revision 2 is the script's next step; answers before pass unchanged.
fn world(script: Script) -> World {
    let step = Arc::new(Mutex::new(0));
    World::rewriting(move |op, body| {
        if op != "DescribeServices" {
            return;
        }
        for service in body["services"].as_array_mut().into_iter().flatten() {
            let td = service["taskDefinition"].as_str().unwrap_or_default().to_owned();
            let Some(family) = td.strip_suffix(":2").filter(|_| service["serviceName"] == SERVICE) else { continue };
            let mut step = step.lock().unwrap();
            play(script, *step, service, &td, &format!("{family}:1"));
            *step += 1;
        }
    })
}

/// A key change: the next converge registers revision 2 and rolls the service.
fn new_revision(w: &World) {
    let dave = std::fs::read_to_string(common::root().join("tests/fixtures/keys/dave.pub")).unwrap();
    let bob = std::fs::read_to_string(common::root().join("tests/fixtures/keys/bob.pub")).unwrap();
    w.edit("efs.yaml", dave.trim(), bob.trim());
}

#[test]
fn converge_wait_follows_the_deployment_to_completion_and_exits_0() {
    let w = world(Script::Completes);
    let f = w.converged("efs.yaml");
    new_revision(&w);
    let (code, out, err, ops) = w.run(&["converge", "--wait", "--wait-poll", "10ms", "-f", &f]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("efs-drop: deployment of sftp-efs-drop:2 completed"), "{err}");
    // The plan's read, then the rollout's three steps: in progress twice, completed.
    assert_eq!(ops.iter().filter(|o| *o == "DescribeServices").count(), 4, "{ops:?}");
}

#[test]
fn converge_wait_exits_1_naming_the_reason_and_the_rollback_and_status_shows_it() {
    let w = world(Script::RollsBack);
    let f = w.converged("efs.yaml");
    new_revision(&w);
    let (code, out, err, _) = w.run(&["converge", "--wait", "--wait-poll", "10ms", "-f", &f]);
    assert_eq!(code, 1, "{out}{err}");
    let failed = format!("deployment of sftp-efs-drop:2 failed ({BREAKER}), rolled back to sftp-efs-drop:1");
    assert!(err.contains(&format!("error: efs-drop: {failed}")), "{out}{err}");

    // The rollback has completed; our deployment is still listed as FAILED.
    let (code, out, err, _) = w.run(&["status", "-f", &f]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("Ready:  false ({failed})")), "{out}");
    // Then ECS drops it from the list: still failed, and still rolled back.
    let (_, out, _, _) = w.run(&["status", "-f", &f]);
    let gone = "deployment of sftp-efs-drop:2 failed (no longer listed by ECS), rolled back to sftp-efs-drop:1";
    assert!(out.contains(&format!("Ready:  false ({gone})")), "{out}");
}

#[test]
fn run_counts_a_failed_rollout_once_across_passes() {
    let w = world(Script::RollsBack);
    let f = w.converged("efs.yaml");
    new_revision(&w);
    let run = RunProc::start(&w.proxy.url, &["-f", &f, "--resync", "2s", "--rollout-poll", "100ms"]);
    let failed = "sftp_operator_rollout_failed_total{service=\"efs-drop\"}";
    eventually("the failed rollout counted", || run.metric(failed) == Some(1.0));
    // Later passes see the same failed deployment (then only its rollback): not counted again,
    // and the failed rendering is not rolled out again on the timer.
    w.proxy.take();
    let passes = || run.metric("sftp_operator_reconcile_total{result=\"success\",service=\"efs-drop\"}").unwrap_or(0.0);
    let seen = passes();
    eventually("three more passes", || passes() >= seen + 3.0);
    assert_eq!(run.metric(failed), Some(1.0));
    let ops = w.proxy.take();
    assert!(ops.iter().any(|o| o == "DescribeServices"), "{ops:?}");
    assert!(!ops.iter().any(|o| o == "UpdateService"), "the failed rendering is held: {ops:?}");
}
