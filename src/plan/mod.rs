//! Plan: `plan(desired, observed) -> Plan`, pure. An ordered list of typed changes with
//! field-level diffs; apply executes them, `plan` prints them.
//!
//! ```text
//! Desired (render) ─┐
//!                   ├─▶ per kind: match by name/tag ─▶ ownership ─▶ diff ─▶ Change { action, diff, op }
//! Observed ─────────┘
//! ```
//!
//! Rules: only resources tagged with our owner id are changed or deleted; an unowned resource
//! in the way is a conflict unless `adopt`; a field the API did not report is unknown, not
//! drift; security-group rules are a set difference over owned rules only.
//!
//! Layout: [`service`] checks a service's preconditions and runs the kinds in dependency order;
//! each kind has its own file (planning it for one service, and, for the kinds `delete` and
//! `--prune` remove, how an owned one is deleted); [`delete`] builds orphan and delete plans;
//! [`diff`] compares wanted and observed fields.

mod cloud_map;
mod delete;
mod diff;
mod dns_record;
mod ecs_service;
mod ingress;
mod listener;
mod secret;
mod service;
mod target_group;
mod task_definition;
#[cfg(test)]
mod testkit;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::observed::{Observed, Tags};
use crate::render::{self, Desired, TaskDefinition};

pub use delete::plan_delete;
pub use diff::diff_values;
pub use ingress::{SG_INBOUND_QUOTA, group_scope};
pub use task_definition::{HASH_TAG, redact_atmoz_users};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    HostKeySecret,
    TaskDefinition,
    TargetGroup,
    Listener,
    IngressRule,
    CloudMapService,
    EcsService,
    DnsRecord,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::HostKeySecret => "host-key secret",
            Kind::TaskDefinition => "task definition",
            Kind::TargetGroup => "target group",
            Kind::Listener => "listener",
            Kind::IngressRule => "ingress rule",
            Kind::CloudMapService => "cloud map service",
            Kind::EcsService => "ecs service",
            Kind::DnsRecord => "dns record",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
    Conflict,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldDiff {
    pub path: String,
    pub from: Value,
    pub to: Value,
}

/// What apply must do for one change; carries everything but ARNs created earlier in the
/// same run (those come from apply's per-service context).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// New host keys (never replacing existing ones), the RSA key of `rsa_bits`.
    CreateSecret {
        name: String,
        rsa_bits: u32,
        tags: Tags,
    },
    /// Adoption: our tags (and, where ownership reads a description, our description).
    TagResource {
        kind: Kind,
        arn: String,
        tags: Tags,
        description: String,
    },
    RegisterTaskDefinition {
        definition: Box<TaskDefinition>,
        tags: Tags,
    },
    DeregisterTaskDefinitions {
        family: String,
    },
    CreateTargetGroup {
        tg: render::TargetGroup,
        vpc_id: String,
        tags: Tags,
    },
    ModifyTargetGroup {
        arn: String,
        tg: render::TargetGroup,
    },
    DeleteTargetGroup {
        arn: String,
    },
    CreateListener {
        load_balancer_arn: String,
        listener: render::Listener,
        target_group: String,
        tags: Tags,
    },
    ModifyListener {
        arn: String,
        listener: render::Listener,
        target_group: String,
    },
    DeleteListener {
        arn: String,
    },
    /// Several rules in one call, each with the description; the tags go on every rule.
    AuthorizeIngress {
        group_id: String,
        rules: Vec<PortRange>,
        description: String,
        tags: Tags,
    },
    RevokeIngress {
        group_id: String,
        rule_ids: Vec<String>,
    },
    CreateCloudMapService {
        namespace_id: String,
        service: render::CloudMapService,
        tags: Tags,
    },
    UpdateCloudMapService {
        id: String,
        service: render::CloudMapService,
    },
    DeleteCloudMapService {
        id: String,
    },
    CreateEcsService {
        service: render::EcsService,
        family: String,
        target_group: String,
        tags: Tags,
    },
    UpdateEcsService {
        service: render::EcsService,
        family: String,
        target_group: String,
    },
    DeleteEcsService {
        cluster: String,
        name: String,
    },
    /// The rendering hash on an ECS service (the only tag ever changed after creation).
    TagEcsService {
        arn: String,
        rendering_hash: String,
    },
    /// Batched per zone by apply, across services.
    ChangeRecord {
        zone_id: String,
        change: crate::dns::RecordChange,
    },
}

/// One security-group rule: TCP on a port range from one CIDR.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub cidr: String,
    pub from_port: u16,
    pub to_port: u16,
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from_port == self.to_port {
            write!(f, "tcp/{} from {}", self.from_port, self.cidr)
        } else {
            write!(f, "tcp/{}-{} from {}", self.from_port, self.to_port, self.cidr)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub service: String,
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<FieldDiff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Never serialised: ops carry rendered task definitions, which hold password hashes.
    #[serde(skip)]
    pub ops: Vec<Op>,
}

impl Change {
    fn new(service: &str, kind: Kind, name: &str, action: Action, ops: Vec<Op>) -> Change {
        Change { service: service.to_owned(), kind, name: name.to_owned(), action, diff: vec![], reason: None, ops }
    }

    fn with_diff(self, diff: Vec<FieldDiff>) -> Change {
        Change { diff, ..self }
    }

    fn because(self, reason: impl Into<String>) -> Change {
        Change { reason: Some(reason.into()), ..self }
    }
}

/// Something that stops a service from converging at all (missing cluster, wrong NLB type,
/// quota): reported, and that service's changes are not applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub service: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub problems: Vec<Problem>,
    /// Owned resources whose manifest is gone; deleted only with `--prune`.
    pub orphans: Vec<Change>,
}

impl Plan {
    /// Changes apply would make (conflicts are reported, never applied).
    pub fn actionable(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action != Action::Conflict)
    }

    pub fn has_changes(&self) -> bool {
        self.actionable().next().is_some()
    }

    pub fn conflicts(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action == Action::Conflict)
    }

    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub owner: String,
    pub adopt: bool,
    pub prune: bool,
}

/// Plans every service, then each security group's shared rules from all the services on it,
/// then orphans. Per service the order is the dependency order of [`Kind`]: secret and task
/// definition before the service, target group and Cloud Map service before the ECS service
/// that points at them. A group's rules are their own sequence (see [`ingress`]).
pub fn plan(desired: &[Desired], observed: &Observed, opts: &Options) -> Plan {
    let mut plan = Plan::default();
    for d in desired {
        let (changes, problems) = service::plan(&service::Ctx { d, o: observed, opts }).into_parts();
        plan.changes.extend(changes);
        plan.problems.extend(problems);
    }
    let known: BTreeSet<&str> = desired.iter().map(|d| d.service.as_str()).collect();
    plan.orphans = delete::orphans(observed, &opts.owner, &known);
    if opts.prune {
        plan.changes.append(&mut plan.orphans);
    }
    let mut claims = ingress::claims(desired, observed, &opts.owner);
    // Groups no manifest service uses any more still hold our rules: orphans (or, pruned, gone).
    for group in observed.security_groups.keys() {
        claims.entry(group.clone()).or_default();
    }
    plan_groups(&mut plan, claims, observed, opts);
    plan
}

/// Each claimed group's rules into `plan`. A group that cannot be planned (its quota) blocks
/// every service on it: nothing of theirs is written.
fn plan_groups(plan: &mut Plan, claims: BTreeMap<String, ingress::GroupClaims>, o: &Observed, opts: &Options) {
    for (group, claims) in claims {
        // A missing group is already a problem of every service on it.
        let Some(Some(rules)) = o.security_groups.get(&group) else { continue };
        match ingress::plan_group(&group, rules, &claims, opts) {
            Ok(group_plan) => {
                plan.changes.extend(group_plan.changes);
                plan.orphans.extend(group_plan.orphans);
            }
            // Said once per service on the group (once for the group when none is left on it).
            Err(problem) if claims.services.is_empty() => plan.problems.push(problem),
            Err(problem) => {
                for service in &claims.services {
                    plan.problems.push(Problem { service: service.clone(), message: problem.message.clone() });
                }
            }
        }
    }
}
