//! `manifests/schema/sftpservice.schema.json` is generated from the types and kept current.

#[test]
fn the_committed_json_schema_matches_the_types() {
    let path = std::path::Path::new("manifests/schema/sftpservice.schema.json");
    let want = serde_json::to_string_pretty(&sftp_operator::spec::json_schema()).unwrap() + "\n";
    let have = std::fs::read_to_string(path).unwrap_or_default();
    if have != want {
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(path, &want).unwrap();
            return;
        }
        panic!(
            "{} is out of date: regenerate with `UPDATE_SCHEMA=1 cargo test --test schema` \
             or `sftp-operator schema > {}`",
            path.display(),
            path.display()
        );
    }
}

#[test]
fn the_examples_name_the_schema_for_their_editors() {
    for entry in std::fs::read_dir("manifests/examples").unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(text.starts_with("# yaml-language-server: $schema=../schema/sftpservice.schema.json"));
    }
}
