//! Security-group ingress: the allowed CIDRs plus the NLB's subnets, as a set difference over
//! the rules we own. A plan that would take the group over its rule quota is a problem.

use std::collections::BTreeSet;

use super::delete::Deletable;
use super::service::{Ctx, Step};
use super::{Action, Change, Kind, Op};
use crate::observed::{self, LoadBalancer, Observed, Ownership};
use crate::render::IngressRule;

/// Inbound rules a security group holds by default.
pub const SG_INBOUND_QUOTA: usize = 60;

/// What identifies a rule to EC2: protocol, port, source.
type Key = (String, i32, String);

fn key(proto: &str, port: i32, cidr: &str) -> Key {
    (proto.to_owned(), port, cidr.to_owned())
}

pub(super) fn plan(ctx: &Ctx, lb: &LoadBalancer) -> Step {
    let group = &ctx.d.security_group_id;
    let rules = ctx.o.security_groups.get(group).cloned().flatten().unwrap_or_default();
    let want = wanted(ctx, lb);
    let (owned, foreign): (Vec<&observed::IngressRule>, Vec<_>) =
        rules.iter().partition(|r| rule_owned_by(r, &ctx.opts.owner, &ctx.d.service));
    let mut changes = authorizations(ctx, &want, &owned, &foreign);
    changes.extend(revocations(ctx, &want, &owned));
    let adds = changes.iter().filter(|c| c.action == Action::Create).count();
    let revokes = changes.iter().filter(|c| c.action == Action::Delete).count();
    let after = rules.len() + adds - revokes;
    if after > SG_INBOUND_QUOTA {
        return Err(ctx.problem(format!(
            "security group {group} would hold {after} inbound rules, over the quota of {SG_INBOUND_QUOTA}; \
             merge CIDRs, use a prefix list, or raise the quota"
        )));
    }
    Ok(changes)
}

/// The allowed CIDRs plus the NLB's subnets (health checks come from there).
fn wanted(ctx: &Ctx, lb: &LoadBalancer) -> BTreeSet<IngressRule> {
    let d = ctx.d;
    let description = crate::codec::rule_description(&ctx.opts.owner, &d.service);
    let mut want: BTreeSet<IngressRule> = d.ingress.iter().cloned().collect();
    for cidr in &lb.subnet_cidrs {
        want.insert(IngressRule {
            protocol: "tcp".into(),
            port: d.target_group.port,
            cidr: cidr.clone(),
            description: description.clone(),
        });
    }
    want
}

/// Wanted rules we do not own yet; one identical to a rule someone else owns is a conflict.
fn authorizations(
    ctx: &Ctx,
    want: &BTreeSet<IngressRule>,
    owned: &[&observed::IngressRule],
    foreign: &[&observed::IngressRule],
) -> Vec<Change> {
    let group = &ctx.d.security_group_id;
    let owned_keys: BTreeSet<Key> = owned.iter().map(|r| key(&r.protocol, r.from_port, &r.cidr)).collect();
    let foreign_keys: BTreeSet<Key> =
        foreign.iter().filter(|r| r.from_port == r.to_port).map(|r| key(&r.protocol, r.from_port, &r.cidr)).collect();
    let mut out = Vec::new();
    for r in want {
        let k = key(&r.protocol, i32::from(r.port), &r.cidr);
        if owned_keys.contains(&k) {
            continue;
        }
        let name = format!("{} tcp/{} from {}", group, r.port, r.cidr);
        if foreign_keys.contains(&k) {
            // AWS refuses a second rule with the same protocol, port and source.
            let reason = "an identical rule not owned by this operator already allows this; it is left as it is";
            out.push(ctx.change(Kind::IngressRule, &name, Action::Conflict, vec![]).because(reason));
            continue;
        }
        let mut tags = ctx.d.tags.clone();
        tags.insert("Name".into(), crate::codec::rule_description(&ctx.opts.owner, &ctx.d.service));
        let op = Op::AuthorizeIngress { group_id: group.clone(), rule: r.clone(), tags };
        out.push(ctx.change(Kind::IngressRule, &name, Action::Create, vec![op]));
    }
    out
}

/// Stale owned rules go (a set difference over owned rules only), and so does an owned port
/// range: ours are always a single port.
fn revocations(ctx: &Ctx, want: &BTreeSet<IngressRule>, owned: &[&observed::IngressRule]) -> Vec<Change> {
    let group = &ctx.d.security_group_id;
    let want_keys: BTreeSet<Key> = want.iter().map(|r| key(&r.protocol, i32::from(r.port), &r.cidr)).collect();
    let stale = owned
        .iter()
        .filter(|r| !(want_keys.contains(&key(&r.protocol, r.from_port, &r.cidr)) && r.from_port == r.to_port));
    stale
        .map(|r| {
            let name = format!("{} {} tcp/{}-{} from {}", group, r.rule_id, r.from_port, r.to_port, r.cidr);
            let op = Op::RevokeIngress { group_id: group.clone(), rule_id: r.rule_id.clone() };
            ctx.change(Kind::IngressRule, &name, Action::Delete, vec![op])
        })
        .collect()
}

/// Owned = our description, or our tags; `service` narrows to one SftpService.
fn rule_owned_by(r: &observed::IngressRule, owner: &str, service: &str) -> bool {
    r.description.as_deref() == Some(crate::codec::rule_description(owner, service).as_str())
        || observed::ownership(&r.tags, owner) == (Ownership::Owned { service: service.to_owned() })
}

/// The service an owned rule belongs to, if it is ours at all.
fn rule_service(r: &observed::IngressRule, owner: &str) -> Option<String> {
    if let Ownership::Owned { service } = observed::ownership(&r.tags, owner) {
        return Some(service);
    }
    crate::codec::parse_rule_description(r.description.as_deref()?).filter(|o| o.owner == owner).map(|o| o.service)
}

/// A rule with the group that holds it: what `delete` and `--prune` revoke.
pub(super) struct GroupRule<'o> {
    group: &'o str,
    rule: &'o observed::IngressRule,
}

/// Every rule of every observed group.
pub(super) fn group_rules(o: &Observed) -> Vec<GroupRule<'_>> {
    let mut out = Vec::new();
    for (group, rules) in &o.security_groups {
        out.extend(rules.iter().flatten().map(|rule| GroupRule { group, rule }));
    }
    out
}

impl Deletable for GroupRule<'_> {
    const KIND: Kind = Kind::IngressRule;

    fn service(&self, owner: &str) -> Option<String> {
        rule_service(self.rule, owner)
    }

    fn delete(&self) -> (String, Op) {
        let r = self.rule;
        let name = format!("{} {} tcp/{} from {}", self.group, r.rule_id, r.from_port, r.cidr);
        (name, Op::RevokeIngress { group_id: self.group.to_owned(), rule_id: r.rule_id.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::render::Desired;

    fn plan_against(d: &Desired, rules: Vec<observed::IngressRule>) -> Step {
        let mut o = mk_world();
        o.security_groups.insert(SG.into(), Some(rules));
        plan(&ctx(d, &o, &mk_options(false)), &mk_lb())
    }

    #[test]
    fn allowed_cidrs_and_nlb_subnets_are_authorized_with_our_tags() {
        let d = mk_desired(SERVICE);
        let c = plan_against(&d, vec![]).unwrap();
        assert_eq!(
            summary(&c),
            [
                (Kind::IngressRule, Action::Create, format!("{SG} tcp/30020 from 10.0.1.0/24")),
                (Kind::IngressRule, Action::Create, format!("{SG} tcp/30020 from 192.0.2.0/24")),
            ]
        );
        let Op::AuthorizeIngress { tags, .. } = &c[0].ops[0] else { panic!("{:?}", c[0].ops) };
        assert_eq!(tags["Name"], crate::codec::rule_description(OWNER, SERVICE));
    }

    #[test]
    fn owned_rules_in_place_change_nothing() {
        let d = mk_desired(SERVICE);
        assert!(plan_against(&d, mk_live_rules(&d)).unwrap().is_empty());
    }

    #[test]
    fn a_rule_owned_only_by_its_description_counts_as_ours() {
        let d = mk_desired(SERVICE);
        let mut rules = mk_live_rules(&d);
        rules[0].tags.clear();
        assert!(plan_against(&d, rules).unwrap().is_empty());
    }

    #[test]
    fn stale_owned_rules_and_owned_port_ranges_are_revoked_others_are_kept() {
        let d = mk_desired(SERVICE);
        let mut rules = mk_live_rules(&d);
        rules.push(mk_live_rule(SERVICE, "sgr-3", 30020, "198.51.100.0/24"));
        let mut range = mk_live_rule(SERVICE, "sgr-4", 30020, "192.0.2.0/24");
        range.to_port = 30030;
        rules.push(range);
        let mut theirs = mk_live_rule(SERVICE, "sgr-5", 22, "0.0.0.0/0");
        (theirs.description, theirs.tags) = (None, foreign_tags());
        rules.push(theirs);
        rules.push(mk_live_rule("other", "sgr-6", 30021, "203.0.113.0/24"));
        let c = plan_against(&d, rules).unwrap();
        assert_eq!(
            summary(&c),
            [
                (Kind::IngressRule, Action::Delete, format!("{SG} sgr-3 tcp/30020-30020 from 198.51.100.0/24")),
                (Kind::IngressRule, Action::Delete, format!("{SG} sgr-4 tcp/30020-30030 from 192.0.2.0/24")),
            ]
        );
        assert_eq!(c[0].ops, [Op::RevokeIngress { group_id: SG.into(), rule_id: "sgr-3".into() }]);
    }

    #[test]
    fn an_identical_unowned_rule_is_a_conflict() {
        let d = mk_desired(SERVICE);
        let mut theirs = mk_live_rule(SERVICE, "sgr-9", 30020, "192.0.2.0/24");
        (theirs.description, theirs.tags) = (Some("hand-made".into()), foreign_tags());
        let c = plan_against(&d, vec![theirs]).unwrap();
        assert_eq!(c[1].action, Action::Conflict);
        assert_eq!(c[1].name, format!("{SG} tcp/30020 from 192.0.2.0/24"));
        assert!(c[1].ops.is_empty());
    }

    #[test]
    fn going_over_the_quota_is_a_problem_instead_of_changes() {
        let d = mk_desired(SERVICE);
        let mut rules: Vec<observed::IngressRule> = (0..SG_INBOUND_QUOTA - 1)
            .map(|i| mk_live_rule("other", &format!("sgr-{i}"), 22, &format!("10.9.{i}.0/24")))
            .collect();
        assert!(plan_against(&d, rules.clone()).is_err(), "59 + 2 rules");
        rules.pop();
        assert_eq!(plan_against(&d, rules).unwrap().len(), 2, "58 + 2 rules fit");
    }

    #[test]
    fn owned_rules_are_revoked_by_id_in_their_group() {
        let mut o = mk_world();
        let mut by_description = mk_live_rule("old", "sgr-1", 30020, "192.0.2.0/24");
        by_description.tags.clear();
        let mut theirs = mk_live_rule("old", "sgr-2", 30020, "192.0.2.0/24");
        (theirs.description, theirs.tags) = (None, foreign_tags());
        o.security_groups.insert(SG.into(), Some(vec![by_description, theirs]));
        o.security_groups.insert("sg-gone".into(), None);
        let rules = group_rules(&o);
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].service(OWNER).as_deref(), Some("old"));
        assert_eq!(rules[1].service(OWNER), None);
        let (name, op) = rules[0].delete();
        assert_eq!(name, format!("{SG} sgr-1 tcp/30020 from 192.0.2.0/24"));
        assert_eq!(op, Op::RevokeIngress { group_id: SG.into(), rule_id: "sgr-1".into() });
    }
}
