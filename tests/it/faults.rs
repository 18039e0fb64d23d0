//! `up` and `down` through the faults real AWS produces, each succeeding in one run:
//! the project's fault-injecting endpoint stands in front of LocalStack and fails a
//! fifth of the mutating calls, one fault kind per test and then all together. After
//! every `up` the account holds exactly one of each resource, a second plan is
//! empty, and after every `down` nothing is left. The inventory is read from
//! LocalStack directly with the SDK, never through labctl or the endpoint.

use aws_faults::Endpoint;

use crate::harness::{Sandbox, unique_lab};
use crate::reconcile::{default_lab, owned_count};

/// Cycles of up, plan and down per fault kind.
const CYCLES: usize = 5;

/// What the default lab owns once up: VPC, subnet, two groups, gateway, route table,
/// three instances, role, profile, bucket and zone.
const WHOLE_LAB: usize = 13;

async fn faulty(rules: &[&str], seed: u64) -> Endpoint {
    crate::preflight::endpoint_seeded(rules, &[], &[], seed).await
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

/// Runs `labctl <args>` and SIGKILLs it once it has reported `steps` finished steps;
/// `false` if it ended by itself first.
fn kill_after(sb: &Sandbox, args: &[&str], steps: usize) -> bool {
    use std::io::{BufRead, BufReader};
    let mut child = sb
        .labctl(args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn labctl");
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = 0;
    for line in BufReader::new(stderr).lines() {
        if is_step(&line.expect("line")) {
            seen += 1;
            if seen == steps {
                child.kill().expect("SIGKILL labctl");
                break;
            }
        }
    }
    let status = child.wait().expect("wait");
    seen == steps && !status.success()
}

/// A finished step's line (`✓ create vpc [vpc-…] (0.0s)`), not the closing one.
fn is_step(line: &str) -> bool {
    ["✓ create ", "✓ update ", "✓ delete ", "✓ revoke "]
        .iter()
        .any(|p| line.starts_with(p))
}

/// The steps a clean run of `args` reports.
fn steps_of(sb: &Sandbox, args: &[&str]) -> usize {
    let run = sb.run(args);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    run.stderr().lines().filter(|l| is_step(l)).count()
}

/// After a crash, one `up` makes the lab whole with an empty re-plan, and `down`
/// leaves nothing.
async fn recovers(sb: &Sandbox, lab: &str, what: &str) {
    tokio::task::block_in_place(|| {
        let up = sb.run(&["up", "--yes"]);
        assert_eq!(
            up.code(),
            0,
            "{what}: up after the crash\n{}",
            up.transcript()
        );
        let plan = sb.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.code(), 0, "{what}: converged\n{}", plan.transcript());
    });
    assert_eq!(
        owned_count(lab).await,
        WHOLE_LAB,
        "{what}: a clean run's inventory"
    );
    tokio::task::block_in_place(|| {
        let down = sb.run(&["down", "--yes", "--delete-captures"]);
        assert_eq!(down.code(), 0, "{what}: down\n{}", down.transcript());
    });
    assert_eq!(owned_count(lab).await, 0, "{what}: nothing left");
}

#[tokio::test(flavor = "multi_thread")]
async fn up_killed_inside_and_between_stages_converges_on_the_next_up() {
    let lab = unique_lab("kill-up");
    let sb = Sandbox::with_localstack();
    sb.write("topology.yaml", &default_lab(&lab));
    let steps = tokio::task::block_in_place(|| {
        let n = steps_of(&sb, &["up", "--yes"]);
        assert_eq!(sb.run(&["down", "--yes"]).code(), 0);
        n
    });
    assert!(steps >= 19, "a clean up reports its steps: {steps}");
    // Spread over the run: inside stages and between them, first and last included.
    let points: Vec<usize> = (1..steps).step_by(3).chain([steps - 1]).collect();
    for k in points {
        let killed = tokio::task::block_in_place(|| kill_after(&sb, &["up", "--yes"], k));
        assert!(killed, "up was killed after step {k}");
        recovers(&sb, &lab, &format!("up killed after step {k}")).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn down_killed_between_and_inside_stages_is_finished_by_the_next_run() {
    let lab = unique_lab("kill-down");
    let sb = Sandbox::with_localstack();
    sb.write("topology.yaml", &default_lab(&lab));
    let steps = tokio::task::block_in_place(|| {
        assert_eq!(sb.run(&["up", "--yes"]).code(), 0);
        steps_of(&sb, &["down", "--yes"])
    });
    assert!(steps >= 19, "a clean down reports its steps: {steps}");
    // Spread over the run: inside stages and between them.
    for k in (1..steps).step_by(4) {
        tokio::task::block_in_place(|| {
            let up = sb.run(&["up", "--yes"]);
            assert_eq!(up.code(), 0, "{}", up.transcript());
            assert!(
                kill_after(&sb, &["down", "--yes"], k),
                "down was killed after step {k}"
            );
        });
        recovers(&sb, &lab, &format!("down killed after step {k}")).await;
    }
}
