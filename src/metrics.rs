//! Prometheus metrics (controller-runtime's names with an `sftp_operator_` prefix) and the
//! `/metrics`, `/healthz`, `/readyz` endpoints. Labels carry service names, resource kinds,
//! AWS operation names and outcomes only: never a key, a hash or a secret.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    pub manifest_load_errors_total: IntCounter,
    pub events_received_total: IntCounterVec,
    pub workqueue_depth: IntGauge,
    pub workqueue_retries_total: IntCounter,
    pub leader: IntGauge,
    pub build_info: IntGaugeVec,
    pub up_since: Gauge,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NS)
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        macro_rules! reg {
            ($e:expr) => {{
                let m = $e.expect("metric definition is valid");
                registry.register(Box::new(m.clone())).expect("metric names are unique");
                m
            }};
        }
        let m = Metrics {
            reconcile_total: reg!(IntCounterVec::new(
                opts("reconcile_total", "Reconciles by service and result (success, error, skipped)."),
                &["service", "result"]
            )),
            reconcile_errors_total: reg!(IntCounterVec::new(
                opts("reconcile_errors_total", "Failed reconciles by service and error category."),
                &["service", "category"]
            )),
            reconcile_duration_seconds: reg!(HistogramVec::new(
                HistogramOpts::new("reconcile_duration_seconds", "Time to observe, plan and apply one service.")
                    .namespace(NS)
                    .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
                &["service"]
            )),
            drift_detected_total: reg!(IntCounterVec::new(
                opts("drift_detected_total", "Changes found by a plan, by service and resource kind."),
                &["service", "resource"]
            )),
            changes_applied_total: reg!(IntCounterVec::new(
                opts("changes_applied_total", "Changes applied, by service, resource kind and action."),
                &["service", "resource", "action"]
            )),
            aws_api_calls_total: reg!(IntCounterVec::new(
                opts("aws_api_calls_total", "AWS API calls by service, operation and outcome."),
                &["service", "operation", "outcome"]
            )),
            aws_api_call_duration_seconds: reg!(HistogramVec::new(
                HistogramOpts::new("aws_api_call_duration_seconds", "AWS API call latency, retries included.")
                    .namespace(NS)
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                &["service", "operation"]
            )),
            aws_api_throttled_total: reg!(IntCounterVec::new(
                opts("aws_api_throttled_total", "AWS API calls that ended throttled."),
                &["service", "operation"]
            )),
            last_successful_reconcile_timestamp_seconds: reg!(GaugeVec::new(
                opts("last_successful_reconcile_timestamp_seconds", "Unix time of the last successful reconcile."),
                &["service"]
            )),
            running_tasks: reg!(IntGaugeVec::new(
                opts("running_tasks", "RUNNING tasks of the ECS service."),
                &["service"]
            )),
            desired_tasks: reg!(IntGaugeVec::new(opts("desired_tasks", "desiredCount of the manifest."), &["service"])),
            dns_records_published: reg!(IntGaugeVec::new(
                opts("dns_records_published", "Host IPs published in the service's A record."),
                &["service"]
            )),
            conflicts: reg!(IntGaugeVec::new(
                opts("conflicts", "Resources in the way that the operator does not own."),
                &["service", "resource"]
            )),
            manifest_load_errors_total: reg!(IntCounter::with_opts(opts(
                "manifest_load_errors_total",
                "Manifest sets rejected (the last good set stays in force)."
            ))),
            events_received_total: reg!(IntCounterVec::new(
                opts("events_received_total", "ECS events from the queue, by result (handled, foreign, malformed)."),
                &["result"]
            )),
            workqueue_depth: reg!(IntGauge::with_opts(opts("workqueue_depth", "Services waiting to be reconciled."))),
            workqueue_retries_total: reg!(IntCounter::with_opts(opts(
                "workqueue_retries_total",
                "Reconciles scheduled again after a failure."
            ))),
            leader: reg!(IntGauge::with_opts(opts("leader", "1 while this replica holds the lease."))),
            build_info: reg!(IntGaugeVec::new(opts("build_info", "Build information."), &["version"])),
            up_since: reg!(Gauge::with_opts(opts("start_time_seconds", "Unix time the process started."))),
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
            "manifest_load_errors_total",
            "workqueue_depth",
            "workqueue_retries_total",
            "leader",
            "build_info",
        ] {
            assert!(text.contains(&format!("# TYPE sftp_operator_{name} ")), "missing {name}");
        }
    }
}
