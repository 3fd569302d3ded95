//! The probe: log in to each endpoint of a service as its probe account would (a real SSH and
//! SFTP client), and say what worked and how long each step took. [`targets`] and the report
//! are pure; [`client`] does the network part, [`crate::commands`] and [`crate::run`] the AWS
//! part (the probe's private key from its secret).

pub mod cadence;
pub mod client;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

use crate::observed::Observed;
use crate::render::Desired;
use crate::sshkeys::ParsedKey;

pub use client::{Credentials, probe};

/// How a client reaches the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Via {
    /// A task's host directly: its private IP on the host port (what the direct record holds).
    Direct,
    /// The network load balancer's DNS name on the listener port.
    Nlb,
    /// The public alias record on the listener port.
    Public,
    /// An address given on the command line.
    Given,
}

/// One endpoint of one service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Target {
    pub service: String,
    pub via: Via,
    /// `host:port`.
    pub endpoint: String,
}

/// Each step of a probe, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// TCP, key exchange and the host-key check.
    Connect,
    /// Public-key login.
    Authenticate,
    /// A session channel with the `sftp` subsystem (what `ForceCommand internal-sftp` serves).
    Session,
    Write,
    Read,
    Delete,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Authenticate => "authenticate",
            Step::Session => "session",
            Step::Write => "write",
            Step::Read => "read",
            Step::Delete => "delete",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StepTime {
    pub step: Step,
    pub seconds: f64,
}

/// Why a probe failed; never holds key material.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error("host key changed: the server offered {offered}, which is not one of the service's host keys")]
    HostKeyChanged { offered: String },
    #[error("no Ed25519 or ECDSA host key is known for this service, so none can be verified")]
    NoVerifiableHostKey,
    #[error("the probe account's key in its secret is not an OpenSSH private key")]
    ProbeKeyUnreadable,
    #[error("login refused: the server did not accept the probe account's key")]
    LoginRefused,
    #[error("the file read back differs from the one written")]
    ReadBackDiffers,
    #[error("{}: timed out", .0.as_str())]
    Timeout(Step),
    #[error("{}: {message}", step.as_str())]
    Step { step: Step, message: String },
    /// Found before connecting: no credentials, no endpoint.
    #[error("{0}")]
    Setup(String),
}

impl Failure {
    /// A short machine label for logs and JSON: `host-key-changed`, `login-refused`, `write`...
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::HostKeyChanged { .. } => "host-key-changed",
            Failure::NoVerifiableHostKey => "no-verifiable-host-key",
            Failure::ProbeKeyUnreadable => "probe-key-unreadable",
            Failure::LoginRefused => "login-refused",
            Failure::ReadBackDiffers => "read-back-differs",
            Failure::Timeout(_) => "timeout",
            Failure::Step { step, .. } => step.as_str(),
            Failure::Setup(_) => "setup",
        }
    }
}

/// One endpoint's probe: `failure` is `None` when every step passed.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub failure: Option<Failure>,
    pub steps: Vec<StepTime>,
    pub seconds: f64,
}

impl Outcome {
    /// Failed before any step ran.
    pub fn failed(why: Failure) -> Outcome {
        Outcome { failure: Some(why), steps: Vec::new(), seconds: 0.0 }
    }
}

/// A probed target, as `probe -o json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub target: Target,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub seconds: f64,
    pub steps: Vec<StepTime>,
    #[serde(skip)]
    pub failure: Option<Failure>,
}

impl Report {
    pub fn new(target: Target, outcome: Outcome) -> Report {
        Report {
            target,
            ok: outcome.failure.is_none(),
            reason: outcome.failure.as_ref().map(Failure::reason),
            error: outcome.failure.as_ref().map(ToString::to_string),
            seconds: outcome.seconds,
            steps: outcome.steps,
            failure: outcome.failure,
        }
    }

    /// `campus nlb sftp.example.org:22  ok  0.182s (connect 0.061s, authenticate 0.040s, ...)`.
    pub fn line(&self) -> String {
        let steps: Vec<String> = self.steps.iter().map(|s| format!("{} {:.3}s", s.step.as_str(), s.seconds)).collect();
        let verdict = match &self.error {
            None => "ok".to_owned(),
            Some(e) => format!("FAILED: {e}"),
        };
        let via = serde_json::to_value(self.target.via).ok().and_then(|v| v.as_str().map(str::to_owned));
        format!(
            "{} {} {}  {verdict}  {:.3}s ({})\n",
            self.target.service,
            via.unwrap_or_default(),
            self.target.endpoint,
            self.seconds,
            steps.join(", ")
        )
    }
}

/// The endpoints `status` lists, as probe targets: each task's host on the host port, the NLB
/// and the public alias on the listener port; only those reached `via` when given.
pub fn targets(d: &Desired, o: &Observed, via: Option<Via>) -> Vec<Target> {
    let mut out = Vec::new();
    let mut add = |v: Via, host: &str, port: u16| {
        if via.is_none_or(|w| w == v) {
            out.push(Target { service: d.service.clone(), via: v, endpoint: format!("{host}:{port}") });
        }
    };
    if let Some(p) = o.placements.get(&d.ecs_service.name) {
        for ip in &p.host_ips {
            add(Via::Direct, ip, d.target_group.port);
        }
    }
    if let Some(Some(lb)) = o.load_balancers.get(&d.load_balancer_arn) {
        add(Via::Nlb, &lb.dns_name, d.listener.port);
    }
    if let Some(public) = d.dns.as_ref().and_then(|dns| dns.public_record.as_deref()) {
        add(Via::Public, public.trim_end_matches('.'), d.listener.port);
    }
    out
}

/// Whether `secret` carries `d`'s owner and service tags: only then is what it says trusted.
fn ours(secret: &crate::observed::Secret, d: &Desired) -> bool {
    [crate::names::OWNER_TAG, crate::names::SERVICE_TAG].iter().all(|k| secret.tags.get(*k) == d.tags.get(*k))
}

/// The host keys a probe of `d` trusts: those the manifest lists and the public halves kept
/// on the generated host-key secret, when that secret is ours.
pub fn host_keys(d: &Desired, o: &Observed) -> Vec<ParsedKey> {
    let mut keys = d.host_public_keys.clone();
    let generated = d.host_key_secret.as_ref().and_then(|n| o.secrets.iter().find(|s| &s.name == n));
    if let Some(secret) = generated.filter(|s| ours(s, d)) {
        keys.extend(secret.public_keys().iter().filter_map(|k| crate::sshkeys::parse_public_key(k).ok()));
    }
    keys
}

/// Which endpoints to probe: all `status` lists, those reached one way, or one given address.
#[derive(Clone, Debug, Default)]
pub struct Select {
    pub via: Option<Via>,
    pub endpoint: Option<String>,
}

/// What probing one service needs: where its probe account's key is kept, the host keys to
/// trust, and the endpoints to try.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    pub service: String,
    pub secret: String,
    /// Why the probe-key secret must not be used (it is not this service's), if so.
    pub refused: Option<String>,
    pub host_keys: Vec<ParsedKey>,
    pub targets: Vec<Target>,
}

/// Each service with a probe account, from a pass's rendering and observation.
pub fn subjects(desired: &[Desired], observed: &Observed, select: &Select) -> Vec<Subject> {
    desired
        .iter()
        .filter_map(|d| {
            let probe = d.probe.as_ref()?;
            let targets = match &select.endpoint {
                Some(e) => vec![Target { service: d.service.clone(), via: Via::Given, endpoint: e.clone() }],
                None => targets(d, observed, select.via),
            };
            let foreign = observed.secrets.iter().find(|s| s.name == probe.secret).filter(|s| !ours(s, d));
            Some(Subject {
                service: d.service.clone(),
                secret: probe.secret.clone(),
                refused: foreign.map(|s| format!("the secret {} is not this service's: its key is not used", s.name)),
                host_keys: host_keys(d, observed),
                targets,
            })
        })
        .collect()
}

/// Each subject's credentials: the probe account's private key read from its secret (one
/// GetSecretValue each), or why it cannot be had.
pub async fn credentials(
    clients: &crate::aws::Clients,
    subjects: &[&Subject],
) -> BTreeMap<String, Result<Arc<Credentials>, Failure>> {
    let reads = subjects.iter().map(|s| async move {
        if let Some(why) = &s.refused {
            return (s.service.clone(), Err(Failure::Setup(why.clone())));
        }
        let creds = match crate::aws::read_probe_key(clients, &s.secret).await {
            Ok(Some(key)) => Ok(Arc::new(Credentials {
                user: crate::model::PROBE_USER.to_owned(),
                private_key: Arc::new(key),
                host_keys: s.host_keys.clone(),
            })),
            Ok(None) => {
                Err(Failure::Setup(format!("the probe account's secret {} does not exist yet: run converge", s.secret)))
            }
            Err(e) => Err(Failure::Setup(format!("reading the probe account's secret {}: {e}", s.secret))),
        };
        (s.service.clone(), creds)
    });
    futures_util::future::join_all(reads).await.into_iter().collect()
}

/// At most this many endpoints are probed at the same time.
const MAX_PROBES_AT_ONCE: usize = 16;

/// Probes every target of each subject, [`MAX_PROBES_AT_ONCE`] at a time, each within `timeout`.
pub async fn probe_all(
    subjects: &[&Subject],
    creds: &BTreeMap<String, Result<Arc<Credentials>, Failure>>,
    timeout: Duration,
) -> Vec<Report> {
    let mut runs = Vec::new();
    let mut reports = Vec::new();
    for s in subjects {
        let Some(creds) = creds.get(&s.service) else { continue };
        let nowhere = || Target { service: s.service.clone(), via: Via::Given, endpoint: "-".into() };
        match creds {
            Err(why) => reports.push(Report::new(nowhere(), Outcome::failed(why.clone()))),
            Ok(_) if s.targets.is_empty() => {
                let why =
                    Failure::Setup("no endpoint to probe: no running task, load balancer or public record".into());
                reports.push(Report::new(nowhere(), Outcome::failed(why)));
            }
            Ok(c) => runs.extend(s.targets.iter().map(|t| {
                let c = c.clone();
                async move {
                    let outcome = probe(&t.endpoint, &c, timeout).await;
                    Report::new(t.clone(), outcome)
                }
            })),
        }
    }
    // Bounded: many services must not open hundreds of connections at once.
    let done: Vec<Report> = futures_util::stream::iter(runs).buffer_unordered(MAX_PROBES_AT_ONCE).collect().await;
    reports.extend(done);
    reports.sort_by(|a, b| a.target.cmp(&b.target));
    reports
}

/// A file name no user picks and no two probes share.
fn probe_file_name() -> String {
    format!(".sftp-operator-probe-{:016x}", fastrand::u64(..))
}

/// What the probe writes and expects to read back.
fn probe_file_body() -> String {
    format!("sftp-operator probe {:032x}\n", fastrand::u128(..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Placement;
    use crate::observed::LoadBalancer;

    fn desired() -> Desired {
        let text = crate::validate::tests::MANIFEST.replace(
            "  access:\n",
            "  dns:\n    zone: example.org\n    record: drop.example.org\n    publicRecord: sftp.example.org\n  access:\n",
        );
        crate::render::render(&crate::validate::tests::service(&text), "sftp-operator")
    }

    fn world(d: &Desired) -> Observed {
        let lb = LoadBalancer { dns_name: "nlb-1.elb.example".into(), ..LoadBalancer::default() };
        let placement = Placement {
            running_tasks: 2,
            host_ips: vec!["10.0.1.5".into(), "10.0.2.7".into()],
            ..Placement::default()
        };
        Observed {
            load_balancers: [(d.load_balancer_arn.clone(), Some(lb))].into(),
            placements: [(d.ecs_service.name.clone(), placement)].into(),
            ..Observed::default()
        }
    }

    #[test]
    fn every_endpoint_status_lists_is_a_target_and_via_picks_one_kind() {
        let d = desired();
        let o = world(&d);
        let all: Vec<(Via, String)> = targets(&d, &o, None).into_iter().map(|t| (t.via, t.endpoint)).collect();
        assert_eq!(
            all,
            [
                (Via::Direct, "10.0.1.5:30020".to_owned()),
                (Via::Direct, "10.0.2.7:30020".to_owned()),
                (Via::Nlb, "nlb-1.elb.example:2220".to_owned()),
                (Via::Public, "sftp.example.org:2220".to_owned()),
            ]
        );
        let nlb: Vec<String> = targets(&d, &o, Some(Via::Nlb)).into_iter().map(|t| t.endpoint).collect();
        assert_eq!(nlb, ["nlb-1.elb.example:2220"]);
        assert!(targets(&d, &Observed::default(), Some(Via::Direct)).is_empty(), "no task runs: nothing direct");
    }

    #[test]
    fn a_report_names_the_failure_and_each_step() {
        let target = Target { service: "drop".into(), via: Via::Direct, endpoint: "10.0.1.5:30020".into() };
        let outcome = Outcome {
            failure: Some(Failure::HostKeyChanged { offered: "SHA256:abc".into() }),
            steps: vec![StepTime { step: Step::Connect, seconds: 0.0123 }],
            seconds: 0.0125,
        };
        let r = Report::new(target, outcome);
        assert_eq!(r.reason, Some("host-key-changed"));
        assert_eq!(
            r.line(),
            "drop direct 10.0.1.5:30020  FAILED: host key changed: the server offered SHA256:abc, which is not one of \
             the service's host keys  0.013s (connect 0.012s)\n"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["via"], "direct");
        assert_eq!(json["ok"], false);
        assert_eq!(json["steps"][0]["step"], "connect");
    }
}
