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
    /// The secrets, when read before the rest (to render the probe account): not read again.
    pub secrets_read: Option<Vec<observed::Secret>>,
    /// Zone references (names or ids) from `dns` blocks.
    pub zones: BTreeSet<String>,
    /// Services (cluster → names) whose task placement feeds DNS.
    pub placements: BTreeMap<String, BTreeSet<String>>,
    /// Read Cloud Map's registered instances too (for `status`' cross-check).
    pub cloud_map_instances: bool,
    /// List every ECS service in the clusters (to find orphans for prune/delete).
    pub list_all_services: bool,
    /// Trust no rendering hash: read every task definition, listener attribute and tag.
    pub deep: bool,
    /// What each desired service's ECS service vouches for when it carries the rendering hash.
    pub vouches: Vec<Vouch>,
}

/// What an ECS service carrying the current rendering hash vouches for: everything that hash
/// stands for was applied in full and was ours, so a shallow pass takes the task definition it
/// runs, its target group's and listener's ownership from it, and skips reading the task
/// definition's contents, those tags and the listener's attributes. A deep pass (or a hash that
/// does not match) reads them all; hand edits to them wait for the next deep pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vouch {
    pub cluster: String,
    pub ecs_service: String,
    pub rendering_hash: String,
    pub family: String,
    pub port: u16,
    pub task_definition_hash: String,
    /// The owner and service tags the ECS service must carry (and the vouched ones inherit).
    pub ownership: Tags,
    pub target_group: String,
    pub load_balancer_arn: String,
    pub listener_port: i32,
}

impl Vouch {
    fn of(d: &Desired) -> Vouch {
        let ownership = [names::OWNER_TAG, names::SERVICE_TAG]
            .iter()
            .filter_map(|k| Some(((*k).to_owned(), d.tags.get(*k)?.clone())))
            .collect();
        Vouch {
            cluster: d.ecs_service.cluster.clone(),
            ecs_service: d.ecs_service.name.clone(),
            rendering_hash: d.rendering_hash.clone(),
            family: d.names.task_family.clone(),
            port: d.target_group.port,
            task_definition_hash: d.task_definition_hash.clone(),
            ownership,
            target_group: d.target_group.name.clone(),
            load_balancer_arn: d.load_balancer_arn.clone(),
            listener_port: i32::from(d.listener.port),
        }
    }

    /// Whether `s` is this vouch's service, owned as it should be, carrying the rendering, and
    /// still running the revision it was applied with (not rolled back, not moved by hand).
    fn holds(&self, s: &observed::EcsService) -> bool {
        let carried = s.tags.get(names::RENDERING_TAG).and_then(|v| crate::codec::parse_rendering_tag(v));
        let runs = s.task_definition.as_deref().and_then(observed::family_revision);
        s.cluster == self.cluster
            && s.name == self.ecs_service
            && s.status == "ACTIVE"
            && self.ownership.iter().all(|(k, v)| s.tags.get(k) == Some(v))
            && carried.is_some_and(|c| {
                c.hash == self.rendering_hash
                    && c.port == self.port
                    && runs.is_some_and(|(family, rev)| family == self.family && rev == c.revision)
            })
    }
}

/// The vouches that hold, with the task definition each service runs.
#[derive(Debug, Default)]
pub(super) struct Vouched<'a> {
    held: Vec<(&'a Vouch, &'a str)>,
}

impl<'a> Vouched<'a> {
    fn of(scope: &'a Scope, services: &'a [observed::EcsService]) -> Vouched<'a> {
        if scope.deep {
            return Vouched::default();
        }
        let held = scope
            .vouches
            .iter()
            .filter_map(|v| {
                let s = services.iter().find(|s| v.holds(s))?;
                Some((v, s.task_definition.as_deref()?))
            })
            .collect();
        Vouched { held }
    }

    /// The ownership tags of a vouched target group, by name.
    pub(super) fn target_group(&self, name: &str) -> Option<&'a Tags> {
        self.held.iter().find(|(v, _)| v.target_group == name).map(|(v, _)| &v.ownership)
    }

    /// The ownership tags of a vouched listener, by load balancer and port.
    pub(super) fn listener(&self, l: &observed::Listener) -> Option<&'a Tags> {
        let at = |v: &Vouch| v.load_balancer_arn == l.load_balancer_arn && l.port == Some(v.listener_port);
        self.held.iter().find(|(v, _)| at(v)).map(|(v, _)| &v.ownership)
    }

    /// Task-definition revisions known from the services running them, by family.
    pub(super) fn task_definitions(&self) -> BTreeMap<String, observed::TaskDefinitionRevision> {
        let mut out = BTreeMap::new();
        for (v, arn) in &self.held {
            let Some((family, revision)) = observed::family_revision(arn) else { continue };
            let mut tags = v.ownership.clone();
            tags.insert(crate::plan::HASH_TAG.into(), v.task_definition_hash.clone());
            let arn = (*arn).to_owned();
            let family = family.to_owned();
            out.insert(
                family.clone(),
                observed::TaskDefinitionRevision { arn, family, revision, definition: None, tags },
            );
        }
        out
    }
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
            s.vouches.push(Vouch::of(d));
            s.ecs_services.entry(d.ecs_service.cluster.clone()).or_default().insert(d.ecs_service.name.clone());
            if let Some(name) = &d.host_key_secret {
                s.secrets.insert(name.clone());
            }
            if let Some(probe) = &d.probe {
                s.secrets.insert(probe.secret.clone());
            }
            // The probe reaches each task's host directly, like the direct record.
            if d.probe.is_some() {
                s.placements.entry(d.ecs_service.cluster.clone()).or_default().insert(d.ecs_service.name.clone());
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

/// Every ECS service in the clusters in scope, and the host ports of the task definitions the
/// services outside the desired set run: what a pass that would create a service reads first.
pub async fn every_ecs_service(
    c: &Clients,
    scope: &Scope,
) -> Result<(Vec<observed::EcsService>, BTreeMap<String, Vec<u16>>)> {
    let scope = Scope { list_all_services: true, ..scope.clone() };
    let (_, services) = ecs::ecs_services(c, &scope).await?;
    let host_ports = ecs::host_ports(c, &scope, &services).await?;
    Ok((services, host_ports))
}

/// One ECS service as DescribeServices reports it now (`None` when it does not exist): what
/// `converge --wait` polls while it follows a rollout.
pub async fn ecs_service(c: &Clients, cluster: &str, name: &str) -> Result<Option<observed::EcsService>> {
    let scope = Scope {
        clusters: [cluster.to_owned()].into(),
        ecs_services: [(cluster.to_owned(), [name.to_owned()].into())].into(),
        ..Scope::default()
    };
    let (_, services) = ecs::ecs_services(c, &scope).await?;
    Ok(services.into_iter().find(|s| s.name == name))
}

/// The ARN of a family's latest ACTIVE revision: the one apply puts on its ECS service.
pub async fn latest_task_definition(c: &Clients, family: &str) -> Result<Option<String>> {
    let scope = Scope { families: [family.to_owned()].into(), deep: true, ..Scope::default() };
    let revisions = ecs::task_definitions(c, &scope, &Vouched::default()).await?;
    Ok(revisions.into_values().next().map(|r| r.arn))
}

/// The secrets in scope (host keys, probe keys): one ListSecrets, plus a DescribeSecret for
/// each of `must_know` the listing lacks — ListSecrets can lag minutes behind a creation, and a
/// probe key taken for missing would be generated anew.
pub async fn secrets_in(c: &Clients, scope: &Scope, must_know: &[&str]) -> Result<Vec<observed::Secret>> {
    let mut found = secrets::secrets(c, scope).await?;
    for name in must_know {
        if !found.iter().any(|s| s.name == *name)
            && let Some(s) = secrets::secret_named(c, name).await?
        {
            found.push(s);
        }
    }
    Ok(found)
}

/// ACTIVE container instances in each cluster in scope: ListContainerInstances (100 a page),
/// DescribeContainerInstances (100 a call).
pub async fn container_instances(
    c: &Clients,
    scope: &Scope,
) -> Result<BTreeMap<String, Vec<observed::ContainerInstance>>> {
    let mut out = BTreeMap::new();
    for cluster in &scope.clusters {
        let mut arns = Vec::new();
        let active = aws_sdk_ecs::types::ContainerInstanceStatus::Active;
        let mut pages = c.ecs.list_container_instances().cluster(cluster).status(active).into_paginator().send();
        while let Some(page) = pages.next().await {
            arns.extend(page.map_err(crate::aws::aws("ListContainerInstances"))?.container_instance_arns().to_vec());
        }
        let mut found = Vec::new();
        for chunk in arns.chunks(100) {
            let call =
                c.ecs.describe_container_instances().cluster(cluster).set_container_instances(Some(chunk.to_vec()));
            let described = call.send().await.map_err(crate::aws::aws("DescribeContainerInstances"))?;
            found.extend(described.container_instances().iter().map(ecs::container_instance));
        }
        out.insert(cluster.clone(), found);
    }
    Ok(out)
}

pub async fn observe(c: &Clients, scope: &Scope) -> Result<Observed> {
    // The ECS services first: the rendering hash they carry decides what else must be read.
    let (clusters, ecs_services) = ecs::ecs_services(c, scope).await?;
    let vouched = Vouched::of(scope, &ecs_services);
    // Independent reads run concurrently; each is one (paginated) call per container.
    let (lbs, sgs, ns, tds, secrets, (zones, record_sets), placements) = tokio::try_join!(
        elb::load_balancers(c, scope, &vouched),
        ec2::security_groups(c, scope),
        cloud_map::cloud_map(c, scope),
        ecs::task_definitions(c, scope, &vouched),
        async {
            match &scope.secrets_read {
                Some(read) => Ok(read.clone()),
                None => secrets::secrets(c, scope).await,
            }
        },
        route53::route53(c, scope),
        ecs::placements(c, scope),
    )?;
    let (load_balancers, target_groups, listeners) = lbs;
    let (namespaces, cloud_map_services) = ns;
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
        host_ports: BTreeMap::new(),
        container_instances: BTreeMap::new(),
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

    fn vouch() -> Vouch {
        Vouch {
            cluster: "sftp".into(),
            ecs_service: "campus".into(),
            rendering_hash: "r1".into(),
            family: "sftp-campus".into(),
            port: 30020,
            task_definition_hash: "t1".into(),
            ownership: [
                (names::OWNER_TAG.to_owned(), "o".to_owned()),
                (names::SERVICE_TAG.to_owned(), "campus".to_owned()),
            ]
            .into(),
            target_group: "sftp-campus".into(),
            load_balancer_arn: "arn:lb/ours".into(),
            listener_port: 22,
        }
    }

    fn carrying(hash: &str) -> observed::EcsService {
        let mut tags = vouch().ownership;
        let rendering = crate::codec::Rendering { hash: hash.into(), revision: 7, port: 30020 };
        tags.insert(names::RENDERING_TAG.into(), crate::codec::rendering_tag(&rendering));
        observed::EcsService {
            name: "campus".into(),
            cluster: "sftp".into(),
            status: "ACTIVE".into(),
            task_definition: Some("arn:aws:ecs:us-east-1:1:task-definition/sftp-campus:7".into()),
            tags,
            ..Default::default()
        }
    }

    #[test]
    fn a_service_carrying_the_current_rendering_vouches_for_its_task_definition_and_load_balancing() {
        let scope = Scope { vouches: vec![vouch()], ..scope() };
        let services = [carrying("r1")];
        let v = Vouched::of(&scope, &services);
        let tds = v.task_definitions();
        let td = &tds["sftp-campus"];
        assert_eq!((td.revision, td.definition.as_ref()), (7, None), "known, not read");
        assert_eq!(td.tags[crate::plan::HASH_TAG], "t1");
        assert_eq!(v.target_group("sftp-campus"), Some(&vouch().ownership));
        assert_eq!(v.target_group("sftp-other"), None);
        let listener = |port| observed::Listener {
            load_balancer_arn: "arn:lb/ours".into(),
            port: Some(port),
            ..observed::Listener::default()
        };
        assert!(v.listener(&listener(22)).is_some());
        assert!(v.listener(&listener(23)).is_none());
    }

    #[test]
    fn an_old_hash_another_owner_or_a_deep_pass_vouches_for_nothing() {
        let scope = Scope { vouches: vec![vouch()], ..scope() };
        assert!(Vouched::of(&scope, &[carrying("r0")]).held.is_empty(), "older rendering");
        let mut theirs = carrying("r1");
        theirs.tags.insert(names::OWNER_TAG.into(), "another".into());
        assert!(Vouched::of(&scope, &[theirs]).held.is_empty(), "not ours");
        let mut draining = carrying("r1");
        draining.status = "DRAINING".into();
        assert!(Vouched::of(&scope, &[draining]).held.is_empty());
        let mut rolled_back = carrying("r1");
        rolled_back.task_definition = Some("arn:aws:ecs:us-east-1:1:task-definition/sftp-campus:6".into());
        assert!(Vouched::of(&scope, &[rolled_back]).held.is_empty(), "not on the revision it was applied with");
        let mut bare = carrying("r1");
        bare.tags.insert(names::RENDERING_TAG.into(), "r1".into());
        assert!(Vouched::of(&scope, &[bare]).held.is_empty(), "no revision: an older or withdrawn tag");
        let deep = Scope { deep: true, ..scope.clone() };
        assert!(Vouched::of(&deep, &[carrying("r1")]).held.is_empty(), "deep reads everything");
    }

    #[test]
    fn tags_without_a_key_are_dropped() {
        let t = tag_map([(Some("a"), Some("1")), (None, Some("2")), (Some("b"), None)]);
        assert_eq!(t, Tags::from([("a".into(), "1".into()), ("b".into(), String::new())]));
    }
}
