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
    /// `rendering`: the tag to create it with (its revision is the one it is created on).
    CreateEcsService {
        service: render::EcsService,
        family: String,
        target_group: String,
        tags: Tags,
        rendering: Option<RenderingWant>,
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
    /// The rendering tag on an ECS service (the only tag ever changed after creation), with
    /// the revision of `family` apply knows by then; `None` withdraws it.
    TagEcsService {
        arn: String,
        family: String,
        rendering: Option<RenderingWant>,
    },
    /// Batched per zone by apply, across services.
    ChangeRecord {
        zone_id: String,
        change: crate::dns::RecordChange,
    },
}

/// What an ECS service's rendering tag is to say, but the revision (apply knows it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderingWant {
    pub hash: String,
    pub port: u16,
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

/// How a pass plans the shared security-group rules, by how much of the manifest set it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupRules {
    /// Some services, maybe not all (a command given some manifests): owned ports no service it
    /// sees accounts for are kept and reported as orphans.
    #[default]
    KeepUnaccounted,
    /// Every service of the owner id (`run`'s batched pass): such ports close.
    CloseUnaccounted,
    /// One service out of many (`run`'s per-service items): rules are left to the batched pass.
    Leave,
}

/// Plans every service, then each security group's shared rules from all the services on it,
/// then orphans. Per service the order is the dependency order of [`Kind`]: secret and task
/// definition before the service, target group and Cloud Map service before the ECS service
/// that points at them. A group's rules are their own sequence (see [`ingress`]).
pub fn plan(desired: &[Desired], observed: &Observed, opts: &Options) -> Plan {
    plan_with(desired, observed, opts, GroupRules::default())
}

/// [`plan`], with the group rules planned as `rules` says.
pub fn plan_with(desired: &[Desired], observed: &Observed, opts: &Options, rules: GroupRules) -> Plan {
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
    if rules == GroupRules::Leave {
        return plan;
    }
    let mut claims = ingress::claims(desired, observed, &opts.owner);
    // Every observed group holding our rules is planned, whether a service of this pass is on
    // it or not (with --prune, or in tests, there may be none).
    for group in observed.security_groups.keys() {
        claims.entry(group.clone()).or_default();
    }
    plan_groups(&mut plan, claims, observed, opts, rules == GroupRules::CloseUnaccounted);
    plan
}

/// Each claimed group's rules into `plan`. A group that cannot be planned (its quota) writes no
/// rule, and blocks the services on it whose access is not in place yet (their tasks would be
/// unreachable); the others still apply their own changes (a key revocation must not wait for
/// a rule quota).
fn plan_groups(
    plan: &mut Plan,
    claims: BTreeMap<String, ingress::GroupClaims>,
    o: &Observed,
    opts: &Options,
    close_unaccounted: bool,
) {
    for (group, claims) in claims {
        // A missing group is already a problem of every service on it.
        let Some(Some(rules)) = o.security_groups.get(&group) else { continue };
        match ingress::plan_group(&group, rules, &claims, opts, close_unaccounted) {
            Ok(group_plan) => {
                plan.changes.extend(group_plan.changes);
                plan.orphans.extend(group_plan.orphans);
            }
            Err(problem) => {
                let waiting: Vec<&String> = claims
                    .services
                    .iter()
                    .filter(|(_, wants)| !ingress::allows(rules, wants))
                    .map(|(s, _)| s)
                    .collect();
                for service in &waiting {
                    plan.problems.push(Problem { service: (*service).clone(), message: problem.message.clone() });
                }
                // Said once per waiting service; for the group itself when none waits.
                if waiting.is_empty() {
                    plan.problems.push(problem);
                }
            }
        }
    }
}
