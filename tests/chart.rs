//! What can be checked of the deployment artifacts without helm, Docker or AWS: the chart's
//! values against its schema (check-jsonschema), every template as a YAML skeleton, a
//! hand-rendered example through `kubectl kustomize`, the CloudFormation template and the ECS
//! JSON.

use std::path::Path;
use std::process::Command;

const CHART: &str = "charts/sftp-operator";

fn check_jsonschema() -> std::path::PathBuf {
    let bin = Path::new(".venv/bin/check-jsonschema");
    if !bin.exists() {
        let ok = Command::new(".venv/bin/pip")
            .args(["install", "--quiet", "check-jsonschema"])
            .status()
            .map(|s| s.success());
        assert!(ok.unwrap_or(false), "could not install check-jsonschema into .venv (run scripts/venv.sh first)");
    }
    bin.to_owned()
}

fn validate_values(path: &Path) -> bool {
    Command::new(check_jsonschema())
        .args(["--schemafile", &format!("{CHART}/values.schema.json")])
        .arg(path)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn the_values_validate_against_the_schema_and_bad_values_do_not() {
    assert!(validate_values(&Path::new(CHART).join("values.yaml")));
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(Path::new(CHART).join("values.yaml")).unwrap();
    for (name, bad) in [
        ("unknown-key", format!("{text}\nreplicas: 3\n")),
        ("wrong-type", text.replace("concurrency: 4", "concurrency: four")),
        ("bad-log-format", text.replace("logFormat: json", "logFormat: xml")),
        ("bad-role", text.replace("roleArn: \"\"", "roleArn: not-an-arn")),
    ] {
        let f = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&f, bad).unwrap();
        assert!(!validate_values(&f), "{name} should be rejected");
    }
}

/// A template with its Go-template actions removed (control lines) or replaced by a scalar.
fn skeleton(template: &str) -> String {
    let mut out = String::new();
    for line in template.lines() {
        let t = line.trim();
        let only_action = t.starts_with("{{") && t.ends_with("}}") && t.matches("{{").count() == 1;
        if only_action {
            continue; // if/range/with/end, include|nindent, toYaml|nindent
        }
        // Escaped braces (`{{ "{{" }}`) first, so they cannot pair with other actions.
        let mut l = line.replace(r#"{{ "{{" }}"#, "X").replace(r#"{{ "}}" }}"#, "X");
        while let (Some(a), Some(b)) = (l.find("{{"), l.find("}}")) {
            if b < a {
                break;
            }
            l.replace_range(a..b + 2, "X");
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

#[test]
fn every_template_is_a_yaml_skeleton() {
    let mut n = 0;
    for entry in std::fs::read_dir(Path::new(CHART).join("templates")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let sk = skeleton(&text);
        let v: serde_json::Value =
            serde_saphyr::from_str(&sk).unwrap_or_else(|e| panic!("{}: {e}\n{sk}", path.display()));
        assert!(v.get("apiVersion").is_some() && v.get("kind").is_some(), "{}", path.display());
        n += 1;
    }
    assert_eq!(n, 6, "deployment, serviceaccount, configmap, service, servicemonitor, prometheusrule");
}

#[test]
fn the_rendered_example_is_accepted_by_kubectl_and_matches_the_template_arguments() {
    let out = Command::new("kubectl").args(["kustomize", &format!("{CHART}/examples")]).output();
    let Ok(out) = out else {
        assert!(std::env::var_os("CI").is_none(), "kubectl missing");
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rendered = String::from_utf8(out.stdout).unwrap();
    for kind in ["kind: Deployment", "kind: ServiceAccount", "kind: ConfigMap", "kind: Service"] {
        assert!(rendered.contains(kind), "{kind}");
    }
    // The template's unconditional args, with the default values filled in, are the example's.
    let template = std::fs::read_to_string(Path::new(CHART).join("templates/deployment.yaml")).unwrap();
    let example = std::fs::read_to_string(Path::new(CHART).join("examples/rendered-default.yaml")).unwrap();
    let defaults = [
        ("{{ .Values.ownerId }}", "sftp-operator"),
        ("{{ .Values.region }}", "us-east-1"),
        ("{{ .Values.resync }}", "60s"),
        ("{{ .Values.deepCheckInterval }}", "1h"),
        ("{{ .Values.probeInterval }}", "60s"),
        ("{{ .Values.concurrency }}", "4"),
        ("{{ .Values.logFormat }}", "json"),
    ];
    let args: Vec<String> = template
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "args:")
        .skip(1)
        .take_while(|l| l.starts_with("- "))
        .map(|l| defaults.iter().fold(l.to_owned(), |acc, (k, v)| acc.replace(k, v)))
        .collect();
    assert!(args.len() >= 8, "{args:?}");
    for a in &args {
        assert!(example.contains(a.as_str()), "example lacks `{a}`");
    }
    // Every flag the chart passes is one the binary accepts.
    let help = Command::new(env!("CARGO_BIN_EXE_sftp-operator")).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in template.split_whitespace().filter_map(|w| w.strip_prefix("--")).map(|f| f.split('=').next().unwrap()) {
        assert!(help.contains(&format!("--{flag}")), "run --help lacks --{flag}");
    }
}

/// The PrometheusRule's alerts, taken out of the template as a plain rules file, pass
/// `promtool check rules` (expressions parse, durations are valid).
#[test]
fn the_alert_rules_pass_promtool() {
    let template = std::fs::read_to_string(Path::new(CHART).join("templates/prometheusrule.yaml")).unwrap();
    let body: String = template
        .lines()
        .skip_while(|l| l.trim() != "rules:")
        .skip(1)
        .filter(|l| !l.trim_start().starts_with("{{-"))
        .map(|l| l.replace("{{ \"{{\" }}", "{{").replace("{{ \"}}\" }}", "}}") + "\n")
        .collect();
    let rules = format!("groups:\n  - name: sftp-operator\n    rules:\n{body}");
    for alert in ["SftpProbeFailing", "SftpHostKeyMismatch", "SftpRolloutFailed"] {
        assert!(rules.contains(&format!("alert: {alert}")), "{alert} in\n{rules}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, &rules).unwrap();
    let Ok(out) = Command::new("promtool").arg("check").arg("rules").arg(&file).output() else {
        assert!(std::env::var_os("CI").is_none(), "promtool is missing: .ci/run installs Debian's prometheus package");
        return;
    };
    assert!(
        out.status.success(),
        "{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_events_template_holds_the_queue_its_policy_and_the_rule() {
    let text = std::fs::read_to_string("manifests/events.yaml").unwrap();
    let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let types: Vec<&str> = v["Resources"].as_object().unwrap().values().map(|r| r["Type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["AWS::SQS::Queue", "AWS::SQS::QueuePolicy", "AWS::Events::Rule"]);
    assert_eq!(v["Resources"]["Rule"]["Properties"]["EventPattern"]["detail-type"][0], "ECS Task State Change");
    assert!(v["Outputs"]["QueueUrl"].is_object());
}

#[test]
fn the_ecs_definitions_parse_and_run_the_controller() {
    let td: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("manifests/ecs/operator-task-definition.json").unwrap()).unwrap();
    let c = &td["containerDefinitions"][0];
    assert_eq!(c["command"][0], "run");
    assert_eq!(c["user"], "65532");
    assert!(c["stopTimeout"].as_i64().unwrap() > 30, "longer than the shutdown timeout");
    let svc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("manifests/ecs/operator-service.json").unwrap()).unwrap();
    assert_eq!(svc["desiredCount"], 2);
}
