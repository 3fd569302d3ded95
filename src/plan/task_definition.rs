//! The task definition: a new revision only when the rendering's hash changed. Revisions are
//! deregistered by `delete` (see [`super::plan_delete`]), never by `--prune`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::diff::diff_values;
use super::service::Ctx;
use super::{Action, Change, FieldDiff, Kind, Op};
use crate::observed::TaskDefinitionRevision;
use crate::render::{Desired, TaskDefinition};

/// Tag on each task-definition revision: the hash of the rendering it was registered from.
pub const HASH_TAG: &str = "sftp-operator/spec-hash";

pub(super) fn plan(ctx: &Ctx) -> Vec<Change> {
    let d = ctx.d;
    let family = &d.names.task_family;
    let mut tags = d.tags.clone();
    tags.insert(HASH_TAG.into(), d.task_definition_hash.clone());
    let register = Op::RegisterTaskDefinition { definition: Box::new(d.task_definition.clone()), tags };
    let Some(live) = ctx.o.task_definitions.get(family) else {
        return vec![ctx.change(Kind::TaskDefinition, family, Action::Create, vec![register])];
    };
    let mut ops = match ctx.claim(Kind::TaskDefinition, family, &live.arn, &live.tags) {
        Ok(ops) => ops,
        Err(conflict) => return vec![*conflict],
    };
    if same(d, live) {
        return if ops.is_empty() {
            vec![]
        } else {
            vec![ctx.change(Kind::TaskDefinition, family, Action::Update, ops)]
        };
    }
    ops.push(register);
    let reason = format!("new revision after {}:{}", live.family, live.revision);
    vec![
        ctx.change(Kind::TaskDefinition, family, Action::Update, ops).with_diff(revision_diff(d, live)).because(reason),
    ]
}

/// Whether the task-definition changes register a new revision (the ECS service then rolls).
pub(super) fn registers(changes: &[Change]) -> bool {
    changes.iter().flat_map(|c| &c.ops).any(|op| matches!(op, Op::RegisterTaskDefinition { .. }))
}

/// Same rendering: by the hash tag, or (revisions registered before the tag) by content.
fn same(d: &Desired, live: &TaskDefinitionRevision) -> bool {
    match live.tags.get(HASH_TAG) {
        Some(h) => h == &d.task_definition_hash,
        None => live.definition.as_ref() == Some(&d.task_definition),
    }
}

/// The readable diff of a new revision; a change only in password hashes shows as one field.
fn revision_diff(d: &Desired, live: &TaskDefinitionRevision) -> Vec<FieldDiff> {
    let Some(definition) = &live.definition else {
        return vec![FieldDiff { path: "(revision)".into(), from: json!("(not read)"), to: json!("(changed)") }];
    };
    let mut diff = diff_values(&redacted_json(&d.task_definition), &redacted_json(definition));
    if diff.is_empty() {
        diff.push(FieldDiff { path: "passwordHash".into(), from: json!("(hidden)"), to: json!("(changed)") });
    }
    diff
}

/// A task definition as JSON with environment entries keyed by name (readable diffs) and
/// password hashes hidden.
fn redacted_json(td: &TaskDefinition) -> Value {
    let mut v = serde_json::to_value(td).expect("task definition serialises");
    if let Some(containers) = v.get_mut("containerDefinitions").and_then(Value::as_array_mut) {
        for c in containers {
            if let Some(env) = c.get("environment").and_then(Value::as_array).cloned() {
                let map: BTreeMap<String, Value> = env.iter().filter_map(redacted_entry).collect();
                c["environment"] = serde_json::to_value(map).expect("map serialises");
            }
        }
    }
    v
}

/// One `{name, value}` environment entry as `(name, value)`, hashes redacted.
fn redacted_entry(e: &Value) -> Option<(String, Value)> {
    let name = e.get("name")?.as_str()?.to_owned();
    let value = e.get("value")?.as_str()?;
    let value = if name == "SFTP_USERS" {
        // Releases before the hashes moved out kept them in the user list.
        redact_atmoz_users(value)
    } else if name.starts_with(crate::render::PASSWORD_HASH_ENV) {
        "<redacted>".to_owned()
    } else {
        value.to_owned()
    };
    Some((name, Value::String(value)))
}

/// `user:HASH:e:uid...` → `user:<redacted>:e:uid...`, for any atmoz user list.
pub fn redact_atmoz_users(users: &str) -> String {
    users
        .split(' ')
        .map(|u| {
            let parts: Vec<&str> = u.split(':').collect();
            if parts.len() > 2 && parts[2] == "e" {
                let mut p = parts.clone();
                p[1] = "<redacted>";
                p.join(":")
            } else {
                u.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::observed::Observed;
    use crate::render;

    fn plan_against(d: &Desired, live: Option<TaskDefinitionRevision>, adopt: bool) -> Vec<Change> {
        let mut o: Observed = mk_world();
        if let Some(live) = live {
            o.task_definitions.insert(live.family.clone(), live);
        }
        plan(&ctx(d, &o, &mk_options(adopt)))
    }

    /// `d` with another rendering (users changed) and its hash.
    fn rerendered(d: &Desired, users: &str, hash: &str) -> Desired {
        let mut d = d.clone();
        d.task_definition = mk_task_definition(&d.names, users);
        d.task_definition_hash = hash.into();
        d
    }

    #[test]
    fn a_missing_family_is_registered_with_the_hash_tag() {
        let d = mk_desired(SERVICE);
        let c = plan_against(&d, None, false);
        assert_eq!(summary(&c), [(Kind::TaskDefinition, Action::Create, d.names.task_family.clone())]);
        assert!(registers(&c));
        let Op::RegisterTaskDefinition { tags, .. } = &c[0].ops[0] else { panic!("{:?}", c[0].ops) };
        assert_eq!(tags[HASH_TAG], d.task_definition_hash);
    }

    #[test]
    fn the_same_hash_registers_nothing() {
        let d = mk_desired(SERVICE);
        let c = plan_against(&d, Some(mk_live_task_definition(&d)), false);
        assert!(c.is_empty() && !registers(&c));
    }

    #[test]
    fn a_revision_without_the_hash_tag_is_compared_by_content() {
        let d = mk_desired(SERVICE);
        let mut live = mk_live_task_definition(&d);
        live.tags.remove(HASH_TAG);
        assert!(plan_against(&d, Some(live.clone()), false).is_empty());
        live.definition.as_mut().unwrap().container_definitions[0].memory = 1024;
        let c = plan_against(&d, Some(live), false);
        assert_eq!(c[0].diff[0].path, "containerDefinitions[0].memory");
    }

    #[test]
    fn a_changed_hash_registers_a_new_revision_with_a_readable_diff() {
        let d = mk_desired(SERVICE);
        let live = mk_live_task_definition(&d);
        let c = plan_against(&rerendered(&d, "alice bob", "new-hash"), Some(live), false);
        assert_eq!(summary(&c), [(Kind::TaskDefinition, Action::Update, d.names.task_family.clone())]);
        assert!(registers(&c));
        assert_eq!(c[0].reason.as_deref(), Some("new revision after sftp-campus:4"));
        let diff = &c[0].diff[0];
        assert_eq!(diff.path, "containerDefinitions[0].environment.SFTP_MANAGED_USERS");
        assert_eq!((&diff.from, &diff.to), (&json!("alice"), &json!("alice bob")));
    }

    #[test]
    fn a_change_only_in_password_hashes_never_shows_them() {
        let d = mk_desired(SERVICE);
        let live = mk_live_task_definition(&d);
        let mut want = rerendered(&d, "alice", "new-hash");
        want.task_definition.container_definitions[0].environment[1].value = "$6$other$hash".into();
        let c = plan_against(&want, Some(live), false);
        assert_eq!(
            c[0].diff,
            [FieldDiff { path: "passwordHash".into(), from: json!("(hidden)"), to: json!("(changed)") }]
        );
        assert!(!serde_json::to_string(&c).unwrap().contains("$6$"));
    }

    #[test]
    fn an_unowned_family_is_a_conflict_and_adopting_tags_then_registers() {
        let d = mk_desired(SERVICE);
        let mut live = mk_live_task_definition(&d);
        live.tags = foreign_tags();
        let c = plan_against(&d, Some(live.clone()), false);
        assert_eq!(c[0].action, Action::Conflict);
        assert!(!registers(&c));
        // Adopted: tagged first; no hash tag, different content, so a new revision too.
        live.definition = Some(render::TaskDefinition::default());
        let c = plan_against(&d, Some(live), true);
        assert_eq!(c[0].action, Action::Update);
        assert!(matches!(&c[0].ops[..], [Op::TagResource { .. }, Op::RegisterTaskDefinition { .. }]));
    }

    #[test]
    fn adopting_an_identical_revision_only_tags_it() {
        let d = mk_desired(SERVICE);
        let mut live = mk_live_task_definition(&d);
        live.tags = foreign_tags();
        let c = plan_against(&d, Some(live), true);
        assert!(matches!(&c[0].ops[..], [Op::TagResource { .. }]), "{:?}", c[0].ops);
        assert!(c[0].diff.is_empty() && !registers(&c));
    }

    #[test]
    fn atmoz_user_lists_lose_their_hashes() {
        assert_eq!(redact_atmoz_users("a:$6$x:e:1001 b::1002"), "a:<redacted>:e:1001 b::1002");
    }
}
