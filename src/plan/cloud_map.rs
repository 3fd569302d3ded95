//! The Cloud Map service the ECS service registers its tasks in (when the manifest names a
//! namespace).

use serde::Serialize;

use super::delete::{Deletable, owned_service};
use super::diff::diff;
use super::service::Ctx;
use super::{Action, Change, Kind, Op};
use crate::observed::{self, Namespace};

/// The fields compared.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    srv_ttl: Option<i64>,
}

pub(super) fn plan(ctx: &Ctx, ns: &Namespace) -> Vec<Change> {
    let Some(want) = &ctx.d.cloud_map else {
        return vec![];
    };
    let label = format!("{}.{}", want.name, ns.name);
    let live = ctx.o.cloud_map_services.iter().find(|s| s.namespace_id == ns.id && s.name == want.name);
    let Some(live) = live else {
        let op =
            Op::CreateCloudMapService { namespace_id: ns.id.clone(), service: want.clone(), tags: ctx.d.tags.clone() };
        return vec![ctx.change(Kind::CloudMapService, &label, Action::Create, vec![op])];
    };
    // Whose it is: its description (Cloud Map has no batch tag read), else its tags.
    let ops = match ctx.claim(Kind::CloudMapService, &label, &live.arn, &live.ownership_tags()) {
        Ok(ops) => ops,
        Err(conflict) => return vec![*conflict],
    };
    let diff = diff(&Fields { srv_ttl: Some(want.srv_ttl) }, &Fields { srv_ttl: live.srv_ttl });
    let op = Op::UpdateCloudMapService { id: live.id.clone(), service: want.clone() };
    ctx.update(Kind::CloudMapService, &label, ops, diff, op)
}

impl Deletable for observed::CloudMapService {
    const KIND: Kind = Kind::CloudMapService;

    fn service(&self, owner: &str) -> Option<String> {
        owned_service(&self.ownership_tags(), owner)
    }

    fn delete(&self) -> (String, Op) {
        (self.name.clone(), Op::DeleteCloudMapService { id: self.id.clone() })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testkit::*;
    use super::*;
    use crate::render::Desired;

    fn mk_desired_in_cloud_map() -> Desired {
        let mut d = mk_desired(SERVICE);
        d.cloud_map = Some(mk_cloud_map(SERVICE));
        d
    }

    fn plan_against(d: &Desired, live: Option<observed::CloudMapService>, adopt: bool) -> Vec<Change> {
        let mut o = mk_world();
        o.cloud_map_services.extend(live);
        let ns = Namespace { id: NAMESPACE_ID.into(), name: NAMESPACE.into() };
        plan(&ctx(d, &o, &mk_options(adopt)), &ns)
    }

    #[test]
    fn a_missing_service_is_created_in_the_namespace() {
        let d = mk_desired_in_cloud_map();
        let c = plan_against(&d, None, false);
        assert_eq!(summary(&c), [(Kind::CloudMapService, Action::Create, "campus.sftp.internal".into())]);
        assert!(
            matches!(&c[0].ops[..], [Op::CreateCloudMapService { namespace_id, .. }] if namespace_id == NAMESPACE_ID)
        );
    }

    #[test]
    fn a_service_of_the_same_name_in_another_namespace_does_not_count() {
        let d = mk_desired_in_cloud_map();
        let mut elsewhere = mk_live_cloud_map(&d);
        elsewhere.namespace_id = "ns-other".into();
        assert_eq!(plan_against(&d, Some(elsewhere), false)[0].action, Action::Create);
    }

    #[test]
    fn an_owned_service_in_sync_is_left_alone() {
        let d = mk_desired_in_cloud_map();
        assert!(plan_against(&d, Some(mk_live_cloud_map(&d)), false).is_empty());
    }

    #[test]
    fn a_changed_ttl_is_updated() {
        let d = mk_desired_in_cloud_map();
        let mut live = mk_live_cloud_map(&d);
        live.srv_ttl = Some(60);
        let c = plan_against(&d, Some(live), false);
        assert_eq!(c[0].action, Action::Update);
        assert_eq!(
            (c[0].diff[0].path.as_str(), &c[0].diff[0].from, &c[0].diff[0].to),
            ("srvTtl", &json!(60), &json!(10))
        );
        assert!(matches!(&c[0].ops[..], [Op::UpdateCloudMapService { id, .. }] if id == "srv-1"));
    }

    #[test]
    fn an_unowned_service_is_a_conflict_and_adopting_tags_it() {
        let d = mk_desired_in_cloud_map();
        let mut live = mk_live_cloud_map(&d);
        live.tags = foreign_tags();
        assert_eq!(plan_against(&d, Some(live.clone()), false)[0].action, Action::Conflict);
        let c = plan_against(&d, Some(live), true);
        assert!(matches!(&c[0].ops[..], [Op::TagResource { kind: Kind::CloudMapService, .. }]));
    }

    #[test]
    fn an_owned_service_is_deleted_by_id() {
        let d = mk_desired_in_cloud_map();
        let live = mk_live_cloud_map(&d);
        assert_eq!(live.service(OWNER).as_deref(), Some(SERVICE));
        assert_eq!(live.delete(), ("campus".into(), Op::DeleteCloudMapService { id: "srv-1".into() }));
    }

    #[test]
    fn a_service_our_description_names_is_ours_without_tags() {
        let d = mk_desired_in_cloud_map();
        let mut live = mk_live_cloud_map(&d);
        live.tags = Default::default();
        live.description = Some(crate::codec::rule_description(OWNER, SERVICE));
        assert!(plan_against(&d, Some(live.clone()), false).is_empty());
        assert_eq!(live.service(OWNER).as_deref(), Some(SERVICE));
        live.description = Some(crate::codec::rule_description(OWNER, "other"));
        assert_eq!(plan_against(&d, Some(live.clone()), false)[0].action, Action::Conflict);
        assert_eq!(live.service(OWNER).as_deref(), Some("other"));
    }
}
