//! Cloud Map: the namespaces in scope, every service in them, tags where the description does
//! not already say whose a service is, and (for `status`) the IPs registered.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_servicediscovery as sd;

use super::{Clients, Result, Scope, tag_map};
use crate::aws::{AwsError, aws};
use crate::observed::{self, Placement, Tags};

pub(super) type CloudMapPart = (BTreeMap<String, Option<observed::Namespace>>, Vec<observed::CloudMapService>);

pub(super) async fn cloud_map(c: &Clients, scope: &Scope) -> Result<CloudMapPart> {
    if scope.namespaces.is_empty() {
        return Ok((BTreeMap::new(), Vec::new()));
    }
    let all = list_namespaces(c).await?;
    let namespaces: BTreeMap<String, Option<observed::Namespace>> =
        scope.namespaces.iter().map(|r| (r.clone(), resolve_namespace(&all, r))).collect();
    let ids: BTreeSet<String> = namespaces.values().flatten().map(|n| n.id.clone()).collect();
    let mut services = Vec::new();
    for id in ids {
        services.extend(list_services(c, &id).await?);
    }
    for s in services.iter_mut().filter(|s| scope.reads_cloud_map_tags(s)) {
        s.tags = list_tags(c, &s.arn).await?;
    }
    Ok((namespaces, services))
}

async fn list_namespaces(c: &Clients) -> Result<Vec<sd::types::NamespaceSummary>> {
    let mut all = Vec::new();
    let mut pages = c.cloudmap.list_namespaces().into_paginator().send();
    while let Some(page) = pages.next().await {
        all.extend(page.map_err(aws("ListNamespaces"))?.namespaces.unwrap_or_default());
    }
    Ok(all)
}

/// Every service in a namespace, without tags.
async fn list_services(c: &Clients, namespace_id: &str) -> Result<Vec<observed::CloudMapService>> {
    let filter = sd::types::ServiceFilter::builder()
        .name(sd::types::ServiceFilterName::NamespaceId)
        .values(namespace_id)
        .build()
        .map_err(|e| AwsError::other("ListServices", e.to_string()))?;
    let mut services = Vec::new();
    let mut pages = c.cloudmap.list_services().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("ListServices"))?;
        services.extend(page.services().iter().map(|s| service(namespace_id, s)));
    }
    Ok(services)
}

async fn list_tags(c: &Clients, arn: &str) -> Result<Tags> {
    let out = c.cloudmap.list_tags_for_resource().resource_arn(arn).send().await.map_err(aws("ListTagsForResource"))?;
    Ok(tag_map(out.tags().iter().map(|t| (Some(t.key()), Some(t.value())))))
}

/// Cross-check with Cloud Map: the IPs registered for each service (ListInstances; the
/// DiscoverInstances data plane is not needed for this).
pub(super) async fn with_instances(
    c: &Clients,
    mut placements: BTreeMap<String, Placement>,
    services: &BTreeSet<String>,
    cloud_map: &[observed::CloudMapService],
) -> Result<BTreeMap<String, Placement>> {
    for s in cloud_map.iter().filter(|s| services.contains(&s.name)) {
        let Some(p) = placements.get_mut(&s.name) else {
            continue;
        };
        let out = c.cloudmap.list_instances().service_id(&s.id).send().await.map_err(aws("ListInstances"))?;
        p.cloud_map_ips = Some(registered_ips(out.instances()));
    }
    Ok(placements)
}

// Conversions (pure): SDK values → observed pieces.

/// The namespace a manifest's reference (id, or name with or without the trailing dot) names.
fn resolve_namespace(all: &[sd::types::NamespaceSummary], reference: &str) -> Option<observed::Namespace> {
    let found = all
        .iter()
        .find(|n| n.id() == Some(reference) || n.name().map(|x| x.trim_end_matches('.')) == Some(reference))?;
    Some(observed::Namespace {
        id: found.id().unwrap_or_default().to_owned(),
        name: found.name().unwrap_or_default().to_owned(),
    })
}

/// A service without its tags (read separately, and only when needed).
fn service(namespace_id: &str, s: &sd::types::ServiceSummary) -> observed::CloudMapService {
    let srv_ttl =
        s.dns_config().and_then(|d| d.dns_records().iter().find(|r| r.r#type().as_str() == "SRV").map(|r| r.ttl()));
    observed::CloudMapService {
        id: s.id().unwrap_or_default().to_owned(),
        arn: s.arn().unwrap_or_default().to_owned(),
        name: s.name().unwrap_or_default().to_owned(),
        namespace_id: namespace_id.to_owned(),
        srv_ttl,
        description: s.description().map(str::to_owned),
        tags: Tags::new(),
        instance_count: s.instance_count(),
    }
}

fn registered_ips(instances: &[sd::types::InstanceSummary]) -> Vec<String> {
    let mut ips: Vec<String> =
        instances.iter().filter_map(|i| i.attributes().and_then(|a| a.get("AWS_INSTANCE_IPV4")).cloned()).collect();
    ips.sort();
    ips
}

#[cfg(test)]
mod tests {
    use sd::types::{DnsConfig, DnsRecord, InstanceSummary, NamespaceSummary, RecordType, ServiceSummary};

    use super::*;

    #[test]
    fn a_namespace_is_found_by_id_or_by_name_without_the_trailing_dot() {
        let all = [NamespaceSummary::builder().id("ns-1").name("sftp.internal.").build()];
        let want = Some(observed::Namespace { id: "ns-1".into(), name: "sftp.internal.".into() });
        assert_eq!(resolve_namespace(&all, "ns-1"), want);
        assert_eq!(resolve_namespace(&all, "sftp.internal"), want);
        assert_eq!(resolve_namespace(&all, "other.internal"), None);
    }

    #[test]
    fn a_service_converts_with_its_srv_ttl_and_no_tags() {
        let dns = DnsConfig::builder()
            .dns_records(DnsRecord::builder().r#type(RecordType::A).ttl(300).build().unwrap())
            .dns_records(DnsRecord::builder().r#type(RecordType::Srv).ttl(10).build().unwrap())
            .build()
            .unwrap();
        let s = ServiceSummary::builder()
            .id("srv-1")
            .arn("arn:srv-1")
            .name("campus")
            .description("made by hand")
            .instance_count(2)
            .dns_config(dns)
            .build();
        assert_eq!(
            service("ns-1", &s),
            observed::CloudMapService {
                id: "srv-1".into(),
                arn: "arn:srv-1".into(),
                name: "campus".into(),
                namespace_id: "ns-1".into(),
                srv_ttl: Some(10),
                description: Some("made by hand".into()),
                tags: Tags::new(),
                instance_count: Some(2),
            }
        );
        assert_eq!(service("ns-1", &ServiceSummary::builder().build()).srv_ttl, None);
    }

    #[test]
    fn registered_ips_are_sorted_and_instances_without_one_are_skipped() {
        let i = |ip: Option<&str>| {
            let b = InstanceSummary::builder().id("i");
            match ip {
                Some(ip) => b.attributes("AWS_INSTANCE_IPV4", ip).build(),
                None => b.build(),
            }
        };
        assert_eq!(registered_ips(&[i(Some("10.0.2.1")), i(None), i(Some("10.0.1.1"))]), ["10.0.1.1", "10.0.2.1"]);
    }
}
