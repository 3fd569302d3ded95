//! The control loop behind `run`: level-triggered. A resync or a manifest change reconciles
//! every SftpService in one batched pass (one observe, one plan, one apply); an ECS event or a
//! retry after a failure reconciles one service.
//!
//! ```text
//! resync timer, manifests, new leader ─── all ─┐
//! ECS events, retries ─────────────────── one ─┴─▶ WorkQueue ─┬─▶ one batched pass, alone ──────┐
//!      ▲                                          (dedup)     └─▶ ≤ N per-service reconciles ───┤
//!      └──────── error policy: jittered exponential backoff per service ◀───────────────────────┘
//! ```
//!
//! A reconcile that started something whose end no event reports (an ECS rollout) asks to be
//! looked at again ([`Next::RequeueAfter`]); one such requeue per service is pending at a time.
//!
//! The loop decides *when*; a [`Reconciler`] decides *what*. The SDK retries single calls; the
//! loop only backs off whole reconciles, so there is one retry layer per concern. A service
//! that fails in a batched pass is retried alone, with the same backoff as a per-service item;
//! a batched pass that fails as a whole (its observe failed) is retried as a batched pass.

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

/// The outcome of each service in a batched pass.
pub type Outcomes = Vec<(String, Result<Next, ReconcileError>)>;

/// What a reconcile that succeeded asks for next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Next {
    /// Nothing until a trigger or the resync.
    #[default]
    AwaitChange,
    /// Look at the service again after this long: something it started (an ECS rollout) ends
    /// in an outcome no event reports.
    RequeueAfter(Duration),
}

/// What reconciling means; the real one observes, plans and applies.
pub trait Reconciler: Send + Sync + 'static {
    /// One service, observed, planned and applied on its own (edge triggers, retries).
    fn reconcile(&self, service: String) -> impl Future<Output = Result<Next, ReconcileError>> + Send;

    /// Every named service in one batched pass (resync, manifest change, new leader): the
    /// outcome of each, or `Err` when the pass failed as a whole before any service's own
    /// outcome was known (its observe failed): then nothing was applied.
    fn reconcile_all(&self, services: Vec<String>) -> impl Future<Output = Result<Outcomes, ReconcileError>> + Send;
}

/// Something happened that may need a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    All,
    One(String),
}

/// A unit of work: every service in one batched pass, or one service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Item {
    All,
    One(String),
}

/// Deduplicating queue: an item queued twice runs once; an item queued while it runs is run
/// again after it finishes (it may have missed the change), never concurrently.
///
/// The batched pass ([`Item::All`]) excludes everything else: once wanted, no per-service item
/// starts; it starts when the in-flight ones are done, and takes the pending ones with it (it
/// reconciles those services too, from a later observe); while it runs, nothing starts, and
/// whatever is queued meanwhile runs after it.
#[derive(Debug, Default)]
pub struct WorkQueue {
    pending: VecDeque<String>,
    queued: HashSet<String>,
    active: HashSet<String>,
    dirty: HashSet<String>,
    all_wanted: bool,
    all_active: bool,
}

impl WorkQueue {
    pub fn add(&mut self, s: &str) {
        if self.active.contains(s) {
            self.dirty.insert(s.to_owned());
        } else if self.queued.insert(s.to_owned()) {
            self.pending.push_back(s.to_owned());
        }
    }

    /// Wants a batched pass; one queued twice runs once, one queued while it runs runs again.
    pub fn add_all(&mut self) {
        self.all_wanted = true;
    }

    pub fn pop(&mut self) -> Option<Item> {
        if self.all_active {
            return None;
        }
        if self.all_wanted {
            if !self.active.is_empty() {
                return None;
            }
            self.all_wanted = false;
            self.all_active = true;
            self.pending.clear();
            self.queued.clear();
            return Some(Item::All);
        }
        let s = self.pending.pop_front()?;
        self.queued.remove(&s);
        self.active.insert(s.clone());
        Some(Item::One(s))
    }

    pub fn done(&mut self, item: &Item) {
        match item {
            Item::All => self.all_active = false,
            Item::One(s) => {
                self.active.remove(s);
                if self.dirty.remove(s) {
                    self.add(s);
                }
            }
        }
    }

    /// Whether a batched pass is waiting to start.
    pub fn all_wanted(&self) -> bool {
        self.all_wanted
    }

    /// Per-service items waiting (a wanted batched pass not counted).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && !self.all_wanted
    }
}

#[derive(Clone, Debug)]
pub struct LoopConfig {
    pub resync: Duration,
    /// Per-service items in parallel (a batched pass runs alone; it is concurrent inside).
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

/// Exponential backoff per service (and one for the batched pass): 1 s doubling to 5 min
/// (with jitter), reset on success.
struct Backoffs {
    builder: ExponentialBuilder,
    per: HashMap<Item, ExponentialBackoff>,
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

    fn next(&mut self, item: &Item, throttled: bool) -> Duration {
        let b = self.per.entry(item.clone()).or_insert_with(|| self.builder.build());
        let d = b.next().unwrap_or(Duration::from_secs(300));
        // Throttling is account-wide: step back further than for an ordinary failure.
        if throttled { b.next().unwrap_or(d).max(d * 2) } else { d }
    }

    fn reset(&mut self, item: &Item) {
        self.per.remove(item);
    }
}

/// Resync jitter: up to 10% later, so replicas do not move in lockstep.
fn jittered(d: Duration) -> Duration {
    d + d.mul_f64(fastrand::f64() * 0.1)
}

/// What a finished task reports; the item it ran is kept beside its task id.
enum Finished {
    One(Result<Next, ReconcileError>),
    All(Result<Outcomes, ReconcileError>),
}

/// Why an item failed, as the error policy needs it.
struct Failure {
    throttled: bool,
    error: String,
}

impl Failure {
    fn of<T: Copy>(result: &Result<T, ReconcileError>) -> Result<T, Failure> {
        result.as_ref().map_err(|e| Failure { throttled: e.throttled(), error: e.to_string() }).copied()
    }
}

/// The loop's error policy: a success resets an item's backoff (and runs it again when it asks
/// to be requeued); a failure runs it again later.
struct Retries {
    backoffs: Backoffs,
    tx: mpsc::UnboundedSender<Item>,
    metrics: Option<Arc<Metrics>>,
    /// Items with a requeue pending, and where it arrives.
    requeued: HashSet<Item>,
    requeue_tx: mpsc::UnboundedSender<Item>,
}

impl Retries {
    fn settle(&mut self, item: Item, result: Result<Next, Failure>) {
        let failure = match result {
            Ok(next) => {
                self.backoffs.reset(&item);
                self.requeue(item, next);
                return;
            }
            Err(failure) => failure,
        };
        let delay = self.backoffs.next(&item, failure.throttled);
        match &item {
            Item::One(s) => tracing::warn!(service = %s, error = %failure.error, retry_in = ?delay, "reconcile failed"),
            Item::All => tracing::warn!(error = %failure.error, retry_in = ?delay, "batched pass failed"),
        }
        if let Some(m) = &self.metrics {
            m.workqueue_retries_total.inc();
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(item);
        });
    }

    /// One pending requeue per item: the passes in between (a resync, an event) ask again, and
    /// each would otherwise start a chain of its own.
    fn requeue(&mut self, item: Item, next: Next) {
        let Next::RequeueAfter(delay) = next else { return };
        if !self.requeued.insert(item.clone()) {
            return;
        }
        let tx = self.requeue_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(item);
        });
    }
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
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<Item>();
    let (requeue_tx, mut requeue_rx) = mpsc::unbounded_channel::<Item>();
    let mut retries = Retries {
        backoffs: Backoffs::new(&cfg),
        tx: retry_tx,
        metrics: metrics.clone(),
        requeued: HashSet::new(),
        requeue_tx,
    };
    let mut inflight: JoinSet<Finished> = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, Item> = HashMap::new();
    let mut next_resync = Instant::now();
    let known = |s: &str| services.borrow().iter().any(|x| x == s);
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            _ = tokio::time::sleep_until(next_resync) => {
                queue.add_all();
                next_resync = Instant::now() + jittered(cfg.resync);
            }
            Some(t) = triggers.recv() => match t {
                Trigger::All => queue.add_all(),
                Trigger::One(s) => if known(&s) { queue.add(&s) },
            },
            Some(item) = retry_rx.recv() => match item {
                Item::All => queue.add_all(),
                Item::One(s) => if known(&s) { queue.add(&s) },
            },
            Some(item) = requeue_rx.recv() => {
                retries.requeued.remove(&item);
                match item {
                    Item::All => queue.add_all(),
                    Item::One(s) => if known(&s) { queue.add(&s) },
                }
            }
            Some(joined) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                let (id, finished) = match joined {
                    Ok((id, finished)) => (id, Ok(finished)),
                    Err(e) => (e.id(), Err(e)),
                };
                let Some(item) = running.remove(&id) else { continue };
                queue.done(&item);
                match finished {
                    Ok(Finished::One(result)) => retries.settle(item, Failure::of(&result)),
                    Ok(Finished::All(Ok(outcomes))) => {
                        retries.settle(Item::All, Ok(Next::AwaitChange));
                        for (s, result) in outcomes {
                            retries.settle(Item::One(s), Failure::of(&result));
                        }
                    }
                    Ok(Finished::All(Err(e))) => retries.settle(Item::All, Failure::of(&Err(e))),
                    // A panic is a bug, but it must not wedge the item: run it again later.
                    Err(e) => retries.settle(item, Err(Failure { throttled: false, error: e.to_string() })),
                }
            }
        }
        while inflight.len() < cfg.concurrency {
            let Some(item) = queue.pop() else { break };
            let r = reconciler.clone();
            let handle = match &item {
                Item::One(s) => {
                    let s = s.clone();
                    inflight.spawn(async move { Finished::One(r.reconcile(s).await) })
                }
                Item::All => {
                    let names = services.borrow().clone();
                    inflight.spawn(async move { Finished::All(r.reconcile_all(names).await) })
                }
            };
            running.insert(handle.id(), item);
        }
        if let Some(m) = &metrics {
            let all = if queue.all_wanted() { services.borrow().len() } else { 0 };
            m.workqueue_depth.set(queue.len().max(all) as i64);
        }
    }
    // Drain: no new work; in-flight applies finish or are abandoned at the deadline.
    let _ = tokio::time::timeout(cfg.shutdown_timeout, async { while inflight.join_next().await.is_some() {} }).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Records every reconcile with its (paused-clock) start time, per-service ones apart from
    /// batched ones; fails the services in `failing`, and the first `failing_passes` batched
    /// passes as a whole. Notes any overlap: a service reconciled twice at once, or anything
    /// running beside a batched pass.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<(String, Duration)>>,
        batches: Mutex<Vec<(Vec<String>, Duration)>>,
        failing: Mutex<HashSet<String>>,
        failing_passes: AtomicUsize,
        panicking_passes: AtomicUsize,
        start: Mutex<Option<Instant>>,
        work: Duration,
        running: Mutex<(HashSet<String>, bool)>,
        overlap: AtomicBool,
        /// Passes left in which a service asks to be requeued after 15 s (a rollout under way).
        rolling: Mutex<HashMap<String, usize>>,
    }

    impl Fake {
        fn now(&self) -> Duration {
            self.start.lock().unwrap().get_or_insert_with(Instant::now).elapsed()
        }

        fn enter(&self, services: &[String], batch: bool) {
            let mut running = self.running.lock().unwrap();
            let (names, batch_running) = &mut *running;
            if *batch_running || (batch && !names.is_empty()) || services.iter().any(|s| names.contains(s)) {
                self.overlap.store(true, Ordering::SeqCst);
            }
            names.extend(services.iter().cloned());
            *batch_running |= batch;
        }

        fn leave(&self, services: &[String], batch: bool) {
            let mut running = self.running.lock().unwrap();
            for s in services {
                running.0.remove(s);
            }
            if batch {
                running.1 = false;
            }
        }

        fn outcome(&self, service: &str) -> Result<(), ReconcileError> {
            if self.failing.lock().unwrap().contains(service) {
                Err(ReconcileError::Aws(crate::aws::AwsError::other("DescribeServices", "boom")))
            } else {
                Ok(())
            }
        }

        fn next(&self, service: &str) -> Next {
            match self.rolling.lock().unwrap().get_mut(service) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    Next::RequeueAfter(Duration::from_secs(15))
                }
                _ => Next::AwaitChange,
            }
        }

        fn take(counter: &AtomicUsize) -> bool {
            counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        }
    }

    impl Reconciler for Fake {
        async fn reconcile(&self, service: String) -> Result<Next, ReconcileError> {
            self.calls.lock().unwrap().push((service.clone(), self.now()));
            let one = [service];
            self.enter(&one, false);
            tokio::time::sleep(self.work).await;
            self.leave(&one, false);
            self.outcome(&one[0]).map(|()| self.next(&one[0]))
        }

        async fn reconcile_all(&self, services: Vec<String>) -> Result<Outcomes, ReconcileError> {
            self.batches.lock().unwrap().push((services.clone(), self.now()));
            self.enter(&services, true);
            tokio::time::sleep(self.work).await;
            self.leave(&services, true);
            if Fake::take(&self.panicking_passes) {
                panic!("a bug in the batched pass");
            }
            if Fake::take(&self.failing_passes) {
                return Err(ReconcileError::Aws(crate::aws::AwsError::other("DescribeServices", "down")));
            }
            Ok(services.iter().map(|s| (s.clone(), self.outcome(s).map(|()| self.next(s)))).collect())
        }
    }

    struct Harness {
        fake: Arc<Fake>,
        triggers: mpsc::UnboundedSender<Trigger>,
        stop: watch::Sender<bool>,
        _services: watch::Sender<Vec<String>>,
        handle: tokio::task::JoinHandle<()>,
    }

    impl Harness {
        fn calls_of(&self, s: &str) -> Vec<Duration> {
            self.fake.calls.lock().unwrap().iter().filter(|(n, _)| n == s).map(|(_, t)| *t).collect()
        }

        fn batches(&self) -> Vec<Duration> {
            self.fake.batches.lock().unwrap().iter().map(|(_, t)| *t).collect()
        }

        fn fail(&self, s: &str, failing: bool) {
            let mut f = self.fake.failing.lock().unwrap();
            if failing {
                f.insert(s.to_owned())
            } else {
                f.remove(s)
            };
        }

        async fn stop(self) {
            assert!(!self.fake.overlap.load(Ordering::SeqCst), "something ran beside a batched pass or twice at once");
            self.stop.send(true).unwrap();
            self.handle.await.unwrap();
        }
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

    fn hourly() -> LoopConfig {
        LoopConfig { resync: Duration::from_secs(3600), ..Default::default() }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Gaps between consecutive times, each within [2^i, 2^(i+1)] seconds: exponential backoff
    /// from 1 s with jitter.
    fn assert_backs_off(times: &[Duration]) {
        let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        assert!(gaps.len() >= 4, "{gaps:?}");
        for (i, g) in gaps.iter().enumerate() {
            let base = 2f64.powi(i as i32);
            assert!(*g >= base && *g <= 2.0 * base + 0.001, "gap {i} = {g} outside [{base}, {}]", 2.0 * base);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_resync_reconciles_every_service_in_one_batched_pass_periodically() {
        let cfg = LoopConfig { resync: secs(60), ..Default::default() };
        let h = start(&["a", "b"], cfg, Fake::default());
        tokio::time::sleep(secs(200)).await;
        // At 0 s, then every 60–66 s: 4 passes within 200 s, 3 at least; each one batched pass.
        let batches = h.batches();
        assert!((3..=4).contains(&batches.len()), "{batches:?}");
        assert!(batches.windows(2).all(|w| w[1] - w[0] >= secs(60) && w[1] - w[0] <= secs(66)), "{batches:?}");
        assert!(h.fake.batches.lock().unwrap().iter().all(|(names, _)| names == &["a", "b"]));
        assert!(h.fake.calls.lock().unwrap().is_empty(), "no per-service reconciles");
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_failing_in_a_batched_pass_is_retried_alone_with_backoff() {
        let fake = Fake::default();
        fake.failing.lock().unwrap().insert("bad".into());
        let h = start(&["bad", "good"], hourly(), fake);
        tokio::time::sleep(secs(70)).await;
        assert_eq!(h.batches(), [secs(0)], "one batched pass");
        // Retries after ~1, 2, 4, 8, 16, 32 s (each up to twice that with jitter), of `bad` only.
        let mut bad = h.batches();
        bad.extend(h.calls_of("bad"));
        assert_backs_off(&bad);
        assert!(h.calls_of("good").is_empty(), "the good service ran once, in the batched pass");
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_in_a_batched_pass_resets_the_backoff() {
        let h = start(&["a"], hourly(), Fake::default());
        tokio::time::sleep(secs(1)).await;
        // Failing alone for a while: its backoff has grown to 16–32 s.
        h.fail("a", true);
        h.triggers.send(Trigger::One("a".into())).unwrap();
        tokio::time::sleep(secs(40)).await;
        assert!(h.calls_of("a").len() >= 4, "{:?}", h.calls_of("a"));
        // A batched pass succeeds for it, and it fails again right after.
        h.fail("a", false);
        h.triggers.send(Trigger::All).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(h.batches().len(), 2);
        h.fail("a", true);
        let passed = h.fake.now();
        tokio::time::sleep(secs(200)).await;
        // The retry scheduled before the pass fails once more; the next one follows 1–2 s later.
        let after: Vec<Duration> = h.calls_of("a").into_iter().filter(|t| *t > passed).collect();
        assert!(after.len() >= 2, "{after:?}");
        let gap = after[1] - after[0];
        assert!(gap >= secs(1) && gap <= secs(2), "{gap:?}: the backoff was not reset");
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_asking_to_be_requeued_is_looked_at_again_in_one_chain_until_it_stops_asking() {
        // Four passes ask: the batched one at 0 s, then each requeue, one of them a batched pass.
        let fake = Fake { rolling: Mutex::new([("a".to_owned(), 4)].into()), ..Default::default() };
        let h = start(&["a", "b"], hourly(), fake);
        tokio::time::sleep(secs(20)).await;
        // A pass in between asks again while a requeue is pending: no second chain.
        h.triggers.send(Trigger::All).unwrap();
        tokio::time::sleep(secs(100)).await;
        assert_eq!(h.batches(), [secs(0), secs(20)]);
        assert_eq!(h.calls_of("a"), [secs(15), secs(30), secs(45)]);
        assert!(h.calls_of("b").is_empty());
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_batched_pass_failing_as_a_whole_is_retried_as_a_batched_pass() {
        let fake = Fake { failing_passes: AtomicUsize::new(5), ..Default::default() };
        let h = start(&["a", "b"], hourly(), fake);
        tokio::time::sleep(secs(70)).await;
        // 0 s, then ~1, 2, 4, 8, 16 s later; the sixth succeeds and nothing follows.
        let batches = h.batches();
        assert_eq!(batches.len(), 6, "{batches:?}");
        assert_backs_off(&batches);
        assert!(h.fake.calls.lock().unwrap().is_empty(), "not one observe per service");
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_pass_does_not_wedge_the_loop() {
        let fake = Fake { panicking_passes: AtomicUsize::new(1), ..Default::default() };
        let h = start(&["a"], hourly(), fake);
        tokio::time::sleep(secs(5)).await;
        assert_eq!(h.batches().len(), 2, "retried after a backoff");
        h.triggers.send(Trigger::One("a".into())).unwrap();
        tokio::time::sleep(secs(1)).await;
        assert_eq!(h.calls_of("a").len(), 1);
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_during_a_batched_pass_run_after_it_deduplicated_and_never_concurrently() {
        let fake = Fake { work: secs(10), ..Default::default() };
        let h = start(&["a", "b"], hourly(), fake);
        tokio::time::sleep(secs(1)).await; // the initial batched pass is running (10 s)
        for _ in 0..5 {
            h.triggers.send(Trigger::One("a".into())).unwrap();
        }
        h.triggers.send(Trigger::One("unknown".into())).unwrap();
        tokio::time::sleep(secs(60)).await;
        // Exactly one more run of `a` for the five triggers, after the pass ended; none of `b`.
        assert_eq!(h.calls_of("a"), [secs(10)]);
        assert!(h.calls_of("b").is_empty());
        assert!(h.calls_of("unknown").is_empty());
        // Several resyncs and manifest changes during a pass: one more batched pass, after it.
        h.triggers.send(Trigger::All).unwrap();
        tokio::time::sleep(secs(1)).await;
        for _ in 0..3 {
            h.triggers.send(Trigger::All).unwrap();
        }
        tokio::time::sleep(secs(60)).await;
        assert_eq!(h.batches(), [secs(0), secs(61), secs(71)]);
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_batched_pass_waits_for_in_flight_items_and_takes_the_pending_ones_along() {
        let fake = Fake { work: secs(10), ..Default::default() };
        let cfg = LoopConfig { concurrency: 2, ..hourly() };
        let h = start(&["a", "b", "c"], cfg, fake);
        tokio::time::sleep(secs(11)).await; // the initial pass is done
        h.triggers.send(Trigger::One("a".into())).unwrap(); // 11–21 s
        tokio::time::sleep(secs(1)).await;
        h.triggers.send(Trigger::All).unwrap(); // waits for `a`
        h.triggers.send(Trigger::One("b".into())).unwrap(); // held, though a slot is free
        tokio::time::sleep(secs(60)).await;
        assert_eq!(h.calls_of("a"), [secs(11)]);
        assert_eq!(h.batches(), [secs(0), secs(21)]);
        assert!(h.calls_of("b").is_empty(), "the pass reconciled `b` too: {:?}", h.calls_of("b"));
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn per_service_items_still_run_concurrently_up_to_the_limit() {
        let fake = Fake { work: secs(10), ..Default::default() };
        let cfg = LoopConfig { concurrency: 2, ..hourly() };
        let h = start(&["a", "b", "c"], cfg, fake);
        tokio::time::sleep(secs(11)).await;
        for s in ["a", "b", "c"] {
            h.triggers.send(Trigger::One(s.into())).unwrap();
        }
        tokio::time::sleep(secs(60)).await;
        assert_eq!(h.calls_of("a"), [secs(11)]);
        assert_eq!(h.calls_of("b"), [secs(11)]);
        assert_eq!(h.calls_of("c"), [secs(21)]);
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_in_flight_work() {
        let fake = Fake { work: secs(5), ..Default::default() };
        let h = start(&["a"], LoopConfig::default(), fake);
        tokio::time::sleep(secs(1)).await;
        let t = Instant::now();
        h.stop().await;
        assert!(t.elapsed() >= secs(4), "returned before the reconcile finished");
    }

    #[test]
    fn the_queue_runs_an_item_queued_during_its_run_once_more_afterwards() {
        let mut q = WorkQueue::default();
        q.add("a");
        q.add("a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(), Some(Item::One("a".into())));
        q.add("a");
        assert!(q.pop().is_none(), "never concurrently");
        q.done(&Item::One("a".into()));
        assert_eq!(q.pop(), Some(Item::One("a".into())));
        q.done(&Item::One("a".into()));
        assert!(q.is_empty());
    }

    #[test]
    fn the_queue_runs_a_batched_pass_alone() {
        let mut q = WorkQueue::default();
        let [a, c] = ["a", "c"].map(|s| Item::One(s.into()));
        q.add("a");
        q.add("b");
        assert_eq!(q.pop(), Some(a.clone()));
        q.add_all();
        q.add_all();
        assert!(q.pop().is_none(), "`b` is held, and the pass waits for `a`");
        q.done(&a);
        assert_eq!(q.pop(), Some(Item::All), "once, with `b` taken along");
        assert_eq!(q.len(), 0);
        q.add("c");
        q.add_all();
        assert!(q.pop().is_none(), "nothing beside the pass");
        q.done(&Item::All);
        assert_eq!(q.pop(), Some(Item::All), "a pass queued during a pass runs again after it");
        q.done(&Item::All);
        q.add("c");
        assert_eq!(q.pop(), Some(c));
        assert!(q.pop().is_none() && q.is_empty());
    }
}
