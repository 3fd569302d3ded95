//! The ECS service: runs the latest task-definition revision behind the target group, and
//! registers in Cloud Map when asked. One still draining from a delete is a problem.

use serde::Serialize;
use serde_json::json;

use super::delete::{Deletable, owned_service};
use super::diff::diff;
use super::service::{Ctx, Step};
use super::{Action, Change, FieldDiff, Kind, Op, RenderingWant};
use crate::codec::{Rendering, parse_rendering_tag};
use crate::names::RENDERING_TAG;
use crate::observed::{self, Ownership, name_from_arn};

/// The fields compared.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    task_definition: Option<String>,
    desired_count: Option<i64>,
    load_balancers: Vec<Binding>,
    service_registries: Option<Vec<Binding>>,
    minimum_healthy_percent: Option<i64>,
    maximum_percent: Option<i64>,
    circuit_breaker_rollback: Option<bool>,
    distinct_instance: Option<bool>,
    health_check_grace_period_seconds: Option<i64>,
}

/// A link to a target group or a Cloud Map registry, by name.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Binding {
    name: String,
    container_name: Option<String>,
    container_port: Option<i32>,
}

/// How the service rolls, and why. A task holds its static host port on its instance, so a new
/// task can start first only on an instance that is free: agent connected, the port not
/// reserved (by any task, ours draining included), CPU and memory left for the task. With
/// `free` such instances for `n` tasks: start first, `maximumPercent` 100 + what `free` holds
/// (ECS must not try to place more new tasks than fit); none free: stop first, keeping `n - 1`
/// tasks up where there are several. `None` when the instances were not read (no rollout).
fn rollout_mode(ctx: &Ctx) -> Option<((u32, u32), String)> {
    let want = &ctx.d.ecs_service;
    let instances = ctx.o.container_instances.get(&want.cluster)?;
    let container = ctx.d.task_definition.container_definitions.first();
    let (cpu, memory) = container.map_or((0, 0), |c| (c.cpu, c.memory));
    let port = ctx.d.target_group.port;
    let free = instances.iter().filter(|i| i.fits(port, cpu, memory)).count() as u32;
    let n = want.desired_count.max(1);
    Some(if free > 0 {
        let max = 100 + (100 * free.min(n)) / n;
        (
            (100, max),
            format!(
                "rolls with the new task started first (minimum 100%, maximum {max}%): {free} container \
                 instance(s) free of port {port} with room for the task, for {n} task(s); clients keep a server \
                 throughout"
            ),
        )
    } else {
        let min = 100 * (n - 1) / n;
        (
            (min, 100),
            format!(
                "rolls by stopping a running task first (minimum {min}%): none of the cluster's {} container \
                 instance(s) is free of port {port} with room for the task; {}",
                instances.len(),
                if n > 1 { "the other tasks keep serving" } else { "SFTP is down until the new task runs" }
            ),
        )
    })
}

impl Fields {
    fn wanted(ctx: &Ctx, new_revision: bool) -> Fields {
        let (d, want) = (ctx.d, &ctx.d.ecs_service);
        let family = &d.names.task_family;
        let task_definition = match (new_revision, ctx.o.task_definitions.get(family)) {
            (false, Some(td)) => format!("{}:{}", td.family, td.revision),
            _ => format!("{family}:(new revision)"),
        };
        let binding = |name: &str| Binding {
            name: name.to_owned(),
            container_name: Some(want.container_name.clone()),
            container_port: Some(i32::from(want.container_port)),
        };
        Fields {
            task_definition: Some(task_definition),
            desired_count: Some(want.desired_count.into()),
            load_balancers: vec![binding(&d.target_group.name)],
            service_registries: d.cloud_map.as_ref().map(|c| vec![binding(&c.name)]),
            minimum_healthy_percent: Some(want.minimum_healthy_percent.into()),
            maximum_percent: Some(want.maximum_percent.into()),
            circuit_breaker_rollback: Some(want.circuit_breaker_rollback),
            distinct_instance: Some(want.distinct_instance),
            health_check_grace_period_seconds: Some(want.health_check_grace_period_seconds.into()),
        }
    }

    /// The deployment percentages: the mode of this rollout, or (no rollout) either mode, as
    /// the last rollout left it.
    fn with_mode(mut self, mode: Option<(u32, u32)>) -> Fields {
        if let Some((min, max)) = mode {
            (self.minimum_healthy_percent, self.maximum_percent) = (Some(min.into()), Some(max.into()));
        }
        self
    }

    /// Whatever mode the last rollout left is in sync when nothing rolls: a minimum of 0–100%
    /// with a maximum of 100–200% (anything else is drift).
    fn accept_either_mode(&mut self, live: &Fields) {
        let (Some(min), Some(max)) = (live.minimum_healthy_percent, live.maximum_percent) else { return };
        let start_first = min == 100 && (100..=200).contains(&max);
        let stop_first = max == 100 && (0..100).contains(&min);
        if start_first || stop_first {
            (self.minimum_healthy_percent, self.maximum_percent) = (Some(min), Some(max));
        }
    }

    fn live(ctx: &Ctx, live: &observed::EcsService) -> Fields {
        // Registries are ARNs by id: name them through the observed Cloud Map services.
        let registry_name = |arn: &str| -> String {
            let registry = ctx.o.cloud_map_services.iter().find(|s| s.arn == arn);
            registry.map_or_else(|| name_from_arn(arn).to_owned(), |s| s.name.clone())
        };
        let binding = |b: &observed::ServiceBinding| Binding {
            name: registry_name(&b.arn),
            container_name: b.container_name.clone(),
            container_port: b.container_port,
        };
        let registries = !(live.service_registries.is_empty() && ctx.d.cloud_map.is_none());
        Fields {
            task_definition: live.task_definition.as_deref().map(|a| name_from_arn(a).to_owned()),
            desired_count: live.desired_count.map(i64::from),
            load_balancers: live.load_balancers.iter().map(binding).collect(),
            service_registries: registries.then(|| live.service_registries.iter().map(binding).collect()),
            minimum_healthy_percent: live.minimum_healthy_percent.map(i64::from),
            maximum_percent: live.maximum_percent.map(i64::from),
            circuit_breaker_rollback: live.circuit_breaker_rollback,
            distinct_instance: live.distinct_instance,
            health_check_grace_period_seconds: live.health_check_grace_period_seconds.map(i64::from),
        }
    }
}

/// The service's ECS service, unless it is gone.
fn live<'o>(ctx: &Ctx<'o>) -> Option<&'o observed::EcsService> {
    let want = &ctx.d.ecs_service;
    ctx.o.ecs_services.iter().find(|s| s.cluster == want.cluster && s.name == want.name && s.status != "INACTIVE")
}

/// The rendering this service's ECS service says was applied in full, if any.
fn carried(live: &observed::EcsService) -> Option<Rendering> {
    live.tags.get(RENDERING_TAG).and_then(|v| parse_rendering_tag(v))
}

/// Takes the rendering tag off our ECS service: before changes to what it vouches for (a
/// failure half-way must not leave a vouch for what is no longer true), and when the service
/// cannot be vouched for any more (a conflict).
pub(super) fn withdrawal(ctx: &Ctx) -> Option<Change> {
    let live = live(ctx).filter(|s| s.status == "ACTIVE" && ctx.owns(&s.tags) && carried(s).is_some())?;
    let op = Op::TagEcsService { arn: live.arn.clone(), family: ctx.d.names.task_family.clone(), rendering: None };
    let change = ctx.change(Kind::EcsService, &live.name, Action::Update, vec![op]);
    Some(change.because("the rendering tag goes until what it vouches for is applied again"))
}

/// `new_revision`: the task-definition changes register a revision, so the service rolls.
/// `vouch`: nothing before the service conflicts, so once its changes are applied the service
/// may carry the rendering (created with it, or tagged after its other changes); `withdrawn`:
/// an earlier step of this service takes the tag off, so it must be written again.
pub(super) fn plan(ctx: &Ctx, new_revision: bool, vouch: bool, withdrawn: bool) -> Step {
    let d = ctx.d;
    let want = &d.ecs_service;
    let (family, tg) = (d.names.task_family.clone(), d.target_group.name.clone());
    let rendering = vouch.then(|| RenderingWant { hash: d.rendering_hash.clone(), port: d.target_group.port });
    let Some(live) = live(ctx) else {
        if let Some(conflict) = already_served(ctx) {
            return Ok(vec![conflict]);
        }
        let op =
            Op::CreateEcsService { service: want.clone(), family, target_group: tg, tags: d.tags.clone(), rendering };
        return Ok(vec![ctx.change(Kind::EcsService, &want.name, Action::Create, vec![op])]);
    };
    if live.status == "DRAINING" {
        return Err(ctx.problem(format!(
            "ECS service `{}` is still draining from a delete; converge again once it is gone",
            want.name
        )));
    }
    let ops = match ctx.claim(Kind::EcsService, &want.name, &live.arn, &live.tags) {
        Ok(ops) => ops,
        Err(conflict) => return Ok(vec![*conflict]),
    };
    let live_fields = Fields::live(ctx, live);
    let wanted = Fields::wanted(ctx, new_revision);
    // A new revision, or the service running another one (rolled back, or a pass cut short
    // before its update), or new load-balancer, registry or placement settings: ECS deploys.
    let rolls = diff(&wanted, &live_fields).iter().any(|f| {
        ["taskDefinition", "loadBalancers", "serviceRegistries", "distinctInstance"]
            .iter()
            .any(|p| f.path.starts_with(p))
    });
    let mode = rolls.then(|| rollout_mode(ctx)).flatten();
    let mut wanted = wanted.with_mode(mode.as_ref().map(|(m, _)| *m));
    if mode.is_none() {
        wanted.accept_either_mode(&live_fields);
    }
    let diff = diff(&wanted, &live_fields);
    let mut service = want.clone();
    if let (Some(min), Some(max)) = (wanted.minimum_healthy_percent, wanted.maximum_percent) {
        (service.minimum_healthy_percent, service.maximum_percent) = (min as u32, max as u32);
    }
    let op = Op::UpdateEcsService { service, family: family.clone(), target_group: tg, rolls };
    let mut changes = ctx.update(Kind::EcsService, &want.name, ops, diff, op);
    if let (Some((_, why)), Some(c)) = (mode, changes.first_mut()) {
        c.reason = Some(match c.reason.take() {
            Some(r) => format!("{r}; {why}"),
            None => why,
        });
    }
    let runs = live.task_definition.as_deref().and_then(observed::family_revision).map(|(_, r)| r);
    let current = carried(live).is_some_and(|c| {
        !new_revision && Some(c.revision) == runs && c.hash == d.rendering_hash && c.port == d.target_group.port
    });
    if let Some(rendering) = rendering.filter(|_| withdrawn || !current) {
        // Last, after everything it stands for: a failure before it leaves no vouch for it.
        let from = live.tags.get(RENDERING_TAG);
        let tag_diff = FieldDiff {
            path: format!("tags.{RENDERING_TAG}"),
            from: json!(from),
            to: json!(format!("{} rev=(the revision it runs) port={}", rendering.hash, rendering.port)),
        };
        let op = Op::TagEcsService { arn: live.arn.clone(), family, rendering: Some(rendering) };
        match changes.first_mut() {
            Some(c) => {
                c.ops.push(op);
                c.diff.push(tag_diff);
            }
            None => changes
                .push(ctx.change(Kind::EcsService, &want.name, Action::Update, vec![op]).with_diff(vec![tag_diff])),
        }
    }
    Ok(changes)
}

/// Another ECS service already behind the target group: a second one would compete with it for
/// the host port on every instance. A conflict naming it and the field that adopts it in place.
/// (Observe lists every service in the cluster when a pass would create one.)
fn already_served(ctx: &Ctx) -> Option<Change> {
    let d = ctx.d;
    let port = d.target_group.port;
    let tg = ctx.o.target_groups.iter().find(|t| t.name == d.target_group.name).map(|t| t.arn.as_str());
    let on_port = |s: &observed::EcsService| {
        s.task_definition.as_deref().and_then(|a| ctx.o.host_ports.get(a)).is_some_and(|ports| ports.contains(&port))
    };
    let (other, what) = ctx.o.ecs_services.iter().filter(|s| s.status != "INACTIVE").find_map(|s| {
        if tg.is_some_and(|tg| s.load_balancers.iter().any(|b| b.arn == tg)) {
            Some((s, format!("serves target group `{}`", d.target_group.name)))
        } else if s.cluster == d.ecs_service.cluster && on_port(s) {
            Some((s, format!("runs on host port {port}")))
        } else {
            None
        }
    })?;
    let remedy = match observed::ownership(&other.tags, &ctx.opts.owner) {
        // One of ours, left by a rename or a moved manifest: it goes with `delete` or `--prune`.
        Ownership::Owned { service } => format!(
            "it is SftpService `{service}`'s: delete it (`sftp-operator delete` with its manifest, or `converge \
             --prune`) first"
        ),
        _ => format!(
            "set `spec.names.ecsService: {}` (and the names of its task family and target group) and converge \
             with --adopt to take it over in place",
            other.name
        ),
    };
    let reason = format!(
        "ECS service `{}` (cluster `{}`) already {what}; a second service would compete with it for host port \
         {port}: {remedy}",
        other.name, other.cluster
    );
    Some(ctx.change(Kind::EcsService, &d.ecs_service.name, Action::Conflict, vec![]).because(reason))
}

impl Deletable for observed::EcsService {
    const KIND: Kind = Kind::EcsService;

    /// An INACTIVE service is already gone.
    fn service(&self, owner: &str) -> Option<String> {
        if self.status == "INACTIVE" { None } else { owned_service(&self.tags, owner) }
    }

    fn delete(&self) -> (String, Op) {
        (self.name.clone(), Op::DeleteEcsService { cluster: self.cluster.clone(), name: self.name.clone() })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::*;
    use super::super::{Change, Problem};
    use super::*;
    use crate::observed::Observed;
    use crate::render::Desired;

    /// `d`'s world with its task-definition revision and, when given, the live service.
    fn mk_world_with(d: &Desired, live: Option<observed::EcsService>) -> Observed {
        let mut o = mk_world();
        let td = mk_live_task_definition(d);
        o.task_definitions.insert(td.family.clone(), td);
        if d.cloud_map.is_some() {
            o.cloud_map_services.push(mk_live_cloud_map(d));
        }
        o.ecs_services.extend(live);
        o
    }

    fn plan_against(d: &Desired, live: Option<observed::EcsService>, new_revision: bool, adopt: bool) -> Step {
        let o = mk_world_with(d, live);
        plan(&ctx(d, &o, &mk_options(adopt)), new_revision, true, false)
    }

    fn live(d: &Desired) -> observed::EcsService {
        mk_live_ecs_service(d, &mk_live_task_definition(d))
    }

    fn changes(step: Step) -> Vec<Change> {
        step.expect("no problem")
    }

    #[test]
    fn a_missing_service_is_created_on_its_cluster() {
        let d = mk_desired(SERVICE);
        let c = changes(plan_against(&d, None, true, false));
        assert_eq!(summary(&c), [(Kind::EcsService, Action::Create, "campus".into())]);
        assert!(matches!(&c[0].ops[..], [Op::CreateEcsService { family, target_group, .. }]
            if *family == d.names.task_family && *target_group == d.target_group.name));
    }

    #[test]
    fn an_inactive_service_counts_as_missing() {
        let d = mk_desired(SERVICE);
        let mut gone = live(&d);
        gone.status = "INACTIVE".into();
        assert_eq!(changes(plan_against(&d, Some(gone), false, false))[0].action, Action::Create);
    }

    #[test]
    fn an_owned_service_in_sync_is_left_alone_with_or_without_cloud_map() {
        let mut d = mk_desired(SERVICE);
        assert!(changes(plan_against(&d, Some(live(&d)), false, false)).is_empty());
        d.cloud_map = Some(mk_cloud_map(SERVICE));
        assert!(changes(plan_against(&d, Some(live(&d)), false, false)).is_empty());
    }

    /// The rollout's percentages and reason with (instances, of which free) container instances;
    /// the busy ones hold the service's port.
    fn rollout_with(instances: Option<(usize, usize)>, live_mode: (i32, i32), new_revision: bool) -> Vec<Change> {
        let d = mk_desired(SERVICE);
        let mut l = live(&d);
        (l.minimum_healthy_percent, l.maximum_percent) = (Some(live_mode.0), Some(live_mode.1));
        let mut o = mk_world_with(&d, Some(l));
        if let Some((n, free)) = instances {
            let instance = |i: usize| observed::ContainerInstance {
                agent_connected: true,
                remaining_cpu: 2048,
                remaining_memory: 4096,
                reserved_ports: if i < free { vec![22] } else { vec![22, d.target_group.port] },
            };
            o.container_instances.insert(d.ecs_service.cluster.clone(), (0..n).map(instance).collect());
        }
        changes(plan(&ctx(&d, &o, &mk_options(false)), new_revision, true, false))
    }

    fn percentages(c: &[Change]) -> (u32, u32) {
        match &c[0].ops[0] {
            Op::UpdateEcsService { service, rolls: true, .. } => {
                (service.minimum_healthy_percent, service.maximum_percent)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_free_container_instance_lets_the_new_task_start_first_and_plan_says_so() {
        let c = rollout_with(Some((2, 1)), (0, 100), true);
        assert_eq!(percentages(&c), (100, 200));
        let why = c[0].reason.clone().unwrap();
        assert!(why.starts_with("rolls with the new task started first (minimum 100%, maximum 200%): 1 container instance(s) free of port 30020"), "{why}");

        // Two instances, both holding the port (ours draining, or another service's): stop first.
        let c = rollout_with(Some((2, 0)), (100, 200), true);
        assert_eq!(percentages(&c), (0, 100));
        assert!(c[0].reason.clone().unwrap().contains("SFTP is down until the new task runs"), "{:?}", c[0].reason);

        // A service running another revision (rolled back) rolls too: the mode is chosen again.
        let d = mk_desired(SERVICE);
        let mut l = live(&d);
        l.task_definition = l.task_definition.map(|a| a.replace(":4", ":3"));
        let mut o = mk_world_with(&d, Some(l));
        let free = observed::ContainerInstance {
            agent_connected: true,
            remaining_cpu: 2048,
            remaining_memory: 4096,
            ..Default::default()
        };
        o.container_instances.insert(d.ecs_service.cluster.clone(), vec![free]);
        let c = changes(plan(&ctx(&d, &o, &mk_options(false)), false, true, false));
        assert_eq!(percentages(&c), (100, 200));

        // No rollout: whichever mode the last one left is in sync.
        assert!(rollout_with(None, (100, 200), false).is_empty());
        assert!(rollout_with(None, (0, 100), false).is_empty());
        let c = rollout_with(None, (50, 150), false);
        let paths: Vec<&str> = c[0].diff.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["maximumPercent", "minimumHealthyPercent"], "anything else is drift");
    }

    #[test]
    fn a_new_revision_rolls_the_service() {
        let d = mk_desired(SERVICE);
        let c = changes(plan_against(&d, Some(live(&d)), true, false));
        assert_eq!(summary(&c), [(Kind::EcsService, Action::Update, "campus".into())]);
        assert_eq!(c[0].diff.len(), 2, "the revision, then the rendering tag");
        assert_eq!(c[0].diff[0].path, "taskDefinition");
        assert_eq!(
            (&c[0].diff[0].from, &c[0].diff[0].to),
            (&json!("sftp-campus:4"), &json!("sftp-campus:(new revision)"))
        );
        assert!(matches!(&c[0].ops[..], [Op::UpdateEcsService { .. }, Op::TagEcsService { .. }]));
    }

    #[test]
    fn drift_is_restored_field_by_field_and_unreported_fields_are_unknown() {
        let d = mk_desired(SERVICE);
        let mut drifted = live(&d);
        drifted.desired_count = Some(3);
        drifted.circuit_breaker_rollback = Some(false);
        drifted.maximum_percent = None;
        drifted.load_balancers[0].container_port = Some(2222);
        let c = changes(plan_against(&d, Some(drifted), false, false));
        let paths: Vec<&str> = c[0].diff.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["circuitBreakerRollback", "desiredCount", "loadBalancers[0].containerPort"]);
    }

    #[test]
    fn a_registry_added_or_dropped_is_drift() {
        let mut d = mk_desired(SERVICE);
        let unregistered = live(&d);
        d.cloud_map = Some(mk_cloud_map(SERVICE));
        let c = changes(plan_against(&d, Some(unregistered), false, false));
        assert_eq!(c[0].diff[0].path, "serviceRegistries");
        assert_eq!(c[0].diff[0].to, json!([{"name": "campus", "containerName": "sftp", "containerPort": 22}]));
        let registered = live(&d);
        d.cloud_map = None;
        let c = changes(plan_against(&d, Some(registered), false, false));
        assert_eq!((c[0].diff[0].path.as_str(), &c[0].diff[0].to), ("serviceRegistries", &json!(null)));
    }

    #[test]
    fn a_draining_service_is_a_problem() {
        let d = mk_desired(SERVICE);
        let mut draining = live(&d);
        draining.status = "DRAINING".into();
        let Err(Problem { service, message }) = plan_against(&d, Some(draining), true, false) else {
            panic!("a problem expected")
        };
        assert_eq!(service, SERVICE);
        assert!(message.contains("still draining"), "{message}");
    }

    #[test]
    fn an_unowned_service_is_a_conflict_and_adopting_tags_it() {
        let d = mk_desired(SERVICE);
        let mut theirs = live(&d);
        theirs.tags = foreign_tags();
        let c = changes(plan_against(&d, Some(theirs.clone()), false, false));
        assert_eq!(summary(&c), [(Kind::EcsService, Action::Conflict, "campus".into())]);
        let c = changes(plan_against(&d, Some(theirs), false, true));
        assert!(
            matches!(&c[0].ops[..], [Op::TagResource { kind: Kind::EcsService, .. }, Op::TagEcsService { .. }]),
            "adopted, then it carries the rendering: {:?}",
            c[0].ops
        );
    }

    #[test]
    fn a_service_carries_the_rendering_only_when_its_plan_vouches_for_it() {
        let d = mk_desired(SERVICE);
        let o = mk_world();
        let want = RenderingWant { hash: d.rendering_hash.clone(), port: d.target_group.port };
        let Ok(c) = plan(&ctx(&d, &o, &mk_options(false)), false, true, false) else { panic!() };
        let Op::CreateEcsService { rendering, .. } = &c[0].ops[0] else { panic!("{:?}", c[0].ops) };
        assert_eq!(rendering.as_ref(), Some(&want), "created with it");
        let Ok(c) = plan(&ctx(&d, &o, &mk_options(false)), false, false, false) else { panic!() };
        let Op::CreateEcsService { rendering, .. } = &c[0].ops[0] else { panic!("{:?}", c[0].ops) };
        assert_eq!(rendering.as_ref(), None, "a conflict before it: not vouched");

        let family = d.names.task_family.clone();
        let tag = |older: &observed::EcsService| Op::TagEcsService {
            arn: older.arn.clone(),
            family: family.clone(),
            rendering: Some(want.clone()),
        };
        let mut older = live(&d);
        older.tags.insert(RENDERING_TAG.into(), "older rev=4 port=30020".into());
        let c = changes(plan_against(&d, Some(older.clone()), false, false));
        assert_eq!(c[0].ops, [tag(&older)]);
        assert_eq!(c[0].diff[0].path, format!("tags.{RENDERING_TAG}"));
        older.desired_count = Some(3);
        let c = changes(plan_against(&d, Some(older.clone()), false, false));
        assert!(matches!(&c[0].ops[..], [Op::UpdateEcsService { .. }, Op::TagEcsService { .. }]), "tagged last");
        assert!(changes(plan_against(&d, Some(live(&d)), false, false)).is_empty(), "in sync, rendering and all");
        let c = changes(plan_against(&d, Some(live(&d)), true, false));
        assert_eq!(c[0].ops.last(), Some(&tag(&live(&d))), "a new revision: tagged again with it");
        let mut moved = live(&d);
        moved.task_definition = Some(format!("arn:aws:ecs:us-east-1:1:task-definition/{family}:3"));
        let c = changes(plan_against(&d, Some(moved.clone()), false, false));
        assert_eq!(c[0].ops.last(), Some(&tag(&moved)), "rolled back to :3: rolled forward and tagged again");
        let o = mk_world_with(&d, Some(live(&d)));
        let Ok(c) = plan(&ctx(&d, &o, &mk_options(false)), false, true, true) else { panic!() };
        assert_eq!(c[0].ops, [tag(&live(&d))], "withdrawn earlier in the pass: written again");
    }

    #[test]
    fn another_service_behind_the_target_group_or_on_the_host_port_is_a_conflict_never_a_second_service() {
        let d = mk_desired(SERVICE);
        let mut o = mk_world();
        o.target_groups.push(mk_live_target_group(&d));
        let mut theirs = live(&d);
        (theirs.name, theirs.tags) = ("sftp-research".into(), foreign_tags());
        o.ecs_services.push(theirs.clone());
        let c = changes(plan(&ctx(&d, &o, &mk_options(true)), false, true, false));
        assert_eq!(summary(&c), [(Kind::EcsService, Action::Conflict, SERVICE.into())], "even with --adopt");
        let reason = c[0].reason.as_deref().unwrap();
        assert!(reason.contains("`sftp-research` (cluster `sftp`) already serves target group"), "{reason}");
        assert!(reason.contains("spec.names.ecsService: sftp-research"), "{reason}");

        // Behind another target group, but its task definition maps our host port.
        theirs.load_balancers.clear();
        o.ecs_services = vec![theirs.clone()];
        assert_eq!(changes(plan(&ctx(&d, &o, &mk_options(false)), false, true, false))[0].action, Action::Create);
        o.host_ports.insert(theirs.task_definition.clone().unwrap(), vec![30020]);
        let c = changes(plan(&ctx(&d, &o, &mk_options(false)), false, true, false));
        assert!(c[0].reason.as_deref().unwrap().contains("already runs on host port 30020"), "{c:?}");
    }

    #[test]
    fn the_rendering_is_withdrawn_only_from_our_service_carrying_one() {
        let d = mk_desired(SERVICE);
        let o = mk_world_with(&d, Some(live(&d)));
        let w = withdrawal(&ctx(&d, &o, &mk_options(false))).expect("ours, carrying one");
        let family = d.names.task_family.clone();
        assert_eq!(w.ops, [Op::TagEcsService { arn: live(&d).arn, family, rendering: None }]);
        let mut theirs = live(&d);
        theirs.tags = foreign_tags();
        let o = mk_world_with(&d, Some(theirs));
        assert!(withdrawal(&ctx(&d, &o, &mk_options(false))).is_none());
        let mut withdrawn = live(&d);
        withdrawn.tags.insert(RENDERING_TAG.into(), crate::codec::RENDERING_WITHDRAWN.into());
        let o = mk_world_with(&d, Some(withdrawn));
        assert!(withdrawal(&ctx(&d, &o, &mk_options(false))).is_none());
    }

    #[test]
    fn another_installations_service_is_a_conflict_even_with_adopt() {
        let d = mk_desired(SERVICE);
        let mut theirs = live(&d);
        theirs.tags = std::collections::BTreeMap::from([
            (crate::names::OWNER_TAG.to_owned(), "other".to_owned()),
            (crate::names::SERVICE_TAG.to_owned(), SERVICE.to_owned()),
        ]);
        for adopt in [false, true] {
            let c = changes(plan_against(&d, Some(theirs.clone()), false, adopt));
            assert_eq!(summary(&c), [(Kind::EcsService, Action::Conflict, "campus".into())], "adopt {adopt}");
            assert!(c[0].ops.is_empty());
        }
    }

    #[test]
    fn an_owned_service_is_deleted_unless_already_inactive() {
        let d = mk_desired(SERVICE);
        let mut s = live(&d);
        assert_eq!(s.service(OWNER).as_deref(), Some(SERVICE));
        assert_eq!(
            s.delete(),
            ("campus".into(), Op::DeleteEcsService { cluster: CLUSTER.into(), name: "campus".into() })
        );
        s.status = "INACTIVE".into();
        assert_eq!(s.service(OWNER), None);
    }
}
