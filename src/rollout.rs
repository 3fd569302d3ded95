//! Where a rollout stands: from an ECS service's deployments and the task definition our apply
//! put on it, whether that deployment is still rolling, completed, or failed — and what the
//! circuit breaker rolled back to. Pure; `converge --wait`, `run` and `status` ask it.
//!
//! ```text
//! EcsService.deployments ─┐
//!                         ├─▶ outcome ─▶ InProgress | Completed | Failed(Failure)
//! our task definition ────┘
//! ```
//!
//! ECS's circuit breaker with rollback marks our deployment FAILED and starts a *new* PRIMARY
//! deployment of the previous task definition, which then completes: that completion is the
//! rollback's, never ours. Once the rollback is done ECS may drop our deployment from the list
//! altogether; a PRIMARY deployment of another task definition then still means ours failed.

use std::fmt;

use crate::codec::parse_rendering_tag;
use crate::names::RENDERING_TAG;
use crate::observed::{Deployment, EcsService, name_from_arn};

/// What became of the deployment of our task definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still rolling out: tasks of our deployment running, of those it wants.
    InProgress {
        running: i32,
        desired: i32,
    },
    Completed,
    Failed(Failure),
}

/// A deployment of ours that failed or was replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Our task definition, `family:revision`.
    pub task_definition: String,
    /// ECS's `rolloutStateReason`, or what we saw when it gave none.
    pub reason: String,
    /// The task definition (`family:revision`) the service runs instead, when it went back.
    pub rolled_back_to: Option<String>,
    /// Our deployment's id and the id of the one that replaced it, where listed: a failure is
    /// counted once even as ECS drops our deployment from the list after the rollback.
    pub deployments: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deployment of {} failed ({})", self.task_definition, self.reason)?;
        match &self.rolled_back_to {
            Some(to) => write!(f, ", rolled back to {to}"),
            None => write!(f, ", not rolled back"),
        }
    }
}

/// `family:revision` of a task-definition ARN (or of `family:revision` itself).
fn revision(task_definition: &str) -> &str {
    name_from_arn(task_definition)
}

/// The task definition (`family:revision`) our last complete apply put on `service`: the
/// revision its rendering tag records. `None` while the tag is withdrawn (an apply under way or
/// cut short) or absent (not ours, or from before the tag).
pub fn applied(service: &EcsService, family: &str) -> Option<String> {
    let rendering = service.tags.get(RENDERING_TAG).and_then(|v| parse_rendering_tag(v))?;
    Some(format!("{family}:{}", rendering.revision))
}

/// Whether the rendering whose deployment failed is still the one wanted: the service's
/// rendering tag records `rendering_hash` (the manifest has not changed since).
pub fn failed_as_rendered(service: &EcsService, rendering_hash: &str) -> bool {
    service.tags.get(RENDERING_TAG).and_then(|v| parse_rendering_tag(v)).is_some_and(|r| r.hash == rendering_hash)
}

/// The outcome of `service`'s rollout of `ours` (a task-definition ARN or `family:revision`).
pub fn outcome(service: &EcsService, ours: &str) -> Outcome {
    let ours = revision(ours);
    let is_ours = |td: &str| revision(td) == ours;
    let primary = service.primary_deployment();
    if let Some(p) = primary.filter(|p| is_ours(&p.task_definition)) {
        return match p.rollout_state.as_deref() {
            Some("COMPLETED") => Outcome::Completed,
            // The circuit breaker without rollback: ours stays PRIMARY and launches nothing more.
            Some("FAILED") => Outcome::Failed(failure(ours, Some(p), None)),
            // Not reported (another deployment controller): done once it alone runs every task.
            None if service.deployments.len() == 1 && p.running_count >= p.desired_count => Outcome::Completed,
            _ => Outcome::InProgress { running: p.running_count, desired: p.desired_count },
        };
    }
    // Ours is not the PRIMARY deployment: failed (and rolled back), replaced, or not listed yet.
    // Deployments are listed newest first: the newest of ours that failed, else the newest.
    let failed = |d: &&Deployment| d.rollout_state.as_deref() == Some("FAILED");
    let ours_listed = || service.deployments.iter().filter(|d| is_ours(&d.task_definition));
    let mine = ours_listed().find(failed).or_else(|| ours_listed().next());
    let runs_ours = service.task_definition.as_deref().is_some_and(is_ours);
    if mine.is_none() && runs_ours {
        // The service already names ours but lists no deployment of it: one is about to start.
        let running = service.running_count.unwrap_or_default();
        return Outcome::InProgress { running, desired: service.desired_count.unwrap_or_default() };
    }
    // (Any PRIMARY deployment here is of another task definition.)
    let mut failed = failure(ours, mine, primary);
    if failed.rolled_back_to.is_none() {
        // None listed as PRIMARY: where the service went is its own task definition.
        failed.rolled_back_to =
            service.task_definition.as_deref().filter(|td| !is_ours(td)).map(|td| revision(td).to_owned());
    }
    Outcome::Failed(failed)
}

/// Our failed deployment (`mine`, when still listed) and the one that took its place.
fn failure(ours: &str, mine: Option<&Deployment>, instead: Option<&Deployment>) -> Failure {
    let reason = match (mine, instead) {
        (Some(m), _) if m.rollout_state.as_deref() == Some("FAILED") => {
            m.rollout_state_reason.clone().unwrap_or_else(|| "rollout state FAILED".into())
        }
        (Some(_), Some(i)) => format!("replaced by deployment {}", i.id),
        (Some(_), None) => "no longer the PRIMARY deployment".into(),
        (None, _) => "no longer listed by ECS".into(),
    };
    Failure {
        task_definition: ours.to_owned(),
        reason,
        rolled_back_to: instead.map(|i| revision(&i.task_definition).to_owned()),
        deployments: mine.into_iter().chain(instead).map(|d| d.id.clone()).filter(|id| !id.is_empty()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/sftp-campus:2";
    const PREVIOUS: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/sftp-campus:1";
    const BREAKER: &str = "ECS deployment circuit breaker: tasks failed to start.";

    fn deployment(id: &str, status: &str, td: &str, state: Option<&str>, running: i32) -> Deployment {
        Deployment {
            id: id.into(),
            status: status.into(),
            task_definition: td.into(),
            rollout_state: state.map(str::to_owned),
            rollout_state_reason: None,
            running_count: running,
            desired_count: 2,
            failed_tasks: 0,
        }
    }

    fn service(runs: &str, deployments: Vec<Deployment>) -> EcsService {
        EcsService {
            name: "campus".into(),
            task_definition: Some(runs.into()),
            running_count: Some(1),
            desired_count: Some(2),
            deployments,
            ..EcsService::default()
        }
    }

    fn failed(mut d: Deployment) -> Deployment {
        d.rollout_state = Some("FAILED".into());
        d.rollout_state_reason = Some(BREAKER.into());
        d
    }

    #[test]
    fn ours_rolling_as_primary_is_in_progress_with_its_own_counts() {
        let s = service(
            OURS,
            vec![
                deployment("ecs-svc/2", "PRIMARY", OURS, Some("IN_PROGRESS"), 1),
                deployment("ecs-svc/1", "ACTIVE", PREVIOUS, Some("COMPLETED"), 1),
            ],
        );
        assert_eq!(outcome(&s, OURS), Outcome::InProgress { running: 1, desired: 2 });
    }

    #[test]
    fn ours_completed_as_primary_is_completed_given_as_an_arn_or_family_and_revision() {
        let s = service(OURS, vec![deployment("ecs-svc/2", "PRIMARY", OURS, Some("COMPLETED"), 2)]);
        assert_eq!(outcome(&s, OURS), Outcome::Completed);
        assert_eq!(outcome(&s, "sftp-campus:2"), Outcome::Completed);
    }

    #[test]
    fn without_a_rollout_state_ours_completes_once_it_alone_runs_every_task() {
        let alone = service(OURS, vec![deployment("ecs-svc/2", "PRIMARY", OURS, None, 2)]);
        assert_eq!(outcome(&alone, OURS), Outcome::Completed);
        let draining = service(
            OURS,
            vec![
                deployment("ecs-svc/2", "PRIMARY", OURS, None, 2),
                deployment("ecs-svc/1", "ACTIVE", PREVIOUS, None, 1),
            ],
        );
        assert_eq!(outcome(&draining, OURS), Outcome::InProgress { running: 2, desired: 2 });
    }

    #[test]
    fn a_circuit_breaker_rollback_fails_ours_while_the_rollback_rolls() {
        let s = service(
            PREVIOUS,
            vec![
                deployment("ecs-svc/3", "PRIMARY", PREVIOUS, Some("IN_PROGRESS"), 0),
                failed(deployment("ecs-svc/2", "ACTIVE", OURS, None, 0)),
            ],
        );
        let want = Failure {
            task_definition: "sftp-campus:2".into(),
            reason: BREAKER.into(),
            rolled_back_to: Some("sftp-campus:1".into()),
            deployments: vec!["ecs-svc/2".into(), "ecs-svc/3".into()],
        };
        assert_eq!(outcome(&s, OURS), Outcome::Failed(want.clone()));
        assert_eq!(
            want.to_string(),
            format!("deployment of sftp-campus:2 failed ({BREAKER}), rolled back to sftp-campus:1")
        );
    }

    #[test]
    fn the_rollback_completing_is_not_our_success() {
        let s = service(
            PREVIOUS,
            vec![
                deployment("ecs-svc/3", "PRIMARY", PREVIOUS, Some("COMPLETED"), 2),
                failed(deployment("ecs-svc/2", "ACTIVE", OURS, None, 0)),
            ],
        );
        let Outcome::Failed(f) = outcome(&s, OURS) else { panic!("{:?}", outcome(&s, OURS)) };
        assert_eq!((f.reason.as_str(), f.rolled_back_to.as_deref()), (BREAKER, Some("sftp-campus:1")));
    }

    #[test]
    fn ours_gone_from_the_list_after_a_rollback_is_failed_and_rolled_back() {
        let s = service(PREVIOUS, vec![deployment("ecs-svc/3", "PRIMARY", PREVIOUS, Some("COMPLETED"), 2)]);
        let want = Failure {
            task_definition: "sftp-campus:2".into(),
            reason: "no longer listed by ECS".into(),
            rolled_back_to: Some("sftp-campus:1".into()),
            deployments: vec!["ecs-svc/3".into()],
        };
        assert_eq!(outcome(&s, OURS), Outcome::Failed(want));
    }

    #[test]
    fn the_circuit_breaker_without_rollback_fails_ours_in_place() {
        let s = service(OURS, vec![failed(deployment("ecs-svc/2", "PRIMARY", OURS, None, 0))]);
        let Outcome::Failed(f) = outcome(&s, OURS) else { panic!() };
        assert_eq!(
            (f.rolled_back_to.as_deref(), f.deployments.as_slice()),
            (None, ["ecs-svc/2".to_owned()].as_slice())
        );
        assert!(f.to_string().ends_with("not rolled back"), "{f}");
    }

    #[test]
    fn ours_replaced_by_a_newer_deployment_of_another_revision_failed() {
        let other = "arn:aws:ecs:us-east-1:123456789012:task-definition/sftp-campus:3";
        let s = service(
            other,
            vec![
                deployment("ecs-svc/4", "PRIMARY", other, Some("IN_PROGRESS"), 0),
                deployment("ecs-svc/2", "ACTIVE", OURS, Some("IN_PROGRESS"), 1),
            ],
        );
        let Outcome::Failed(f) = outcome(&s, OURS) else { panic!() };
        assert_eq!(f.reason, "replaced by deployment ecs-svc/4");
        assert_eq!(f.rolled_back_to.as_deref(), Some("sftp-campus:3"));
    }

    #[test]
    fn a_service_naming_ours_before_any_deployment_of_it_is_listed_is_in_progress() {
        // Right after UpdateService (and always in moto, which starts no new deployment).
        let s = service(OURS, vec![deployment("ecs-svc/1", "PRIMARY", PREVIOUS, Some("COMPLETED"), 2)]);
        assert_eq!(outcome(&s, OURS), Outcome::InProgress { running: 1, desired: 2 });
    }

    #[test]
    fn what_we_applied_is_the_revision_the_rendering_tag_records() {
        let mut s = service(OURS, vec![]);
        assert_eq!(applied(&s, "sftp-campus"), None);
        s.tags.insert(RENDERING_TAG.into(), crate::codec::RENDERING_WITHDRAWN.into());
        assert_eq!(applied(&s, "sftp-campus"), None, "withdrawn: an apply is under way");
        let rendering = crate::codec::Rendering { hash: "h".into(), revision: 2, port: 30020 };
        s.tags.insert(RENDERING_TAG.into(), crate::codec::rendering_tag(&rendering));
        assert_eq!(applied(&s, "sftp-campus").as_deref(), Some("sftp-campus:2"));
    }

    #[test]
    fn a_service_with_no_deployments_listed_running_another_revision_went_back() {
        let s = service(PREVIOUS, vec![]);
        let Outcome::Failed(f) = outcome(&s, OURS) else { panic!() };
        assert_eq!((f.rolled_back_to.as_deref(), f.deployments.len()), (Some("sftp-campus:1"), 0));
    }
}
