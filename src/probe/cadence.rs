//! `run`'s probes: every interval, each service with a probe account is probed at the
//! endpoints its last pass observed, and the outcome goes to the metrics and the log. The
//! probe account's key is read once per service and read again after a failure that a new
//! key could explain.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{Credentials, Failure, Report, Select, Subject, Target, Via};
use crate::aws::Clients;
use crate::metrics::Metrics;

/// How `run` probes (`--probe-*` flags).
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Zero turns probing off.
    pub interval: Duration,
    pub timeout: Duration,
    pub via: Option<Via>,
    /// Per service, an address to probe instead of its endpoints (`--probe-endpoint S=HOST:PORT`).
    pub endpoints: BTreeMap<String, String>,
}

/// The subjects each pass saw last, by service: what the probe loop reads.
#[derive(Clone, Default)]
pub struct Subjects(Arc<Mutex<BTreeMap<String, Subject>>>);

impl Subjects {
    /// Keeps what a pass over `passed` observed: their subjects replace earlier ones; those
    /// of them that no longer have a probe account are dropped.
    pub fn remember(
        &self,
        passed: &[String],
        desired: &[crate::render::Desired],
        observed: &crate::observed::Observed,
    ) {
        let fresh = super::subjects(desired, observed, &Select::default());
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|name, _| !passed.contains(name));
        all.extend(fresh.into_iter().map(|s| (s.service.clone(), s)));
    }

    /// Those of `current` (the manifest set's services), with the configured overrides.
    fn snapshot(&self, current: &[String], cfg: &ProbeConfig) -> Vec<Subject> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        current
            .iter()
            .filter_map(|name| all.get(name).cloned())
            .map(|mut s| {
                if let Some(e) = cfg.endpoints.get(&s.service) {
                    s.targets = vec![Target { service: s.service.clone(), via: Via::Given, endpoint: e.clone() }];
                } else if let Some(via) = cfg.via {
                    s.targets.retain(|t| t.via == via);
                }
                s
            })
            .collect()
    }
}

/// Failures a fresh read of the key could cure (a recreated secret, a converge since).
fn rereads_key(f: &Failure) -> bool {
    matches!(f, Failure::LoginRefused | Failure::ProbeKeyUnreadable | Failure::Setup(_))
}

/// Probes until shutdown; only while `leading` says this replica leads.
pub async fn probe_loop<L, F>(
    clients: Clients,
    subjects: Subjects,
    names: watch::Receiver<Vec<String>>,
    metrics: Arc<Metrics>,
    cfg: ProbeConfig,
    leading: L,
    mut shutdown: watch::Receiver<bool>,
) where
    L: Fn() -> F,
    F: Future<Output = bool>,
{
    if cfg.interval.is_zero() {
        return;
    }
    let mut keys: BTreeMap<String, Arc<Credentials>> = BTreeMap::new();
    let mut exported: Vec<[String; 2]> = Vec::new();
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => {}
        }
        if !leading().await {
            // A standby's last results would hide (or keep firing) the leader's.
            forget(&metrics, &mut exported, &[]);
            continue;
        }
        let current = names.borrow().clone();
        let now = subjects.snapshot(&current, &cfg);
        keys.retain(|name, _| current.contains(name));
        let missing: Vec<&Subject> = now.iter().filter(|s| !keys.contains_key(&s.service)).collect();
        let mut creds = super::credentials(&clients, &missing).await;
        for s in &now {
            if let Some(k) = keys.get(&s.service) {
                // The host keys come from the latest pass; the private key from the cache.
                let c = Credentials { host_keys: s.host_keys.clone(), ..Credentials::clone(k) };
                creds.insert(s.service.clone(), Ok(Arc::new(c)));
            }
        }
        let refs: Vec<&Subject> = now.iter().collect();
        let reports = super::probe_all(&refs, &creds, cfg.timeout).await;
        for (service, c) in creds {
            if let Ok(c) = c {
                keys.insert(service, c);
            }
        }
        let probed: Vec<[String; 2]> =
            reports.iter().map(|r| [r.target.service.clone(), r.target.endpoint.clone()]).collect();
        forget(&metrics, &mut exported, &probed);
        record(&metrics, &reports);
        exported = probed;
        for r in reports.iter().filter(|r| !r.ok) {
            if r.failure.as_ref().is_some_and(rereads_key) {
                keys.remove(&r.target.service);
            }
        }
    }
}

/// Removes the series of the last round that this one does not `keep`: an endpoint that is
/// gone (a task moved), or every endpoint once this replica no longer leads, leaves nothing
/// stale behind.
fn forget(metrics: &Metrics, exported: &mut Vec<[String; 2]>, keep: &[[String; 2]]) {
    for [service, endpoint] in exported.drain(..).filter(|l| !keep.contains(l)) {
        let labels = [service.as_str(), endpoint.as_str()];
        let _ = metrics.probe_success.remove_label_values(&labels);
        let _ = metrics.host_key_mismatch.remove_label_values(&labels);
        let _ = metrics.probe_duration_seconds.remove_label_values(&labels);
    }
}

/// The reports into the metrics and the log.
fn record(metrics: &Metrics, reports: &[Report]) {
    for r in reports {
        let labels = [r.target.service.as_str(), r.target.endpoint.as_str()];
        metrics.probe_success.with_label_values(&labels).set(i64::from(r.ok));
        let mismatch = matches!(r.failure, Some(Failure::HostKeyChanged { .. }));
        metrics.host_key_mismatch.with_label_values(&labels).set(i64::from(mismatch));
        if !r.steps.is_empty() {
            metrics.probe_duration_seconds.with_label_values(&labels).observe(r.seconds);
        }
        match &r.failure {
            None => {
                tracing::debug!(service = %r.target.service, endpoint = %r.target.endpoint, seconds = r.seconds, "probe passed")
            }
            Some(f) => {
                metrics.probe_failures_total.with_label_values(&[r.target.service.as_str(), f.reason()]).inc();
                tracing::warn!(service = %r.target.service, endpoint = %r.target.endpoint, reason = f.reason(), "probe failed: {f}");
            }
        }
    }
}
