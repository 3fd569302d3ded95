//! Command line: flags as clap parses them, the command error and how values are printed.
//! With [`crate::commands`] the only place clap types exist; [`AwsArgs::options`] turns them into
//! the library's options. [`crate::app`] dispatches.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::diagnostic::Diagnostics;
use crate::load::LoadError;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `plan`: no changes)
  1  error: invalid manifests (each problem printed as file:line:column: field: message),
     bad usage, a failed AWS call, or (`converge --wait`) a deployment that failed, was rolled
     back or did not finish in time
  2  `plan` only: changes are pending";

#[derive(Debug, Parser)]
#[command(
    name = "sftp-operator",
    version,
    about = "Run atmoz/sftp on AWS ECS from declarative SftpService manifests",
    long_about = "Reads SftpService manifests (YAML), observes ECS, the NLB, security groups, Cloud Map and \
Route 53, and converges them: once (`converge`) or continuously (`run`).\n\n\
Start with `sftp-operator validate -f manifests/examples/` and `sftp-operator render -f FILE`.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct ManifestArgs {
    /// Manifest file or directory (*.yaml, *.yml); repeatable; `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub filename: Vec<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct OwnerArgs {
    /// Scopes ownership: resources are tagged `sftp-operator/owner=ID`, so two installations never touch each other's. Letters, digits and '-', at most 40.
    #[arg(long, env = "SFTP_OPERATOR_OWNER_ID", default_value = "sftp-operator", value_name = "ID", value_parser = crate::names::parse_owner_id)]
    pub owner_id: String,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests without contacting AWS; prints every problem with file:line:column.
    Validate {
        #[command(flatten)]
        manifests: ManifestArgs,
    },
    /// Print the AWS resources each service should have (task definition, service, target group, ...), without contacting AWS.
    Render {
        #[command(flatten)]
        manifests: ManifestArgs,
        #[command(flatten)]
        owner: OwnerArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Json)]
        output: Format,
        /// Only this service (metadata.name).
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
    },
    /// Print the JSON Schema of the SftpService manifest.
    Schema,
    /// Observe AWS and print what converge would change (exit 0: nothing, 2: changes pending, 1: error).
    Plan {
        #[command(flatten)]
        manifests: ManifestArgs,
        #[command(flatten)]
        aws: AwsArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = PlanFormat::Text)]
        output: PlanFormat,
    },
    /// Make AWS match the manifests: plan, then apply; prints what it did.
    Converge {
        #[command(flatten)]
        manifests: ManifestArgs,
        #[command(flatten)]
        aws: AwsArgs,
        /// Only print the plan (same as `plan`).
        #[arg(long)]
        dry_run: bool,
        /// Follow each changed ECS deployment until it completes or fails; a failed or rolled-back one exits 1.
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        wait_timeout: std::time::Duration,
        /// How often `--wait` asks ECS how the deployment stands.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, hide = true)]
        wait_poll: std::time::Duration,
        /// Skip the probe that follows the rollouts --wait sees complete, for services with a probe account (a runner with no path to the endpoints).
        #[arg(long)]
        no_probe: bool,
        /// Also ensure the SQS queue and EventBridge rule that feed `run --events-queue-url`.
        #[arg(long)]
        ensure_events: bool,
    },
    /// Live state of each service: Synced and Ready conditions, endpoints, tasks.
    Status {
        #[command(flatten)]
        manifests: ManifestArgs,
        #[command(flatten)]
        aws: AwsArgs,
        /// Skip the Probe condition (by default services with a probe account are logged in to, 5 s per endpoint at most).
        #[arg(long)]
        no_probe: bool,
    },
    /// Log in to each service as its probe account (spec.probe), as a user's client would: check the host key, authenticate, write, read back and delete a file (exit 0: every endpoint passed, 1: any failed).
    Probe {
        #[command(flatten)]
        manifests: ManifestArgs,
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        probe: ProbeArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = PlanFormat::Text)]
        output: PlanFormat,
    },
    /// Run as a controller: resync, manifest watching, ECS events, leader election, metrics.
    Run {
        #[command(flatten)]
        manifests: ManifestArgs,
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Delete the owned resources of the given manifests (host-key secrets are kept).
    Delete {
        #[command(flatten)]
        manifests: ManifestArgs,
        #[command(flatten)]
        aws: AwsArgs,
        /// Print what would be deleted without deleting.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Periodic resync of every service, in one batched pass (jittered up to 10%).
    #[arg(long, env = "SFTP_OPERATOR_RESYNC", default_value = "60s", value_parser = humantime::parse_duration)]
    pub resync: std::time::Duration,
    /// Services reconciled in parallel one by one (ECS events, retries); the resync is one batched pass.
    #[arg(long, env = "SFTP_OPERATOR_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// How often the batched pass (resync, manifest change) is a deep one. Shallow passes trust
    /// the rendering hash each ECS service carries and skip re-reading task-definition contents,
    /// listener attributes and the tags of resources that hash vouches for; deep passes read
    /// everything, catching hand edits to those. The first pass is deep; per-service passes (ECS
    /// events, retries) are shallow, unless --deep makes every pass deep.
    #[arg(long, env = "SFTP_OPERATOR_DEEP_CHECK_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub deep_check_interval: std::time::Duration,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "SFTP_OPERATOR_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: std::net::SocketAddr,
    /// SQS queue fed by the EventBridge rule on ECS Task State Change (see manifests/events.yaml).
    #[arg(long, env = "SFTP_OPERATOR_EVENTS_QUEUE_URL", value_name = "URL")]
    pub events_queue_url: Option<String>,
    /// DynamoDB table (partition key `lease`, string) for leader election among replicas.
    #[arg(long, env = "SFTP_OPERATOR_LEASE_TABLE", value_name = "TABLE")]
    pub lease_table: Option<String>,
    /// How long a lease lasts without renewal.
    #[arg(long, env = "SFTP_OPERATOR_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: std::time::Duration,
    /// How long SIGTERM waits for in-flight applies.
    #[arg(long, env = "SFTP_OPERATOR_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: std::time::Duration,
    /// Fallback re-read interval of the manifests (inotify triggers sooner).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub manifest_poll: std::time::Duration,
    /// How soon a service whose ECS deployment is under way is looked at again.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, hide = true)]
    pub rollout_poll: std::time::Duration,
    /// How often each service with a probe account (spec.probe) is probed; 0 turns probing off.
    #[arg(long, env = "SFTP_OPERATOR_PROBE_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub probe_interval: std::time::Duration,
    /// How long one endpoint's probe may take, all steps together.
    #[arg(long, env = "SFTP_OPERATOR_PROBE_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub probe_timeout: std::time::Duration,
    /// Probe only the endpoints reached this way (default: every endpoint `status` lists).
    #[arg(long, env = "SFTP_OPERATOR_PROBE_VIA", value_enum)]
    pub probe_via: Option<crate::probe::Via>,
    /// Probe this address for that service instead of its endpoints (a path the operator has
    /// that clients do not, such as a VPN address); repeatable.
    #[arg(long, value_name = "SERVICE=HOST:PORT", value_parser = parse_probe_endpoint)]
    pub probe_endpoint: Vec<(String, String)>,
    /// Log format (RUST_LOG sets the level; default info).
    #[arg(long, env = "SFTP_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

fn parse_probe_endpoint(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((service, endpoint)) if !service.is_empty() && endpoint.contains(':') => {
            Ok((service.to_owned(), endpoint.to_owned()))
        }
        _ => Err("expected SERVICE=HOST:PORT".into()),
    }
}

#[derive(Debug, Args, Clone)]
pub struct ProbeArgs {
    /// Only this service (metadata.name).
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Probe this address instead of the service's endpoints (a task reached another way).
    #[arg(long, value_name = "HOST:PORT")]
    pub endpoint: Option<String>,
    /// Only the endpoints reached this way (default: every endpoint `status` lists).
    #[arg(long, value_enum)]
    pub via: Option<crate::probe::Via>,
    /// How long one endpoint's probe may take, all steps together.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args, Clone)]
pub struct AwsArgs {
    #[command(flatten)]
    pub owner: OwnerArgs,
    /// AWS region (default: the SDK chain: AWS_REGION, profile, ...). The endpoint comes from AWS_ENDPOINT_URL.
    #[arg(long, env = "AWS_REGION", value_name = "REGION")]
    pub region: Option<String>,
    /// Take over resources in the way that no operator owns (tags them as ours) instead of reporting a conflict.
    #[arg(long)]
    pub adopt: bool,
    /// Delete owned resources whose manifest is gone (otherwise they are only reported).
    #[arg(long)]
    pub prune: bool,
    /// Read everything: also task-definition contents, listener attributes and the tags that a
    /// service's rendering hash vouches for (catches hand edits to those; more AWS calls).
    #[arg(long)]
    pub deep: bool,
    /// Write the AWS calls this run made (service, operation, outcome, count) as JSON to FILE.
    #[arg(long, value_name = "FILE", hide = true)]
    pub calls_out: Option<PathBuf>,
}

impl AwsArgs {
    /// The reconcile options: built here, from the flags, and nowhere else.
    pub fn options(&self) -> crate::reconcile::Options {
        crate::reconcile::Options { owner: self.owner.owner_id.clone(), adopt: self.adopt, prune: self.prune }
    }

    /// How far observe reads, from the flags.
    pub fn reach(&self) -> crate::reconcile::Reach {
        crate::reconcile::Reach { deep: self.deep, ..crate::reconcile::Reach::default() }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error("no service named `{0}` in the manifests")]
    NoSuchService(String),
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
    #[error("writing output: {0}")]
    Encode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// `converge --wait`: a deployment failed or did not finish in time.
    #[error("{0}")]
    Rollout(String),
    #[error("AWS: {0}")]
    Aws(#[from] crate::aws::AwsError),
    #[error("{0} change(s) failed")]
    ApplyFailed(usize),
    #[error("service `{0}` has no probe account: enable it with `spec.probe: {{enabled: true}}` and converge")]
    NoProbe(String),
    #[error("--endpoint is one service's address: name it with --service")]
    EndpointForOneService,
    #[error("no service in the manifests has a probe account (spec.probe)")]
    NothingToProbe,
    #[error("`run` never prunes; use `converge --prune` when a manifest is gone")]
    RunPrunes,
    #[error("{0}")]
    Run(#[source] crate::run::RunError),
    #[error("could not start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

pub(crate) fn output(e: std::io::Error) -> CliError {
    CliError::Output(e)
}

pub fn print_value<T: serde::Serialize>(v: &T, fmt: Format) -> Result<(), CliError> {
    let text = match fmt {
        Format::Json => serde_json::to_string_pretty(v).map_err(|e| CliError::Encode(e.into()))? + "\n",
        Format::Yaml => serde_saphyr::to_string(v).map_err(|e| CliError::Encode(e.into()))?,
    };
    std::io::stdout().lock().write_all(text.as_bytes()).map_err(output)
}
