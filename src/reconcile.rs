//! The reconcile core every AWS-facing command and the controller share: render → observe →
//! plan ([`prepare`]), then [`apply`] with its host-key follow-up pass. No flags, no printing:
//! the commands and `run` decide what to show; this decides what happens.
//!
//! ```text
//! services ─▶ render ─▶ observe (Scope + Reach) ─▶ plan (Options) ─▶ Prepared ─▶ apply ─▶ Vec<Applied>
//!                                                                         └─ new host keys? observe, plan, apply again
//! ```

use std::fmt;

use crate::aws::apply::{self, Applied, ApplyError};
use crate::aws::observe::{self, Scope};
use crate::aws::{AwsError, Clients};
use crate::model::Service;
use crate::observed::{Observed, Secret};
use crate::plan::{self, Action, Kind, Plan, Problem};
use crate::render::{self, Desired};

/// Who we are and how far we may go: the owner id, `--adopt`, `--prune`. Built once from the
/// flags (`AwsArgs::options`) and passed down unchanged.
pub use crate::plan::Options;

/// What observe reads beyond the resources the desired services name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// List every ECS service in the clusters, to find orphans (always on with `prune`).
    pub every_service: bool,
    /// Read Cloud Map's registered instances too (`status` cross-checks them).
    pub cloud_map_instances: bool,
    /// Read everything, trusting no rendering hash: task-definition contents, listener
    /// attributes and every tag, also for services whose ECS service says they are in sync.
    pub deep: bool,
    /// How the shared security-group rules are planned: by how much of the manifest set the
    /// pass holds.
    pub group_rules: plan::GroupRules,
}

/// Everything known before the first mutating call.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub desired: Vec<Desired>,
    pub observed: Observed,
    pub plan: Plan,
}

/// What each service should own, for this owner, as far as the manifests say: without the
/// probe account, whose key lives in AWS (see [`render_probed`]).
pub fn render(services: &[Service], owner: &str) -> Vec<Desired> {
    services.iter().map(|s| render::render(s, owner)).collect()
}

/// [`render`] with the probe account of each service that enables it: its public key from the
/// probe-key secret when that secret is ours, a new pair (which the plan stores before the task
/// definition that authorises it) when there is no secret. A secret of that name that is not
/// ours never authorises anything: the account is left out and the plan reports the conflict.
pub fn render_probed(
    services: &[Service],
    owner: &str,
    secrets: &[Secret],
) -> Result<Vec<Desired>, crate::sshkeys::KeygenError> {
    services
        .iter()
        .map(|s| {
            let Some(probe) = &s.probe else { return Ok(render::render(s, owner)) };
            let Some(live) = secrets.iter().find(|x| x.name == probe.secret) else {
                let pair = crate::sshkeys::generate_probe_key(&probe.secret)?;
                return Ok(render::render_probed(s, owner, Some(&pair.public.clone()), Some(pair)));
            };
            let ours = live.tags.get(crate::names::OWNER_TAG).is_some_and(|o| o == owner)
                && live.tags.get(crate::names::SERVICE_TAG).is_some_and(|n| *n == s.name);
            let key = live.public_keys().first().and_then(|k| crate::sshkeys::parse_public_key(k).ok());
            Ok(render::render_probed(s, owner, key.as_ref().filter(|_| ours), None))
        })
        .collect()
}

/// Renders, and the scope observe reads: when a service has the probe account, its secret is
/// read first (one ListSecrets, not repeated by observe) so the account's key is in the
/// rendering the ECS service's hash is compared with.
async fn render_and_scope(
    clients: &Clients,
    services: &[Service],
    owner: &str,
    reach: Reach,
) -> Result<(Vec<Desired>, Scope), AwsError> {
    let desired = render(services, owner);
    if !services.iter().any(|s| s.probe.is_some()) {
        let scope = scope(&desired, reach);
        return Ok((desired, scope));
    }
    let probe_secrets: Vec<&str> = services.iter().filter_map(|s| Some(s.probe.as_ref()?.secret.as_str())).collect();
    let secrets = observe::secrets_in(clients, &scope(&desired, reach), &probe_secrets).await?;
    let desired =
        render_probed(services, owner, &secrets).map_err(|e| AwsError::other("CreateSecret", e.to_string()))?;
    let mut scope = scope(&desired, reach);
    scope.secrets_read = Some(secrets);
    Ok((desired, scope))
}

fn scope(desired: &[Desired], reach: Reach) -> Scope {
    let mut scope = Scope::of(desired);
    scope.list_all_services = reach.every_service;
    scope.cloud_map_instances = reach.cloud_map_instances;
    scope.deep = reach.deep;
    scope
}

/// Renders, observes and plans: everything before the first mutating call.
pub async fn prepare(
    clients: &Clients,
    services: &[Service],
    options: &Options,
    reach: Reach,
) -> Result<Prepared, AwsError> {
    let reach = Reach { every_service: reach.every_service || options.prune, ..reach };
    let (desired, scope) = render_and_scope(clients, services, &options.owner, reach).await?;
    let mut observed = observe::observe(clients, &scope).await?;
    let mut plan = plan::plan_with(&desired, &observed, options, reach.group_rules);
    // Before creating an ECS service, look at every service in its cluster: one already behind
    // the same target group (a setup made by hand) must be adopted, never doubled.
    if !reach.every_service && creates_ecs_service(&plan) {
        let census = observe::every_ecs_service(clients, &scope).await?;
        (observed.ecs_services, observed.host_ports) = census;
        plan = plan::plan_with(&desired, &observed, options, reach.group_rules);
    }
    // How a service rolls depends on a free container instance: counted only when one rolls.
    if rolls_ecs_service(&plan) {
        observed.container_instances = match observe::container_instances(clients, &scope).await {
            Ok(instances) => instances,
            // A role from before this release: roll the safe way (stop first) rather than fail.
            Err(e) if e.is("AccessDeniedException") => {
                tracing::warn!(error = %e, "cannot count container instances; rolling with the running task stopped first");
                scope.clusters.iter().map(|c| (c.clone(), Vec::new())).collect()
            }
            Err(e) => return Err(e),
        };
        plan = plan::plan_with(&desired, &observed, options, reach.group_rules);
    }
    Ok(Prepared { desired, observed, plan })
}

fn rolls_ecs_service(plan: &Plan) -> bool {
    plan.actionable().flat_map(|c| &c.ops).any(|op| matches!(op, plan::Op::UpdateEcsService { rolls: true, .. }))
}

fn creates_ecs_service(plan: &Plan) -> bool {
    plan.actionable().flat_map(|c| &c.ops).any(|op| matches!(op, plan::Op::CreateEcsService { .. }))
}

/// Like [`prepare`], but plans the deletion of everything the services own.
pub async fn prepare_delete(clients: &Clients, services: &[Service], options: &Options) -> Result<Prepared, AwsError> {
    let desired = render(services, &options.owner);
    let reach = Reach { every_service: true, deep: true, ..Reach::default() };
    let observed = observe::observe(clients, &scope(&desired, reach)).await?;
    let plan = plan::plan_delete(&desired, &observed, &options.owner);
    Ok(Prepared { desired, observed, plan })
}

/// Applies a prepared plan; when that generated host keys for a service with SSHFP records,
/// observes and plans once more so the records that depend on the new keys land in the same run.
pub async fn apply(
    clients: &Clients,
    services: &[Service],
    options: &Options,
    prepared: &Prepared,
) -> Result<Vec<Applied>, AwsError> {
    let mut applied = apply::apply(clients, &prepared.plan, &prepared.observed).await;
    let new_keys: Vec<&str> = applied
        .iter()
        .filter(|a| a.kind == Kind::HostKeySecret && a.action == Action::Create && a.error.is_none())
        .map(|a| a.service.as_str())
        .collect();
    // Only SSHFP records depend on the new keys' public halves.
    let sshfp = |d: &Desired| d.dns.as_ref().is_some_and(|dns| dns.sshfp);
    if prepared.desired.iter().any(|d| new_keys.contains(&d.service.as_str()) && sshfp(d)) {
        let (desired, scope) = render_and_scope(clients, services, &options.owner, Reach::default()).await?;
        let observed = observe::observe(clients, &scope).await?;
        // Only records follow the new keys; the rules were planned with the first pass.
        let plan = plan::plan_with(&desired, &observed, options, plan::GroupRules::Leave);
        if plan.has_changes() {
            tracing::info!("follow-up pass for records that depend on the new host keys");
            applied.extend(apply::apply(clients, &plan, &observed).await);
        }
    }
    Ok(applied)
}

/// Why a reconcile failed: for the error policy (throttling backs off further), the logs and
/// the `sftp_operator_reconcile_errors_total{category}` label.
#[derive(Debug, Clone)]
pub enum ReconcileError {
    /// Observing (or the follow-up observe) failed.
    Aws(AwsError),
    /// Changes failed; each carries its AWS error.
    Apply(Vec<ApplyError>),
    /// The plan has problems: nothing was applied.
    Blocked(Problem),
}

impl ReconcileError {
    /// Throttled by AWS anywhere: the whole account is busy, not just this service.
    pub fn throttled(&self) -> bool {
        match self {
            ReconcileError::Aws(e) => e.throttled,
            ReconcileError::Apply(errors) => errors.iter().any(ApplyError::throttled),
            ReconcileError::Blocked(_) => false,
        }
    }

    /// The metric label: `throttled`, `aws`, `apply` or `blocked`.
    pub fn category(&self) -> &'static str {
        match self {
            _ if self.throttled() => "throttled",
            ReconcileError::Aws(_) => "aws",
            ReconcileError::Apply(_) => "apply",
            ReconcileError::Blocked(_) => "blocked",
        }
    }
}

impl From<AwsError> for ReconcileError {
    fn from(e: AwsError) -> Self {
        ReconcileError::Aws(e)
    }
}

impl fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconcileError::Aws(e) if e.throttled => write!(f, "throttled by AWS: {e}"),
            ReconcileError::Aws(e) => write!(f, "AWS: {e}"),
            ReconcileError::Apply(errors) if self.throttled() => {
                let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                write!(f, "throttled by AWS: {}", text.join("; "))
            }
            ReconcileError::Apply(errors) => write!(f, "{} change(s) failed", errors.len()),
            ReconcileError::Blocked(problem) => write!(f, "blocked: {}", problem.message),
        }
    }
}

impl std::error::Error for ReconcileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReconcileError::Aws(e) => Some(e),
            ReconcileError::Apply(errors) => errors.first().map(|e| e as _),
            ReconcileError::Blocked(_) => None,
        }
    }
}

/// The machine spelling of a plan enum (its serde name: `host-key-secret`, `create`), for
/// metric labels and log fields; `Kind::as_str` stays the words reports print.
// TODO(plan split): an inherent `label()` on Kind and Action in plan replaces this trait.
pub trait Label: Copy {
    fn label(self) -> &'static str;
}

impl Label for Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::HostKeySecret => "host-key-secret",
            Kind::ProbeKeySecret => "probe-key-secret",
            Kind::TaskDefinition => "task-definition",
            Kind::TargetGroup => "target-group",
            Kind::Listener => "listener",
            Kind::IngressRule => "ingress-rule",
            Kind::CloudMapService => "cloud-map-service",
            Kind::EcsService => "ecs-service",
            Kind::DnsRecord => "dns-record",
        }
    }
}

impl Label for Action {
    fn label(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Conflict => "conflict",
        }
    }
}

/// Every kind, in plan order (per-kind gauges are set for each, zero included).
pub const ALL_KINDS: [Kind; 9] = [
    Kind::HostKeySecret,
    Kind::ProbeKeySecret,
    Kind::TaskDefinition,
    Kind::TargetGroup,
    Kind::Listener,
    Kind::IngressRule,
    Kind::CloudMapService,
    Kind::EcsService,
    Kind::DnsRecord,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn probed_service() -> Service {
        let text = crate::validate::tests::MANIFEST.replace("  access:\n", "  probe: {enabled: true}\n  access:\n");
        crate::validate::tests::service(&text)
    }

    fn probe_env(d: &Desired) -> Option<String> {
        let users = d.task_definition.container_definitions[0].environment.iter().find(|e| e.name == "SFTP_USERS");
        users.map(|e| e.value.clone()).filter(|v| v.contains(crate::model::PROBE_USER))
    }

    #[test]
    fn the_probe_account_is_rendered_with_the_key_of_an_owned_secret_only() {
        let s = probed_service();
        let pair = crate::sshkeys::generate_probe_key("k").unwrap();
        let mut secret = Secret {
            arn: "arn:secret".into(),
            name: "sftp-operator/drop/probe-key".into(),
            description: Some(crate::codec::probe_key_description(&pair.public.line())),
            tags: render::tags(&s, "o"),
        };
        let d = render_probed(std::slice::from_ref(&s), "o", std::slice::from_ref(&secret)).unwrap().remove(0);
        assert!(probe_env(&d).is_some_and(|u| u.contains("sftp-probe::59999:59999:probe")), "{:?}", probe_env(&d));
        assert_eq!(d.probe.as_ref().unwrap().new_key, None, "an existing key is never replaced");
        assert!(format!("{:?}", d.task_definition).contains(&pair.public.blob));

        secret.tags = [("team".to_owned(), "payroll".to_owned())].into();
        let d = render_probed(std::slice::from_ref(&s), "o", &[secret]).unwrap().remove(0);
        assert_eq!(probe_env(&d), None, "a key someone else keeps authorises nothing");
    }

    #[test]
    fn without_a_secret_a_new_pair_is_generated_and_rendered() {
        let d = render_probed(&[probed_service()], "o", &[]).unwrap().remove(0);
        let key = d.probe.as_ref().unwrap().new_key.clone().expect("a new pair");
        assert!(probe_env(&d).is_some());
        assert!(format!("{:?}", d.task_definition).contains(&key.public.blob));
        assert_ne!(d.rendering_hash, render(&[probed_service()], "o")[0].rendering_hash, "the account is in the hash");
    }

    #[test]
    fn labels_are_the_serde_names() {
        for k in ALL_KINDS {
            assert_eq!(serde_json::to_value(k).unwrap(), k.label(), "{k:?}");
        }
        for a in [Action::Create, Action::Update, Action::Delete, Action::Conflict] {
            assert_eq!(serde_json::to_value(a).unwrap(), a.label(), "{a:?}");
        }
    }

    #[test]
    fn all_kinds_holds_every_kind_once() {
        // Adding a Kind breaks this match first, then the count below.
        let index = |k: Kind| match k {
            Kind::HostKeySecret => 0,
            Kind::ProbeKeySecret => 1,
            Kind::TaskDefinition => 2,
            Kind::TargetGroup => 3,
            Kind::Listener => 4,
            Kind::IngressRule => 5,
            Kind::CloudMapService => 6,
            Kind::EcsService => 7,
            Kind::DnsRecord => 8,
        };
        let mut seen: Vec<usize> = ALL_KINDS.iter().map(|k| index(*k)).collect();
        seen.dedup();
        assert_eq!(seen, (0..ALL_KINDS.len()).collect::<Vec<_>>());
    }

    #[test]
    fn categories_come_from_the_typed_error() {
        let throttled = AwsError {
            operation: "DescribeServices",
            code: "ThrottlingException".into(),
            message: "Rate exceeded".into(),
            throttled: true,
        };
        let plain = AwsError::other("DescribeServices", "boom");
        assert_eq!(ReconcileError::Aws(throttled.clone()).category(), "throttled");
        assert_eq!(ReconcileError::Aws(plain.clone()).category(), "aws");
        assert_eq!(ReconcileError::Apply(vec![ApplyError::Aws(plain.clone())]).category(), "apply");
        assert_eq!(
            ReconcileError::Apply(vec![ApplyError::Skipped, ApplyError::Aws(throttled.clone())]).category(),
            "throttled"
        );
        assert_eq!(
            ReconcileError::Blocked(Problem { service: "s".into(), message: "quota".into() }).category(),
            "blocked"
        );
        assert_eq!(ReconcileError::Aws(plain.clone()).to_string(), "AWS: DescribeServices: Invalid: boom");
        assert_eq!(ReconcileError::Apply(vec![ApplyError::Aws(plain)]).to_string(), "1 change(s) failed");
        assert_eq!(
            ReconcileError::Aws(throttled).to_string(),
            "throttled by AWS: DescribeServices: ThrottlingException: Rate exceeded"
        );
    }
}
