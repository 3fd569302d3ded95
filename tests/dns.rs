//! DNS against the emulator. The tests play ECS's part openly: moto schedules nothing, so
//! they start tasks in `service:<name>` on chosen container instances and stop them.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{Proxy, World, aws_cli, clients};

fn campus(w: &World) -> String {
    w.manifest("campus.yaml")
}

#[test]
fn a_running_task_is_published_with_its_owner_txt_sshfp_and_the_nlb_alias() {
    let w = World::new();
    assert_eq!(w.run(&["converge", "-f", &campus(&w)]).0, 0);
    w.start_task("campus-sftp", 0);
    let (code, out, _, ops) = w.run(&["converge", "-f", &campus(&w)]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(Proxy::mutating(&ops), vec!["ChangeResourceRecordSets".to_owned()], "{out}");

    let (_, ip_a) = w.instance(0);
    assert_eq!(w.a_values("sftp-direct.example.edu."), vec![ip_a]);
    let records = w.records("sftp-direct.example.edu.");
    let txt = records.iter().find(|r| r.0 == "TXT").expect("TXT owner record");
    assert_eq!(
        txt.1,
        vec![
            "\"heritage=sftp-operator,sftp-operator/owner=sftp-operator,sftp-operator/service=campus-sftp\"".to_owned()
        ]
    );

    // SSHFP must equal what ssh-keygen computes for the host keys in the secret.
    let secret = aws_cli(
        &w.endpoint,
        &["secretsmanager", "get-secret-value", "--secret-id", "sftp-operator/campus-sftp/host-keys"],
    );
    let keys: serde_json::Value = serde_json::from_str(secret["SecretString"].as_str().unwrap()).unwrap();
    let mut expected = BTreeSet::new();
    for alg in ["ed25519", "rsa"] {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, keys[alg].as_str().unwrap()).unwrap();
        let mut perms = std::fs::metadata(&key).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        std::fs::set_permissions(&key, perms).unwrap();
        let public = Command::new("ssh-keygen").args(["-y", "-f"]).arg(&key).output().unwrap();
        std::fs::write(dir.path().join("k.pub"), &public.stdout).unwrap();
        let r = Command::new("ssh-keygen").args(["-r", "h", "-f"]).arg(dir.path().join("k.pub")).output().unwrap();
        for line in String::from_utf8(r.stdout).unwrap().lines() {
            // "h IN SSHFP 4 2 abcd..." — keep the SHA-256 (type 2) ones.
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 6 && f[4] == "2" {
                expected.insert(format!("{} {} {}", f[3], f[4], f[5]));
            }
        }
    }
    let sshfp = records.iter().find(|r| r.0 == "SSHFP").expect("SSHFP records");
    assert_eq!(sshfp.1.iter().cloned().collect::<BTreeSet<_>>(), expected);

    let alias = w.records("sftp.example.edu.").into_iter().find(|r| r.0 == "A").unwrap();
    let lb_dns = w.ids["loadBalancerDns"].as_str().unwrap();
    assert_eq!(alias.2.as_deref().map(|d| d.trim_end_matches('.')), Some(lb_dns));

    // Nothing moved: no Route 53 write.
    let (code, _, _, ops) = w.run(&["converge", "-f", &campus(&w)]);
    assert_eq!(code, 0);
    assert!(ops.iter().any(|o| o == "ListResourceRecordSets"), "{ops:?}");
    assert_eq!(Proxy::mutating(&ops), Vec::<String>::new());
}

#[test]
fn two_tasks_give_two_values_and_a_stopped_one_leaves() {
    let w = World::new();
    assert_eq!(w.run(&["converge", "-f", &campus(&w)]).0, 0);
    let t0 = w.start_task("campus-sftp", 0);
    w.start_task("campus-sftp", 1);
    assert_eq!(w.run(&["converge", "-f", &campus(&w)]).0, 0);
    let (_, a) = w.instance(0);
    let (_, b) = w.instance(1);
    let mut both = vec![a, b.clone()];
    both.sort();
    assert_eq!(w.a_values("sftp-direct.example.edu."), both);
    w.stop_task(&t0);
    let (code, out, _, _) = w.run(&["converge", "-f", &campus(&w)]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(w.a_values("sftp-direct.example.edu."), vec![b.clone()]);

    // No task at all: the last A record stays (an empty answer is worse), and status says so.
    let c = clients(&w.proxy, &w.endpoint);
    w.proxy.block_on(async {
        let tasks = c.ecs.list_tasks().cluster("sftp").send().await.unwrap();
        for t in tasks.task_arns() {
            // moto lists stopped tasks too and fails to stop one twice: ignore that.
            let _ = c.ecs.stop_task().cluster("sftp").task(t).send().await;
        }
    });
    assert_eq!(w.run(&["converge", "-f", &campus(&w)]).0, 0);
    assert_eq!(w.a_values("sftp-direct.example.edu."), vec![b]);
    let (_, out, _, _) = w.run(&["status", "-f", &campus(&w)]);
    assert!(out.contains("keeping the last A record"), "{out}");
}

#[test]
fn a_foreign_a_record_is_a_conflict_and_left_untouched() {
    let w = World::new();
    let batch = r#"{"Changes":[{"Action":"CREATE","ResourceRecordSet":{"Name":"sftp-direct.example.edu.","Type":"A","TTL":300,"ResourceRecords":[{"Value":"192.0.2.99"}]}}]}"#;
    aws_cli(
        &w.endpoint,
        &["route53", "change-resource-record-sets", "--hosted-zone-id", &w.zone(), "--change-batch", batch],
    );
    assert_eq!(w.run(&["converge", "-f", &campus(&w)]).0, 0);
    w.start_task("campus-sftp", 0);
    let (code, out, _, _) = w.run(&["plan", "-f", &campus(&w)]);
    // A conflict is reported, but it is not a pending change: converge would not touch it.
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("! dns record sftp-direct.example.edu."), "{out}");
    assert_eq!(w.run(&["converge", "-f", &campus(&w)]).0, 0);
    assert_eq!(w.a_values("sftp-direct.example.edu."), vec!["192.0.2.99".to_owned()]);
    assert!(
        w.records("sftp-direct.example.edu.").iter().all(|r| r.0 != "TXT"),
        "no owner TXT written on a foreign name"
    );
    let (_, out, _, _) = w.run(&["status", "-f", &campus(&w)]);
    assert!(out.contains("conflict: dns record"), "{out}");
}

#[test]
fn a_batch_with_one_bad_change_still_lands_the_good_ones() {
    use sftp_operator::dns::{RecordAction, RecordChange, RecordSet};
    use sftp_operator::plan::{Action, Change, Kind, Op, Plan};
    let w = World::new();
    let c = clients(&w.proxy, &w.endpoint);
    let change = |name: &str, action, values: &[&str]| Change {
        service: "s".into(),
        kind: Kind::DnsRecord,
        name: name.into(),
        action: Action::Create,
        diff: vec![],
        reason: None,
        ops: vec![Op::ChangeRecord {
            zone_id: w.zone(),
            change: RecordChange {
                action,
                record: RecordSet::simple(name, "A", 60, values.iter().map(|v| v.to_string()).collect()),
                before: None,
            },
        }],
    };
    let plan = Plan {
        changes: vec![
            change("good-one.example.edu", RecordAction::Create, &["10.0.0.1"]),
            // Deleting a record that is not there with these values fails the whole batch.
            change("missing.example.edu", RecordAction::Delete, &["10.9.9.9"]),
            change("good-two.example.edu", RecordAction::Create, &["10.0.0.2"]),
        ],
        ..Plan::default()
    };
    let applied = w.proxy.block_on(sftp_operator::aws::apply::apply(&c, &plan, &Default::default()));
    assert_eq!(w.a_values("good-one.example.edu."), vec!["10.0.0.1".to_owned()]);
    assert_eq!(w.a_values("good-two.example.edu."), vec!["10.0.0.2".to_owned()]);
    let errors: Vec<(&str, String)> =
        applied.iter().filter_map(|a| Some((a.name.as_str(), a.error.as_ref()?.to_string()))).collect();
    // A delete of something already gone counts as done; nothing else failed.
    assert!(errors.is_empty(), "{errors:?}");
}

/// Issue 14's hand-over: with a free container instance, a key change rolls with the new task
/// started first (plan says so); the A record holds both hosts while both tasks run and follows
/// the new one when the old stops. moto places no task: the test plays ECS's two tasks.
#[test]
fn a_rollout_with_a_free_instance_starts_the_new_task_first_and_dns_hands_over() {
    let w = World::new();
    let efs = w.manifest("efs.yaml");
    assert_eq!(w.run(&["converge", "-f", &efs]).0, 0);
    let old = w.start_task("efs-drop", 0);
    assert_eq!(w.run(&["converge", "-f", &efs]).0, 0);
    let (_, a) = w.instance(0);
    let (_, b) = w.instance(1);
    assert_eq!(w.a_values("efs-drop.example.edu."), vec![a.clone()]);

    w.edit("efs.yaml", "directories: [upload]", "directories: [upload, archive]");
    let (code, out, _, _) = w.run(&["plan", "-f", &efs]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            "rolls with the new task started first (minimum 100%, maximum 200%): 1 container instance(s) free of port \
             30010 with room for the task, for 1 task(s)"
        ),
        "{out}"
    );
    let (code, out, _, ops) = w.run(&["converge", "-f", &efs]);
    assert_eq!(code, 0, "{out}");
    assert!(ops.iter().any(|o| o == "ListContainerInstances"), "{ops:?}");
    assert!(ops.iter().any(|o| o == "DescribeContainerInstances"), "{ops:?}");
    let svc = aws_cli(&w.endpoint, &["ecs", "describe-services", "--cluster", "sftp", "--services", "efs-drop"]);
    let dc = &svc["services"][0]["deploymentConfiguration"];
    assert_eq!((dc["minimumHealthyPercent"].as_i64(), dc["maximumPercent"].as_i64()), (Some(100), Some(200)), "{dc}");

    // ECS starts the new revision's task on the free instance, then stops the old one.
    w.start_task("efs-drop", 1);
    assert_eq!(w.run(&["converge", "-f", &efs]).0, 0);
    let mut both = vec![a, b.clone()];
    both.sort();
    assert_eq!(w.a_values("efs-drop.example.edu."), both, "both hosts while both tasks run");
    w.stop_task(&old);
    let (code, out, _, ops) = w.run(&["converge", "-f", &efs]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(w.a_values("efs-drop.example.edu."), vec![b]);
    assert!(!ops.iter().any(|o| o == "UpdateService"), "the rollout's mode is not drift: {ops:?}");
}
