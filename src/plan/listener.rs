//! The NLB listener forwarding to the service's target group. Its port is the manifest's: an
//! owned listener at another port is moved, a duplicate left by an interrupted run deleted.

use serde::Serialize;

use super::delete::{Deletable, owned_service};
use super::diff::diff;
use super::service::Ctx;
use super::{Action, Change, Kind, Op};
use crate::observed::{self, LoadBalancer, name_from_arn};
use crate::render;

/// The fields compared.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Fields<'a> {
    port: Option<i32>,
    protocol: Option<&'a str>,
    target_group: Option<&'a str>,
    idle_timeout_seconds: Option<u32>,
}

impl<'a> Fields<'a> {
    fn wanted(l: &'a render::Listener, target_group: &'a str) -> Self {
        Fields {
            port: Some(i32::from(l.port)),
            protocol: Some(&l.protocol),
            target_group: Some(target_group),
            idle_timeout_seconds: Some(l.idle_timeout_seconds),
        }
    }

    fn live(l: &'a observed::Listener) -> Self {
        Fields {
            port: l.port,
            protocol: l.protocol.as_deref(),
            target_group: l.forward_target_group_arns.first().map(|a| name_from_arn(a)),
            idle_timeout_seconds: l.idle_timeout_seconds,
        }
    }
}

/// `NLB:port`, as plans show listeners.
fn label(l: &observed::Listener) -> String {
    format!("{}:{}", name_from_arn(&l.load_balancer_arn), l.port.map_or("?".into(), |p| p.to_string()))
}

/// The listener at our port forwards to another target group that a running ECS service serves:
/// moving it to ours would send the traffic where no task is registered (a migration that did not
/// name the existing target group, or a target group renamed under a running service). A
/// conflict saying which names to set.
pub(super) fn endpoint_held(ctx: &Ctx, lb: &LoadBalancer) -> Option<Change> {
    let port = i32::from(ctx.d.listener.port);
    let at_port = ctx.o.listeners.iter().find(|l| l.load_balancer_arn == lb.arn && l.port == Some(port))?;
    let current = at_port.forward_target_group_arns.first()?;
    let ours = ctx.o.target_groups.iter().find(|t| t.name == ctx.d.target_group.name);
    if ours.is_some_and(|t| &t.arn == current) {
        return None;
    }
    let serving = ctx
        .o
        .ecs_services
        .iter()
        .find(|s| s.status != "INACTIVE" && s.load_balancers.iter().any(|b| &b.arn == current))?;
    let tg = ctx.o.target_groups.iter().find(|t| &t.arn == current).map_or_else(|| name_from_arn(current), |t| &t.name);
    let label = label(at_port);
    let reason = format!(
        "listener `{label}` forwards to target group `{tg}`, which ECS service `{}` serves: moving it would send \
         the traffic where no task is registered. Set `spec.names.targetGroup: {tg}` (and `spec.names.ecsService: \
         {}` to take that service over with --adopt)",
        serving.name, serving.name
    );
    Some(ctx.change(Kind::Listener, &label, Action::Conflict, vec![]).because(reason))
}

pub(super) fn plan(ctx: &Ctx, lb: &LoadBalancer) -> Vec<Change> {
    let want = &ctx.d.listener;
    let label = format!("{}:{}", name_from_arn(&lb.arn), want.port);
    let on_lb: Vec<&observed::Listener> = ctx.o.listeners.iter().filter(|l| l.load_balancer_arn == lb.arn).collect();
    let mine = |l: &&observed::Listener| ctx.owns(&l.tags);
    let owned: Vec<&observed::Listener> = on_lb.iter().copied().filter(mine).collect();
    let at_port = on_lb.iter().copied().find(|l| l.port == Some(i32::from(want.port)));
    // Our listener: the owned one at the port, else any owned one (its port changed).
    let current = at_port.filter(mine).or_else(|| owned.first().copied());
    if let Some(other) = at_port
        && current.map(|c| &c.arn) != Some(&other.arn)
    {
        // The port is taken by someone else: adopt it or report.
        let ops = match ctx.claim(Kind::Listener, &label, &other.arn, &other.tags) {
            Ok(ops) => ops,
            Err(conflict) => return vec![*conflict],
        };
        let mut changes = modify(ctx, &label, other, ops);
        changes.extend(deletes(ctx, owned));
        return changes;
    }
    let Some(live) = current else {
        let op = Op::CreateListener {
            load_balancer_arn: lb.arn.clone(),
            listener: want.clone(),
            target_group: ctx.d.target_group.name.clone(),
            tags: ctx.d.tags.clone(),
        };
        return vec![ctx.change(Kind::Listener, &label, Action::Create, vec![op])];
    };
    let mut changes = modify(ctx, &label, live, vec![]);
    // Duplicates left by an interrupted run: keep one.
    changes.extend(deletes(ctx, owned.into_iter().filter(|l| l.arn != live.arn)));
    changes
}

fn modify(ctx: &Ctx, label: &str, live: &observed::Listener, ops: Vec<Op>) -> Vec<Change> {
    let (want, tg) = (&ctx.d.listener, &ctx.d.target_group.name);
    let diff = diff(&Fields::wanted(want, tg), &Fields::live(live));
    let op = Op::ModifyListener { arn: live.arn.clone(), listener: want.clone(), target_group: tg.clone() };
    ctx.update(Kind::Listener, label, ops, diff, op)
}

fn deletes<'l>(ctx: &Ctx, listeners: impl IntoIterator<Item = &'l observed::Listener>) -> Vec<Change> {
    let delete = |l: &observed::Listener| {
        let (name, op) = l.delete();
        ctx.change(Kind::Listener, &name, Action::Delete, vec![op])
    };
    listeners.into_iter().map(delete).collect()
}

impl Deletable for observed::Listener {
    const KIND: Kind = Kind::Listener;

    fn service(&self, owner: &str) -> Option<String> {
        owned_service(&self.tags, owner)
    }

    fn delete(&self) -> (String, Op) {
        (label(self), Op::DeleteListener { arn: self.arn.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::observed::Observed;
    use crate::render::Desired;

    fn plan_against(d: &Desired, live: Vec<observed::Listener>, adopt: bool) -> Vec<Change> {
        let mut o = mk_world();
        o.listeners = live;
        plan(&ctx(d, &o, &mk_options(adopt)), &mk_lb())
    }

    #[test]
    fn a_listener_forwarding_to_a_group_another_running_service_serves_is_held() {
        let d = mk_desired(SERVICE);
        let mut o = mk_world();
        let theirs_tg = observed::TargetGroup { name: "research-tg".into(), ..mk_live_target_group(&d) };
        let theirs_tg = observed::TargetGroup { arn: mk_tg_arn("research-tg"), tags: foreign_tags(), ..theirs_tg };
        let mut listener = mk_live_listener(&d, "arn:listener/1", d.listener.port);
        (listener.forward_target_group_arns, listener.tags) = (vec![theirs_tg.arn.clone()], foreign_tags());
        o.target_groups.push(theirs_tg.clone());
        o.listeners.push(listener);
        let held = |o: &Observed| endpoint_held(&ctx(&d, o, &mk_options(true)), &mk_lb());
        assert!(held(&o).is_none(), "no service behind it: the listener may move");
        let mut service = mk_live_ecs_service(&d, &mk_live_task_definition(&d));
        service.name = "research-sftp".into();
        service.load_balancers[0].arn = theirs_tg.arn.clone();
        o.ecs_services.push(service);
        let c = held(&o).expect("held");
        assert_eq!(c.action, Action::Conflict);
        let reason = c.reason.unwrap();
        assert!(reason.contains("spec.names.targetGroup: research-tg"), "{reason}");
        assert!(reason.contains("spec.names.ecsService: research-sftp"), "{reason}");
        o.target_groups.push(mk_live_target_group(&d));
        o.listeners[0].forward_target_group_arns = vec![mk_tg_arn(&d.target_group.name)];
        assert!(held(&o).is_none(), "already ours");
    }

    #[test]
    fn a_missing_listener_is_created_forwarding_to_the_target_group() {
        let d = mk_desired(SERVICE);
        let c = plan_against(&d, vec![], false);
        assert_eq!(summary(&c), [(Kind::Listener, Action::Create, "sftp:2220".into())]);
        assert!(
            matches!(&c[0].ops[..], [Op::CreateListener { target_group, .. }] if *target_group == d.target_group.name)
        );
    }

    #[test]
    fn an_owned_listener_in_sync_is_left_alone_and_other_nlbs_are_ignored() {
        let d = mk_desired(SERVICE);
        let mut elsewhere = mk_live_listener(&d, "arn:listener/9", 2220);
        elsewhere.load_balancer_arn = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/other/1".into();
        assert!(plan_against(&d, vec![mk_live_listener(&d, "arn:listener/1", 2220), elsewhere], false).is_empty());
    }

    #[test]
    fn drift_is_modified_in_place() {
        let d = mk_desired(SERVICE);
        let mut live = mk_live_listener(&d, "arn:listener/1", 2220);
        live.idle_timeout_seconds = Some(60);
        let c = plan_against(&d, vec![live], false);
        assert_eq!(summary(&c), [(Kind::Listener, Action::Update, "sftp:2220".into())]);
        assert_eq!(c[0].diff[0].path, "idleTimeoutSeconds");
        assert!(matches!(&c[0].ops[..], [Op::ModifyListener { arn, .. }] if arn == "arn:listener/1"));
    }

    #[test]
    fn an_owned_listener_at_another_port_is_moved() {
        let d = mk_desired(SERVICE);
        let c = plan_against(&d, vec![mk_live_listener(&d, "arn:listener/1", 2221)], false);
        assert_eq!(summary(&c), [(Kind::Listener, Action::Update, "sftp:2220".into())]);
        assert_eq!(c[0].diff[0].path, "port");
    }

    #[test]
    fn a_duplicate_owned_listener_is_deleted() {
        let d = mk_desired(SERVICE);
        let live = vec![mk_live_listener(&d, "arn:listener/1", 2220), mk_live_listener(&d, "arn:listener/2", 2221)];
        let c = plan_against(&d, live, false);
        assert_eq!(summary(&c), [(Kind::Listener, Action::Delete, "sftp:2221".into())]);
        assert_eq!(c[0].ops, [Op::DeleteListener { arn: "arn:listener/2".into() }]);
    }

    #[test]
    fn an_unowned_listener_at_the_port_is_a_conflict_and_adopting_replaces_ours() {
        let d = mk_desired(SERVICE);
        let mut theirs = mk_live_listener(&d, "arn:listener/9", 2220);
        theirs.tags = foreign_tags();
        let ours = mk_live_listener(&d, "arn:listener/1", 2221);
        let c = plan_against(&d, vec![theirs.clone(), ours.clone()], false);
        assert_eq!(summary(&c), [(Kind::Listener, Action::Conflict, "sftp:2220".into())]);
        let c = plan_against(&d, vec![theirs, ours], true);
        assert_eq!(
            summary(&c),
            [
                (Kind::Listener, Action::Update, "sftp:2220".into()),
                (Kind::Listener, Action::Delete, "sftp:2221".into())
            ]
        );
        assert!(matches!(&c[0].ops[..], [Op::TagResource { arn, .. }] if arn == "arn:listener/9"));
    }

    #[test]
    fn an_owned_listener_is_deleted_by_arn() {
        let d = mk_desired(SERVICE);
        let live = mk_live_listener(&d, "arn:listener/1", 2220);
        assert_eq!(live.service(OWNER).as_deref(), Some(SERVICE));
        assert_eq!(live.delete(), ("sftp:2220".into(), Op::DeleteListener { arn: "arn:listener/1".into() }));
    }
}
