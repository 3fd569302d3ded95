//! ECS: the clusters' services, each family's latest ACTIVE task definition, and where the
//! services with a `dns` block run (their RUNNING tasks' hosts, whose IPs come from EC2).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ecs as ecs;
use aws_sdk_ecs::types::{ServiceField, TaskDefinitionField};

use super::{Clients, Result, Scope, ec2, tag_map};
use crate::aws::{AwsError, aws};
use crate::observed::{self, Placement, name_from_arn};
use crate::render::{
    ContainerDefinition, Device, EfsVolume, KeyValue, LinuxParameters, LogConfiguration, MountPoint, PortMapping,
    SecretRef, TaskDefinition, Volume,
};

/// DescribeServices takes at most 10 services per call; DescribeTasks and
/// DescribeContainerInstances 100.
const SERVICES_PER_CALL: usize = 10;
const TASKS_PER_CALL: usize = 100;

pub(super) type EcsPart = (BTreeMap<String, bool>, Vec<observed::EcsService>);

/// Whether each cluster exists, and the services in scope (every service, for orphans).
pub(super) async fn ecs_services(c: &Clients, scope: &Scope) -> Result<EcsPart> {
    let mut clusters = BTreeMap::new();
    let mut services = Vec::new();
    for cluster in &scope.clusters {
        let mut names: BTreeSet<String> = scope.ecs_services.get(cluster).cloned().unwrap_or_default();
        if scope.list_all_services {
            names.extend(list_services(c, cluster).await?);
        }
        let names: Vec<String> = names.into_iter().collect();
        let exists = describe_services(c, cluster, &names, &mut services).await?;
        clusters.insert(cluster.clone(), exists);
    }
    Ok((clusters, services))
}

/// Every service name in a cluster (none when the cluster does not exist).
async fn list_services(c: &Clients, cluster: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut pages = c.ecs.list_services().cluster(cluster).into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => names.extend(p.service_arns().iter().map(|a| name_from_arn(a).to_owned())),
            Err(e) => {
                let e = AwsError::new("ListServices", e);
                if e.is("ClusterNotFoundException") {
                    break;
                }
                return Err(e);
            }
        }
    }
    Ok(names)
}

/// The named services (10 per call) into `services`; false when the cluster does not exist.
async fn describe_services(
    c: &Clients,
    cluster: &str,
    names: &[String],
    services: &mut Vec<observed::EcsService>,
) -> Result<bool> {
    let mut exists = true;
    for chunk in names.chunks(SERVICES_PER_CALL) {
        let call = c.ecs.describe_services().cluster(cluster).set_services(Some(chunk.to_vec()));
        let out = match call.include(ServiceField::Tags).send().await {
            Ok(o) => o,
            Err(e) => {
                let e = AwsError::new("DescribeServices", e);
                if e.is("ClusterNotFoundException") {
                    return Ok(false);
                }
                return Err(e);
            }
        };
        if cluster_missing(out.failures()) {
            exists = false;
        }
        services.extend(out.services().iter().map(|s| ecs_service(cluster, s)));
    }
    Ok(exists)
}

/// The latest ACTIVE revision of each family in scope (families without one are left out).
/// Families a vouching service runs are not read (see [`super::Vouch`]).
pub(super) async fn task_definitions(
    c: &Clients,
    scope: &Scope,
    vouched: &super::Vouched<'_>,
) -> Result<BTreeMap<String, observed::TaskDefinitionRevision>> {
    let mut out = vouched.task_definitions();
    let unread: Vec<&String> = scope.families.iter().filter(|f| !out.contains_key(*f)).collect();
    for family in unread {
        if let Some(revision) = latest_revision(c, family).await? {
            out.insert(family.clone(), revision);
        }
    }
    Ok(out)
}

/// The host ports of the task definitions that services outside the desired set run (one
/// DescribeTaskDefinition per distinct revision): a service made by hand on a port we want.
pub(super) async fn host_ports(
    c: &Clients,
    scope: &Scope,
    services: &[observed::EcsService],
) -> Result<BTreeMap<String, Vec<u16>>> {
    let desired = |s: &observed::EcsService| scope.ecs_services.get(&s.cluster).is_some_and(|n| n.contains(&s.name));
    let arns: BTreeSet<&str> = services
        .iter()
        .filter(|s| s.status != "INACTIVE" && !desired(s))
        .filter_map(|s| s.task_definition.as_deref())
        .collect();
    let mut out = BTreeMap::new();
    for arn in arns {
        let td = c.ecs.describe_task_definition().task_definition(arn).send().await;
        let td = match td.map_err(aws("DescribeTaskDefinition")) {
            Ok(r) => r,
            // Deregistered and gone: nothing runs from it. Any other error fails the pass (a
            // port not read could be one we are about to take).
            Err(e) if e.is("ClientException") => continue,
            Err(e) => return Err(e),
        };
        // awsvpc tasks listen on their own network interface, never on the instance's ports.
        let Some(t) = td.task_definition().filter(|t| t.network_mode() != Some(&ecs::types::NetworkMode::Awsvpc))
        else {
            continue;
        };
        let ports = task_definition(t).container_definitions;
        let ports = ports.iter().flat_map(|c| &c.port_mappings).map(|p| p.host_port).filter(|p| *p != 0).collect();
        out.insert(arn.to_owned(), ports);
    }
    Ok(out)
}

async fn latest_revision(c: &Clients, family: &str) -> Result<Option<observed::TaskDefinitionRevision>> {
    let resp = c.ecs.describe_task_definition().task_definition(family).include(TaskDefinitionField::Tags).send();
    match resp.await {
        Ok(r) => Ok(r.task_definition().and_then(|td| revision(td, r.tags()))),
        Err(e) => {
            let e = AwsError::new("DescribeTaskDefinition", e);
            // No revision yet (or none ACTIVE).
            if e.is("ClientException") || e.message.contains("nable to describe") || e.message.contains("not found") {
                return Ok(None);
            }
            Err(e)
        }
    }
}

/// RUNNING tasks of each service (listed per cluster and matched on `group`, never a
/// server-side service filter), their container instances and those instances' private IPs:
/// ListTasks + DescribeTasks (100 per call) + DescribeContainerInstances (100 per call) per
/// cluster, and one DescribeInstances for all.
pub(super) async fn placements(c: &Clients, scope: &Scope) -> Result<BTreeMap<String, Placement>> {
    let mut out: BTreeMap<String, Placement> = BTreeMap::new();
    let mut instance_of_service: Vec<(String, String)> = Vec::new();
    for (cluster, services) in &scope.placements {
        out.extend(services.iter().map(|s| (s.clone(), Placement::default())));
        let arns = running_task_arns(c, cluster).await?;
        let ci_of_service = running_tasks(c, cluster, services, &arns, &mut out).await?;
        let ec2_of_ci = ec2_instance_ids(c, cluster, &ci_of_service).await?;
        instance_of_service
            .extend(ci_of_service.into_iter().filter_map(|(s, ci)| Some((s, ec2_of_ci.get(&ci)?.clone()))));
    }
    let ids: Vec<String> =
        instance_of_service.iter().map(|(_, i)| i.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    if ids.is_empty() {
        return Ok(out);
    }
    let ip_of = ec2::private_ips(c, ids).await?;
    add_host_ips(&mut out, &instance_of_service, &ip_of);
    Ok(out)
}

/// ARNs of the cluster's tasks meant to run (none when the cluster does not exist).
async fn running_task_arns(c: &Clients, cluster: &str) -> Result<Vec<String>> {
    let mut arns = Vec::new();
    let list = c.ecs.list_tasks().cluster(cluster).desired_status(ecs::types::DesiredStatus::Running);
    let mut pages = list.into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => arns.extend(p.task_arns().iter().cloned()),
            Err(e) => {
                let e = AwsError::new("ListTasks", e);
                if e.is("ClusterNotFoundException") {
                    break;
                }
                return Err(e);
            }
        }
    }
    Ok(arns)
}

/// Counts each service's RUNNING tasks into `out`; returns (service, container instance ARN).
async fn running_tasks(
    c: &Clients,
    cluster: &str,
    services: &BTreeSet<String>,
    arns: &[String],
    out: &mut BTreeMap<String, Placement>,
) -> Result<Vec<(String, String)>> {
    let mut ci_of_service = Vec::new();
    for chunk in arns.chunks(TASKS_PER_CALL) {
        let call = c.ecs.describe_tasks().cluster(cluster).set_tasks(Some(chunk.to_vec()));
        let tasks = call.send().await.map_err(aws("DescribeTasks"))?;
        for t in tasks.tasks() {
            let Some(service) = running_service(t, services) else {
                continue;
            };
            if let Some(p) = out.get_mut(service) {
                p.running_tasks += 1;
            }
            if let Some(ci) = t.container_instance_arn() {
                ci_of_service.push((service.to_owned(), ci.to_owned()));
            }
        }
    }
    Ok(ci_of_service)
}

/// EC2 instance id by container instance ARN.
async fn ec2_instance_ids(
    c: &Clients,
    cluster: &str,
    ci_of_service: &[(String, String)],
) -> Result<BTreeMap<String, String>> {
    let cis: Vec<String> =
        ci_of_service.iter().map(|(_, ci)| ci.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let mut ec2_of_ci = BTreeMap::new();
    for chunk in cis.chunks(TASKS_PER_CALL) {
        let call = c.ecs.describe_container_instances().cluster(cluster).set_container_instances(Some(chunk.to_vec()));
        let out = call.send().await.map_err(aws("DescribeContainerInstances"))?;
        ec2_of_ci.extend(
            out.container_instances()
                .iter()
                .filter_map(|ci| Some((ci.container_instance_arn()?.to_owned(), ci.ec2_instance_id()?.to_owned()))),
        );
    }
    Ok(ec2_of_ci)
}

// Conversions (pure): SDK values → observed pieces.

/// `DescribeServices` reports a missing cluster as a failure on the cluster's ARN.
fn cluster_missing(failures: &[ecs::types::Failure]) -> bool {
    failures.iter().any(|f| f.reason() == Some("MISSING") && f.arn().is_some_and(|a| a.contains(":cluster/")))
}

/// The service in scope a RUNNING task belongs to (its `group` is `service:<name>`).
fn running_service<'a>(t: &'a ecs::types::Task, services: &BTreeSet<String>) -> Option<&'a str> {
    let service = t.group()?.strip_prefix("service:")?;
    (services.contains(service) && t.last_status() == Some("RUNNING")).then_some(service)
}

/// Each service's hosts' IPs, sorted and once each.
fn add_host_ips(
    out: &mut BTreeMap<String, Placement>,
    instance_of_service: &[(String, String)],
    ip_of: &BTreeMap<String, String>,
) {
    for (service, id) in instance_of_service {
        if let (Some(p), Some(ip)) = (out.get_mut(service), ip_of.get(id)) {
            p.host_ips.push(ip.clone());
        }
    }
    for p in out.values_mut() {
        p.host_ips.sort();
        p.host_ips.dedup();
    }
}

fn ecs_service(cluster: &str, s: &ecs::types::Service) -> observed::EcsService {
    let dc = s.deployment_configuration();
    observed::EcsService {
        arn: s.service_arn().unwrap_or_default().to_owned(),
        name: s.service_name().unwrap_or_default().to_owned(),
        cluster: cluster.to_owned(),
        status: s.status().unwrap_or_default().to_owned(),
        task_definition: s.task_definition().map(str::to_owned),
        desired_count: Some(s.desired_count()),
        running_count: Some(s.running_count()),
        pending_count: Some(s.pending_count()),
        load_balancers: s
            .load_balancers()
            .iter()
            .map(|l| observed::ServiceBinding {
                arn: l.target_group_arn().unwrap_or_default().to_owned(),
                container_name: l.container_name().map(str::to_owned),
                container_port: l.container_port(),
            })
            .collect(),
        service_registries: s
            .service_registries()
            .iter()
            .map(|r| observed::ServiceBinding {
                arn: r.registry_arn().unwrap_or_default().to_owned(),
                container_name: r.container_name().map(str::to_owned),
                container_port: r.container_port(),
            })
            .collect(),
        minimum_healthy_percent: dc.and_then(|d| d.minimum_healthy_percent()),
        maximum_percent: dc.and_then(|d| d.maximum_percent()),
        circuit_breaker_rollback: dc.and_then(|d| d.deployment_circuit_breaker()).map(|b| b.enable() && b.rollback()),
        // An empty list may just mean "not reported" (moto drops them): unknown unless present.
        distinct_instance: (!s.placement_constraints().is_empty()).then(|| {
            s.placement_constraints().iter().any(|p| p.r#type().map(|t| t.as_str()) == Some("distinctInstance"))
        }),
        health_check_grace_period_seconds: s.health_check_grace_period_seconds(),
        deployments: s.deployments().iter().map(deployment).collect(),
        tags: tag_map(s.tags().iter().map(|t| (t.key(), t.value()))),
    }
}

fn deployment(d: &ecs::types::Deployment) -> observed::Deployment {
    observed::Deployment {
        id: d.id().unwrap_or_default().to_owned(),
        status: d.status().unwrap_or_default().to_owned(),
        task_definition: d.task_definition().unwrap_or_default().to_owned(),
        rollout_state: d.rollout_state().map(|r| r.as_str().to_owned()),
        rollout_state_reason: d.rollout_state_reason().map(str::to_owned),
        running_count: d.running_count(),
        desired_count: d.desired_count(),
        failed_tasks: d.failed_tasks(),
    }
}

/// A described revision with its tags; `None` when INACTIVE.
fn revision(td: &ecs::types::TaskDefinition, tags: &[ecs::types::Tag]) -> Option<observed::TaskDefinitionRevision> {
    if td.status().map(|s| s.as_str()) == Some("INACTIVE") {
        return None;
    }
    Some(observed::TaskDefinitionRevision {
        arn: td.task_definition_arn().unwrap_or_default().to_owned(),
        family: td.family().unwrap_or_default().to_owned(),
        revision: td.revision(),
        definition: Some(task_definition(td)),
        tags: tag_map(tags.iter().map(|t| (t.key(), t.value()))),
    })
}

/// The SDK's task definition mapped back to the fields we render, for diffs.
fn task_definition(td: &ecs::types::TaskDefinition) -> TaskDefinition {
    TaskDefinition {
        family: td.family().unwrap_or_default().to_owned(),
        network_mode: td.network_mode().map(|m| m.as_str().to_owned()).unwrap_or_default(),
        requires_compatibilities: td.requires_compatibilities().iter().map(|c| c.as_str().to_owned()).collect(),
        execution_role_arn: td.execution_role_arn().map(str::to_owned),
        task_role_arn: td.task_role_arn().map(str::to_owned),
        container_definitions: td.container_definitions().iter().map(container_definition).collect(),
        volumes: td.volumes().iter().map(volume).collect(),
    }
}

fn container_definition(c: &ecs::types::ContainerDefinition) -> ContainerDefinition {
    let mut environment: Vec<KeyValue> = c
        .environment()
        .iter()
        .map(|e| KeyValue {
            name: e.name().unwrap_or_default().to_owned(),
            value: e.value().unwrap_or_default().to_owned(),
        })
        .collect();
    environment.sort();
    ContainerDefinition {
        name: c.name().unwrap_or_default().to_owned(),
        image: c.image().unwrap_or_default().to_owned(),
        essential: c.essential().unwrap_or(true),
        cpu: c.cpu() as u32,
        memory: c.memory().unwrap_or_default() as u32,
        port_mappings: c
            .port_mappings()
            .iter()
            .map(|p| PortMapping {
                container_port: p.container_port().unwrap_or_default() as u16,
                host_port: p.host_port().unwrap_or_default() as u16,
                protocol: p.protocol().map(|x| x.as_str().to_owned()).unwrap_or_else(|| "tcp".into()),
            })
            .collect(),
        entry_point: c.entry_point().to_vec(),
        command: c.command().to_vec(),
        environment,
        secrets: c
            .secrets()
            .iter()
            .map(|s| SecretRef { name: s.name().to_owned(), value_from: s.value_from().to_owned() })
            .collect(),
        mount_points: c
            .mount_points()
            .iter()
            .map(|m| MountPoint {
                source_volume: m.source_volume().unwrap_or_default().to_owned(),
                container_path: m.container_path().unwrap_or_default().to_owned(),
                read_only: m.read_only().unwrap_or(false),
            })
            .collect(),
        linux_parameters: c.linux_parameters().map(linux_parameters),
        log_configuration: c.log_configuration().map(|l| LogConfiguration {
            log_driver: l.log_driver().as_str().to_owned(),
            options: l.options().cloned().unwrap_or_default().into_iter().collect(),
        }),
    }
}

fn linux_parameters(l: &ecs::types::LinuxParameters) -> LinuxParameters {
    LinuxParameters {
        capabilities_add: l.capabilities().map(|c| c.add().to_vec()).unwrap_or_default(),
        devices: l
            .devices()
            .iter()
            .map(|d| Device {
                host_path: d.host_path().to_owned(),
                container_path: d.container_path().unwrap_or_default().to_owned(),
                permissions: d.permissions().iter().map(|p| p.as_str().to_owned()).collect(),
            })
            .collect(),
    }
}

fn volume(v: &ecs::types::Volume) -> Volume {
    Volume {
        name: v.name().unwrap_or_default().to_owned(),
        host_source_path: v.host().and_then(|h| h.source_path().map(str::to_owned)),
        efs: v.efs_volume_configuration().map(|e| EfsVolume {
            file_system_id: e.file_system_id().to_owned(),
            root_directory: e.root_directory().unwrap_or("/").to_owned(),
            access_point_id: e.authorization_config().and_then(|a| a.access_point_id().map(str::to_owned)),
            transit_encryption: e.transit_encryption().map(|t| t.as_str() == "ENABLED").unwrap_or(false),
        }),
    }
}

/// What placing one more task on `i` depends on.
pub(super) fn container_instance(i: &aws_sdk_ecs::types::ContainerInstance) -> observed::ContainerInstance {
    let remaining = |name: &str| i.remaining_resources().iter().find(|r| r.name() == Some(name));
    let ports = remaining("PORTS").map(|r| r.string_set_value().iter().filter_map(|p| p.parse().ok()).collect());
    observed::ContainerInstance {
        agent_connected: i.agent_connected(),
        remaining_cpu: remaining("CPU").map_or(0, |r| i64::from(r.integer_value())),
        remaining_memory: remaining("MEMORY").map_or(0, |r| i64::from(r.integer_value())),
        reserved_ports: ports.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use ecs::types::{
        Deployment, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentRolloutState, EfsVolumeConfiguration,
        Failure, KeyValuePair, PlacementConstraint, PlacementConstraintType, Service, Tag, Task, TaskDefinitionStatus,
    };

    use super::*;

    #[test]
    fn a_missing_cluster_shows_as_a_failure_on_its_arn() {
        let f = |reason: &str, arn: &str| Failure::builder().reason(reason).arn(arn).build();
        assert!(cluster_missing(&[f("MISSING", "arn:aws:ecs:us-east-1:1:cluster/sftp")]));
        assert!(!cluster_missing(&[f("MISSING", "arn:aws:ecs:us-east-1:1:service/sftp/campus")]));
        assert!(!cluster_missing(&[]));
    }

    #[test]
    fn a_service_converts_and_unreported_placement_constraints_stay_unknown() {
        let s = Service::builder()
            .service_arn("arn:aws:ecs:us-east-1:1:service/sftp/campus")
            .service_name("campus")
            .status("ACTIVE")
            .desired_count(2)
            .deployment_configuration(
                DeploymentConfiguration::builder()
                    .minimum_healthy_percent(50)
                    .deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(true).rollback(true).build())
                    .build(),
            )
            .deployments(Deployment::builder().status("ACTIVE").rollout_state_reason("old").build())
            .deployments(Deployment::builder().status("PRIMARY").rollout_state_reason("new").build())
            .tags(Tag::builder().key("k").value("v").build())
            .build();
        let o = ecs_service("sftp", &s);
        assert_eq!((o.name.as_str(), o.cluster.as_str(), o.desired_count), ("campus", "sftp", Some(2)));
        assert_eq!((o.minimum_healthy_percent, o.maximum_percent), (Some(50), None));
        assert_eq!(o.circuit_breaker_rollback, Some(true));
        assert_eq!(o.distinct_instance, None);
        assert_eq!(o.primary_deployment().and_then(|d| d.rollout_state_reason.as_deref()), Some("new"));
        assert_eq!(o.tags, [("k".into(), "v".into())].into());
        let constrained = Service::builder()
            .placement_constraints(PlacementConstraint::builder().r#type(PlacementConstraintType::MemberOf).build())
            .build();
        assert_eq!(ecs_service("sftp", &constrained).distinct_instance, Some(false));
    }

    #[test]
    fn deployments_convert_in_order_with_their_rollout_state_and_counts() {
        let ours = Deployment::builder()
            .id("ecs-svc/2")
            .status("ACTIVE")
            .task_definition("arn:aws:ecs:us-east-1:1:task-definition/sftp-campus:2")
            .rollout_state(DeploymentRolloutState::Failed)
            .rollout_state_reason("ECS deployment circuit breaker: tasks failed to start.")
            .desired_count(1)
            .failed_tasks(3)
            .build();
        let rollback = Deployment::builder()
            .id("ecs-svc/3")
            .status("PRIMARY")
            .task_definition("arn:aws:ecs:us-east-1:1:task-definition/sftp-campus:1")
            .rollout_state(DeploymentRolloutState::InProgress)
            .running_count(1)
            .desired_count(1)
            .build();
        let o = ecs_service("sftp", &Service::builder().deployments(rollback).deployments(ours).build());
        assert_eq!(
            o.deployments,
            [
                observed::Deployment {
                    id: "ecs-svc/3".into(),
                    status: "PRIMARY".into(),
                    task_definition: "arn:aws:ecs:us-east-1:1:task-definition/sftp-campus:1".into(),
                    rollout_state: Some("IN_PROGRESS".into()),
                    rollout_state_reason: None,
                    running_count: 1,
                    desired_count: 1,
                    failed_tasks: 0,
                },
                observed::Deployment {
                    id: "ecs-svc/2".into(),
                    status: "ACTIVE".into(),
                    task_definition: "arn:aws:ecs:us-east-1:1:task-definition/sftp-campus:2".into(),
                    rollout_state: Some("FAILED".into()),
                    rollout_state_reason: Some("ECS deployment circuit breaker: tasks failed to start.".into()),
                    running_count: 0,
                    desired_count: 1,
                    failed_tasks: 3,
                },
            ]
        );
        assert_eq!(o.primary_deployment().map(|d| d.id.as_str()), Some("ecs-svc/3"));
        assert!(ecs_service("sftp", &Service::builder().build()).deployments.is_empty());
    }

    #[test]
    fn a_task_definition_maps_back_to_the_rendered_shape_and_inactive_ones_are_skipped() {
        let container = ecs::types::ContainerDefinition::builder()
            .name("sftp")
            .image("atmoz/sftp")
            .cpu(256)
            .environment(KeyValuePair::builder().name("B").value("2").build())
            .environment(KeyValuePair::builder().name("A").value("1").build())
            .port_mappings(ecs::types::PortMapping::builder().container_port(22).host_port(30020).build())
            .build();
        let efs = EfsVolumeConfiguration::builder().file_system_id("fs-1").build().unwrap();
        let td = ecs::types::TaskDefinition::builder()
            .task_definition_arn("arn:aws:ecs:us-east-1:1:task-definition/sftp-campus:3")
            .family("sftp-campus")
            .revision(3)
            .container_definitions(container)
            .volumes(ecs::types::Volume::builder().name("data").efs_volume_configuration(efs).build())
            .build();
        let tags = [Tag::builder().key("k").value("v").build()];
        let r = revision(&td, &tags).unwrap();
        assert_eq!((r.family.as_str(), r.revision, r.tags.len()), ("sftp-campus", 3, 1));
        let c = &r.definition.as_ref().unwrap().container_definitions[0];
        assert_eq!((c.name.as_str(), c.cpu, c.memory, c.essential), ("sftp", 256, 0, true));
        assert_eq!(c.environment.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["A", "B"], "sorted");
        assert_eq!((c.port_mappings[0].host_port, c.port_mappings[0].protocol.as_str()), (30020, "tcp"));
        let v = &r.definition.as_ref().unwrap().volumes[0];
        let e = v.efs.as_ref().unwrap();
        assert_eq!((e.root_directory.as_str(), e.transit_encryption, v.host_source_path.as_ref()), ("/", false, None));
        let inactive =
            ecs::types::TaskDefinition::builder().family("sftp-campus").status(TaskDefinitionStatus::Inactive);
        let inactive = inactive.build();
        assert_eq!(revision(&inactive, &[]), None);
    }

    #[test]
    fn only_running_tasks_of_services_in_scope_count_and_host_ips_are_sorted_once() {
        let services: BTreeSet<String> = ["campus".to_owned()].into();
        let task = |group: &str, status: &str| Task::builder().group(group).last_status(status).build();
        assert_eq!(running_service(&task("service:campus", "RUNNING"), &services), Some("campus"));
        assert_eq!(running_service(&task("service:campus", "PENDING"), &services), None);
        assert_eq!(running_service(&task("service:other", "RUNNING"), &services), None);
        assert_eq!(running_service(&task("family:campus", "RUNNING"), &services), None);
        let mut out: BTreeMap<String, Placement> = [("campus".to_owned(), Placement::default())].into();
        let pairs = [("campus", "i-2"), ("campus", "i-1"), ("campus", "i-2"), ("gone", "i-1"), ("campus", "i-x")];
        let pairs: Vec<(String, String)> = pairs.iter().map(|(s, i)| (s.to_string(), i.to_string())).collect();
        let ip_of: BTreeMap<String, String> =
            [("i-1", "10.0.1.9"), ("i-2", "10.0.1.10")].map(|(a, b)| (a.into(), b.into())).into();
        add_host_ips(&mut out, &pairs, &ip_of);
        assert_eq!(out["campus"].host_ips, ["10.0.1.10", "10.0.1.9"]);
        assert_eq!(out.len(), 1);
    }
}
