//! Converge against the AWS emulator (moto), started per test. The tests play the parts of
//! AWS the operator never creates (see `scripts/sandbox.py`) and make drift by hand through
//! the SDK; every operator run goes through a recording proxy.

mod common;

use std::collections::BTreeSet;

use common::{Proxy, World, aws_cli, clients};

fn set(ops: &[String]) -> BTreeSet<String> {
    ops.iter().cloned().collect()
}

#[test]
fn converge_from_empty_creates_everything_and_a_second_converge_makes_no_mutating_call() {
    let w = World::new();
    let campus = w.manifest("campus.yaml");
    let (code, out, err, ops) = w.run(&["converge", "-f", &campus]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!Proxy::mutating(&ops).is_empty());

    // Read back through the SDK.
    let c = clients(&w.proxy, &w.endpoint);
    w.proxy.block_on(async {
        let tgs = c.elb.describe_target_groups().names("sftp-campus-sftp").send().await.unwrap();
        let tg = &tgs.target_groups()[0];
        assert_eq!(tg.port(), Some(30000));
        assert_eq!(tg.target_type().map(|t| t.as_str()), Some("instance"));
        let tags = c.elb.describe_tags().resource_arns(tg.target_group_arn().unwrap()).send().await.unwrap();
        let tags = tags.tag_descriptions()[0].tags();
        assert!(tags.iter().any(|t| t.key() == Some("sftp-operator/owner") && t.value() == Some("sftp-operator")));
        assert!(tags.iter().any(|t| t.key() == Some("team") && t.value() == Some("research-computing")));
        let lb = w.ids["loadBalancerArn"].as_str().unwrap();
        let ls = c.elb.describe_listeners().load_balancer_arn(lb).send().await.unwrap();
        assert_eq!(ls.listeners().iter().filter_map(|l| l.port()).collect::<Vec<_>>(), vec![22]);
        let rules = c
            .ec2
            .describe_security_group_rules()
            .filters(aws_sdk_ec2::types::Filter::builder().name("group-id").values(w.sg()).build())
            .send()
            .await
            .unwrap();
        let cidrs: BTreeSet<&str> = rules
            .security_group_rules()
            .iter()
            .filter(|r| r.is_egress() == Some(false) && r.from_port() == Some(30000))
            .filter_map(|r| r.cidr_ipv4())
            .collect();
        // Allowed CIDRs plus the NLB's two subnets (health checks).
        assert_eq!(
            cidrs,
            BTreeSet::from(["10.0.1.0/24", "10.0.2.0/24", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.16/28"])
        );
        let td = c.ecs.describe_task_definition().task_definition("sftp-campus-sftp").send().await.unwrap();
        let td = td.task_definition().unwrap();
        assert_eq!(td.network_mode().map(|m| m.as_str()), Some("bridge"));
        let container = &td.container_definitions()[0];
        assert_eq!(container.port_mappings()[0].host_port(), Some(30000));
        assert_eq!(container.port_mappings()[0].container_port(), Some(22));
        // Host private keys only through `secrets`, never in plain environment.
        assert!(container.secrets().iter().any(|s| s.name() == "SFTP_HOST_KEY_ED25519"));
        assert!(container.environment().iter().all(|e| !e.value().unwrap_or_default().contains("PRIVATE KEY")));
        let secret = c.secrets.describe_secret().secret_id("sftp-operator/campus-sftp/host-keys").send().await.unwrap();
        assert!(secret.description().unwrap().contains("ssh-ed25519 "));
    });

    // An independent client: the AWS CLI.
    let svc = aws_cli(&w.endpoint, &["ecs", "describe-services", "--cluster", "sftp", "--services", "campus-sftp"]);
    assert_eq!(svc["services"][0]["desiredCount"], 2);
    assert!(svc["services"][0]["taskDefinition"].as_str().unwrap().contains("sftp-campus-sftp:1"));
    let sd = aws_cli(&w.endpoint, &["servicediscovery", "list-services"]);
    assert!(sd["Services"].as_array().unwrap().iter().any(|s| s["Name"] == "campus-sftp"));

    // Nothing changed: zero mutating calls, as the proxy saw them. One service costs 12 reads
    // for ECS/ELB/EC2/Cloud Map/Secrets, ListTasks for placement and 2 Route 53 reads.
    let (code, out, _, ops) = w.run(&["converge", "-f", &campus]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("No changes"), "{out}");
    assert_eq!(Proxy::mutating(&ops), Vec::<String>::new());
    assert!(ops.len() <= 15, "no-op pass made {} calls: {ops:?}", ops.len());
    let (code, _, _, _) = w.run(&["plan", "-f", &campus]);
    assert_eq!(code, 0);
}

#[test]
fn a_key_change_registers_one_revision_and_updates_only_the_service() {
    let w = World::new();
    let f = w.converged("efs.yaml");
    let bob = std::fs::read_to_string(common::root().join("tests/fixtures/keys/bob.pub")).unwrap();
    let dave = std::fs::read_to_string(common::root().join("tests/fixtures/keys/dave.pub")).unwrap();
    w.edit("efs.yaml", dave.trim(), bob.trim());
    let (code, out, _, _) = w.run(&["plan", "-f", &f]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("SFTP_AUTHORIZED_KEYS"), "{out}");
    let (code, out, err, ops) = w.run(&["converge", "-f", &f]);
    assert_eq!(code, 0, "{out}{err}");
    // TagResource: the service records the rendering it now runs.
    assert_eq!(
        set(&Proxy::mutating(&ops)),
        BTreeSet::from(["RegisterTaskDefinition".into(), "UpdateService".into(), "TagResource".into()])
    );
    let svc = aws_cli(&w.endpoint, &["ecs", "describe-services", "--cluster", "sftp", "--services", "efs-drop"]);
    assert!(svc["services"][0]["taskDefinition"].as_str().unwrap().ends_with("sftp-efs-drop:2"));
}

#[test]
fn removing_a_cidr_revokes_exactly_that_rule_and_adding_a_user_rolls_the_service() {
    let w = World::new();
    let f = w.converged("campus.yaml");
    w.edit("campus.yaml", "      - 203.0.113.16/28   # partner: registrar's vendor\n", "");
    let (code, out, _, ops) = w.run(&["converge", "-f", &f]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(Proxy::mutating(&ops), vec!["RevokeSecurityGroupIngress".to_owned()]);
    assert!(out.contains("203.0.113.16/28"), "{out}");

    let carol = std::fs::read_to_string(common::root().join("tests/fixtures/keys/carol.pub")).unwrap();
    w.edit(
        "campus.yaml",
        "  storage:\n",
        &format!(
            "    - name: newuser\n      uid: 3001\n      directories: [upload]\n      keys: [\"{}\"]\n  storage:\n",
            carol.trim()
        ),
    );
    let (code, out, _, ops) = w.run(&["converge", "-f", &f]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        set(&Proxy::mutating(&ops)),
        BTreeSet::from(["RegisterTaskDefinition".into(), "UpdateService".into(), "TagResource".into()])
    );
}

#[test]
fn a_listener_port_change_modifies_the_listener_in_place() {
    let w = World::new();
    let f = w.converged("efs.yaml");
    w.edit("efs.yaml", "listenerPort: 2210", "listenerPort: 2211");
    let (code, out, _, ops) = w.run(&["converge", "-f", &f]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        set(&Proxy::mutating(&ops)),
        BTreeSet::from(["ModifyListener".into(), "ModifyListenerAttributes".into(), "TagResource".into()])
    );
    let lb = w.ids["loadBalancerArn"].as_str().unwrap();
    let ls = aws_cli(&w.endpoint, &["elbv2", "describe-listeners", "--load-balancer-arn", lb]);
    let ports: Vec<i64> = ls["Listeners"].as_array().unwrap().iter().map(|l| l["Port"].as_i64().unwrap()).collect();
    assert_eq!(ports, vec![2211]);
}

#[test]
fn drift_is_reported_by_plan_and_restored_by_converge() {
    let w = World::new();
    let f = w.converged("efs.yaml");
    let c = clients(&w.proxy, &w.endpoint);
    let lb = w.ids["loadBalancerArn"].as_str().unwrap().to_owned();
    w.proxy.block_on(async {
        let ls = c.elb.describe_listeners().load_balancer_arn(&lb).send().await.unwrap();
        c.elb.delete_listener().listener_arn(ls.listeners()[0].listener_arn().unwrap()).send().await.unwrap();
        let tg = c.elb.describe_target_groups().names("sftp-efs-drop").send().await.unwrap();
        let tg_arn = tg.target_groups()[0].target_group_arn().unwrap().to_owned();
        c.elb.modify_target_group().target_group_arn(&tg_arn).health_check_interval_seconds(30).send().await.unwrap();
        c.ecs.update_service().cluster("sftp").service("efs-drop").desired_count(3).send().await.unwrap();
        let rules = c
            .ec2
            .describe_security_group_rules()
            .filters(aws_sdk_ec2::types::Filter::builder().name("group-id").values(w.sg()).build())
            .send()
            .await
            .unwrap();
        let owned = rules.security_group_rules().iter().find(|r| r.cidr_ipv4() == Some("192.0.2.0/24")).unwrap();
        c.ec2
            .revoke_security_group_ingress()
            .group_id(w.sg())
            .security_group_rule_ids(owned.security_group_rule_id().unwrap())
            .send()
            .await
            .unwrap();
    });
    // A stray rule carrying our description: ours to remove.
    w.allow(30010, "172.16.0.0/12", "sftp-operator owner=sftp-operator service=efs-drop");
    let (code, out, _, ops) = w.run(&["plan", "-f", &f]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(Proxy::mutating(&ops), Vec::<String>::new(), "plan must not mutate");
    for needle in [
        "+ listener",
        "healthCheck.intervalSeconds: 30 → 10",
        "desiredCount: 3 → 1",
        "+ ingress rule",
        "from 192.0.2.0/24",
        "- ingress rule",
        "172.16.0.0/12",
    ] {
        assert!(out.contains(needle), "plan lacks `{needle}`:\n{out}");
    }
    assert_eq!(w.run(&["converge", "-f", &f]).0, 0);
    let (code, out, _, _) = w.run(&["plan", "-f", &f]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn foreign_resources_are_left_alone_and_adopt_takes_over_a_conflict() {
    let w = World::new();
    let f = w.manifest("efs.yaml");
    let c = clients(&w.proxy, &w.endpoint);
    let vpc = w.ids["vpc"].as_str().unwrap().to_owned();
    w.proxy.block_on(async {
        // A hand-made target group with our name but no tags, and a foreign rule on the group.
        c.elb
            .create_target_group()
            .name("sftp-efs-drop")
            .protocol("TCP".into())
            .port(30010)
            .vpc_id(&vpc)
            .target_type("instance".into())
            .send()
            .await
            .unwrap();
    });
    w.allow(22, "10.9.0.0/16", "bastion");
    let (code, out, _, _) = w.run(&["plan", "-f", &f]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("! target group sftp-efs-drop"), "{out}");
    assert!(out.contains("--adopt"), "{out}");
    let (_, out, _, ops) = w.run(&["converge", "-f", &f]);
    let mutating = Proxy::mutating(&ops);
    assert!(
        !mutating.iter().any(|o| o == "ModifyTargetGroup" || o == "AddTags" && out.contains("sftp-efs-drop")),
        "{mutating:?}"
    );
    let tags = aws_cli(&w.endpoint, &["elbv2", "describe-target-groups", "--names", "sftp-efs-drop"]);
    let arn = tags["TargetGroups"][0]["TargetGroupArn"].as_str().unwrap().to_owned();
    let t = aws_cli(&w.endpoint, &["elbv2", "describe-tags", "--resource-arns", &arn]);
    assert_eq!(t["TagDescriptions"][0]["Tags"].as_array().unwrap().len(), 0, "foreign target group was tagged");

    let (code, out, err, _) = w.run(&["converge", "--adopt", "-f", &f]);
    assert_eq!(code, 0, "{out}{err}");
    let t = aws_cli(&w.endpoint, &["elbv2", "describe-tags", "--resource-arns", &arn]);
    assert!(t["TagDescriptions"][0]["Tags"].as_array().unwrap().iter().any(|x| x["Key"] == "sftp-operator/owner"));
    assert_eq!(w.run(&["plan", "-f", &f]).0, 0);
    // The bastion rule survived everything.
    let rules = aws_cli(
        &w.endpoint,
        &["ec2", "describe-security-group-rules", "--filters", &format!("Name=group-id,Values={}", w.sg())],
    );
    assert!(rules["SecurityGroupRules"].as_array().unwrap().iter().any(|r| r["CidrIpv4"] == "10.9.0.0/16"));
}

#[test]
fn prune_and_delete_remove_exactly_the_owned_resources() {
    let w = World::new();
    let dir = w.dir.path().to_string_lossy().into_owned();
    assert_eq!(w.run(&["converge", "-f", &dir]).0, 0);
    // s3-drop's manifest goes away: reported, kept without --prune, removed with it.
    std::fs::remove_file(w.dir.path().join("s3.yaml")).unwrap();
    let (code, out, _, ops) = w.run(&["converge", "-f", &dir]);
    assert_eq!(code, 0);
    assert!(out.contains("deleted with --prune"), "{out}");
    assert_eq!(Proxy::mutating(&ops), Vec::<String>::new());
    let (code, out, err, ops) = w.run(&["converge", "--prune", "-f", &dir]);
    assert_eq!(code, 0, "{out}{err}");
    let m = set(&Proxy::mutating(&ops));
    assert!(m.contains("DeleteService") && m.contains("DeleteListener") && m.contains("DeleteTargetGroup"), "{m:?}");
    let tgs = aws_cli(&w.endpoint, &["elbv2", "describe-target-groups"]);
    let names: BTreeSet<&str> =
        tgs["TargetGroups"].as_array().unwrap().iter().map(|t| t["TargetGroupName"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["sftp-campus-sftp", "sftp-efs-drop", "sftp-hostpath-drop"]));

    // delete removes campus-sftp's resources and nothing of the others.
    let campus = w.manifest("campus.yaml");
    let (code, out, err, _) = w.run(&["delete", "-f", &campus]);
    assert_eq!(code, 0, "{out}{err}");
    let tgs = aws_cli(&w.endpoint, &["elbv2", "describe-target-groups"]);
    let names: BTreeSet<&str> =
        tgs["TargetGroups"].as_array().unwrap().iter().map(|t| t["TargetGroupName"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["sftp-efs-drop", "sftp-hostpath-drop"]));
    let rules = aws_cli(
        &w.endpoint,
        &["ec2", "describe-security-group-rules", "--filters", &format!("Name=group-id,Values={}", w.sg())],
    );
    assert!(!rules["SecurityGroupRules"].as_array().unwrap().iter().any(|r| r["FromPort"] == 30000));
    assert!(rules["SecurityGroupRules"].as_array().unwrap().iter().any(|r| r["FromPort"] == 30010));
    // Host keys survive a delete: a re-created service keeps its identity.
    let s = aws_cli(
        &w.endpoint,
        &["secretsmanager", "describe-secret", "--secret-id", "sftp-operator/campus-sftp/host-keys"],
    );
    assert_eq!(s["Name"], "sftp-operator/campus-sftp/host-keys");
}

#[test]
fn a_bad_manifest_makes_no_aws_call_at_all() {
    let w = World::new();
    w.edit("efs.yaml", "port: 30010", "port: 80");
    let f = w.manifest("efs.yaml");
    let (code, _, err, ops) = w.run(&["converge", "-f", &f]);
    assert_eq!(code, 1);
    assert!(err.contains("efs.yaml:10:9: spec.port"), "{err}");
    assert_eq!(ops, Vec::<String>::new());
}
