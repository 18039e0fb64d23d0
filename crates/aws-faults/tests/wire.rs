//! Each fault as the AWS SDK for Rust sees it, through the endpoint in front of a
//! real LocalStack: the service's error code and HTTP status, the SDK retrying what
//! it should, a lost response whose call took effect, and a stall meeting the
//! client's timeout.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_faults::rules::Rule;
use aws_faults::{Config, Endpoint, serve};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

const REGION: &str = "eu-north-1";

/// The project's LocalStack, started (or found) by its script.
fn localstack() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/localstack.sh");
        let out = Command::new("bash")
            .args([script, "start"])
            .output()
            .expect("run localstack.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
}

async fn endpoint(rules: &[&str]) -> Endpoint {
    let rules = rules
        .iter()
        .map(|r| Rule::parse(r).expect("rule"))
        .collect();
    let config = Config {
        upstream: localstack().to_owned(),
        seed: 1,
        rules,
    };
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    serve(any, config).await.expect("endpoint")
}

/// An SDK configuration for `url`, with the SDK's standard retries (3 attempts,
/// quick backoff) or none, and an optional operation timeout.
async fn sdk(url: &str, retries: bool, timeout: Option<Duration>) -> SdkConfig {
    let retry = if retries {
        RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(10))
    } else {
        RetryConfig::disabled()
    };
    let mut timeouts = TimeoutConfig::builder();
    if let Some(t) = timeout {
        timeouts = timeouts.operation_timeout(t);
    }
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .retry_config(retry)
        .timeout_config(timeouts.build())
        .load()
        .await
}

/// The error code and HTTP status of a failed call.
fn failure<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: &SdkError<E, aws_smithy_runtime_api::http::Response<R>>,
) -> (String, u16) {
    match e {
        SdkError::ServiceError(s) => (
            s.err().code().unwrap_or_default().to_owned(),
            s.raw().status().as_u16(),
        ),
        other => (format!("not a service error: {other:?}"), 0),
    }
}

/// Calls one read-only operation of `service` through `config`, returning the error
/// code and status, or ("", 200) on success.
async fn call(service: &str, config: &SdkConfig) -> (String, u16) {
    macro_rules! outcome {
        ($fut:expr) => {
            match $fut.await {
                Ok(_) => (String::new(), 200),
                Err(e) => failure(&e),
            }
        };
    }
    match service {
        "ec2" => outcome!(aws_sdk_ec2::Client::new(config).describe_vpcs().send()),
        "iam" => outcome!(aws_sdk_iam::Client::new(config).list_roles().send()),
        "sts" => outcome!(
            aws_sdk_sts::Client::new(config)
                .get_caller_identity()
                .send()
        ),
        "route53" => outcome!(
            aws_sdk_route53::Client::new(config)
                .list_hosted_zones()
                .send()
        ),
        "s3" => outcome!(
            aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(config)
                    .force_path_style(true)
                    .build()
            )
            .list_buckets()
            .send()
        ),
        "ssm" => outcome!(
            aws_sdk_ssm::Client::new(config)
                .describe_parameters()
                .send()
        ),
        other => panic!("no call for {other}"),
    }
}

/// An error's code and HTTP status.
type Answer = (&'static str, u16);

/// (service, the read each test makes, throttling code and status, server error
/// code and status), from each service's documented errors.
const SERVICES: [(&str, &str, Answer, Answer); 6] = [
    (
        "ec2",
        "DescribeVpcs",
        ("RequestLimitExceeded", 503),
        ("InternalError", 500),
    ),
    (
        "iam",
        "ListRoles",
        ("Throttling", 400),
        ("ServiceFailure", 500),
    ),
    (
        "sts",
        "GetCallerIdentity",
        ("Throttling", 400),
        ("InternalFailure", 500),
    ),
    (
        "route53",
        "ListHostedZones",
        ("Throttling", 400),
        ("InternalFailure", 500),
    ),
    (
        "s3",
        "ListBuckets",
        ("SlowDown", 503),
        ("InternalError", 500),
    ),
    (
        "ssm",
        "DescribeParameters",
        ("ThrottlingException", 400),
        ("InternalServerError", 500),
    ),
];

#[tokio::test]
async fn each_service_throttles_and_fails_with_its_own_code() {
    for (service, op, throttle, failure) in SERVICES {
        let faults = endpoint(&[
            &format!("{service}:{op}=throttle#1"),
            &format!("{service}:{op}=server-error#1"),
        ])
        .await;
        let config = sdk(&faults.url(), false, None).await;
        let first = call(service, &config).await;
        assert_eq!(
            (first.0.as_str(), first.1),
            throttle,
            "{service} throttling"
        );
        let second = call(service, &config).await;
        assert_eq!(
            (second.0.as_str(), second.1),
            failure,
            "{service} server error"
        );
        assert_eq!(
            call(service, &config).await,
            (String::new(), 200),
            "{service} then works"
        );
        let stats = faults.stats();
        let ops = &stats.operations[&format!("{service}:{op}")];
        assert_eq!((ops.calls, ops.forwarded), (3, 1), "{service}: {ops:?}");
    }
}

#[tokio::test]
async fn the_sdk_retries_throttling_and_server_errors() {
    for (service, op, _, _) in SERVICES {
        let faults = endpoint(&[
            &format!("{service}:{op}=throttle#1"),
            &format!("{service}:{op}=server-error#1"),
        ])
        .await;
        // Three attempts: a throttle, an internal error, then the real answer.
        let config = sdk(&faults.url(), true, None).await;
        assert_eq!(
            call(service, &config).await,
            (String::new(), 200),
            "{service}"
        );
        let stats = faults.stats();
        assert_eq!(stats.faults["throttle"], 1, "{service}");
        assert_eq!(stats.faults["server-error"], 1, "{service}");
        assert_eq!(stats.operations[&format!("{service}:{op}")].forwarded, 1);
    }
}

#[tokio::test]
async fn a_lost_response_took_effect_all_the_same() {
    let faults = endpoint(&["ec2:CreateVpc=lost#1"]).await;
    let through = aws_sdk_ec2::Client::new(&sdk(&faults.url(), false, None).await);
    let direct = aws_sdk_ec2::Client::new(&sdk(localstack(), false, None).await);
    let marker = format!("lost-{}", std::process::id());
    let tag = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("lost-test")
                .value(&marker)
                .build(),
        )
        .build();
    let lost = through
        .create_vpc()
        .cidr_block("10.77.0.0/16")
        .tag_specifications(tag)
        .send()
        .await;
    let err = lost.expect_err("the answer never came");
    assert!(
        matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "a connection failure, not an answer: {err:?}"
    );
    let found = direct
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:lost-test")
                .values(&marker)
                .build(),
        )
        .send()
        .await
        .expect("describe");
    assert_eq!(
        found.vpcs().len(),
        1,
        "the VPC exists though the client never heard"
    );
    let stats = faults.stats();
    assert_eq!(stats.operations["ec2:CreateVpc"].forwarded, 1);
    assert_eq!(stats.faults["lost"], 1);
    for v in found.vpcs() {
        direct
            .delete_vpc()
            .vpc_id(v.vpc_id().unwrap_or_default())
            .send()
            .await
            .expect("clean up");
    }
}

#[tokio::test]
async fn a_reset_is_a_connection_failure_and_nothing_is_forwarded() {
    let faults = endpoint(&["sts:GetCallerIdentity=reset#1"]).await;
    let config = sdk(&faults.url(), false, None).await;
    let err = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .expect_err("reset");
    assert!(
        matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "{err:?}"
    );
    assert_eq!(
        faults.stats().operations["sts:GetCallerIdentity"].forwarded,
        0
    );
}

#[tokio::test]
async fn a_stall_meets_the_clients_timeout() {
    let faults = endpoint(&["sts:GetCallerIdentity=stall#1"]).await;
    let config = sdk(&faults.url(), false, Some(Duration::from_millis(500))).await;
    let started = std::time::Instant::now();
    let err = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .expect_err("no answer");
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn stats_are_served_as_json() {
    let faults = endpoint(&["iam=throttle#1"]).await;
    let config = sdk(&faults.url(), true, None).await;
    assert_eq!(call("iam", &config).await, (String::new(), 200));
    let response = tokio::task::spawn_blocking({
        let address = faults.address;
        move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(address).expect("connect");
            s.write_all(b"GET /_faults/stats HTTP/1.0\r\nHost: x\r\n\r\n")
                .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).expect("read");
            out
        }
    })
    .await
    .expect("join");
    let body = response.split("\r\n\r\n").nth(1).expect("body");
    let stats: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(stats["faults"]["throttle"], 1, "{stats}");
    assert_eq!(stats["operations"]["iam:ListRoles"]["calls"], 2, "{stats}");
}
