//! The binary's entry: parse the flags ([`crate::cli`]), run the command ([`crate::commands`] for
//! the AWS-facing ones), print errors, choose the exit code.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::output;
use crate::cli::{
    AwsArgs, Cli, CliError, Command, Format, LogFormat, ManifestArgs, OwnerArgs, PlanFormat, RunArgs, print_value,
};
use crate::load::{self, LoadError};
use crate::model::Service;
use crate::render;
use crate::validate;

/// Entry point for the binary: parse, dispatch, print errors, choose the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Help and version are successes; usage errors exit 1 (2 means "changes pending").
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", error_text(&e));
            ExitCode::from(1)
        }
    }
}

fn error_text(e: &CliError) -> String {
    match e {
        CliError::Invalid(d) | CliError::Load(LoadError::Invalid(d)) => d.to_string(),
        other => format!("error: {other}"),
    }
}

/// Runs one parsed command.
pub fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Validate { manifests } => validate_command(&manifests),
        Command::Render { manifests, owner, output: fmt, service } => {
            render_command(&manifests, &owner, fmt, service.as_deref())
        }
        Command::Schema => {
            print_value(&crate::spec::json_schema(), Format::Json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { manifests, aws, output } => {
            let services = load_services(&manifests)?;
            block_on(crate::commands::plan(&services, &aws, output))
        }
        Command::Converge { manifests, aws, dry_run, wait, wait_timeout, wait_poll, no_probe, ensure_events } => {
            let services = load_services(&manifests)?;
            if dry_run {
                return block_on(crate::commands::plan(&services, &aws, PlanFormat::Text));
            }
            let wait =
                wait.then_some(crate::commands::Wait { timeout: wait_timeout, poll: wait_poll, probe: !no_probe });
            block_on(crate::commands::converge(&services, &aws, wait, ensure_events))
        }
        Command::Status { manifests, aws, no_probe } => {
            let services = load_services(&manifests)?;
            block_on(crate::commands::status(&services, &aws, !no_probe))
        }
        Command::Probe { manifests, aws, probe, output } => {
            let services = load_services(&manifests)?;
            block_on(crate::commands::probe(&services, &aws, &probe, output))
        }
        Command::Run { manifests, aws, run } => run_command(manifests, aws, run),
        Command::Delete { manifests, aws, dry_run } => {
            let services = load_services(&manifests)?;
            block_on(crate::commands::delete(&services, &aws, dry_run))
        }
    }
}

/// `validate`: each service with where it is, then the count.
fn validate_command(manifests: &ManifestArgs) -> Result<ExitCode, CliError> {
    let services = load_services(manifests)?;
    let mut out = std::io::stdout().lock();
    for s in &services {
        writeln!(out, "{}: ok ({}:{})", s.name, s.origin.file.display(), s.origin.doc + 1).map_err(output)?;
    }
    writeln!(out, "{} service{} valid", services.len(), if services.len() == 1 { "" } else { "s" }).map_err(output)?;
    Ok(ExitCode::SUCCESS)
}

/// `render`: the desired resources of every service, or of the one named, with hashes redacted.
fn render_command(
    manifests: &ManifestArgs,
    owner: &OwnerArgs,
    fmt: Format,
    service: Option<&str>,
) -> Result<ExitCode, CliError> {
    let services = load_services(manifests)?;
    let selected: Vec<&Service> = match service {
        Some(name) => {
            let s = services.iter().find(|s| s.name == name).ok_or_else(|| CliError::NoSuchService(name.to_owned()))?;
            vec![s]
        }
        None => services.iter().collect(),
    };
    let rendered: Vec<render::Desired> =
        selected.iter().map(|s| render::render_for_display(s, &owner.owner_id)).collect();
    print_value(&rendered, fmt)?;
    Ok(ExitCode::SUCCESS)
}

/// `run`: the controller, until a signal stops it. Never with `--prune`.
fn run_command(manifests: ManifestArgs, aws: AwsArgs, run: RunArgs) -> Result<ExitCode, CliError> {
    if aws.prune {
        // Deleting on a timer is too easy to regret: prune stays an explicit converge.
        return Err(CliError::RunPrunes);
    }
    crate::run::init_logging(run.log_format == LogFormat::Json);
    let cfg = crate::run::RunConfig {
        paths: manifests.filename,
        options: aws.options(),
        reach: aws.reach(),
        region: aws.region,
        metrics_addr: run.metrics_addr,
        events_queue_url: run.events_queue_url,
        lease_table: run.lease_table,
        lease_duration: run.lease_duration,
        manifest_poll: run.manifest_poll,
        deep_check_interval: run.deep_check_interval,
        rollout_poll: run.rollout_poll,
        probe: crate::probe::cadence::ProbeConfig {
            interval: run.probe_interval,
            timeout: run.probe_timeout,
            via: run.probe_via,
            endpoints: run.probe_endpoint.into_iter().collect(),
        },
        loop_config: crate::controller::LoopConfig {
            resync: run.resync,
            concurrency: run.concurrency.max(1),
            shutdown_timeout: run.shutdown_timeout,
            ..Default::default()
        },
    };
    block_on(async { crate::run::operate(cfg).await.map(|()| ExitCode::SUCCESS).map_err(CliError::Run) })
}

/// Manifests are loaded and validated before this: bad input never reaches AWS.
fn block_on<F: std::future::Future<Output = Result<ExitCode, CliError>>>(f: F) -> Result<ExitCode, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?
        .block_on(f)
}

/// Loads and validates: the first step of every command that reads manifests.
pub fn load_services(args: &ManifestArgs) -> Result<Vec<Service>, CliError> {
    Ok(validate::load_and_validate(&load::read_sources(&args.filename)?)?)
}
