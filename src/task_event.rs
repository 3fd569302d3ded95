//! ECS task state changes as EventBridge delivers them into SQS: parsed here (pure), polled
//! in [`crate::aws::events`]. Replaces the Lambda a CloudWatch Events rule used to fire.

use serde::Deserialize;

/// The part of an `ECS Task State Change` event the operator acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEvent {
    pub cluster: String,
    /// The ECS service, from the task's `group` (`service:<name>`).
    pub service: Option<String>,
    pub last_status: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EventError {
    #[error("not JSON: {0}")]
    NotJson(#[source] std::sync::Arc<serde_json::Error>),
    #[error("not an ECS task state change (detail-type `{0}`)")]
    Foreign(String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    source: Option<String>,
    detail: Option<Detail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    cluster_arn: Option<String>,
    group: Option<String>,
    last_status: Option<String>,
}

/// Parses an SQS message body holding an EventBridge event.
pub fn parse_task_event(body: &str) -> Result<TaskEvent, EventError> {
    let env: Envelope = serde_json::from_str(body).map_err(|e| EventError::NotJson(std::sync::Arc::new(e)))?;
    let kind = env.detail_type.unwrap_or_default();
    if kind != "ECS Task State Change" || env.source.as_deref() != Some("aws.ecs") {
        return Err(EventError::Foreign(kind));
    }
    let d = env.detail.ok_or_else(|| EventError::Foreign(kind.clone()))?;
    let cluster = d.cluster_arn.as_deref().map(crate::observed::name_from_arn).unwrap_or_default().to_owned();
    Ok(TaskEvent {
        cluster,
        service: d.group.and_then(|g| g.strip_prefix("service:").map(str::to_owned)),
        last_status: d.last_status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecs_task_state_change_names_its_service_and_cluster() {
        let body = r#"{"version":"0","detail-type":"ECS Task State Change","source":"aws.ecs",
            "detail":{"clusterArn":"arn:aws:ecs:us-east-1:123456789012:cluster/sftp","group":"service:campus-sftp","lastStatus":"RUNNING"}}"#;
        assert_eq!(
            parse_task_event(body).unwrap(),
            TaskEvent {
                cluster: "sftp".into(),
                service: Some("campus-sftp".into()),
                last_status: Some("RUNNING".into())
            }
        );
    }

    #[test]
    fn poison_and_foreign_messages_are_told_apart() {
        assert!(matches!(parse_task_event("{not json"), Err(EventError::NotJson(_))));
        let other = r#"{"detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{}}"#;
        assert!(matches!(parse_task_event(other), Err(EventError::Foreign(_))));
    }
}
