//! The binary, black-box: exit codes, stdout and stderr.

use assert_cmd::Command;
use predicates::prelude::*;

fn op() -> Command {
    let mut c = Command::cargo_bin("sftp-operator").unwrap();
    // No AWS in these tests: any attempt would fail fast instead of probing the network.
    c.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9").env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

#[test]
fn help_lists_the_commands_and_the_exit_codes() {
    op().arg("--help")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("validate")
                .and(predicate::str::contains("converge"))
                .and(predicate::str::contains("Exit codes")),
        )
        .stdout(predicate::str::contains("2  `plan` only: changes are pending"));
    op().arg("--version").assert().success().stdout(predicate::str::starts_with("sftp-operator "));
}

#[test]
fn the_examples_validate() {
    op().args(["validate", "-f", "manifests/examples/"])
        .assert()
        .success()
        .stdout(predicate::str::contains("4 services valid"))
        .stderr("");
}

#[test]
fn a_bad_manifest_exits_1_with_located_errors_on_stderr_only() {
    op().args(["validate", "-f", "tests/invalid/39-port-below-1024.yaml"]).assert().code(1).stdout("").stderr(
        predicate::str::contains("tests/invalid/39-port-below-1024.yaml:7:9: spec.port: 22 is out of range 1024–32767"),
    );
}

#[test]
fn standard_input_is_read_with_dash() {
    let text = std::fs::read_to_string("manifests/examples/efs.yaml").unwrap();
    op().args(["validate", "-f", "-"])
        .write_stdin(text)
        .assert()
        .success()
        .stdout(predicate::str::contains("efs-drop: ok (<stdin>"));
    op().args(["validate", "-f", "-"])
        .write_stdin("apiVersion: [\n")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("<stdin>:"));
}

#[test]
fn a_missing_path_is_a_clear_error() {
    op().args(["validate", "-f", "no/such/file.yaml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no/such/file.yaml").and(predicate::str::contains("No such file")));
}

#[test]
fn render_prints_json_or_yaml_for_one_service_or_all() {
    let out = op()
        .args(["render", "-f", "manifests/examples/campus.yaml", "--service", "campus-sftp"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["taskDefinition"]["family"], "sftp-campus-sftp");
    assert!(!String::from_utf8_lossy(&out).contains("$6$"), "password hashes are never printed");
    op().args(["render", "-f", "manifests/examples/", "-o", "yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("family: sftp-s3-drop"));
    op().args(["render", "-f", "manifests/examples/", "--service", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no service named `nope`"));
}

#[test]
fn schema_prints_the_json_schema() {
    let out = op().arg("schema").assert().success().get_output().stdout.clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["title"], "SftpService");
}

#[test]
fn usage_errors_exit_1_because_2_means_changes_pending() {
    op().arg("frobnicate").assert().code(1);
    op().args(["validate", "--no-such-flag"]).assert().code(1);
    op().arg("validate").assert().code(1).stderr(predicate::str::contains("--filename"));
}

#[test]
fn aws_commands_check_the_manifests_before_calling_aws() {
    // The endpoint is a closed port: reaching it would fail differently.
    op().args(["converge", "-f", "tests/invalid/39-port-below-1024.yaml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("spec.port: 22 is out of range"));
}

#[test]
fn the_readme_documents_every_flag_of_every_command() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    for cmd in ["validate", "render", "plan", "converge", "status", "probe", "delete", "run"] {
        let out = op().args([cmd, "--help"]).assert().success().get_output().stdout.clone();
        let help = String::from_utf8(out).unwrap();
        for flag in help.split_whitespace().filter(|w| w.starts_with("--")).map(|w| w.trim_end_matches([',', '.'])) {
            if flag == "--help" {
                continue;
            }
            assert!(readme.contains(&format!("`{flag}")), "README's flag table lacks {flag} (from `{cmd} --help`)");
        }
        for env in help.split("[env: ").skip(1).filter_map(|s| s.split('=').next()) {
            assert!(readme.contains(env), "README lacks {env} (from `{cmd} --help`)");
        }
    }
}
