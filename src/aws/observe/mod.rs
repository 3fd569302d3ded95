//! Observe (read-only): one pass over AWS for a set of desired services, batched across them —
//! one call per cluster, load balancer, security group, namespace, never the same thing twice.
//! SDK types stop here; the planner sees [`Observed`].
//!
//! Layout: one file per AWS service. Each fetches (calls, paging, not-found handling) and
//! converts SDK values into [`Observed`] pieces with pure functions tested beside them. Whose a
//! resource is, and whether it matters to a service, is never decided here: plan reads it from
//! tags and descriptions ([`crate::observed`]). [`Scope`] only limits what is read (which
//! target groups' and Cloud Map services' tags), to keep the calls few.

mod cloud_map;
mod ec2;
mod ecs;
mod elb;
mod route53;
mod secrets;

use std::collections::{BTreeMap, BTreeSet};

pub use elb::{IDLE_TIMEOUT_ATTRIBUTE, target_health};

use super::{AwsError, Clients};
use crate::names;
use crate::observed::{self, Observed, Tags};
use crate::render::Desired;

type Result<T, E = AwsError> = std::result::Result<T, E>;

/// What to look at: derived from the desired services (and, for prune, their containers).
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub clusters: BTreeSet<String>,
    pub load_balancers: BTreeSet<String>,
    pub security_groups: BTreeSet<String>,
    pub namespaces: BTreeSet<String>,
    pub families: BTreeSet<String>,
    pub ecs_services: BTreeMap<String, BTreeSet<String>>,
    pub secrets: BTreeSet<String>,
    /// Zone references (names or ids) from `dns` blocks.
    pub zones: BTreeSet<String>,
    /// Services (cluster → names) whose task placement feeds DNS.
    pub placements: BTreeMap<String, BTreeSet<String>>,
    /// Read Cloud Map's registered instances too (for `status`' cross-check).
    pub cloud_map_instances: bool,
    /// List every ECS service in the clusters (to find orphans for prune/delete).
    pub list_all_services: bool,
}

impl Scope {
    pub fn of(desired: &[Desired]) -> Scope {
        let mut s = Scope::default();
        for d in desired {
            s.clusters.insert(d.ecs_service.cluster.clone());
            s.load_balancers.insert(d.load_balancer_arn.clone());
            s.security_groups.insert(d.security_group_id.clone());
            if let Some(cm) = &d.cloud_map {
                s.namespaces.insert(cm.namespace.clone());
            }
            s.families.insert(d.names.task_family.clone());
            s.ecs_services.entry(d.ecs_service.cluster.clone()).or_default().insert(d.ecs_service.name.clone());
            if let Some(name) = &d.host_key_secret {
                s.secrets.insert(name.clone());
            }
            if let Some(dns) = &d.dns {
                s.zones.insert(dns.zone.clone());
                s.zones.extend(dns.public_zone.clone());
                s.placements.entry(d.ecs_service.cluster.clone()).or_default().insert(d.ecs_service.name.clone());
            }
        }
        s
    }

    /// Whether to read a target group's tags (DescribeTags, 20 per call): only for those that
    /// may be ours — named like ours, or on a load balancer in scope. Others keep no tags, which
    /// plan reads as not ours.
    pub fn reads_target_group_tags(&self, tg: &observed::TargetGroup) -> bool {
        tg.name.starts_with(names::TARGET_GROUP_PREFIX)
            || tg.load_balancer_arns.iter().any(|a| self.load_balancers.contains(a))
    }

    /// Whether to read a Cloud Map service's tags (one call each, Cloud Map has no batch):
    /// not when its description already names its owner, otherwise only for services named
    /// like a desired one (or every one, when looking for orphans).
    pub fn reads_cloud_map_tags(&self, s: &observed::CloudMapService) -> bool {
        if s.described_owner().is_some() {
            return false;
        }
        self.list_all_services || self.ecs_services.values().any(|names| names.contains(&s.name))
    }

    /// Every service whose placement is read, across clusters.
    fn placement_services(&self) -> BTreeSet<String> {
        self.placements.values().flatten().cloned().collect()
    }
}

/// Tags from (key, value) pairs; a tag without a key is dropped, one without a value is empty.
fn tag_map<'a>(pairs: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>) -> Tags {
    pairs.into_iter().filter_map(|(k, v)| Some((k?.to_owned(), v.unwrap_or_default().to_owned()))).collect()
}

pub async fn observe(c: &Clients, scope: &Scope) -> Result<Observed> {
    // Independent reads run concurrently; each is one (paginated) call per container.
    let (lbs, sgs, ns, ecs, tds, secrets, (zones, record_sets), placements) = tokio::try_join!(
        elb::load_balancers(c, scope),
        ec2::security_groups(c, scope),
        cloud_map::cloud_map(c, scope),
        ecs::ecs_services(c, scope),
        ecs::task_definitions(c, scope),
        secrets::secrets(c, scope),
        route53::route53(c, scope),
        ecs::placements(c, scope),
    )?;
    let (load_balancers, target_groups, listeners) = lbs;
    let (namespaces, cloud_map_services) = ns;
    let (clusters, ecs_services) = ecs;
    let placements = if scope.cloud_map_instances {
        cloud_map::with_instances(c, placements, &scope.placement_services(), &cloud_map_services).await?
    } else {
        placements
    };
    Ok(Observed {
        load_balancers,
        target_groups,
        listeners,
        security_groups: sgs,
        namespaces,
        cloud_map_services,
        clusters,
        ecs_services,
        task_definitions: tds,
        secrets,
        zones,
        record_sets,
        placements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut s = Scope { load_balancers: ["arn:lb/ours".to_owned()].into(), ..Scope::default() };
        s.ecs_services.entry("sftp".into()).or_default().insert("campus".into());
        s
    }

    #[test]
    fn target_group_tags_are_read_for_names_like_ours_or_groups_on_our_load_balancers() {
        let s = scope();
        let tg = |name: &str, lb: &str| observed::TargetGroup {
            name: name.into(),
            load_balancer_arns: vec![lb.into()],
            ..observed::TargetGroup::default()
        };
        assert!(s.reads_target_group_tags(&tg("sftp-campus", "arn:lb/theirs")));
        assert!(s.reads_target_group_tags(&tg("web", "arn:lb/ours")));
        assert!(!s.reads_target_group_tags(&tg("web", "arn:lb/theirs")));
    }

    #[test]
    fn cloud_map_tags_are_read_only_when_the_description_does_not_say_and_the_name_matters() {
        let mut s = scope();
        let svc = |name: &str, description: Option<String>| observed::CloudMapService {
            name: name.into(),
            description,
            ..observed::CloudMapService::default()
        };
        let ours = Some(crate::codec::rule_description("o", "campus"));
        assert!(!s.reads_cloud_map_tags(&svc("campus", ours.clone())), "the description says whose");
        assert!(s.reads_cloud_map_tags(&svc("campus", Some("hand made".into()))));
        assert!(!s.reads_cloud_map_tags(&svc("other", None)));
        s.list_all_services = true;
        assert!(s.reads_cloud_map_tags(&svc("other", None)));
        assert!(!s.reads_cloud_map_tags(&svc("other", ours)));
    }

    #[test]
    fn tags_without_a_key_are_dropped() {
        let t = tag_map([(Some("a"), Some("1")), (None, Some("2")), (Some("b"), None)]);
        assert_eq!(t, Tags::from([("a".into(), "1".into()), ("b".into(), String::new())]));
    }
}
