//! The AWS edge: the only code that imports `aws_sdk_*`. Clients come from the standard
//! `aws-config` chain (region, credentials, `AWS_ENDPOINT_URL`) with the SDK's standard retry
//! mode; one interceptor counts every call by service, operation and outcome.

pub mod apply;
pub mod events;
pub mod lease;
pub mod observe;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde::Serialize;

/// Route 53 requests per second (the account allows about 5 after a burst, for everyone).
pub const ROUTE53_RATE: f64 = 5.0;

/// How a call ended, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Error,
    Throttled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Throttled => "throttled",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CallStats {
    pub count: u64,
    pub total_seconds: f64,
}

/// Key of [`CallCounter`]: (service, operation, outcome).
pub type CallKey = (String, String, Outcome);

/// Every AWS call the process made, by service, operation and outcome. Shared by all clients;
/// the metrics layer reads it, and `converge` reports it.
#[derive(Clone, Default)]
pub struct CallCounter {
    inner: Arc<Mutex<BTreeMap<CallKey, CallStats>>>,
    observer: Arc<Mutex<Option<CallObserver>>>,
}

impl std::fmt::Debug for CallCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallCounter").field("calls", &self.total()).finish()
    }
}

/// Called once per finished call (service, operation, outcome, duration); metrics hook in here.
pub type CallObserver = Arc<dyn Fn(&str, &str, Outcome, Duration) + Send + Sync>;

impl CallCounter {
    pub fn snapshot(&self) -> BTreeMap<CallKey, CallStats> {
        self.inner.lock().expect("call counter lock").clone()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().map(|s| s.count).sum()
    }

    /// Calls that change something in AWS (by operation name).
    pub fn mutating(&self) -> u64 {
        self.snapshot().iter().filter(|((_, op, _), _)| is_mutating(op)).map(|(_, s)| s.count).sum()
    }

    pub fn set_observer(&self, f: CallObserver) {
        *self.observer.lock().expect("observer lock") = Some(f);
    }

    fn record(&self, service: &str, operation: &str, outcome: Outcome, took: Duration) {
        {
            let mut m = self.inner.lock().expect("call counter lock");
            let s = m.entry((service.to_owned(), operation.to_owned(), outcome)).or_default();
            s.count += 1;
            s.total_seconds += took.as_secs_f64();
        }
        let observer = self.observer.lock().expect("observer lock").clone();
        if let Some(f) = observer {
            f(service, operation, outcome, took);
        }
    }
}

/// Operations that change state, by the verbs AWS APIs use for them.
pub fn is_mutating(operation: &str) -> bool {
    const VERBS: [&str; 20] = [
        "Create",
        "Delete",
        "Update",
        "Put",
        "Register",
        "Deregister",
        "Modify",
        "Authorize",
        "Revoke",
        "Change",
        "Add",
        "Remove",
        "Tag",
        "Untag",
        "Set",
        "Run",
        "Start",
        "Stop",
        "Restore",
        "Send",
    ];
    VERBS.iter().any(|v| operation.starts_with(v))
}

#[derive(Debug, Clone)]
struct CallStart(Instant);

impl Storable for CallStart {
    type Storer = StoreReplace<Self>;
}

#[derive(Debug)]
struct CountingInterceptor(CallCounter);

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "sftp-operator-call-counter"
    }

    fn read_before_execution(
        &self,
        _ctx: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(CallStart(Instant::now()));
        Ok(())
    }

    fn read_after_execution(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let took = cfg.load::<CallStart>().map(|s| s.0.elapsed()).unwrap_or_default();
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_owned(), m.name().to_owned()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let outcome = match ctx.output_or_error() {
            Some(Ok(_)) => Outcome::Ok,
            Some(Err(e)) => {
                let status = ctx.response().map(|r| r.status().as_u16());
                if status == Some(429) || is_throttle_text(&format!("{e:?}")) {
                    Outcome::Throttled
                } else {
                    Outcome::Error
                }
            }
            None => Outcome::Error,
        };
        self.0.record(&service, &operation, outcome, took);
        Ok(())
    }
}

/// AWS spells throttling several ways across services.
pub fn is_throttle_text(s: &str) -> bool {
    ["Throttl", "RequestLimitExceeded", "TooManyRequests", "Rate exceeded", "SlowDown", "PriorRequestNotComplete"]
        .iter()
        .any(|p| s.contains(p))
}

/// One client per service the operator talks to, all sharing the call counter.
#[derive(Clone, Debug)]
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub route53: aws_sdk_route53::Client,
    pub cloudmap: aws_sdk_servicediscovery::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub calls: CallCounter,
    /// Route 53's limit is per account and shared with every other tool: stay well under it.
    pub route53_limit: Arc<TokenBucket>,
}

/// A token bucket: `burst` calls at once, then `rate` per second.
#[derive(Debug)]
pub struct TokenBucket {
    state: tokio::sync::Mutex<(f64, tokio::time::Instant)>,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> TokenBucket {
        TokenBucket { state: tokio::sync::Mutex::new((burst, tokio::time::Instant::now())), rate, burst }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = tokio::time::Instant::now();
                s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(self.burst);
                s.1 = now;
                if s.0 >= 1.0 {
                    s.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - s.0) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl Clients {
    /// Clients from the standard chain; `region` overrides the chain's region when given.
    pub async fn from_env(region: Option<String>) -> Clients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(
            RetryConfig::standard().with_max_attempts(5).with_initial_backoff(Duration::from_millis(200)),
        );
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r));
        }
        let sdk = loader.load().await;
        Self::from_sdk_config(&sdk)
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Clients {
        let calls = CallCounter::default();
        macro_rules! client {
            ($krate:ident) => {{
                let conf = $krate::config::Builder::from(sdk).interceptor(CountingInterceptor(calls.clone())).build();
                $krate::Client::from_conf(conf)
            }};
        }
        Clients {
            ecs: client!(aws_sdk_ecs),
            ec2: client!(aws_sdk_ec2),
            elb: client!(aws_sdk_elasticloadbalancingv2),
            route53: client!(aws_sdk_route53),
            cloudmap: client!(aws_sdk_servicediscovery),
            secrets: client!(aws_sdk_secretsmanager),
            sqs: client!(aws_sdk_sqs),
            dynamodb: client!(aws_sdk_dynamodb),
            eventbridge: client!(aws_sdk_eventbridge),
            calls,
            route53_limit: Arc::new(TokenBucket::new(ROUTE53_RATE, ROUTE53_RATE)),
        }
    }

    /// Waits for the client-side Route 53 rate limit; call before every Route 53 request.
    pub async fn route53_permit(&self) {
        self.route53_limit.acquire().await;
    }
}

/// An AWS failure, reduced to what the operator acts on: which call, whether it was throttled,
/// and the service's error code and message (never request bodies, which may carry secrets).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {code}: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub code: String,
    pub message: String,
    pub throttled: bool,
}

impl AwsError {
    pub fn new<E>(
        operation: &'static str,
        err: aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
    ) -> Self
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        use aws_smithy_types::error::metadata::ProvideErrorMetadata;
        let code = err.code().unwrap_or("").to_owned();
        let message = match err.message() {
            Some(m) => m.to_owned(),
            None => aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
        };
        let throttled = is_throttle_text(&code);
        AwsError { operation, code, message, throttled }
    }

    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }

    pub fn other(operation: &'static str, message: impl Into<String>) -> Self {
        AwsError { operation, code: "Invalid".into(), message: message.into(), throttled: false }
    }
}

/// `.await.map_err(aws(op))` keeps call sites short.
pub fn aws<E>(
    operation: &'static str,
) -> impl FnOnce(aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>) -> AwsError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    move |e| AwsError::new(operation, e)
}

/// The probe account's private key from its secret (`None`: no such secret yet). Only `probe`
/// and `run`'s probes read it; the value never reaches a log or an error message.
pub async fn read_probe_key(c: &Clients, secret: &str) -> Result<Option<zeroize::Zeroizing<String>>, AwsError> {
    let out = match c.secrets.get_secret_value().secret_id(secret).send().await.map_err(aws("GetSecretValue")) {
        Err(e) if e.is("ResourceNotFoundException") => return Ok(None),
        r => r?,
    };
    let value = zeroize::Zeroizing::new(out.secret_string().unwrap_or_default().to_owned());
    let mut fields: std::collections::BTreeMap<String, String> = serde_json::from_str(&value)
        .map_err(|_| AwsError::other("GetSecretValue", format!("{secret} is not a JSON object of strings")))?;
    let key = fields.remove(crate::codec::PROBE_KEY_FIELD).map(zeroize::Zeroizing::new);
    fields.values_mut().for_each(zeroize::Zeroize::zeroize);
    match key {
        Some(k) => Ok(Some(k)),
        None => {
            Err(AwsError::other("GetSecretValue", format!("{secret} has no `{}` field", crate::codec::PROBE_KEY_FIELD)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_token_bucket_allows_a_burst_then_the_rate() {
        let b = TokenBucket::new(5.0, 5.0);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            b.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..5 {
            b.acquire().await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(999) && took <= Duration::from_millis(1001), "{took:?}");
    }

    #[test]
    fn mutating_operations_are_told_apart_from_reads() {
        assert!(is_mutating("ChangeResourceRecordSets"));
        assert!(is_mutating("AuthorizeSecurityGroupIngress"));
        assert!(!is_mutating("DescribeServices"));
        assert!(!is_mutating("ListResourceRecordSets"));
    }
}
