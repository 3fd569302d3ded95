//! The control loop behind `run`: level-triggered, one work item per SftpService.
//!
//! ```text
//! resync timer ─┐
//! manifests ────┼─▶ WorkQueue (dedup, never one service twice at once) ─▶ ≤ N reconciles ─┐
//! ECS events ───┤                                                                         │
//! retries ◀─────┴──────────── error policy: jittered exponential backoff per service ◀─────┘
//! ```
//!
//! The loop decides *when*; a [`Reconciler`] decides *what*. The SDK retries single calls; the
//! loop only backs off whole reconciles, so there is one retry layer per concern.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::reconcile::ReconcileError;

/// What reconciling one service means; the real one observes, plans and applies.
pub trait Reconciler: Send + Sync + 'static {
    fn reconcile(&self, service: String) -> impl Future<Output = Result<(), ReconcileError>> + Send;
}

/// Something happened that may need a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    All,
    One(String),
}

/// Deduplicating queue: an item queued twice runs once; an item queued while it runs is run
/// again after it finishes (it may have missed the change), never concurrently.
#[derive(Debug, Default)]
pub struct WorkQueue {
    pending: VecDeque<String>,
    queued: HashSet<String>,
    active: HashSet<String>,
    dirty: HashSet<String>,
}

impl WorkQueue {
    pub fn add(&mut self, s: &str) {
        if self.active.contains(s) {
            self.dirty.insert(s.to_owned());
        } else if self.queued.insert(s.to_owned()) {
            self.pending.push_back(s.to_owned());
        }
    }

    pub fn pop(&mut self) -> Option<String> {
        let s = self.pending.pop_front()?;
        self.queued.remove(&s);
        self.active.insert(s.clone());
        Some(s)
    }

    pub fn done(&mut self, s: &str) {
        self.active.remove(s);
        if self.dirty.remove(s) {
            self.add(s);
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[derive(Clone, Debug)]
pub struct LoopConfig {
    pub resync: Duration,
    pub concurrency: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub shutdown_timeout: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            resync: Duration::from_secs(60),
            concurrency: 4,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Per-service exponential backoff: 1 s doubling to 5 min (with jitter), reset on success.
struct Backoffs {
    builder: ExponentialBuilder,
    per: HashMap<String, ExponentialBackoff>,
}

impl Backoffs {
    fn new(cfg: &LoopConfig) -> Backoffs {
        let builder = ExponentialBuilder::default()
            .with_min_delay(cfg.backoff_min)
            .with_max_delay(cfg.backoff_max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoffs { builder, per: HashMap::new() }
    }

    fn next(&mut self, s: &str, throttled: bool) -> Duration {
        let b = self.per.entry(s.to_owned()).or_insert_with(|| self.builder.build());
        let d = b.next().unwrap_or(Duration::from_secs(300));
        // Throttling is account-wide: step back further than for an ordinary failure.
        if throttled { b.next().unwrap_or(d).max(d * 2) } else { d }
    }

    fn reset(&mut self, s: &str) {
        self.per.remove(s);
    }
}

/// Resync jitter: up to 10% later, so replicas and services do not move in lockstep.
fn jittered(d: Duration) -> Duration {
    d + d.mul_f64(fastrand::f64() * 0.1)
}

/// Runs until `shutdown` turns true, then lets in-flight reconciles finish (bounded by
/// `shutdown_timeout`). `services` is the current set of service names.
pub async fn run_loop<R: Reconciler>(
    reconciler: Arc<R>,
    cfg: LoopConfig,
    services: watch::Receiver<Vec<String>>,
    mut triggers: mpsc::UnboundedReceiver<Trigger>,
    mut shutdown: watch::Receiver<bool>,
    metrics: Option<Arc<Metrics>>,
) {
    let mut queue = WorkQueue::default();
    let mut backoffs = Backoffs::new(&cfg);
    let mut inflight: JoinSet<(String, Result<(), ReconcileError>)> = JoinSet::new();
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<String>();
    let mut next_resync = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            _ = tokio::time::sleep_until(next_resync) => {
                for s in services.borrow().iter() { queue.add(s); }
                next_resync = Instant::now() + jittered(cfg.resync);
            }
            Some(t) = triggers.recv() => match t {
                Trigger::All => for s in services.borrow().iter() { queue.add(s); },
                Trigger::One(s) => if services.borrow().contains(&s) { queue.add(&s) },
            },
            Some(s) = retry_rx.recv() => {
                if services.borrow().contains(&s) { queue.add(&s); }
            }
            Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                let Ok((s, result)) = joined else { continue };
                queue.done(&s);
                match result {
                    Ok(()) => backoffs.reset(&s),
                    Err(e) => {
                        let delay = backoffs.next(&s, e.throttled());
                        tracing::warn!(service = %s, error = %e, retry_in = ?delay, "reconcile failed");
                        if let Some(m) = &metrics { m.workqueue_retries_total.inc(); }
                        let tx = retry_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = tx.send(s);
                        });
                    }
                }
            }
        }
        while inflight.len() < cfg.concurrency {
            let Some(s) = queue.pop() else { break };
            let r = reconciler.clone();
            inflight.spawn(async move {
                let result = r.reconcile(s.clone()).await;
                (s, result)
            });
        }
        if let Some(m) = &metrics {
            m.workqueue_depth.set(queue.len() as i64);
        }
    }
    // Drain: no new work; in-flight applies finish or are abandoned at the deadline.
    let _ = tokio::time::timeout(cfg.shutdown_timeout, async { while inflight.join_next().await.is_some() {} }).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records every reconcile with its (paused-clock) time; fails the services in `failing`.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<(String, Duration)>>,
        failing: Mutex<HashSet<String>>,
        start: Mutex<Option<Instant>>,
        work: Duration,
    }

    impl Reconciler for Fake {
        async fn reconcile(&self, service: String) -> Result<(), ReconcileError> {
            let start = *self.start.lock().unwrap().get_or_insert_with(Instant::now);
            self.calls.lock().unwrap().push((service.clone(), start.elapsed()));
            tokio::time::sleep(self.work).await;
            if self.failing.lock().unwrap().contains(&service) {
                Err(ReconcileError::Aws(crate::aws::AwsError::other("DescribeServices", "boom")))
            } else {
                Ok(())
            }
        }
    }

    struct Harness {
        fake: Arc<Fake>,
        triggers: mpsc::UnboundedSender<Trigger>,
        stop: watch::Sender<bool>,
        _services: watch::Sender<Vec<String>>,
        handle: tokio::task::JoinHandle<()>,
    }

    fn start(names: &[&str], cfg: LoopConfig, fake: Fake) -> Harness {
        let fake = Arc::new(fake);
        *fake.start.lock().unwrap() = Some(Instant::now());
        let (svc_tx, svc_rx) = watch::channel(names.iter().map(|s| s.to_string()).collect());
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(run_loop(fake.clone(), cfg, svc_rx, rx, stop_rx, None));
        Harness { fake, triggers: tx, stop, _services: svc_tx, handle }
    }

    fn calls_of(h: &Harness, s: &str) -> Vec<Duration> {
        h.fake.calls.lock().unwrap().iter().filter(|(n, _)| n == s).map(|(_, t)| *t).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_resync_reconciles_every_service_periodically() {
        let cfg = LoopConfig { resync: Duration::from_secs(60), ..Default::default() };
        let h = start(&["a", "b"], cfg, Fake::default());
        tokio::time::sleep(Duration::from_secs(200)).await;
        // At 0 s, then every 60–66 s: 4 passes within 200 s, 3 at least.
        let a = calls_of(&h, "a");
        assert!((3..=4).contains(&a.len()), "{a:?}");
        assert!(
            a.windows(2).all(|w| w[1] - w[0] >= Duration::from_secs(60) && w[1] - w[0] <= Duration::from_secs(66)),
            "{a:?}"
        );
        assert_eq!(calls_of(&h, "b").len(), a.len());
        h.stop.send(true).unwrap();
        h.handle.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_service_backs_off_exponentially_and_does_not_block_the_others() {
        let fake = Fake::default();
        fake.failing.lock().unwrap().insert("bad".into());
        let cfg = LoopConfig { resync: Duration::from_secs(3600), ..Default::default() };
        let h = start(&["bad", "good"], cfg, fake);
        tokio::time::sleep(Duration::from_secs(70)).await;
        let bad = calls_of(&h, "bad");
        // Retries after ~1, 2, 4, 8, 16, 32 s (each up to twice that with jitter).
        let gaps: Vec<f64> = bad.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        assert!(gaps.len() >= 4, "{gaps:?}");
        for (i, g) in gaps.iter().enumerate() {
            let base = 2f64.powi(i as i32);
            assert!(*g >= base && *g <= 2.0 * base + 0.001, "gap {i} = {g} outside [{base}, {}]", 2.0 * base);
        }
        assert_eq!(calls_of(&h, "good").len(), 1, "the good service ran once and was not held up");
        h.stop.send(true).unwrap();
        h.handle.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_are_deduplicated_and_never_run_one_service_concurrently() {
        let fake = Fake { work: Duration::from_secs(10), ..Default::default() };
        let cfg = LoopConfig { resync: Duration::from_secs(3600), ..Default::default() };
        let h = start(&["a"], cfg, fake);
        tokio::time::sleep(Duration::from_secs(1)).await; // the initial sync is running (10 s)
        for _ in 0..5 {
            h.triggers.send(Trigger::One("a".into())).unwrap();
        }
        h.triggers.send(Trigger::One("unknown".into())).unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let a = calls_of(&h, "a");
        // The initial run, then exactly one more for the five triggers, after the first ended.
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a[1] >= Duration::from_secs(10));
        assert!(calls_of(&h, "unknown").is_empty());
        h.stop.send(true).unwrap();
        h.handle.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_in_flight_work() {
        let fake = Fake { work: Duration::from_secs(5), ..Default::default() };
        let h = start(&["a"], LoopConfig::default(), fake);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Instant::now();
        h.stop.send(true).unwrap();
        h.handle.await.unwrap();
        assert!(t.elapsed() >= Duration::from_secs(4), "returned before the reconcile finished");
    }

    #[test]
    fn the_queue_runs_an_item_queued_during_its_run_once_more_afterwards() {
        let mut q = WorkQueue::default();
        q.add("a");
        q.add("a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop().as_deref(), Some("a"));
        q.add("a");
        assert!(q.pop().is_none(), "never concurrently");
        q.done("a");
        assert_eq!(q.pop().as_deref(), Some("a"));
        q.done("a");
        assert!(q.is_empty());
    }
}
