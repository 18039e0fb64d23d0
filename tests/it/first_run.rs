//! What a newcomer meets on a first run: the hints name the command that works next,
//! `up --wait` keeps the outputs and waits as long as it says, a missing credential or
//! a wrong region is said plainly, and logs carry no colour into files.

use std::time::{Duration, Instant};

use crate::harness::{Run, Sandbox, repo, unique_lab};
use crate::pty::Terminal;
use crate::reconcile::{AMI, default_lab};

fn default_topology() -> String {
    std::fs::read_to_string(repo().join("topology.yaml")).expect("topology.yaml")
}

fn run(cmd: &mut std::process::Command) -> Run {
    Run(cmd.output().expect("labctl runs"))
}

/// A lab whose topology is not `./topology.yaml`: every hint must carry `-f`, the
/// progress shows each step's time once, `up --wait` that runs out still prints the
/// outputs after waiting the whole time, and `down` names the labnet upload as `up`
/// and `plan` did.
#[test]
fn a_lab_from_another_file_round_trip() {
    let lab = unique_lab("walk");
    let sb = Sandbox::with_localstack();
    std::fs::create_dir(sb.path().join("sub")).expect("mkdir");
    sb.write("sub/lab.yaml", &default_lab(&lab));

    // What `graph` lists is what `plan` creates, labnet's upload included.
    let graph = sb.run(&["-f", "sub/lab.yaml", "graph"]);
    assert_eq!(graph.code(), 0, "{}", graph.transcript());
    assert!(
        graph
            .stdout()
            .contains("+ artifact/labnet  (artifacts/labnet/(digest known at plan))"),
        "{}",
        graph.transcript()
    );
    let listed = graph
        .stdout()
        .lines()
        .filter(|l| l.starts_with("+ "))
        .count();
    let plan = sb.run(&["-f", "sub/lab.yaml", "plan"]);
    assert_eq!(plan.code(), 0, "{}", plan.transcript());
    assert!(
        plan.stdout()
            .contains(&format!("Plan: {listed} to add, 0 to change")),
        "graph listed {listed}:\n{}",
        plan.transcript()
    );

    // `up` in a terminal: live spinners, each finished line with its time once.
    let mut cmd = sb.labctl(&["-f", "sub/lab.yaml", "up", "--yes"]);
    cmd.env_remove("NO_COLOR");
    let _down = Teardown(&sb);
    let term = Terminal::spawn(&cmd, 160, 60);
    let code = term.wait(Duration::from_secs(600));
    let shown = term.transcript();
    assert_eq!(code, 0, "{shown}");
    // A finished line ends `(0.3s)`; the spinner's own `0s` must not follow it.
    assert!(shown.contains("create vpc ["), "{shown}");
    for (at, _) in shown.match_indices("s) ") {
        let next = shown[at + 3..].chars().next();
        assert!(
            !next.is_some_and(|c| c.is_ascii_digit()),
            "the time is shown twice: {:?}",
            &shown[at.saturating_sub(60)..(at + 10).min(shown.len())]
        );
    }
    assert!(
        shown.contains("Take it down with `labctl -f sub/lab.yaml down`."),
        "{shown}"
    );

    // LocalStack runs no user-data, so no report ever comes: the wait runs out.
    let wait = Duration::from_secs(10);
    let started = Instant::now();
    let waited = sb.run(&["-f", "sub/lab.yaml", "up", "--json", "--wait", "10s"]);
    let took = started.elapsed();
    assert_eq!(waited.code(), 1, "{}", waited.transcript());
    assert!(
        took >= wait,
        "returned after {took:?}, before the {wait:?} it promised"
    );
    let doc: serde_json::Value = serde_json::from_str(&waited.stdout())
        .unwrap_or_else(|e| panic!("the outputs as JSON ({e}):\n{}", waited.transcript()));
    let instances = doc["instances"].as_array().expect("instances");
    assert_eq!(instances.len(), 3, "{doc}");
    assert!(
        waited
            .stderr()
            .contains("no readiness report from client-1, client-2, server after 10s"),
        "{}",
        waited.transcript()
    );

    // `down` names the upload as `up` did.
    let down = sb.run(&["-f", "sub/lab.yaml", "down", "--yes"]);
    assert_eq!(down.code(), 0, "{}", down.transcript());
    let all = down.transcript();
    assert!(all.contains("artifact/labnet"), "{all}");
    assert!(!all.contains("artifact/labnet-"), "{all}");
}

/// Runs `down --yes -f sub/lab.yaml` when the test ends, passed or not.
struct Teardown<'a>(&'a Sandbox);

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["-f", "sub/lab.yaml", "down", "--yes"]);
    }
}

/// `--profile` wins over credentials in the environment, as in the AWS CLI. LocalStack
/// takes a 12-digit access key id as the account id, so the bucket's name, which
/// holds the account, shows whose credentials signed the call.
#[test]
fn an_explicit_profile_beats_environment_credentials() {
    let sb = Sandbox::with_localstack();
    sb.write("topology.yaml", &default_lab("prof"));
    sb.write(
        "aws-config",
        "[profile lab]\naws_access_key_id = 222222222222\naws_secret_access_key = test\n",
    );
    let bucket = |account: &str| format!("prof-captures-{account}-eu-north-1");
    let mut cmd = sb.labctl(&["--profile", "lab", "user-data", "server"]);
    cmd.env("AWS_ACCESS_KEY_ID", "111111111111");
    let with_profile = run(&mut cmd);
    assert_eq!(with_profile.code(), 0, "{}", with_profile.transcript());
    assert!(
        with_profile.stdout().contains(&bucket("222222222222")),
        "{}",
        with_profile.transcript()
    );
    let mut cmd = sb.labctl(&["user-data", "server"]);
    cmd.env("AWS_ACCESS_KEY_ID", "111111111111");
    let from_env = run(&mut cmd);
    assert_eq!(from_env.code(), 0, "{}", from_env.transcript());
    assert!(
        from_env.stdout().contains(&bucket("111111111111")),
        "{}",
        from_env.transcript()
    );
}

/// No credentials anywhere: one line that says so and how to get some, whether the
/// instance metadata service is disabled or merely absent (a loopback port that
/// refuses, standing in for a laptop that has none).
#[test]
fn missing_credentials_are_named_as_such() {
    let sb = Sandbox::new();
    sb.write("topology.yaml", &default_lab("nocreds"));
    for imds in [
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9"),
    ] {
        let mut cmd = sb.labctl(&["status"]);
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .env(imds.0, imds.1);
        let out = run(&mut cmd);
        assert_eq!(out.code(), 1, "{}", out.transcript());
        let stderr = out.stderr();
        assert!(
            stderr.starts_with("error: no AWS credentials found: set AWS_PROFILE"),
            "{imds:?}: {}",
            out.transcript()
        );
        assert!(stderr.contains("aws sso login"), "{}", out.transcript());
        assert_eq!(stderr.lines().count(), 1, "{imds:?}: {}", out.transcript());
        for noise in ["cannot reach", "IMDS", "dispatch failure"] {
            assert!(!stderr.contains(noise), "{imds:?}: {}", out.transcript());
        }
    }
}

/// Logs go through the same colour decision as everything else: none into a pipe
/// (even without NO_COLOR), some when forced, and in the `warning:` voice.
#[test]
fn logs_into_a_pipe_carry_no_colour() {
    let sb = Sandbox::new(); // unreachable endpoint: the command fails after logging
    sb.write("topology.yaml", &default_lab("logs"));
    // Retries of the unreachable endpoint, made quick.
    let labctl = |args: &[&str]| {
        let mut cmd = sb.labctl(args);
        cmd.env_remove("NO_COLOR").env("LABCTL_PATIENCE", "0.01");
        cmd
    };
    let mut cmd = labctl(&["-v", "status"]);
    let plain = run(&mut cmd);
    assert!(
        plain.stderr().contains("info: AWS configuration loaded"),
        "{}",
        plain.transcript()
    );
    assert!(!plain.stderr().contains('\x1b'), "{}", plain.transcript());
    assert!(!plain.stderr().contains("INFO"), "{}", plain.transcript());

    let mut cmd = labctl(&["-v", "status"]);
    cmd.env("CLICOLOR_FORCE", "1");
    let forced = run(&mut cmd);
    assert!(forced.stderr().contains('\x1b'), "{}", forced.transcript());

    // A warning from the log has the same word as the printer's.
    let mut cmd = labctl(&["status"]);
    cmd.env("LABCTL_LOG", "labctl=info");
    let logged = run(&mut cmd);
    assert!(
        logged
            .stderr()
            .lines()
            .all(|l| l.starts_with("info: ") || l.starts_with("error: ")),
        "{}",
        logged.transcript()
    );
}

#[test]
fn forward_refuses_port_zero_before_any_call() {
    let sb = Sandbox::new();
    sb.write("topology.yaml", &default_topology());
    let out = sb.run(&["forward", "server", "0"]);
    assert_eq!(out.code(), 1, "{}", out.transcript());
    assert!(
        out.stderr()
            .contains("invalid value '0' for '<REMOTE_PORT>': 0 is not in 1..=65535"),
        "{}",
        out.transcript()
    );
}

/// `validate` checks a region given beside the file as `plan` does, and names where
/// it came from.
#[test]
fn validate_checks_the_region_it_is_given() {
    let sb = Sandbox::new();
    sb.write("topology.yaml", &default_topology());
    let flag = sb.run(&["--region", "us-east-1", "validate"]);
    assert_eq!(flag.code(), 1, "{}", flag.transcript());
    assert!(
        flag.stderr()
            .contains("--region us-east-1 contradicts the topology's `region: eu-north-1`"),
        "{}",
        flag.transcript()
    );
    let mut cmd = sb.labctl(&["validate"]);
    cmd.env("LABCTL_REGION", "us-east-1");
    let env = run(&mut cmd);
    assert_eq!(env.code(), 1, "{}", env.transcript());
    assert!(
        env.stderr()
            .contains("LABCTL_REGION us-east-1 contradicts the topology's `region: eu-north-1`"),
        "{}",
        env.transcript()
    );

    sb.write(
        "topology.yaml",
        &default_topology().replace("region: eu-north-1\n", ""),
    );
    for command in ["validate", "plan", "graph"] {
        let out = sb.run(&["--region", "nowhere-1", command]);
        assert_eq!(out.code(), 1, "{}", out.transcript());
        assert!(
            out.stderr()
                .contains("--region: `nowhere-1` is not an AWS region name"),
            "{command}: {}",
            out.transcript()
        );
    }
    assert_eq!(sb.run(&["--region", "us-east-1", "validate"]).code(), 0);
}

/// A name that `count` expanded suggests every copy, not the closest one.
#[test]
fn user_data_of_a_counted_name_lists_each_copy() {
    let sb = Sandbox::new();
    sb.write(
        "topology.yaml",
        &default_topology().replace("image: ubuntu-24.04", &format!("image: {AMI}")),
    );
    let out = sb.run(&["user-data", "client", "--offline"]);
    assert_eq!(out.code(), 1, "{}", out.transcript());
    assert!(
        out.stderr()
            .contains("`client` has 2 copies: name one of `client-1`, `client-2`"),
        "{}",
        out.transcript()
    );
}
