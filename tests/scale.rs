//! Many services on one security group, against the AWS emulator (moto): the rules are shared
//! and merged, the quota is planned for the whole pass before any write, and a no-op pass costs
//! the same calls whatever the number of services (counts, not times; times are in
//! `scripts/bench.sh scale`).

mod common;

use std::collections::BTreeMap;

use common::{Proxy, World, aws_cli};

const CIDRS: [&str; 3] = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];

/// `n` services, all on the sandbox's instance group, each allowing the same three networks,
/// host ports 20000.., listener ports 2000..; written to `<name>.yaml`.
fn services(w: &World, name: &str, n: usize) -> String {
    let secret = aws_cli(&w.endpoint, &["secretsmanager", "create-secret", "--name", name, "--secret-string", "{}"]);
    let secret = secret["ARN"].as_str().unwrap();
    let key = std::fs::read_to_string(common::root().join("tests/fixtures/keys/alice.pub")).unwrap();
    let lb = w.ids["loadBalancerArn"].as_str().unwrap();
    let docs: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "apiVersion: sftp-operator/v1alpha1\nkind: SftpService\nmetadata: {{name: {name}-{i}}}\nspec:\n  \
                 cluster: sftp\n  port: {port}\n  users: [{{name: u, uid: 1000, directories: [upload], keys: [\"{key}\"]}}]\n  \
                 storage: {{hostPath: /mnt/sftp}}\n  hostKeys: {{generate: false, secretArn: \"{secret}\"}}\n  \
                 executionRoleArn: arn:aws:iam::123456789012:role/x\n  loadBalancer: {{arn: \"{lb}\", listenerPort: {listener}}}\n  \
                 access: {{securityGroupId: {sg}, allowedCidrs: [{cidrs}]}}\n",
                port = 20000 + i,
                key = key.trim(),
                listener = 2000 + i,
                sg = w.sg(),
                cidrs = CIDRS.join(", "),
            )
        })
        .collect();
    let path = w.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, docs.join("---\n")).unwrap();
    path.to_string_lossy().into_owned()
}

/// The group's rules the operator owns, as `(cidr, from, to)`.
fn owned_rules(w: &World) -> Vec<(String, i64, i64)> {
    let filter = format!("Name=group-id,Values={}", w.sg());
    let out = aws_cli(&w.endpoint, &["ec2", "describe-security-group-rules", "--filters", &filter]);
    let mut rules: Vec<(String, i64, i64)> = out["SecurityGroupRules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["Description"].as_str().is_some_and(|d| d.starts_with("sftp-operator owner=")))
        .map(|r| {
            (r["CidrIpv4"].as_str().unwrap().to_owned(), r["FromPort"].as_i64().unwrap(), r["ToPort"].as_i64().unwrap())
        })
        .collect();
    rules.sort();
    rules
}

fn counts(ops: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for op in ops {
        *out.entry(op.clone()).or_default() += 1;
    }
    out
}

/// The NLB's two subnets and the three allowed networks.
fn networks(w: &World) -> Vec<String> {
    let mut nets: Vec<String> = CIDRS.iter().map(|c| c.to_string()).collect();
    let subnets = aws_cli(&w.endpoint, &["ec2", "describe-subnets"]);
    let lb = aws_cli(&w.endpoint, &["elbv2", "describe-load-balancers"]);
    let lb_subnets: Vec<&str> = lb["LoadBalancers"][0]["AvailabilityZones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["SubnetId"].as_str().unwrap())
        .collect();
    for s in subnets["Subnets"].as_array().unwrap() {
        if lb_subnets.contains(&s["SubnetId"].as_str().unwrap()) {
            nets.push(s["CidrBlock"].as_str().unwrap().to_owned());
        }
    }
    nets.sort();
    nets
}

#[test]
fn twenty_services_on_one_group_converge_with_merged_rules_and_deleting_one_splits_them() {
    let w = World::new();
    let f = services(&w, "s", 20);
    let (code, out, err, _) = w.run(&["converge", "-f", &f]);
    assert_eq!(code, 0, "{out}\n{err}");
    let nets = networks(&w);
    assert_eq!(nets.len(), 5);
    let merged: Vec<(String, i64, i64)> = nets.iter().map(|n| (n.clone(), 20000, 20019)).collect();
    assert_eq!(owned_rules(&w), merged, "one rule per network for all twenty services");

    let (code, out, _, ops) = w.run(&["converge", "-f", &f]);
    assert_eq!(code, 0, "{out}");
    assert!(Proxy::mutating(&ops).is_empty(), "a second converge writes nothing: {ops:?}");

    // Delete the service in the middle: every network keeps 20000-20009 and 20011-20019.
    let text = std::fs::read_to_string(&f).unwrap();
    let doc = text.split("---\n").nth(10).unwrap();
    let one = w.dir.path().join("one.yaml");
    std::fs::write(&one, doc).unwrap();
    let (code, out, err, ops) = w.run(&["delete", "-f", one.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let mut split: Vec<(String, i64, i64)> =
        nets.iter().flat_map(|n| [(n.clone(), 20000, 20009), (n.clone(), 20011, 20019)]).collect();
    split.sort();
    assert_eq!(owned_rules(&w), split, "port 20010 closed, no other port opened");
    let writes = Proxy::mutating(&ops);
    let authorize = writes.iter().position(|o| o == "AuthorizeSecurityGroupIngress").expect("narrower rules in");
    let revoke = writes.iter().position(|o| o == "RevokeSecurityGroupIngress").expect("wider rules out");
    assert!(authorize < revoke, "the narrower rules go in before the wider ones go: {writes:?}");
}

#[test]
fn the_no_op_call_count_does_not_grow_with_the_number_of_services() {
    let noop = |n: usize| {
        let w = World::new();
        let f = services(&w, "s", n);
        let (code, out, err, _) = w.run(&["converge", "-f", &f]);
        assert_eq!(code, 0, "{out}\n{err}");
        let (code, out, _, ops) = w.run(&["converge", "-f", &f]);
        assert_eq!(code, 0, "{out}");
        assert!(Proxy::mutating(&ops).is_empty(), "{ops:?}");
        counts(&ops)
    };
    let (one, twenty) = (noop(1), noop(20));
    // Only the batched reads grow, by their batch size: DescribeServices takes 10 services a call.
    let mut expected = one.clone();
    *expected.get_mut("DescribeServices").unwrap() = 2;
    assert_eq!(twenty, expected, "one service: {one:?}");
    assert!(twenty.values().sum::<usize>() <= 25, "{twenty:?}");
}

#[test]
fn over_the_quota_the_pass_writes_nothing_at_all() {
    let w = World::new();
    // 57 hand-made rules: the service's 3 networks + 2 subnets would make 62.
    for i in 0..57 {
        w.allow(22, &format!("10.9.{i}.0/24"), "hand-made");
    }
    let f = services(&w, "q", 2);
    let (code, out, err, ops) = w.run(&["converge", "-f", &f]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("would hold 62 inbound rules, over the quota of 60"), "{out}");
    assert_eq!(Proxy::mutating(&ops), Vec::<String>::new(), "nothing written, not even the services' own resources");
}
