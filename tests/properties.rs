//! Properties of the pure stages: valid specs always validate and render, rendering is
//! deterministic, and the task-definition hash follows users and keys, not their order.

use std::path::PathBuf;

use proptest::prelude::*;
use sftp_operator::{load, render, validate};

const KEYS: [&str; 5] = ["alice", "bob", "carol", "dave", "frank"];
const CIDRS: [&str; 4] = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/28", "10.0.0.0/8"];

fn key(i: usize) -> String {
    std::fs::read_to_string(format!("tests/fixtures/keys/{}.pub", KEYS[i])).unwrap().trim().to_owned()
}

#[derive(Clone, Debug)]
struct User {
    name: String,
    uid: u32,
    keys: Vec<usize>,
}

fn manifest(name: &str, port: u32, count: u32, storage: usize, users: &[User], cidrs: &[usize]) -> String {
    let mut y = format!(
        "apiVersion: sftp-operator/v1alpha1\nkind: SftpService\nmetadata:\n  name: {name}\nspec:\n  cluster: sftp\n  port: {port}\n  desiredCount: {count}\n  users:\n"
    );
    for u in users {
        y += &format!("    - name: {}\n      uid: {}\n      directories: [upload]\n      keys:\n", u.name, u.uid);
        for k in &u.keys {
            y += &format!("        - {}\n", key(*k));
        }
    }
    y += match storage {
        0 => "  storage:\n    efs: {fileSystemId: fs-0123456789abcdef0}\n",
        1 => "  storage:\n    hostPath: /mnt/efs\n",
        _ => "  storage:\n    s3: {bucket: b-ucket, image: img, taskRoleArn: 'arn:aws:iam::123456789012:role/r'}\n",
    };
    y += "  executionRoleArn: arn:aws:iam::123456789012:role/x\n  loadBalancer:\n    arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/n/0123abcd\n    listenerPort: 22\n";
    y += "  access:\n    securityGroupId: sg-0123456789abcdef0\n    allowedCidrs: [";
    y += &cidrs.iter().map(|c| CIDRS[*c]).collect::<Vec<_>>().join(", ");
    y += "]\n";
    y
}

fn render_text(text: &str) -> render::Desired {
    let docs = load::parse_sources(&[load::SourceFile { path: PathBuf::from("p.yaml"), text: text.to_owned() }])
        .expect("parses");
    let s = validate::validate(&docs).unwrap_or_else(|d| panic!("{d}\n{text}"));
    render::render(&s[0], "owner")
}

fn users() -> impl Strategy<Value = Vec<User>> {
    let name = "[a-z][a-z0-9]{0,7}"
        .prop_filter("not an account the image has", |n| !validate::IMAGE_ACCOUNTS.contains(&n.as_str()));
    prop::collection::btree_set(name, 1..5).prop_flat_map(|names| {
        let n = names.len();
        (Just(names), prop::collection::vec(prop::collection::btree_set(0..KEYS.len(), 1..3), n)).prop_map(
            |(names, keys)| {
                names
                    .into_iter()
                    .zip(keys)
                    .enumerate()
                    .map(|(i, (name, k))| User { name, uid: 1000 + i as u32, keys: k.into_iter().collect() })
                    .collect()
            },
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn valid_specs_validate_render_deterministically_and_hash_by_content(
        name in "[a-z][a-z0-9-]{0,20}[a-z0-9]",
        port in 1024u32..=32767,
        count in 0u32..=10,
        storage in 0usize..3,
        users in users(),
        cidrs in prop::collection::btree_set(0..CIDRS.len(), 0..4),
    ) {
        let cidrs: Vec<usize> = cidrs.into_iter().collect();
        let text = manifest(&name, port, count, storage, &users, &cidrs);
        let a = render_text(&text);
        let b = render_text(&text);
        prop_assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());

        // Reordering keys and CIDRs changes nothing.
        let reordered: Vec<User> = users.iter().map(|u| User { keys: u.keys.iter().rev().cloned().collect(), ..u.clone() }).collect();
        let rev: Vec<usize> = cidrs.iter().rev().cloned().collect();
        let c = render_text(&manifest(&name, port, count, storage, &reordered, &rev));
        prop_assert_eq!(&a.task_definition_hash, &c.task_definition_hash);
        prop_assert_eq!(&a.ingress, &c.ingress);

        // Dropping a user's key (when it has two) changes the hash.
        if let Some(i) = users.iter().position(|u| u.keys.len() > 1) {
            let mut fewer = users.clone();
            fewer[i].keys.pop();
            let d = render_text(&manifest(&name, port, count, storage, &fewer, &cidrs));
            prop_assert_ne!(&a.task_definition_hash, &d.task_definition_hash);
        }
    }
}
