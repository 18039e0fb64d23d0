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
use aws_faults::consistency::Windows;
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

/// The endpoint's configuration in front of LocalStack, with `rules`.
fn config(rules: &[&str]) -> Config {
    Config {
        rules: rules
            .iter()
            .map(|r| Rule::parse(r).expect("rule"))
            .collect(),
        ..Config::new(localstack())
    }
}

async fn start(config: Config) -> Endpoint {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    serve(any, config).await.expect("endpoint")
}

async fn endpoint(rules: &[&str]) -> Endpoint {
    start(config(rules)).await
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

#[tokio::test]
async fn a_repeated_client_token_returns_the_first_instance_even_once_terminated() {
    let faults = endpoint(&[]).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk(&faults.url(), false, None).await);
    let token = format!("faults-{}", std::process::id());
    let launch = |image: &'static str| {
        ec2.run_instances()
            .image_id(image)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .client_token(&token)
            .send()
    };
    let id = |out: &aws_sdk_ec2::operation::run_instances::RunInstancesOutput| {
        out.instances()[0]
            .instance_id()
            .unwrap_or_default()
            .to_owned()
    };
    let first = id(&launch("ami-785db401").await.expect("launch"));
    let again = id(&launch("ami-785db401").await.expect("the same launch"));
    assert_eq!(first, again, "one instance for one token");
    ec2.terminate_instances()
        .instance_ids(&first)
        .send()
        .await
        .expect("terminate");
    let after = id(&launch("ami-785db401").await.expect("after termination"));
    assert_eq!(
        first, after,
        "AWS returns the terminated instance, not a new one"
    );
    let other = launch("ami-1e749f67").await.expect_err("other parameters");
    assert_eq!(failure(&other).0, "IdempotentParameterMismatch");
    assert_eq!(faults.stats().operations["ec2:RunInstances"].forwarded, 1);
}

#[tokio::test]
async fn a_repeated_caller_reference_is_hosted_zone_already_exists() {
    let faults = endpoint(&[]).await;
    let r53 = aws_sdk_route53::Client::new(&sdk(&faults.url(), false, None).await);
    let reference = format!("faults-{}", std::process::id());
    let create = || {
        r53.create_hosted_zone()
            .name(format!("{reference}.test"))
            .caller_reference(&reference)
            .hosted_zone_config(
                aws_sdk_route53::types::HostedZoneConfig::builder()
                    .comment("idempotency test")
                    .build(),
            )
            .send()
    };
    let zone = create().await.expect("the first create");
    let again = create().await.expect_err("the same reference again");
    assert_eq!(failure(&again), ("HostedZoneAlreadyExists".to_owned(), 409));
    let direct = aws_sdk_route53::Client::new(&sdk(localstack(), false, None).await);
    let listed = direct.list_hosted_zones().send().await.expect("zones");
    let made = listed
        .hosted_zones()
        .iter()
        .filter(|z| z.caller_reference() == reference)
        .count();
    assert_eq!(made, 1, "one zone for one caller reference");
    let id = zone.hosted_zone().map(|z| z.id().to_owned()).expect("id");
    direct
        .delete_hosted_zone()
        .id(id)
        .send()
        .await
        .expect("clean up");
}

#[tokio::test]
async fn ec2s_token_buckets_throttle_a_burst() {
    let faults = start(Config {
        ec2_buckets: true,
        ..config(&[])
    })
    .await;
    let config = sdk(&faults.url(), false, None).await;
    // A burst of 300 at once: whatever the machine's load, it arrives much faster
    // than DescribeVpcs's 20 tokens a second refill its 100.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let config = config.clone();
        burst.spawn(async move { call("ec2", &config).await });
    }
    let (mut throttled, mut answered) = (0, 0);
    while let Some(outcome) = burst.join_next().await {
        match outcome.expect("call") {
            (code, 503) if code == "RequestLimitExceeded" => throttled += 1,
            (_, 200) => answered += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        answered >= 100,
        "the bucket's 100 tokens get through: {answered}"
    );
    assert!(throttled > 0, "then EC2 throttles: {throttled}");
}

#[tokio::test]
async fn new_things_are_briefly_invisible_as_aws_documents() {
    // Long enough that the first calls land inside it even on a loaded machine.
    let window = Duration::from_secs(3);
    let faults = start(Config {
        consistency: Windows {
            instance: window,
            profile: window,
            group: window,
        },
        ..config(&[])
    })
    .await;
    let sdk = sdk(&faults.url(), false, None).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let iam = aws_sdk_iam::Client::new(&sdk);
    let unique = std::process::id();

    // A group, named in a rule at once, then after the window.
    let group = ec2
        .create_security_group()
        .group_name(format!("faults-{unique}"))
        .description("consistency test")
        .send()
        .await
        .expect("group");
    let group = group.group_id().expect("id").to_owned();
    let authorize = || {
        ec2.authorize_security_group_ingress()
            .group_id(&group)
            .ip_permissions(
                aws_sdk_ec2::types::IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .ip_ranges(
                        aws_sdk_ec2::types::IpRange::builder()
                            .cidr_ip("203.0.113.7/32")
                            .build(),
                    )
                    .build(),
            )
            .send()
    };
    let early = authorize().await.expect_err("not visible yet");
    assert_eq!(failure(&early).0, "InvalidGroup.NotFound");

    // A profile, used by RunInstances at once.
    let profile = format!("faults-{unique}");
    iam.create_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .expect("profile");
    let launch = || {
        ec2.run_instances()
            .image_id("ami-785db401")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .iam_instance_profile(
                aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                    .name(&profile)
                    .build(),
            )
            .send()
    };
    let refused = launch().await.expect_err("not visible to EC2 yet");
    let (code, _) = failure(&refused);
    assert_eq!(code, "InvalidParameterValue");
    assert!(
        format!("{refused:?}").contains("Invalid IAM Instance Profile name"),
        "{refused:?}"
    );

    tokio::time::sleep(window).await;
    authorize().await.expect("the group is visible now");
    let launched = launch().await.expect("the profile is visible now");
    let instance = launched.instances()[0]
        .instance_id()
        .expect("id")
        .to_owned();

    // The new instance, described by id at once, then after the window.
    let describe = || ec2.describe_instances().instance_ids(&instance).send();
    let unseen = describe().await.expect_err("not visible yet");
    assert_eq!(failure(&unseen).0, "InvalidInstanceID.NotFound");
    tokio::time::sleep(window).await;
    describe().await.expect("visible now");
    assert_eq!(faults.stats().faults["not-yet-visible"], 3);

    ec2.terminate_instances()
        .instance_ids(&instance)
        .send()
        .await
        .expect("clean up");
    iam.delete_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .expect("clean up");
}

#[tokio::test]
async fn service_quotas_answer_with_the_values_a_test_sets() {
    use aws_faults::standins::Quota;
    let faults = start(Config {
        quotas: vec![
            Quota::parse("ec2/L-1216C47A=5").expect("quota"),
            Quota::parse("vpc/L-F678F1CE=5").expect("quota"),
        ],
        ..config(&[])
    })
    .await;
    let quotas = aws_sdk_servicequotas::Client::new(&sdk(&faults.url(), false, None).await);
    let vcpus = quotas
        .get_service_quota()
        .service_code("ec2")
        .quota_code("L-1216C47A")
        .send()
        .await
        .expect("quota");
    let q = vcpus.quota().expect("quota");
    assert_eq!(q.value(), Some(5.0));
    assert_eq!(
        q.quota_name(),
        Some("Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances")
    );
    let missing = quotas
        .get_service_quota()
        .service_code("ec2")
        .quota_code("L-00000000")
        .send()
        .await
        .expect_err("no such quota");
    assert_eq!(failure(&missing).0, "NoSuchResourceException");
    let listed = quotas
        .list_service_quotas()
        .service_code("vpc")
        .send()
        .await
        .expect("list");
    let codes: Vec<&str> = listed
        .quotas()
        .iter()
        .filter_map(|q| q.quota_code())
        .collect();
    assert_eq!(codes, ["L-F678F1CE"]);
}

#[tokio::test]
async fn instance_type_offerings_answer_per_zone() {
    use aws_faults::standins::Offering;
    let mut offerings = Offering::parse("us-east-1a=t3.micro,t3.small").expect("offerings");
    offerings.extend(Offering::parse("us-east-1e=t3.small").expect("offerings"));
    let faults = start(Config {
        offerings,
        ..config(&[])
    })
    .await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk(&faults.url(), false, None).await);
    let filter = |name: &str, value: &str| {
        aws_sdk_ec2::types::Filter::builder()
            .name(name)
            .values(value)
            .build()
    };
    let micro = ec2
        .describe_instance_type_offerings()
        .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
        .filters(filter("instance-type", "t3.micro"))
        .send()
        .await
        .expect("offerings");
    let zones: Vec<&str> = micro
        .instance_type_offerings()
        .iter()
        .filter_map(|o| o.location())
        .collect();
    assert_eq!(zones, ["us-east-1a"], "us-east-1e does not offer t3.micro");
    let in_e = ec2
        .describe_instance_type_offerings()
        .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
        .filters(filter("location", "us-east-1e"))
        .send()
        .await
        .expect("offerings");
    let types: Vec<&str> = in_e
        .instance_type_offerings()
        .iter()
        .filter_map(|o| o.instance_type().map(|t| t.as_str()))
        .collect();
    assert_eq!(types, ["t3.small"]);
}

#[tokio::test]
async fn route53_also_says_prior_request_not_complete() {
    let faults = endpoint(&["route53:ChangeResourceRecordSets=prior-request-not-complete#1"]).await;
    let r53 = aws_sdk_route53::Client::new(&sdk(&faults.url(), false, None).await);
    let change = aws_sdk_route53::types::ChangeBatch::builder()
        .changes(
            aws_sdk_route53::types::Change::builder()
                .action(aws_sdk_route53::types::ChangeAction::Upsert)
                .resource_record_set(
                    aws_sdk_route53::types::ResourceRecordSet::builder()
                        .name("x.test")
                        .r#type(aws_sdk_route53::types::RrType::A)
                        .ttl(60)
                        .resource_records(
                            aws_sdk_route53::types::ResourceRecord::builder()
                                .value("10.0.0.1")
                                .build()
                                .expect("record"),
                        )
                        .build()
                        .expect("set"),
                )
                .build()
                .expect("change"),
        )
        .build()
        .expect("batch");
    let err = r53
        .change_resource_record_sets()
        .hosted_zone_id("Z0000000000000")
        .change_batch(change)
        .send()
        .await
        .expect_err("refused");
    assert_eq!(failure(&err), ("PriorRequestNotComplete".to_owned(), 400));
    assert_eq!(faults.stats().faults["prior-request-not-complete"], 1);
}

#[tokio::test]
async fn a_slow_answer_arrives_late_and_whole() {
    // The form of `--rules-file`.
    let rules: Vec<Rule> = serde_json::from_str(
        r#"[{"service": "sts", "operation": "GetCallerIdentity", "fault": "slow", "count": 1, "delay_ms": 400}]"#,
    )
    .expect("rules");
    let faults = start(Config {
        rules,
        ..config(&[])
    })
    .await;
    let config = sdk(&faults.url(), false, None).await;
    let started = std::time::Instant::now();
    assert_eq!(call("sts", &config).await, (String::new(), 200));
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(faults.stats().faults["slow"], 1);
}
