//! Apply: execute a [`Plan`] — services concurrently, each service's changes in plan
//! (dependency) order. Every step is idempotent: "already exists" and "already gone" are
//! looked up again and treated as done, so a rerun after a crash converges without duplicates.

use std::collections::BTreeMap;

use aws_sdk_ecs::types as ecs;
use aws_sdk_elasticloadbalancingv2::types as elb;
use futures_util::{StreamExt, stream};

/// Services whose changes are applied at the same time.
const SERVICES_AT_ONCE: usize = 16;

use super::observe::IDLE_TIMEOUT_ATTRIBUTE;
use super::{AwsError, Clients, aws};
use crate::dns::{RecordAction, RecordChange};
use crate::observed::{Observed, Tags};
use crate::plan::{Change, Kind, Op, Plan, PortRange, RenderingWant};
use crate::render::{self, TaskDefinition};

type Result<T, E = AwsError> = std::result::Result<T, E>;

/// What happened to one change.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Applied {
    pub service: String,
    pub kind: Kind,
    pub name: String,
    pub action: crate::plan::Action,
    pub error: Option<ApplyError>,
}

/// Why one change was not made.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("skipped: an earlier step of this service failed")]
    Skipped,
}

impl ApplyError {
    pub fn throttled(&self) -> bool {
        matches!(self, ApplyError::Aws(e) if e.throttled)
    }
}

/// As the text reports print.
impl serde::Serialize for ApplyError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// ARNs a service's later steps need: from observation, or created earlier in this run.
#[derive(Clone, Debug, Default)]
struct Refs {
    target_groups: BTreeMap<String, String>,
    registries: BTreeMap<String, String>,
    task_definitions: BTreeMap<String, String>,
}

impl Refs {
    fn from(o: &Observed) -> Refs {
        Refs {
            target_groups: o.target_groups.iter().map(|t| (t.name.clone(), t.arn.clone())).collect(),
            registries: o.cloud_map_services.iter().map(|s| (s.name.clone(), s.arn.clone())).collect(),
            task_definitions: o.task_definitions.iter().map(|(f, t)| (f.clone(), t.arn.clone())).collect(),
        }
    }
}

/// Applies every actionable change of services without problems. Services run concurrently;
/// a failed step stops the rest of that service (later steps depend on it), not the others.
/// DNS changes go last, batched per zone across all services.
pub async fn apply(c: &Clients, plan: &Plan, observed: &Observed) -> Vec<Applied> {
    let blocked: Vec<&str> = plan.problems.iter().map(|p| p.service.as_str()).collect();
    let mut by_service: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    let mut dns: Vec<&Change> = Vec::new();
    for ch in plan.actionable().filter(|ch| !blocked.contains(&ch.service.as_str())) {
        if ch.kind == Kind::DnsRecord {
            dns.push(ch);
        } else {
            by_service.entry(ch.service.as_str()).or_default().push(ch);
        }
    }
    let refs = Refs::from(observed);
    let runs: Vec<_> = by_service.into_values().map(|changes| sequence(c, changes, refs.clone())).collect();
    // Bounded: a pass over hundreds of services must not burst every service's calls (and key
    // generations) at once.
    let runs: Vec<Vec<Applied>> = stream::iter(runs).buffered(SERVICES_AT_ONCE).collect().await;
    let mut out: Vec<Applied> = runs.into_iter().flatten().collect();
    out.extend(apply_dns(c, &dns).await);
    out
}

/// One service's changes in order; a failed step skips the rest (later steps depend on it).
async fn sequence(c: &Clients, changes: Vec<&Change>, mut refs: Refs) -> Vec<Applied> {
    let mut out = Vec::new();
    let mut failed = false;
    for ch in changes {
        let error = if failed {
            Some(ApplyError::Skipped)
        } else {
            let mut err = None;
            for op in &ch.ops {
                if let Err(e) = execute(c, op, &mut refs).await {
                    err = Some(ApplyError::Aws(e));
                    failed = true;
                    break;
                }
            }
            err
        };
        out.push(applied(ch, error));
    }
    out
}

/// The rendering tag's value: the rendering with the revision of `family` this run registered
/// or found (see [`crate::codec::rendering_tag`]); withdrawn when `None`.
fn rendering_value(refs: &Refs, family: &str, want: Option<&RenderingWant>) -> Result<String> {
    let Some(w) = want else { return Ok(crate::codec::RENDERING_WITHDRAWN.to_owned()) };
    let arn = lookup(&refs.task_definitions, family, "TagResource")?;
    let (_, revision) = crate::observed::family_revision(&arn)
        .ok_or_else(|| AwsError::other("TagResource", format!("no revision in task definition {arn}")))?;
    Ok(crate::codec::rendering_tag(&crate::codec::Rendering { hash: w.hash.clone(), revision, port: w.port }))
}

fn applied(ch: &Change, error: Option<ApplyError>) -> Applied {
    Applied { service: ch.service.clone(), kind: ch.kind, name: ch.name.clone(), action: ch.action, error }
}

/// One ChangeResourceRecordSets per zone (split at Route 53's batch limits). A failed batch
/// is retried per record name, so one bad record does not block the rest.
async fn apply_dns(c: &Clients, changes: &[&Change]) -> Vec<Applied> {
    let mut by_zone: BTreeMap<&str, Vec<(usize, &RecordChange)>> = BTreeMap::new();
    for (i, ch) in changes.iter().enumerate() {
        for op in &ch.ops {
            if let Op::ChangeRecord { zone_id, change } = op {
                by_zone.entry(zone_id.as_str()).or_default().push((i, change));
            }
        }
    }
    let mut errors: BTreeMap<usize, ApplyError> = BTreeMap::new();
    for (zone, items) in by_zone {
        let owned: Vec<RecordChange> = items.iter().map(|(_, rc)| (*rc).clone()).collect();
        for batch in crate::dns::batches(&owned) {
            if let Err(e) = change_records(c, zone, &batch).await {
                tracing::warn!(zone, error = %e, "Route 53 batch failed; retrying per record name");
                for group in crate::dns::split_by_name(&batch) {
                    if let Err(e) = change_records(c, zone, &group).await {
                        for rc in &group {
                            if let Some((i, _)) = items.iter().find(|(_, x)| *x == rc) {
                                errors.insert(*i, ApplyError::Aws(e.clone()));
                            }
                        }
                    }
                }
            }
        }
    }
    changes.iter().enumerate().map(|(i, ch)| applied(ch, errors.get(&i).cloned())).collect()
}

async fn change_records(c: &Clients, zone_id: &str, batch: &[RecordChange]) -> Result<()> {
    use aws_sdk_route53::types as r53;
    let err = |e: aws_sdk_route53::error::BuildError| AwsError::other("ChangeResourceRecordSets", e.to_string());
    let mut changes = Vec::new();
    for rc in batch {
        let r = &rc.record;
        let mut set = r53::ResourceRecordSet::builder().name(&r.name).r#type(r53::RrType::from(r.kind.as_str()));
        if let Some(a) = &r.alias {
            set = set.alias_target(
                r53::AliasTarget::builder()
                    .dns_name(&a.dns_name)
                    .hosted_zone_id(&a.hosted_zone_id)
                    .evaluate_target_health(false)
                    .build()
                    .map_err(err)?,
            );
        } else {
            set = set.set_ttl(r.ttl);
            for v in &r.values {
                set = set.resource_records(r53::ResourceRecord::builder().value(v).build().map_err(err)?);
            }
        }
        let action = match rc.action {
            RecordAction::Create => r53::ChangeAction::Create,
            RecordAction::Upsert => r53::ChangeAction::Upsert,
            RecordAction::Delete => r53::ChangeAction::Delete,
        };
        changes.push(
            r53::Change::builder()
                .action(action)
                .resource_record_set(set.build().map_err(err)?)
                .build()
                .map_err(err)?,
        );
    }
    let batch_input =
        r53::ChangeBatch::builder().set_changes(Some(changes)).comment("sftp-operator").build().map_err(err)?;
    c.route53_permit().await;
    let r = c
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(batch_input)
        .send()
        .await
        .map_err(aws("ChangeResourceRecordSets"));
    match r {
        Ok(_) => Ok(()),
        // A delete of something already gone is done: look again rather than trust the
        // error text (AWS says InvalidChangeBatch "not found", moto InvalidInput).
        Err(e) if batch.iter().all(|rc| rc.action == RecordAction::Delete) => {
            for rc in batch {
                if record_exists(c, zone_id, &rc.record).await? {
                    return Err(e);
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

async fn record_exists(c: &Clients, zone_id: &str, r: &crate::observed::RecordSet) -> Result<bool> {
    c.route53_permit().await;
    let out = c
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(&r.name)
        .start_record_type(aws_sdk_route53::types::RrType::from(r.kind.as_str()))
        .max_items(1)
        .send()
        .await
        .map_err(aws("ListResourceRecordSets"))?;
    Ok(out
        .resource_record_sets()
        .iter()
        .any(|x| crate::names::normalize_dns_name(x.name()) == r.name && x.r#type().as_str() == r.kind))
}

fn elb_tags(tags: &Tags) -> Vec<elb::Tag> {
    tags.iter().map(|(k, v)| elb::Tag::builder().key(k).value(v).build()).collect()
}

fn ecs_tags(tags: &Tags) -> Vec<ecs::Tag> {
    tags.iter().map(|(k, v)| ecs::Tag::builder().key(k).value(v).build()).collect()
}

/// Executes one operation of a change.
async fn execute(c: &Clients, op: &Op, refs: &mut Refs) -> Result<()> {
    match op {
        Op::CreateSecret { name, rsa_bits, tags } => create_secret(c, name, *rsa_bits, tags).await,
        Op::CreateProbeSecret { name, key, tags } => create_probe_secret(c, name, key, tags).await,
        Op::TagResource { kind, arn, tags, description } => tag_resource(c, *kind, arn, tags, description).await,
        Op::TagEcsService { arn, family, rendering } => {
            let value = rendering_value(refs, family, rendering.as_ref())?;
            let tag = ecs::Tag::builder().key(crate::names::RENDERING_TAG).value(value).build();
            c.ecs.tag_resource().resource_arn(arn).tags(tag).send().await.map_err(aws("TagResource"))?;
            Ok(())
        }
        Op::RegisterTaskDefinition { definition, tags } => {
            let arn = register_task_definition(c, definition, tags).await?;
            refs.task_definitions.insert(definition.family.clone(), arn);
            Ok(())
        }
        Op::DeregisterTaskDefinitions { family } => deregister_task_definitions(c, family).await,
        Op::CreateTargetGroup { tg, vpc_id, tags } => {
            let arn = create_target_group(c, tg, vpc_id, tags).await?;
            refs.target_groups.insert(tg.name.clone(), arn);
            Ok(())
        }
        Op::ModifyTargetGroup { arn, tg } => modify_target_group(c, arn, tg).await,
        Op::DeleteTargetGroup { arn } => delete_target_group(c, arn).await,
        Op::CreateListener { load_balancer_arn, listener, target_group, tags } => {
            let tg = lookup(&refs.target_groups, target_group, "CreateListener")?;
            create_listener(c, load_balancer_arn, listener, &tg, tags).await
        }
        Op::ModifyListener { arn, listener, target_group } => {
            let tg = lookup(&refs.target_groups, target_group, "ModifyListener")?;
            modify_listener(c, arn, listener, &tg).await
        }
        Op::DeleteListener { arn } => delete_listener(c, arn).await,
        Op::AuthorizeIngress { group_id, rules, description, tags } => {
            authorize(c, group_id, rules, description, tags).await
        }
        Op::RevokeIngress { group_id, rule_ids } => revoke(c, group_id, rule_ids).await,
        Op::CreateCloudMapService { namespace_id, service, tags } => {
            let arn = create_cloud_map_service(c, namespace_id, service, tags).await?;
            refs.registries.insert(service.name.clone(), arn);
            Ok(())
        }
        Op::UpdateCloudMapService { id, service } => update_cloud_map_service(c, id, service).await,
        Op::DeleteCloudMapService { id } => delete_cloud_map_service(c, id).await,
        Op::CreateEcsService { service, family, target_group, tags, rendering } => {
            let tg = lookup(&refs.target_groups, target_group, "CreateService")?;
            let td = refs.task_definitions.get(family).cloned().unwrap_or_else(|| family.clone());
            let registry = refs.registries.get(&service.name).cloned();
            let mut tags = tags.clone();
            if let Some(r) = rendering {
                tags.insert(crate::names::RENDERING_TAG.into(), rendering_value(refs, family, Some(r))?);
            }
            create_ecs_service(c, service, &td, &tg, registry, &tags).await
        }
        Op::UpdateEcsService { service, family, target_group, .. } => {
            let tg = lookup(&refs.target_groups, target_group, "UpdateService")?;
            let td = refs.task_definitions.get(family).cloned().unwrap_or_else(|| family.clone());
            let registry = refs.registries.get(&service.name).cloned();
            update_ecs_service(c, service, &td, &tg, registry).await
        }
        Op::DeleteEcsService { cluster, name } => delete_ecs_service(c, cluster, name).await,
        // Applied in one batch per zone after the per-service steps (see `apply_dns`).
        Op::ChangeRecord { .. } => Ok(()),
    }
}

async fn delete_target_group(c: &Clients, arn: &str) -> Result<()> {
    ignore(
        c.elb.delete_target_group().target_group_arn(arn).send().await.map_err(aws("DeleteTargetGroup")),
        &["TargetGroupNotFound"],
    )
}

async fn modify_listener(c: &Clients, arn: &str, listener: &render::Listener, tg_arn: &str) -> Result<()> {
    c.elb
        .modify_listener()
        .listener_arn(arn)
        .port(i32::from(listener.port))
        .protocol(elb::ProtocolEnum::from(listener.protocol.as_str()))
        .default_actions(forward(tg_arn))
        .send()
        .await
        .map_err(aws("ModifyListener"))?;
    set_idle_timeout(c, arn, listener.idle_timeout_seconds).await
}

async fn delete_listener(c: &Clients, arn: &str) -> Result<()> {
    ignore(c.elb.delete_listener().listener_arn(arn).send().await.map_err(aws("DeleteListener")), &["ListenerNotFound"])
}

/// Revokes rules by id in one call; when one of them is already gone the call fails whole,
/// so each is then revoked on its own (gone counts as done).
async fn revoke(c: &Clients, group_id: &str, rule_ids: &[String]) -> Result<()> {
    const GONE: [&str; 2] = ["InvalidPermission.NotFound", "InvalidSecurityGroupRuleId.NotFound"];
    let call = |ids: &[String]| {
        c.ec2.revoke_security_group_ingress().group_id(group_id).set_security_group_rule_ids(Some(ids.to_vec())).send()
    };
    match call(rule_ids).await.map_err(aws("RevokeSecurityGroupIngress")) {
        Ok(_) => Ok(()),
        Err(e) if rule_ids.len() > 1 && GONE.iter().any(|g| e.is(g)) => {
            for id in rule_ids {
                ignore(call(std::slice::from_ref(id)).await.map_err(aws("RevokeSecurityGroupIngress")), &GONE)?;
            }
            Ok(())
        }
        r => ignore(r, &GONE),
    }
}

async fn update_cloud_map_service(c: &Clients, id: &str, service: &render::CloudMapService) -> Result<()> {
    let change = aws_sdk_servicediscovery::types::ServiceChange::builder()
        .dns_config(
            aws_sdk_servicediscovery::types::DnsConfigChange::builder()
                .dns_records(srv_record(service.srv_ttl))
                .build()
                .map_err(|e| AwsError::other("UpdateService", e.to_string()))?,
        )
        .build();
    c.cloudmap.update_service().id(id).service(change).send().await.map_err(aws("UpdateService"))?;
    Ok(())
}

fn lookup(map: &BTreeMap<String, String>, name: &str, op: &'static str) -> Result<String> {
    map.get(name).cloned().ok_or_else(|| AwsError::other(op, format!("`{name}` was not created")))
}

/// "Already gone" (or "already there") answers count as success.
fn ignore(r: Result<impl Sized>, codes: &[&str]) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if codes.iter().any(|c| e.is(c)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn secret_tags(tags: &Tags) -> Vec<aws_sdk_secretsmanager::types::Tag> {
    tags.iter().map(|(k, v)| aws_sdk_secretsmanager::types::Tag::builder().key(k).value(v).build()).collect()
}

async fn create_probe_secret(c: &Clients, name: &str, key: &crate::sshkeys::ProbeKeyPair, tags: &Tags) -> Result<()> {
    let value = zeroize::Zeroizing::new(
        serde_json::json!({ crate::codec::PROBE_KEY_FIELD: key.private_openssh.as_str() }).to_string(),
    );
    let r = c
        .secrets
        .create_secret()
        .name(name)
        .description(crate::codec::probe_key_description(&key.public.line()))
        .secret_string(value.as_str())
        .set_tags(Some(secret_tags(tags)))
        .send()
        .await
        .map_err(aws("CreateSecret"));
    // The secret exists though the pass did not see it (ListSecrets lags): its key is not the
    // one this pass rendered, so the task definition after it must not be registered.
    r.map(|_| ())
}

async fn create_secret(c: &Clients, name: &str, rsa_bits: u32, tags: &Tags) -> Result<()> {
    // RSA generation is CPU-bound: off the async workers, so services generate in parallel.
    let comment = name.to_owned();
    let keys = tokio::task::spawn_blocking(move || crate::sshkeys::generate_host_keys(&comment, rsa_bits))
        .await
        .map_err(|e| AwsError::other("CreateSecret", e.to_string()))?
        .map_err(|e| AwsError::other("CreateSecret", e.to_string()))?;
    let r = c
        .secrets
        .create_secret()
        .name(name)
        .description(crate::codec::host_key_description(&keys.public_keys))
        .secret_string(keys.secret_json.as_str())
        .set_tags(Some(secret_tags(tags)))
        .send()
        .await
        .map_err(aws("CreateSecret"));
    // Never replace existing host keys: clients would see "host key changed".
    ignore(r, &["ResourceExistsException"])
}

async fn tag_resource(c: &Clients, kind: Kind, arn: &str, tags: &Tags, description: &str) -> Result<()> {
    match kind {
        Kind::TargetGroup | Kind::Listener => {
            c.elb.add_tags().resource_arns(arn).set_tags(Some(elb_tags(tags))).send().await.map_err(aws("AddTags"))?;
        }
        Kind::EcsService | Kind::TaskDefinition => {
            c.ecs
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(ecs_tags(tags)))
                .send()
                .await
                .map_err(aws("TagResource"))?;
        }
        Kind::CloudMapService => {
            let t = tags
                .iter()
                .map(|(k, v)| aws_sdk_servicediscovery::types::Tag::builder().key(k).value(v).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| AwsError::other("TagResource", e.to_string()))?;
            c.cloudmap.tag_resource().resource_arn(arn).set_tags(Some(t)).send().await.map_err(aws("TagResource"))?;
            let change = aws_sdk_servicediscovery::types::ServiceChange::builder().description(description).build();
            let id = crate::observed::name_from_arn(arn);
            c.cloudmap.update_service().id(id).service(change).send().await.map_err(aws("UpdateService"))?;
        }
        Kind::HostKeySecret | Kind::ProbeKeySecret => {
            c.secrets
                .tag_resource()
                .secret_id(arn)
                .set_tags(Some(secret_tags(tags)))
                .send()
                .await
                .map_err(aws("TagResource"))?;
        }
        // DNS ownership is the TXT record the plan writes, not a tag.
        Kind::DnsRecord => {}
        // Shared rules are never adopted: a hand-made rule stays hand-made (plan never asks).
        Kind::IngressRule => return Err(AwsError::other("CreateTags", "security-group rules are never adopted")),
    }
    Ok(())
}

async fn register_task_definition(c: &Clients, td: &TaskDefinition, tags: &Tags) -> Result<String> {
    let containers = td.container_definitions.iter().map(container).collect::<Result<Vec<_>>>()?;
    let volumes = td
        .volumes
        .iter()
        .map(|v| {
            let mut b = ecs::Volume::builder().name(&v.name);
            if let Some(p) = &v.host_source_path {
                b = b.host(ecs::HostVolumeProperties::builder().source_path(p).build());
            }
            if let Some(e) = &v.efs {
                let mut eb = ecs::EfsVolumeConfiguration::builder()
                    .file_system_id(&e.file_system_id)
                    .root_directory(&e.root_directory)
                    .transit_encryption(if e.transit_encryption {
                        ecs::EfsTransitEncryption::Enabled
                    } else {
                        ecs::EfsTransitEncryption::Disabled
                    });
                if let Some(ap) = &e.access_point_id {
                    eb = eb.authorization_config(
                        ecs::EfsAuthorizationConfig::builder()
                            .access_point_id(ap)
                            .iam(ecs::EfsAuthorizationConfigIam::Enabled)
                            .build(),
                    );
                }
                b = b.efs_volume_configuration(
                    eb.build().map_err(|e| AwsError::other("RegisterTaskDefinition", e.to_string()))?,
                );
            }
            Ok(b.build())
        })
        .collect::<Result<Vec<_>>>()?;
    let out = c
        .ecs
        .register_task_definition()
        .family(&td.family)
        .network_mode(ecs::NetworkMode::from(td.network_mode.as_str()))
        .set_requires_compatibilities(Some(
            td.requires_compatibilities.iter().map(|x| ecs::Compatibility::from(x.as_str())).collect(),
        ))
        .set_execution_role_arn(td.execution_role_arn.clone())
        .set_task_role_arn(td.task_role_arn.clone())
        .set_container_definitions(Some(containers))
        .set_volumes(Some(volumes))
        .set_tags(Some(ecs_tags(tags)))
        .send()
        .await
        .map_err(aws("RegisterTaskDefinition"))?;
    Ok(out.task_definition().and_then(|t| t.task_definition_arn()).unwrap_or_default().to_owned())
}

fn container(cd: &render::ContainerDefinition) -> Result<ecs::ContainerDefinition> {
    let err = |e: aws_sdk_ecs::error::BuildError| AwsError::other("RegisterTaskDefinition", e.to_string());
    let mut b = ecs::ContainerDefinition::builder()
        .name(&cd.name)
        .image(&cd.image)
        .essential(cd.essential)
        .cpu(cd.cpu as i32)
        .memory(cd.memory as i32)
        .set_port_mappings(Some(
            cd.port_mappings
                .iter()
                .map(|p| {
                    ecs::PortMapping::builder()
                        .container_port(i32::from(p.container_port))
                        .host_port(i32::from(p.host_port))
                        .protocol(ecs::TransportProtocol::from(p.protocol.as_str()))
                        .build()
                })
                .collect(),
        ))
        .set_entry_point(Some(cd.entry_point.clone()))
        .set_command((!cd.command.is_empty()).then(|| cd.command.clone()))
        .set_environment(Some(
            cd.environment.iter().map(|e| ecs::KeyValuePair::builder().name(&e.name).value(&e.value).build()).collect(),
        ))
        .set_secrets(Some(
            cd.secrets
                .iter()
                .map(|s| ecs::Secret::builder().name(&s.name).value_from(&s.value_from).build().map_err(err))
                .collect::<Result<_>>()?,
        ))
        .set_mount_points(Some(
            cd.mount_points
                .iter()
                .map(|m| {
                    ecs::MountPoint::builder()
                        .source_volume(&m.source_volume)
                        .container_path(&m.container_path)
                        .read_only(m.read_only)
                        .build()
                })
                .collect(),
        ));
    if let Some(lp) = &cd.linux_parameters {
        let devices = lp
            .devices
            .iter()
            .map(|d| {
                ecs::Device::builder()
                    .host_path(&d.host_path)
                    .container_path(&d.container_path)
                    .set_permissions(Some(
                        d.permissions.iter().map(|p| ecs::DeviceCgroupPermission::from(p.as_str())).collect(),
                    ))
                    .build()
                    .map_err(err)
            })
            .collect::<Result<Vec<_>>>()?;
        b = b.linux_parameters(
            ecs::LinuxParameters::builder()
                .capabilities(ecs::KernelCapabilities::builder().set_add(Some(lp.capabilities_add.clone())).build())
                .set_devices(Some(devices))
                .build(),
        );
    }
    if let Some(l) = &cd.log_configuration {
        b = b.log_configuration(
            ecs::LogConfiguration::builder()
                .log_driver(ecs::LogDriver::from(l.log_driver.as_str()))
                .set_options(Some(l.options.clone().into_iter().collect()))
                .build()
                .map_err(err)?,
        );
    }
    Ok(b.build())
}

async fn deregister_task_definitions(c: &Clients, family: &str) -> Result<()> {
    let mut pages = c
        .ecs
        .list_task_definitions()
        .family_prefix(family)
        .status(ecs::TaskDefinitionStatus::Active)
        .into_paginator()
        .send();
    let mut arns = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("ListTaskDefinitions"))?;
        // family_prefix matches by prefix: keep exactly this family.
        arns.extend(
            page.task_definition_arns()
                .iter()
                .filter(|a| crate::observed::family_revision(a).map(|x| x.0) == Some(family))
                .cloned(),
        );
    }
    for arn in arns {
        c.ecs
            .deregister_task_definition()
            .task_definition(arn)
            .send()
            .await
            .map_err(aws("DeregisterTaskDefinition"))?;
    }
    Ok(())
}

async fn create_target_group(c: &Clients, tg: &render::TargetGroup, vpc_id: &str, tags: &Tags) -> Result<String> {
    let r = c
        .elb
        .create_target_group()
        .name(&tg.name)
        .protocol(elb::ProtocolEnum::from(tg.protocol.as_str()))
        .port(i32::from(tg.port))
        .vpc_id(vpc_id)
        .target_type(elb::TargetTypeEnum::from(tg.target_type.as_str()))
        .health_check_protocol(elb::ProtocolEnum::from(tg.health_check.protocol.as_str()))
        .health_check_port(&tg.health_check.port)
        .health_check_interval_seconds(tg.health_check.interval_seconds)
        .healthy_threshold_count(tg.health_check.healthy_threshold)
        .unhealthy_threshold_count(tg.health_check.unhealthy_threshold)
        .set_tags(Some(elb_tags(tags)))
        .send()
        .await
        .map_err(aws("CreateTargetGroup"));
    let arn = match r {
        Ok(out) => out.target_groups().first().and_then(|t| t.target_group_arn()).unwrap_or_default().to_owned(),
        Err(e) if e.is("DuplicateTargetGroupName") => {
            let out =
                c.elb.describe_target_groups().names(&tg.name).send().await.map_err(aws("DescribeTargetGroups"))?;
            out.target_groups().first().and_then(|t| t.target_group_arn()).unwrap_or_default().to_owned()
        }
        Err(e) => return Err(e),
    };
    c.elb
        .modify_target_group_attributes()
        .target_group_arn(&arn)
        .attributes(
            elb::TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value(tg.deregistration_delay_seconds.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(aws("ModifyTargetGroupAttributes"))?;
    Ok(arn)
}

async fn modify_target_group(c: &Clients, arn: &str, tg: &render::TargetGroup) -> Result<()> {
    c.elb
        .modify_target_group()
        .target_group_arn(arn)
        .health_check_protocol(elb::ProtocolEnum::from(tg.health_check.protocol.as_str()))
        .health_check_port(&tg.health_check.port)
        .health_check_interval_seconds(tg.health_check.interval_seconds)
        .healthy_threshold_count(tg.health_check.healthy_threshold)
        .unhealthy_threshold_count(tg.health_check.unhealthy_threshold)
        .send()
        .await
        .map_err(aws("ModifyTargetGroup"))?;
    Ok(())
}

fn forward(tg_arn: &str) -> elb::Action {
    elb::Action::builder().r#type(elb::ActionTypeEnum::Forward).target_group_arn(tg_arn).build()
}

async fn create_listener(c: &Clients, lb: &str, l: &render::Listener, tg: &str, tags: &Tags) -> Result<()> {
    let out = c
        .elb
        .create_listener()
        .load_balancer_arn(lb)
        .port(i32::from(l.port))
        .protocol(elb::ProtocolEnum::from(l.protocol.as_str()))
        .default_actions(forward(tg))
        .set_tags(Some(elb_tags(tags)))
        .send()
        .await
        .map_err(aws("CreateListener"))?;
    let arn = out.listeners().first().and_then(|x| x.listener_arn()).unwrap_or_default().to_owned();
    set_idle_timeout(c, &arn, l.idle_timeout_seconds).await
}

async fn set_idle_timeout(c: &Clients, listener_arn: &str, seconds: u32) -> Result<()> {
    c.elb
        .modify_listener_attributes()
        .listener_arn(listener_arn)
        .attributes(elb::ListenerAttribute::builder().key(IDLE_TIMEOUT_ATTRIBUTE).value(seconds.to_string()).build())
        .send()
        .await
        .map_err(aws("ModifyListenerAttributes"))?;
    Ok(())
}

/// Authorizes rules in one call (tagged as they are created); when one already exists the
/// call fails whole, so each is then authorized on its own (existing counts as done).
async fn authorize(c: &Clients, group_id: &str, rules: &[PortRange], description: &str, tags: &Tags) -> Result<()> {
    use aws_sdk_ec2::types as ec2;
    let permission = |r: &PortRange| {
        let b = if r.cidr.contains(':') {
            ec2::IpPermission::builder()
                .ipv6_ranges(ec2::Ipv6Range::builder().cidr_ipv6(&r.cidr).description(description).build())
        } else {
            ec2::IpPermission::builder()
                .ip_ranges(ec2::IpRange::builder().cidr_ip(&r.cidr).description(description).build())
        };
        b.ip_protocol("tcp").from_port(i32::from(r.from_port)).to_port(i32::from(r.to_port)).build()
    };
    let spec = ec2::TagSpecification::builder()
        .resource_type(ec2::ResourceType::SecurityGroupRule)
        .set_tags(Some(tags.iter().map(|(k, v)| ec2::Tag::builder().key(k).value(v).build()).collect()))
        .build();
    let call = |rs: &[PortRange]| {
        c.ec2
            .authorize_security_group_ingress()
            .group_id(group_id)
            .set_ip_permissions(Some(rs.iter().map(permission).collect()))
            .tag_specifications(spec.clone())
            .send()
    };
    const EXISTS: [&str; 1] = ["InvalidPermission.Duplicate"];
    match call(rules).await.map_err(aws("AuthorizeSecurityGroupIngress")) {
        Ok(_) => Ok(()),
        Err(e) if rules.len() > 1 && e.is(EXISTS[0]) => {
            for r in rules {
                ignore(call(std::slice::from_ref(r)).await.map_err(aws("AuthorizeSecurityGroupIngress")), &EXISTS)?;
            }
            Ok(())
        }
        r => ignore(r, &EXISTS),
    }
}

fn srv_record(ttl: i64) -> aws_sdk_servicediscovery::types::DnsRecord {
    aws_sdk_servicediscovery::types::DnsRecord::builder()
        .r#type(aws_sdk_servicediscovery::types::RecordType::Srv)
        .ttl(ttl)
        .build()
        .expect("type and ttl are set")
}

async fn create_cloud_map_service(
    c: &Clients,
    namespace_id: &str,
    s: &render::CloudMapService,
    tags: &Tags,
) -> Result<String> {
    use aws_sdk_servicediscovery::types as sd;
    let t = tags
        .iter()
        .map(|(k, v)| sd::Tag::builder().key(k).value(v).build())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| AwsError::other("CreateService", e.to_string()))?;
    let dns = sd::DnsConfig::builder()
        .routing_policy(sd::RoutingPolicy::Multivalue)
        .dns_records(srv_record(s.srv_ttl))
        .build()
        .map_err(|e| AwsError::other("CreateService", e.to_string()))?;
    let r = c
        .cloudmap
        .create_service()
        .name(&s.name)
        .namespace_id(namespace_id)
        .description(crate::codec::rule_description(
            tags.get(crate::names::OWNER_TAG).map_or("", String::as_str),
            &s.name,
        ))
        .dns_config(dns)
        .health_check_custom_config(sd::HealthCheckCustomConfig::builder().build())
        .set_tags(Some(t))
        .send()
        .await
        .map_err(aws("CreateService"));
    match r {
        Ok(out) => Ok(out.service().and_then(|s| s.arn()).unwrap_or_default().to_owned()),
        Err(e) if e.is("ServiceAlreadyExists") => {
            let filter = sd::ServiceFilter::builder()
                .name(sd::ServiceFilterName::NamespaceId)
                .values(namespace_id)
                .build()
                .map_err(|e| AwsError::other("ListServices", e.to_string()))?;
            let out = c.cloudmap.list_services().filters(filter).send().await.map_err(aws("ListServices"))?;
            Ok(out
                .services()
                .iter()
                .find(|x| x.name() == Some(&s.name))
                .and_then(|x| x.arn())
                .unwrap_or_default()
                .to_owned())
        }
        Err(e) => Err(e),
    }
}

async fn delete_cloud_map_service(c: &Clients, id: &str) -> Result<()> {
    // Instances left behind by ECS block the delete; deregister them first.
    if let Ok(out) = c.cloudmap.list_instances().service_id(id).send().await {
        for i in out.instances() {
            if let Some(iid) = i.id() {
                let _ = c.cloudmap.deregister_instance().service_id(id).instance_id(iid).send().await;
            }
        }
    }
    ignore(c.cloudmap.delete_service().id(id).send().await.map_err(aws("DeleteService")), &["ServiceNotFound"])
}

fn deployment(s: &render::EcsService) -> ecs::DeploymentConfiguration {
    ecs::DeploymentConfiguration::builder()
        .minimum_healthy_percent(s.minimum_healthy_percent as i32)
        .maximum_percent(s.maximum_percent as i32)
        .deployment_circuit_breaker(
            ecs::DeploymentCircuitBreaker::builder().enable(true).rollback(s.circuit_breaker_rollback).build(),
        )
        .build()
}

fn bindings(
    s: &render::EcsService,
    tg: &str,
    registry: Option<String>,
) -> (ecs::LoadBalancer, Option<ecs::ServiceRegistry>) {
    let lb = ecs::LoadBalancer::builder()
        .target_group_arn(tg)
        .container_name(&s.container_name)
        .container_port(i32::from(s.container_port))
        .build();
    let reg = registry.map(|arn| {
        ecs::ServiceRegistry::builder()
            .registry_arn(arn)
            .container_name(&s.container_name)
            .container_port(i32::from(s.container_port))
            .build()
    });
    (lb, reg)
}

fn placement(s: &render::EcsService) -> Vec<ecs::PlacementConstraint> {
    if s.distinct_instance {
        vec![ecs::PlacementConstraint::builder().r#type(ecs::PlacementConstraintType::DistinctInstance).build()]
    } else {
        vec![]
    }
}

async fn create_ecs_service(
    c: &Clients,
    s: &render::EcsService,
    td: &str,
    tg: &str,
    registry: Option<String>,
    tags: &Tags,
) -> Result<()> {
    let (lb, reg) = bindings(s, tg, registry.clone());
    let r = c
        .ecs
        .create_service()
        .cluster(&s.cluster)
        .service_name(&s.name)
        .task_definition(td)
        .desired_count(s.desired_count as i32)
        .launch_type(ecs::LaunchType::from(s.launch_type.as_str()))
        .load_balancers(lb)
        .set_service_registries(reg.map(|r| vec![r]))
        .deployment_configuration(deployment(s))
        .set_placement_constraints(Some(placement(s)))
        .health_check_grace_period_seconds(s.health_check_grace_period_seconds as i32)
        .enable_ecs_managed_tags(true)
        .propagate_tags(ecs::PropagateTags::Service)
        .set_tags(Some(ecs_tags(tags)))
        .send()
        .await
        .map_err(aws("CreateService"));
    match r {
        Ok(_) => Ok(()),
        // Created by an interrupted earlier run: bring it in line instead.
        Err(e) if e.message.contains("idempotent") => update_ecs_service(c, s, td, tg, registry).await,
        Err(e) => Err(e),
    }
}

async fn update_ecs_service(
    c: &Clients,
    s: &render::EcsService,
    td: &str,
    tg: &str,
    registry: Option<String>,
) -> Result<()> {
    let (lb, reg) = bindings(s, tg, registry);
    c.ecs
        .update_service()
        .cluster(&s.cluster)
        .service(&s.name)
        .task_definition(td)
        .desired_count(s.desired_count as i32)
        .load_balancers(lb)
        .set_service_registries(reg.map(|r| vec![r]))
        .deployment_configuration(deployment(s))
        .set_placement_constraints(Some(placement(s)))
        .health_check_grace_period_seconds(s.health_check_grace_period_seconds as i32)
        .send()
        .await
        .map_err(aws("UpdateService"))?;
    Ok(())
}

async fn delete_ecs_service(c: &Clients, cluster: &str, name: &str) -> Result<()> {
    let r =
        c.ecs.delete_service().cluster(cluster).service(name).force(true).send().await.map_err(aws("DeleteService"));
    ignore(r, &["ServiceNotFoundException", "ServiceNotActiveException"])
}
