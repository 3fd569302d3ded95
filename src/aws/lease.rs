//! Leader election through a DynamoDB lease item: holder, expiry and a fencing counter,
//! acquired and renewed with conditional writes. A replica that cannot renew before its lease
//! runs out stops mutating at once; standbys take over after expiry.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use super::{AwsError, Clients, aws};
use crate::metrics::Metrics;

#[derive(Debug)]
pub struct Lease {
    clients: Clients,
    table: String,
    key: String,
    pub holder: String,
    duration: Duration,
    leader: AtomicBool,
    /// Local deadline (monotonic clock) after which we must assume the lease is gone.
    valid_until: Mutex<Option<Instant>>,
    pub fence: Mutex<Option<i64>>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl Lease {
    pub fn new(clients: Clients, table: String, owner: &str, duration: Duration) -> Arc<Lease> {
        let holder = format!(
            "{}-{}-{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "sftp-operator".into()),
            std::process::id(),
            fastrand::u32(..)
        );
        Arc::new(Lease {
            clients,
            table,
            key: format!("sftp-operator/{owner}"),
            holder,
            duration,
            leader: AtomicBool::new(false),
            valid_until: Mutex::new(None),
            fence: Mutex::new(None),
        })
    }

    /// True only while we hold the lease and it has not run out locally.
    pub async fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst) && self.valid_until.lock().await.is_some_and(|t| Instant::now() < t)
    }

    /// Acquires (when free or expired) or renews (when ours). Conditional: never steals a
    /// live lease. Taking over bumps the fencing counter.
    pub async fn try_acquire(&self) -> Result<bool, AwsError> {
        let started = Instant::now();
        let now = now_ms();
        let was_leader = self.leader.load(Ordering::SeqCst);
        let values = HashMap::from([
            (":me".to_owned(), s(&self.holder)),
            (":now".to_owned(), n(now)),
            (":exp".to_owned(), n(now + self.duration.as_millis() as i64)),
            (":inc".to_owned(), n(if was_leader { 0 } else { 1 })),
        ]);
        let r = self
            .clients
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("lease", s(&self.key))
            .update_expression("SET holder = :me, expires_ms = :exp ADD fence :inc")
            .condition_expression("attribute_not_exists(lease) OR holder = :me OR expires_ms < :now")
            .set_expression_attribute_values(Some(values))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match r {
            Ok(out) => {
                let fence = out
                    .attributes()
                    .and_then(|a| a.get("fence"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|x| x.parse().ok());
                *self.fence.lock().await = fence;
                // Count from when we asked: the lease cannot outlive that by more than its length.
                *self.valid_until.lock().await = Some(started + self.duration.mul_f64(0.9));
                self.leader.store(true, Ordering::SeqCst);
                Ok(true)
            }
            Err(e) => {
                let e = AwsError::new("UpdateItem", e);
                self.leader.store(false, Ordering::SeqCst);
                if e.is("ConditionalCheckFailedException") { Ok(false) } else { Err(e) }
            }
        }
    }

    /// Gives the lease up (on shutdown) so a standby takes over without waiting for expiry.
    pub async fn release(&self) {
        self.leader.store(false, Ordering::SeqCst);
        let _ = self
            .clients
            .dynamodb
            .delete_item()
            .table_name(&self.table)
            .key("lease", s(&self.key))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", s(&self.holder))
            .send()
            .await
            .map_err(aws("DeleteItem"));
    }

    /// Renews every third of the lease; reports leadership changes through `leader_tx`.
    pub async fn keep(
        self: Arc<Self>,
        metrics: Arc<Metrics>,
        leader_tx: watch::Sender<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let ok = match self.try_acquire().await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    false
                }
            };
            let is = ok && self.is_leader().await;
            if *leader_tx.borrow() != is {
                tracing::info!(holder = %self.holder, leader = is, "leadership changed");
                let _ = leader_tx.send(is);
            }
            metrics.leader.set(i64::from(is));
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.duration / 3) => {}
            }
        }
    }
}
