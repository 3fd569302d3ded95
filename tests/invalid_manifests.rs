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
