//! Golden renderings of every example, and what a key change may change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sftp_operator::{load, render, validate};

fn services_from_text(name: &str, text: &str) -> Vec<validate::Service> {
    let src = load::SourceFile { path: PathBuf::from(name), text: text.to_owned() };
    let docs = load::parse_sources(&[src]).expect("parses");
    validate::validate(&docs).expect("validates")
}

fn services(path: &Path) -> Vec<validate::Service> {
    services_from_text(&path.to_string_lossy(), &std::fs::read_to_string(path).unwrap())
}

#[test]
fn every_example_validates_and_renders_as_its_snapshot() {
    insta::glob!(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests"), "examples/*.yaml", |path| {
        let s = services(path);
        assert_eq!(s.len(), 1);
        insta::assert_json_snapshot!(render::render_for_display(&s[0], "sftp-operator"));
    });
}

/// Leaf paths where two JSON values differ.
fn differing(a: &Value, b: &Value, path: &str, out: &mut BTreeSet<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                differing(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differing(p, q, &format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => {
            out.insert(path.to_owned());
        }
        _ => {}
    }
}

#[test]
fn changing_one_key_changes_only_key_delivery_and_the_hash() {
    let text = std::fs::read_to_string("manifests/examples/campus.yaml").unwrap();
    let alice = std::fs::read_to_string("tests/fixtures/keys/alice.pub").unwrap();
    let dave = std::fs::read_to_string("tests/fixtures/keys/dave.pub").unwrap();
    let changed = text.replace(alice.trim(), dave.trim());
    assert_ne!(text, changed);
    let a = serde_json::to_value(render::render(&services_from_text("c.yaml", &text)[0], "o")).unwrap();
    let b = serde_json::to_value(render::render(&services_from_text("c.yaml", &changed)[0], "o")).unwrap();
    let mut diff = BTreeSet::new();
    differing(&a, &b, "", &mut diff);
    let env = a["taskDefinition"]["containerDefinitions"][0]["environment"].as_array().unwrap();
    // alice is the first user: her keys are SFTP_AUTHORIZED_KEYS_1.
    let keys_at = env.iter().position(|e| e["name"] == "SFTP_AUTHORIZED_KEYS_1").unwrap();
    let expected: BTreeSet<String> = [
        format!(".taskDefinition.containerDefinitions[0].environment[{keys_at}].value"),
        ".taskDefinitionHash".to_owned(),
        ".keyFingerprints[0].fingerprint".to_owned(),
        ".keyFingerprints[0].comment".to_owned(),
    ]
    .into();
    assert_eq!(diff, expected);
}

#[test]
fn password_hashes_reach_the_task_definition_but_never_the_printed_rendering() {
    let s = services(Path::new("manifests/examples/campus.yaml"));
    let hash = "$6$Qx3f1m2k$";
    let real = serde_json::to_string(&render::render(&s[0], "o")).unwrap();
    let shown = serde_json::to_string(&render::render_for_display(&s[0], "o")).unwrap();
    assert!(real.contains(hash));
    assert!(!shown.contains(hash), "{shown}");
    assert!(shown.contains(r#""name":"SFTP_PASSWORD_HASH_4","value":"<redacted>""#), "{shown}");
    assert!(real.contains("registrar::2002::exports"), "atmoz's user list carries no hash (atmoz logs it)");
    assert!(!format!("{:?}", s[0]).contains(hash), "Debug must not print the hash either");
}

#[test]
fn host_private_keys_are_only_referenced_through_secrets() {
    let s = services(Path::new("manifests/examples/campus.yaml"));
    let td = render::render(&s[0], "o").task_definition;
    let c = &td.container_definitions[0];
    let names: Vec<&str> = c.secrets.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, vec!["SFTP_HOST_KEY_ED25519", "SFTP_HOST_KEY_RSA"]);
    assert!(c.secrets[0].value_from.ends_with(":secret:sftp-operator/campus-sftp/host-keys:ed25519::"));
    assert!(c.environment.iter().all(|e| !e.name.contains("HOST_KEY")));
}
