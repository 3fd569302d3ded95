//! `status`: one service's live state — the Synced and Ready conditions, where clients connect,
//! `known_hosts` lines and notes — decided from what observe found and what plan would change.
//! Pure, data in and data out: `commands::status` observes, asks for target health
//! and prints.

use serde::Serialize;

use crate::observed::{EcsService, Observed, name_from_arn};
use crate::plan::{Action, Change, Plan};
use crate::render::Desired;
use crate::rollout;

/// One service's live state, as `status` prints it (and `--output json` later).
#[derive(Debug, Serialize)]
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

/// One registered target as DescribeTargetHealth reports it: instance id, port, state.
pub type TargetHealth = (String, Option<i32>, String);

/// A condition: whether it holds, and why (or why not).
type Condition = (bool, String);

/// Where clients connect: host, port and how the name reaches the service.
struct Endpoint {
    host: String,
    port: u16,
    label: String,
}

/// The ARN of the service's target group, when observe found it: the one thing `status` must
/// still ask AWS about (its targets' health).
pub fn target_group_arn<'a>(d: &Desired, o: &'a Observed) -> Option<&'a str> {
    o.target_groups.iter().find(|t| t.name == d.target_group.name).map(|t| t.arn.as_str())
}

/// `d`'s state from the observed world, the plan, and its target group's health (empty when
/// the target group does not exist).
pub fn service_status(d: &Desired, o: &Observed, plan: &Plan, targets: &[TargetHealth]) -> ServiceStatus {
    // The security group's rules are shared: their pending changes are every service's on it.
    let group = crate::plan::group_scope(&d.security_group_id);
    // (A hand-made rule left in place as a conflict is not pending.)
    let mine: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|ch| ch.service == d.service || (ch.service == group && ch.action != Action::Conflict))
        .collect();
    let (synced, synced_reason) = synced(d, plan, &mine);
    let live = o.ecs_services.iter().find(|s| s.cluster == d.ecs_service.cluster && s.name == d.ecs_service.name);
    let running = live.and_then(|s| s.running_count).unwrap_or(0);
    let (ready, ready_reason) = ready(d, live, running);
    let reachable = endpoints(d, o);
    ServiceStatus {
        notes: notes(d, o, &mine),
        service: d.service.clone(),
        synced,
        synced_reason,
        ready,
        ready_reason,
        endpoints: reachable.iter().map(|e| format!("sftp://{}:{} ({})", e.host, e.port, e.label)).collect(),
        running_tasks: running,
        desired_tasks: d.ecs_service.desired_count,
        targets: targets.iter().map(target_text).collect(),
        known_hosts: known_hosts(d, o, &reachable),
    }
}

/// Synced: no problem and nothing pending for this service.
fn synced(d: &Desired, plan: &Plan, mine: &[&Change]) -> Condition {
    if let Some(p) = plan.problems.iter().find(|p| p.service == d.service) {
        (false, p.message.clone())
    } else if mine.is_empty() {
        (true, "AWS matches the manifest".into())
    } else {
        (false, format!("{} pending change(s); run converge", mine.len()))
    }
}

/// Ready: the ECS service exists, the deployment of the task definition we last applied has not
/// failed or been rolled back, and every task runs.
fn ready(d: &Desired, live: Option<&EcsService>, running: i32) -> Condition {
    if let Some(s) = live
        && let Some(ours) = rollout::applied(s, &d.names.task_family)
        && let rollout::Outcome::Failed(f) = rollout::outcome(s, &ours)
    {
        return (false, f.to_string());
    }
    match live {
        None => (false, "ECS service does not exist".to_owned()),
        Some(_) if running < d.ecs_service.desired_count as i32 => {
            (false, format!("{running} of {} tasks running", d.ecs_service.desired_count))
        }
        Some(_) => (true, "all tasks running".into()),
    }
}

/// Probe: whether the probe account could log in, write, read back and delete at every
/// endpoint probed, and else where and why not.
pub fn probe_condition(reports: &[&crate::probe::Report]) -> Condition {
    let failed: Vec<&&crate::probe::Report> = reports.iter().filter(|r| !r.ok).collect();
    match failed.first() {
        None => (true, format!("logged in, wrote, read back and deleted a file at {} endpoint(s)", reports.len())),
        Some(r) => (
            false,
            format!(
                "{} of {} endpoint(s) failed; {}: {}",
                failed.len(),
                reports.len(),
                r.target.endpoint,
                r.error.as_deref().unwrap_or("failed")
            ),
        ),
    }
}

/// Where clients connect: the NLB (and its alias record) on the listener port; the direct
/// record (the hosts' private IPs, over Direct Connect) on the host port.
fn endpoints(d: &Desired, o: &Observed) -> Vec<Endpoint> {
    let mut reachable = Vec::new();
    if let Some(Some(lb)) = o.load_balancers.get(&d.load_balancer_arn) {
        let label = format!("{} NLB {}", lb.scheme, name_from_arn(&lb.arn));
        reachable.push(Endpoint { host: lb.dns_name.clone(), port: d.listener.port, label });
    }
    if let Some(dns) = &d.dns {
        let host = dns.record.trim_end_matches('.').to_owned();
        reachable.push(Endpoint { host, port: d.target_group.port, label: "direct, host IPs".into() });
        if let Some(p) = &dns.public_record {
            let host = p.trim_end_matches('.').to_owned();
            reachable.push(Endpoint { host, port: d.listener.port, label: "alias to the NLB".into() });
        }
    }
    reachable
}

fn target_text((id, port, state): &TargetHealth) -> String {
    format!("{id}:{} {state}", port.map_or("?".into(), |p| p.to_string()))
}

/// A `known_hosts` line per generated host key and endpoint (keys of a secret the user manages
/// are not known to the operator).
fn known_hosts(d: &Desired, o: &Observed, reachable: &[Endpoint]) -> Vec<String> {
    let Some(secret) = d.host_key_secret.as_ref().and_then(|n| o.secrets.iter().find(|s| &s.name == n)) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for k in secret.public_keys() {
        for e in reachable {
            lines.push(crate::sshkeys::known_hosts_line(&e.host, e.port, &k));
        }
    }
    lines
}

/// Placement (which hosts run the tasks, a kept A record, Cloud Map disagreeing) and conflicts.
fn notes(d: &Desired, o: &Observed, mine: &[&Change]) -> Vec<String> {
    let mut notes = Vec::new();
    if let (Some(dns), Some(p)) = (&d.dns, o.placements.get(&d.ecs_service.name)) {
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
    notes
}

#[cfg(test)]
mod probe_tests {
    use super::*;
    use crate::probe::{Failure, Outcome, Report, Target, Via};

    fn report(endpoint: &str, failure: Option<Failure>) -> Report {
        let target = Target { service: "drop".into(), via: Via::Direct, endpoint: endpoint.into() };
        Report::new(target, Outcome { failure, steps: vec![], seconds: 0.1 })
    }

    #[test]
    fn the_probe_condition_holds_when_every_endpoint_passed_and_names_the_first_failure() {
        let ok = report("10.0.1.5:30020", None);
        let bad = report("nlb:22", Some(Failure::LoginRefused));
        assert_eq!(
            probe_condition(&[&ok]),
            (true, "logged in, wrote, read back and deleted a file at 1 endpoint(s)".to_owned())
        );
        assert_eq!(
            probe_condition(&[&ok, &bad]),
            (
                false,
                "1 of 2 endpoint(s) failed; nlb:22: login refused: the server did not accept the probe account's key"
                    .to_owned()
            )
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Placement;
    use crate::observed::{LoadBalancer, Secret, TargetGroup};
    use crate::plan::{Kind, Problem};

    /// A rendered service with generated host keys and a `dns` block with a public alias.
    fn desired() -> Desired {
        let text = crate::validate::tests::MANIFEST.replace(
            "  access:\n",
            "  dns:\n    zone: example.edu\n    record: sftp.example.edu\n    publicRecord: files.example.edu\n  access:\n",
        );
        crate::render::render(&crate::validate::tests::service(&text), "sftp-operator")
    }

    fn live(d: &Desired, running: i32) -> EcsService {
        EcsService {
            name: d.ecs_service.name.clone(),
            cluster: d.ecs_service.cluster.clone(),
            running_count: Some(running),
            ..EcsService::default()
        }
    }

    fn lb(d: &Desired) -> LoadBalancer {
        LoadBalancer {
            arn: d.load_balancer_arn.clone(),
            scheme: "internal".into(),
            dns_name: "sftp-0f.elb.us-east-1.amazonaws.com".into(),
            ..LoadBalancer::default()
        }
    }

    fn change(d: &Desired, action: Action, reason: Option<&str>) -> Change {
        Change {
            service: d.service.clone(),
            kind: Kind::TargetGroup,
            name: d.target_group.name.clone(),
            action,
            diff: vec![],
            reason: reason.map(str::to_owned),
            ops: vec![],
        }
    }

    #[test]
    fn nothing_in_aws_is_neither_synced_nor_ready() {
        let d = desired();
        let plan = Plan { changes: vec![change(&d, Action::Create, None)], ..Plan::default() };
        let s = service_status(&d, &Observed::default(), &plan, &[]);
        assert_eq!((s.synced, s.synced_reason.as_str()), (false, "1 pending change(s); run converge"));
        assert_eq!((s.ready, s.ready_reason.as_str()), (false, "ECS service does not exist"));
        assert_eq!((s.running_tasks, s.desired_tasks), (0, 1));
        assert!(s.targets.is_empty() && s.known_hosts.is_empty() && s.notes.is_empty(), "{s:?}");
    }

    #[test]
    fn a_matching_world_with_every_task_running_is_synced_and_ready() {
        let d = desired();
        let o = Observed { ecs_services: vec![live(&d, 1)], ..Observed::default() };
        let s = service_status(&d, &o, &Plan::default(), &[]);
        assert_eq!((s.synced, s.synced_reason.as_str()), (true, "AWS matches the manifest"));
        assert_eq!((s.ready, s.ready_reason.as_str()), (true, "all tasks running"));
        assert_eq!(s.running_tasks, 1);
    }

    #[test]
    fn a_problem_is_the_synced_reason_even_with_changes_pending() {
        let d = desired();
        let problem = Problem { service: d.service.clone(), message: "cluster `sftp` does not exist".into() };
        let other = Problem { service: "other".into(), message: "not this one".into() };
        let plan =
            Plan { changes: vec![change(&d, Action::Update, None)], problems: vec![other, problem], ..Plan::default() };
        let s = service_status(&d, &Observed::default(), &plan, &[]);
        assert_eq!((s.synced, s.synced_reason.as_str()), (false, "cluster `sftp` does not exist"));
    }

    #[test]
    fn other_services_changes_do_not_count() {
        let d = desired();
        let mut theirs = change(&d, Action::Create, None);
        theirs.service = "other".into();
        let s = service_status(&d, &Observed::default(), &Plan { changes: vec![theirs], ..Plan::default() }, &[]);
        assert!(s.synced, "{s:?}");
    }

    #[test]
    fn pending_rule_changes_on_the_services_group_count() {
        let d = desired();
        let mut rules = change(&d, Action::Create, None);
        (rules.service, rules.kind) = (crate::plan::group_scope(&d.security_group_id), Kind::IngressRule);
        let s = service_status(&d, &Observed::default(), &Plan { changes: vec![rules], ..Plan::default() }, &[]);
        assert!(!s.synced, "{s:?}");
    }

    #[test]
    fn ready_says_why_not_a_failed_deployment_or_missing_tasks() {
        let d = desired();
        let family = d.names.task_family.clone();
        let arn = |rev: i32| format!("arn:aws:ecs:us-east-1:123456789012:task-definition/{family}:{rev}");
        let deployment = |id: &str, status: &str, rev: i32, state: &str| crate::observed::Deployment {
            id: id.into(),
            status: status.into(),
            task_definition: arn(rev),
            rollout_state: Some(state.into()),
            rollout_state_reason: (state == "FAILED").then(|| "tasks failed to start.".into()),
            ..crate::observed::Deployment::default()
        };
        // We applied revision 2; the circuit breaker rolled it back to 1, whose deployment completed.
        let mut rolled_back = live(&d, 1);
        rolled_back.task_definition = Some(arn(1));
        rolled_back.deployments =
            vec![deployment("ecs-svc/3", "PRIMARY", 1, "COMPLETED"), deployment("ecs-svc/2", "ACTIVE", 2, "FAILED")];
        let rendering = crate::codec::Rendering { hash: d.rendering_hash.clone(), revision: 2, port: 30020 };
        rolled_back.tags.insert(crate::names::RENDERING_TAG.into(), crate::codec::rendering_tag(&rendering));
        let o = Observed { ecs_services: vec![rolled_back], ..Observed::default() };
        let s = service_status(&d, &o, &Plan::default(), &[]);
        assert_eq!(
            (s.ready, s.ready_reason),
            (false, format!("deployment of {family}:2 failed (tasks failed to start.), rolled back to {family}:1"))
        );

        let o = Observed { ecs_services: vec![live(&d, 0)], ..Observed::default() };
        let s = service_status(&d, &o, &Plan::default(), &[]);
        assert_eq!((s.ready, s.ready_reason.as_str()), (false, "0 of 1 tasks running"));
    }

    #[test]
    fn endpoints_are_the_nlb_the_direct_record_and_the_public_alias() {
        let d = desired();
        let o =
            Observed { load_balancers: [(d.load_balancer_arn.clone(), Some(lb(&d)))].into(), ..Observed::default() };
        let s = service_status(&d, &o, &Plan::default(), &[]);
        assert_eq!(
            s.endpoints,
            [
                "sftp://sftp-0f.elb.us-east-1.amazonaws.com:2220 (internal NLB sftp)",
                "sftp://sftp.example.edu:30020 (direct, host IPs)",
                "sftp://files.example.edu:2220 (alias to the NLB)",
            ]
        );
    }

    #[test]
    fn a_missing_load_balancer_leaves_only_the_dns_endpoints() {
        let d = desired();
        let o = Observed { load_balancers: [(d.load_balancer_arn.clone(), None)].into(), ..Observed::default() };
        let s = service_status(&d, &o, &Plan::default(), &[]);
        assert_eq!(s.endpoints.len(), 2, "{:?}", s.endpoints);
        assert!(s.endpoints.iter().all(|e| !e.contains("NLB sftp")), "{:?}", s.endpoints);
    }

    #[test]
    fn known_hosts_has_a_line_per_generated_key_and_endpoint() {
        let d = desired();
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINvzrb/pQTV0amUyWyMEWMB38bM1teRm7QEI4+smhNXc";
        let secret = Secret {
            name: d.host_key_secret.clone().expect("generated host keys"),
            description: Some(crate::codec::host_key_description(&[format!("{key} root@sftp")])),
            ..Secret::default()
        };
        let o = Observed {
            load_balancers: [(d.load_balancer_arn.clone(), Some(lb(&d)))].into(),
            secrets: vec![secret],
            ..Observed::default()
        };
        let s = service_status(&d, &o, &Plan::default(), &[]);
        assert_eq!(
            s.known_hosts,
            [
                format!("[sftp-0f.elb.us-east-1.amazonaws.com]:2220 {key}"),
                format!("[sftp.example.edu]:30020 {key}"),
                format!("[files.example.edu]:2220 {key}"),
            ]
        );
    }

    #[test]
    fn targets_show_id_port_and_state() {
        let d = desired();
        let health = [("i-0a".to_owned(), Some(30020), "healthy".to_owned()), ("i-0b".into(), None, "draining".into())];
        let s = service_status(&d, &Observed::default(), &Plan::default(), &health);
        assert_eq!(s.targets, ["i-0a:30020 healthy", "i-0b:? draining"]);
    }

    #[test]
    fn the_target_group_is_found_by_name() {
        let d = desired();
        let tg = TargetGroup { arn: "arn:tg/1".into(), name: d.target_group.name.clone(), ..TargetGroup::default() };
        let other = TargetGroup { arn: "arn:tg/2".into(), name: "someone-else".into(), ..TargetGroup::default() };
        assert_eq!(target_group_arn(&d, &Observed { target_groups: vec![other.clone()], ..Observed::default() }), None);
        let o = Observed { target_groups: vec![other, tg], ..Observed::default() };
        assert_eq!(target_group_arn(&d, &o), Some("arn:tg/1"));
    }

    #[test]
    fn notes_tell_where_tasks_run_and_what_disagrees() {
        let d = desired();
        let placement = Placement {
            running_tasks: 1,
            host_ips: vec!["10.0.1.5".into()],
            cloud_map_ips: Some(vec!["10.0.1.9".into()]),
        };
        let o = Observed { placements: [(d.service.clone(), placement)].into(), ..Observed::default() };
        let plan =
            Plan { changes: vec![change(&d, Action::Conflict, Some("owned by another operator"))], ..Plan::default() };
        let s = service_status(&d, &o, &plan, &[]);
        assert_eq!(
            s.notes,
            [
                "1 task(s) on 10.0.1.5".to_owned(),
                "Cloud Map registers [10.0.1.9] but tasks run on [10.0.1.5]".to_owned(),
                format!("conflict: target group {}: owned by another operator", d.target_group.name),
            ]
        );
    }

    #[test]
    fn with_no_task_running_the_last_a_record_is_kept() {
        let d = desired();
        let placement = Placement { running_tasks: 0, host_ips: vec![], cloud_map_ips: None };
        let o = Observed { placements: [(d.service.clone(), placement)].into(), ..Observed::default() };
        let s = service_status(&d, &o, &Plan::default(), &[]);
        assert_eq!(s.notes, ["no running task: keeping the last A record of sftp.example.edu."]);
    }
}
