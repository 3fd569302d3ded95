//! Security-group ingress, planned per group from every service on it.
//!
//! Each service wants its host port open to its allowed CIDRs and to its load balancer's
//! subnets (health checks come from there). Per group, those wants are merged the way the
//! hand-written playbooks did: per CIDR, the ports collapse into contiguous ranges; CIDRs with
//! the same ranges aggregate where that is exact. Twenty services allowing the same five
//! networks cost five rules, not a hundred. Merged rules belong to the installation (owner
//! id), not to one service.
//!
//! A port changes only when this pass *claims* it: a manifest service wants it, or a service
//! used it and moved (its owned target group says so), or it is being deleted, or `--prune`
//! closes the ports no manifest service claims. Every other port keeps exactly what our rules
//! allow today (and is reported as an orphan). Hand-made rules are never touched. Changes are
//! ordered so that access is never lost in between: a rule goes only once what it allowed and
//! is still wanted is allowed by another rule, and the group never holds more rules than its
//! quota, at any step.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::{Action, Change, Kind, Op, Options, PortRange, Problem};
use crate::names::OWNER_TAG;
use crate::observed::{self, Observed, Ownership, Tags};
use crate::render::Desired;

/// Inbound rules a security group holds by default.
pub const SG_INBOUND_QUOTA: usize = 60;

/// The `service` of a group's changes and problems: the rules are shared by every service on
/// it. Service names never hold a `/`, so this never names a service.
pub fn group_scope(group: &str) -> String {
    format!("security-group/{group}")
}

/// Addresses allowed per port.
type Allowed = BTreeMap<u16, BTreeSet<IpNet>>;

/// One TCP rule: a CIDR allowed on a port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    cidr: IpNet,
    from: u16,
    to: u16,
}

impl Rule {
    /// A TCP rule as EC2 reports it; `None` for anything else (other protocols, all ports).
    fn of(r: &observed::IngressRule) -> Option<Rule> {
        let (from, to) = (u16::try_from(r.from_port).ok()?, u16::try_from(r.to_port).ok()?);
        let cidr: IpNet = r.cidr.parse().ok()?;
        (r.protocol == "tcp" && from <= to).then_some(Rule { cidr: cidr.trunc(), from, to })
    }

    /// Whether the rule allows `net` on `port`.
    fn covers(&self, port: u16, net: &IpNet) -> bool {
        self.from <= port && port <= self.to && self.cidr.contains(net)
    }

    fn range(&self) -> PortRange {
        PortRange { cidr: self.cidr.to_string(), from_port: self.from, to_port: self.to }
    }

    fn label(&self) -> String {
        self.range().to_string()
    }
}

/// What one pass decides on a group: for each claimed port, the CIDRs it should allow (none:
/// close it); the ports our services outside the pass use; and what each service in the pass
/// wants (a group problem blocks those whose access is not in place yet).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct GroupClaims {
    ports: Allowed,
    /// Ports one of our services outside this pass uses (its target group's port, or the port
    /// its ECS service's rendering tag records): never narrowed or closed here, kept unclaimed.
    outside: BTreeSet<u16>,
    pub(super) services: BTreeMap<String, Allowed>,
}

impl GroupClaims {
    fn want(&mut self, service: &str, port: u16, nets: impl IntoIterator<Item = IpNet>) {
        let nets: Vec<IpNet> = nets.into_iter().map(|n| n.trunc()).collect();
        self.ports.entry(port).or_default().extend(&nets);
        self.services.entry(service.to_owned()).or_default().entry(port).or_default().extend(nets);
    }

    /// Closes `port` unless a service wants it.
    fn close(&mut self, port: u16) {
        self.ports.entry(port).or_default();
    }
}

/// Which of our ECS services is `d`'s, and the port its rendering tag records: where `d`'s
/// tasks listened when it was last applied in full.
fn recorded_port(d: &Desired, o: &Observed) -> Option<u16> {
    let s = o.ecs_services.iter().find(|s| s.cluster == d.ecs_service.cluster && s.name == d.ecs_service.name)?;
    let ours = observed::ownership(&s.tags, d.tags.get(OWNER_TAG)?) == Ownership::Owned { service: d.service.clone() };
    ours.then(|| crate::codec::parse_rendering_tag(s.tags.get(crate::names::RENDERING_TAG)?)).flatten().map(|r| r.port)
}

/// Ports our services outside `in_pass` use, as far as this pass saw them: their target
/// groups' ports and the ports their ECS services' rendering tags record.
fn outside_ports(o: &Observed, owner: &str, in_pass: &BTreeSet<&str>) -> BTreeSet<u16> {
    let outside = |tags: &Tags| match observed::ownership(tags, owner) {
        Ownership::Owned { service } => !in_pass.contains(service.as_str()),
        _ => false,
    };
    let target_groups = o.target_groups.iter().filter(|t| outside(&t.tags)).filter_map(|t| u16::try_from(t.port?).ok());
    let services =
        o.ecs_services.iter().filter(|s| s.status != "INACTIVE" && outside(&s.tags)).filter_map(|s| {
            crate::codec::parse_rendering_tag(s.tags.get(crate::names::RENDERING_TAG)?).map(|r| r.port)
        });
    target_groups.chain(services).collect()
}

/// What the manifests' services claim, per group: each service's host port for its allowed
/// CIDRs and its load balancer's subnets; the port it was last applied with, when it moved,
/// closes. A service whose load balancer is not found claims nothing (it is blocked anyway).
pub(super) fn claims(desired: &[Desired], o: &Observed, owner: &str) -> BTreeMap<String, GroupClaims> {
    let in_pass: BTreeSet<&str> = desired.iter().map(|d| d.service.as_str()).collect();
    let outside = outside_ports(o, owner, &in_pass);
    let mut out: BTreeMap<String, GroupClaims> = BTreeMap::new();
    for d in desired {
        let group = out.entry(d.security_group_id.clone()).or_default();
        group.outside.clone_from(&outside);
        group.services.entry(d.service.clone()).or_default();
        let Some(Some(lb)) = o.load_balancers.get(&d.load_balancer_arn) else { continue };
        for r in &d.ingress {
            group.want(&d.service, r.port, r.cidr.parse().ok());
        }
        group.want(&d.service, d.target_group.port, lb.subnet_cidrs.iter().filter_map(|c| c.parse().ok()));
        if let Some(port) = recorded_port(d, o).filter(|p| *p != d.target_group.port) {
            group.close(port);
        }
    }
    out
}

/// What deleting `desired` closes, per group: each service's host port and the port it was
/// last applied with.
pub(super) fn closing(desired: &[Desired], o: &Observed, owner: &str) -> BTreeMap<String, GroupClaims> {
    let in_pass: BTreeSet<&str> = desired.iter().map(|d| d.service.as_str()).collect();
    let outside = outside_ports(o, owner, &in_pass);
    let mut out: BTreeMap<String, GroupClaims> = BTreeMap::new();
    for d in desired {
        let group = out.entry(d.security_group_id.clone()).or_default();
        group.outside.clone_from(&outside);
        group.services.entry(d.service.clone()).or_default();
        group.close(d.target_group.port);
        if let Some(port) = recorded_port(d, o) {
            group.close(port);
        }
    }
    out
}

/// Whether `rules` already allow everything in `wants`.
pub(super) fn allows(rules: &[observed::IngressRule], wants: &Allowed) -> bool {
    let covering: Vec<Rule> = rules.iter().filter_map(tcp_cover).collect();
    wants.iter().all(|(port, nets)| nets.iter().all(|n| covering.iter().any(|r| r.covers(*port, n))))
}

/// Ours: our owner tag, or (untagged) a description naming our owner id, either format.
fn owned(r: &observed::IngressRule, owner: &str) -> bool {
    match r.tags.get(OWNER_TAG) {
        Some(o) => o == owner,
        None => r.description.as_deref().and_then(crate::codec::rule_owner) == Some(owner),
    }
}

/// The TCP access a rule gives, whatever its protocol: its range for TCP, every port for all
/// traffic (`-1`), none for other protocols.
fn tcp_cover(r: &observed::IngressRule) -> Option<Rule> {
    if r.protocol == "-1" {
        let cidr: IpNet = r.cidr.parse().ok()?;
        return Some(Rule { cidr: cidr.trunc(), from: 0, to: u16::MAX });
    }
    Rule::of(r)
}

/// What allowed-per-port the rules add up to.
fn allowed_by(rules: impl IntoIterator<Item = Rule>) -> Allowed {
    let mut out = Allowed::new();
    for r in rules {
        for port in r.from..=r.to {
            out.entry(port).or_default().insert(r.cidr);
        }
    }
    out
}

/// The fewest rules this merge finds for `allowed`, exactly: per CIDR its ports as contiguous
/// ranges, then per range its CIDRs aggregated (contained ones dropped, siblings joined).
fn merge(allowed: &Allowed) -> BTreeSet<Rule> {
    let mut ports_by_net: BTreeMap<IpNet, Vec<u16>> = BTreeMap::new();
    for (port, nets) in allowed {
        for net in nets {
            ports_by_net.entry(*net).or_default().push(*port);
        }
    }
    let mut nets_by_range: BTreeMap<(u16, u16), Vec<IpNet>> = BTreeMap::new();
    for (net, ports) in ports_by_net {
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        for p in ports {
            match ranges.last_mut() {
                Some((_, to)) if u32::from(*to) + 1 == u32::from(p) => *to = p,
                _ => ranges.push((p, p)),
            }
        }
        for range in ranges {
            nets_by_range.entry(range).or_default().push(net);
        }
    }
    let mut out = BTreeSet::new();
    for ((from, to), nets) in nets_by_range {
        out.extend(IpNet::aggregate(&nets).into_iter().map(|cidr| Rule { cidr, from, to }));
    }
    out
}

/// What one group's plan holds: changes in the order they must run, and owned ports no
/// service claims (reported; closed only with `--prune`).
#[derive(Debug, Default)]
pub(super) struct GroupPlan {
    pub changes: Vec<Change>,
    pub orphans: Vec<Change>,
}

/// One step of a group's change sequence.
enum Step<'r> {
    Authorize(Vec<Rule>),
    Revoke(Vec<&'r observed::IngressRule>),
}

/// The group's plan: the wanted rules (owned rules for unclaimed ports kept as they are, the
/// claimed ports as claimed), minus what owned rules already say, sequenced within the quota.
/// `close_unaccounted`: this pass holds every service of the owner id, so owned ports that no
/// service accounts for (a hand-widened rule) close; otherwise they are kept as orphans.
pub(super) fn plan_group(
    group: &str,
    rules: &[observed::IngressRule],
    claims: &GroupClaims,
    opts: &Options,
    close_unaccounted: bool,
) -> Result<GroupPlan, Problem> {
    let scope = group_scope(group);
    let (owned, foreign): (Vec<&observed::IngressRule>, Vec<_>) = rules.iter().partition(|r| owned(r, &opts.owner));
    let current = allowed_by(owned.iter().filter_map(|r| Rule::of(r)));
    let mut target = current.clone();
    for (port, nets) in &claims.ports {
        if claims.outside.contains(port) {
            // A service this pass does not see uses the port too: only ever widened here.
            target.entry(*port).or_default().extend(nets);
        } else if nets.is_empty() {
            target.remove(port);
        } else {
            target.insert(*port, nets.clone());
        }
    }
    let mut unclaimed: Allowed = current.into_iter().filter(|(p, _)| !claims.ports.contains_key(p)).collect();
    if close_unaccounted && !opts.prune {
        let (kept, unaccounted): (Allowed, Allowed) =
            unclaimed.into_iter().partition(|(p, _)| claims.outside.contains(p));
        target.retain(|p, _| !unaccounted.contains_key(p));
        unclaimed = kept;
    }
    let mut plan = GroupPlan::default();
    if opts.prune {
        target.retain(|p, _| !unclaimed.contains_key(p));
    } else {
        let reason = "no service in the manifests uses this port; closed with --prune";
        plan.orphans = merge(&unclaimed)
            .iter()
            .map(|r| Change::new(&scope, Kind::IngressRule, &format!("{group} {}", r.label()), Action::Delete, vec![]))
            .map(|c| c.because(reason))
            .collect();
    }
    let want = merge(&target);
    // The first owned rule saying exactly a wanted rule stays; every other owned rule goes.
    let mut kept = BTreeSet::new();
    let mut revokes = Vec::new();
    for r in &owned {
        match Rule::of(r) {
            Some(rule) if want.contains(&rule) && kept.insert(rule) => {}
            _ => revokes.push(*r),
        }
    }
    let foreign_rules: BTreeSet<Rule> = foreign.iter().filter_map(|r| Rule::of(r)).collect();
    let mut authorizations = Vec::new();
    for rule in want.difference(&kept) {
        if foreign_rules.contains(rule) {
            // AWS refuses a second rule with the same protocol, ports and source.
            let reason = "an identical rule not owned by this operator already allows this; it is left as it is";
            let name = format!("{group} {}", rule.label());
            plan.changes.push(Change::new(&scope, Kind::IngressRule, &name, Action::Conflict, vec![]).because(reason));
        } else {
            authorizations.push(*rule);
        }
    }
    let after = rules.len() + authorizations.len() - revokes.len();
    let problem = |message: String| Problem { service: scope.clone(), message };
    if after > SG_INBOUND_QUOTA {
        return Err(problem(format!(
            "security group {group} would hold {after} inbound rules, over the quota of {SG_INBOUND_QUOTA}; \
             allow fewer or wider networks (the operator plans for AWS's default of 60 inbound rules)"
        )));
    }
    let standing: Vec<Rule> = kept.iter().copied().chain(foreign.iter().filter_map(|r| tcp_cover(r))).collect();
    let steps = sequence(rules.len(), authorizations, revokes, &target, standing).ok_or_else(|| {
        problem(format!(
            "security group {group} is too full to change its rules without cutting access (it needs \
             a free rule slot of its {SG_INBOUND_QUOTA}); remove a hand-made rule"
        ))
    })?;
    plan.changes.extend(steps.into_iter().map(|s| step_change(group, &scope, s, &opts.owner)));
    Ok(plan)
}

/// Orders the changes: a revoke as soon as it takes no wanted access away (what it allows and
/// is still wanted is allowed by a standing rule), an authorization whenever a rule slot is
/// free. `None` when neither can move.
fn sequence<'r>(
    present: usize,
    mut authorizations: Vec<Rule>,
    mut revokes: Vec<&'r observed::IngressRule>,
    target: &Allowed,
    mut standing: Vec<Rule>,
) -> Option<Vec<Step<'r>>> {
    let mut count = present;
    let mut steps = Vec::new();
    loop {
        let (ready, waiting): (Vec<_>, Vec<_>) = revokes.into_iter().partition(|r| harmless(r, target, &standing));
        revokes = waiting;
        if !ready.is_empty() {
            count -= ready.len();
            steps.push(Step::Revoke(ready));
        }
        if authorizations.is_empty() {
            break;
        }
        let free = SG_INBOUND_QUOTA.saturating_sub(count);
        if free == 0 {
            return None;
        }
        let batch: Vec<Rule> = authorizations.drain(..free.min(authorizations.len())).collect();
        count += batch.len();
        standing.extend(&batch);
        steps.push(Step::Authorize(batch));
    }
    // Every wanted address is allowed by a wanted rule by now; anything left is safe to go.
    if !revokes.is_empty() {
        steps.push(Step::Revoke(revokes));
    }
    Some(steps)
}

/// Whether revoking `r` keeps every wanted address on its ports allowed by `standing`.
fn harmless(r: &observed::IngressRule, target: &Allowed, standing: &[Rule]) -> bool {
    let Some(rule) = tcp_cover(r) else { return true };
    target.range(rule.from..=rule.to).all(|(port, nets)| {
        nets.iter().all(|net| {
            // CIDR blocks overlap only when one holds the other: the smaller must stay allowed.
            let needed = if rule.cidr.contains(net) {
                *net
            } else if net.contains(&rule.cidr) {
                rule.cidr
            } else {
                return true;
            };
            standing.iter().any(|s| s.covers(*port, &needed))
        })
    })
}

fn step_change(group: &str, scope: &str, step: Step, owner: &str) -> Change {
    match step {
        Step::Authorize(rules) => {
            let description = crate::codec::shared_rule_description(owner);
            let tags: Tags =
                [(OWNER_TAG.to_owned(), owner.to_owned()), ("Name".to_owned(), description.clone())].into();
            let labels: Vec<String> = rules.iter().map(Rule::label).collect();
            let op = Op::AuthorizeIngress {
                group_id: group.to_owned(),
                rules: rules.iter().map(Rule::range).collect(),
                description,
                tags,
            };
            Change::new(scope, Kind::IngressRule, &format!("{group} {}", labels.join(", ")), Action::Create, vec![op])
        }
        Step::Revoke(rules) => {
            let labels: Vec<String> = rules.iter().map(|r| format!("{} {}", r.rule_id, live_label(r))).collect();
            let op = Op::RevokeIngress {
                group_id: group.to_owned(),
                rule_ids: rules.iter().map(|r| r.rule_id.clone()).collect(),
            };
            Change::new(scope, Kind::IngressRule, &format!("{group} {}", labels.join(", ")), Action::Delete, vec![op])
        }
    }
}

/// A live rule as plans print it.
fn live_label(r: &observed::IngressRule) -> String {
    let ports =
        if r.from_port == r.to_port { r.from_port.to_string() } else { format!("{}-{}", r.from_port, r.to_port) };
    format!("{}/{ports} from {}", r.protocol, r.cidr)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn rule(cidr: &str, from: u16, to: u16) -> Rule {
        Rule { cidr: net(cidr), from, to }
    }

    /// An owned merged rule as EC2 reports it.
    fn live(id: &str, cidr: &str, from: i32, to: i32) -> observed::IngressRule {
        observed::IngressRule {
            rule_id: id.into(),
            protocol: "tcp".into(),
            from_port: from,
            to_port: to,
            cidr: cidr.into(),
            description: Some(crate::codec::shared_rule_description(OWNER)),
            tags: [(OWNER_TAG.to_owned(), OWNER.to_owned())].into(),
        }
    }

    /// `n` hand-made rules for port 22, each from its own network.
    fn hand_made(n: usize) -> Vec<observed::IngressRule> {
        let rule = |i| observed::IngressRule {
            tags: foreign_tags(),
            description: None,
            ..live(&format!("sgr-{i}"), &format!("10.9.{i}.0/24"), 22, 22)
        };
        (0..n).map(rule).collect()
    }

    fn claims_of(wants: &[(u16, &[&str])]) -> GroupClaims {
        let mut c = GroupClaims::default();
        for (port, nets) in wants {
            if nets.is_empty() {
                c.close(*port);
            } else {
                c.want("s", *port, nets.iter().map(|n| net(n)));
            }
        }
        c
    }

    fn names(changes: &[Change]) -> Vec<(Action, String)> {
        changes.iter().map(|c| (c.action, c.name.clone())).collect()
    }

    fn plan_of(rules: &[observed::IngressRule], claims: &GroupClaims, prune: bool) -> Result<GroupPlan, Problem> {
        plan_group(SG, rules, claims, &Options { prune, ..mk_options(false) }, false)
    }

    #[test]
    fn ports_collapse_into_ranges_and_exact_cidr_siblings_aggregate() {
        let mut allowed = Allowed::new();
        for port in [20000, 20001, 20002, 20005] {
            allowed.insert(port, [net("192.0.2.0/25"), net("192.0.2.128/25"), net("10.0.0.0/16")].into());
        }
        allowed.insert(20006, [net("10.0.1.0/24")].into());
        let rules: Vec<String> = merge(&allowed).iter().map(Rule::label).collect();
        assert_eq!(
            rules,
            [
                "tcp/20000-20002 from 10.0.0.0/16",
                "tcp/20005 from 10.0.0.0/16",
                "tcp/20006 from 10.0.1.0/24",
                "tcp/20000-20002 from 192.0.2.0/24",
                "tcp/20005 from 192.0.2.0/24",
            ]
        );
        assert_eq!(addresses(&allowed_by(merge(&allowed))), addresses(&allowed), "exactly the same access");
    }

    /// Per port, the addresses as the fewest blocks: equal exactly when the access is.
    fn addresses(allowed: &Allowed) -> BTreeMap<u16, Vec<IpNet>> {
        allowed.iter().map(|(p, nets)| (*p, IpNet::aggregate(&nets.iter().copied().collect()))).collect()
    }

    #[test]
    fn twenty_services_with_the_same_networks_need_one_rule_per_network() {
        let nets = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "10.0.1.0/24", "10.0.2.0/24"];
        let wants: Vec<(u16, &[&str])> = (0..20).map(|i| (20000 + i, &nets[..])).collect();
        let plan = plan_of(&[], &claims_of(&wants), false).unwrap();
        assert_eq!(
            names(&plan.changes),
            [(
                Action::Create,
                format!(
                    "{SG} tcp/20000-20019 from 10.0.1.0/24, tcp/20000-20019 from 10.0.2.0/24, \
                     tcp/20000-20019 from 192.0.2.0/24, tcp/20000-20019 from 198.51.100.0/24, \
                     tcp/20000-20019 from 203.0.113.0/24"
                )
            )],
            "one batch: the group has room for all"
        );
        let Op::AuthorizeIngress { rules, tags, description, .. } = &plan.changes[0].ops[0] else { panic!() };
        assert_eq!(rules.len(), 5);
        assert_eq!(description, &crate::codec::shared_rule_description(OWNER));
        assert_eq!(tags.get(crate::names::SERVICE_TAG), None, "owned by the installation, not one service");
        assert_eq!(plan.changes[0].service, group_scope(SG));
    }

    #[test]
    fn rules_in_place_change_nothing_and_unclaimed_ports_are_orphans_kept_until_prune() {
        let rules = [live("sgr-1", "192.0.2.0/24", 20000, 20002)];
        let claims = claims_of(&[(20000, &["192.0.2.0/24"]), (20001, &["192.0.2.0/24"])]);
        let plan = plan_of(&rules, &claims, false).unwrap();
        assert!(plan.changes.is_empty(), "{:?}", names(&plan.changes));
        assert_eq!(names(&plan.orphans), [(Action::Delete, format!("{SG} tcp/20002 from 192.0.2.0/24"))]);
        assert!(plan.orphans[0].ops.is_empty());
        let pruned = plan_of(&rules, &claims, true).unwrap();
        assert_eq!(
            names(&pruned.changes),
            [
                (Action::Create, format!("{SG} tcp/20000-20001 from 192.0.2.0/24")),
                (Action::Delete, format!("{SG} sgr-1 tcp/20000-20002 from 192.0.2.0/24")),
            ],
            "the narrower rule goes in before the wider one goes"
        );
    }

    #[test]
    fn closing_a_port_in_the_middle_splits_the_range_and_never_opens_another_port() {
        let rules = [live("sgr-1", "192.0.2.0/24", 20000, 20002), live("sgr-2", "10.0.1.0/24", 20000, 20002)];
        let plan = plan_of(&rules, &claims_of(&[(20001, &[])]), false).unwrap();
        assert_eq!(
            names(&plan.changes),
            [
                (
                    Action::Create,
                    format!(
                        "{SG} tcp/20000 from 10.0.1.0/24, tcp/20002 from 10.0.1.0/24, \
                         tcp/20000 from 192.0.2.0/24, tcp/20002 from 192.0.2.0/24"
                    )
                ),
                (
                    Action::Delete,
                    format!("{SG} sgr-1 tcp/20000-20002 from 192.0.2.0/24, sgr-2 tcp/20000-20002 from 10.0.1.0/24")
                ),
            ]
        );
        let Op::RevokeIngress { rule_ids, .. } = &plan.changes[1].ops[0] else { panic!() };
        assert_eq!(rule_ids, &["sgr-1", "sgr-2"]);
    }

    #[test]
    fn a_pure_narrowing_revokes_at_once() {
        let rules = [live("sgr-1", "192.0.2.0/24", 20000, 20000), live("sgr-2", "198.51.100.0/24", 20000, 20000)];
        let plan = plan_of(&rules, &claims_of(&[(20000, &["192.0.2.0/24"])]), false).unwrap();
        assert_eq!(names(&plan.changes), [(Action::Delete, format!("{SG} sgr-2 tcp/20000 from 198.51.100.0/24"))]);
    }

    #[test]
    fn hand_made_rules_are_never_touched_and_an_identical_one_is_a_conflict() {
        let mut theirs = live("sgr-9", "192.0.2.0/24", 20000, 20000);
        (theirs.description, theirs.tags) = (Some("hand-made".into()), foreign_tags());
        let mut other_owner = live("sgr-8", "10.0.0.0/8", 22, 22);
        other_owner.tags = [(OWNER_TAG.to_owned(), "another".to_owned())].into();
        let claims = claims_of(&[(20000, &["192.0.2.0/24", "198.51.100.0/24"])]);
        let plan = plan_of(&[theirs, other_owner], &claims, true).unwrap();
        assert_eq!(
            names(&plan.changes),
            [
                (Action::Conflict, format!("{SG} tcp/20000 from 192.0.2.0/24")),
                (Action::Create, format!("{SG} tcp/20000 from 198.51.100.0/24")),
            ]
        );
        assert!(plan.changes[0].ops.is_empty());
    }

    #[test]
    fn rules_of_releases_with_one_rule_per_service_are_replaced_by_merged_ones() {
        let old = [
            mk_live_rule("a", "sgr-1", 20000, "192.0.2.0/24"),
            mk_live_rule("b", "sgr-2", 20001, "192.0.2.0/24"),
            mk_live_rule("c", "sgr-3", 20003, "192.0.2.0/24"),
        ];
        let claims = claims_of(&[(20000, &["192.0.2.0/24"]), (20001, &["192.0.2.0/24"]), (20003, &["192.0.2.0/24"])]);
        let plan = plan_of(&old, &claims, false).unwrap();
        assert_eq!(
            names(&plan.changes),
            [
                (Action::Create, format!("{SG} tcp/20000-20001 from 192.0.2.0/24")),
                (Action::Delete, format!("{SG} sgr-1 tcp/20000 from 192.0.2.0/24, sgr-2 tcp/20001 from 192.0.2.0/24")),
            ],
            "sgr-3 already says exactly a wanted rule and stays"
        );
    }

    #[test]
    fn over_the_quota_after_the_pass_is_a_problem_and_nothing_is_planned() {
        let foreign: Vec<observed::IngressRule> = hand_made(SG_INBOUND_QUOTA - 2);
        let two = claims_of(&[(20000, &["192.0.2.0/24", "198.51.100.0/24"])]);
        assert_eq!(plan_of(&foreign, &two, false).unwrap().changes.len(), 1, "58 + 2 rules fit");
        let three = claims_of(&[(20000, &["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"])]);
        let problem = plan_of(&foreign, &three, false).unwrap_err();
        assert_eq!(problem.service, group_scope(SG));
        assert!(problem.message.contains("would hold 61 inbound rules, over the quota of 60"), "{}", problem.message);
    }

    #[test]
    fn over_the_quota_only_services_whose_access_is_not_in_place_are_blocked() {
        let mut rules = hand_made(SG_INBOUND_QUOTA - 1);
        rules.push(live("sgr-a", "192.0.2.0/24", 20000, 20000));
        let mut claims = GroupClaims::default();
        claims.want("in-place", 20000, [net("192.0.2.0/24")]);
        claims.want("new", 20001, [net("203.0.113.0/24")]);
        let mut o = Observed::default();
        o.security_groups.insert(SG.into(), Some(rules));
        let mut plan = super::super::Plan::default();
        super::super::plan_groups(&mut plan, [(SG.to_owned(), claims)].into(), &o, &mk_options(false), false);
        assert!(plan.changes.is_empty(), "no rule written");
        let blocked: Vec<&str> = plan.problems.iter().map(|p| p.service.as_str()).collect();
        assert_eq!(blocked, ["new"], "the service already reachable still applies its own changes");
    }

    #[test]
    fn a_full_group_is_rearranged_one_slot_at_a_time_without_cutting_access() {
        // 59 hand-made rules and one old per-service rule: merging needs the last slot twice.
        let mut rules: Vec<observed::IngressRule> = hand_made(SG_INBOUND_QUOTA - 2);
        rules.push(mk_live_rule("a", "sgr-a", 20000, "192.0.2.0/24"));
        rules.push(mk_live_rule("b", "sgr-b", 20001, "198.51.100.0/24"));
        let claims =
            claims_of(&[(20000, &["192.0.2.0/24", "198.51.100.0/24"]), (20001, &["192.0.2.0/24", "198.51.100.0/24"])]);
        let err = plan_of(&rules, &claims, false).unwrap_err();
        assert!(err.message.contains("too full to change its rules without cutting access"), "{}", err.message);
        rules.remove(0);
        let plan = plan_of(&rules, &claims, false).unwrap();
        assert_eq!(
            names(&plan.changes),
            [
                (Action::Create, format!("{SG} tcp/20000-20001 from 192.0.2.0/24")),
                (Action::Delete, format!("{SG} sgr-a tcp/20000 from 192.0.2.0/24")),
                (Action::Create, format!("{SG} tcp/20000-20001 from 198.51.100.0/24")),
                (Action::Delete, format!("{SG} sgr-b tcp/20001 from 198.51.100.0/24")),
            ]
        );
    }

    #[test]
    fn claims_come_from_every_service_a_moved_port_closes_and_ports_outside_the_pass_are_known() {
        let a = mk_desired("a");
        let mut b = mk_desired("b");
        b.target_group.port = 30021;
        b.ingress.iter_mut().for_each(|r| r.port = 30021);
        let mut o = mk_world();
        // b was last applied on 30019; c, not in this pass, has its target group on 30022.
        let mut b_live = mk_live_ecs_service(&b, &mk_live_task_definition(&b));
        b_live.tags.insert(crate::names::RENDERING_TAG.into(), "h rev=4 port=30019".into());
        o.ecs_services.push(b_live);
        let mut c_tg = mk_live_target_group(&mk_desired("c"));
        c_tg.port = Some(30022);
        o.target_groups.push(c_tg);
        let claims = claims(&[a, b], &o, OWNER);
        let g = &claims[SG];
        assert_eq!(g.services.keys().collect::<Vec<_>>(), ["a", "b"]);
        let ports: Vec<(u16, Vec<String>)> =
            g.ports.iter().map(|(p, n)| (*p, n.iter().map(ToString::to_string).collect())).collect();
        assert_eq!(
            ports,
            [
                (30019, vec![]),
                (30020, vec!["10.0.1.0/24".to_owned(), "192.0.2.0/24".to_owned()]),
                (30021, vec!["10.0.1.0/24".to_owned(), "192.0.2.0/24".to_owned()]),
            ]
        );
        assert_eq!(g.outside, BTreeSet::from([30022]), "c's port: known, never touched by this pass");
        let closing = closing(&[mk_desired("a")], &o, OWNER);
        assert_eq!(closing[SG].ports, Allowed::from([(30020, BTreeSet::new())]));
    }

    #[test]
    fn a_port_a_service_outside_the_pass_uses_is_only_ever_widened() {
        // A and B (another cluster, not in this pass) share 20000 on the group.
        let rules = [live("sgr-1", "192.0.2.0/24", 20000, 20000), live("sgr-2", "198.51.100.0/24", 20000, 20000)];
        let mut claims = claims_of(&[(20000, &["192.0.2.0/24", "203.0.113.0/24"])]);
        claims.outside.insert(20000);
        let plan = plan_of(&rules, &claims, false).unwrap();
        assert_eq!(names(&plan.changes), [(Action::Create, format!("{SG} tcp/20000 from 203.0.113.0/24"))]);
        let mut closing = claims_of(&[(20000, &[])]);
        closing.outside.insert(20000);
        assert!(plan_of(&rules, &closing, false).unwrap().changes.is_empty(), "deleting A leaves B's port open");
    }

    #[test]
    fn ports_nothing_accounts_for_close_when_the_pass_holds_every_service() {
        // Our rule widened by hand from 20000 to 19990-20000; 20005 is a known outside port.
        let rules = [live("sgr-1", "192.0.2.0/24", 19990, 20000), live("sgr-2", "192.0.2.0/24", 20005, 20005)];
        let mut claims = claims_of(&[(20000, &["192.0.2.0/24"])]);
        claims.outside.insert(20005);
        let kept = plan_of(&rules, &claims, false).unwrap();
        assert!(kept.changes.is_empty(), "a command given some manifests keeps them");
        assert_eq!(kept.orphans.len(), 2, "and reports them: {:?}", names(&kept.orphans));
        let every = plan_group(SG, &rules, &claims, &mk_options(false), true).unwrap();
        assert_eq!(
            names(&every.changes),
            [
                (Action::Create, format!("{SG} tcp/20000 from 192.0.2.0/24")),
                (Action::Delete, format!("{SG} sgr-1 tcp/19990-20000 from 192.0.2.0/24")),
            ]
        );
        assert_eq!(names(&every.orphans), [(Action::Delete, format!("{SG} tcp/20005 from 192.0.2.0/24"))]);
    }

    #[test]
    fn an_all_traffic_rule_counts_as_access_and_goes_only_once_replaced() {
        let mut all = live("sgr-1", "192.0.2.0/24", -1, -1);
        all.protocol = "-1".into();
        let wants = Allowed::from([(20000, BTreeSet::from([net("192.0.2.0/25")]))]);
        assert!(allows(std::slice::from_ref(&all), &wants));
        assert!(!allows(&[live("sgr-2", "192.0.2.0/24", 1, 2)], &wants));
        let plan = plan_of(&[all], &claims_of(&[(20000, &["192.0.2.0/24"])]), false).unwrap();
        assert_eq!(
            names(&plan.changes),
            [
                (Action::Create, format!("{SG} tcp/20000 from 192.0.2.0/24")),
                (Action::Delete, format!("{SG} sgr-1 -1/-1 from 192.0.2.0/24")),
            ]
        );
    }

    #[test]
    fn a_rule_owned_only_by_its_description_counts_as_ours() {
        let mut r = live("sgr-1", "192.0.2.0/24", 1, 1);
        r.tags.clear();
        assert!(owned(&r, OWNER));
        r.description = Some(crate::codec::rule_description(OWNER, "x"));
        assert!(owned(&r, OWNER));
        r.tags.insert(OWNER_TAG.into(), "another".into());
        assert!(!owned(&r, OWNER), "the owner tag decides");
        assert!(Rule::of(&observed::IngressRule { protocol: "-1".into(), ..r.clone() }).is_none());
        assert_eq!(rule("192.0.2.0/24", 1, 2).label(), "tcp/1-2 from 192.0.2.0/24");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        const POOL: [&str; 7] = [
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.0.0.0/23",
            "192.0.2.0/25",
            "192.0.2.128/25",
            "192.0.2.0/24",
            "10.0.1.128/25",
        ];
        /// Every pool CIDR is a union of these /25s, so sets of them compare access exactly.
        const UNITS: [&str; 6] =
            ["10.0.0.0/25", "10.0.0.128/25", "10.0.1.0/25", "10.0.1.128/25", "192.0.2.0/25", "192.0.2.128/25"];

        type Access = BTreeSet<(u16, usize)>;

        fn access(rules: &[observed::IngressRule]) -> Access {
            let mut out = Access::new();
            for r in rules.iter().filter_map(Rule::of) {
                for port in r.from..=r.to {
                    for (i, u) in UNITS.iter().enumerate() {
                        if r.cidr.contains(&net(u)) {
                            out.insert((port, i));
                        }
                    }
                }
            }
            out
        }

        fn rules_strategy(owned: bool) -> impl Strategy<Value = Vec<observed::IngressRule>> {
            prop::collection::vec((0..POOL.len(), 1u16..10, 0u16..3), 0..6).prop_map(move |specs| {
                specs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (c, from, len))| {
                        let id = format!("sgr-{}{i}", if owned { "o" } else { "f" });
                        let mut r = live(&id, POOL[c], i32::from(from), i32::from(from + len));
                        if !owned {
                            (r.description, r.tags) = (None, foreign_tags());
                        }
                        r
                    })
                    .collect()
            })
        }

        fn claims_strategy() -> impl Strategy<Value = Vec<(u16, Vec<usize>)>> {
            prop::collection::vec((1u16..12, prop::collection::vec(0..POOL.len(), 0..3)), 0..5)
        }

        proptest! {
            /// Applied step by step, a group's plan never takes away access that stays wanted,
            /// never allows what neither the start nor the end allows, and ends with exactly the
            /// wanted access (owned rules, plus identical hand-made ones left as conflicts).
            #[test]
            fn a_group_plan_never_cuts_wanted_access_and_ends_exact(
                owned in rules_strategy(true),
                foreign in rules_strategy(false),
                wants in claims_strategy(),
                prune in any::<bool>(),
            ) {
                let mut claims = GroupClaims::default();
                for (port, nets) in &wants {
                    if nets.is_empty() { claims.close(*port) } else { claims.want("s", *port, nets.iter().map(|i| net(POOL[*i]))) }
                }
                let mut rules: Vec<observed::IngressRule> = owned.iter().chain(&foreign).cloned().collect();
                let plan = plan_of(&rules, &claims, prune).unwrap();
                // What the pass should end with, worked out from the claims directly.
                let start_owned = access(&owned);
                let mut wanted: Access = start_owned
                    .iter()
                    .filter(|(p, _)| !claims.ports.contains_key(p) && !prune)
                    .copied()
                    .collect();
                for (port, nets) in &claims.ports {
                    let rules: Vec<_> = nets.iter().map(|n| live("x", &n.to_string(), i32::from(*port), i32::from(*port))).collect();
                    wanted.extend(access(&rules));
                }
                let start = access(&rules);
                let kept_throughout: Access = start.intersection(&wanted).copied().collect();
                let mut next_id = 0;
                for change in &plan.changes {
                    for op in &change.ops {
                        match op {
                            Op::AuthorizeIngress { rules: added, .. } => {
                                for r in added {
                                    next_id += 1;
                                    rules.push(live(&format!("new-{next_id}"), &r.cidr, i32::from(r.from_port), i32::from(r.to_port)));
                                }
                            }
                            Op::RevokeIngress { rule_ids, .. } => rules.retain(|r| !rule_ids.contains(&r.rule_id)),
                            other => prop_assert!(false, "unexpected op {other:?}"),
                        }
                        let now = access(&rules);
                        prop_assert!(kept_throughout.is_subset(&now), "wanted access cut after {}", change.name);
                        prop_assert!(now.is_subset(&start.union(&wanted).copied().collect()), "wider than both ends after {}", change.name);
                    }
                }
                let end_owned: Vec<observed::IngressRule> = rules.iter().filter(|r| owned_rule(r)).cloned().collect();
                prop_assert!(access(&end_owned).is_subset(&wanted), "owned rules allow more than wanted");
                prop_assert!(wanted.is_subset(&access(&rules)), "wanted access missing at the end");
            }
        }

        fn owned_rule(r: &observed::IngressRule) -> bool {
            owned(r, OWNER)
        }
    }
}
