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
use crate::observed::Observed;
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

/// What each service should own, for this owner.
pub fn render(services: &[Service], owner: &str) -> Vec<Desired> {
    services.iter().map(|s| render::render(s, owner)).collect()
}

fn scope(desired: &[Desired], reach: Reach) -> Scope {
    let mut scope = Scope::of(desired);
    scope.list_all_services = reach.every_service;
    scope.cloud_map_instances = reach.cloud_map_instances;
    scope.deep = reach.deep;
    scope
}

async fn observe(clients: &Clients, desired: &[Desired], reach: Reach) -> Result<Observed, AwsError> {
    observe::observe(clients, &scope(desired, reach)).await
}

/// Renders, observes and plans: everything before the first mutating call.
pub async fn prepare(
    clients: &Clients,
    services: &[Service],
    options: &Options,
    reach: Reach,
) -> Result<Prepared, AwsError> {
    let desired = render(services, &options.owner);
    let reach = Reach { every_service: reach.every_service || options.prune, ..reach };
    let mut observed = observe(clients, &desired, reach).await?;
    let mut plan = plan::plan_with(&desired, &observed, options, reach.group_rules);
    // Before creating an ECS service, look at every service in its cluster: one already behind
    // the same target group (a setup made by hand) must be adopted, never doubled.
    if !reach.every_service && creates_ecs_service(&plan) {
        let census = observe::every_ecs_service(clients, &scope(&desired, reach)).await?;
        (observed.ecs_services, observed.host_ports) = census;
        plan = plan::plan_with(&desired, &observed, options, reach.group_rules);
    }
    Ok(Prepared { desired, observed, plan })
}

fn creates_ecs_service(plan: &Plan) -> bool {
    plan.actionable().flat_map(|c| &c.ops).any(|op| matches!(op, plan::Op::CreateEcsService { .. }))
}

/// Like [`prepare`], but plans the deletion of everything the services own.
pub async fn prepare_delete(clients: &Clients, services: &[Service], options: &Options) -> Result<Prepared, AwsError> {
    let desired = render(services, &options.owner);
    let observed = observe(clients, &desired, Reach { every_service: true, deep: true, ..Reach::default() }).await?;
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
        let desired = render(services, &options.owner);
        let observed = observe(clients, &desired, Reach::default()).await?;
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
pub const ALL_KINDS: [Kind; 8] = [
    Kind::HostKeySecret,
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
            Kind::TaskDefinition => 1,
            Kind::TargetGroup => 2,
            Kind::Listener => 3,
            Kind::IngressRule => 4,
            Kind::CloudMapService => 5,
            Kind::EcsService => 6,
            Kind::DnsRecord => 7,
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
