//! The AWS-facing commands: flags in, the [`crate::reconcile`] core, text and exit codes out.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::aws::observe;
use crate::aws::{Clients, apply};
use crate::cli::{AwsArgs, CliError, PlanFormat};
use crate::observed::{Observed, name_from_arn};
use crate::plan::{Action, Kind, Plan};
use crate::reconcile::{self, Prepared, Reach};
use crate::render::{self, Desired};
use crate::report;
use crate::validate::Service;

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
    let Prepared { plan, .. } = reconcile::prepare(&clients, services, &args.options(), Reach::default()).await?;
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
    let prepared = reconcile::prepare(&clients, services, &options, Reach::default()).await?;
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

/// One service's live state, as `status` prints it (and `--output json` later).
#[derive(Debug, serde::Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub synced: bool,
    pub synced_reason: String,
    pub ready: bool,
    pub ready_reason: String,
    pub endpoints: Vec<String>,
    pub running_tasks: i32,
    pub desired_tasks: u32,
    pub targets: Vec<String>,
    pub known_hosts: Vec<String>,
    /// Placement and DNS notes: hosts, Cloud Map mismatches, a kept A record.
    pub notes: Vec<String>,
}

pub async fn status(services: &[Service], args: &AwsArgs) -> Result<ExitCode, CliError> {
    let clients = Clients::from_env(args.region.clone()).await;
    let reach = Reach { cloud_map_instances: true, ..Reach::default() };
    let Prepared { desired, observed, plan } = reconcile::prepare(&clients, services, &args.options(), reach).await?;
    let mut out = String::new();
    for d in &desired {
        let s = service_status(&clients, d, &observed, &plan).await?;
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

async fn service_status(c: &Clients, d: &Desired, o: &Observed, plan: &Plan) -> Result<ServiceStatus, CliError> {
    let mine: Vec<_> = plan.changes.iter().filter(|ch| ch.service == d.service).collect();
    let problems: Vec<_> = plan.problems.iter().filter(|p| p.service == d.service).collect();
    let (synced, synced_reason) = if let Some(p) = problems.first() {
        (false, p.message.clone())
    } else if mine.is_empty() {
        (true, "AWS matches the manifest".into())
    } else {
        (false, format!("{} pending change(s); run converge", mine.len()))
    };
    let live = o.ecs_services.iter().find(|s| s.cluster == d.ecs_service.cluster && s.name == d.ecs_service.name);
    let running = live.and_then(|s| s.running_count).unwrap_or(0);
    let (ready, ready_reason) = match live {
        None => (false, "ECS service does not exist".to_owned()),
        Some(s) if s.rollout_state.as_deref() == Some("FAILED") => {
            (false, format!("deployment failed: {}", s.rollout_reason.clone().unwrap_or_default()))
        }
        Some(_) if running < d.ecs_service.desired_count as i32 => {
            (false, format!("{running} of {} tasks running", d.ecs_service.desired_count))
        }
        Some(_) => (true, "all tasks running".into()),
    };
    // Where clients connect: the NLB (and its alias record) on the listener port; the direct
    // record (the hosts' private IPs, over Direct Connect) on the host port.
    let mut reachable: Vec<(String, u16, String)> = Vec::new();
    if let Some(Some(lb)) = o.load_balancers.get(&d.load_balancer_arn) {
        let label = format!("{} NLB {}", lb.scheme, name_from_arn(&lb.arn));
        reachable.push((lb.dns_name.clone(), d.listener.port, label));
    }
    if let Some(dns) = &d.dns {
        reachable.push((dns.record.trim_end_matches('.').to_owned(), d.target_group.port, "direct, host IPs".into()));
        if let Some(p) = &dns.public_record {
            reachable.push((p.trim_end_matches('.').to_owned(), d.listener.port, "alias to the NLB".into()));
        }
    }
    let endpoints = reachable.iter().map(|(h, p, label)| format!("sftp://{h}:{p} ({label})")).collect();
    let mut targets = Vec::new();
    if let Some(tg) = o.target_groups.iter().find(|t| t.name == d.target_group.name) {
        for (id, port, state) in observe::target_health(c, &tg.arn).await? {
            targets.push(format!("{id}:{} {state}", port.map_or("?".into(), |p| p.to_string())));
        }
    }
    let mut known_hosts = Vec::new();
    if let Some(secret) = d.host_key_secret.as_ref().and_then(|n| o.secrets.iter().find(|s| &s.name == n)) {
        for k in secret.public_keys() {
            for (host, port, _) in &reachable {
                known_hosts.push(crate::sshkeys::known_hosts_line(host, *port, &k));
            }
        }
    }
    let mut notes = Vec::new();
    if let (Some(dns), Some(p)) = (&d.dns, o.placements.get(&d.service)) {
        if p.host_ips.is_empty() {
            notes.push(format!("no running task: keeping the last A record of {}", dns.record));
        } else {
            notes.push(format!("{} task(s) on {}", p.running_tasks, p.host_ips.join(", ")));
        }
        if let Some(cm) = &p.cloud_map_ips
            && cm != &p.host_ips
        {
            notes.push(format!("Cloud Map registers [{}] but tasks run on [{}]", cm.join(", "), p.host_ips.join(", ")));
        }
    }
    for c in mine.iter().filter(|c| c.action == Action::Conflict) {
        notes.push(format!("conflict: {} {}: {}", c.kind.as_str(), c.name, c.reason.clone().unwrap_or_default()));
    }
    Ok(ServiceStatus {
        notes,
        service: d.service.clone(),
        synced,
        synced_reason,
        ready,
        ready_reason,
        endpoints,
        running_tasks: running,
        desired_tasks: d.ecs_service.desired_count,
        targets,
        known_hosts,
    })
}
