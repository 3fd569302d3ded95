//! Elastic Load Balancing: the load balancers in scope (with their subnets' CIDRs, read from
//! EC2), every target group, the load balancers' listeners, tags for those that may be ours,
//! and listener attributes for ours.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2 as elb;

use super::{Clients, Result, Scope, ec2, tag_map};
use crate::aws::{AwsError, aws};
use crate::names;
use crate::observed::{self, Tags};

pub const IDLE_TIMEOUT_ATTRIBUTE: &str = "tcp.idle_timeout.seconds";

/// DescribeTags takes at most 20 ARNs per call.
const TAGS_PER_CALL: usize = 20;

pub(super) type LbPart =
    (BTreeMap<String, Option<observed::LoadBalancer>>, Vec<observed::TargetGroup>, Vec<observed::Listener>);

/// Target groups and listeners a vouching ECS service stands for take its ownership tags and
/// are not read further (see [`super::Vouch`]).
pub(super) async fn load_balancers(c: &Clients, scope: &Scope, vouched: &super::Vouched<'_>) -> Result<LbPart> {
    if scope.load_balancers.is_empty() {
        return Ok((BTreeMap::new(), vec![], vec![]));
    }
    let arns: Vec<String> = scope.load_balancers.iter().cloned().collect();
    let found = describe_load_balancers(c, &arns).await?;
    let subnet_cidrs = ec2::subnet_cidrs(c, subnet_ids(&found)).await?;
    let lbs = load_balancer_map(&arns, &found, &subnet_cidrs);
    // Every target group in the account (one page for most accounts): finds ours whether or
    // not a listener points at it yet, so an interrupted run never creates a duplicate.
    let mut target_groups: Vec<observed::TargetGroup> =
        describe_target_groups(c).await?.iter().map(target_group).collect();
    let mut listeners: Vec<observed::Listener> = describe_listeners(c, &found).await?.iter().map(listener).collect();
    let mut vouched_arns = BTreeSet::new();
    for t in &mut target_groups {
        if let Some(tags) = vouched.target_group(&t.name) {
            t.tags = tags.clone();
            vouched_arns.insert(t.arn.clone());
        }
    }
    for l in &mut listeners {
        if let Some(tags) = vouched.listener(l) {
            l.tags = tags.clone();
            vouched_arns.insert(l.arn.clone());
        }
    }
    // Tags only for target groups that may be ours, and for our load balancers' listeners.
    let tag_arns: Vec<String> = target_groups
        .iter()
        .filter(|t| scope.reads_target_group_tags(t))
        .map(|t| t.arn.clone())
        .chain(listeners.iter().map(|l| l.arn.clone()))
        .filter(|arn| !vouched_arns.contains(arn))
        .collect();
    let mut tags = describe_tags(c, &tag_arns).await?;
    for t in target_groups.iter_mut().filter(|t| !vouched_arns.contains(&t.arn)) {
        t.tags = tags.remove(&t.arn).unwrap_or_default();
    }
    for l in listeners.iter_mut().filter(|l| !vouched_arns.contains(&l.arn)) {
        l.tags = tags.get(&l.arn).cloned().unwrap_or_default();
        // Attributes only for listeners some operator manages (any owner tag).
        if l.tags.contains_key(names::OWNER_TAG) {
            l.idle_timeout_seconds = listener_idle_timeout(c, &l.arn).await?;
        }
    }
    Ok((lbs, target_groups, listeners))
}

/// One call for all; a missing ARN fails the whole call, so fall back to one by one.
async fn describe_load_balancers(c: &Clients, arns: &[String]) -> Result<Vec<elb::types::LoadBalancer>> {
    let e = match c.elb.describe_load_balancers().set_load_balancer_arns(Some(arns.to_vec())).send().await {
        Ok(out) => return Ok(out.load_balancers.unwrap_or_default()),
        Err(e) => AwsError::new("DescribeLoadBalancers", e),
    };
    if !e.is("LoadBalancerNotFound") {
        return Err(e);
    }
    let mut found = Vec::new();
    for arn in arns {
        match c.elb.describe_load_balancers().load_balancer_arns(arn).send().await {
            Ok(out) => found.extend(out.load_balancers.unwrap_or_default()),
            Err(e) => {
                let e = AwsError::new("DescribeLoadBalancers", e);
                if !e.is("LoadBalancerNotFound") {
                    return Err(e);
                }
            }
        }
    }
    Ok(found)
}

async fn describe_target_groups(c: &Clients) -> Result<Vec<elb::types::TargetGroup>> {
    let mut tgs = Vec::new();
    let mut pages = c.elb.describe_target_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        tgs.extend(page.map_err(aws("DescribeTargetGroups"))?.target_groups.unwrap_or_default());
    }
    Ok(tgs)
}

async fn describe_listeners(c: &Clients, lbs: &[elb::types::LoadBalancer]) -> Result<Vec<elb::types::Listener>> {
    let mut listeners = Vec::new();
    for lb in lbs {
        let arn = lb.load_balancer_arn().unwrap_or_default();
        let mut pages = c.elb.describe_listeners().load_balancer_arn(arn).into_paginator().send();
        while let Some(page) = pages.next().await {
            listeners.extend(page.map_err(aws("DescribeListeners"))?.listeners.unwrap_or_default());
        }
    }
    Ok(listeners)
}

/// Tags by ARN, 20 ARNs per call.
async fn describe_tags(c: &Clients, arns: &[String]) -> Result<BTreeMap<String, Tags>> {
    let mut tags = BTreeMap::new();
    for chunk in arns.chunks(TAGS_PER_CALL) {
        let out =
            c.elb.describe_tags().set_resource_arns(Some(chunk.to_vec())).send().await.map_err(aws("DescribeTags"))?;
        tags.extend(out.tag_descriptions().iter().map(tag_description));
    }
    Ok(tags)
}

async fn listener_idle_timeout(c: &Clients, arn: &str) -> Result<Option<u32>> {
    match c.elb.describe_listener_attributes().listener_arn(arn).send().await {
        Ok(out) => Ok(idle_timeout(out.attributes())),
        // An API without listener attributes reports nothing: unknown, not drift.
        Err(e) => {
            let e = AwsError::new("DescribeListenerAttributes", e);
            if e.throttled { Err(e) } else { Ok(None) }
        }
    }
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
    Ok(out.target_health_descriptions().iter().map(target_health_row).collect())
}

// Conversions (pure): SDK values → observed pieces.

fn subnet_ids(lbs: &[elb::types::LoadBalancer]) -> Vec<String> {
    lbs.iter().flat_map(|lb| lb.availability_zones().iter().filter_map(|z| z.subnet_id().map(str::to_owned))).collect()
}

/// Every ARN asked for: `None` when not found.
fn load_balancer_map(
    arns: &[String],
    found: &[elb::types::LoadBalancer],
    subnet_cidrs: &BTreeMap<String, String>,
) -> BTreeMap<String, Option<observed::LoadBalancer>> {
    let mut lbs: BTreeMap<String, Option<observed::LoadBalancer>> = arns.iter().map(|a| (a.clone(), None)).collect();
    for lb in found {
        let lb = load_balancer(lb, subnet_cidrs);
        lbs.insert(lb.arn.clone(), Some(lb));
    }
    lbs
}

fn load_balancer(lb: &elb::types::LoadBalancer, subnet_cidrs: &BTreeMap<String, String>) -> observed::LoadBalancer {
    let mut cidrs: Vec<String> = lb
        .availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id().and_then(|id| subnet_cidrs.get(id).cloned()))
        .collect();
    cidrs.sort();
    cidrs.dedup();
    observed::LoadBalancer {
        arn: lb.load_balancer_arn().unwrap_or_default().to_owned(),
        kind: lb.r#type().map(|t| t.as_str().to_owned()).unwrap_or_default(),
        scheme: lb.scheme().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        vpc_id: lb.vpc_id().unwrap_or_default().to_owned(),
        dns_name: lb.dns_name().unwrap_or_default().to_owned(),
        canonical_hosted_zone_id: lb.canonical_hosted_zone_id().unwrap_or_default().to_owned(),
        subnet_cidrs: cidrs,
    }
}

/// A target group without its tags (read separately).
fn target_group(t: &elb::types::TargetGroup) -> observed::TargetGroup {
    observed::TargetGroup {
        arn: t.target_group_arn().unwrap_or_default().to_owned(),
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
        tags: Tags::new(),
    }
}

/// A listener without its tags and attributes (read separately).
fn listener(l: &elb::types::Listener) -> observed::Listener {
    let forward: BTreeSet<String> = l
        .default_actions()
        .iter()
        .flat_map(|a| {
            let tuples = a.forward_config().map(|fc| fc.target_groups()).unwrap_or_default();
            a.target_group_arn().into_iter().chain(tuples.iter().filter_map(|t| t.target_group_arn()))
        })
        .map(str::to_owned)
        .collect();
    observed::Listener {
        arn: l.listener_arn().unwrap_or_default().to_owned(),
        load_balancer_arn: l.load_balancer_arn().unwrap_or_default().to_owned(),
        port: l.port(),
        protocol: l.protocol().map(|p| p.as_str().to_owned()),
        forward_target_group_arns: forward.into_iter().collect(),
        idle_timeout_seconds: None,
        tags: Tags::new(),
    }
}

fn tag_description(td: &elb::types::TagDescription) -> (String, Tags) {
    let tags = tag_map(td.tags().iter().map(|t| (t.key(), t.value())));
    (td.resource_arn().unwrap_or_default().to_owned(), tags)
}

fn idle_timeout(attributes: &[elb::types::ListenerAttribute]) -> Option<u32> {
    attributes.iter().find(|a| a.key() == Some(IDLE_TIMEOUT_ATTRIBUTE)).and_then(|a| a.value()?.parse().ok())
}

fn target_health_row(t: &elb::types::TargetHealthDescription) -> (String, Option<i32>, String) {
    let target = t.target();
    (
        target.and_then(|x| x.id()).unwrap_or_default().to_owned(),
        target.and_then(|x| x.port()),
        t.target_health().and_then(|h| h.state()).map(|s| s.as_str().to_owned()).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use elb::types::{
        Action, ActionTypeEnum, AvailabilityZone, ForwardActionConfig, ListenerAttribute, LoadBalancerSchemeEnum,
        LoadBalancerTypeEnum, ProtocolEnum, Tag, TagDescription, TargetDescription, TargetGroupTuple, TargetHealth,
        TargetHealthDescription, TargetHealthStateEnum, TargetTypeEnum,
    };

    use super::*;

    fn mk_lb(arn: &str, subnets: &[&str]) -> elb::types::LoadBalancer {
        let mut b = elb::types::LoadBalancer::builder()
            .load_balancer_arn(arn)
            .r#type(LoadBalancerTypeEnum::Network)
            .scheme(LoadBalancerSchemeEnum::InternetFacing)
            .vpc_id("vpc-1")
            .dns_name("sftp.elb.amazonaws.com")
            .canonical_hosted_zone_id("Z26");
        for s in subnets {
            b = b.availability_zones(AvailabilityZone::builder().subnet_id(*s).build());
        }
        b.build()
    }

    #[test]
    fn load_balancers_carry_their_subnets_cidrs_and_missing_ones_are_none() {
        let cidrs: BTreeMap<String, String> =
            [("subnet-a", "10.0.2.0/24"), ("subnet-b", "10.0.1.0/24")].map(|(a, b)| (a.into(), b.into())).into();
        let found = [mk_lb("arn:lb/1", &["subnet-a", "subnet-b", "subnet-a", "subnet-unknown"])];
        assert_eq!(subnet_ids(&found), ["subnet-a", "subnet-b", "subnet-a", "subnet-unknown"]);
        let lbs = load_balancer_map(&["arn:lb/1".into(), "arn:lb/gone".into()], &found, &cidrs);
        assert_eq!(lbs["arn:lb/gone"], None);
        assert_eq!(
            lbs["arn:lb/1"],
            Some(observed::LoadBalancer {
                arn: "arn:lb/1".into(),
                kind: "network".into(),
                scheme: "internet-facing".into(),
                vpc_id: "vpc-1".into(),
                dns_name: "sftp.elb.amazonaws.com".into(),
                canonical_hosted_zone_id: "Z26".into(),
                subnet_cidrs: vec!["10.0.1.0/24".into(), "10.0.2.0/24".into()],
            })
        );
    }

    #[test]
    fn a_target_group_converts_field_by_field_and_unreported_fields_stay_unknown() {
        let t = elb::types::TargetGroup::builder()
            .target_group_arn("arn:tg/sftp-campus")
            .target_group_name("sftp-campus")
            .protocol(ProtocolEnum::Tcp)
            .port(30020)
            .target_type(TargetTypeEnum::Instance)
            .health_check_protocol(ProtocolEnum::Tcp)
            .health_check_interval_seconds(10)
            .healthy_threshold_count(3)
            .load_balancer_arns("arn:lb/1")
            .build();
        let tg = target_group(&t);
        assert_eq!((tg.name.as_str(), tg.protocol.as_deref(), tg.port), ("sftp-campus", Some("TCP"), Some(30020)));
        assert_eq!((tg.target_type.as_deref(), tg.health_check_protocol.as_deref()), (Some("instance"), Some("TCP")));
        assert_eq!((tg.health_check_interval_seconds, tg.healthy_threshold), (Some(10), Some(3)));
        assert_eq!((tg.vpc_id, tg.health_check_port, tg.unhealthy_threshold), (None, None, None));
        assert_eq!(tg.load_balancer_arns, ["arn:lb/1"]);
        assert!(tg.tags.is_empty(), "tags are read separately");
    }

    #[test]
    fn a_listener_forwards_to_every_target_group_its_actions_name_once() {
        let forward = ForwardActionConfig::builder()
            .target_groups(TargetGroupTuple::builder().target_group_arn("arn:tg/b").build())
            .target_groups(TargetGroupTuple::builder().target_group_arn("arn:tg/a").build())
            .build();
        let action = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn("arn:tg/a")
            .forward_config(forward)
            .build();
        let l = elb::types::Listener::builder()
            .listener_arn("arn:listener/1")
            .load_balancer_arn("arn:lb/1")
            .port(22)
            .protocol(ProtocolEnum::Tcp)
            .default_actions(action)
            .build();
        let l = listener(&l);
        assert_eq!(l.forward_target_group_arns, ["arn:tg/a", "arn:tg/b"]);
        assert_eq!((l.arn.as_str(), l.load_balancer_arn.as_str()), ("arn:listener/1", "arn:lb/1"));
        assert_eq!((l.port, l.protocol.as_deref(), l.idle_timeout_seconds), (Some(22), Some("TCP"), None));
    }

    #[test]
    fn tags_idle_timeouts_and_target_health_convert() {
        let td = TagDescription::builder()
            .resource_arn("arn:tg/a")
            .tags(Tag::builder().key(names::OWNER_TAG).value("o").build())
            .build();
        assert_eq!(tag_description(&td), ("arn:tg/a".into(), [(names::OWNER_TAG.into(), "o".into())].into()));
        let attr = |k: &str, v: &str| ListenerAttribute::builder().key(k).value(v).build();
        assert_eq!(idle_timeout(&[attr("other", "1"), attr(IDLE_TIMEOUT_ATTRIBUTE, "600")]), Some(600));
        assert_eq!(idle_timeout(&[attr(IDLE_TIMEOUT_ATTRIBUTE, "soon")]), None);
        assert_eq!(idle_timeout(&[]), None);
        let th = TargetHealthDescription::builder()
            .target(TargetDescription::builder().id("i-1").port(30020).build())
            .target_health(TargetHealth::builder().state(TargetHealthStateEnum::Healthy).build())
            .build();
        assert_eq!(target_health_row(&th), ("i-1".into(), Some(30020), "healthy".into()));
    }
}
