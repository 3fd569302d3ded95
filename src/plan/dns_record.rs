//! Route 53 records for services with a `dns` block: per zone, the wanted records (from live
//! placement, host keys and the NLB) against the zone's, over names we own (see `crate::dns`).

use super::delete::Deletable;
use super::diff::diff_values;
use super::service::{Ctx, Step};
use super::{Action, Change, Kind, Op};
use crate::dns::{self, RecordAction, RecordChange, ZoneWant};
use crate::observed::{LoadBalancer, Observed, RecordSet, ZoneLookup};
use crate::sshkeys::{self, ParsedKey};

/// One step per zone the service has records in: its changes, or why the zone is unusable.
pub(super) fn plan(ctx: &Ctx, lb: &LoadBalancer) -> Vec<Step> {
    let d = ctx.d;
    if d.dns.is_none() {
        return vec![];
    }
    // Placements are keyed by the ECS service's name (`spec.names.ecsService` may differ).
    let placement = ctx.o.placements.get(&d.ecs_service.name);
    let wants = dns::desired_records(d, &ctx.opts.owner, placement, &secret_keys(ctx), Some(lb));
    wants.into_iter().map(|(zone_ref, want)| zone(ctx, &zone_ref, &want)).collect()
}

/// Host public keys recorded on the generated host-key secret (for SSHFP).
fn secret_keys(ctx: &Ctx) -> Vec<ParsedKey> {
    let secret = ctx.d.host_key_secret.as_ref().and_then(|n| ctx.o.secrets.iter().find(|s| &s.name == n));
    let parse = |s: &crate::observed::Secret| {
        s.public_keys().iter().filter_map(|k| sshkeys::parse_public_key(k).ok()).collect()
    };
    secret.map(parse).unwrap_or_default()
}

fn zone(ctx: &Ctx, zone_ref: &str, want: &ZoneWant) -> Step {
    let zone_id = match ctx.o.zones.get(zone_ref) {
        Some(ZoneLookup::Found { id, .. }) => id,
        Some(ZoneLookup::Ambiguous { ids }) => {
            return Err(ctx.problem(format!(
                "zone `{zone_ref}` matches {} hosted zones ({}); give the id instead",
                ids.len(),
                ids.join(", ")
            )));
        }
        _ => return Err(ctx.problem(format!("hosted zone `{zone_ref}` not found"))),
    };
    let live = ctx.o.record_sets.get(zone_id).map(Vec::as_slice).unwrap_or_default();
    let zp = dns::plan_zone(want, live, &ctx.opts.owner, &ctx.d.service, ctx.opts.adopt);
    let conflicts = zp
        .conflicts
        .into_iter()
        .map(|(label, reason)| ctx.change(Kind::DnsRecord, &label, Action::Conflict, vec![]).because(reason));
    let changes = zp.changes.into_iter().map(|rc| record_change(ctx, zone_id, rc));
    Ok(conflicts.chain(changes).collect())
}

fn record_change(ctx: &Ctx, zone_id: &str, rc: RecordChange) -> Change {
    let action = match rc.action {
        RecordAction::Create => Action::Create,
        RecordAction::Upsert => Action::Update,
        RecordAction::Delete => Action::Delete,
    };
    let json = |v: &RecordSet| serde_json::to_value(v).unwrap_or_default();
    let diff = match &rc.before {
        Some(b) => diff_values(&json(&rc.record), &json(b)),
        None => vec![],
    };
    let label = rc.record.label();
    let op = Op::ChangeRecord { zone_id: zone_id.to_owned(), change: rc };
    ctx.change(Kind::DnsRecord, &label, action, vec![op]).with_diff(diff)
}

/// An owned record set, found through its name's TXT owner record: what `delete` and
/// `--prune` remove.
pub(super) struct ZoneRecord<'o> {
    zone_id: &'o str,
    service: String,
    change: RecordChange,
}

/// The owned records of every observed zone whose service `select` picks.
pub(super) fn owned_records<'o>(o: &'o Observed, owner: &str, select: &dyn Fn(&str) -> bool) -> Vec<ZoneRecord<'o>> {
    let in_zone = |(zone_id, records): (&'o String, &'o Vec<RecordSet>)| {
        let deletes = dns::owned_deletes(records, owner, select);
        deletes.into_iter().map(move |(service, change)| ZoneRecord { zone_id, service, change })
    };
    o.record_sets.iter().flat_map(in_zone).collect()
}

impl Deletable for ZoneRecord<'_> {
    const KIND: Kind = Kind::DnsRecord;

    fn service(&self, _owner: &str) -> Option<String> {
        Some(self.service.clone())
    }

    fn delete(&self) -> (String, Op) {
        let op = Op::ChangeRecord { zone_id: self.zone_id.to_owned(), change: self.change.clone() };
        (self.change.record.label(), op)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::model::Dns;
    use crate::observed::Placement;
    use crate::render::Desired;

    const ZONE: &str = "example.edu.";
    const ZONE_ID: &str = "Z1";
    const RECORD: &str = "sftp.example.edu.";

    fn mk_desired_with_dns() -> Desired {
        let mut d = mk_desired(SERVICE);
        let dns = Dns {
            zone: ZONE.into(),
            record: RECORD.into(),
            ttl: 60,
            sshfp: false,
            public_record: None,
            public_zone: None,
        };
        d.dns = Some(dns);
        d
    }

    fn txt(service: &str) -> RecordSet {
        RecordSet::simple(RECORD, "TXT", 60, vec![crate::codec::txt_owner_value(OWNER, service)])
    }

    fn a(ip: &str) -> RecordSet {
        RecordSet::simple(RECORD, "A", 60, vec![ip.into()])
    }

    /// A world where the zone resolves to `records` and one task runs on 10.0.1.5.
    fn mk_world_with(records: Vec<RecordSet>) -> Observed {
        let mut o = mk_world();
        o.zones.insert(ZONE.into(), ZoneLookup::Found { id: ZONE_ID.into(), name: ZONE.into(), private: true });
        o.record_sets.insert(ZONE_ID.into(), records);
        let placement = Placement { running_tasks: 1, host_ips: vec!["10.0.1.5".into()], cloud_map_ips: None };
        o.placements.insert(SERVICE.into(), placement);
        o
    }

    fn plan_against(d: &Desired, o: &Observed, adopt: bool) -> Vec<Step> {
        plan(&ctx(d, o, &mk_options(adopt)), &mk_lb())
    }

    fn changes(steps: Vec<Step>) -> Vec<Change> {
        steps.into_iter().flat_map(|s| s.expect("no problem")).collect()
    }

    #[test]
    fn no_dns_block_plans_nothing() {
        let d = mk_desired(SERVICE);
        assert!(plan_against(&d, &mk_world_with(vec![]), false).is_empty());
    }

    #[test]
    fn an_empty_zone_gets_the_owner_txt_and_the_a_record() {
        let d = mk_desired_with_dns();
        let c = changes(plan_against(&d, &mk_world_with(vec![]), false));
        assert_eq!(
            summary(&c),
            [
                (Kind::DnsRecord, Action::Create, format!("A {RECORD}")),
                (Kind::DnsRecord, Action::Create, format!("TXT {RECORD}")),
            ]
        );
        assert!(matches!(&c[0].ops[..], [Op::ChangeRecord { zone_id, .. }] if zone_id == ZONE_ID));
    }

    #[test]
    fn owned_records_in_sync_change_nothing() {
        let d = mk_desired_with_dns();
        assert!(changes(plan_against(&d, &mk_world_with(vec![a("10.0.1.5"), txt(SERVICE)]), false)).is_empty());
    }

    #[test]
    fn a_moved_task_updates_the_a_record_with_a_diff() {
        let d = mk_desired_with_dns();
        let c = changes(plan_against(&d, &mk_world_with(vec![a("10.0.1.9"), txt(SERVICE)]), false));
        assert_eq!(summary(&c), [(Kind::DnsRecord, Action::Update, format!("A {RECORD}"))]);
        assert_eq!(c[0].diff[0].path, "values[0]");
    }

    #[test]
    fn a_foreign_record_is_a_conflict_and_adopting_takes_the_name_over() {
        let d = mk_desired_with_dns();
        let o = mk_world_with(vec![a("10.0.1.9")]);
        let c = changes(plan_against(&d, &o, false));
        assert_eq!(summary(&c), [(Kind::DnsRecord, Action::Conflict, RECORD.into())]);
        assert!(c[0].reason.as_deref().unwrap().contains("--adopt"));
        let c = changes(plan_against(&d, &o, true));
        assert_eq!(
            summary(&c),
            [
                (Kind::DnsRecord, Action::Update, format!("A {RECORD}")),
                (Kind::DnsRecord, Action::Create, format!("TXT {RECORD}")),
            ]
        );
    }

    #[test]
    fn an_unresolvable_zone_is_a_problem() {
        let d = mk_desired_with_dns();
        let mut o = mk_world_with(vec![]);
        o.zones.insert(ZONE.into(), ZoneLookup::Ambiguous { ids: vec!["Z1".into(), "Z2".into()] });
        let steps = plan_against(&d, &o, false);
        let Err(p) = &steps[0] else { panic!("{steps:?}") };
        assert!(p.message.contains("matches 2 hosted zones (Z1, Z2)"), "{}", p.message);
        o.zones.clear();
        let steps = plan_against(&d, &o, false);
        assert_eq!(steps[0].as_ref().unwrap_err().message, format!("hosted zone `{ZONE}` not found"));
    }

    #[test]
    fn owned_records_of_selected_services_are_deleted() {
        let mut o = mk_world_with(vec![a("10.0.1.5"), txt("old")]);
        o.record_sets.insert("Z2".into(), vec![RecordSet::simple("x.example.edu.", "A", 60, vec!["10.0.0.1".into()])]);
        assert!(owned_records(&o, OWNER, &|s| s != "old").is_empty());
        let records = owned_records(&o, OWNER, &|s| s == "old");
        let deletes: Vec<(Option<String>, String)> = records.iter().map(|r| (r.service(OWNER), r.delete().0)).collect();
        assert_eq!(
            deletes,
            [(Some("old".into()), format!("A {RECORD}")), (Some("old".into()), format!("TXT {RECORD}"))]
        );
        assert!(
            matches!(records[0].delete().1, Op::ChangeRecord { zone_id, change } if zone_id == ZONE_ID && change.action == RecordAction::Delete)
        );
    }
}
