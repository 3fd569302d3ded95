//! `run`: the operator as a long-lived controller. Wires the control loop to the real
//! reconciler, the manifest watcher, the ECS event poller, the lease and the metrics server.
//!
//! ```text
//! manifests ─watch─▶ last good set ─┐            ┌─▶ observe ─▶ plan ─▶ apply (leader only)
//! SQS events ───────────────────────┼─▶ loop ────┤
//! resync ───────────────────────────┘            └─▶ metrics, logs
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc, watch};
use tracing::Instrument;

use crate::aws::apply::{Applied, ApplyError};
use crate::aws::lease::Lease;
use crate::aws::{Clients, Outcome};
use crate::controller::{self, LoopConfig, Next, Outcomes, Reconciler, Trigger};
use crate::load::LoadError;
use crate::metrics::{self, Metrics};
use crate::model::Service;
use crate::plan::{GroupRules, Kind, Problem, group_scope};
use crate::reconcile::{self, ALL_KINDS, Label, Options, Prepared, Reach, ReconcileError};
use crate::render::Desired;
use crate::rollout;

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub paths: Vec<PathBuf>,
    /// Never with `prune`: deleting on a timer is too easy to regret.
    pub options: Options,
    pub region: Option<String>,
    pub metrics_addr: SocketAddr,
    pub events_queue_url: Option<String>,
    pub lease_table: Option<String>,
    pub lease_duration: Duration,
    pub manifest_poll: Duration,
    /// What every pass reads at least (`--deep`: everything, every pass).
    pub reach: Reach,
    /// How often the batched pass reads everything, trusting no rendering hash.
    pub deep_check_interval: Duration,
    /// How soon a service whose ECS rollout is under way is looked at again.
    pub rollout_poll: Duration,
    pub loop_config: LoopConfig,
    /// How the services with a probe account are probed.
    pub probe: crate::probe::cadence::ProbeConfig,
}

/// How long `run` follows a rollout it started before leaving it to the resync: ECS deployments
/// usually finish within minutes; one that cannot place its tasks may stay IN_PROGRESS for hours.
const ROLLOUT_FOLLOW_WINDOW: Duration = Duration::from_secs(30 * 60);

/// When the batched pass reads everything ([`Reach::deep`]): on the first pass, then whenever
/// the last deep pass is older than the interval. Per-service passes never do.
#[derive(Debug)]
struct DeepCheck {
    interval: Duration,
    last: Option<Instant>,
}

impl DeepCheck {
    fn due(&self, now: Instant) -> bool {
        self.last.is_none_or(|last| now.saturating_duration_since(last) >= self.interval)
    }
}

/// What one service's part of a pass came to: `success` or `skipped` (not leading, or gone
/// from the manifests), or why it failed.
type Passed = Result<&'static str, ReconcileError>;

/// A pass's outcome per service, and the services whose rollout the next pass must see.
struct Pass {
    outcomes: BTreeMap<String, Passed>,
    rolling: BTreeSet<String>,
}

/// A service with a problem is blocked (its first problem says why); the others are not.
fn blocked(outcomes: &mut BTreeMap<String, Passed>, problems: &[Problem]) {
    for p in problems {
        match outcomes.get_mut(&p.service) {
            Some(o @ Ok(_)) => *o = Err(ReconcileError::Blocked(p.clone())),
            Some(Err(_)) => {}
            // A security group no manifest service uses any more.
            None => tracing::warn!(scope = %p.service, problem = %p.message, "blocked"),
        }
    }
}

/// The services on each security group, by the group's scope (`security-group/ID`).
fn groups(desired: &[Desired]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in desired {
        out.entry(group_scope(&d.security_group_id)).or_default().push(d.service.clone());
    }
    out
}

/// A service with failed changes fails with all of them. A security group's rules are shared:
/// a failed change of them fails every service on the group.
fn failed(outcomes: &mut BTreeMap<String, Passed>, groups: &BTreeMap<String, Vec<String>>, applied: &[Applied]) {
    let mut errors: BTreeMap<&str, Vec<ApplyError>> = BTreeMap::new();
    for a in applied {
        let Some(e) = &a.error else { continue };
        let owners = groups
            .get(&a.service)
            .map(|on| on.iter().map(String::as_str).collect())
            .unwrap_or_else(|| vec![a.service.as_str()]);
        for s in owners {
            errors.entry(s).or_default().push(e.clone());
        }
    }
    for (s, errors) in errors {
        if let Some(o @ Ok(_)) = outcomes.get_mut(s) {
            *o = Err(ReconcileError::Apply(errors));
        }
    }
}

/// The real reconciler: observe → plan → apply, for every service in one batched pass or for
/// one service, with metrics per service.
pub struct OperatorReconciler {
    clients: Clients,
    services: watch::Receiver<Arc<Vec<Service>>>,
    options: Options,
    metrics: Arc<Metrics>,
    lease: Option<Arc<Lease>>,
    ready: Arc<AtomicBool>,
    attempted: Mutex<HashSet<String>>,
    reach: Reach,
    deep: Mutex<DeepCheck>,
    rollout_poll: Duration,
    /// Ids of the failed deployments counted in `rollout_failed_total`: each once.
    failed_deployments: std::sync::Mutex<HashSet<String>>,
    /// Rollouts this process started (by service, since when): followed every `rollout_poll`
    /// for at most [`ROLLOUT_FOLLOW_WINDOW`]. Others, and older ones (a deployment stuck for
    /// want of capacity), are looked at by the resync like every service.
    following: std::sync::Mutex<HashMap<String, Instant>>,
    /// Rollouts (`service/family:revision`) this process saw in progress.
    watched: std::sync::Mutex<HashSet<String>>,
    /// What each pass saw of the services with a probe account, for the probe loop.
    probe_subjects: crate::probe::cadence::Subjects,
}

impl OperatorReconciler {
    async fn mark_attempted(&self, names: impl IntoIterator<Item = &str>) {
        let mut seen = self.attempted.lock().await;
        seen.extend(names.into_iter().map(str::to_owned));
        let all = self.services.borrow().iter().all(|s| seen.contains(&s.name));
        if all {
            self.ready.store(true, Ordering::Relaxed);
        }
    }

    async fn leading(&self) -> bool {
        leads(self.lease.as_deref()).await
    }

    /// The named services of the current manifest set, in its order.
    fn current(&self, names: &[String]) -> Vec<Service> {
        self.services.borrow().iter().filter(|s| names.contains(&s.name)).cloned().collect()
    }

    /// One observe → plan → apply over `services`: each one's outcome, or `Err` when the pass
    /// failed as a whole (observe, or the follow-up observe after new host keys). A service with
    /// a problem is blocked on its own; the others are still applied.
    async fn pass(&self, services: &[Service], reach: Reach) -> Result<Pass, ReconcileError> {
        let mut outcomes: BTreeMap<String, Passed> = services.iter().map(|s| (s.name.clone(), Ok("skipped"))).collect();
        if services.is_empty() || !self.leading().await {
            return Ok(Pass { outcomes, rolling: BTreeSet::new() });
        }
        let observing = Instant::now();
        let mut prepared = reconcile::prepare(&self.clients, services, &self.options, reach).await?;
        if reach.deep {
            self.deep.lock().await.last = Some(observing);
        }
        self.observed_metrics(services, &prepared);
        let names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
        self.probe_subjects.remember(&names, &prepared.desired, &prepared.observed);
        let (mut rolling, held) = self.rollouts(&prepared);
        // A rendering whose deployment failed is not rolled out again on a timer (the circuit
        // breaker would only roll it back again): it waits for a manifest change or a converge.
        for service in &held {
            tracing::warn!(service = %service, "holding the ECS service: its deployment of this manifest failed; a manifest change or `converge` retries it");
        }
        prepared.plan.changes.retain(|c| !(held.contains(&c.service) && c.kind == Kind::EcsService));
        let plan = &prepared.plan;
        outcomes.values_mut().for_each(|o| *o = Ok("success"));
        blocked(&mut outcomes, &plan.problems);
        if !plan.has_changes() {
            return Ok(Pass { outcomes, rolling });
        }
        // Leadership is checked again right before mutating: a lost lease stops us at once.
        if !self.leading().await {
            outcomes.values_mut().filter(|o| o.is_ok()).for_each(|o| *o = Ok("skipped"));
            return Ok(Pass { outcomes, rolling });
        }
        let applied = reconcile::apply(&self.clients, services, &self.options, &prepared).await?;
        for a in &applied {
            match &a.error {
                None => {
                    tracing::info!(service = %a.service, kind = a.kind.as_str(), name = %a.name, action = ?a.action, "applied");
                    let labels = [a.service.as_str(), a.kind.label(), a.action.label()];
                    self.metrics.changes_applied_total.with_label_values(&labels).inc();
                }
                Some(e) => {
                    tracing::warn!(service = %a.service, kind = a.kind.as_str(), name = %a.name, error = %e, "change failed");
                }
            }
        }
        // A deployment this apply started shows only in the next observe: look again soon.
        let changed_ecs = applied.iter().filter(|a| a.kind == Kind::EcsService && a.error.is_none());
        let changed: Vec<String> = changed_ecs.map(|a| a.service.clone()).collect();
        let now = Instant::now();
        self.following.lock().unwrap_or_else(|e| e.into_inner()).extend(changed.iter().map(|s| (s.clone(), now)));
        rolling.extend(changed);
        failed(&mut outcomes, &groups(&prepared.desired), &applied);
        Ok(Pass { outcomes, rolling })
    }

    /// Follows the deployment of the task definition each service was last applied with: the
    /// services still rolling out (to look at again soon); a failed or rolled-back deployment
    /// is counted once per deployment and logged.
    fn rollouts(&self, prepared: &Prepared) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut rolling = BTreeSet::new();
        let mut held = BTreeSet::new();
        for d in &prepared.desired {
            let want = &d.ecs_service;
            let live = prepared
                .observed
                .ecs_services
                .iter()
                .find(|s| s.cluster == want.cluster && s.name == want.name && s.status == "ACTIVE");
            let Some((live, ours)) = live.and_then(|s| Some((s, rollout::applied(s, &d.names.task_family)?))) else {
                continue;
            };
            let rollout_key = format!("{}/{ours}", d.service);
            let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            match rollout::outcome(live, &ours) {
                rollout::Outcome::InProgress { running, desired } => {
                    tracing::debug!(service = %d.service, task_definition = %ours, running, desired, "rollout in progress");
                    watched.insert(rollout_key);
                    if self.follows(&d.service) {
                        rolling.insert(d.service.clone());
                    }
                }
                rollout::Outcome::Completed => {
                    watched.remove(&rollout_key);
                    self.unfollow(&d.service);
                }
                rollout::Outcome::Failed(f) => {
                    if rollout::failed_as_rendered(live, &d.rendering_hash) {
                        held.insert(d.service.clone());
                    }
                    // Counted only when this process saw it roll (or started it): a failure
                    // from before a restart or a leader change is not counted again.
                    let witnessed = watched.remove(&rollout_key) || self.follows(&d.service);
                    self.unfollow(&d.service);
                    // Without a listed deployment, the failure is known by what failed.
                    let keys = if f.deployments.is_empty() {
                        vec![format!("{}/{ours}", d.service)]
                    } else {
                        f.deployments.clone()
                    };
                    let mut counted = self.failed_deployments.lock().unwrap_or_else(|e| e.into_inner());
                    let seen = keys.iter().any(|k| counted.contains(k));
                    counted.extend(keys);
                    if seen {
                        continue;
                    }
                    if witnessed {
                        self.metrics.rollout_failed_total.with_label_values(&[&d.service]).inc();
                    }
                    tracing::warn!(
                        service = %d.service,
                        deployments = ?f.deployments,
                        reason = %f.reason,
                        rolled_back_to = f.rolled_back_to.as_deref().unwrap_or("(none)"),
                        "{f}"
                    );
                }
            }
        }
        (rolling, held)
    }

    /// Whether `service`'s rollout is one this process started, within the follow window.
    fn follows(&self, service: &str) -> bool {
        let mut following = self.following.lock().unwrap_or_else(|e| e.into_inner());
        following.retain(|_, since| since.elapsed() < ROLLOUT_FOLLOW_WINDOW);
        following.contains_key(service)
    }

    fn unfollow(&self, service: &str) {
        self.following.lock().unwrap_or_else(|e| e.into_inner()).remove(service);
    }

    /// What a service asks of the loop after a pass that did not fail for it.
    fn next(&self, rolling: &BTreeSet<String>, service: &str) -> Next {
        if rolling.contains(service) { Next::RequeueAfter(self.rollout_poll) } else { Next::AwaitChange }
    }

    /// Per-service gauges and drift from what a pass observed and planned. A security group's
    /// changes count under its own label (`security-group/ID`), toward no service.
    fn observed_metrics(&self, services: &[Service], prepared: &Prepared) {
        let m = &self.metrics;
        let Prepared { observed, plan, desired } = prepared;
        for service in services {
            let name = service.name.as_str();
            for kind in ALL_KINDS {
                let n = plan.conflicts().filter(|c| c.service == name && c.kind == kind).count();
                m.conflicts.with_label_values(&[name, kind.label()]).set(n as i64);
            }
            m.desired_tasks.with_label_values(&[name]).set(i64::from(service.desired_count));
            // The series exists from the start, so `increase()` sees the first failure.
            m.rollout_failed_total.with_label_values(&[name]).inc_by(0);
            let running = observed
                .ecs_services
                .iter()
                .find(|s| s.cluster == service.cluster && s.name == service.names.ecs_service)
                .and_then(|s| s.running_count)
                .unwrap_or(0);
            m.running_tasks.with_label_values(&[name]).set(i64::from(running));
            if let Some(p) = observed.placements.get(&service.names.ecs_service) {
                m.dns_records_published.with_label_values(&[name]).set(p.host_ips.len() as i64);
            }
        }
        let groups: BTreeSet<String> = desired.iter().map(|d| group_scope(&d.security_group_id)).collect();
        for group in &groups {
            let n = plan.conflicts().filter(|c| &c.service == group).count();
            m.conflicts.with_label_values(&[group, Kind::IngressRule.label()]).set(n as i64);
        }
        for c in plan.actionable() {
            m.drift_detected_total.with_label_values(&[&c.service, c.kind.label()]).inc();
        }
    }

    /// Per-service metrics and the readiness flag for the outcomes of a pass.
    async fn record(&self, outcomes: &BTreeMap<String, Passed>, took: Duration) {
        let m = &self.metrics;
        for (service, outcome) in outcomes {
            let service = service.as_str();
            m.reconcile_duration_seconds.with_label_values(&[service]).observe(took.as_secs_f64());
            match outcome {
                Ok(result) => {
                    m.reconcile_total.with_label_values(&[service, result]).inc();
                    if *result == "success" {
                        m.last_successful_reconcile_timestamp_seconds
                            .with_label_values(&[service])
                            .set(metrics::now_seconds());
                    }
                }
                Err(e) => {
                    m.reconcile_total.with_label_values(&[service, "error"]).inc();
                    m.reconcile_errors_total.with_label_values(&[service, e.category()]).inc();
                }
            }
        }
        self.mark_attempted(outcomes.keys().map(String::as_str)).await;
    }

    /// A pass over `names` with its metrics: each one's outcome, the whole pass's error given to
    /// each when it failed as a whole.
    async fn run_pass(&self, names: &[String], reach: Reach) -> (Pass, Option<ReconcileError>) {
        let started = Instant::now();
        let services = self.current(names);
        let result = self.pass(&services, reach).await;
        let (mut pass, whole) = match result {
            Ok(pass) => (pass, None),
            Err(e) => {
                let outcomes = services.iter().map(|s| (s.name.clone(), Err(e.clone()))).collect();
                (Pass { outcomes, rolling: BTreeSet::new() }, Some(e))
            }
        };
        // Named, but gone from the manifests since: nothing to do.
        for n in names {
            pass.outcomes.entry(n.clone()).or_insert(Ok("skipped"));
        }
        self.record(&pass.outcomes, started.elapsed()).await;
        (pass, whole)
    }
}

impl Reconciler for OperatorReconciler {
    async fn reconcile(&self, service: String) -> Result<Next, ReconcileError> {
        let span = tracing::info_span!("reconcile", service = %service);
        async {
            let names = [service];
            // One service cannot plan a group shared with others: rules wait for the batched pass.
            let reach = Reach { group_rules: GroupRules::Leave, ..self.reach };
            let (mut pass, _) = self.run_pass(&names, reach).await;
            let next = self.next(&pass.rolling, &names[0]);
            pass.outcomes.remove(&names[0]).unwrap_or(Ok("skipped")).map(|_| next)
        }
        .instrument(span)
        .await
    }

    async fn reconcile_all(&self, services: Vec<String>) -> Result<Outcomes, ReconcileError> {
        let started = Instant::now();
        let deep = self.reach.deep || self.deep.lock().await.due(started);
        let span = tracing::info_span!("reconcile_all", services = services.len(), deep);
        async {
            // Every service of the manifest set: owned ports none of them accounts for close.
            let reach = Reach { deep, group_rules: GroupRules::CloseUnaccounted, ..self.reach };
            let (pass, whole) = self.run_pass(&services, reach).await;
            if let Some(e) = whole {
                return Err(e);
            }
            let failed = pass.outcomes.values().filter(|o| o.is_err()).count();
            tracing::debug!(services = pass.outcomes.len(), failed, took = ?started.elapsed(), "batched pass done");
            let Pass { outcomes, rolling } = pass;
            Ok(outcomes
                .into_iter()
                .map(|(s, o)| {
                    let next = self.next(&rolling, &s);
                    (s, o.map(|_| next))
                })
                .collect())
        }
        .instrument(span)
        .await
    }
}

/// Reads and validates the manifest set; `None` (with the problems logged) when it is bad.
fn load(paths: &[PathBuf]) -> Result<(String, Vec<Service>), LoadError> {
    let sources = crate::load::read_sources(paths)?;
    let mut h = Sha256::new();
    for s in &sources {
        h.update(s.path.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(s.text.as_bytes());
    }
    let hash = hex::encode(h.finalize());
    let services = crate::validate::load_and_validate(&sources)?;
    Ok((hash, services))
}

/// Re-reads the manifests when inotify reports a change under their paths (a ConfigMap's
/// `..data` symlink swap included) and, as a fallback, every `poll`; a new set that fails
/// validation is rejected whole and the last good one stays in force.
/// Where a new good manifest set goes: the services, their names, and a trigger for all.
struct Publish {
    services: watch::Sender<Arc<Vec<Service>>>,
    names: watch::Sender<Vec<String>>,
    triggers: mpsc::UnboundedSender<Trigger>,
}

async fn watch_manifests(
    paths: Vec<PathBuf>,
    poll: Duration,
    mut hash: String,
    publish: Publish,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let _watcher = {
        use notify::Watcher;
        let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Our own re-reads open the files: access events must not trigger another read.
            if res.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                let _ = tx.send(());
            }
        })
        .ok();
        for p in &paths {
            let dir = if p.is_dir() { p.clone() } else { p.parent().map(PathBuf::from).unwrap_or_else(|| ".".into()) };
            if let Some(w) = w.as_mut()
                && let Err(e) = w.watch(&dir, notify::RecursiveMode::Recursive)
            {
                tracing::warn!(path = %dir.display(), error = %e, "cannot watch; polling only");
            }
        }
        w
    };
    let mut last_error = String::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            // Without a watcher (its channel closed) the poll alone drives re-reads.
            Some(()) = rx.recv() => {}
            _ = tokio::time::sleep(poll) => {}
        }
        while rx.try_recv().is_ok() {}
        match load(&paths) {
            Ok((h, _)) if h == hash => {}
            Ok((h, services)) => {
                tracing::info!(services = services.len(), "manifests changed; reconciling");
                hash = h;
                last_error.clear();
                let _ = publish.names.send(services.iter().map(|s| s.name.clone()).collect());
                let _ = publish.services.send(Arc::new(services));
                let _ = publish.triggers.send(Trigger::All);
            }
            Err(e) => {
                let e = e.to_string();
                if e != last_error {
                    metrics.manifest_load_errors_total.inc();
                    tracing::error!(problems = %e, "new manifests rejected; the last good set stays in force");
                    last_error = e;
                }
            }
        }
    }
}

pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Manifests(LoadError),
    #[error("metrics server on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// The `run` command: serves until SIGTERM or Ctrl-C.
pub async fn operate(cfg: RunConfig) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let (hash, initial) = load(&cfg.paths).map_err(RunError::Manifests)?;
    let clients = Clients::from_env(cfg.region.clone()).await;
    feed_call_metrics(&clients, &metrics);
    let owner = &cfg.options.owner;
    let ready = Arc::new(AtomicBool::new(initial.is_empty()));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let bound = serve_metrics(&cfg, &metrics, &ready, &shutdown_rx).await?;
    tracing::info!(addr = %bound, services = initial.len(), owner = %owner, "sftp-operator running");

    let (services_tx, services_rx) = watch::channel(Arc::new(initial.clone()));
    let (names_tx, names_rx) = watch::channel(initial.iter().map(|s| s.name.clone()).collect::<Vec<_>>());
    let (trigger_tx, trigger_rx) = mpsc::unbounded_channel();
    let lease = elect(&cfg, &clients, &metrics, &trigger_tx, &shutdown_rx);
    tokio::spawn(watch_manifests(
        cfg.paths.clone(),
        cfg.manifest_poll,
        hash,
        Publish { services: services_tx, names: names_tx, triggers: trigger_tx.clone() },
        metrics.clone(),
        shutdown_rx.clone(),
    ));
    if let Some(url) = &cfg.events_queue_url {
        poll_events(&clients, url, &services_rx, &trigger_tx, &metrics, &shutdown_rx);
    }

    let reconciler = Arc::new(OperatorReconciler {
        clients: clients.clone(),
        services: services_rx,
        options: cfg.options.clone(),
        metrics: metrics.clone(),
        lease: lease.clone(),
        ready: ready.clone(),
        attempted: Mutex::new(HashSet::new()),
        reach: cfg.reach,
        deep: Mutex::new(DeepCheck { interval: cfg.deep_check_interval, last: None }),
        rollout_poll: cfg.rollout_poll,
        failed_deployments: std::sync::Mutex::new(HashSet::new()),
        following: std::sync::Mutex::new(HashMap::new()),
        watched: std::sync::Mutex::new(HashSet::new()),
        probe_subjects: crate::probe::cadence::Subjects::default(),
    });
    let probe_lease = lease.clone();
    tokio::spawn(crate::probe::cadence::probe_loop(
        clients.clone(),
        reconciler.probe_subjects.clone(),
        names_rx.clone(),
        metrics.clone(),
        cfg.probe.clone(),
        move || {
            let lease = probe_lease.clone();
            async move { leads(lease.as_deref()).await }
        },
        shutdown_rx.clone(),
    ));
    let signals = shut_down_on_signal(&shutdown_tx)?;
    controller::run_loop(reconciler, cfg.loop_config.clone(), names_rx, trigger_rx, shutdown_rx, Some(metrics.clone()))
        .await;
    signals.abort();
    if let Some(l) = &lease {
        l.release().await;
        tracing::info!("lease released");
    }
    let _ = shutdown_tx.send(true);
    tracing::info!("stopped");
    Ok(())
}

/// Whether this replica leads: it holds the lease, or runs without one.
async fn leads(lease: Option<&Lease>) -> bool {
    match lease {
        None => true,
        Some(l) => l.is_leader().await,
    }
}

/// Feeds every AWS call the clients make into the API metrics.
fn feed_call_metrics(clients: &Clients, metrics: &Arc<Metrics>) {
    let m = metrics.clone();
    clients.calls.set_observer(Arc::new(move |service, operation, outcome, took| {
        m.record_call(service, operation, outcome.as_str(), outcome == Outcome::Throttled, took)
    }));
}

/// Starts `/metrics`, `/healthz` and `/readyz`, served until shutdown; returns the bound address.
async fn serve_metrics(
    cfg: &RunConfig,
    metrics: &Arc<Metrics>,
    ready: &Arc<AtomicBool>,
    shutdown: &watch::Receiver<bool>,
) -> Result<SocketAddr, RunError> {
    let server_shutdown = {
        let mut rx = shutdown.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    metrics::serve(cfg.metrics_addr, metrics.clone(), ready.clone(), server_shutdown)
        .await
        .map_err(|source| RunError::Metrics { addr: cfg.metrics_addr, source })
}

/// Leader election: with a lease table, the lease is kept in the background and becoming
/// leader reconciles every service at once; without one, this replica is the leader.
fn elect(
    cfg: &RunConfig,
    clients: &Clients,
    metrics: &Arc<Metrics>,
    triggers: &mpsc::UnboundedSender<Trigger>,
    shutdown: &watch::Receiver<bool>,
) -> Option<Arc<Lease>> {
    let Some(table) = &cfg.lease_table else {
        metrics.leader.set(1);
        return None;
    };
    let lease = Lease::new(clients.clone(), table.clone(), &cfg.options.owner, cfg.lease_duration);
    let (leader_tx, mut leader_rx) = watch::channel(false);
    tokio::spawn(lease.clone().keep(metrics.clone(), leader_tx, shutdown.clone()));
    // On becoming leader, reconcile everything at once.
    let t = triggers.clone();
    tokio::spawn(async move {
        while leader_rx.changed().await.is_ok() {
            if *leader_rx.borrow() {
                let _ = t.send(Trigger::All);
            }
        }
    });
    Some(lease)
}

/// Polls the ECS events queue, reconciling the service an event names.
fn poll_events(
    clients: &Clients,
    url: &str,
    services: &watch::Receiver<Arc<Vec<Service>>>,
    triggers: &mpsc::UnboundedSender<Trigger>,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) {
    let triggers = triggers.clone();
    tokio::spawn(crate::aws::events::poll(
        clients.clone(),
        url.to_owned(),
        services.clone(),
        move |service| {
            let _ = triggers.send(Trigger::One(service));
        },
        metrics.clone(),
        shutdown.clone(),
    ));
}

/// On SIGTERM or Ctrl-C, tells everything to finish in-flight work and stop.
fn shut_down_on_signal(shutdown: &watch::Sender<bool>) -> Result<tokio::task::JoinHandle<()>, RunError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let tx = shutdown.clone();
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down: finishing in-flight work");
        let _ = tx.send(true);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsError;
    use crate::plan::Action;

    fn outcomes(names: &[&str]) -> BTreeMap<String, Passed> {
        names.iter().map(|n| (n.to_string(), Ok("success"))).collect()
    }

    fn applied(service: &str, kind: Kind, error: bool) -> Applied {
        let error = error.then(|| ApplyError::Aws(AwsError::other("AuthorizeSecurityGroupIngress", "boom")));
        Applied { service: service.into(), kind, name: "x".into(), action: Action::Create, error }
    }

    fn summary(o: &BTreeMap<String, Passed>) -> Vec<(&str, &str)> {
        o.iter().map(|(s, r)| (s.as_str(), r.as_ref().map_or_else(|e| e.category(), |r| *r))).collect()
    }

    #[test]
    fn the_first_batched_pass_is_deep_then_one_per_interval() {
        let t0 = Instant::now();
        let mut d = DeepCheck { interval: Duration::from_secs(3600), last: None };
        assert!(d.due(t0));
        d.last = Some(t0);
        assert!(!d.due(t0 + Duration::from_secs(60)));
        assert!(d.due(t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn a_problem_blocks_only_its_service() {
        let mut o = outcomes(&["a", "b"]);
        let problem = |s: &str| Problem { service: s.into(), message: "quota".into() };
        blocked(&mut o, &[problem("a"), problem("a"), problem("security-group/sg-gone")]);
        assert_eq!(summary(&o), [("a", "blocked"), ("b", "success")]);
    }

    #[test]
    fn a_failed_change_fails_its_service_and_a_failed_group_change_every_service_on_the_group() {
        let groups: BTreeMap<String, Vec<String>> =
            [(group_scope("sg-1"), vec!["a".to_owned(), "b".to_owned()]), (group_scope("sg-2"), vec!["c".to_owned()])]
                .into();
        let mut o = outcomes(&["a", "b", "c", "d"]);
        failed(
            &mut o,
            &groups,
            &[
                applied(&group_scope("sg-1"), Kind::IngressRule, true),
                applied(&group_scope("sg-2"), Kind::IngressRule, false),
                applied("c", Kind::EcsService, false),
                applied("d", Kind::EcsService, true),
            ],
        );
        assert_eq!(summary(&o), [("a", "apply"), ("b", "apply"), ("c", "success"), ("d", "apply")]);
    }
}
