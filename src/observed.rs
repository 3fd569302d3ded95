//! What observe found in AWS, as plain data (no SDK types): the planner's second input.
//! A field the API did not report is `None` — unknown, never drift.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names;
use crate::names::normalize_dns_name;
use crate::render::TaskDefinition;

pub type Tags = BTreeMap<String, String>;

/// Who a resource belongs to, from its tags (or rule description).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Ownership {
    /// Ours: tagged with our owner id; `service` names the SftpService it belongs to.
    Owned { service: String },
    /// Another installation's: tagged with another owner id. Never adopted.
    OtherOwner { owner: String },
    /// Nobody's (no owner tag): `--adopt` may take it over.
    Foreign,
}

pub fn ownership(tags: &Tags, owner: &str) -> Ownership {
    match (tags.get(names::OWNER_TAG), tags.get(names::SERVICE_TAG)) {
        (Some(o), Some(s)) if o == owner => Ownership::Owned { service: s.clone() },
        (Some(o), _) if o != owner => Ownership::OtherOwner { owner: o.clone() },
        _ => Ownership::Foreign,
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Observed {
    /// By ARN; `None` when the ARN does not exist.
    pub load_balancers: BTreeMap<String, Option<LoadBalancer>>,
    /// Every target group in the account; tags are read only for those that may be ours (see
    /// `Scope::reads_target_group_tags`), the others show none: not ours.
    pub target_groups: Vec<TargetGroup>,
    pub listeners: Vec<Listener>,
    /// By group id; `None` when the group does not exist.
    pub security_groups: BTreeMap<String, Option<Vec<IngressRule>>>,
    /// By the reference used in manifests (name or id); `None` when not found.
    pub namespaces: BTreeMap<String, Option<Namespace>>,
    /// Every service in the namespaces in scope; whose each is: [`CloudMapService::ownership_tags`].
    pub cloud_map_services: Vec<CloudMapService>,
    /// By cluster name; false when it does not exist.
    pub clusters: BTreeMap<String, bool>,
    pub ecs_services: Vec<EcsService>,
    /// Latest ACTIVE revision by family.
    pub task_definitions: BTreeMap<String, TaskDefinitionRevision>,
    pub secrets: Vec<Secret>,
    /// Hosted zones by the reference used in manifests (name or id).
    pub zones: BTreeMap<String, ZoneLookup>,
    /// Record sets by hosted-zone id (one walk per zone per pass).
    pub record_sets: BTreeMap<String, Vec<RecordSet>>,
    /// Where each service's tasks run, by service name (services with a `dns` block).
    pub placements: BTreeMap<String, Placement>,
    /// Host ports of the task definitions other ECS services run, by task-definition ARN: read
    /// only when every service in the clusters is listed (before creating a service).
    pub host_ports: BTreeMap<String, Vec<u16>>,
    /// ACTIVE container instances per cluster name: read only when a pass would roll a
    /// service (how it rolls depends on a free instance).
    pub container_instances: BTreeMap<String, Vec<ContainerInstance>>,
}

#[derive(Clone, Default, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancer {
    pub arn: String,
    /// `network`, `application`, `gateway`: checked here, not from the ARN text.
    pub kind: String,
    pub scheme: String,
    pub vpc_id: String,
    pub dns_name: String,
    pub canonical_hosted_zone_id: String,
    pub subnet_cidrs: Vec<String>,
}

#[derive(Clone, Default, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    pub protocol: Option<String>,
    pub port: Option<i32>,
    pub target_type: Option<String>,
    pub vpc_id: Option<String>,
    pub health_check_protocol: Option<String>,
    pub health_check_port: Option<String>,
    pub health_check_interval_seconds: Option<i32>,
    pub healthy_threshold: Option<i32>,
    pub unhealthy_threshold: Option<i32>,
    pub load_balancer_arns: Vec<String>,
    pub tags: Tags,
}

#[derive(Clone, Default, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Listener {
    pub arn: String,
    pub load_balancer_arn: String,
    pub port: Option<i32>,
    pub protocol: Option<String>,
    pub forward_target_group_arns: Vec<String>,
    pub idle_timeout_seconds: Option<u32>,
    pub tags: Tags,
}

#[derive(Clone, Default, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IngressRule {
    pub rule_id: String,
    pub protocol: String,
    pub from_port: i32,
    pub to_port: i32,
    /// IPv4 or IPv6 CIDR; rules referencing groups or prefix lists are not ours and left out.
    pub cidr: String,
    pub description: Option<String>,
    pub tags: Tags,
}

#[derive(Clone, Default, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Namespace {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Default, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CloudMapService {
    pub id: String,
    pub arn: String,
    pub name: String,
    pub namespace_id: String,
    pub srv_ttl: Option<i64>,
    pub description: Option<String>,
    pub tags: Tags,
    pub instance_count: Option<i32>,
}

impl CloudMapService {
    /// The owner our description names. Cloud Map has no batch tag read, so converge writes
    /// the owner into the description too; observe then reads no tags for this service.
    pub fn described_owner(&self) -> Option<crate::codec::Owner> {
        self.description.as_deref().and_then(crate::codec::parse_rule_description)
    }

    /// The tags whose it is comes from: what its description says, else its tags.
    pub fn ownership_tags(&self) -> Cow<'_, Tags> {
        match self.described_owner() {
            Some(owner) => Cow::Owned(owner.tags()),
            None => Cow::Borrowed(&self.tags),
        }
    }
}

#[derive(Clone, Default, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EcsService {
    pub arn: String,
    pub name: String,
    pub cluster: String,
    pub status: String,
    pub task_definition: Option<String>,
    pub desired_count: Option<i32>,
    pub running_count: Option<i32>,
    pub pending_count: Option<i32>,
    pub load_balancers: Vec<ServiceBinding>,
    pub service_registries: Vec<ServiceBinding>,
    pub minimum_healthy_percent: Option<i32>,
    pub maximum_percent: Option<i32>,
    pub circuit_breaker_rollback: Option<bool>,
    pub distinct_instance: Option<bool>,
    pub health_check_grace_period_seconds: Option<i32>,
    /// Newest first, as ECS lists them: the PRIMARY one, then older ones still running tasks.
    pub deployments: Vec<Deployment>,
    pub tags: Tags,
}

impl EcsService {
    /// The deployment ECS is rolling out now (or has finished rolling out).
    pub fn primary_deployment(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.status == "PRIMARY")
    }
}

/// One ECS deployment of a service: a task definition being rolled out, or rolled out before.
#[derive(Clone, Default, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Deployment {
    pub id: String,
    /// `PRIMARY` (the newest), `ACTIVE` (older, still running tasks) or `INACTIVE`.
    pub status: String,
    /// The task definition's ARN.
    pub task_definition: String,
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`; `None` when not reported (other deployment
    /// controllers, a Classic Load Balancer).
    pub rollout_state: Option<String>,
    /// Why, e.g. `ECS deployment circuit breaker: tasks failed to start.`
    pub rollout_state_reason: Option<String>,
    pub running_count: i32,
    pub desired_count: i32,
    pub failed_tasks: i32,
}

/// A service's link to a target group or a Cloud Map registry.
#[derive(Clone, Default, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceBinding {
    pub arn: String,
    pub container_name: Option<String>,
    pub container_port: Option<i32>,
}

#[derive(Clone, Default, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskDefinitionRevision {
    pub arn: String,
    pub family: String,
    pub revision: i32,
    /// `None` when not read: its ECS service carries the current rendering hash, which
    /// vouches for it (a deep pass reads it).
    pub definition: Option<TaskDefinition>,
    pub tags: Tags,
}

/// An ACTIVE container instance, as far as placing one more task goes.
#[derive(Clone, Default, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerInstance {
    pub agent_connected: bool,
    pub remaining_cpu: i64,
    pub remaining_memory: i64,
    /// Host ports tasks hold on it (`remainingResources` PORTS).
    pub reserved_ports: Vec<u16>,
}

impl ContainerInstance {
    /// Whether a task on host `port` with `cpu` units and `memory` MiB could start here now.
    pub fn fits(&self, port: u16, cpu: u32, memory: u32) -> bool {
        self.agent_connected
            && !self.reserved_ports.contains(&port)
            && self.remaining_cpu >= i64::from(cpu)
            && self.remaining_memory >= i64::from(memory)
    }
}

#[derive(Clone, Default, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Secret {
    pub arn: String,
    pub name: String,
    /// Holds the public host keys of generated secrets (never the private ones).
    pub description: Option<String>,
    pub tags: Tags,
}

impl Secret {
    /// Public host keys recorded in the description by `converge`.
    pub fn public_keys(&self) -> Vec<String> {
        crate::codec::parse_host_key_description(self.description.as_deref().unwrap_or_default())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alias {
    pub dns_name: String,
    pub hosted_zone_id: String,
}

/// One Route 53 record set, names normalised (lower case, trailing dot, `\052` → `*`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordSet {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<Alias>,
    /// Weighted/latency/... records carry one; the operator never manages those.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
}

impl RecordSet {
    pub fn simple(name: &str, kind: &str, ttl: u32, mut values: Vec<String>) -> RecordSet {
        values.sort();
        values.dedup();
        RecordSet {
            name: normalize_dns_name(name),
            kind: kind.into(),
            ttl: Some(i64::from(ttl)),
            values,
            alias: None,
            set_identifier: None,
        }
    }

    /// A stable label for plans: `A sftp-direct.example.edu.`.
    pub fn label(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }

    /// Characters this record adds to a change batch (Route 53 caps a batch at 32 000).
    pub fn weight(&self) -> usize {
        self.values.iter().map(String::len).sum::<usize>() + self.alias.as_ref().map_or(0, |a| a.dns_name.len())
    }
}

/// Where a manifest's zone reference led.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum ZoneLookup {
    Found {
        id: String,
        name: String,
        private: bool,
    },
    Missing,
    /// A name matching several zones (typically a public and a private one): ask for the id.
    Ambiguous {
        ids: Vec<String>,
    },
}

/// Where a service's tasks run, as observed: RUNNING tasks in `service:<name>`, their hosts'
/// private IPs, and the IPs Cloud Map has registered (to report a mismatch).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    pub running_tasks: usize,
    pub host_ips: Vec<String>,
    pub cloud_map_ips: Option<Vec<String>>,
}

/// The resource part of an ARN: everything after the fifth colon.
fn resource(arn: &str) -> &str {
    arn.splitn(6, ':').nth(5).unwrap_or(arn)
}

/// Name in an ARN, so comparisons use names: `targetgroup/NAME/id`, `loadbalancer/net/NAME/id`,
/// `cluster/NAME`, `service/[cluster/]NAME`, `task-definition/FAMILY:REV`.
/// A task definition's family and revision from its ARN (`…:task-definition/family:7`).
pub fn family_revision(arn: &str) -> Option<(&str, i32)> {
    let (family, revision) = name_from_arn(arn).rsplit_once(':')?;
    Some((family, revision.parse().ok()?))
}

pub fn name_from_arn(arn: &str) -> &str {
    let r = resource(arn);
    let parts: Vec<&str> = r.split('/').collect();
    match parts.as_slice() {
        ["targetgroup", name, ..] => name,
        ["loadbalancer", _kind, name, ..] => name,
        [.., last] => last,
        [] => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_out_of_every_arn_shape_we_compare() {
        assert_eq!(name_from_arn("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/sftp-a/0f"), "sftp-a");
        assert_eq!(name_from_arn("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/sftp/0f"), "sftp");
        assert_eq!(name_from_arn("arn:aws:ecs:us-east-1:1:task-definition/sftp-a:3"), "sftp-a:3");
        assert_eq!(name_from_arn("arn:aws:ecs:us-east-1:1:service/sftp/campus"), "campus");
        assert_eq!(name_from_arn("arn:aws:ecs:us-east-1:1:cluster/sftp"), "sftp");
    }

    #[test]
    fn a_cloud_map_service_is_owned_by_what_its_description_says_else_by_its_tags() {
        let tagged: Tags = [(names::OWNER_TAG.to_owned(), "o".to_owned())].into();
        let mut s = CloudMapService { tags: tagged.clone(), ..CloudMapService::default() };
        assert_eq!(s.described_owner(), None);
        assert_eq!(*s.ownership_tags(), tagged);
        s.description = Some(crate::codec::rule_description("o", "campus"));
        assert_eq!(ownership(&s.ownership_tags(), "o"), Ownership::Owned { service: "campus".into() });
        s.description = Some("made by hand".into());
        assert_eq!(*s.ownership_tags(), tagged);
    }
}
