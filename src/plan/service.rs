//! One service's plan: the preconditions (what the operator uses but never creates), then each
//! kind in dependency order. Planning a service ends either blocked by its preconditions or
//! planned kind by kind, each kind with its changes or the problem that stopped it.

use super::{Action, Change, FieldDiff, Kind, Op, Options, Problem};
use super::{cloud_map, dns_record, ecs_service, listener, secret, target_group, task_definition};
use crate::observed::{self, LoadBalancer, Namespace, Observed, Ownership, Tags};
use crate::render::Desired;

/// What planning one service reads: its rendering, the observed world and the options.
pub(super) struct Ctx<'a> {
    pub d: &'a Desired,
    pub o: &'a Observed,
    pub opts: &'a Options,
}

/// One kind's outcome: its changes, or the problem that stopped it (and then no changes).
pub(super) type Step = Result<Vec<Change>, Problem>;

/// One service's plan.
#[derive(Debug)]
pub(super) enum ServicePlan {
    /// A precondition failed (NLB, cluster, security group, namespace): nothing was planned.
    Blocked(Vec<Problem>),
    /// Each kind in dependency order. A kind that hit a problem (a draining ECS service, the
    /// ingress quota, an unresolvable zone) plans nothing; the other kinds still show theirs,
    /// though apply leaves a service with any problem alone.
    Planned(Vec<Step>),
}

impl ServicePlan {
    pub(super) fn into_parts(self) -> (Vec<Change>, Vec<Problem>) {
        match self {
            ServicePlan::Blocked(problems) => (vec![], problems),
            ServicePlan::Planned(steps) => {
                let (mut changes, mut problems) = (Vec::new(), Vec::new());
                for step in steps {
                    match step {
                        Ok(c) => changes.extend(c),
                        Err(p) => problems.push(p),
                    }
                }
                (changes, problems)
            }
        }
    }
}

impl Ctx<'_> {
    pub(super) fn change(&self, kind: Kind, name: &str, action: Action, ops: Vec<Op>) -> Change {
        Change::new(&self.d.service, kind, name, action, ops)
    }

    pub(super) fn problem(&self, message: String) -> Problem {
        Problem { service: self.d.service.clone(), message }
    }

    /// Whether tags say the resource is this service's.
    pub(super) fn owns(&self, tags: &Tags) -> bool {
        observed::ownership(tags, &self.opts.owner) == (Ownership::Owned { service: self.d.service.clone() })
    }

    /// Ownership check shared by every kind: `Ok(extra ops)` when we may manage the resource
    /// (tagging first when adopting), `Err(the conflict)` when we may not.
    pub(super) fn claim(&self, kind: Kind, name: &str, arn: &str, tags: &Tags) -> Result<Vec<Op>, Box<Change>> {
        let other = match observed::ownership(tags, &self.opts.owner) {
            Ownership::Owned { service } if service == self.d.service => return Ok(vec![]),
            other => other,
        };
        if self.opts.adopt && other == Ownership::Foreign {
            return Ok(vec![Op::TagResource {
                kind,
                arn: arn.to_owned(),
                tags: self.d.tags.clone(),
                description: crate::codec::rule_description(&self.opts.owner, &self.d.service),
            }]);
        }
        let (whose, hint) = match &other {
            Ownership::Owned { service } => (format!("owned by service `{service}`"), ""),
            Ownership::OtherOwner { owner } => (format!("owned by another installation (owner id `{owner}`)"), ""),
            Ownership::Foreign => ("not owned by this operator".to_owned(), " (use --adopt to take it over)"),
        };
        let reason = format!("{} `{name}` exists but is {whose}; it is left untouched{hint}", kind.as_str());
        Err(Box::new(self.change(kind, name, Action::Conflict, vec![]).because(reason)))
    }

    /// An update to a resource we may manage: the `claim` ops, then `op` when `diff` is not
    /// empty; nothing when both are empty.
    pub(super) fn update(&self, kind: Kind, name: &str, mut ops: Vec<Op>, diff: Vec<FieldDiff>, op: Op) -> Vec<Change> {
        if !diff.is_empty() {
            ops.push(op);
        }
        if ops.is_empty() {
            return vec![];
        }
        vec![self.change(kind, name, Action::Update, ops).with_diff(diff)]
    }
}

/// What the preconditions found.
struct Found<'a> {
    lb: &'a LoadBalancer,
    namespace: Option<&'a Namespace>,
}

/// Things the operator uses but never creates: every missing one is a problem.
fn preconditions<'a>(ctx: &Ctx<'a>) -> Result<Found<'a>, Vec<Problem>> {
    let (d, o) = (ctx.d, ctx.o);
    let mut problems = Vec::new();
    let lb = match o.load_balancers.get(&d.load_balancer_arn) {
        Some(Some(lb)) => Some(lb),
        _ => {
            problems.push(ctx.problem(format!("load balancer {} not found", d.load_balancer_arn)));
            None
        }
    };
    if let Some(lb) = lb
        && lb.kind != "network"
    {
        problems.push(ctx.problem(format!(
            "load balancer {} is of type `{}`; a network load balancer is required",
            lb.arn, lb.kind
        )));
    }
    if o.clusters.get(&d.ecs_service.cluster) != Some(&true) {
        problems.push(ctx.problem(format!("ECS cluster `{}` not found", d.ecs_service.cluster)));
    }
    let sg = &d.security_group_id;
    if !matches!(o.security_groups.get(sg), Some(Some(_))) {
        problems.push(ctx.problem(format!("security group {sg} not found")));
    }
    let namespace = d.cloud_map.as_ref().and_then(|cm| match o.namespaces.get(&cm.namespace) {
        Some(Some(ns)) => Some(ns),
        _ => {
            problems.push(ctx.problem(format!("Cloud Map namespace `{}` not found", cm.namespace)));
            None
        }
    });
    match lb {
        Some(lb) if problems.is_empty() => Ok(Found { lb, namespace }),
        _ => Err(problems),
    }
}

/// Whether a step changes what the rendering tag vouches for (the ECS service's own fields are
/// read on every pass, so they do not count).
fn changes_vouched(steps: &[Step]) -> bool {
    let vouched = [Kind::TaskDefinition, Kind::TargetGroup, Kind::Listener, Kind::CloudMapService];
    steps.iter().flatten().flatten().any(|c| vouched.contains(&c.kind) && c.action != Action::Conflict)
}

fn in_conflict(steps: &[Step], kind: Kind) -> bool {
    steps.iter().flatten().flatten().any(|c| c.kind == kind && c.action == Action::Conflict)
}

/// Plans one service, kind by kind in dependency order. Its security-group rules are planned
/// per group, from every service on it (see [`super::ingress`]).
pub(super) fn plan(ctx: &Ctx) -> ServicePlan {
    let Found { lb, namespace } = match preconditions(ctx) {
        Ok(found) => found,
        Err(problems) => return ServicePlan::Blocked(problems),
    };
    let td = task_definition::plan(ctx);
    let new_revision = task_definition::registers(&td);
    let mut steps = vec![Ok(secret::plan(ctx)), Ok(td), Ok(target_group::plan(ctx, &lb.vpc_id))];
    // What points at a resource we may not manage waits until the conflict is resolved:
    // never route traffic to, or run tasks from, something that is not ours.
    let tg_ok = !in_conflict(&steps, Kind::TargetGroup);
    let held = listener::endpoint_held(ctx, lb);
    let endpoint_ok = held.is_none();
    if let Some(conflict) = held {
        steps.push(Ok(vec![conflict]));
    } else if tg_ok {
        steps.push(Ok(listener::plan(ctx, lb)));
    }
    if let Some(ns) = namespace {
        steps.push(Ok(cloud_map::plan(ctx, ns)));
    }
    let runs = tg_ok
        && endpoint_ok
        && !in_conflict(&steps, Kind::TaskDefinition)
        && !in_conflict(&steps, Kind::CloudMapService);
    let vouch = runs && steps.iter().all(|s| s.as_ref().is_ok_and(|c| c.iter().all(|c| c.action != Action::Conflict)));
    let withdrawal = (!vouch || changes_vouched(&steps)).then(|| ecs_service::withdrawal(ctx)).flatten();
    let withdrawn = withdrawal.is_some();
    if let Some(w) = withdrawal {
        steps.insert(0, Ok(vec![w]));
    }
    if runs {
        steps.push(ecs_service::plan(ctx, new_revision, vouch, withdrawn));
    }
    steps.extend(dns_record::plan(ctx, lb));
    ServicePlan::Planned(steps)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn planned(d: &Desired, o: &Observed) -> ServicePlan {
        plan(&ctx(d, o, &mk_options(false)))
    }

    #[test]
    fn an_empty_world_creates_everything_in_dependency_order() {
        let mut d = mk_desired(SERVICE);
        d.host_key_secret = Some(d.names.host_key_secret.clone());
        d.cloud_map = Some(mk_cloud_map(SERVICE));
        let (c, problems) = plan_one(&d, &mk_world(), false);
        assert!(problems.is_empty());
        let kinds: Vec<Kind> = c.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::HostKeySecret,
                Kind::TaskDefinition,
                Kind::TargetGroup,
                Kind::Listener,
                Kind::CloudMapService,
                Kind::EcsService,
                Kind::IngressRule,
            ]
        );
        assert!(c.iter().all(|c| c.action == Action::Create));
        assert!(c[..6].iter().all(|c| c.service == SERVICE), "the rules are the group's");
    }

    #[test]
    fn a_world_in_sync_plans_nothing() {
        let mut d = mk_desired(SERVICE);
        d.host_key_secret = Some(d.names.host_key_secret.clone());
        d.cloud_map = Some(mk_cloud_map(SERVICE));
        assert_eq!(plan_one(&d, &mk_in_sync(&d), false), (vec![], vec![]));
    }

    #[test]
    fn missing_preconditions_block_the_service_with_every_problem() {
        let mut d = mk_desired(SERVICE);
        d.cloud_map = Some(mk_cloud_map(SERVICE));
        let ServicePlan::Blocked(problems) = planned(&d, &Observed::default()) else { panic!("blocked expected") };
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                format!("load balancer {LB_ARN} not found").as_str(),
                "ECS cluster `sftp` not found",
                format!("security group {SG} not found").as_str(),
                "Cloud Map namespace `sftp.internal` not found",
            ]
        );
    }

    #[test]
    fn an_application_load_balancer_blocks_the_service() {
        let d = mk_desired(SERVICE);
        let mut o = mk_world();
        o.load_balancers.insert(LB_ARN.into(), Some(observed::LoadBalancer { kind: "application".into(), ..mk_lb() }));
        let ServicePlan::Blocked(problems) = planned(&d, &o) else { panic!("blocked expected") };
        assert!(problems[0].message.contains("network load balancer is required"), "{problems:?}");
    }

    #[test]
    fn a_target_group_conflict_holds_back_the_listener_and_the_service() {
        let d = mk_desired(SERVICE);
        let mut o = mk_world();
        let mut theirs = mk_live_target_group(&d);
        theirs.tags = foreign_tags();
        o.target_groups.push(theirs);
        let (c, _) = plan_one(&d, &o, false);
        let kinds: Vec<(Kind, Action)> = c.iter().map(|c| (c.kind, c.action)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::TaskDefinition, Action::Create),
                (Kind::TargetGroup, Action::Conflict),
                (Kind::IngressRule, Action::Create),
            ]
        );
    }

    #[test]
    fn a_task_definition_conflict_holds_back_the_service() {
        let d = mk_desired(SERVICE);
        let mut o = mk_in_sync(&d);
        o.task_definitions.values_mut().for_each(|td| td.tags = foreign_tags());
        o.ecs_services.clear();
        let (c, _) = plan_one(&d, &o, false);
        assert_eq!(summary(&c), [(Kind::TaskDefinition, Action::Conflict, d.names.task_family.clone())]);
    }

    #[test]
    fn a_problem_in_one_kind_keeps_the_other_kinds_changes() {
        let d = mk_desired(SERVICE);
        let mut o = mk_in_sync(&d);
        o.ecs_services[0].status = "DRAINING".into();
        o.target_groups[0].healthy_threshold = Some(5);
        let ServicePlan::Planned(steps) = planned(&d, &o) else { panic!("planned expected") };
        assert_eq!(steps.iter().filter(|s| s.is_err()).count(), 1);
        let (c, problems) = ServicePlan::Planned(steps).into_parts();
        assert_eq!(summary(&c), [(Kind::TargetGroup, Action::Update, d.target_group.name.clone())]);
        assert!(problems[0].message.contains("draining"));
    }

    #[test]
    fn claiming_tells_whose_the_resource_is() {
        let d = mk_desired(SERVICE);
        let o = mk_world();
        let opts = mk_options(false);
        let cx = ctx(&d, &o, &opts);
        assert_eq!(cx.claim(Kind::TargetGroup, "tg", "arn", &mk_tags(SERVICE)), Ok(vec![]));
        let conflict = cx.claim(Kind::TargetGroup, "tg", "arn", &mk_tags("other")).unwrap_err();
        assert_eq!(
            conflict.reason.as_deref(),
            Some("target group `tg` exists but is owned by service `other`; it is left untouched")
        );
        let conflict = cx.claim(Kind::Listener, "l", "arn", &foreign_tags()).unwrap_err();
        assert_eq!(
            conflict.reason.as_deref(),
            Some(
                "listener `l` exists but is not owned by this operator; it is left untouched (use --adopt to take it over)"
            )
        );
        let adopting = mk_options(true);
        let ops = ctx(&d, &o, &adopting).claim(Kind::Listener, "l", "arn", &foreign_tags()).unwrap();
        let description = crate::codec::rule_description(OWNER, SERVICE);
        assert_eq!(
            ops,
            [Op::TagResource { kind: Kind::Listener, arn: "arn".into(), tags: d.tags.clone(), description }]
        );
    }
}
