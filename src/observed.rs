//! What observe found in AWS, as plain data (no SDK types): the planner's second input.
//! A field the API did not report is `None` — unknown, never drift.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names;
use crate::render::TaskDefinition;

pub type Tags = BTreeMap<String, String>;

/// Who a resource belongs to, from its tags (or rule description).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Ownership {
    /// Ours: tagged with our owner id; `service` names the SftpService it belongs to.
    Owned { service: String },
    /// Another installation's (another owner id) or nobody's.
    Foreign,
}

pub fn ownership(tags: &Tags, owner: &str) -> Ownership {
    match (tags.get(names::OWNER_TAG), tags.get(names::SERVICE_TAG)) {
        (Some(o), Some(s)) if o == owner => Ownership::Owned { service: s.clone() },
        _ => Ownership::Foreign,
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Observed {
    /// By ARN; `None` when the ARN does not exist.
    pub load_balancers: BTreeMap<String, Option<LoadBalancer>>,
    pub target_groups: Vec<TargetGroup>,
    pub listeners: Vec<Listener>,
    /// By group id; `None` when the group does not exist.
    pub security_groups: BTreeMap<String, Option<Vec<IngressRule>>>,
    /// By the reference used in manifests (name or id); `None` when not found.
    pub namespaces: BTreeMap<String, Option<Namespace>>,
    pub cloud_map_services: Vec<CloudMapService>,
    /// By cluster name; false when it does not exist.
    pub clusters: BTreeMap<String, bool>,
    pub ecs_services: Vec<EcsService>,
    /// Latest ACTIVE revision by family.
    pub task_definitions: BTreeMap<String, TaskDefinitionRevision>,
    pub secrets: Vec<Secret>,
    /// Hosted zones by the reference used in manifests (name or id).
    pub zones: BTreeMap<String, crate::dns::ZoneLookup>,
    /// Record sets by hosted-zone id (one walk per zone per pass).
    pub record_sets: BTreeMap<String, Vec<crate::dns::RecordSet>>,
    /// Where each service's tasks run, by service name (services with a `dns` block).
    pub placements: BTreeMap<String, crate::dns::Placement>,
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
    pub rollout_state: Option<String>,
    pub rollout_reason: Option<String>,
    pub tags: Tags,
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
    pub definition: TaskDefinition,
    pub tags: Tags,
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

/// The resource part of an ARN: everything after the fifth colon.
fn resource(arn: &str) -> &str {
    arn.splitn(6, ':').nth(5).unwrap_or(arn)
}

/// Name in an ARN, so comparisons use names: `targetgroup/NAME/id`, `loadbalancer/net/NAME/id`,
/// `cluster/NAME`, `service/[cluster/]NAME`, `task-definition/FAMILY:REV`.
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
    use super::name_from_arn;

    #[test]
    fn names_come_out_of_every_arn_shape_we_compare() {
        assert_eq!(name_from_arn("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/sftp-a/0f"), "sftp-a");
        assert_eq!(name_from_arn("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/sftp/0f"), "sftp");
        assert_eq!(name_from_arn("arn:aws:ecs:us-east-1:1:task-definition/sftp-a:3"), "sftp-a:3");
        assert_eq!(name_from_arn("arn:aws:ecs:us-east-1:1:service/sftp/campus"), "campus");
        assert_eq!(name_from_arn("arn:aws:ecs:us-east-1:1:cluster/sftp"), "sftp");
    }
}
