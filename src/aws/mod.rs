//! The AWS layer: configuration, clients, and errors that keep the service's code.
//!
//! Everything here uses the standard AWS configuration chain, so the same code runs
//! against AWS and against LocalStack, selected only by `AWS_ENDPOINT_URL` (or the
//! per-service `AWS_ENDPOINT_URL_<SERVICE>` variables). The layer observes and applies;
//! it never decides what should change (that is the core's plan).

pub mod apply;
pub mod images;
pub mod kinds;
pub mod observe;
pub mod preflight;
pub mod wait;
pub mod zones;

use std::error::Error as StdError;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::bail;
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::cli::GlobalArgs;

/// A loaded AWS configuration and the region it settled on.
pub struct Session {
    /// Shared SDK configuration for every client.
    pub config: SdkConfig,
    /// The effective region.
    pub region: String,
}

impl Session {
    /// A service's name for messages, with the endpoint when one is configured
    /// (`STS at http://127.0.0.1:4566`), so a wrong endpoint is obvious.
    pub fn service(&self, name: &str) -> String {
        match self.config.endpoint_url() {
            Some(url) => format!("{name} at {url}"),
            None => name.to_owned(),
        }
    }
}

/// Picks the region: `--region` beats the topology, which beats the profile and the
/// environment. A `--region` that contradicts the topology is a mistake, not a choice.
/// The flag's value is checked here, before any call, and named as it was given
/// (`--region` or `LABCTL_REGION`).
pub fn choose_region(flag: Option<&str>, topology: Option<&str>) -> anyhow::Result<Option<String>> {
    let origin = crate::invocation::region_origin();
    if let Some(f) = flag {
        labctl_core::validate::supported_region(f)
            .map_err(|why| anyhow::anyhow!("{origin}: {why}"))?;
    }
    match (flag, topology) {
        (Some(f), Some(t)) if f != t => {
            bail!("{origin} {f} contradicts the topology's `region: {t}`; remove one of them")
        }
        (Some(r), _) | (None, Some(r)) => Ok(Some(r.to_owned())),
        (None, None) => Ok(None),
    }
}

/// Loads the SDK configuration for the given options.
pub async fn connect(
    global: &GlobalArgs,
    topology_region: Option<&str>,
) -> anyhow::Result<Session> {
    let region = choose_region(global.region.as_deref(), topology_region)?;
    let patience = Patience::from_env();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(patience.retries())
        .timeout_config(patience.timeouts());
    if let Some(profile) = &global.profile {
        // An explicit profile beats credentials in the environment, as in the AWS CLI;
        // the default chain would take AWS_ACCESS_KEY_ID first.
        loader = loader.profile_name(profile).credentials_provider(
            aws_config::profile::ProfileFileCredentialsProvider::builder()
                .profile_name(profile)
                .build(),
        );
    }
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    let config = loader.load().await;
    let Some(region) = config.region().map(|r| r.to_string()) else {
        bail!(
            "no AWS region configured: pass --region, add `region:` to the topology, or set AWS_REGION"
        );
    };
    tracing::info!(%region, "AWS configuration loaded");
    Ok(Session { config, region })
}

/// How long labctl waits for AWS, and how often it tries again: set on purpose, in
/// one place.
///
/// - **Timeouts.** 5 s to connect, 30 s for one attempt's answer, 3 minutes for a
///   whole operation with its retries. Without them a stalled connection would hold
///   a step, and so the lab, forever.
/// - **Retries.** The SDK's standard mode, which tells throttling (`Throttling`,
///   `RequestLimitExceeded`, `SlowDown`, …) and transient failures (5xx, resets,
///   timeouts) from errors that retrying cannot mend, and backs off exponentially with
///   full jitter. 8 attempts, from 1 s up to 20 s apart: a classroom starting at the
///   same minute rides out a throttled minute. Its retry budget (a token bucket of
///   500, 5 per retried error, 10 per timeout, refilled by successes) bounds retry
///   storms; a lab's 100 or so calls fit it many times over.
///
/// `LABCTL_PATIENCE` scales every figure (tests use 0.05); nothing else sets them.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    scale: f64,
}

impl Patience {
    /// From `LABCTL_PATIENCE`, or 1.
    pub fn from_env() -> Self {
        let scale = std::env::var("LABCTL_PATIENCE")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| *s > 0.0)
            .unwrap_or(1.0);
        Self { scale }
    }

    /// The factor every figure is multiplied by.
    pub fn scale(self) -> f64 {
        self.scale
    }

    fn scaled(self, seconds: f64) -> std::time::Duration {
        std::time::Duration::from_secs_f64(seconds * self.scale)
    }

    /// The SDK's retry configuration.
    pub fn retries(self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(8)
            .with_initial_backoff(self.scaled(1.0))
            .with_max_backoff(self.scaled(20.0))
    }

    /// The SDK's timeouts.
    pub fn timeouts(self) -> aws_config::timeout::TimeoutConfig {
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(self.scaled(5.0))
            .read_timeout(self.scaled(30.0))
            .operation_attempt_timeout(self.scaled(30.0))
            .operation_timeout(self.scaled(180.0))
            .build()
    }
}

/// Requests sent to AWS by this process (every attempt, retries included).
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// How many requests this process has sent to AWS.
pub fn calls() -> usize {
    CALLS.load(Ordering::Relaxed)
}

/// The request at which the process ends itself, as if killed: `LABCTL_CRASH_AT=k`,
/// for the crash sweep of `bench/faults.sh`. Unset in normal use.
fn crash_at() -> Option<usize> {
    static AT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *AT.get_or_init(|| std::env::var("LABCTL_CRASH_AT").ok()?.parse().ok())
}

/// Counts requests into [`calls`].
#[derive(Debug, Clone, Default)]
pub struct CallCounter;

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "labctl-call-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        if crash_at() == Some(n) {
            // As a kill would: no cleanup, no message.
            std::process::abort();
        }
        Ok(())
    }
}

/// One client per service, all counting their calls.
#[derive(Clone)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub iam: aws_sdk_iam::Client,
    pub s3: aws_sdk_s3::Client,
    pub route53: aws_sdk_route53::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub sts: aws_sdk_sts::Client,
    pub quotas: aws_sdk_servicequotas::Client,
    pub region: String,
}

impl Clients {
    /// Builds the clients for a session.
    pub fn new(session: &Session) -> Self {
        let calls = CallCounter;
        let c = &session.config;
        // A custom S3 endpoint (LocalStack, MinIO) rarely resolves bucket subdomains.
        let path_style = c.endpoint_url().is_some();
        Self {
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(c)
                    .interceptor(calls.clone())
                    .build(),
            ),
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(c)
                    .interceptor(calls.clone())
                    .build(),
            ),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(c)
                    .force_path_style(path_style)
                    .interceptor(calls.clone())
                    .build(),
            ),
            route53: aws_sdk_route53::Client::from_conf(
                aws_sdk_route53::config::Builder::from(c)
                    .interceptor(calls.clone())
                    .build(),
            ),
            ssm: aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(c)
                    .interceptor(calls.clone())
                    .build(),
            ),
            sts: aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(c)
                    .interceptor(calls.clone())
                    .build(),
            ),
            quotas: aws_sdk_servicequotas::Client::from_conf(
                aws_sdk_servicequotas::config::Builder::from(c)
                    .interceptor(calls.clone())
                    .build(),
            ),
            region: session.region.clone(),
        }
    }
}

/// A failed AWS call: what was attempted, the service's error code, and one line
/// that explains it.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {message}")]
pub struct AwsError {
    /// The operation and its target (`EC2 CreateVpc`).
    pub context: String,
    /// The service's error code, when the service answered.
    pub code: Option<String>,
    /// The explanation.
    pub message: String,
    /// Whether the call may have taken effect all the same.
    pub ambiguous: bool,
}

impl AwsError {
    /// True when the service answered with one of `codes`.
    pub fn is(&self, codes: &[&str]) -> bool {
        self.code.as_deref().is_some_and(|c| codes.contains(&c))
    }
}

/// Every service's way of saying "slow down": the call did not happen.
pub const THROTTLING: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
];

/// Reading something that may legitimately not exist: `Ok(None)` when the service
/// answers with one of the codes that mean "there is none".
pub trait Absent<T> {
    /// `Ok(None)` for `codes`, the error itself for anything else.
    fn absent_if(self, codes: &[&str]) -> Result<Option<T>, AwsError>;
}

impl<T> Absent<T> for Result<T, AwsError> {
    fn absent_if(self, codes: &[&str]) -> Result<Option<T>, AwsError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is(codes) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `map_err` adapter: `.map_err(aws("EC2 CreateVpc"))`.
pub fn aws<E>(context: impl Into<String>) -> impl FnOnce(SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let context = context.into();
    move |err| AwsError {
        code: err.code().map(str::to_owned),
        // No answer, or a server error: the service may have done it anyway.
        ambiguous: match &err {
            SdkError::ServiceError(e) => {
                e.raw().status().is_server_error()
                    && !err.code().is_some_and(|c| THROTTLING.contains(&c))
            }
            SdkError::DispatchFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::ResponseError(_) => true,
            _ => false,
        },
        message: match classify(&err) {
            Failure::Rejected(m) => {
                format!("the credentials were rejected ({m}); {CREDENTIALS_HINT}")
            }
            Failure::Unreachable(m) => format!("cannot reach the service: {m}"),
            Failure::NoCredentials(m) => no_credentials(&m),
            Failure::Answered(m) | Failure::Other(m) => m,
        },
        context,
    }
}

/// One line that says what went wrong with a call to `service`, without SDK noise.
pub fn explain<E, R>(service: &str, err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    match classify(err) {
        Failure::Rejected(m) => {
            format!("{service} rejected the credentials ({m}); {CREDENTIALS_HINT}")
        }
        Failure::Unreachable(m) => format!("cannot reach {service}: {m}"),
        Failure::NoCredentials(m) => no_credentials(&m),
        Failure::Answered(m) => format!("{service} answered {m}"),
        Failure::Other(m) => format!("{service} call failed: {m}"),
    }
}

const CREDENTIALS_HINT: &str = "check AWS_PROFILE or AWS_ACCESS_KEY_ID";

/// The message for a request never sent because no credentials were found; `why` is
/// the credential chain's last word, kept for `-v`.
fn no_credentials(why: &str) -> String {
    tracing::info!(%why, "the credential chain found nothing");
    "no AWS credentials found: set AWS_PROFILE (or pass --profile) to a profile in \
     ~/.aws/config, run `aws sso login` for an SSO profile, or set AWS_ACCESS_KEY_ID and \
     AWS_SECRET_ACCESS_KEY"
        .to_owned()
}

/// What kind of failure an SDK error is, with its essential text.
enum Failure {
    /// The service refused the credentials (`code: message`).
    Rejected(String),
    /// No answer: connection or timeout (the innermost cause).
    Unreachable(String),
    /// Any other service error (`code: message`).
    Answered(String),
    /// No credentials to sign with: the request was never sent.
    NoCredentials(String),
    /// The request could not even be built or its answer read.
    Other(String),
}

fn classify<E, R>(err: &SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(why) = missing_credentials(err) {
        return Failure::NoCredentials(why);
    }
    match err {
        SdkError::ServiceError(e) => {
            let inner = e.err();
            let code = inner.code().unwrap_or("error");
            let text = format!("{code}: {}", inner.message().unwrap_or("no message"));
            if is_auth_error(code) {
                Failure::Rejected(text)
            } else {
                Failure::Answered(text)
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            Failure::Unreachable(innermost(err))
        }
        _ => Failure::Other(innermost(err)),
    }
}

fn is_auth_error(code: &str) -> bool {
    matches!(
        code,
        "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "AuthFailure"
            | "UnrecognizedClientException"
            | "InvalidAccessKeyId"
            | "ExpiredToken"
            | "InvalidToken"
    )
}

/// The deepest cause in an error chain: the part that names the real problem.
/// Whether the error says the credential chain found no credentials (its message), as
/// opposed to credentials that failed to load or were refused.
fn missing_credentials(err: &(dyn StdError + 'static)) -> Option<String> {
    use aws_credential_types::provider::error::CredentialsError;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(CredentialsError::CredentialsNotLoaded(_)) =
            e.downcast_ref::<CredentialsError>()
        {
            return Some(innermost(e));
        }
        cur = e.source();
    }
    None
}

fn innermost(err: &(dyn StdError + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Whether a policy document read from AWS says exactly what `wanted` says. IAM
/// returns documents URL-encoded, and AWS may reorder keys, write a one-element list
/// as its element, or reorder a list's elements: none of that is a difference.
pub fn same_document(found: &str, wanted: &serde_json::Value) -> bool {
    let decoded = percent_encoding::percent_decode_str(found).decode_utf8_lossy();
    serde_json::from_str::<serde_json::Value>(&decoded)
        .is_ok_and(|doc| canonical(&doc) == canonical(wanted))
}

fn canonical(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(canonical).collect();
            items.sort_by_key(ToString::to_string);
            if items.len() == 1 {
                items.swap_remove(0)
            } else {
                Value::Array(items)
            }
        }
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => v.clone(),
    }
}

/// An object as a listing shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// Every object under `prefix`, keys decoded; nothing for a bucket that does not
/// exist.
pub async fn listing(c: &Clients, bucket: &str, prefix: &str) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut pages =
        c.s3.list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .into_paginator()
            .send();
    while let Some(page) = pages.next().await {
        let Some(page) = page
            .map_err(aws(format!("S3 ListObjectsV2 {bucket}")))
            .absent_if(&["NoSuchBucket"])?
        else {
            return Ok(Vec::new());
        };
        out.extend(page.contents().iter().filter_map(|o| {
            Some(Listed {
                key: listed_key(o.key()?),
                size: u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
                modified: o
                    .last_modified()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok())
                    .unwrap_or(std::time::SystemTime::UNIX_EPOCH),
            })
        }));
    }
    Ok(out)
}

/// A key from a listing asked for with `EncodingType=url`. Keys are whatever an
/// instance chose, and XML 1.0 cannot carry every byte (a control character would
/// make the whole listing unreadable), so every listing asks S3 to encode them; S3
/// encodes a space as `+`, as HTML forms do.
pub fn listed_key(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_compare_by_meaning_not_by_spelling() {
        let wanted = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{ "Effect": "Deny", "Action": "s3:*", "Resource": ["a", "b"] }]
        });
        let respelled = r#"{"Statement":{"Resource":["b","a"],"Action":["s3:*"],"Effect":"Deny"},"Version":"2012-10-17"}"#;
        assert!(same_document(respelled, &wanted));
        let encoded = percent_encoding::utf8_percent_encode(
            &wanted.to_string(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        assert!(same_document(&encoded, &wanted));
        let widened = respelled.replace("Deny", "Allow");
        assert!(!same_document(&widened, &wanted));
        let extra = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","Resource":["a","b"]},{"Effect":"Allow","Action":"s3:GetObject","Resource":"a"}]}"#;
        assert!(!same_document(extra, &wanted));
        assert!(!same_document("not json", &wanted));
    }
}
