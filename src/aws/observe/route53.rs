//! Route 53: zones resolved by id or name (a name matching several zones is ambiguous), then
//! one ListResourceRecordSets walk per zone, shared by every service in it. Every call waits
//! for the client-side rate limit.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_route53 as r53;

use super::{Clients, Result, Scope};
use crate::aws::aws;
use crate::names::normalize_dns_name;
use crate::observed::{Alias, RecordSet, ZoneLookup};

pub(super) type Route53Part = (BTreeMap<String, ZoneLookup>, BTreeMap<String, Vec<RecordSet>>);

pub(super) async fn route53(c: &Clients, scope: &Scope) -> Result<Route53Part> {
    let mut records = BTreeMap::new();
    if scope.zones.is_empty() {
        return Ok((BTreeMap::new(), records));
    }
    let zones = list_hosted_zones(c).await?;
    let lookups: BTreeMap<String, ZoneLookup> =
        scope.zones.iter().map(|r| (r.clone(), resolve_zone(&zones, r))).collect();
    let ids: BTreeSet<String> = lookups
        .values()
        .filter_map(|l| match l {
            ZoneLookup::Found { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    for id in ids {
        let sets = record_sets(c, &id).await?;
        records.insert(id, sets);
    }
    Ok((lookups, records))
}

async fn list_hosted_zones(c: &Clients) -> Result<Vec<r53::types::HostedZone>> {
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
    Ok(zones)
}

/// Every record set of a zone, paged by hand (the SDK has no paginator for this call).
async fn record_sets(c: &Clients, zone_id: &str) -> Result<Vec<RecordSet>> {
    let mut out = Vec::new();
    let (mut name, mut kind, mut ident): (Option<String>, Option<r53::types::RrType>, Option<String>) =
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
        out.extend(page.resource_record_sets().iter().map(record_set));
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

// Conversions (pure): SDK values → observed pieces.

fn zone_id(z: &r53::types::HostedZone) -> String {
    z.id().trim_start_matches("/hostedzone/").to_owned()
}

/// Where a manifest's zone reference (an id, or a name) leads among the account's zones.
fn resolve_zone(zones: &[r53::types::HostedZone], reference: &str) -> ZoneLookup {
    let matches: Vec<&r53::types::HostedZone> =
        zones.iter().filter(|z| zone_id(z) == reference || normalize_dns_name(z.name()) == reference).collect();
    match matches.as_slice() {
        [] => ZoneLookup::Missing,
        [z] => ZoneLookup::Found {
            id: zone_id(z),
            name: normalize_dns_name(z.name()),
            private: z.config().is_some_and(|c| c.private_zone()),
        },
        many => ZoneLookup::Ambiguous { ids: many.iter().map(|z| zone_id(z)).collect() },
    }
}

/// A record set, names normalised and values sorted.
fn record_set(r: &r53::types::ResourceRecordSet) -> RecordSet {
    let mut values: Vec<String> = r.resource_records().iter().map(|x| x.value().to_owned()).collect();
    values.sort();
    RecordSet {
        name: normalize_dns_name(r.name()),
        kind: r.r#type().as_str().to_owned(),
        ttl: r.ttl(),
        values,
        alias: r.alias_target().map(|a| Alias {
            dns_name: normalize_dns_name(a.dns_name()),
            hosted_zone_id: a.hosted_zone_id().to_owned(),
        }),
        set_identifier: r.set_identifier().map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use r53::types::{AliasTarget, HostedZone, HostedZoneConfig, ResourceRecord, ResourceRecordSet, RrType};

    use super::*;

    fn zone(id: &str, name: &str, private: bool) -> HostedZone {
        HostedZone::builder()
            .id(format!("/hostedzone/{id}"))
            .name(name)
            .caller_reference("r")
            .config(HostedZoneConfig::builder().private_zone(private).build())
            .build()
            .unwrap()
    }

    #[test]
    fn a_zone_reference_is_found_missing_or_ambiguous() {
        let zones = [zone("Z1", "Example.EDU.", false), zone("Z2", "example.edu.", true), zone("Z3", "x.org.", true)];
        assert_eq!(
            resolve_zone(&zones, "Z2"),
            ZoneLookup::Found { id: "Z2".into(), name: "example.edu.".into(), private: true }
        );
        assert_eq!(
            resolve_zone(&zones, "x.org."),
            ZoneLookup::Found { id: "Z3".into(), name: "x.org.".into(), private: true }
        );
        assert_eq!(resolve_zone(&zones, "example.edu."), ZoneLookup::Ambiguous { ids: vec!["Z1".into(), "Z2".into()] });
        assert_eq!(resolve_zone(&zones, "nowhere.net."), ZoneLookup::Missing);
    }

    #[test]
    fn record_sets_are_normalised_with_sorted_values_and_aliases() {
        let rr = |v: &str| ResourceRecord::builder().value(v).build().unwrap();
        let a = ResourceRecordSet::builder()
            .name("SFTP.Example.edu")
            .r#type(RrType::A)
            .ttl(60)
            .resource_records(rr("192.0.2.2"))
            .resource_records(rr("192.0.2.1"))
            .build()
            .unwrap();
        assert_eq!(
            record_set(&a),
            RecordSet {
                name: "sftp.example.edu.".into(),
                kind: "A".into(),
                ttl: Some(60),
                values: vec!["192.0.2.1".into(), "192.0.2.2".into()],
                alias: None,
                set_identifier: None,
            }
        );
        let target = AliasTarget::builder()
            .dns_name("Sftp-0123.elb.amazonaws.com.")
            .hosted_zone_id("Z26")
            .evaluate_target_health(false)
            .build()
            .unwrap();
        let alias = ResourceRecordSet::builder()
            .name("sftp.example.edu.")
            .r#type(RrType::A)
            .alias_target(target)
            .set_identifier("blue")
            .build()
            .unwrap();
        let alias = record_set(&alias);
        assert_eq!(
            alias.alias,
            Some(Alias { dns_name: "sftp-0123.elb.amazonaws.com.".into(), hosted_zone_id: "Z26".into() })
        );
        assert_eq!((alias.ttl, alias.values.len(), alias.set_identifier.as_deref()), (None, 0, Some("blue")));
    }
}
