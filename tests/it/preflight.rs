//! What `plan` and `up` check before a plan that launches instances or makes a VPC
//! is carried out: an availability zone that offers every instance type, and the
//! account's quotas. LocalStack offers every type in every zone and has no Service
//! Quotas, so AWS's answers come from the project's fault-injecting endpoint in front
//! of it, in AWS's formats: `DescribeInstanceTypeOfferings` per zone (EC2 API
//! Reference), `GetServiceQuota` with the documented quota codes (L-1216C47A, Running
//! On-Demand Standard instances, in vCPUs; L-F678F1CE, VPCs per region), and an
//! `AccessDeniedException` for a caller without `servicequotas:GetServiceQuota`.
//! AWS itself is read with the SDK on LocalStack directly.

use std::net::SocketAddr;

use aws_faults::rules::Rule;
use aws_faults::standins::{Offering, Quota};
use aws_faults::{Config, Endpoint, serve};

use crate::harness::{Sandbox, Teardown, localstack_endpoint, unique_lab};
use crate::reconcile::{default_lab, ec2, lab_filter, owned_count, tag};

/// The fault-injecting endpoint in front of LocalStack, with `rules`, quota values
/// and instance type offerings (each as its command-line flag takes them).
pub(crate) async fn endpoint(rules: &[&str], quotas: &[&str], offerings: &[&str]) -> Endpoint {
    endpoint_seeded(rules, quotas, offerings, 1).await
}

/// [`endpoint`] with the seed that decides which calls a share catches.
pub(crate) async fn endpoint_seeded(
    rules: &[&str],
    quotas: &[&str],
    offerings: &[&str],
    seed: u64,
) -> Endpoint {
    let config = Config {
        seed,
        rules: rules
            .iter()
            .map(|r| Rule::parse(r).expect("rule"))
            .collect(),
        quotas: quotas
            .iter()
            .map(|q| Quota::parse(q).expect("quota"))
            .collect(),
        offerings: offerings
            .iter()
            .flat_map(|o| Offering::parse(o).expect("offering"))
            .collect(),
        ..Config::new(localstack_endpoint())
    };
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    serve(any, config).await.expect("endpoint")
}

fn sandbox(faults: &Endpoint, prefix: &str) -> (Sandbox, String) {
    let lab = unique_lab(prefix);
    let sb = Sandbox::with_endpoint(faults.url());
    sb.write("topology.yaml", &default_lab(&lab));
    (sb, lab)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_subnet_goes_to_the_first_zone_that_offers_every_type() {
    // eu-north-1a offers only t3.nano; eu-north-1c (eun1-az3) offers t3.micro.
    let faults = endpoint(
        &[],
        &[],
        &["eu-north-1a=t3.nano", "eu-north-1c=t3.micro,t3.nano"],
    )
    .await;
    let (sb, lab) = sandbox(&faults, "zone");
    let plan = sb.run(&["plan"]);
    assert_eq!(plan.code(), 0, "{}", plan.transcript());
    assert!(
        plan.stdout().contains("zone: eun1-az3"),
        "{}",
        plan.transcript()
    );
    let _down = Teardown::new(&sb, &[]);
    let up = tokio::task::block_in_place(|| sb.run(&["up", "--yes"]));
    assert_eq!(up.code(), 0, "{}", up.transcript());
    let subnets = ec2()
        .await
        .describe_subnets()
        .filters(lab_filter(&lab))
        .send()
        .await
        .expect("subnets");
    let subnet = subnets.subnets().first().expect("the lab's subnet");
    assert_eq!(subnet.availability_zone_id(), Some("eun1-az3"));
    assert_eq!(
        tag(subnet.tags(), "labctl:zone").as_deref(),
        Some("eun1-az3")
    );
    // The same choice on the next run: nothing to do.
    let again = sb.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.code(), 0, "{}", again.transcript());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_zone_offering_the_type_stops_plan_and_up_before_any_change() {
    let faults = endpoint(&[], &[], &["eu-north-1a=t3.nano", "eu-north-1b=c5.large"]).await;
    let (sb, lab) = sandbox(&faults, "nozone");
    for command in [&["plan"][..], &["up", "--yes"][..]] {
        let run = sb.run(command);
        assert_eq!(run.code(), 1, "{}", run.transcript());
        assert!(
            run.stderr()
                .contains("no availability zone of eu-north-1 offers t3.micro (subnet `lab`)"),
            "{}",
            run.transcript()
        );
    }
    assert_eq!(owned_count(&lab).await, 0, "nothing was made");
}

#[tokio::test(flavor = "multi_thread")]
async fn quotas_that_do_not_cover_the_lab_stop_it_before_any_change() {
    // Four vCPUs: three t3.micro need six, whatever else the account runs.
    let faults = endpoint(
        &[],
        &[
            "ec2/L-1216C47A=4",
            "vpc/L-F678F1CE=1000",
            "vpc/L-A4707A72=1000",
        ],
        &[],
    )
    .await;
    let (sb, lab) = sandbox(&faults, "vcpu");
    for command in [&["plan"][..], &["up", "--yes"][..]] {
        let run = sb.run(command);
        assert_eq!(run.code(), 1, "{}", run.transcript());
        let err = run.stderr();
        assert!(
            err.contains("the account's quotas do not cover the lab"),
            "{err}"
        );
        assert!(
            err.contains("the lab launches 6 On-Demand Standard vCPUs"),
            "{err}"
        );
        assert!(err.contains("of its 4 (L-1216C47A in eu-north-1)"), "{err}");
        assert!(
            err.contains("--service-code ec2 --quota-code L-1216C47A"),
            "how to raise it: {err}"
        );
    }
    assert_eq!(owned_count(&lab).await, 0, "nothing was made");

    // One VPC allowed, and the region already has at least its default one.
    let faults = endpoint(
        &[],
        &[
            "ec2/L-1216C47A=100000",
            "vpc/L-F678F1CE=1",
            "vpc/L-A4707A72=1000",
        ],
        &[],
    )
    .await;
    let (sb, lab) = sandbox(&faults, "vpcq");
    let run = sb.run(&["plan"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr().contains("the lab makes 1 more of the VPCs")
            && run.stderr().contains("(L-F678F1CE)"),
        "{}",
        run.transcript()
    );
    assert_eq!(owned_count(&lab).await, 0);

    // Enough of everything: no word about quotas.
    let faults = endpoint(
        &[],
        &[
            "ec2/L-1216C47A=100000",
            "vpc/L-F678F1CE=100000",
            "vpc/L-A4707A72=100000",
        ],
        &[],
    )
    .await;
    let (sb, _lab) = sandbox(&faults, "okq");
    let run = sb.run(&["plan"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    assert!(!run.stderr().contains("quota"), "{}", run.transcript());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_who_may_not_read_quotas_gets_a_warning_naming_the_permission() {
    let faults = endpoint(&["servicequotas=denied@1"], &["ec2/L-1216C47A=4"], &[]).await;
    let (sb, _lab) = sandbox(&faults, "denyq");
    let run = sb.run(&["plan"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    assert!(
        run.stderr().contains(
            "warning: the caller may not read quotas (it lacks `servicequotas:GetServiceQuota`)"
        ),
        "{}",
        run.transcript()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reads_the_quotas_the_zones_and_the_image_parameter() {
    let faults = endpoint(
        &[],
        &["ec2/L-1216C47A=32", "vpc/L-F678F1CE=5", "vpc/L-A4707A72=5"],
        &["eu-north-1b=t3.micro"],
    )
    .await;
    let (sb, _lab) = sandbox(&faults, "doc");
    let run = sb.run(&["doctor"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let out = run.stdout();
    assert!(
        out.contains("credentials: environment (AWS_ACCESS_KEY_ID)"),
        "{out}"
    );
    assert!(
        out.contains("On-Demand Standard vCPUs (L-1216C47A): 32"),
        "{out}"
    );
    assert!(out.contains("VPCs per region (L-F678F1CE): 5"), "{out}");
    assert!(out.contains("subnet `lab`: eun1-az2"), "{out}");
    // LocalStack has no Canonical parameter: reported, not an error.
    assert!(
        run.stderr()
            .contains("warning: /aws/service/canonical/ubuntu/server/24.04"),
        "{}",
        run.transcript()
    );
}
