//! Deleting owned resources: orphans (owned resources whose manifest is gone, deleted only
//! with `--prune`) and `delete` (every owned resource of the given services). Each deletable
//! kind says, beside its planning, whose it is and how it goes ([`Deletable`]); one helper
//! turns them into changes. Host-key secrets are never deleted, so clients never see a changed
//! host key.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use super::{Action, Change, Kind, Op, Options, Plan, dns_record, ingress, plan_groups};
use crate::observed::{self, Observed, Ownership, Tags};
use crate::render::Desired;

/// An observed resource `delete` and `--prune` may remove.
pub(super) trait Deletable {
    const KIND: Kind;
    /// The service it belongs to, when it is ours (and not already gone).
    fn service(&self, owner: &str) -> Option<String>;
    /// Its label in plans and the op that deletes it.
    fn delete(&self) -> (String, Op);
}

/// The service `tags` give a resource of ours.
pub(super) fn owned_service(tags: &Tags, owner: &str) -> Option<String> {
    match observed::ownership(tags, owner) {
        Ownership::Owned { service } => Some(service),
        Ownership::Foreign | Ownership::OtherOwner { .. } => None,
    }
}

/// Delete changes for the owned `items` whose service `select` picks.
fn deletes<'a, T: Deletable + 'a>(
    items: impl IntoIterator<Item = &'a T>,
    owner: &str,
    select: &dyn Fn(&str) -> bool,
) -> Vec<Change> {
    let delete = |item: &T| {
        let service = item.service(owner).filter(|s| select(s))?;
        let (name, op) = item.delete();
        Some(Change::new(&service, T::KIND, &name, Action::Delete, vec![op]))
    };
    items.into_iter().filter_map(delete).collect()
}

/// Delete changes for every owned resource (other than host-key secrets and task definitions)
/// whose service matches `select`.
fn owned_deletes(o: &Observed, owner: &str, select: &dyn Fn(&str) -> bool) -> Vec<Change> {
    let mut out = deletes(&o.ecs_services, owner, select);
    out.extend(deletes(&o.listeners, owner, select));
    out.extend(deletes(&o.target_groups, owner, select));
    out.extend(deletes(&dns_record::owned_records(o, owner, select), owner, select));
    out.extend(deletes(&o.cloud_map_services, owner, select));
    out
}

/// Reverse dependency order per service: what points at a resource goes before it.
fn sort_deletes(changes: &mut [Change]) {
    changes.sort_by(|a, b| (&a.service, Reverse(a.kind), &a.name).cmp(&(&b.service, Reverse(b.kind), &b.name)));
}

/// Owned resources of services not in `known`.
pub(super) fn orphans(o: &Observed, owner: &str, known: &BTreeSet<&str>) -> Vec<Change> {
    let mut v = owned_deletes(o, owner, &|s| !known.contains(s));
    sort_deletes(&mut v);
    v
}

/// Deletes every owned resource of the given services, in reverse dependency order, and closes
/// their ports in the shared security-group rules (narrowing or splitting merged ranges).
pub fn plan_delete(desired: &[Desired], observed: &Observed, owner: &str) -> Plan {
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.service.as_str()).collect();
    let mut changes = owned_deletes(observed, owner, &|s| wanted.contains(s));
    for d in desired {
        if let Some(td) = observed.task_definitions.get(&d.names.task_family)
            && observed::ownership(&td.tags, owner) == (Ownership::Owned { service: d.service.clone() })
        {
            let op = Op::DeregisterTaskDefinitions { family: td.family.clone() };
            changes.push(Change::new(&d.service, Kind::TaskDefinition, &td.family, Action::Delete, vec![op]));
        }
    }
    sort_deletes(&mut changes);
    let mut plan = Plan { changes, ..Plan::default() };
    let opts = Options { owner: owner.to_owned(), adopt: false, prune: false };
    plan_groups(&mut plan, ingress::closing(desired, observed, owner), observed, &opts, false);
    // Other services' ports are not this delete's business: not reported as orphans here.
    plan.orphans.clear();
    plan
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{Options, plan};
    use super::*;

    /// `campus`'s resources, in sync, plus a host-key secret.
    fn mk_owned_world() -> (Desired, Observed) {
        let mut d = mk_desired(SERVICE);
        d.host_key_secret = Some(d.names.host_key_secret.clone());
        d.cloud_map = Some(mk_cloud_map(SERVICE));
        let o = mk_in_sync(&d);
        (d, o)
    }

    #[test]
    fn owned_resources_without_a_manifest_are_orphans_deleted_only_with_prune() {
        let (_, o) = mk_owned_world();
        let p = plan(&[], &o, &mk_options(false));
        assert!(p.changes.is_empty());
        assert_eq!(
            summary(&p.orphans),
            [
                (Kind::EcsService, Action::Delete, "campus".into()),
                (Kind::CloudMapService, Action::Delete, "campus".into()),
                (Kind::Listener, Action::Delete, "sftp:2220".into()),
                (Kind::TargetGroup, Action::Delete, "sftp-campus".into()),
                (Kind::IngressRule, Action::Delete, format!("{SG} tcp/30020 from 10.0.1.0/24")),
                (Kind::IngressRule, Action::Delete, format!("{SG} tcp/30020 from 192.0.2.0/24")),
            ],
            "reverse dependency order, then the group's unclaimed ports; the host-key secret and task \
             definition stay"
        );
        let pruned = plan(&[], &o, &Options { prune: true, ..mk_options(false) });
        assert_eq!(pruned.changes[..4], p.orphans[..4]);
        assert_eq!(
            summary(&pruned.changes[4..]),
            [(
                Kind::IngressRule,
                Action::Delete,
                format!("{SG} sgr-1 tcp/30020 from 192.0.2.0/24, sgr-2 tcp/30020 from 10.0.1.0/24")
            )]
        );
        assert!(pruned.orphans.is_empty());
    }

    #[test]
    fn a_planned_service_has_no_orphans() {
        let (d, o) = mk_owned_world();
        let p = plan(std::slice::from_ref(&d), &o, &Options { prune: true, ..mk_options(false) });
        assert!(p.orphans.is_empty() && p.changes.is_empty());
    }

    #[test]
    fn another_owners_resources_are_never_orphans() {
        let (_, o) = mk_owned_world();
        assert!(plan(&[], &o, &Options { owner: "another-owner".into(), ..mk_options(false) }).orphans.is_empty());
    }

    #[test]
    fn delete_removes_the_services_resources_and_deregisters_its_family() {
        let (d, mut o) = mk_owned_world();
        let mut other = mk_live_target_group(&mk_desired("other"));
        (other.tags, other.port) = (mk_tags("other"), Some(30021));
        o.target_groups.push(other);
        let p = plan_delete(std::slice::from_ref(&d), &o, OWNER);
        let kinds: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::EcsService,
                Kind::CloudMapService,
                Kind::Listener,
                Kind::TargetGroup,
                Kind::TaskDefinition,
                Kind::IngressRule,
            ]
        );
        assert!(p.changes[..5].iter().all(|c| c.service == SERVICE && c.action == Action::Delete));
        assert_eq!(p.changes[4].ops, [Op::DeregisterTaskDefinitions { family: d.names.task_family.clone() }]);
        let rules = &p.changes[5];
        assert_eq!((rules.service.as_str(), rules.action), (crate::plan::group_scope(SG).as_str(), Action::Delete));
        assert_eq!(
            rules.ops,
            [Op::RevokeIngress { group_id: SG.into(), rule_ids: vec!["sgr-1".into(), "sgr-2".into()] }]
        );
        // Another service of ours on the same port keeps it open.
        o.target_groups.last_mut().unwrap().port = Some(30020);
        let p = plan_delete(std::slice::from_ref(&d), &o, OWNER);
        assert!(p.changes.iter().all(|c| c.kind != Kind::IngressRule), "{:?}", summary(&p.changes));
    }

    #[test]
    fn delete_leaves_an_unowned_family_alone() {
        let (d, mut o) = mk_owned_world();
        o.task_definitions.values_mut().for_each(|td| td.tags = foreign_tags());
        let p = plan_delete(std::slice::from_ref(&d), &o, OWNER);
        assert!(p.changes.iter().all(|c| c.kind != Kind::TaskDefinition));
    }

    #[test]
    fn the_helper_deletes_only_owned_selected_items() {
        let d = mk_desired(SERVICE);
        let mine = mk_live_target_group(&d);
        let theirs = observed::TargetGroup { tags: foreign_tags(), ..mk_live_target_group(&d) };
        let old = observed::TargetGroup { tags: mk_tags("old"), ..mk_live_target_group(&d) };
        let c = deletes(&[mine, theirs, old], OWNER, &|s| s == "old");
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].service.as_str(), c[0].kind), ("old", Kind::TargetGroup));
        assert_eq!(owned_service(&foreign_tags(), OWNER), None);
    }
}
