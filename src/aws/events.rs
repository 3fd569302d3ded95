//! Long-polls the SQS queue EventBridge fills with `ECS Task State Change` events; a message
//! for a managed service triggers its reconcile at once. Every message is deleted after
//! handling — a malformed or foreign one is logged and counted, never retried forever.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Clients, aws};
use crate::metrics::Metrics;
use crate::task_event::{EventError, parse_task_event};

/// Calls `changed` with the name of each managed service an event is about.
/// The SftpService whose ECS service is `ecs_service`.
fn sftp_service(services: &[crate::model::Service], ecs_service: &str) -> Option<String> {
    services.iter().find(|s| s.names.ecs_service == ecs_service).map(|s| s.name.clone())
}

pub async fn poll(
    c: Clients,
    queue_url: String,
    services: watch::Receiver<Arc<Vec<crate::model::Service>>>,
    changed: impl Fn(String) + Send + 'static,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let receive =
            c.sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).wait_time_seconds(20).send();
        let out = tokio::select! {
            _ = shutdown.changed() => return,
            r = receive => r.map_err(aws("ReceiveMessage")),
        };
        let messages = match out {
            Ok(o) => o.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "receiving ECS events failed; retrying in 5 s");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            }
        };
        let mut receipts = Vec::new();
        for m in &messages {
            let result = match parse_task_event(m.body().unwrap_or_default()) {
                // The event names the ECS service (`spec.names.ecsService` may differ from the
                // SftpService's name).
                Ok(ev) => match ev.service.as_deref().and_then(|s| sftp_service(&services.borrow(), s)) {
                    Some(s) => {
                        tracing::info!(service = %s, cluster = %ev.cluster, status = ?ev.last_status, "ECS task event");
                        changed(s);
                        "handled"
                    }
                    None => "foreign",
                },
                Err(EventError::Foreign(_)) => "foreign",
                Err(e @ EventError::NotJson(_)) => {
                    tracing::warn!(error = %e, message_id = ?m.message_id(), "malformed message on the events queue; deleting it");
                    "malformed"
                }
            };
            metrics.events_received_total.with_label_values(&[result]).inc();
            if let Some(r) = m.receipt_handle() {
                receipts.push(r.to_owned());
            }
        }
        for r in receipts {
            if let Err(e) = c
                .sqs
                .delete_message()
                .queue_url(&queue_url)
                .receipt_handle(r)
                .send()
                .await
                .map_err(aws("DeleteMessage"))
            {
                tracing::warn!(error = %e, "deleting an event message failed; it will come back");
            }
        }
    }
}

/// Names of the queue and rule `--ensure-events` manages for an owner id.
pub fn names(owner: &str) -> (String, String) {
    let base: String = format!("sftp-operator-{owner}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .take(64)
        .collect();
    (format!("{base}-events"), format!("{base}-ecs-tasks"))
}

/// Ensures the SQS queue, its policy and the EventBridge rule on `ECS Task State Change` for
/// the given clusters (the same resources as manifests/events.yaml). Idempotent; returns the
/// queue URL for `run --events-queue-url`.
pub async fn ensure(c: &Clients, owner: &str, cluster_arns: &[String]) -> Result<String, super::AwsError> {
    let (queue, rule) = names(owner);
    let url = c
        .sqs
        .create_queue()
        .queue_name(&queue)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::MessageRetentionPeriod, "86400")
        .attributes(aws_sdk_sqs::types::QueueAttributeName::SqsManagedSseEnabled, "true")
        .tags(crate::names::OWNER_TAG, owner)
        .send()
        .await
        .map_err(aws("CreateQueue"))?
        .queue_url
        .unwrap_or_default();
    let attrs = c
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws("GetQueueAttributes"))?;
    let queue_arn = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_default();
    let pattern = serde_json::json!({
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {"clusterArn": cluster_arns},
    });
    let rule_arn = c
        .eventbridge
        .put_rule()
        .name(&rule)
        .event_pattern(pattern.to_string())
        .description("ECS task state changes for sftp-operator")
        .send()
        .await
        .map_err(aws("PutRule"))?
        .rule_arn
        .unwrap_or_default();
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
        }],
    });
    c.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(aws("SetQueueAttributes"))?;
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("sftp-operator")
        .arn(&queue_arn)
        .build()
        .map_err(|e| super::AwsError::other("PutTargets", e.to_string()))?;
    c.eventbridge.put_targets().rule(&rule).targets(target).send().await.map_err(aws("PutTargets"))?;
    Ok(url)
}
