//! Long-polls the SQS queue EventBridge fills with `ECS Task State Change` events; a message
//! for a managed service triggers its reconcile at once. Every message is deleted after
//! handling — a malformed or foreign one is logged and counted, never retried forever.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{Clients, aws};
use crate::controller::Trigger;
use crate::events::{EventError, parse_task_event};
use crate::metrics::Metrics;

pub async fn poll(
    c: Clients,
    queue_url: String,
    services: watch::Receiver<Vec<String>>,
    triggers: mpsc::UnboundedSender<Trigger>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let receive = c
            .sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(20)
            .send();
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
                Ok(ev) => match ev.service {
                    Some(s) if services.borrow().contains(&s) => {
                        tracing::info!(service = %s, cluster = %ev.cluster, status = ?ev.last_status, "ECS task event");
                        let _ = triggers.send(Trigger::One(s));
                        "handled"
                    }
                    _ => "foreign",
                },
                Err(EventError::Foreign(_)) => "foreign",
                Err(e @ EventError::NotJson(_)) => {
                    tracing::warn!(error = %e, message_id = ?m.message_id(), "malformed message on the events queue; deleting it");
                    "malformed"
                }
            };
            metrics
                .events_received_total
                .with_label_values(&[result])
                .inc();
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
