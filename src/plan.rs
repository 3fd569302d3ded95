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

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use crate::names;
use crate::observed::{self, Observed, Ownership, Tags, name_from_arn};
use crate::render::{self, Desired, IngressRule, TaskDefinition};

/// Inbound rules a security group holds by default.
pub const SG_INBOUND_QUOTA: usize = 60;
/// Tag on each task-definition revision: the hash of the rendering it was registered from.
pub const HASH_TAG: &str = "sftp-operator/spec-hash";

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
    CreateSecret {
        name: String,
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
    AuthorizeIngress {
        group_id: String,
        rule: IngressRule,
        tags: Tags,
    },
    RevokeIngress {
        group_id: String,
        rule_id: String,
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
    /// Batched per zone by apply, across services.
    ChangeRecord {
        zone_id: String,
        change: crate::dns::RecordChange,
    },
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

/// Plans every service, then orphans. Per service the order is the dependency order of
/// [`Kind`]: secret and task definition before the service, target group and Cloud Map
/// service before the ECS service that points at them.
pub fn plan(desired: &[Desired], observed: &Observed, opts: &Options) -> Plan {
    let mut plan = Plan::default();
    for d in desired {
        let mut p = ServicePlanner { d, o: observed, opts, changes: Vec::new(), problems: Vec::new() };
        p.run();
        plan.changes.extend(p.changes);
        plan.problems.extend(p.problems);
    }
    let known: BTreeSet<&str> = desired.iter().map(|d| d.service.as_str()).collect();
    plan.orphans = orphans(observed, &opts.owner, &known);
    if opts.prune {
        plan.changes.append(&mut plan.orphans);
    }
    plan
}

/// Deletes every owned resource of the given services, in reverse dependency order.
pub fn plan_delete(desired: &[Desired], observed: &Observed, owner: &str) -> Plan {
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.service.as_str()).collect();
    let mut changes = owned_deletes(observed, owner, |s| wanted.contains(s));
    for d in desired {
        if let Some(td) = observed.task_definitions.get(&d.names.task_family)
            && observed::ownership(&td.tags, owner) == (Ownership::Owned { service: d.service.clone() })
        {
            changes.push(change(
                &d.service,
                Kind::TaskDefinition,
                &td.family,
                Action::Delete,
                vec![Op::DeregisterTaskDefinitions { family: td.family.clone() }],
            ));
        }
    }
    sort_deletes(&mut changes);
    Plan { changes, ..Plan::default() }
}

fn change(service: &str, kind: Kind, name: &str, action: Action, ops: Vec<Op>) -> Change {
    Change { service: service.to_owned(), kind, name: name.to_owned(), action, diff: vec![], reason: None, ops }
}

fn sort_deletes(changes: &mut [Change]) {
    changes.sort_by(|a, b| {
        (&a.service, std::cmp::Reverse(a.kind), &a.name).cmp(&(&b.service, std::cmp::Reverse(b.kind), &b.name))
    });
}

struct ServicePlanner<'a> {
    d: &'a Desired,
    o: &'a Observed,
    opts: &'a Options,
    changes: Vec<Change>,
    problems: Vec<Problem>,
}

impl ServicePlanner<'_> {
    fn problem(&mut self, message: String) {
        self.problems.push(Problem { service: self.d.service.clone(), message });
    }

    fn push(&mut self, kind: Kind, name: &str, action: Action, diff: Vec<FieldDiff>, ops: Vec<Op>) {
        self.changes.push(Change { diff, ops, ..change(&self.d.service, kind, name, action, vec![]) });
    }

    /// Ownership check shared by every kind. Returns `Some(extra ops)` when we may manage the
    /// resource (tagging first when adopting), `None` after recording a conflict.
    fn claim(&mut self, kind: Kind, name: &str, arn: &str, tags: &Tags) -> Option<Vec<Op>> {
        match observed::ownership(tags, &self.opts.owner) {
            Ownership::Owned { service } if service == self.d.service => Some(vec![]),
            other => {
                let whose = match &other {
                    Ownership::Owned { service } => format!("owned by service `{service}`"),
                    Ownership::Foreign => "not owned by this operator".to_owned(),
                };
                if self.opts.adopt && other == Ownership::Foreign {
                    Some(vec![Op::TagResource {
                        kind,
                        arn: arn.to_owned(),
                        tags: self.d.tags.clone(),
                        description: names::rule_description(&self.opts.owner, &self.d.service),
                    }])
                } else {
                    let mut c = change(&self.d.service, kind, name, Action::Conflict, vec![]);
                    c.reason = Some(format!(
                        "{} `{name}` exists but is {whose}; it is left untouched{}",
                        kind.as_str(),
                        if other == Ownership::Foreign { " (use --adopt to take it over)" } else { "" }
                    ));
                    self.changes.push(c);
                    None
                }
            }
        }
    }

    fn run(&mut self) {
        let d = self.d;
        // Preconditions: things the operator uses but never creates.
        let lb = match self.o.load_balancers.get(&d.load_balancer_arn) {
            Some(Some(lb)) => Some(lb),
            _ => {
                self.problem(format!("load balancer {} not found", d.load_balancer_arn));
                None
            }
        };
        if let Some(lb) = lb
            && lb.kind != "network"
        {
            self.problem(format!(
                "load balancer {} is of type `{}`; a network load balancer is required",
                lb.arn, lb.kind
            ));
        }
        if self.o.clusters.get(&d.ecs_service.cluster) != Some(&true) {
            self.problem(format!("ECS cluster `{}` not found", d.ecs_service.cluster));
        }
        let sg = d.security_group_id.clone();
        if !matches!(self.o.security_groups.get(&sg), Some(Some(_))) {
            self.problem(format!("security group {sg} not found"));
        }
        let namespace = d.cloud_map.as_ref().and_then(|cm| match self.o.namespaces.get(&cm.namespace) {
            Some(Some(ns)) => Some(ns.clone()),
            _ => {
                self.problem(format!("Cloud Map namespace `{}` not found", cm.namespace));
                None
            }
        });
        if !self.problems.is_empty() {
            return;
        }
        let lb = lb.expect("checked above");

        self.secret();
        let td_changes = self.task_definition();
        self.target_group(&lb.vpc_id);
        // What points at a resource we may not manage waits until the conflict is resolved:
        // never route traffic to, or run tasks from, something that is not ours.
        let tg_ok = !self.in_conflict(Kind::TargetGroup);
        if tg_ok {
            self.listener(lb);
        }
        self.ingress(lb);
        if let Some(ns) = namespace {
            self.cloud_map(&ns);
        }
        if tg_ok && !self.in_conflict(Kind::TaskDefinition) && !self.in_conflict(Kind::CloudMapService) {
            self.ecs_service(td_changes);
        }
        self.dns(lb);
    }

    fn in_conflict(&self, kind: Kind) -> bool {
        self.changes.iter().any(|c| c.kind == kind && c.action == Action::Conflict)
    }

    fn dns(&mut self, lb: &observed::LoadBalancer) {
        let d = self.d;
        if d.dns.is_none() {
            return;
        }
        let secret_keys: Vec<crate::sshkeys::ParsedKey> = d
            .host_key_secret
            .as_ref()
            .and_then(|n| self.o.secrets.iter().find(|s| &s.name == n))
            .map(|s| s.public_keys().iter().filter_map(|k| crate::sshkeys::parse_public_key(k).ok()).collect())
            .unwrap_or_default();
        let wants =
            crate::dns::desired_records(d, &self.opts.owner, self.o.placements.get(&d.service), &secret_keys, Some(lb));
        for (zone_ref, want) in wants {
            let zone_id = match self.o.zones.get(&zone_ref) {
                Some(crate::dns::ZoneLookup::Found { id, .. }) => id.clone(),
                Some(crate::dns::ZoneLookup::Ambiguous { ids }) => {
                    self.problem(format!(
                        "zone `{zone_ref}` matches {} hosted zones ({}); give the id instead",
                        ids.len(),
                        ids.join(", ")
                    ));
                    continue;
                }
                _ => {
                    self.problem(format!("hosted zone `{zone_ref}` not found"));
                    continue;
                }
            };
            let live = self.o.record_sets.get(&zone_id).map(Vec::as_slice).unwrap_or_default();
            let zp = crate::dns::plan_zone(&want, live, &self.opts.owner, &d.service, self.opts.adopt);
            for (label, reason) in zp.conflicts {
                let mut c = change(&d.service, Kind::DnsRecord, &label, Action::Conflict, vec![]);
                c.reason = Some(reason);
                self.changes.push(c);
            }
            for rc in zp.changes {
                let action = match rc.action {
                    crate::dns::RecordAction::Create => Action::Create,
                    crate::dns::RecordAction::Upsert => Action::Update,
                    crate::dns::RecordAction::Delete => Action::Delete,
                };
                let diff = match &rc.before {
                    Some(b) => diff_values(
                        &serde_json::to_value(&rc.record).unwrap_or_default(),
                        &serde_json::to_value(b).unwrap_or_default(),
                    ),
                    None => vec![],
                };
                let label = rc.record.label();
                self.push(
                    Kind::DnsRecord,
                    &label,
                    action,
                    diff,
                    vec![Op::ChangeRecord { zone_id: zone_id.clone(), change: rc }],
                );
            }
        }
    }

    fn secret(&mut self) {
        let Some(name) = self.d.host_key_secret.clone() else {
            return;
        };
        match self.o.secrets.iter().find(|s| s.name == name) {
            None => {
                let ops = vec![Op::CreateSecret { name: name.clone(), tags: self.d.tags.clone() }];
                let mut c = change(&self.d.service, Kind::HostKeySecret, &name, Action::Create, ops);
                c.reason = Some("generate Ed25519 and RSA-4096 host keys".into());
                self.changes.push(c);
            }
            Some(s) => {
                if let Some(ops) = self.claim(Kind::HostKeySecret, &name, &s.arn, &s.tags)
                    && !ops.is_empty()
                {
                    self.push(Kind::HostKeySecret, &name, Action::Update, vec![], ops);
                }
            }
        }
    }

    /// Returns whether a new revision will be registered.
    fn task_definition(&mut self) -> bool {
        let d = self.d;
        let family = &d.names.task_family;
        let mut tags = d.tags.clone();
        tags.insert(HASH_TAG.into(), d.task_definition_hash.clone());
        let register = Op::RegisterTaskDefinition { definition: Box::new(d.task_definition.clone()), tags };
        match self.o.task_definitions.get(family) {
            None => {
                self.push(Kind::TaskDefinition, family, Action::Create, vec![], vec![register]);
                true
            }
            Some(live) => {
                let Some(mut ops) = self.claim(Kind::TaskDefinition, family, &live.arn, &live.tags) else {
                    return false;
                };
                let same = match live.tags.get(HASH_TAG) {
                    Some(h) => h == &d.task_definition_hash,
                    None => live.definition == d.task_definition,
                };
                if same {
                    if !ops.is_empty() {
                        self.push(Kind::TaskDefinition, family, Action::Update, vec![], ops);
                    }
                    return false;
                }
                let mut diff = diff_values(&redacted_json(&d.task_definition), &redacted_json(&live.definition));
                if diff.is_empty() {
                    diff.push(FieldDiff {
                        path: "passwordHash".into(),
                        from: json!("(hidden)"),
                        to: json!("(changed)"),
                    });
                }
                ops.push(register);
                let mut c = change(&d.service, Kind::TaskDefinition, family, Action::Update, ops);
                c.diff = diff;
                c.reason = Some(format!("new revision after {}:{}", live.family, live.revision));
                self.changes.push(c);
                true
            }
        }
    }

    fn target_group(&mut self, vpc_id: &str) {
        let want = &self.d.target_group;
        match self.o.target_groups.iter().find(|t| t.name == want.name) {
            None => {
                let op =
                    Op::CreateTargetGroup { tg: want.clone(), vpc_id: vpc_id.to_owned(), tags: self.d.tags.clone() };
                self.push(Kind::TargetGroup, &want.name, Action::Create, vec![], vec![op]);
            }
            Some(live) => {
                let Some(mut ops) = self.claim(Kind::TargetGroup, &want.name, &live.arn, &live.tags) else {
                    return;
                };
                let immutable = diff_values(
                    &json!({"protocol": want.protocol, "targetType": want.target_type, "vpcId": vpc_id}),
                    &json!({"protocol": live.protocol, "targetType": live.target_type, "vpcId": live.vpc_id}),
                );
                if !immutable.is_empty() {
                    let mut c = change(&self.d.service, Kind::TargetGroup, &want.name, Action::Conflict, vec![]);
                    c.diff = immutable;
                    c.reason = Some(
                        "these fields cannot change in place; delete the service (`sftp-operator delete`) and converge"
                            .into(),
                    );
                    self.changes.push(c);
                    return;
                }
                let diff = diff_values(
                    &json!({"healthCheck": want.health_check}),
                    &json!({"healthCheck": {
                        "protocol": live.health_check_protocol,
                        "port": live.health_check_port,
                        "intervalSeconds": live.health_check_interval_seconds,
                        "healthyThreshold": live.healthy_threshold,
                        "unhealthyThreshold": live.unhealthy_threshold,
                    }}),
                );
                if !diff.is_empty() {
                    ops.push(Op::ModifyTargetGroup { arn: live.arn.clone(), tg: want.clone() });
                }
                if !ops.is_empty() {
                    self.push(Kind::TargetGroup, &want.name, Action::Update, diff, ops);
                }
            }
        }
    }

    fn listener(&mut self, lb: &observed::LoadBalancer) {
        let want = &self.d.listener;
        let tg = &self.d.target_group.name;
        let label = format!("{}:{}", name_from_arn(&lb.arn), want.port);
        let on_lb: Vec<&observed::Listener> =
            self.o.listeners.iter().filter(|l| l.load_balancer_arn == lb.arn).collect();
        let mine = |l: &&observed::Listener| {
            observed::ownership(&l.tags, &self.opts.owner) == Ownership::Owned { service: self.d.service.clone() }
        };
        let owned: Vec<&observed::Listener> = on_lb.iter().copied().filter(mine).collect();
        let at_port = on_lb.iter().copied().find(|l| l.port == Some(i32::from(want.port)));
        // Our listener: the owned one at the port, else any owned one (its port changed).
        let current = at_port.filter(mine).or_else(|| owned.first().copied());
        if let Some(other) = at_port
            && current.map(|c| &c.arn) != Some(&other.arn)
        {
            // The port is taken by someone else: adopt it or report.
            let Some(ops) = self.claim(Kind::Listener, &label, &other.arn, &other.tags) else {
                return;
            };
            self.modify_listener(&label, other, ops, tg);
            self.delete_listeners(owned.into_iter());
            return;
        }
        match current {
            None => {
                let op = Op::CreateListener {
                    load_balancer_arn: lb.arn.clone(),
                    listener: want.clone(),
                    target_group: tg.clone(),
                    tags: self.d.tags.clone(),
                };
                self.push(Kind::Listener, &label, Action::Create, vec![], vec![op]);
            }
            Some(live) => {
                self.modify_listener(&label, live, vec![], tg);
                // Duplicates left by an interrupted run: keep one.
                self.delete_listeners(owned.into_iter().filter(|l| l.arn != live.arn));
            }
        }
    }

    fn delete_listeners<'l>(&mut self, listeners: impl Iterator<Item = &'l observed::Listener>) {
        for l in listeners {
            let op = Op::DeleteListener { arn: l.arn.clone() };
            self.push(Kind::Listener, &listener_label(l), Action::Delete, vec![], vec![op]);
        }
    }

    fn modify_listener(&mut self, label: &str, live: &observed::Listener, mut ops: Vec<Op>, tg: &str) {
        let want = &self.d.listener;
        let live_tg: Vec<&str> = live.forward_target_group_arns.iter().map(|a| name_from_arn(a)).collect();
        let diff = diff_values(
            &json!({"port": want.port, "protocol": want.protocol, "targetGroup": tg, "idleTimeoutSeconds": want.idle_timeout_seconds}),
            &json!({"port": live.port, "protocol": live.protocol, "targetGroup": live_tg.first(), "idleTimeoutSeconds": live.idle_timeout_seconds}),
        );
        if !diff.is_empty() {
            ops.push(Op::ModifyListener { arn: live.arn.clone(), listener: want.clone(), target_group: tg.to_owned() });
        }
        if !ops.is_empty() {
            self.push(Kind::Listener, label, Action::Update, diff, ops);
        }
    }

    fn ingress(&mut self, lb: &observed::LoadBalancer) {
        let d = self.d;
        let group = d.security_group_id.clone();
        let rules = self.o.security_groups.get(&group).cloned().flatten().unwrap_or_default();
        let description = names::rule_description(&self.opts.owner, &d.service);
        // Desired: the allowed CIDRs plus the NLB's subnets (health checks come from there).
        let mut want: BTreeSet<IngressRule> = d.ingress.iter().cloned().collect();
        for cidr in &lb.subnet_cidrs {
            want.insert(IngressRule {
                protocol: "tcp".into(),
                port: d.target_group.port,
                cidr: cidr.clone(),
                description: description.clone(),
            });
        }
        let key = |proto: &str, port: i32, cidr: &str| (proto.to_owned(), port, cidr.to_owned());
        let owned: Vec<&observed::IngressRule> =
            rules.iter().filter(|r| rule_owned_by(r, &self.opts.owner, &d.service)).collect();
        let owned_keys: BTreeSet<_> = owned.iter().map(|r| key(&r.protocol, r.from_port, &r.cidr)).collect();
        let foreign_keys: BTreeSet<_> = rules
            .iter()
            .filter(|r| !rule_owned_by(r, &self.opts.owner, &d.service) && r.from_port == r.to_port)
            .map(|r| key(&r.protocol, r.from_port, &r.cidr))
            .collect();
        let want_keys: BTreeSet<_> = want.iter().map(|r| key(&r.protocol, i32::from(r.port), &r.cidr)).collect();
        let mut adds = 0usize;
        for r in &want {
            let k = key(&r.protocol, i32::from(r.port), &r.cidr);
            if owned_keys.contains(&k) {
                continue;
            }
            let name = format!("{} tcp/{} from {}", group, r.port, r.cidr);
            if foreign_keys.contains(&k) {
                // AWS refuses a second rule with the same protocol, port and source.
                let mut c = change(&d.service, Kind::IngressRule, &name, Action::Conflict, vec![]);
                c.reason = Some(
                    "an identical rule not owned by this operator already allows this; it is left as it is".into(),
                );
                self.changes.push(c);
                continue;
            }
            adds += 1;
            let mut tags = d.tags.clone();
            tags.insert("Name".into(), description.clone());
            let op = Op::AuthorizeIngress { group_id: group.clone(), rule: r.clone(), tags };
            self.push(Kind::IngressRule, &name, Action::Create, vec![], vec![op]);
        }
        let mut revokes = 0usize;
        for r in owned {
            // Stale owned rules go (a set difference over owned rules only), and so does an owned
            // port range: ours are always a single port.
            let k = key(&r.protocol, r.from_port, &r.cidr);
            if want_keys.contains(&k) && r.from_port == r.to_port {
                continue;
            }
            revokes += 1;
            let name = format!("{} {} tcp/{}-{} from {}", group, r.rule_id, r.from_port, r.to_port, r.cidr);
            let op = Op::RevokeIngress { group_id: group.clone(), rule_id: r.rule_id.clone() };
            self.push(Kind::IngressRule, &name, Action::Delete, vec![], vec![op]);
        }
        let after = rules.len() + adds - revokes;
        if after > SG_INBOUND_QUOTA {
            self.problem(format!(
                "security group {group} would hold {after} inbound rules, over the quota of {SG_INBOUND_QUOTA}; \
                 merge CIDRs, use a prefix list, or raise the quota"
            ));
            self.changes.retain(|c| c.kind != Kind::IngressRule || c.service != d.service);
        }
    }

    fn cloud_map(&mut self, ns: &observed::Namespace) {
        let Some(want) = &self.d.cloud_map else {
            return;
        };
        match self.o.cloud_map_services.iter().find(|s| s.namespace_id == ns.id && s.name == want.name) {
            None => {
                let op = Op::CreateCloudMapService {
                    namespace_id: ns.id.clone(),
                    service: want.clone(),
                    tags: self.d.tags.clone(),
                };
                self.push(
                    Kind::CloudMapService,
                    &format!("{}.{}", want.name, ns.name),
                    Action::Create,
                    vec![],
                    vec![op],
                );
            }
            Some(live) => {
                let label = format!("{}.{}", want.name, ns.name);
                let Some(mut ops) = self.claim(Kind::CloudMapService, &label, &live.arn, &live.tags) else {
                    return;
                };
                let diff = diff_values(&json!({"srvTtl": want.srv_ttl}), &json!({"srvTtl": live.srv_ttl}));
                if !diff.is_empty() {
                    ops.push(Op::UpdateCloudMapService { id: live.id.clone(), service: want.clone() });
                }
                if !ops.is_empty() {
                    self.push(Kind::CloudMapService, &label, Action::Update, diff, ops);
                }
            }
        }
    }

    fn ecs_service(&mut self, new_revision: bool) {
        let d = self.d;
        let want = &d.ecs_service;
        let family = d.names.task_family.clone();
        let tg = d.target_group.name.clone();
        let live = self
            .o
            .ecs_services
            .iter()
            .find(|s| s.cluster == want.cluster && s.name == want.name && s.status != "INACTIVE");
        let Some(live) = live else {
            let op = Op::CreateEcsService { service: want.clone(), family, target_group: tg, tags: d.tags.clone() };
            self.push(Kind::EcsService, &want.name, Action::Create, vec![], vec![op]);
            return;
        };
        if live.status == "DRAINING" {
            self.problem(format!(
                "ECS service `{}` is still draining from a delete; converge again once it is gone",
                want.name
            ));
            return;
        }
        let Some(mut ops) = self.claim(Kind::EcsService, &want.name, &live.arn, &live.tags) else {
            return;
        };
        let live_td = live.task_definition.as_deref().map(|a| name_from_arn(a).to_owned());
        let want_td = match (new_revision, self.o.task_definitions.get(&family)) {
            (false, Some(td)) => format!("{}:{}", td.family, td.revision),
            _ => format!("{family}:(new revision)"),
        };
        // Registries are ARNs by id: name them through the observed Cloud Map services.
        let registry_name = |arn: &str| -> String {
            self.o
                .cloud_map_services
                .iter()
                .find(|s| s.arn == arn)
                .map_or_else(|| name_from_arn(arn).to_owned(), |s| s.name.clone())
        };
        let binding = |b: &observed::ServiceBinding| json!({"name": registry_name(&b.arn), "containerName": b.container_name, "containerPort": b.container_port});
        let registry = d.cloud_map.as_ref().map(
            |c| json!([{"name": c.name, "containerName": want.container_name, "containerPort": want.container_port}]),
        );
        let live_registry = if live.service_registries.is_empty() && registry.is_none() {
            None
        } else {
            Some(Value::Array(live.service_registries.iter().map(&binding).collect()))
        };
        let diff = diff_values(
            &json!({
                "taskDefinition": want_td,
                "desiredCount": want.desired_count,
                "loadBalancers": [{"name": tg, "containerName": want.container_name, "containerPort": want.container_port}],
                "serviceRegistries": registry,
                "minimumHealthyPercent": want.minimum_healthy_percent,
                "maximumPercent": want.maximum_percent,
                "circuitBreakerRollback": want.circuit_breaker_rollback,
                "distinctInstance": want.distinct_instance,
                "healthCheckGracePeriodSeconds": want.health_check_grace_period_seconds,
            }),
            &json!({
                "taskDefinition": live_td,
                "desiredCount": live.desired_count,
                "loadBalancers": live.load_balancers.iter().map(binding).collect::<Vec<_>>(),
                "serviceRegistries": live_registry,
                "minimumHealthyPercent": live.minimum_healthy_percent,
                "maximumPercent": live.maximum_percent,
                "circuitBreakerRollback": live.circuit_breaker_rollback,
                "distinctInstance": live.distinct_instance,
                "healthCheckGracePeriodSeconds": live.health_check_grace_period_seconds,
            }),
        );
        if !diff.is_empty() {
            ops.push(Op::UpdateEcsService { service: want.clone(), family, target_group: tg });
        }
        if !ops.is_empty() {
            self.push(Kind::EcsService, &want.name, Action::Update, diff, ops);
        }
    }
}

fn listener_label(l: &observed::Listener) -> String {
    format!("{}:{}", name_from_arn(&l.load_balancer_arn), l.port.map_or("?".into(), |p| p.to_string()))
}

/// Owned = our description, or our tags; `service` narrows to one SftpService.
fn rule_owned_by(r: &observed::IngressRule, owner: &str, service: &str) -> bool {
    r.description.as_deref() == Some(names::rule_description(owner, service).as_str())
        || observed::ownership(&r.tags, owner) == (Ownership::Owned { service: service.to_owned() })
}

/// The service an owned rule belongs to, if it is ours at all.
fn rule_service(r: &observed::IngressRule, owner: &str) -> Option<String> {
    if let Ownership::Owned { service } = observed::ownership(&r.tags, owner) {
        return Some(service);
    }
    let prefix = format!("{} owner={owner} service=", names::RULE_DESCRIPTION_PREFIX);
    r.description.as_deref()?.strip_prefix(&prefix).map(str::to_owned)
}

fn orphans(o: &Observed, owner: &str, known: &BTreeSet<&str>) -> Vec<Change> {
    let mut v = owned_deletes(o, owner, |s| !known.contains(s));
    sort_deletes(&mut v);
    v
}

/// Delete changes for every owned resource (other than host-key secrets, which are kept so
/// clients never see a changed host key) whose service matches `select`.
fn owned_deletes(o: &Observed, owner: &str, select: impl Fn(&str) -> bool) -> Vec<Change> {
    let mut out = Vec::new();
    let owned_service = |tags: &Tags| match observed::ownership(tags, owner) {
        Ownership::Owned { service } if select(&service) => Some(service),
        _ => None,
    };
    for s in &o.ecs_services {
        if s.status != "INACTIVE"
            && let Some(svc) = owned_service(&s.tags)
        {
            out.push(change(
                &svc,
                Kind::EcsService,
                &s.name,
                Action::Delete,
                vec![Op::DeleteEcsService { cluster: s.cluster.clone(), name: s.name.clone() }],
            ));
        }
    }
    for l in &o.listeners {
        if let Some(svc) = owned_service(&l.tags) {
            out.push(change(
                &svc,
                Kind::Listener,
                &listener_label(l),
                Action::Delete,
                vec![Op::DeleteListener { arn: l.arn.clone() }],
            ));
        }
    }
    for t in &o.target_groups {
        if let Some(svc) = owned_service(&t.tags) {
            out.push(change(
                &svc,
                Kind::TargetGroup,
                &t.name,
                Action::Delete,
                vec![Op::DeleteTargetGroup { arn: t.arn.clone() }],
            ));
        }
    }
    for (group, rules) in &o.security_groups {
        for r in rules.iter().flatten() {
            if let Some(svc) = rule_service(r, owner).filter(|s| select(s)) {
                let name = format!("{group} {} tcp/{} from {}", r.rule_id, r.from_port, r.cidr);
                out.push(change(
                    &svc,
                    Kind::IngressRule,
                    &name,
                    Action::Delete,
                    vec![Op::RevokeIngress { group_id: group.clone(), rule_id: r.rule_id.clone() }],
                ));
            }
        }
    }
    for (zone_id, records) in &o.record_sets {
        for (svc, rc) in crate::dns::owned_deletes(records, owner, &select) {
            let label = rc.record.label();
            out.push(change(
                &svc,
                Kind::DnsRecord,
                &label,
                Action::Delete,
                vec![Op::ChangeRecord { zone_id: zone_id.clone(), change: rc }],
            ));
        }
    }
    for c in &o.cloud_map_services {
        if let Some(svc) = owned_service(&c.tags) {
            out.push(change(
                &svc,
                Kind::CloudMapService,
                &c.name,
                Action::Delete,
                vec![Op::DeleteCloudMapService { id: c.id.clone() }],
            ));
        }
    }
    out
}

/// Leaf-by-leaf differences between what we want and what AWS reported. A `null` on the
/// observed side means "not reported": unknown, so never a difference.
pub fn diff_values(want: &Value, live: &Value) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    walk("", want, live, &mut out);
    out
}

fn walk(path: &str, want: &Value, live: &Value, out: &mut Vec<FieldDiff>) {
    if live.is_null() {
        return;
    }
    match (want, live) {
        (Value::Object(w), Value::Object(l)) => {
            let keys: BTreeSet<&String> = w.keys().chain(l.keys()).collect();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (w.get(k), l.get(k)) {
                    (Some(wv), Some(lv)) => walk(&p, wv, lv, out),
                    (Some(wv), None) if !wv.is_null() => {
                        out.push(FieldDiff { path: p, from: Value::Null, to: wv.clone() })
                    }
                    (None, Some(lv)) if !lv.is_null() => {
                        out.push(FieldDiff { path: p, from: lv.clone(), to: Value::Null })
                    }
                    _ => {}
                }
            }
        }
        (Value::Array(w), Value::Array(l)) if w.len() == l.len() => {
            for (i, (wv, lv)) in w.iter().zip(l).enumerate() {
                walk(&format!("{path}[{i}]"), wv, lv, out);
            }
        }
        _ if want != live => out.push(FieldDiff { path: path.to_owned(), from: live.clone(), to: want.clone() }),
        _ => {}
    }
}

/// A task definition as JSON with environment entries keyed by name (readable diffs) and
/// password hashes hidden.
fn redacted_json(td: &TaskDefinition) -> Value {
    let mut v = serde_json::to_value(td).expect("task definition serialises");
    if let Some(containers) = v.get_mut("containerDefinitions").and_then(Value::as_array_mut) {
        for c in containers {
            if let Some(env) = c.get("environment").and_then(Value::as_array).cloned() {
                let map: BTreeMap<String, Value> = env
                    .iter()
                    .filter_map(|e| {
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
                    })
                    .collect();
                c["environment"] = serde_json::to_value(map).expect("map serialises");
            }
        }
    }
    v
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
