//! `up` and `down` through the faults real AWS produces, each succeeding in one run:
//! the project's fault-injecting endpoint stands in front of LocalStack and fails a
//! fifth of the mutating calls, one fault kind per test and then all together. After
//! every `up` the account holds exactly one of each resource, a second plan is
//! empty, and after every `down` nothing is left. The inventory is read from
//! LocalStack directly with the SDK, never through labctl or the endpoint.

use std::net::SocketAddr;

use aws_faults::consistency::Windows;
use aws_faults::rules::Rule;
use aws_faults::{Config, Endpoint, serve};

use crate::harness::{Sandbox, localstack_endpoint, unique_lab};
use crate::reconcile::{default_lab, owned_count};

/// Cycles of up, plan and down per fault kind.
const CYCLES: usize = 5;

/// What the default lab owns once up: VPC, subnet, two groups, gateway, route table,
/// three instances, role, profile, bucket and zone.
const WHOLE_LAB: usize = 13;

async fn faulty(rules: &[&str], seed: u64) -> Endpoint {
    let config = Config {
        upstream: localstack_endpoint().to_owned(),
        seed,
        rules: rules
            .iter()
            .map(|r| Rule::parse(r).expect("rule"))
            .collect(),
        ec2_buckets: false,
        consistency: Windows::default(),
        quotas: Vec::new(),
        offerings: Vec::new(),
    };
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    serve(any, config).await.expect("endpoint")
}

async fn cycles(prefix: &str, rules: &[&str]) {
    for cycle in 0..CYCLES {
        let faults = faulty(rules, cycle as u64 + 1).await;
        let lab = unique_lab(prefix);
        let sb = Sandbox::with_endpoint(faults.url());
        sb.write("topology.yaml", &default_lab(&lab));
        tokio::task::block_in_place(|| {
            let up = sb.run(&["up", "--yes"]);
            assert_eq!(
                up.code(),
                0,
                "cycle {cycle}: up in one run\n{}",
                up.transcript()
            );
        });
        assert_eq!(
            owned_count(&lab).await,
            WHOLE_LAB,
            "cycle {cycle}: one of each, no duplicates"
        );
        tokio::task::block_in_place(|| {
            let plan = sb.run(&["plan", "--detailed-exitcode"]);
            assert_eq!(
                plan.code(),
                0,
                "cycle {cycle}: an empty re-plan\n{}",
                plan.transcript()
            );
            let down = sb.run(&["down", "--yes", "--delete-captures"]);
            assert_eq!(
                down.code(),
                0,
                "cycle {cycle}: down in one run\n{}",
                down.transcript()
            );
        });
        assert_eq!(owned_count(&lab).await, 0, "cycle {cycle}: nothing left");
        let stats = faults.stats();
        assert!(
            stats.faults.values().sum::<u64>() > 0,
            "cycle {cycle}: the faults happened: {stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_on_a_fifth_of_mutating_calls() {
    cycles("f-thr", &["!=throttle@0.2"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_on_a_fifth_of_mutating_calls() {
    cycles("f-500", &["!=server-error@0.2"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_responses_on_a_fifth_of_mutating_calls() {
    cycles("f-lost", &["!=lost@0.2"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resets_on_a_fifth_of_mutating_calls() {
    cycles("f-rst", &["!=reset@0.2"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_together_on_a_fifth_of_mutating_calls() {
    cycles(
        "f-all",
        &[
            "!=throttle@0.05",
            "!=server-error@0.05",
            "!=lost@0.05",
            "!=reset@0.05",
        ],
    )
    .await;
}
