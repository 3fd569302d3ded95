//! The bad-input corpus: one broken manifest per file under `tests/invalid/`, each snapshot
//! holding every diagnostic (`file:line:column: field.path: message` and hint).

use std::path::Path;

use sftp_operator::{load, validate};

fn diagnostics(path: &Path) -> sftp_operator::diagnostic::Diagnostics {
    let docs = match load::load(&[path.to_owned()]) {
        Ok(d) => d,
        Err(load::LoadError::Invalid(d)) => return d,
        Err(e) => panic!("{}: {e}", path.display()),
    };
    match validate::validate(&docs) {
        Ok(_) => panic!("{} validated, but it is in the invalid corpus", path.display()),
        Err(d) => d,
    }
}

#[test]
fn every_invalid_manifest_gets_located_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    insta::glob!("invalid/*.yaml", |path| {
        // Relative paths keep snapshots stable across checkouts.
        let rel = path.strip_prefix(root).unwrap();
        let d = diagnostics(rel);
        assert!(!d.is_empty());
        for x in d.iter() {
            assert!(x.pos.line >= 1 && x.pos.column >= 1, "{x}");
            assert_eq!(x.file, rel, "{x}");
        }
        count += 1;
        insta::assert_snapshot!(d.to_string());
    });
    assert!(count >= 40, "the corpus holds {count} files");
}

#[test]
fn a_pasted_private_key_never_appears_in_the_errors() {
    let path = Path::new("tests/invalid/24-key-is-a-private-key.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let secret_line = text.lines().find(|l| l.trim().starts_with("b3Blbn")).expect("key body line").trim().to_owned();
    let out = diagnostics(path).to_string();
    assert!(!out.contains(&secret_line), "{out}");
    assert!(!out.contains("BEGIN OPENSSH PRIVATE KEY"), "{out}");
}

#[test]
fn a_password_hash_that_is_not_a_hash_is_not_echoed() {
    let out = diagnostics(Path::new("tests/invalid/38-password-hash-not-crypt.yaml")).to_string();
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn several_problems_in_one_file_are_all_reported() {
    let d = diagnostics(Path::new("tests/invalid/31-many-problems-at-once.yaml"));
    let fields: Vec<&str> = d.iter().map(|x| x.field.as_str()).collect();
    assert_eq!(fields, vec!["spec.port", "spec.users[0].uid", "spec.access.allowedCidrs[0]"]);
}

/// Every string leaf of a manifest as the example writes it.
fn string_paths(v: &serde_json::Value, path: String, out: &mut Vec<String>) {
    let join = |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
    match v {
        serde_json::Value::String(_) => out.push(path),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, x)| string_paths(x, format!("{path}[{i}]"), out))
        }
        serde_json::Value::Object(map) => map.iter().for_each(|(k, x)| string_paths(x, join(k), out)),
        _ => {}
    }
}

fn pointer(path: &str) -> String {
    path.split('.').flat_map(|p| p.split('[')).map(|p| format!("/{}", p.trim_end_matches(']'))).collect()
}

fn errors_for(v: &serde_json::Value) -> sftp_operator::diagnostic::Diagnostics {
    let text = serde_json::to_string_pretty(v).unwrap();
    let src = load::SourceFile { path: "generated.yaml".into(), text };
    match load::parse_sources(&[src]) {
        Err(load::LoadError::Invalid(d)) => d,
        Err(e) => panic!("{e}"),
        Ok(docs) => validate::validate(&docs).expect_err("key material must be refused"),
    }
}

/// A private key (or its base64 body alone) pasted into any field: refused at that field, and
/// no line of it is ever shown.
#[test]
fn a_private_key_in_any_field_is_refused_and_never_echoed() {
    let example = std::fs::read_to_string("manifests/examples/campus.yaml").unwrap();
    let base: serde_json::Value = serde_saphyr::from_str(&example).unwrap();
    let private = std::fs::read_to_string("tests/fixtures/keys/throwaway_private_key").unwrap();
    let body: Vec<&str> = private.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut paths = Vec::new();
    string_paths(&base, String::new(), &mut paths);
    assert!(paths.len() > 25, "{paths:?}");
    for pasted in [private.clone(), body.join("")] {
        for path in &paths {
            let mut v = base.clone();
            *v.pointer_mut(&pointer(path)).unwrap() = serde_json::Value::String(pasted.clone());
            let d = errors_for(&v);
            let out = d.to_string();
            for line in &body {
                assert!(!out.contains(&line[..20]), "{path}: echoed\n{out}");
            }
            assert!(!out.contains("PRIVATE KEY-----"), "{path}\n{out}");
            assert!(d.iter().any(|x| x.field == *path), "{path}: not located there\n{out}");
        }
    }
    // As a label key, too: refused, and not shown in the field path either.
    let mut v = base.clone();
    v["metadata"]["labels"][body.join("")] = "x".into();
    let out = errors_for(&v).to_string();
    assert!(out.contains("metadata.labels: a key here looks like key material"), "{out}");
    assert!(!out.contains(&body[0][..20]), "{out}");
}

/// A public key is not secret, but in a label it would become a tag on every resource.
#[test]
fn a_public_key_in_a_label_is_refused() {
    let example = std::fs::read_to_string("manifests/examples/campus.yaml").unwrap();
    let mut v: serde_json::Value = serde_saphyr::from_str(&example).unwrap();
    let public = std::fs::read_to_string("tests/fixtures/keys/alice.pub").unwrap();
    v["metadata"]["labels"]["team"] = public.trim().into();
    let d = errors_for(&v);
    assert_eq!(d.iter().map(|x| x.field.as_str()).collect::<Vec<_>>(), ["metadata.labels.team"], "{d}");
}
