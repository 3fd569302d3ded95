//! Observe (read-only): one pass over AWS for a set of desired services, batched across them —
//! one call per cluster, load balancer, security group, namespace, never the same thing twice.
//! SDK types stop here; the planner sees [`Observed`].

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ecs::types::{ServiceField, TaskDefinitionField};

use super::{AwsError, Clients, aws};
use crate::observed::{self, Observed, Tags, name_from_arn};
use crate::render::{
    ContainerDefinition, Desired, Device, EfsVolume, KeyValue, LinuxParameters, LogConfiguration, MountPoint,
    PortMapping, SecretRef, TaskDefinition, Volume,
};

type Result<T, E = AwsError> = std::result::Result<T, E>;

/// What to look at: derived from the desired services (and, for prune, their containers).
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub clusters: BTreeSet<String>,
    pub load_balancers: BTreeSet<String>,
    pub security_groups: BTreeSet<String>,
    pub namespaces: BTreeSet<String>,
    pub families: BTreeSet<String>,
    pub ecs_services: BTreeMap<String, BTreeSet<String>>,
    pub secrets: BTreeSet<String>,
    /// Zone references (names or ids) from `dns` blocks.
    pub zones: BTreeSet<String>,
    /// Services (cluster → names) whose task placement feeds DNS.
    pub placements: BTreeMap<String, BTreeSet<String>>,
    /// Read Cloud Map's registered instances too (for `status`' cross-check).
    pub cloud_map_instances: bool,
    /// List every ECS service in the clusters (to find orphans for prune/delete).
    pub list_all_services: bool,
}

impl Scope {
    pub fn of(desired: &[Desired]) -> Scope {
        let mut s = Scope::default();
        for d in desired {
            s.clusters.insert(d.ecs_service.cluster.clone());
            s.load_balancers.insert(d.load_balancer_arn.clone());
            s.security_groups.insert(d.security_group_id.clone());
            if let Some(cm) = &d.cloud_map {
                s.namespaces.insert(cm.namespace.clone());
            }
            s.families.insert(d.names.task_family.clone());
            s.ecs_services.entry(d.ecs_service.cluster.clone()).or_default().insert(d.ecs_service.name.clone());
            if let Some(name) = &d.host_key_secret {
                s.secrets.insert(name.clone());
            }
            if let Some(dns) = &d.dns {
                s.zones.insert(dns.zone.clone());
                s.zones.extend(dns.public_zone.clone());
                s.placements.entry(d.ecs_service.cluster.clone()).or_default().insert(d.ecs_service.name.clone());
            }
        }
        s
    }
}

fn tag_map<I, K, V>(it: I) -> Tags
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    it.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

pub async fn observe(c: &Clients, scope: &Scope) -> Result<Observed> {
    // Independent reads run concurrently; each is one (paginated) call per container.
    let (lbs, sgs, ns, ecs, tds, secrets, (zones, record_sets), placements) = tokio::try_join!(
        load_balancers(c, scope),
        security_groups(c, scope),
        cloud_map(c, scope),
        ecs_services(c, scope),
        task_definitions(c, scope),
        secrets(c, scope),
        route53(c, scope),
        placements(c, scope),
    )?;
    let (load_balancers, target_groups, listeners) = lbs;
    let (namespaces, cloud_map_services) = ns;
    let (clusters, ecs_services) = ecs;
    let placements = if scope.cloud_map_instances {
        with_cloud_map(c, placements, &namespaces_for_placement(&scope.placements), &cloud_map_services).await?
    } else {
        placements
    };
    Ok(Observed {
        load_balancers,
        target_groups,
        listeners,
        security_groups: sgs,
        namespaces,
        cloud_map_services,
        clusters,
        ecs_services,
        task_definitions: tds,
        secrets,
        zones,
        record_sets,
        placements,
    })
}

type LbPart = (BTreeMap<String, Option<observed::LoadBalancer>>, Vec<observed::TargetGroup>, Vec<observed::Listener>);

async fn load_balancers(c: &Clients, scope: &Scope) -> Result<LbPart> {
    let mut lbs = BTreeMap::new();
    if scope.load_balancers.is_empty() {
        return Ok((lbs, vec![], vec![]));
    }
    let arns: Vec<String> = scope.load_balancers.iter().cloned().collect();
    // One call for all; a missing ARN fails the whole call, so fall back to one by one.
    let found = match c.elb.describe_load_balancers().set_load_balancer_arns(Some(arns.clone())).send().await {
        Ok(out) => out.load_balancers.unwrap_or_default(),
        Err(e) => {
            let e = AwsError::new("DescribeLoadBalancers", e);
            if !e.is("LoadBalancerNotFound") {
                return Err(e);
            }
            let mut v = Vec::new();
            for arn in &arns {
                match c.elb.describe_load_balancers().load_balancer_arns(arn).send().await {
                    Ok(out) => v.extend(out.load_balancers.unwrap_or_default()),
                    Err(e) => {
                        let e = AwsError::new("DescribeLoadBalancers", e);
                        if !e.is("LoadBalancerNotFound") {
                            return Err(e);
                        }
                    }
                }
            }
            v
        }
    };
    let subnet_ids: Vec<String> = found
        .iter()
        .flat_map(|lb| lb.availability_zones().iter().filter_map(|z| z.subnet_id().map(str::to_owned)))
        .collect();
    let mut subnet_cidrs: BTreeMap<String, String> = BTreeMap::new();
    if !subnet_ids.is_empty() {
        let out =
            c.ec2.describe_subnets().set_subnet_ids(Some(subnet_ids)).send().await.map_err(aws("DescribeSubnets"))?;
        for s in out.subnets() {
            if let (Some(id), Some(cidr)) = (s.subnet_id(), s.cidr_block()) {
                subnet_cidrs.insert(id.to_owned(), cidr.to_owned());
            }
        }
    }
    for arn in &arns {
        lbs.insert(arn.clone(), None);
    }
    for lb in &found {
        let arn = lb.load_balancer_arn().unwrap_or_default().to_owned();
        let mut cidrs: Vec<String> = lb
            .availability_zones()
            .iter()
            .filter_map(|z| z.subnet_id().and_then(|id| subnet_cidrs.get(id).cloned()))
            .collect();
        cidrs.sort();
        cidrs.dedup();
        lbs.insert(
            arn.clone(),
            Some(observed::LoadBalancer {
                arn,
                kind: lb.r#type().map(|t| t.as_str().to_owned()).unwrap_or_default(),
                scheme: lb.scheme().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                vpc_id: lb.vpc_id().unwrap_or_default().to_owned(),
                dns_name: lb.dns_name().unwrap_or_default().to_owned(),
                canonical_hosted_zone_id: lb.canonical_hosted_zone_id().unwrap_or_default().to_owned(),
                subnet_cidrs: cidrs,
            }),
        );
    }

    // Every target group in the account (one page for most accounts): finds ours whether or
    // not a listener points at it yet, so an interrupted run never creates a duplicate.
    let mut tgs = Vec::new();
    let mut pages = c.elb.describe_target_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("DescribeTargetGroups"))?;
        tgs.extend(page.target_groups.unwrap_or_default());
    }
    let mut listeners = Vec::new();
    for lb in &found {
        let arn = lb.load_balancer_arn().unwrap_or_default();
        let mut pages = c.elb.describe_listeners().load_balancer_arn(arn).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws("DescribeListeners"))?;
            listeners.extend(page.listeners.unwrap_or_default());
        }
    }
    // Tags only for candidates: target groups on our NLBs or named like ours, and our NLBs' listeners.
    let candidate_tgs: Vec<&aws_sdk_elasticloadbalancingv2::types::TargetGroup> = tgs
        .iter()
        .filter(|t| {
            t.target_group_name().is_some_and(|n| n.starts_with("sftp-"))
                || t.load_balancer_arns().iter().any(|a| scope.load_balancers.contains(a))
        })
        .collect();
    let mut tag_arns: Vec<String> =
        candidate_tgs.iter().filter_map(|t| t.target_group_arn().map(str::to_owned)).collect();
    tag_arns.extend(listeners.iter().filter_map(|l| l.listener_arn().map(str::to_owned)));
    let mut tags: BTreeMap<String, Tags> = BTreeMap::new();
    for chunk in tag_arns.chunks(20) {
        let out =
            c.elb.describe_tags().set_resource_arns(Some(chunk.to_vec())).send().await.map_err(aws("DescribeTags"))?;
        for td in out.tag_descriptions() {
            let t = tag_map(
                td.tags().iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))),
            );
            tags.insert(td.resource_arn().unwrap_or_default().to_owned(), t);
        }
    }
    let target_groups = candidate_tgs
        .into_iter()
        .map(|t| {
            let arn = t.target_group_arn().unwrap_or_default().to_owned();
            observed::TargetGroup {
                name: t.target_group_name().unwrap_or_default().to_owned(),
                protocol: t.protocol().map(|p| p.as_str().to_owned()),
                port: t.port(),
                target_type: t.target_type().map(|p| p.as_str().to_owned()),
                vpc_id: t.vpc_id().map(str::to_owned),
                health_check_protocol: t.health_check_protocol().map(|p| p.as_str().to_owned()),
                health_check_port: t.health_check_port().map(str::to_owned),
                health_check_interval_seconds: t.health_check_interval_seconds(),
                healthy_threshold: t.healthy_threshold_count(),
                unhealthy_threshold: t.unhealthy_threshold_count(),
                load_balancer_arns: t.load_balancer_arns().to_vec(),
                tags: tags.get(&arn).cloned().unwrap_or_default(),
                arn,
            }
        })
        .collect();
    let mut out_listeners = Vec::new();
    for l in &listeners {
        let arn = l.listener_arn().unwrap_or_default().to_owned();
        let t = tags.get(&arn).cloned().unwrap_or_default();
        // Attributes only for listeners we may manage: ours, or on a port a manifest wants.
        let idle_timeout_seconds =
            if t.contains_key(crate::names::OWNER_TAG) { listener_idle_timeout(c, &arn).await? } else { None };
        out_listeners.push(observed::Listener {
            load_balancer_arn: l.load_balancer_arn().unwrap_or_default().to_owned(),
            port: l.port(),
            protocol: l.protocol().map(|p| p.as_str().to_owned()),
            forward_target_group_arns: l
                .default_actions()
                .iter()
                .flat_map(|a| {
                    let mut v: Vec<String> = a.target_group_arn().map(str::to_owned).into_iter().collect();
                    if let Some(fc) = a.forward_config() {
                        v.extend(fc.target_groups().iter().filter_map(|t| t.target_group_arn().map(str::to_owned)));
                    }
                    v
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            idle_timeout_seconds,
            tags: t,
            arn,
        });
    }
    Ok((lbs, target_groups, out_listeners))
}

pub const IDLE_TIMEOUT_ATTRIBUTE: &str = "tcp.idle_timeout.seconds";

async fn listener_idle_timeout(c: &Clients, arn: &str) -> Result<Option<u32>> {
    match c.elb.describe_listener_attributes().listener_arn(arn).send().await {
        Ok(out) => Ok(out
            .attributes()
            .iter()
            .find(|a| a.key() == Some(IDLE_TIMEOUT_ATTRIBUTE))
            .and_then(|a| a.value()?.parse().ok())),
        // An API without listener attributes reports nothing: unknown, not drift.
        Err(e) => {
            let e = AwsError::new("DescribeListenerAttributes", e);
            if e.throttled { Err(e) } else { Ok(None) }
        }
    }
}

async fn security_groups(c: &Clients, scope: &Scope) -> Result<BTreeMap<String, Option<Vec<observed::IngressRule>>>> {
    let mut out: BTreeMap<String, Option<Vec<observed::IngressRule>>> = BTreeMap::new();
    if scope.security_groups.is_empty() {
        return Ok(out);
    }
    let ids: Vec<String> = scope.security_groups.iter().cloned().collect();
    // One walk over the rules of every group. A group that shows any rule (its default egress
    // rule, at least) exists; only a group without any is checked on its own.
    let mut rules: BTreeMap<String, Vec<observed::IngressRule>> = BTreeMap::new();
    let filter = aws_sdk_ec2::types::Filter::builder().name("group-id").set_values(Some(ids.clone())).build();
    let mut pages = c.ec2.describe_security_group_rules().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("DescribeSecurityGroupRules"))?;
        for r in page.security_group_rules() {
            let group = rules.entry(r.group_id().unwrap_or_default().to_owned()).or_default();
            if r.is_egress() == Some(true) {
                continue;
            }
            // Group/prefix-list sources are never ours, but they count against the quota.
            group.push(observed::IngressRule {
                rule_id: r.security_group_rule_id().unwrap_or_default().to_owned(),
                protocol: r.ip_protocol().unwrap_or_default().to_owned(),
                from_port: r.from_port().unwrap_or(-1),
                to_port: r.to_port().unwrap_or(-1),
                cidr: r.cidr_ipv4().or(r.cidr_ipv6()).unwrap_or_default().to_owned(),
                description: r.description().map(str::to_owned),
                tags: tag_map(
                    r.tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))),
                ),
            });
        }
    }
    for id in ids {
        let found = match rules.remove(&id) {
            Some(mut v) => {
                v.sort();
                Some(v)
            }
            None => match c.ec2.describe_security_groups().group_ids(&id).send().await {
                Ok(_) => Some(Vec::new()),
                Err(e) => {
                    let e = AwsError::new("DescribeSecurityGroups", e);
                    if !e.code.contains("NotFound") {
                        return Err(e);
                    }
                    None
                }
            },
        };
        out.insert(id, found);
    }
    Ok(out)
}

type CloudMapPart = (BTreeMap<String, Option<observed::Namespace>>, Vec<observed::CloudMapService>);

async fn cloud_map(c: &Clients, scope: &Scope) -> Result<CloudMapPart> {
    let mut namespaces = BTreeMap::new();
    let mut services = Vec::new();
    if scope.namespaces.is_empty() {
        return Ok((namespaces, services));
    }
    let mut all = Vec::new();
    let mut pages = c.cloudmap.list_namespaces().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("ListNamespaces"))?;
        all.extend(page.namespaces.unwrap_or_default());
    }
    for reference in &scope.namespaces {
        let found = all.iter().find(|n| {
            n.id() == Some(reference.as_str()) || n.name().map(|x| x.trim_end_matches('.')) == Some(reference.as_str())
        });
        namespaces.insert(
            reference.clone(),
            found.map(|n| observed::Namespace {
                id: n.id().unwrap_or_default().to_owned(),
                name: n.name().unwrap_or_default().to_owned(),
            }),
        );
    }
    let ids: BTreeSet<String> = namespaces.values().flatten().map(|n| n.id.clone()).collect();
    for id in ids {
        let filter = aws_sdk_servicediscovery::types::ServiceFilter::builder()
            .name(aws_sdk_servicediscovery::types::ServiceFilterName::NamespaceId)
            .values(id.clone())
            .build()
            .map_err(|e| AwsError::other("ListServices", e.to_string()))?;
        let mut pages = c.cloudmap.list_services().filters(filter).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws("ListServices"))?;
            for s in page.services() {
                let arn = s.arn().unwrap_or_default().to_owned();
                let srv_ttl = s
                    .dns_config()
                    .and_then(|d| d.dns_records().iter().find(|r| r.r#type().as_str() == "SRV").map(|r| r.ttl()));
                services.push(observed::CloudMapService {
                    id: s.id().unwrap_or_default().to_owned(),
                    name: s.name().unwrap_or_default().to_owned(),
                    namespace_id: id.clone(),
                    srv_ttl,
                    tags: Tags::new(),
                    description: s.description().map(str::to_owned),
                    instance_count: s.instance_count(),
                    arn,
                });
            }
        }
    }
    // Ownership: our description says it without a call; tags are read (one call each, Cloud
    // Map has no batch) only for other services named like ours.
    let wanted: BTreeSet<&str> = scope.ecs_services.values().flatten().map(String::as_str).collect();
    for s in services.iter_mut() {
        if let Some(tags) = s.description.as_deref().and_then(crate::codec::parse_rule_description).map(|o| o.tags()) {
            s.tags = tags;
        } else if wanted.contains(s.name.as_str()) || scope.list_all_services {
            let out = c
                .cloudmap
                .list_tags_for_resource()
                .resource_arn(&s.arn)
                .send()
                .await
                .map_err(aws("ListTagsForResource"))?;
            s.tags = tag_map(out.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())));
        }
    }
    Ok((namespaces, services))
}

type EcsPart = (BTreeMap<String, bool>, Vec<observed::EcsService>);

async fn ecs_services(c: &Clients, scope: &Scope) -> Result<EcsPart> {
    let mut clusters = BTreeMap::new();
    let mut services = Vec::new();
    for cluster in &scope.clusters {
        let mut names: BTreeSet<String> = scope.ecs_services.get(cluster).cloned().unwrap_or_default();
        if scope.list_all_services {
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
        }
        let names: Vec<String> = names.into_iter().collect();
        let mut exists = true;
        for chunk in names.chunks(10) {
            let out = match c
                .ecs
                .describe_services()
                .cluster(cluster)
                .set_services(Some(chunk.to_vec()))
                .include(ServiceField::Tags)
                .send()
                .await
            {
                Ok(o) => o,
                Err(e) => {
                    let e = AwsError::new("DescribeServices", e);
                    if e.is("ClusterNotFoundException") {
                        exists = false;
                        break;
                    }
                    return Err(e);
                }
            };
            if out
                .failures()
                .iter()
                .any(|f| f.reason() == Some("MISSING") && f.arn().is_some_and(|a| a.contains(":cluster/")))
            {
                exists = false;
            }
            for s in out.services() {
                services.push(ecs_service(cluster, s));
            }
        }
        clusters.insert(cluster.clone(), exists);
    }
    Ok((clusters, services))
}

fn ecs_service(cluster: &str, s: &aws_sdk_ecs::types::Service) -> observed::EcsService {
    let dc = s.deployment_configuration();
    let primary = s.deployments().iter().find(|d| d.status() == Some("PRIMARY"));
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
        rollout_state: primary.and_then(|d| d.rollout_state()).map(|r| r.as_str().to_owned()),
        rollout_reason: primary.and_then(|d| d.rollout_state_reason()).map(str::to_owned),
        tags: tag_map(
            s.tags().iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))),
        ),
    }
}

async fn task_definitions(c: &Clients, scope: &Scope) -> Result<BTreeMap<String, observed::TaskDefinitionRevision>> {
    let mut out = BTreeMap::new();
    for family in &scope.families {
        let resp =
            c.ecs.describe_task_definition().task_definition(family).include(TaskDefinitionField::Tags).send().await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                let e = AwsError::new("DescribeTaskDefinition", e);
                // No revision yet (or none ACTIVE).
                if e.is("ClientException") || e.message.contains("nable to describe") || e.message.contains("not found")
                {
                    continue;
                }
                return Err(e);
            }
        };
        let Some(td) = resp.task_definition() else {
            continue;
        };
        if td.status().map(|s| s.as_str()) == Some("INACTIVE") {
            continue;
        }
        let tags = tag_map(
            resp.tags().iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))),
        );
        out.insert(
            family.clone(),
            observed::TaskDefinitionRevision {
                arn: td.task_definition_arn().unwrap_or_default().to_owned(),
                family: td.family().unwrap_or_default().to_owned(),
                revision: td.revision(),
                definition: task_definition(td),
                tags,
            },
        );
    }
    Ok(out)
}

/// The SDK's task definition mapped back to the fields we render, for diffs.
fn task_definition(td: &aws_sdk_ecs::types::TaskDefinition) -> TaskDefinition {
    TaskDefinition {
        family: td.family().unwrap_or_default().to_owned(),
        network_mode: td.network_mode().map(|m| m.as_str().to_owned()).unwrap_or_default(),
        requires_compatibilities: td.requires_compatibilities().iter().map(|c| c.as_str().to_owned()).collect(),
        execution_role_arn: td.execution_role_arn().map(str::to_owned),
        task_role_arn: td.task_role_arn().map(str::to_owned),
        container_definitions: td
            .container_definitions()
            .iter()
            .map(|c| {
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
                    linux_parameters: c.linux_parameters().map(|l| LinuxParameters {
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
                    }),
                    log_configuration: c.log_configuration().map(|l| LogConfiguration {
                        log_driver: l.log_driver().as_str().to_owned(),
                        options: l.options().cloned().unwrap_or_default().into_iter().collect(),
                    }),
                }
            })
            .collect(),
        volumes: td
            .volumes()
            .iter()
            .map(|v| Volume {
                name: v.name().unwrap_or_default().to_owned(),
                host_source_path: v.host().and_then(|h| h.source_path().map(str::to_owned)),
                efs: v.efs_volume_configuration().map(|e| EfsVolume {
                    file_system_id: e.file_system_id().to_owned(),
                    root_directory: e.root_directory().unwrap_or("/").to_owned(),
                    access_point_id: e.authorization_config().and_then(|a| a.access_point_id().map(str::to_owned)),
                    transit_encryption: e.transit_encryption().map(|t| t.as_str() == "ENABLED").unwrap_or(false),
                }),
            })
            .collect(),
    }
}

async fn secrets(c: &Clients, scope: &Scope) -> Result<Vec<observed::Secret>> {
    let mut out = Vec::new();
    if scope.secrets.is_empty() {
        return Ok(out);
    }
    let filter = aws_sdk_secretsmanager::types::Filter::builder()
        .key(aws_sdk_secretsmanager::types::FilterNameStringType::Name)
        .values("sftp-operator/")
        .build();
    let mut pages = c.secrets.list_secrets().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("ListSecrets"))?;
        for s in page.secret_list() {
            let name = s.name().unwrap_or_default().to_owned();
            if !scope.secrets.contains(&name) {
                continue;
            }
            out.push(observed::Secret {
                arn: s.arn().unwrap_or_default().to_owned(),
                name,
                description: s.description().map(str::to_owned),
                tags: tag_map(
                    s.tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))),
                ),
            });
        }
    }
    Ok(out)
}

/// Target health of one target group, as (target id, port, state), for `status`.
pub async fn target_health(c: &Clients, target_group_arn: &str) -> Result<Vec<(String, Option<i32>, String)>> {
    let out = c
        .elb
        .describe_target_health()
        .target_group_arn(target_group_arn)
        .send()
        .await
        .map_err(aws("DescribeTargetHealth"))?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .map(|t| {
            let target = t.target();
            (
                target.and_then(|x| x.id()).unwrap_or_default().to_owned(),
                target.and_then(|x| x.port()),
                t.target_health().and_then(|h| h.state()).map(|s| s.as_str().to_owned()).unwrap_or_default(),
            )
        })
        .collect())
}

type Route53Part = (BTreeMap<String, crate::dns::ZoneLookup>, BTreeMap<String, Vec<crate::dns::RecordSet>>);

/// Zones resolved by id or name (a name matching several zones is ambiguous), then one
/// ListResourceRecordSets walk per zone, shared by every service in it.
async fn route53(c: &Clients, scope: &Scope) -> Result<Route53Part> {
    use crate::dns::ZoneLookup;
    let mut lookups = BTreeMap::new();
    let mut records = BTreeMap::new();
    if scope.zones.is_empty() {
        return Ok((lookups, records));
    }
    let mut zones = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        c.route53_permit().await;
        let out =
            c.route53.list_hosted_zones().set_marker(marker.clone()).send().await.map_err(aws("ListHostedZones"))?;
        zones.extend(out.hosted_zones().iter().cloned());
        match out.next_marker() {
            Some(m) if out.is_truncated() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    for reference in &scope.zones {
        let matches: Vec<&aws_sdk_route53::types::HostedZone> = zones
            .iter()
            .filter(|z| {
                let id = z.id().trim_start_matches("/hostedzone/");
                id == reference || crate::validate::normalize_dns_name(z.name()) == *reference
            })
            .collect();
        let lookup = match matches.as_slice() {
            [] => ZoneLookup::Missing,
            [z] => ZoneLookup::Found {
                id: z.id().trim_start_matches("/hostedzone/").to_owned(),
                name: crate::validate::normalize_dns_name(z.name()),
                private: z.config().is_some_and(|c| c.private_zone()),
            },
            many => ZoneLookup::Ambiguous {
                ids: many.iter().map(|z| z.id().trim_start_matches("/hostedzone/").to_owned()).collect(),
            },
        };
        lookups.insert(reference.clone(), lookup);
    }
    let ids: BTreeSet<String> = lookups
        .values()
        .filter_map(|l| match l {
            ZoneLookup::Found { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    for id in ids {
        records.insert(id.clone(), record_sets(c, &id).await?);
    }
    Ok((lookups, records))
}

/// Every record set of a zone, paged by hand (the SDK has no paginator for this call).
async fn record_sets(c: &Clients, zone_id: &str) -> Result<Vec<crate::dns::RecordSet>> {
    let mut out = Vec::new();
    let (mut name, mut kind, mut ident): (Option<String>, Option<aws_sdk_route53::types::RrType>, Option<String>) =
        (None, None, None);
    loop {
        c.route53_permit().await;
        let page = c
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .set_start_record_name(name.clone())
            .set_start_record_type(kind.clone())
            .set_start_record_identifier(ident.clone())
            .send()
            .await
            .map_err(aws("ListResourceRecordSets"))?;
        for r in page.resource_record_sets() {
            out.push(crate::dns::RecordSet {
                name: crate::validate::normalize_dns_name(r.name()),
                kind: r.r#type().as_str().to_owned(),
                ttl: r.ttl(),
                values: {
                    let mut v: Vec<String> = r.resource_records().iter().map(|x| x.value().to_owned()).collect();
                    v.sort();
                    v
                },
                alias: r.alias_target().map(|a| crate::dns::Alias {
                    dns_name: crate::validate::normalize_dns_name(a.dns_name()),
                    hosted_zone_id: a.hosted_zone_id().to_owned(),
                }),
                set_identifier: r.set_identifier().map(str::to_owned),
            });
        }
        if !page.is_truncated() {
            break;
        }
        name = page.next_record_name().map(str::to_owned);
        kind = page.next_record_type().cloned();
        ident = page.next_record_identifier().map(str::to_owned);
        if name.is_none() {
            break;
        }
    }
    Ok(out)
}

/// RUNNING tasks of each service (listed per cluster and matched on `group`, never a
/// server-side service filter), their container instances and those instances' private IPs:
/// ListTasks + DescribeTasks (100 per call) + DescribeContainerInstances (100 per call) per
/// cluster, and one DescribeInstances for all.
async fn placements(c: &Clients, scope: &Scope) -> Result<BTreeMap<String, crate::dns::Placement>> {
    let mut out: BTreeMap<String, crate::dns::Placement> = BTreeMap::new();
    let mut instance_of_service: Vec<(String, String)> = Vec::new();
    for (cluster, services) in &scope.placements {
        for s in services {
            out.insert(s.clone(), crate::dns::Placement::default());
        }
        let mut arns = Vec::new();
        let mut pages = c
            .ecs
            .list_tasks()
            .cluster(cluster)
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
            .into_paginator()
            .send();
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
        let mut ci_of_service: Vec<(String, String)> = Vec::new();
        for chunk in arns.chunks(100) {
            let tasks = c
                .ecs
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(aws("DescribeTasks"))?;
            for t in tasks.tasks() {
                let Some(service) = t.group().and_then(|g| g.strip_prefix("service:")) else {
                    continue;
                };
                if !services.contains(service) || t.last_status() != Some("RUNNING") {
                    continue;
                }
                if let Some(p) = out.get_mut(service) {
                    p.running_tasks += 1;
                }
                if let Some(ci) = t.container_instance_arn() {
                    ci_of_service.push((service.to_owned(), ci.to_owned()));
                }
            }
        }
        let cis: Vec<String> =
            ci_of_service.iter().map(|(_, ci)| ci.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let mut ec2_of_ci: BTreeMap<String, String> = BTreeMap::new();
        for chunk in cis.chunks(100) {
            let out = c
                .ecs
                .describe_container_instances()
                .cluster(cluster)
                .set_container_instances(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(aws("DescribeContainerInstances"))?;
            for ci in out.container_instances() {
                if let (Some(arn), Some(id)) = (ci.container_instance_arn(), ci.ec2_instance_id()) {
                    ec2_of_ci.insert(arn.to_owned(), id.to_owned());
                }
            }
        }
        for (service, ci) in ci_of_service {
            if let Some(id) = ec2_of_ci.get(&ci) {
                instance_of_service.push((service, id.clone()));
            }
        }
    }
    let ids: Vec<String> =
        instance_of_service.iter().map(|(_, i)| i.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    if ids.is_empty() {
        return Ok(out);
    }
    let mut ip_of: BTreeMap<String, String> = BTreeMap::new();
    let mut pages = c.ec2.describe_instances().set_instance_ids(Some(ids)).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("DescribeInstances"))?;
        for r in page.reservations() {
            for i in r.instances() {
                if let (Some(id), Some(ip)) = (i.instance_id(), i.private_ip_address()) {
                    ip_of.insert(id.to_owned(), ip.to_owned());
                }
            }
        }
    }
    for (service, id) in instance_of_service {
        if let (Some(p), Some(ip)) = (out.get_mut(&service), ip_of.get(&id)) {
            p.host_ips.push(ip.clone());
        }
    }
    for p in out.values_mut() {
        p.host_ips.sort();
        p.host_ips.dedup();
    }
    Ok(out)
}

fn namespaces_for_placement(p: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    p.values().flatten().cloned().collect()
}

/// Cross-check with Cloud Map: the IPs registered for each service (ListInstances; the
/// DiscoverInstances data plane is not needed for this).
async fn with_cloud_map(
    c: &Clients,
    mut placements: BTreeMap<String, crate::dns::Placement>,
    services: &BTreeSet<String>,
    cloud_map: &[observed::CloudMapService],
) -> Result<BTreeMap<String, crate::dns::Placement>> {
    for s in cloud_map.iter().filter(|s| services.contains(&s.name)) {
        let Some(p) = placements.get_mut(&s.name) else {
            continue;
        };
        let out = c.cloudmap.list_instances().service_id(&s.id).send().await.map_err(aws("ListInstances"))?;
        let mut ips: Vec<String> = out
            .instances()
            .iter()
            .filter_map(|i| i.attributes().and_then(|a| a.get("AWS_INSTANCE_IPV4")).cloned())
            .collect();
        ips.sort();
        p.cloud_map_ips = Some(ips);
    }
    Ok(placements)
}
