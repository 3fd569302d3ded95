//! DNS, the Lambda's old job done properly: the hosts running a service's tasks as A records,
//! a TXT ownership record beside each name it manages (external-dns style), SSHFP for the host
//! keys, and an alias A record to the NLB. Pure: desired records from placement, and the
//! per-zone diff against what Route 53 holds, over owned names only.
//!
//! ```text
//! Desired.dns + Placement + host keys + NLB ──desired_records──▶ RecordSets ─┐
//!                                      Route 53 zone (observed) ─────────────┴─▶ plan_zone ─▶ changes
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::codec;
use crate::names::normalize_dns_name;
use crate::observed::LoadBalancer;
use crate::render::Desired;
use crate::sshkeys::ParsedKey;

/// Record sets, zone lookups and placement are what observe found: they live in
/// [`crate::observed`] (dns depends on observed, never the reverse), re-exported here.
pub use crate::observed::{Alias, Placement, RecordSet, ZoneLookup};

/// Record types the operator manages at its names; anything else there is left alone.
pub const MANAGED_TYPES: [&str; 3] = ["A", "TXT", "SSHFP"];

/// What a service wants in one zone, plus the names it owns there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoneWant {
    pub records: Vec<RecordSet>,
    /// (name, type) pairs to leave as they are even though not in `records` (the last A
    /// record when no task runs: an empty answer is worse than a stale one).
    pub keep: BTreeSet<(String, String)>,
}

/// Desired records per zone reference for one service.
pub fn desired_records(
    d: &Desired,
    owner: &str,
    placement: Option<&Placement>,
    secret_keys: &[ParsedKey],
    lb: Option<&LoadBalancer>,
) -> BTreeMap<String, ZoneWant> {
    let mut out: BTreeMap<String, ZoneWant> = BTreeMap::new();
    let Some(dns) = &d.dns else { return out };
    let txt = codec::txt_owner_value(owner, &d.service);
    let want = out.entry(dns.zone.clone()).or_default();
    want.records.push(RecordSet::simple(&dns.record, "TXT", dns.ttl, vec![txt.clone()]));
    match placement.map(|p| p.host_ips.clone()).unwrap_or_default() {
        ips if ips.is_empty() => {
            want.keep.insert((dns.record.clone(), "A".into()));
        }
        ips => want.records.push(RecordSet::simple(&dns.record, "A", dns.ttl, ips)),
    }
    if dns.sshfp {
        let keys: Vec<ParsedKey> = d.host_public_keys.iter().chain(secret_keys).cloned().collect();
        let values = crate::render::sshfp_values(&keys);
        if values.is_empty() {
            // Keys not known yet (secret about to be created): keep what is there.
            want.keep.insert((dns.record.clone(), "SSHFP".into()));
        } else {
            want.records.push(RecordSet::simple(&dns.record, "SSHFP", dns.ttl, values));
        }
    }
    if let (Some(public), Some(lb)) = (&dns.public_record, lb) {
        let zone = dns.public_zone.clone().unwrap_or_else(|| dns.zone.clone());
        let want = out.entry(zone).or_default();
        want.records.push(RecordSet::simple(public, "TXT", dns.ttl, vec![txt]));
        want.records.push(RecordSet {
            name: normalize_dns_name(public),
            kind: "A".into(),
            ttl: None,
            values: vec![],
            alias: Some(Alias {
                dns_name: normalize_dns_name(&lb.dns_name),
                hosted_zone_id: lb.canonical_hosted_zone_id.clone(),
            }),
            set_identifier: None,
        });
    }
    for w in out.values_mut() {
        w.records.sort();
    }
    out
}

/// A change to one record set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordAction {
    Create,
    Upsert,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordChange {
    pub action: RecordAction,
    pub record: RecordSet,
    /// For updates: what Route 53 holds now.
    pub before: Option<RecordSet>,
}

/// The outcome of comparing one service's wants with a zone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZonePlan {
    pub changes: Vec<RecordChange>,
    /// Records in the way that the operator does not own: (label, reason).
    pub conflicts: Vec<(String, String)>,
}

fn txt_owned_by(records: &[RecordSet], name: &str, owner: &str, service: &str) -> bool {
    let want = codec::txt_owner_value(owner, service);
    records.iter().any(|r| r.name == name && r.kind == "TXT" && r.values.contains(&want))
}

/// Compares a service's wanted records with a zone's records. Only names carrying our TXT
/// owner record are changed; a name held by someone else is a conflict (unless `adopt`).
pub fn plan_zone(want: &ZoneWant, zone: &[RecordSet], owner: &str, service: &str, adopt: bool) -> ZonePlan {
    let mut plan = ZonePlan::default();
    let names: BTreeSet<&str> =
        want.records.iter().map(|r| r.name.as_str()).chain(want.keep.iter().map(|k| k.0.as_str())).collect();
    for name in names {
        let owned = txt_owned_by(zone, name, owner, service);
        let live: Vec<&RecordSet> = zone.iter().filter(|r| r.name == name && r.set_identifier.is_none()).collect();
        let other_installation = live
            .iter()
            .filter(|r| r.kind == "TXT")
            .flat_map(|r| &r.values)
            .find_map(|v| codec::parse_txt_owner(v).filter(|o| o.owner != owner));
        if let (false, Some(other)) = (owned, other_installation) {
            // Another operator installation's record: never adopted.
            plan.conflicts.push((
                name.to_owned(),
                format!("{name} is owned by another installation (owner id `{}`); left untouched", other.owner),
            ));
            continue;
        }
        if !owned {
            let foreign: Vec<String> =
                live.iter().filter(|r| MANAGED_TYPES.contains(&r.kind.as_str())).map(|r| r.kind.clone()).collect();
            if !foreign.is_empty() && !adopt {
                plan.conflicts.push((
                    name.to_owned(),
                    format!(
                        "{} at {name} exist(s) without our TXT owner record; left untouched (use --adopt to take over)",
                        foreign.join(", ")
                    ),
                ));
                continue;
            }
        }
        for r in want.records.iter().filter(|r| r.name == name) {
            match live.iter().find(|l| l.kind == r.kind) {
                None => {
                    plan.changes.push(RecordChange { action: RecordAction::Create, record: r.clone(), before: None })
                }
                Some(l) if !same(l, r) => plan.changes.push(RecordChange {
                    action: RecordAction::Upsert,
                    record: r.clone(),
                    before: Some((*l).clone()),
                }),
                Some(_) => {}
            }
        }
        if owned {
            // Stale managed types at our own name (e.g. SSHFP after `sshfp: false`).
            for l in live.iter().filter(|l| MANAGED_TYPES.contains(&l.kind.as_str())) {
                let wanted = want.records.iter().any(|r| r.name == name && r.kind == l.kind);
                let kept = want.keep.contains(&(name.to_owned(), l.kind.clone()));
                if !wanted && !kept {
                    plan.changes.push(RecordChange {
                        action: RecordAction::Delete,
                        record: (*l).clone(),
                        before: None,
                    });
                }
            }
        }
    }
    plan
}

/// Deletes for every owned name in a zone whose service `select` picks (prune and delete).
pub fn owned_deletes(zone: &[RecordSet], owner: &str, select: impl Fn(&str) -> bool) -> Vec<(String, RecordChange)> {
    let mut out = Vec::new();
    for txt in zone.iter().filter(|r| r.kind == "TXT") {
        let Some(service) = txt.values.iter().find_map(|v| codec::parse_txt_owner_value(v, owner)) else {
            continue;
        };
        if !select(&service) {
            continue;
        }
        for r in zone
            .iter()
            .filter(|r| r.name == txt.name && r.set_identifier.is_none() && MANAGED_TYPES.contains(&r.kind.as_str()))
        {
            out.push((service.clone(), RecordChange { action: RecordAction::Delete, record: r.clone(), before: None }));
        }
    }
    out
}

fn same(live: &RecordSet, want: &RecordSet) -> bool {
    let mut a = live.values.clone();
    a.sort();
    a == want.values && live.alias == want.alias && (want.alias.is_some() || live.ttl == want.ttl)
}

/// Splits changes into Route 53 batches: at most 1000 records (an UPSERT counts twice) and
/// 32 000 characters of values per batch.
pub fn batches(changes: &[RecordChange]) -> Vec<Vec<RecordChange>> {
    const MAX_RECORDS: usize = 1000;
    const MAX_CHARS: usize = 32_000;
    let mut out: Vec<Vec<RecordChange>> = Vec::new();
    let (mut records, mut chars) = (0usize, 0usize);
    for c in changes {
        let factor = if c.action == RecordAction::Upsert { 2 } else { 1 };
        let n = c.record.values.len().max(1) * factor;
        let w = c.record.weight() * factor;
        if out.is_empty() || records + n > MAX_RECORDS || chars + w > MAX_CHARS {
            out.push(Vec::new());
            records = 0;
            chars = 0;
        }
        records += n;
        chars += w;
        out.last_mut().expect("pushed above").push(c.clone());
    }
    out
}

/// Groups a failed batch by record name, so one bad name cannot block the others.
pub fn split_by_name(changes: &[RecordChange]) -> Vec<Vec<RecordChange>> {
    let mut groups: BTreeMap<&str, Vec<RecordChange>> = BTreeMap::new();
    for c in changes {
        groups.entry(c.record.name.as_str()).or_default().push(c.clone());
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, kind: &str, values: &[&str]) -> RecordSet {
        RecordSet::simple(name, kind, 60, values.iter().map(|v| v.to_string()).collect())
    }

    fn want(records: Vec<RecordSet>) -> ZoneWant {
        ZoneWant { records, keep: BTreeSet::new() }
    }

    const TXT: &str = "\"heritage=sftp-operator,sftp-operator/owner=o,sftp-operator/service=s\"";

    #[test]
    fn a_fresh_name_gets_its_records_and_the_owner_txt() {
        let w = want(vec![rs("sftp.example.edu", "A", &["10.0.1.4"]), rs("sftp.example.edu", "TXT", &[TXT])]);
        let p = plan_zone(&w, &[], "o", "s", false);
        assert!(p.conflicts.is_empty());
        assert_eq!(
            p.changes.iter().map(|c| (c.action, c.record.kind.as_str())).collect::<Vec<_>>(),
            vec![(RecordAction::Create, "A"), (RecordAction::Create, "TXT")]
        );
    }

    #[test]
    fn a_foreign_a_record_is_a_conflict_and_untouched() {
        let w = want(vec![rs("sftp.example.edu", "A", &["10.0.1.4"]), rs("sftp.example.edu", "TXT", &[TXT])]);
        let zone = vec![rs("sftp.example.edu", "A", &["192.0.2.1"])];
        let p = plan_zone(&w, &zone, "o", "s", false);
        assert!(p.changes.is_empty());
        assert_eq!(p.conflicts.len(), 1);
        let adopted = plan_zone(&w, &zone, "o", "s", true);
        assert_eq!(adopted.changes.len(), 2, "adopt upserts the A record and adds the TXT");
    }

    #[test]
    fn another_installations_record_is_never_adopted() {
        let w = want(vec![rs("sftp.example.edu", "A", &["10.0.1.4"]), rs("sftp.example.edu", "TXT", &[TXT])]);
        let theirs = codec::txt_owner_value("other", "s");
        let zone = vec![rs("sftp.example.edu", "A", &["192.0.2.1"]), rs("sftp.example.edu", "TXT", &[&theirs])];
        let p = plan_zone(&w, &zone, "o", "s", true);
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        assert_eq!(p.conflicts.len(), 1);
        assert!(p.conflicts[0].1.contains("owner id `other`"), "{:?}", p.conflicts);
    }

    #[test]
    fn an_owned_name_is_updated_and_stale_types_removed() {
        let w = want(vec![rs("sftp.example.edu", "A", &["10.0.2.4"]), rs("sftp.example.edu", "TXT", &[TXT])]);
        let zone = vec![
            rs("sftp.example.edu", "A", &["10.0.1.4"]),
            rs("sftp.example.edu", "TXT", &[TXT]),
            rs("sftp.example.edu", "SSHFP", &["4 2 ab"]),
        ];
        let p = plan_zone(&w, &zone, "o", "s", false);
        let got: Vec<_> = p.changes.iter().map(|c| (c.action, c.record.kind.as_str())).collect();
        assert_eq!(got, vec![(RecordAction::Upsert, "A"), (RecordAction::Delete, "SSHFP")]);
    }

    #[test]
    fn no_running_task_keeps_the_last_a_record() {
        let mut w = want(vec![rs("sftp.example.edu", "TXT", &[TXT])]);
        w.keep.insert(("sftp.example.edu.".into(), "A".into()));
        let zone = vec![rs("sftp.example.edu", "A", &["10.0.1.4"]), rs("sftp.example.edu", "TXT", &[TXT])];
        assert!(plan_zone(&w, &zone, "o", "s", false).changes.is_empty());
    }

    #[test]
    fn batches_respect_route53_limits() {
        let many: Vec<RecordChange> = (0..1500)
            .map(|i| RecordChange {
                action: RecordAction::Create,
                record: rs(&format!("h{i}.example.edu"), "A", &["10.0.0.1"]),
                before: None,
            })
            .collect();
        let b = batches(&many);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].len(), 1000);
        let big: Vec<RecordChange> = (0..10)
            .map(|i| RecordChange {
                action: RecordAction::Upsert,
                record: rs(&format!("t{i}.example.edu"), "TXT", &[&"x".repeat(4000)]),
                before: None,
            })
            .collect();
        assert!(batches(&big).iter().all(|b| b.iter().map(|c| c.record.weight() * 2).sum::<usize>() <= 32_000));
    }

    #[test]
    fn owner_values_round_trip() {
        assert_eq!(
            codec::parse_txt_owner_value(&codec::txt_owner_value("o", "campus"), "o").as_deref(),
            Some("campus")
        );
        assert_eq!(codec::parse_txt_owner_value(&codec::txt_owner_value("other", "campus"), "o"), None);
    }
}
