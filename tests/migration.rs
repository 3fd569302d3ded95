//! Migrating from the seed's setup, played against the AWS emulator (moto): the test builds the
//! world its Ansible playbook leaves (a task family, ECS service, target group and listener under
//! the playbook's own names, hand-made ingress rules, an A record with another tool's TXT), then
//! runs what README's migration guide says, and counts what is left.

mod common;

use common::{Proxy, World, aws_cli};

const FAMILY: &str = "research-sftp";
const SERVICE: &str = "research-sftp";
const TARGET_GROUP: &str = "research-tg";
const HOST_PORT: u16 = 30022;
const LISTENER_PORT: u16 = 22022;
const CIDRS: [&str; 3] = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];

/// The seed's world, made the way its playbook makes it: its own names, nothing tagged.
fn seed_world(w: &World) -> String {
    let e = &w.endpoint;
    let containers = format!(
        r#"[{{"name": "sftp", "image": "atmoz/sftp:alpine", "memory": 256, "essential": true,
             "portMappings": [{{"containerPort": 22, "hostPort": {HOST_PORT}, "protocol": "tcp"}}],
             "environment": [{{"name": "SFTP_USERS", "value": "alice::1001"}}]}}]"#
    );
    aws_cli(
        e,
        &[
            "ecs",
            "register-task-definition",
            "--family",
            FAMILY,
            "--network-mode",
            "bridge",
            "--container-definitions",
            &containers,
        ],
    );
    let vpc = w.ids["vpc"].as_str().unwrap();
    let tg = aws_cli(
        e,
        &[
            "elbv2",
            "create-target-group",
            "--name",
            TARGET_GROUP,
            "--protocol",
            "TCP",
            "--port",
            &HOST_PORT.to_string(),
            "--vpc-id",
            vpc,
            "--target-type",
            "instance",
        ],
    );
    let tg_arn = tg["TargetGroups"][0]["TargetGroupArn"].as_str().unwrap().to_owned();
    let lb = w.ids["loadBalancerArn"].as_str().unwrap();
    let forward = format!("Type=forward,TargetGroupArn={tg_arn}");
    aws_cli(
        e,
        &[
            "elbv2",
            "create-listener",
            "--load-balancer-arn",
            lb,
            "--protocol",
            "TCP",
            "--port",
            &LISTENER_PORT.to_string(),
            "--default-actions",
            &forward,
        ],
    );
    let binding = format!("targetGroupArn={tg_arn},containerName=sftp,containerPort=22");
    aws_cli(
        e,
        &[
            "ecs",
            "create-service",
            "--cluster",
            "sftp",
            "--service-name",
            SERVICE,
            "--task-definition",
            FAMILY,
            "--desired-count",
            "1",
            "--launch-type",
            "EC2",
            "--load-balancers",
            &binding,
        ],
    );
    for cidr in CIDRS.iter().copied().chain(["10.0.1.0/24", "10.0.2.0/24"]) {
        w.allow(i32::from(HOST_PORT), cidr, "ansible: sftp research");
    }
    let change = |name: &str, kind: &str, value: &str| {
        format!(
            r#"{{"Changes": [{{"Action": "CREATE", "ResourceRecordSet": {{"Name": "{name}", "Type": "{kind}", "TTL": 60,
                "ResourceRecords": [{{"Value": "{value}"}}]}}}}]}}"#
        )
    };
    let zone = w.zone();
    let (_, ip) = w.instance(0);
    for (kind, value) in [("A", ip.as_str()), ("TXT", "\\\"heritage=sftp-ansible\\\"")] {
        aws_cli(
            e,
            &[
                "route53",
                "change-resource-record-sets",
                "--hosted-zone-id",
                &zone,
                "--change-batch",
                &change("research.example.edu.", kind, value),
            ],
        );
    }
    tg_arn
}

/// The manifest a user writes for the same service; `names` adopts the existing resources.
fn manifest(w: &World, names: bool) -> String {
    let key = std::fs::read_to_string(common::root().join("tests/fixtures/keys/alice.pub")).unwrap();
    let names = if names {
        format!("  names: {{ecsService: {SERVICE}, taskFamily: {FAMILY}, targetGroup: {TARGET_GROUP}}}\n")
    } else {
        String::new()
    };
    let text = format!(
        "apiVersion: sftp-operator/v1alpha1\nkind: SftpService\nmetadata: {{name: research}}\nspec:\n  cluster: sftp\n  \
         port: {HOST_PORT}\n  users: [{{name: alice, uid: 1001, directories: [upload], keys: [\"{key}\"]}}]\n  \
         storage: {{hostPath: /mnt/sftp}}\n  executionRoleArn: arn:aws:iam::123456789012:role/sftp-exec\n  \
         loadBalancer: {{arn: \"{lb}\", listenerPort: {LISTENER_PORT}}}\n  \
         access: {{securityGroupId: {sg}, allowedCidrs: [{cidrs}]}}\n  \
         dns: {{zone: {zone}, record: research.example.edu}}\n{names}",
        key = key.trim(),
        lb = w.ids["loadBalancerArn"].as_str().unwrap(),
        sg = w.sg(),
        cidrs = CIDRS.join(", "),
        zone = w.ids["publicZone"].as_str().unwrap(),
    );
    let path = w.dir.path().join(if names.is_empty() { "research.yaml" } else { "research-named.yaml" });
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// The ECS services in the cluster behind `tg_arn`.
fn services_behind(w: &World, tg_arn: &str) -> Vec<String> {
    let list = aws_cli(&w.endpoint, &["ecs", "list-services", "--cluster", "sftp"]);
    let arns: Vec<&str> = list["serviceArns"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let mut args = vec!["ecs", "describe-services", "--cluster", "sftp", "--services"];
    args.extend(arns);
    let described = aws_cli(&w.endpoint, &args);
    described["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] != "INACTIVE")
        .filter(|s| s["loadBalancers"].as_array().unwrap().iter().any(|b| b["targetGroupArn"] == tg_arn))
        .map(|s| s["serviceName"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn without_its_names_the_existing_service_is_a_conflict_and_no_second_service_is_created() {
    let w = World::new();
    let tg_arn = seed_world(&w);
    let f = manifest(&w, false);
    for args in [vec!["plan", "-f", &f], vec!["plan", "--adopt", "-f", &f]] {
        let (_, out, err, _) = w.run(&args);
        // The live listener forwards to the running service's target group: moving it, or
        // starting a second service beside it, is refused, naming the fields to set.
        assert!(
            out.contains(&format!("forwards to target group `{TARGET_GROUP}`, which ECS service `{SERVICE}` serves")),
            "{args:?}:\n{out}{err}"
        );
        assert!(out.contains(&format!("spec.names.targetGroup: {TARGET_GROUP}")), "{out}");
        assert!(out.contains(&format!("spec.names.ecsService: {SERVICE}")), "{out}");
        assert!(!out.contains("+ ecs service"), "{out}");
    }
    let (_, out, _, ops) = w.run(&["converge", "--adopt", "-f", &f]);
    assert!(!Proxy::mutating(&ops).contains(&"CreateService".to_owned()), "{out}");
    assert_eq!(services_behind(&w, &tg_arn), [SERVICE]);
    assert_eq!(listener_target(&w), tg_arn, "the live listener still forwards to the running service");
}

/// Where the listener on the migrated port forwards.
fn listener_target(w: &World) -> String {
    let lb = w.ids["loadBalancerArn"].as_str().unwrap();
    let listeners = aws_cli(&w.endpoint, &["elbv2", "describe-listeners", "--load-balancer-arn", lb]);
    let l = listeners["Listeners"].as_array().unwrap().iter().find(|l| l["Port"] == LISTENER_PORT).unwrap();
    l["DefaultActions"][0]["TargetGroupArn"].as_str().unwrap().to_owned()
}

#[test]
fn the_seed_setup_is_adopted_in_place_under_its_own_names() {
    let w = World::new();
    let tg_arn = seed_world(&w);
    let f = manifest(&w, true);

    // Without --adopt: every hand-made resource is a conflict, nothing would be created beside it.
    let (code, before, err, _) = w.run(&["plan", "-f", &f]);
    println!("plan:\n{before}");
    assert_eq!(code, 2, "{before}{err}");
    for conflict in [
        format!("task definition `{FAMILY}` exists but is not owned by this operator"),
        format!("target group `{TARGET_GROUP}` exists but is not owned by this operator"),
    ] {
        assert!(before.contains(&conflict), "{conflict}\n{before}");
    }
    assert!(!before.contains("+ ecs service"), "nothing runs from what is not ours: {before}");
    let (_, adopting, _, _) = w.run(&["plan", "--adopt", "-f", &f]);
    println!("plan --adopt:\n{adopting}");
    assert!(adopting.contains(&format!("~ ecs service {SERVICE}")), "{adopting}");

    let (code, out, err, ops) = w.run(&["converge", "--adopt", "-f", &f]);
    assert_eq!(code, 0, "{out}{err}");
    let writes = Proxy::mutating(&ops);
    assert!(!writes.contains(&"CreateService".to_owned()), "no second service: {writes:?}");
    assert!(!writes.contains(&"CreateTargetGroup".to_owned()), "{writes:?}");
    assert!(!writes.contains(&"CreateListener".to_owned()), "{writes:?}");

    let (code, out, _, ops) = w.run(&["converge", "-f", &f]);
    assert_eq!(code, 0, "{out}");
    assert!(Proxy::mutating(&ops).is_empty(), "a second converge writes nothing: {ops:?}\n{out}");

    // Census: one service behind the one target group, one listener, no duplicate rule, the
    // record ours.
    assert_eq!(services_behind(&w, &tg_arn), [SERVICE]);
    let svc = aws_cli(
        &w.endpoint,
        &["ecs", "describe-services", "--cluster", "sftp", "--services", SERVICE, "--include", "TAGS"],
    );
    let svc = &svc["services"][0];
    assert!(svc["taskDefinition"].as_str().unwrap().ends_with(&format!("{FAMILY}:2")), "a new revision: {svc}");
    assert!(svc["tags"].as_array().unwrap().iter().any(|t| t["key"] == "sftp-operator/owner"), "{svc}");
    let tgs = aws_cli(&w.endpoint, &["elbv2", "describe-target-groups"]);
    assert_eq!(tgs["TargetGroups"].as_array().unwrap().len(), 1, "{tgs}");
    let lb = w.ids["loadBalancerArn"].as_str().unwrap();
    let listeners = aws_cli(&w.endpoint, &["elbv2", "describe-listeners", "--load-balancer-arn", lb]);
    let ports: Vec<i64> =
        listeners["Listeners"].as_array().unwrap().iter().map(|l| l["Port"].as_i64().unwrap()).collect();
    assert_eq!(ports, [i64::from(LISTENER_PORT)]);
    let filter = format!("Name=group-id,Values={}", w.sg());
    let rules = aws_cli(&w.endpoint, &["ec2", "describe-security-group-rules", "--filters", &filter]);
    let mut seen = std::collections::BTreeSet::new();
    for r in rules["SecurityGroupRules"].as_array().unwrap().iter().filter(|r| r["IsEgress"] == false) {
        let key = (r["CidrIpv4"].to_string(), r["FromPort"].as_i64(), r["ToPort"].as_i64());
        assert!(seen.insert(key.clone()), "duplicate rule {key:?}");
    }
    let txt = w.records("research.example.edu.").into_iter().find(|r| r.0 == "TXT").expect("TXT");
    assert!(txt.1[0].contains("heritage=sftp-operator"), "{txt:?}");
    assert_eq!(listener_target(&w), tg_arn);

    // The Lambda's job: the A record follows the adopted service's tasks (moto schedules nothing,
    // so the test starts one on the second instance, in the service's group).
    let (instance, ip) = w.instance(1);
    let group = format!("service:{SERVICE}");
    aws_cli(
        &w.endpoint,
        &[
            "ecs",
            "start-task",
            "--cluster",
            "sftp",
            "--task-definition",
            FAMILY,
            "--container-instances",
            &instance,
            "--group",
            &group,
        ],
    );
    let (code, out, _, _) = w.run(&["converge", "-f", &f]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(w.a_values("research.example.edu."), [ip], "{out}");
}
