//! Planner fixtures: `tests/plans/<case>/observed.json` (what AWS holds, as the planner sees
//! it) against `tests/plans/manifest.yaml` → a plan snapshot (text and JSON). Pure: no AWS.

use std::path::Path;

use sftp_operator::{load, observed::Observed, plan, render, report, validate};

fn desired() -> Vec<render::Desired> {
    let docs = load::load(&[Path::new("tests/plans/manifest.yaml").to_owned()]).unwrap();
    validate::validate(&docs).unwrap().iter().map(|s| render::render(s, "sftp-operator")).collect()
}

/// The plan of one fixture with the given `--adopt` / `--prune`.
fn plan_case(observed: &Path, adopt: bool, prune: bool) -> plan::Plan {
    let observed: Observed = serde_json::from_str(&std::fs::read_to_string(observed).unwrap()).unwrap();
    plan::plan(&desired(), &observed, &plan::Options { owner: "sftp-operator".into(), adopt, prune })
}

#[test]
fn every_fixture_plans_as_its_snapshot() {
    insta::glob!("plans/*/observed.json", |path| {
        let p = plan_case(path, false, false);
        let json = serde_json::to_string_pretty(&p).unwrap();
        insta::assert_snapshot!(format!("{}\n{json}", report::plan_text(&p, false)));
    });
}

#[test]
fn adopt_turns_the_conflict_into_an_update_that_tags_first() {
    let p = plan_case(Path::new("tests/plans/04-unowned-target-group-is-a-conflict/observed.json"), true, false);
    let tg = p.changes.iter().find(|c| c.kind == plan::Kind::TargetGroup).unwrap();
    assert_eq!(tg.action, plan::Action::Update);
    assert!(matches!(tg.ops.first(), Some(plan::Op::TagResource { .. })));
    assert_eq!(p.conflicts().count(), 0);
}

#[test]
fn prune_deletes_only_our_orphans() {
    let p = plan_case(Path::new("tests/plans/07-orphans-are-reported-not-deleted/observed.json"), false, true);
    let deletes: Vec<&str> =
        p.changes.iter().filter(|c| c.action == plan::Action::Delete).map(|c| c.name.as_str()).collect();
    assert_eq!(deletes, vec!["sftp-old-drop"], "another owner's target group is never touched");
}
