//! The target group: created in the NLB's VPC; health-check drift modified in place; a changed
//! protocol, target type or VPC is a conflict (those cannot change in place).

use serde::Serialize;

use super::delete::{Deletable, owned_service};
use super::diff::diff;
use super::service::Ctx;
use super::{Action, Change, Kind, Op};
use crate::observed;
use crate::render;

/// The fields that cannot change in place.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Fixed<'a> {
    protocol: Option<&'a str>,
    target_type: Option<&'a str>,
    vpc_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Health<'a> {
    health_check: HealthCheck<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthCheck<'a> {
    protocol: Option<&'a str>,
    port: Option<&'a str>,
    interval_seconds: Option<i32>,
    healthy_threshold: Option<i32>,
    unhealthy_threshold: Option<i32>,
}

impl<'a> Fixed<'a> {
    fn wanted(tg: &'a render::TargetGroup, vpc_id: &'a str) -> Self {
        Fixed { protocol: Some(&tg.protocol), target_type: Some(&tg.target_type), vpc_id: Some(vpc_id) }
    }

    fn live(tg: &'a observed::TargetGroup) -> Self {
        Fixed { protocol: tg.protocol.as_deref(), target_type: tg.target_type.as_deref(), vpc_id: tg.vpc_id.as_deref() }
    }
}

impl<'a> Health<'a> {
    fn wanted(tg: &'a render::TargetGroup) -> Self {
        let h = &tg.health_check;
        Health {
            health_check: HealthCheck {
                protocol: Some(&h.protocol),
                port: Some(&h.port),
                interval_seconds: Some(h.interval_seconds),
                healthy_threshold: Some(h.healthy_threshold),
                unhealthy_threshold: Some(h.unhealthy_threshold),
            },
        }
    }

    fn live(tg: &'a observed::TargetGroup) -> Self {
        Health {
            health_check: HealthCheck {
                protocol: tg.health_check_protocol.as_deref(),
                port: tg.health_check_port.as_deref(),
                interval_seconds: tg.health_check_interval_seconds,
                healthy_threshold: tg.healthy_threshold,
                unhealthy_threshold: tg.unhealthy_threshold,
            },
        }
    }
}

pub(super) fn plan(ctx: &Ctx, vpc_id: &str) -> Vec<Change> {
    let want = &ctx.d.target_group;
    let Some(live) = ctx.o.target_groups.iter().find(|t| t.name == want.name) else {
        let op = Op::CreateTargetGroup { tg: want.clone(), vpc_id: vpc_id.to_owned(), tags: ctx.d.tags.clone() };
        return vec![ctx.change(Kind::TargetGroup, &want.name, Action::Create, vec![op])];
    };
    let ops = match ctx.claim(Kind::TargetGroup, &want.name, &live.arn, &live.tags) {
        Ok(ops) => ops,
        Err(conflict) => return vec![*conflict],
    };
    let fixed = diff(&Fixed::wanted(want, vpc_id), &Fixed::live(live));
    if !fixed.is_empty() {
        let conflict = ctx.change(Kind::TargetGroup, &want.name, Action::Conflict, vec![]).with_diff(fixed);
        return vec![
            conflict.because(
                "these fields cannot change in place; delete the service (`sftp-operator delete`) and converge",
            ),
        ];
    }
    let health = diff(&Health::wanted(want), &Health::live(live));
    let modify = Op::ModifyTargetGroup { arn: live.arn.clone(), tg: want.clone() };
    ctx.update(Kind::TargetGroup, &want.name, ops, health, modify)
}

impl Deletable for observed::TargetGroup {
    const KIND: Kind = Kind::TargetGroup;

    fn service(&self, owner: &str) -> Option<String> {
        owned_service(&self.tags, owner)
    }

    fn delete(&self) -> (String, Op) {
        (self.name.clone(), Op::DeleteTargetGroup { arn: self.arn.clone() })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::*;
    use super::*;
    use crate::observed::Observed;
    use crate::render::Desired;

    fn plan_against(d: &Desired, live: Option<observed::TargetGroup>, adopt: bool) -> Vec<Change> {
        let mut o: Observed = mk_world();
        o.target_groups.extend(live);
        plan(&ctx(d, &o, &mk_options(adopt)), VPC)
    }

    #[test]
    fn a_missing_target_group_is_created_in_the_nlb_vpc() {
        let d = mk_desired(SERVICE);
        let c = plan_against(&d, None, false);
        assert_eq!(summary(&c), [(Kind::TargetGroup, Action::Create, "sftp-campus".into())]);
        assert!(matches!(&c[0].ops[..], [Op::CreateTargetGroup { vpc_id, .. }] if vpc_id == VPC));
    }

    #[test]
    fn an_owned_target_group_in_sync_is_left_alone() {
        let d = mk_desired(SERVICE);
        assert!(plan_against(&d, Some(mk_live_target_group(&d)), false).is_empty());
    }

    #[test]
    fn an_unreported_health_check_field_is_not_drift() {
        let d = mk_desired(SERVICE);
        let mut live = mk_live_target_group(&d);
        live.health_check_port = None;
        live.vpc_id = None;
        assert!(plan_against(&d, Some(live), false).is_empty());
    }

    #[test]
    fn health_check_drift_is_modified_in_place() {
        let d = mk_desired(SERVICE);
        let mut live = mk_live_target_group(&d);
        live.health_check_interval_seconds = Some(30);
        let c = plan_against(&d, Some(live.clone()), false);
        assert_eq!(summary(&c), [(Kind::TargetGroup, Action::Update, "sftp-campus".into())]);
        assert_eq!(c[0].diff.len(), 1);
        assert_eq!(c[0].diff[0].path, "healthCheck.intervalSeconds");
        assert_eq!((&c[0].diff[0].from, &c[0].diff[0].to), (&json!(30), &json!(10)));
        assert_eq!(c[0].ops, [Op::ModifyTargetGroup { arn: live.arn, tg: d.target_group.clone() }]);
    }

    #[test]
    fn an_immutable_field_changed_is_a_conflict() {
        let d = mk_desired(SERVICE);
        let mut live = mk_live_target_group(&d);
        live.vpc_id = Some("vpc-other".into());
        let c = plan_against(&d, Some(live), false);
        assert_eq!(c[0].action, Action::Conflict);
        assert_eq!(c[0].diff[0].path, "vpcId");
        assert!(c[0].ops.is_empty());
    }

    #[test]
    fn an_unowned_target_group_is_a_conflict_and_adopting_tags_it_first() {
        let d = mk_desired(SERVICE);
        let mut live = mk_live_target_group(&d);
        live.tags = foreign_tags();
        live.unhealthy_threshold = Some(2);
        let c = plan_against(&d, Some(live.clone()), false);
        assert_eq!(summary(&c), [(Kind::TargetGroup, Action::Conflict, "sftp-campus".into())]);
        let c = plan_against(&d, Some(live), true);
        assert_eq!(c[0].action, Action::Update);
        assert!(matches!(&c[0].ops[..], [Op::TagResource { .. }, Op::ModifyTargetGroup { .. }]), "{:?}", c[0].ops);
    }

    #[test]
    fn an_owned_target_group_is_deleted_by_arn() {
        let d = mk_desired(SERVICE);
        let live = mk_live_target_group(&d);
        assert_eq!(live.service(OWNER).as_deref(), Some(SERVICE));
        assert_eq!(live.service("another-owner"), None);
        assert_eq!(live.delete(), ("sftp-campus".into(), Op::DeleteTargetGroup { arn: live.arn.clone() }));
    }

    #[test]
    fn a_target_group_not_named_like_ours_and_without_tags_is_neither_ours_nor_in_the_way() {
        // Observe reads no tags for target groups not named like ours nor on an NLB in scope.
        let d = mk_desired(SERVICE);
        let other = observed::TargetGroup { name: "web".into(), tags: Default::default(), ..mk_live_target_group(&d) };
        assert_eq!(plan_against(&d, Some(other.clone()), false)[0].action, Action::Create);
        assert_eq!(other.service(OWNER), None);
    }
}
