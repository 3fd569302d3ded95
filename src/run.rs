//! `run`: the operator as a long-lived controller. Wires the control loop to the real
//! reconciler, the manifest watcher, the ECS event poller, the lease and the metrics server.
//!
//! ```text
//! manifests ─watch─▶ last good set ─┐            ┌─▶ observe ─▶ plan ─▶ apply (leader only)
//! SQS events ───────────────────────┼─▶ loop ────┤
//! resync ───────────────────────────┘            └─▶ metrics, logs
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc, watch};
use tracing::Instrument;

use crate::aws::lease::Lease;
use crate::aws::{Clients, Outcome};
use crate::controller::{self, LoopConfig, Reconciler, Trigger};
use crate::load::LoadError;
use crate::metrics::{self, Metrics};
use crate::model::Service;
use crate::reconcile::{self, ALL_KINDS, Label, Options, Prepared, Reach, ReconcileError};

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
    pub loop_config: LoopConfig,
}

/// The real reconciler: one service's observe → plan → apply, with metrics.
pub struct OperatorReconciler {
    clients: Clients,
    services: watch::Receiver<Arc<Vec<Service>>>,
    options: Options,
    metrics: Arc<Metrics>,
    lease: Option<Arc<Lease>>,
    ready: Arc<AtomicBool>,
    attempted: Mutex<HashSet<String>>,
}

impl OperatorReconciler {
    async fn mark_attempted(&self, name: &str) {
        let mut seen = self.attempted.lock().await;
        seen.insert(name.to_owned());
        let all = self.services.borrow().iter().all(|s| seen.contains(&s.name));
        if all {
            self.ready.store(true, Ordering::Relaxed);
        }
    }

    async fn leading(&self) -> bool {
        match &self.lease {
            None => true,
            Some(l) => l.is_leader().await,
        }
    }

    async fn reconcile_inner(&self, name: &str) -> Result<&'static str, ReconcileError> {
        let Some(service) = self.services.borrow().iter().find(|s| s.name == name).cloned() else {
            return Ok("skipped");
        };
        if !self.leading().await {
            return Ok("skipped");
        }
        let m = &self.metrics;
        let services = [service];
        let prepared = reconcile::prepare(&self.clients, &services, &self.options, Reach::default()).await?;
        let [service] = &services;
        let Prepared { observed, plan, .. } = &prepared;
        for kind in ALL_KINDS {
            let n = plan.conflicts().filter(|c| c.kind == kind).count();
            m.conflicts.with_label_values(&[name, kind.label()]).set(n as i64);
        }
        for c in plan.actionable() {
            m.drift_detected_total.with_label_values(&[name, c.kind.label()]).inc();
        }
        m.desired_tasks.with_label_values(&[name]).set(i64::from(service.desired_count));
        let running =
            observed.ecs_services.iter().find(|s| s.name == service.name).and_then(|s| s.running_count).unwrap_or(0);
        m.running_tasks.with_label_values(&[name]).set(i64::from(running));
        if let Some(p) = observed.placements.get(name) {
            m.dns_records_published.with_label_values(&[name]).set(p.host_ips.len() as i64);
        }
        if let Some(p) = plan.problems.first() {
            return Err(ReconcileError::Blocked(p.clone()));
        }
        if !plan.has_changes() {
            return Ok("success");
        }
        // Leadership is checked again right before mutating: a lost lease stops us at once.
        if !self.leading().await {
            return Ok("skipped");
        }
        let applied = reconcile::apply(&self.clients, &services, &self.options, &prepared).await?;
        for a in &applied {
            match &a.error {
                None => {
                    tracing::info!(kind = a.kind.as_str(), name = %a.name, action = ?a.action, "applied");
                    m.changes_applied_total.with_label_values(&[name, a.kind.label(), a.action.label()]).inc();
                }
                Some(e) => {
                    tracing::warn!(kind = a.kind.as_str(), name = %a.name, error = %e, "change failed");
                }
            }
        }
        reconcile::failures(&applied)?;
        Ok("success")
    }
}

impl Reconciler for OperatorReconciler {
    async fn reconcile(&self, service: String) -> Result<(), ReconcileError> {
        let span = tracing::info_span!("reconcile", service = %service);
        async {
            let started = Instant::now();
            let result = self.reconcile_inner(&service).await;
            let m = &self.metrics;
            m.reconcile_duration_seconds.with_label_values(&[&service]).observe(started.elapsed().as_secs_f64());
            match &result {
                Ok(outcome) => {
                    m.reconcile_total.with_label_values(&[service.as_str(), outcome]).inc();
                    if *outcome == "success" {
                        m.last_successful_reconcile_timestamp_seconds
                            .with_label_values(&[&service])
                            .set(metrics::now_seconds());
                    }
                }
                Err(e) => {
                    m.reconcile_total.with_label_values(&[&service, "error"]).inc();
                    m.reconcile_errors_total.with_label_values(&[&service, e.category()]).inc();
                }
            }
            self.mark_attempted(&service).await;
            result.map(|_| ())
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
        poll_events(&clients, url, &names_rx, &trigger_tx, &metrics, &shutdown_rx);
    }

    let reconciler = Arc::new(OperatorReconciler {
        clients: clients.clone(),
        services: services_rx,
        options: cfg.options.clone(),
        metrics: metrics.clone(),
        lease: lease.clone(),
        ready: ready.clone(),
        attempted: Mutex::new(HashSet::new()),
    });
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
    names: &watch::Receiver<Vec<String>>,
    triggers: &mpsc::UnboundedSender<Trigger>,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) {
    let triggers = triggers.clone();
    tokio::spawn(crate::aws::events::poll(
        clients.clone(),
        url.to_owned(),
        names.clone(),
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
