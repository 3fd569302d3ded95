//! The AWS-facing commands: flags in, the [`crate::reconcile`] core, text and exit codes out.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::aws::observe;
use crate::aws::{Clients, apply};
use crate::cli::{AwsArgs, CliError, PlanFormat};
use crate::model::Service;
use crate::plan::Kind;
use crate::reconcile::{self, Prepared, Reach};
use crate::render::{self, Desired};
use crate::report;
use crate::status;

/// Exit code of `plan` when changes are pending.
pub const EXIT_CHANGES: u8 = 2;

fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn say(text: &str) -> Result<(), CliError> {
    std::io::stdout().lock().write_all(text.as_bytes()).map_err(CliError::Output)
}

pub async fn plan(services: &[Service], args: &AwsArgs, format: PlanFormat) -> Result<ExitCode, CliError> {
    let clients = Clients::from_env(args.region.clone()).await;
    let Prepared { plan, .. } = reconcile::prepare(&clients, services, &args.options(), args.reach()).await?;
    match format {
        PlanFormat::Text => say(&report::plan_text(&plan, color()))?,
        PlanFormat::Json => crate::cli::print_value(&plan, crate::cli::Format::Json)?,
    }
    if !plan.problems.is_empty() {
        return Ok(ExitCode::from(1));
    }
    Ok(if plan.has_changes() { ExitCode::from(EXIT_CHANGES) } else { ExitCode::SUCCESS })
}

pub async fn converge(
    services: &[Service],
    args: &AwsArgs,
    wait: Option<Duration>,
    ensure_events: bool,
) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let c = color();
    let clients = Clients::from_env(args.region.clone()).await;
    let options = args.options();
    let prepared = reconcile::prepare(&clients, services, &options, args.reach()).await?;
    say(&report::plan_text(&prepared.plan, c))?;
    let applied = reconcile::apply(&clients, services, &options, &prepared).await?;
    let Prepared { desired, plan, .. } = prepared;
    say(&report::applied_text(&applied, c))?;
    let failed = applied.iter().filter(|a| a.error.is_some()).count();
    say(&format!(
        "Applied {} change(s), {failed} failed, in {:.2}s; {} AWS calls ({} mutating).\n",
        applied.len() - failed,
        started.elapsed().as_secs_f64(),
        clients.calls.total(),
        clients.calls.mutating(),
    ))?;
    if ensure_events {
        let mut clusters: Vec<String> = desired.iter().map(render::cluster_arn).collect();
        clusters.sort();
        clusters.dedup();
        let url = crate::aws::events::ensure(&clients, &args.owner.owner_id, &clusters).await?;
        say(&format!("Events queue (for `run --events-queue-url`): {url}\n"))?;
    }
    write_calls(&clients, args)?;
    if let Some(timeout) = wait {
        let rolled: Vec<&Desired> = desired
            .iter()
            .filter(|d| {
                applied.iter().any(|a| a.service == d.service && a.kind == Kind::EcsService && a.error.is_none())
            })
            .collect();
        for d in rolled {
            wait_for_rollout(&clients, d, timeout).await?;
        }
    }
    if failed > 0 {
        return Err(CliError::ApplyFailed(failed));
    }
    Ok(if plan.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn wait_for_rollout(c: &Clients, d: &Desired, timeout: Duration) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    let tty = std::io::stderr().is_terminal();
    loop {
        let (state, running, want) = apply::rollout(c, &d.ecs_service.cluster, &d.ecs_service.name).await?;
        let state = state.unwrap_or_else(|| "UNKNOWN".into());
        if tty {
            eprint!("\r{}: rollout {state}, {running}/{want} running   ", d.service);
        }
        match state.as_str() {
            "COMPLETED" => {
                eprintln!("\n{}: deployment completed", d.service);
                return Ok(());
            }
            "FAILED" => {
                return Err(CliError::Rollout(format!(
                    "{}: deployment failed (circuit breaker rolled back)",
                    d.service
                )));
            }
            _ if Instant::now() >= deadline => {
                return Err(CliError::Rollout(format!("{}: deployment still {state} after {timeout:?}", d.service)));
            }
            _ => tokio::time::sleep(Duration::from_secs(5)).await,
        }
    }
}

pub async fn delete(services: &[Service], args: &AwsArgs, dry_run: bool) -> Result<ExitCode, CliError> {
    let clients = Clients::from_env(args.region.clone()).await;
    let options = args.options();
    let prepared = reconcile::prepare_delete(&clients, services, &options).await?;
    let c = color();
    say(&report::plan_text(&prepared.plan, c))?;
    if dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let applied = reconcile::apply(&clients, services, &options, &prepared).await?;
    say(&report::applied_text(&applied, c))?;
    write_calls(&clients, args)?;
    let failed = applied.iter().filter(|a| a.error.is_some()).count();
    if failed > 0 {
        return Err(CliError::ApplyFailed(failed));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--calls-out FILE`: the AWS calls this process made, for the IAM policy check.
fn write_calls(clients: &Clients, args: &AwsArgs) -> Result<(), CliError> {
    let Some(path) = &args.calls_out else { return Ok(()) };
    let calls: Vec<serde_json::Value> = clients
        .calls
        .snapshot()
        .iter()
        .map(|((service, operation, outcome), stats)| {
            serde_json::json!({"service": service, "operation": operation, "outcome": outcome, "count": stats.count})
        })
        .collect();
    std::fs::write(path, serde_json::to_string_pretty(&calls).expect("serialises")).map_err(CliError::Output)
}

pub async fn status(services: &[Service], args: &AwsArgs) -> Result<ExitCode, CliError> {
    let clients = Clients::from_env(args.region.clone()).await;
    let reach = Reach { cloud_map_instances: true, deep: true, ..Reach::default() };
    let Prepared { desired, observed, plan } = reconcile::prepare(&clients, services, &args.options(), reach).await?;
    let mut out = String::new();
    for d in &desired {
        let targets = match status::target_group_arn(d, &observed) {
            Some(arn) => observe::target_health(&clients, arn).await?,
            None => Vec::new(),
        };
        let s = status::service_status(d, &observed, &plan, &targets);
        out.push_str(&format!(
            "{}\n  Synced: {} ({})\n  Ready:  {} ({})\n  Tasks:  {}/{} running\n",
            s.service, s.synced, s.synced_reason, s.ready, s.ready_reason, s.running_tasks, s.desired_tasks
        ));
        for e in &s.endpoints {
            out.push_str(&format!("  Endpoint: {e}\n"));
        }
        for t in &s.targets {
            out.push_str(&format!("  Target: {t}\n"));
        }
        for k in &s.known_hosts {
            out.push_str(&format!("  known_hosts: {k}\n"));
        }
        for n in &s.notes {
            out.push_str(&format!("  Note: {n}\n"));
        }
    }
    say(&out)?;
    Ok(ExitCode::SUCCESS)
}
