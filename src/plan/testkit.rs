//! Builders for the planner's unit tests: a rendered service (`mk_desired`), a world that
//! holds its preconditions (`mk_world`), and, per kind, the live resource that matches it.

use std::collections::BTreeMap;

use super::service::Ctx;
use super::{Change, Kind, Options, Problem};
use crate::names::{self, Names};
use crate::observed::{self, Observed, Tags};
use crate::render::{self, Desired};

pub const OWNER: &str = "sftp-operator";
pub const SERVICE: &str = "campus";
pub const LB_ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/sftp/0f";
pub const SG: &str = "sg-0123456789abcdef0";
pub const CLUSTER: &str = "sftp";
pub const VPC: &str = "vpc-1";
pub const NAMESPACE: &str = "sftp.internal";
pub const NAMESPACE_ID: &str = "ns-1";

/// Tags an owned resource of `service` carries.
pub fn mk_tags(service: &str) -> Tags {
    [(names::OWNER_TAG.to_owned(), OWNER.to_owned()), (names::SERVICE_TAG.to_owned(), service.to_owned())].into()
}

pub fn mk_options(adopt: bool) -> Options {
    Options { owner: OWNER.into(), adopt, prune: false }
}

pub fn mk_task_definition(names: &Names, users: &str) -> render::TaskDefinition {
    let env = |name: &str, value: &str| render::KeyValue { name: name.into(), value: value.into() };
    render::TaskDefinition {
        family: names.task_family.clone(),
        network_mode: "bridge".into(),
        requires_compatibilities: vec!["EC2".into()],
        container_definitions: vec![render::ContainerDefinition {
            name: names::CONTAINER_NAME.into(),
            image: "atmoz/sftp:alpine".into(),
            essential: true,
            cpu: 256,
            memory: 512,
            environment: vec![env("SFTP_MANAGED_USERS", users), env("SFTP_PASSWORD_HASH_1", "$6$salt$hash")],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A rendered service: no host-key secret, Cloud Map or DNS (tests add those).
pub fn mk_desired(service: &str) -> Desired {
    let names = Names::derive(service);
    let task_definition = mk_task_definition(&names, "alice");
    let description = crate::codec::rule_description(OWNER, service);
    Desired {
        service: service.into(),
        tags: mk_tags(service),
        task_definition_hash: render::task_definition_hash(&task_definition),
        task_definition,
        ecs_service: render::ecs_service_named(names.ecs_service.clone(), CLUSTER.into(), 1),
        target_group: render::tcp_target_group(names.target_group.clone(), 30020),
        listener: render::Listener { port: 2220, protocol: "TCP".into(), idle_timeout_seconds: 350 },
        load_balancer_arn: LB_ARN.into(),
        security_group_id: SG.into(),
        ingress: vec![render::IngressRule {
            protocol: "tcp".into(),
            port: 30020,
            cidr: "192.0.2.0/24".into(),
            description,
        }],
        cloud_map: None,
        host_key_secret: None,
        host_key_rsa_bits: crate::sshkeys::DEFAULT_RSA_HOST_KEY_BITS,
        dns_records: vec![],
        dns: None,
        probe: None,
        host_public_keys: vec![],
        key_fingerprints: vec![],
        rendering_hash: format!("{service}-rendering"),
        names,
    }
}

pub fn mk_lb() -> observed::LoadBalancer {
    observed::LoadBalancer {
        arn: LB_ARN.into(),
        kind: "network".into(),
        scheme: "internal".into(),
        vpc_id: VPC.into(),
        dns_name: "sftp-0f.elb.us-east-1.amazonaws.com".into(),
        canonical_hosted_zone_id: "ZNLB".into(),
        subnet_cidrs: vec!["10.0.1.0/24".into()],
    }
}

/// The preconditions of `mk_desired` and nothing else: NLB, cluster, an empty security group,
/// the Cloud Map namespace.
pub fn mk_world() -> Observed {
    let ns = observed::Namespace { id: NAMESPACE_ID.into(), name: NAMESPACE.into() };
    Observed {
        load_balancers: [(LB_ARN.to_owned(), Some(mk_lb()))].into(),
        clusters: [(CLUSTER.to_owned(), true)].into(),
        security_groups: [(SG.to_owned(), Some(vec![]))].into(),
        namespaces: [(NAMESPACE.to_owned(), Some(ns))].into(),
        ..Observed::default()
    }
}

pub fn mk_cloud_map(service: &str) -> render::CloudMapService {
    render::CloudMapService { name: service.into(), namespace: NAMESPACE.into(), srv_ttl: 10 }
}

pub fn mk_live_secret(d: &Desired) -> observed::Secret {
    let name = d.host_key_secret.clone().expect("the service generates host keys");
    observed::Secret {
        arn: format!("arn:aws:secretsmanager:us-east-1:1:secret:{name}"),
        name,
        description: None,
        tags: d.tags.clone(),
    }
}

pub fn mk_live_task_definition(d: &Desired) -> observed::TaskDefinitionRevision {
    let family = d.names.task_family.clone();
    let mut tags = d.tags.clone();
    tags.insert(super::HASH_TAG.into(), d.task_definition_hash.clone());
    observed::TaskDefinitionRevision {
        arn: format!("arn:aws:ecs:us-east-1:1:task-definition/{family}:4"),
        family,
        revision: 4,
        definition: Some(d.task_definition.clone()),
        tags,
    }
}

pub fn mk_tg_arn(name: &str) -> String {
    format!("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/{name}/0a")
}

pub fn mk_live_target_group(d: &Desired) -> observed::TargetGroup {
    let want = &d.target_group;
    observed::TargetGroup {
        arn: mk_tg_arn(&want.name),
        name: want.name.clone(),
        protocol: Some(want.protocol.clone()),
        port: Some(i32::from(want.port)),
        target_type: Some(want.target_type.clone()),
        vpc_id: Some(VPC.into()),
        health_check_protocol: Some("TCP".into()),
        health_check_port: Some("traffic-port".into()),
        health_check_interval_seconds: Some(10),
        healthy_threshold: Some(3),
        unhealthy_threshold: Some(3),
        load_balancer_arns: vec![LB_ARN.into()],
        tags: d.tags.clone(),
    }
}

pub fn mk_live_listener(d: &Desired, arn: &str, port: u16) -> observed::Listener {
    observed::Listener {
        arn: arn.into(),
        load_balancer_arn: LB_ARN.into(),
        port: Some(i32::from(port)),
        protocol: Some("TCP".into()),
        forward_target_group_arns: vec![mk_tg_arn(&d.target_group.name)],
        idle_timeout_seconds: Some(d.listener.idle_timeout_seconds),
        tags: d.tags.clone(),
    }
}

/// The rendering tag an ECS service running `revision` of `d` carries once `d` is applied.
pub fn mk_rendering_tag(d: &Desired, revision: &observed::TaskDefinitionRevision) -> String {
    let rendering = crate::codec::Rendering {
        hash: d.rendering_hash.clone(),
        revision: revision.revision,
        port: d.target_group.port,
    };
    crate::codec::rendering_tag(&rendering)
}

/// An owned rule, as EC2 reports it.
pub fn mk_live_rule(service: &str, id: &str, port: i32, cidr: &str) -> observed::IngressRule {
    observed::IngressRule {
        rule_id: id.into(),
        protocol: "tcp".into(),
        from_port: port,
        to_port: port,
        cidr: cidr.into(),
        description: Some(crate::codec::rule_description(OWNER, service)),
        tags: mk_tags(service),
    }
}

/// The rules `mk_desired` wants: its allowed CIDR plus the NLB subnet.
pub fn mk_live_rules(d: &Desired) -> Vec<observed::IngressRule> {
    vec![
        mk_live_rule(&d.service, "sgr-1", 30020, "192.0.2.0/24"),
        mk_live_rule(&d.service, "sgr-2", 30020, "10.0.1.0/24"),
    ]
}

pub fn mk_live_cloud_map(d: &Desired) -> observed::CloudMapService {
    let want = d.cloud_map.as_ref().expect("the service registers in Cloud Map");
    observed::CloudMapService {
        id: "srv-1".into(),
        arn: "arn:aws:servicediscovery:us-east-1:1:service/srv-1".into(),
        name: want.name.clone(),
        namespace_id: NAMESPACE_ID.into(),
        srv_ttl: Some(want.srv_ttl),
        description: None,
        tags: d.tags.clone(),
        instance_count: Some(1),
    }
}

pub fn mk_live_ecs_service(d: &Desired, revision: &observed::TaskDefinitionRevision) -> observed::EcsService {
    let want = &d.ecs_service;
    let binding = |arn: String| observed::ServiceBinding {
        arn,
        container_name: Some(want.container_name.clone()),
        container_port: Some(i32::from(want.container_port)),
    };
    observed::EcsService {
        arn: format!("arn:aws:ecs:us-east-1:1:service/{}/{}", want.cluster, want.name),
        name: want.name.clone(),
        cluster: want.cluster.clone(),
        status: "ACTIVE".into(),
        task_definition: Some(revision.arn.clone()),
        desired_count: Some(1),
        load_balancers: vec![binding(mk_tg_arn(&d.target_group.name))],
        service_registries: d.cloud_map.as_ref().map(|_| binding(mk_live_cloud_map(d).arn)).into_iter().collect(),
        minimum_healthy_percent: Some(0),
        maximum_percent: Some(100),
        circuit_breaker_rollback: Some(true),
        distinct_instance: Some(false),
        health_check_grace_period_seconds: Some(30),
        tags: d
            .tags
            .clone()
            .into_iter()
            .chain([(names::RENDERING_TAG.to_owned(), mk_rendering_tag(d, revision))])
            .collect(),
        ..Default::default()
    }
}

/// `mk_world` holding every resource `d` wants, in sync.
pub fn mk_in_sync(d: &Desired) -> Observed {
    let mut o = mk_world();
    let td = mk_live_task_definition(d);
    o.ecs_services.push(mk_live_ecs_service(d, &td));
    o.task_definitions.insert(td.family.clone(), td);
    o.target_groups.push(mk_live_target_group(d));
    o.listeners.push(mk_live_listener(d, "arn:listener/1", d.listener.port));
    o.security_groups.insert(SG.into(), Some(mk_live_rules(d)));
    if d.cloud_map.is_some() {
        o.cloud_map_services.push(mk_live_cloud_map(d));
    }
    if d.host_key_secret.is_some() {
        o.secrets.push(mk_live_secret(d));
    }
    o
}

pub fn ctx<'a>(d: &'a Desired, o: &'a Observed, opts: &'a Options) -> Ctx<'a> {
    Ctx { d, o, opts }
}

/// A whole plan of `d` against `o`, split into changes and problems.
pub fn plan_one(d: &Desired, o: &Observed, adopt: bool) -> (Vec<Change>, Vec<Problem>) {
    let opts = mk_options(adopt);
    let p = super::plan(std::slice::from_ref(d), o, &opts);
    (p.changes, p.problems)
}

/// `(kind, action, name)` of each change, for compact assertions.
pub fn summary(changes: &[Change]) -> Vec<(Kind, super::Action, String)> {
    changes.iter().map(|c| (c.kind, c.action, c.name.clone())).collect()
}

/// Tags of nobody's resource.
pub fn foreign_tags() -> Tags {
    BTreeMap::from([("team".to_owned(), "network".to_owned())])
}
