//! Prometheus metrics (controller-runtime's names with an `sftp_operator_` prefix) and the
//! `/metrics`, `/healthz`, `/readyz` endpoints. Labels carry service names, resource kinds,
//! AWS operation names and outcomes only: never a key, a hash or a secret.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

const NS: &str = "sftp_operator";

pub struct Metrics {
    pub registry: Registry,
    pub reconcile_total: IntCounterVec,
    pub reconcile_errors_total: IntCounterVec,
    pub reconcile_duration_seconds: HistogramVec,
    pub drift_detected_total: IntCounterVec,
    pub changes_applied_total: IntCounterVec,
    pub aws_api_calls_total: IntCounterVec,
    pub aws_api_call_duration_seconds: HistogramVec,
    pub aws_api_throttled_total: IntCounterVec,
    pub last_successful_reconcile_timestamp_seconds: GaugeVec,
    pub running_tasks: IntGaugeVec,
    pub desired_tasks: IntGaugeVec,
    pub dns_records_published: IntGaugeVec,
    pub conflicts: IntGaugeVec,
    pub rollout_failed_total: IntCounterVec,
    pub probe_success: IntGaugeVec,
    pub probe_duration_seconds: HistogramVec,
    pub host_key_mismatch: IntGaugeVec,
    pub probe_failures_total: IntCounterVec,
    pub manifest_load_errors_total: IntCounter,
    pub events_received_total: IntCounterVec,
    pub workqueue_depth: IntGauge,
    pub workqueue_retries_total: IntCounter,
    pub leader: IntGauge,
    pub build_info: IntGaugeVec,
    pub up_since: Gauge,
}

/// A metric: its name (after the `sftp_operator_` prefix), help text and label names.
struct Def(&'static str, &'static str, &'static [&'static str]);

const RECONCILE_TOTAL: Def =
    Def("reconcile_total", "Reconciles by service and result (success, error, skipped).", &["service", "result"]);
const RECONCILE_ERRORS_TOTAL: Def =
    Def("reconcile_errors_total", "Failed reconciles by service and error category.", &["service", "category"]);
const RECONCILE_DURATION_SECONDS: Def =
    Def("reconcile_duration_seconds", "Time to observe, plan and apply one service.", &["service"]);
const DRIFT_DETECTED_TOTAL: Def =
    Def("drift_detected_total", "Changes found by a plan, by service and resource kind.", &["service", "resource"]);
const CHANGES_APPLIED_TOTAL: Def = Def(
    "changes_applied_total",
    "Changes applied, by service, resource kind and action.",
    &["service", "resource", "action"],
);
const AWS_API_CALLS_TOTAL: Def = Def(
    "aws_api_calls_total",
    "AWS API calls by service, operation and outcome.",
    &["service", "operation", "outcome"],
);
const AWS_API_CALL_DURATION_SECONDS: Def =
    Def("aws_api_call_duration_seconds", "AWS API call latency, retries included.", &["service", "operation"]);
const AWS_API_THROTTLED_TOTAL: Def =
    Def("aws_api_throttled_total", "AWS API calls that ended throttled.", &["service", "operation"]);
const LAST_SUCCESSFUL_RECONCILE_TIMESTAMP_SECONDS: Def =
    Def("last_successful_reconcile_timestamp_seconds", "Unix time of the last successful reconcile.", &["service"]);
const RUNNING_TASKS: Def = Def("running_tasks", "RUNNING tasks of the ECS service.", &["service"]);
const DESIRED_TASKS: Def = Def("desired_tasks", "desiredCount of the manifest.", &["service"]);
const DNS_RECORDS_PUBLISHED: Def =
    Def("dns_records_published", "Host IPs published in the service's A record.", &["service"]);
const CONFLICTS: Def =
    Def("conflicts", "Resources in the way that the operator does not own.", &["service", "resource"]);
const ROLLOUT_FAILED_TOTAL: Def = Def(
    "rollout_failed_total",
    "ECS deployments of an applied task definition that failed or were rolled back, once per deployment.",
    &["service"],
);
const PROBE_SUCCESS: Def = Def(
    "probe_success",
    "1 when the last probe of the endpoint logged in as the probe account, wrote, read back and deleted a file.",
    &["service", "endpoint"],
);
const PROBE_DURATION_SECONDS: Def =
    Def("probe_duration_seconds", "Time of one probe, all steps, pass or fail.", &["service", "endpoint"]);
const HOST_KEY_MISMATCH: Def = Def(
    "host_key_mismatch",
    "1 when the endpoint's server offered a host key that is not one of the service's.",
    &["service", "endpoint"],
);
const PROBE_FAILURES_TOTAL: Def = Def(
    "probe_failures_total",
    "Failed probes by reason (host-key-changed, login-refused, connect, write, ...).",
    &["service", "reason"],
);
const MANIFEST_LOAD_ERRORS_TOTAL: Def =
    Def("manifest_load_errors_total", "Manifest sets rejected (the last good set stays in force).", &[]);
const EVENTS_RECEIVED_TOTAL: Def =
    Def("events_received_total", "ECS events from the queue, by result (handled, foreign, malformed).", &["result"]);
const WORKQUEUE_DEPTH: Def = Def("workqueue_depth", "Services waiting to be reconciled.", &[]);
const WORKQUEUE_RETRIES_TOTAL: Def = Def("workqueue_retries_total", "Reconciles scheduled again after a failure.", &[]);
const LEADER: Def = Def("leader", "1 while this replica holds the lease.", &[]);
const BUILD_INFO: Def = Def("build_info", "Build information.", &["version"]);
const START_TIME_SECONDS: Def = Def("start_time_seconds", "Unix time the process started.", &[]);

/// Creates each metric from its [`Def`] and registers it.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn register<M: Collector + Clone + 'static>(&self, m: prometheus::Result<M>) -> M {
        let m = m.expect("metric definition is valid");
        self.0.register(Box::new(m.clone())).expect("metric names are unique");
        m
    }

    fn opts(Def(name, help, _): &Def) -> Opts {
        Opts::new(*name, *help).namespace(NS)
    }

    fn int_counter_vec(&self, d: Def) -> IntCounterVec {
        self.register(IntCounterVec::new(Self::opts(&d), d.2))
    }

    fn int_gauge_vec(&self, d: Def) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Self::opts(&d), d.2))
    }

    fn gauge_vec(&self, d: Def) -> GaugeVec {
        self.register(GaugeVec::new(Self::opts(&d), d.2))
    }

    fn histogram_vec(&self, d: Def, buckets: &[f64]) -> HistogramVec {
        let opts = HistogramOpts::new(d.0, d.1).namespace(NS).buckets(buckets.to_vec());
        self.register(HistogramVec::new(opts, d.2))
    }

    fn int_counter(&self, d: Def) -> IntCounter {
        self.register(IntCounter::with_opts(Self::opts(&d)))
    }

    fn int_gauge(&self, d: Def) -> IntGauge {
        self.register(IntGauge::with_opts(Self::opts(&d)))
    }

    fn gauge(&self, d: Def) -> Gauge {
        self.register(Gauge::with_opts(Self::opts(&d)))
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let r = Registrar(&registry);
        let m = Metrics {
            reconcile_total: r.int_counter_vec(RECONCILE_TOTAL),
            reconcile_errors_total: r.int_counter_vec(RECONCILE_ERRORS_TOTAL),
            reconcile_duration_seconds: r
                .histogram_vec(RECONCILE_DURATION_SECONDS, &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            drift_detected_total: r.int_counter_vec(DRIFT_DETECTED_TOTAL),
            changes_applied_total: r.int_counter_vec(CHANGES_APPLIED_TOTAL),
            aws_api_calls_total: r.int_counter_vec(AWS_API_CALLS_TOTAL),
            aws_api_call_duration_seconds: r.histogram_vec(
                AWS_API_CALL_DURATION_SECONDS,
                &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
            ),
            aws_api_throttled_total: r.int_counter_vec(AWS_API_THROTTLED_TOTAL),
            last_successful_reconcile_timestamp_seconds: r.gauge_vec(LAST_SUCCESSFUL_RECONCILE_TIMESTAMP_SECONDS),
            running_tasks: r.int_gauge_vec(RUNNING_TASKS),
            desired_tasks: r.int_gauge_vec(DESIRED_TASKS),
            dns_records_published: r.int_gauge_vec(DNS_RECORDS_PUBLISHED),
            conflicts: r.int_gauge_vec(CONFLICTS),
            rollout_failed_total: r.int_counter_vec(ROLLOUT_FAILED_TOTAL),
            probe_success: r.int_gauge_vec(PROBE_SUCCESS),
            probe_duration_seconds: r
                .histogram_vec(PROBE_DURATION_SECONDS, &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0]),
            host_key_mismatch: r.int_gauge_vec(HOST_KEY_MISMATCH),
            probe_failures_total: r.int_counter_vec(PROBE_FAILURES_TOTAL),
            manifest_load_errors_total: r.int_counter(MANIFEST_LOAD_ERRORS_TOTAL),
            events_received_total: r.int_counter_vec(EVENTS_RECEIVED_TOTAL),
            workqueue_depth: r.int_gauge(WORKQUEUE_DEPTH),
            workqueue_retries_total: r.int_counter(WORKQUEUE_RETRIES_TOTAL),
            leader: r.int_gauge(LEADER),
            build_info: r.int_gauge_vec(BUILD_INFO),
            up_since: r.gauge(START_TIME_SECONDS),
            registry,
        };
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m.up_since.set(now_seconds());
        Arc::new(m)
    }

    /// Feeds every AWS call the clients make into the API metrics.
    /// One finished AWS call (the call counter's observer feeds this).
    pub fn record_call(&self, service: &str, operation: &str, outcome: &str, throttled: bool, took: Duration) {
        self.aws_api_calls_total.with_label_values(&[service, operation, outcome]).inc();
        self.aws_api_call_duration_seconds.with_label_values(&[service, operation]).observe(took.as_secs_f64());
        if throttled {
            self.aws_api_throttled_total.with_label_values(&[service, operation]).inc();
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

pub fn now_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// Serves `/metrics`, `/healthz` (the process is alive) and `/readyz` (manifests loaded and
/// the first full sync done, as leader or standby) until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], m.render()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let r = ready.clone();
                async move {
                    if r.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready: manifests or first sync pending\n")
                    }
                }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_required_metric_is_exported_with_the_prefix() {
        let m = Metrics::new();
        m.reconcile_total.with_label_values(&["campus", "success"]).inc();
        m.reconcile_errors_total.with_label_values(&["campus", "aws"]).inc();
        m.reconcile_duration_seconds.with_label_values(&["campus"]).observe(0.2);
        m.drift_detected_total.with_label_values(&["campus", "listener"]).inc();
        m.changes_applied_total.with_label_values(&["campus", "listener", "create"]).inc();
        m.aws_api_calls_total.with_label_values(&["ECS", "DescribeServices", "ok"]).inc();
        m.aws_api_call_duration_seconds.with_label_values(&["ECS", "DescribeServices"]).observe(0.01);
        m.aws_api_throttled_total.with_label_values(&["Route 53", "ChangeResourceRecordSets"]).inc();
        m.last_successful_reconcile_timestamp_seconds.with_label_values(&["campus"]).set(1.0);
        m.running_tasks.with_label_values(&["campus"]).set(1);
        m.desired_tasks.with_label_values(&["campus"]).set(1);
        m.dns_records_published.with_label_values(&["campus"]).set(1);
        m.conflicts.with_label_values(&["campus", "dns-record"]).set(0);
        m.rollout_failed_total.with_label_values(&["campus"]).inc();
        m.probe_success.with_label_values(&["campus", "10.0.1.5:30020"]).set(1);
        m.probe_duration_seconds.with_label_values(&["campus", "10.0.1.5:30020"]).observe(0.2);
        m.host_key_mismatch.with_label_values(&["campus", "10.0.1.5:30020"]).set(0);
        m.probe_failures_total.with_label_values(&["campus", "login-refused"]).inc();
        m.events_received_total.with_label_values(&["handled"]).inc();
        let text = m.render();
        for name in [
            "reconcile_total",
            "reconcile_errors_total",
            "reconcile_duration_seconds",
            "drift_detected_total",
            "changes_applied_total",
            "aws_api_calls_total",
            "aws_api_call_duration_seconds",
            "aws_api_throttled_total",
            "last_successful_reconcile_timestamp_seconds",
            "running_tasks",
            "desired_tasks",
            "dns_records_published",
            "conflicts",
            "rollout_failed_total",
            "probe_success",
            "probe_duration_seconds",
            "host_key_mismatch",
            "probe_failures_total",
            "manifest_load_errors_total",
            "workqueue_depth",
            "workqueue_retries_total",
            "leader",
            "build_info",
        ] {
            assert!(text.contains(&format!("# TYPE sftp_operator_{name} ")), "missing {name}");
        }
    }

    #[test]
    fn each_metric_carries_its_help_text_and_kind() {
        let text = Metrics::new().render();
        for line in [
            "# HELP sftp_operator_start_time_seconds Unix time the process started.",
            "# TYPE sftp_operator_start_time_seconds gauge",
            "# HELP sftp_operator_manifest_load_errors_total Manifest sets rejected (the last good set stays in force).",
            "# TYPE sftp_operator_manifest_load_errors_total counter",
            "# HELP sftp_operator_leader 1 while this replica holds the lease.",
            "# TYPE sftp_operator_workqueue_depth gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        let build = format!("sftp_operator_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        assert!(text.lines().any(|l| l == build), "missing {build:?} in\n{text}");
    }
}
