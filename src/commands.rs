//! The AWS-facing commands: flags in, the [`crate::reconcile`] core, text and exit codes out.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::aws::Clients;
use crate::aws::observe;
use crate::cli::{AwsArgs, CliError, PlanFormat};
use crate::model::Service;
use crate::plan::Kind;
use crate::reconcile::{self, Prepared, Reach};
use crate::render::{self, Desired};
use crate::report;
use crate::rollout::{self, Outcome};
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

/// `converge --wait`: how long to follow the deployments, and how often to ask ECS.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    pub timeout: Duration,
    pub poll: Duration,
    /// Probe the services with a probe account once their rollout completed.
    pub probe: bool,
}

pub async fn converge(
    services: &[Service],
    args: &AwsArgs,
    wait: Option<Wait>,
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
    if let Some(wait) = wait {
        let rolled: Vec<&Desired> = desired
            .iter()
            .filter(|d| {
                applied.iter().any(|a| a.service == d.service && a.kind == Kind::EcsService && a.error.is_none())
            })
            .collect();
        let deadline = Instant::now() + wait.timeout;
        let mut failures = Vec::new();
        let mut completed = Vec::new();
        for d in rolled {
            match follow_rollout(&clients, d, wait, deadline).await? {
                Some(failure) => failures.push(failure),
                None => completed.push(d.service.clone()),
            }
        }
        // A completed deployment says the tasks run; the probe says users can log in.
        let probed: Vec<Service> = services
            .iter()
            .filter(|s| wait.probe && s.probe.is_some() && completed.contains(&s.name))
            .cloned()
            .collect();
        if !probed.is_empty() {
            let Prepared { desired, observed, .. } =
                reconcile::prepare(&clients, &probed, &options, args.reach()).await?;
            let every = crate::probe::Select::default();
            let reports = probe_reports(&clients, &desired, &observed, &every, PROBE_TIMEOUT).await;
            say(&reports.iter().map(crate::probe::Report::line).collect::<String>())?;
            failures.extend(reports.iter().filter(|r| !r.ok).map(|r| {
                let why = r.error.as_deref().unwrap_or("failed");
                format!("{}: the probe after the rollout failed at {}: {why}", r.target.service, r.target.endpoint)
            }));
        }
        if !failures.is_empty() {
            return Err(CliError::Rollout(failures.join("\n")));
        }
    }
    if failed > 0 {
        return Err(CliError::ApplyFailed(failed));
    }
    Ok(if plan.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Follows the deployment of `d`'s latest task definition (the one apply just put on its ECS
/// service) until it completes or fails, or `deadline` passes; the failure, if any, as the line
/// to print. A completion of the circuit breaker's rollback is not ours (see [`rollout`]).
async fn follow_rollout(c: &Clients, d: &Desired, wait: Wait, deadline: Instant) -> Result<Option<String>, CliError> {
    let (cluster, name, family) = (&d.ecs_service.cluster, &d.ecs_service.name, &d.names.task_family);
    let Some(ours) = observe::latest_task_definition(c, family).await? else {
        return Ok(Some(format!("{}: task family `{family}` has no active revision to follow", d.service)));
    };
    let revision = crate::observed::name_from_arn(&ours);
    let tty = std::io::stderr().is_terminal();
    loop {
        let Some(live) = observe::ecs_service(c, cluster, name).await? else {
            return Ok(Some(format!("{}: ECS service `{name}` is gone", d.service)));
        };
        match rollout::outcome(&live, &ours) {
            Outcome::Completed => {
                eprintln!("{}{}: deployment of {revision} completed", if tty { "\n" } else { "" }, d.service);
                return Ok(None);
            }
            Outcome::Failed(f) => {
                if tty {
                    eprintln!();
                }
                return Ok(Some(format!("{}: {f}", d.service)));
            }
            Outcome::InProgress { running, desired } => {
                if tty {
                    eprint!("\r{}: deployment of {revision} in progress, {running}/{desired} running   ", d.service);
                }
                if Instant::now() >= deadline {
                    let waited = humantime::format_duration(wait.timeout);
                    return Ok(Some(format!(
                        "{}: deployment of {revision} still in progress ({running}/{desired} running) after {waited}",
                        d.service
                    )));
                }
                tokio::time::sleep(wait.poll).await;
            }
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

pub async fn status(services: &[Service], args: &AwsArgs, probe: bool) -> Result<ExitCode, CliError> {
    let clients = Clients::from_env(args.region.clone()).await;
    let reach = Reach { cloud_map_instances: true, deep: true, ..Reach::default() };
    let Prepared { desired, observed, plan } = reconcile::prepare(&clients, services, &args.options(), reach).await?;
    let every = crate::probe::Select::default();
    let probed = match probe {
        true => probe_reports(&clients, &desired, &observed, &every, STATUS_PROBE_TIMEOUT).await,
        false => Vec::new(),
    };
    let mut out = String::new();
    for d in &desired {
        let targets = match status::target_group_arn(d, &observed) {
            Some(arn) => observe::target_health(&clients, arn).await?,
            None => Vec::new(),
        };
        let s = status::service_status(d, &observed, &plan, &targets);
        out.push_str(&format!(
            "{}\n  Synced: {} ({})\n  Ready:  {} ({})\n",
            s.service, s.synced, s.synced_reason, s.ready, s.ready_reason
        ));
        let mine: Vec<&crate::probe::Report> = probed.iter().filter(|r| r.target.service == d.service).collect();
        if !mine.is_empty() {
            let (ok, why) = status::probe_condition(&mine);
            out.push_str(&format!("  Probe:  {ok} ({why})\n"));
        }
        out.push_str(&format!("  Tasks:  {}/{} running\n", s.running_tasks, s.desired_tasks));
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

/// How long one endpoint's probe may take after `converge --wait`'s rollouts.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// `status` answers promptly: an endpoint that takes longer fails its Probe condition.
const STATUS_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Each endpoint of the services with a probe account, probed within `timeout` each.
async fn probe_reports(
    clients: &Clients,
    desired: &[Desired],
    observed: &crate::observed::Observed,
    select: &crate::probe::Select,
    timeout: Duration,
) -> Vec<crate::probe::Report> {
    let subjects = crate::probe::subjects(desired, observed, select);
    let subjects: Vec<&crate::probe::Subject> = subjects.iter().collect();
    let creds = crate::probe::credentials(clients, &subjects).await;
    crate::probe::probe_all(&subjects, &creds, timeout).await
}

/// `probe`: observe (no writes), read each probe account's key, log in to every endpoint.
pub async fn probe(
    services: &[Service],
    args: &AwsArgs,
    p: &crate::cli::ProbeArgs,
    format: PlanFormat,
) -> Result<ExitCode, CliError> {
    let chosen: Vec<Service> = match &p.service {
        Some(name) => {
            vec![
                services
                    .iter()
                    .find(|s| &s.name == name)
                    .cloned()
                    .ok_or_else(|| CliError::NoSuchService(name.clone()))?,
            ]
        }
        None => services.iter().filter(|s| s.probe.is_some()).cloned().collect(),
    };
    if p.endpoint.is_some() && chosen.len() > 1 {
        return Err(CliError::EndpointForOneService);
    }
    match chosen.iter().find(|s| s.probe.is_none()) {
        Some(s) => return Err(CliError::NoProbe(s.name.clone())),
        None if chosen.is_empty() => return Err(CliError::NothingToProbe),
        None => {}
    }
    let clients = Clients::from_env(args.region.clone()).await;
    let Prepared { desired, observed, .. } =
        reconcile::prepare(&clients, &chosen, &args.options(), args.reach()).await?;
    let select = crate::probe::Select { via: p.via, endpoint: p.endpoint.clone() };
    let reports = probe_reports(&clients, &desired, &observed, &select, p.timeout).await;
    match format {
        PlanFormat::Text => say(&reports.iter().map(crate::probe::Report::line).collect::<String>())?,
        PlanFormat::Json => crate::cli::print_value(&reports, crate::cli::Format::Json)?,
    }
    write_calls(&clients, args)?;
    let passed = !reports.is_empty() && reports.iter().all(|r| r.ok);
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
