//! EC2: the security groups' ingress rules, subnets' CIDRs (for the load balancers) and
//! instances' private IPs (for DNS).

use std::collections::BTreeMap;

use aws_sdk_ec2 as ec2;

use super::{Clients, Result, Scope, tag_map};
use crate::aws::{AwsError, aws};
use crate::observed;

pub(super) type SecurityGroups = BTreeMap<String, Option<Vec<observed::IngressRule>>>;

/// Every group in scope: its ingress rules, `None` when it does not exist.
pub(super) async fn security_groups(c: &Clients, scope: &Scope) -> Result<SecurityGroups> {
    let mut out = SecurityGroups::new();
    if scope.security_groups.is_empty() {
        return Ok(out);
    }
    let ids: Vec<String> = scope.security_groups.iter().cloned().collect();
    let mut rules = ingress_rules(c, &ids).await?;
    // A group that shows any rule (its default egress rule, at least) exists; only a group
    // without any is checked on its own.
    for id in ids {
        let found = match rules.remove(&id) {
            Some(mut v) => {
                v.sort();
                Some(v)
            }
            None => group_exists(c, &id).await?.then(Vec::new),
        };
        out.insert(id, found);
    }
    Ok(out)
}

/// One walk over the rules of every group: ingress rules by group, with an entry (maybe
/// empty) for every group that showed any rule.
async fn ingress_rules(c: &Clients, ids: &[String]) -> Result<BTreeMap<String, Vec<observed::IngressRule>>> {
    let mut rules: BTreeMap<String, Vec<observed::IngressRule>> = BTreeMap::new();
    let filter = ec2::types::Filter::builder().name("group-id").set_values(Some(ids.to_vec())).build();
    let mut pages = c.ec2.describe_security_group_rules().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("DescribeSecurityGroupRules"))?;
        for r in page.security_group_rules() {
            let group = rules.entry(r.group_id().unwrap_or_default().to_owned()).or_default();
            group.extend(ingress_rule(r));
        }
    }
    Ok(rules)
}

async fn group_exists(c: &Clients, id: &str) -> Result<bool> {
    match c.ec2.describe_security_groups().group_ids(id).send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = AwsError::new("DescribeSecurityGroups", e);
            if e.code.contains("NotFound") { Ok(false) } else { Err(e) }
        }
    }
}

/// CIDR by subnet id; no call for no subnets.
pub(super) async fn subnet_cidrs(c: &Clients, ids: Vec<String>) -> Result<BTreeMap<String, String>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let out = c.ec2.describe_subnets().set_subnet_ids(Some(ids)).send().await.map_err(aws("DescribeSubnets"))?;
    Ok(out.subnets().iter().filter_map(subnet_cidr).collect())
}

/// Private IP by instance id (`ids` not empty).
pub(super) async fn private_ips(c: &Clients, ids: Vec<String>) -> Result<BTreeMap<String, String>> {
    let mut ip_of = BTreeMap::new();
    let mut pages = c.ec2.describe_instances().set_instance_ids(Some(ids)).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("DescribeInstances"))?;
        ip_of.extend(page.reservations().iter().flat_map(|r| r.instances()).filter_map(private_ip));
    }
    Ok(ip_of)
}

// Conversions (pure): SDK values → observed pieces.

/// An ingress rule; `None` for egress. Group and prefix-list sources are never ours, but they
/// count against the quota, so they are kept (with an empty CIDR).
fn ingress_rule(r: &ec2::types::SecurityGroupRule) -> Option<observed::IngressRule> {
    if r.is_egress() == Some(true) {
        return None;
    }
    Some(observed::IngressRule {
        rule_id: r.security_group_rule_id().unwrap_or_default().to_owned(),
        protocol: r.ip_protocol().unwrap_or_default().to_owned(),
        from_port: r.from_port().unwrap_or(-1),
        to_port: r.to_port().unwrap_or(-1),
        cidr: r.cidr_ipv4().or(r.cidr_ipv6()).unwrap_or_default().to_owned(),
        description: r.description().map(str::to_owned),
        tags: tag_map(r.tags().iter().map(|t| (t.key(), t.value()))),
    })
}

fn subnet_cidr(s: &ec2::types::Subnet) -> Option<(String, String)> {
    Some((s.subnet_id()?.to_owned(), s.cidr_block()?.to_owned()))
}

fn private_ip(i: &ec2::types::Instance) -> Option<(String, String)> {
    Some((i.instance_id()?.to_owned(), i.private_ip_address()?.to_owned()))
}

#[cfg(test)]
mod tests {
    use ec2::types::{Instance, SecurityGroupRule, Subnet, Tag};

    use super::*;

    #[test]
    fn ingress_rules_convert_and_egress_rules_are_left_out() {
        let r = SecurityGroupRule::builder()
            .security_group_rule_id("sgr-1")
            .group_id("sg-1")
            .is_egress(false)
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .cidr_ipv6("2001:db8::/32")
            .description("bastion")
            .tags(Tag::builder().key("k").value("v").build())
            .build();
        assert_eq!(
            ingress_rule(&r),
            Some(observed::IngressRule {
                rule_id: "sgr-1".into(),
                protocol: "tcp".into(),
                from_port: 22,
                to_port: 22,
                cidr: "2001:db8::/32".into(),
                description: Some("bastion".into()),
                tags: [("k".into(), "v".into())].into(),
            })
        );
        let from_a_group = SecurityGroupRule::builder().security_group_rule_id("sgr-2").ip_protocol("-1").build();
        let from_a_group = ingress_rule(&from_a_group).unwrap();
        assert_eq!((from_a_group.from_port, from_a_group.to_port, from_a_group.cidr.as_str()), (-1, -1, ""));
        assert_eq!(ingress_rule(&SecurityGroupRule::builder().is_egress(true).build()), None);
    }

    #[test]
    fn subnets_and_instances_without_the_wanted_field_are_skipped() {
        let s = Subnet::builder().subnet_id("subnet-a").cidr_block("10.0.1.0/24").build();
        assert_eq!(subnet_cidr(&s), Some(("subnet-a".into(), "10.0.1.0/24".into())));
        assert_eq!(subnet_cidr(&Subnet::builder().subnet_id("subnet-b").build()), None);
        let i = Instance::builder().instance_id("i-1").private_ip_address("10.0.1.5").build();
        assert_eq!(private_ip(&i), Some(("i-1".into(), "10.0.1.5".into())));
        assert_eq!(private_ip(&Instance::builder().instance_id("i-2").build()), None);
    }
}
