//! `labctl exec`: which instances a target names, what SendCommand carries, and how
//! each instance's output and exit code come back.
//!
//! LocalStack records SendCommand but runs nothing and has no agent status, so the
//! output, exit codes and agent checks are tested against the SSM test double
//! (`AWS_ENDPOINT_URL_SSM`), with EC2 and STS still on LocalStack. What was sent is read
//! back with the SDK directly, never through labctl's own code.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::double::Double;
use crate::harness::{Run, Sandbox, Teardown, sdk_config};
use crate::reconcile::{REGION, instances, lab_sandbox, ok, tag};

/// `labctl exec <args>`, with SSM at the double when one is given.
fn exec(sb: &Sandbox, double: Option<&Double>, args: &[&str]) -> Run {
    let mut cmd = sb.labctl(&[&["exec"], args].concat());
    if let Some(d) = double {
        cmd.env("AWS_ENDPOINT_URL_SSM", d.endpoint());
    }
    Run(cmd.output().expect("labctl runs"))
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Instance name → id, read from EC2.
pub(crate) async fn ids(lab: &str) -> BTreeMap<String, String> {
    instances(lab)
        .await
        .iter()
        .filter_map(|i| {
            let name = tag(i.tags(), "labctl:address")?
                .strip_prefix("instance/")?
                .to_owned();
            Some((name, i.instance_id()?.to_owned()))
        })
        .collect()
}

fn json_rows(run: &Run) -> Vec<Value> {
    let value: Value = serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("JSON on stdout ({e}):\n{}", run.transcript()));
    value["instances"]
        .as_array()
        .expect("an array of instances")
        .clone()
}

fn field<'v>(row: &'v Value, key: &str) -> &'v str {
    row[key].as_str().unwrap_or_default()
}

/// Every command the double received (`ListCommands`).
async fn commands_on_double(double: &Double) -> Vec<aws_sdk_ssm::types::Command> {
    double
        .ssm()
        .await
        .list_commands()
        .send()
        .await
        .expect("ListCommands on the double")
        .commands()
        .to_vec()
}

/// Each command: its `commands` line → the instance ids.
fn by_line(commands: &[aws_sdk_ssm::types::Command]) -> BTreeMap<String, Vec<String>> {
    commands
        .iter()
        .map(|c| {
            let line = c
                .parameters()
                .and_then(|p| p.get("commands"))
                .map(|v| v.join("\n"))
                .unwrap_or_default();
            (line, c.instance_ids().to_vec())
        })
        .collect()
}

/// Each command the double received: its `commands` line → the instance ids.
async fn sent_to_double(double: &Double) -> BTreeMap<String, Vec<String>> {
    by_line(&commands_on_double(double).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sends_run_shell_script_to_the_instances_a_target_names() {
    let (sb, lab) = lab_sandbox("exls");
    let _down = Teardown::new(&sb, &[]);
    blocking(|| ok(&sb, &["up", "--yes"]));
    let ids = ids(&lab).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk_config(REGION).await);

    // LocalStack answers DescribeInstanceInformation with HTTP 501: labctl says it
    // cannot check the agents, and goes on.
    let run = blocking(|| exec(&sb, None, &["server", "--", "echo", "a b"]));
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let err = run.stderr();
    assert!(
        err.contains("DescribeInstanceInformation is not implemented by this SSM endpoint"),
        "{err}"
    );
    assert!(
        err.contains(&format!("── server ({}): exit 0", ids["server"])),
        "{err}"
    );

    let cases: [(&str, &[&str]); 3] = [
        ("server", &["server"]),
        ("client", &["client-1", "client-2"]),
        ("all", &["client-1", "client-2", "server"]),
    ];
    for (target, names) in cases {
        let marker = format!("{lab}-{target}");
        let run = blocking(|| exec(&sb, None, &[target, "--json", "--", "echo", "a b", &marker]));
        assert_eq!(run.code(), 0, "{}", run.transcript());
        let rows = json_rows(&run);
        let shown: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (field(r, "instance"), field(r, "id")))
            .collect();
        let expected: Vec<(&str, &str)> = names.iter().map(|n| (*n, ids[*n].as_str())).collect();
        assert_eq!(shown, expected, "`{target}` in name order");
        let command_id = field(&rows[0], "command_id");
        assert!(rows.iter().all(|r| field(r, "command_id") == command_id));

        let listed = ssm
            .list_commands()
            .command_id(command_id)
            .send()
            .await
            .expect("ListCommands");
        let [command] = listed.commands() else {
            panic!("one command {command_id}: {listed:?}");
        };
        assert_eq!(command.document_name(), Some("AWS-RunShellScript"));
        assert_eq!(command.comment(), Some("labctl exec"));
        let params = command.parameters().expect("parameters");
        assert_eq!(params["commands"], [format!("echo 'a b' {marker}")]);
        assert_eq!(params["executionTimeout"], ["600"]);
        assert_eq!(command.timeout_seconds(), Some(600));
        // LocalStack 4.13.1 adds every instance of the region to the InstanceIds it
        // records, so here they can only include the targets; the double records
        // exactly what was sent, and the next test checks that.
        let recorded = command.instance_ids();
        for n in names {
            assert!(
                recorded.contains(&ids[*n]),
                "{n} in the command to `{target}`"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_shows_each_instances_output_and_exit_code() {
    let (sb, lab) = lab_sandbox("exrun");
    let _down = Teardown::new(&sb, &[]);
    blocking(|| ok(&sb, &["up", "--yes"]));
    let ids = ids(&lab).await;
    // Invocations unknown for a while after SendCommand, as in SSM: labctl retries.
    let double = Double::start(&["--invocation-delay", "400"]);
    let d = Some(&double);

    let script = "echo out; echo err >&2; exit 3";
    let run = blocking(|| exec(&sb, d, &["server", "--", "sh", "-c", script]));
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert_eq!(run.stdout(), "out\n");
    let err = run.stderr();
    assert!(
        err.contains(&format!("── server ({}): exit 3\nerr\n", ids["server"])),
        "{err}"
    );
    assert!(
        err.contains("the command failed on 1 of 1 instance(s): server (exit 3)"),
        "{err}"
    );

    let run = blocking(|| exec(&sb, d, &["server", "--", "echo", "a b"]));
    assert_eq!(run.code(), 0, "{}", run.transcript());
    assert_eq!(run.stdout(), "a b\n");

    // Several instances: each one's output after its own header, in name order.
    let run = blocking(|| {
        exec(
            &sb,
            d,
            &[
                "client",
                "--",
                "sh",
                "-c",
                "printf $AWS_SSM_INSTANCE_ID; echo e >&2",
            ],
        )
    });
    assert_eq!(run.code(), 0, "{}", run.transcript());
    assert_eq!(
        run.stdout(),
        format!("{}\n{}\n", ids["client-1"], ids["client-2"])
    );
    assert_eq!(
        run.stderr(),
        format!(
            "── client-1 ({}): exit 0\ne\n── client-2 ({}): exit 0\ne\n",
            ids["client-1"], ids["client-2"]
        )
    );

    // JSON, with one instance failing: the others still run, and labctl exits 1.
    let fail_on_client_2 = format!(
        "test \"$AWS_SSM_INSTANCE_ID\" != {} || exit 7; printf x",
        ids["client-2"]
    );
    let run = blocking(|| {
        exec(
            &sb,
            d,
            &["all", "--json", "--", "sh", "-c", &fail_on_client_2],
        )
    });
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let rows = json_rows(&run);
    let got: Vec<(String, String, Value, String)> = rows
        .iter()
        .map(|r| {
            (
                field(r, "instance").to_owned(),
                field(r, "status").to_owned(),
                r["exit_code"].clone(),
                field(r, "stdout").to_owned(),
            )
        })
        .collect();
    let row =
        |n: &str, s: &str, c: i64, o: &str| (n.to_owned(), s.to_owned(), c.into(), o.to_owned());
    assert_eq!(
        got,
        [
            row("client-1", "Success", 0, "x"),
            row("client-2", "Failed", 7, ""),
            row("server", "Success", 0, "x"),
        ]
    );
    assert_eq!(field(&rows[1], "id"), ids["client-2"]);
    assert!(
        run.stderr()
            .contains("the command failed on 1 of 3 instance(s): client-2 (exit 7)"),
        "{}",
        run.transcript()
    );

    // Output beyond what SSM keeps is reported as truncated.
    let big = "head -c 30000 /dev/zero | tr '\\0' a; head -c 9000 /dev/zero | tr '\\0' b >&2";
    let run = blocking(|| exec(&sb, d, &["server", "--", "sh", "-c", big]));
    assert_eq!(run.code(), 0, "{}", run.transcript());
    assert_eq!(run.stdout(), "a".repeat(24_000));
    let err = run.stderr();
    assert!(err.contains(&"b".repeat(8_000)), "{}", err.len());
    assert!(
        err.contains("server: stdout was truncated: SSM keeps only its first 24000 characters"),
        "{}",
        &err[err.len().saturating_sub(400)..]
    );
    assert!(
        err.contains("server: stderr was truncated: SSM keeps only its first 8000 characters"),
        "{}",
        &err[err.len().saturating_sub(400)..]
    );

    // A command that outlives --timeout.
    let run = blocking(|| exec(&sb, d, &["server", "--timeout", "1", "--", "sleep", "20"]));
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr().contains(&format!(
            "── server ({}): timed out after 1s (TimedOut)",
            ids["server"]
        )),
        "{}",
        run.transcript()
    );

    // What the double received: exactly these instances, these lines, these timeouts.
    let commands = commands_on_double(&double).await;
    let sent = by_line(&commands);
    let id = |n: &str| ids[n].clone();
    assert_eq!(sent[&format!("sh -c '{script}'")], [id("server")]);
    assert_eq!(sent["echo 'a b'"], [id("server")]);
    assert_eq!(
        sent["sh -c 'printf $AWS_SSM_INSTANCE_ID; echo e >&2'"],
        [id("client-1"), id("client-2")]
    );
    let quoted = format!("sh -c '{}'", fail_on_client_2.replace('\'', r"'\''"));
    assert_eq!(
        sent[&quoted],
        [id("client-1"), id("client-2"), id("server")]
    );
    assert_eq!(sent.len(), 6, "{sent:?}");
    let timed = commands
        .iter()
        .find(|c| {
            c.parameters().and_then(|p| p.get("commands")) == Some(&vec!["sleep 20".to_owned()])
        })
        .expect("the sleep command");
    assert_eq!(
        timed.parameters().and_then(|p| p.get("executionTimeout")),
        Some(&vec!["1".to_owned()])
    );
    assert_eq!(
        timed.timeout_seconds(),
        Some(30),
        "SSM's least TimeoutSeconds"
    );
    assert!(
        commands
            .iter()
            .all(|c| c.document_name() == Some("AWS-RunShellScript")
                && c.comment() == Some("labctl exec"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sends_nothing_to_offline_agents_or_stopped_instances() {
    let (sb, lab) = lab_sandbox("exoff");
    let _down = Teardown::new(&sb, &[]);
    blocking(|| ok(&sb, &["up", "--yes"]));
    let ids = ids(&lab).await;
    let double = Double::start(&[
        "--unregistered-instance",
        &ids["client-1"],
        "--offline-instance",
        &ids["client-2"],
    ]);
    let d = Some(&double);

    let run = blocking(|| exec(&sb, d, &["client", "--", "true"]));
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let err = run.stderr();
    assert!(
        err.contains("cannot reach 2 of the 2 instances through SSM"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "client-1 ({}): its SSM agent has not registered with Systems Manager",
            ids["client-1"]
        )),
        "{err}"
    );
    assert!(err.contains("AmazonSSMManagedInstanceCore"), "{err}");
    assert!(err.contains("`labctl status`"), "{err}");
    assert!(
        err.contains(&format!(
            "client-2 ({}): its SSM agent lost its connection (PingStatus ConnectionLost",
            ids["client-2"]
        )),
        "{err}"
    );
    let run = blocking(|| exec(&sb, d, &["client-2", "--", "true"]));
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr().contains("ConnectionLost"),
        "{}",
        run.transcript()
    );
    assert!(
        sent_to_double(&double).await.is_empty(),
        "no command is sent while an agent is offline"
    );

    // The online one is unaffected.
    let run = blocking(|| exec(&sb, d, &["server", "--", "true"]));
    assert_eq!(run.code(), 0, "{}", run.transcript());

    // A stopped instance is named, with what to do, and nothing is sent to any target.
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(REGION).await);
    ec2.stop_instances()
        .instance_ids(&ids["server"])
        .send()
        .await
        .expect("stop");
    for target in ["server", "all"] {
        let run = blocking(|| exec(&sb, d, &[target, "--", "true"]));
        assert_eq!(run.code(), 1, "{}", run.transcript());
        let err = run.stderr();
        assert!(
            err.contains(&format!("instance server ({}) is stop", ids["server"])),
            "{err}"
        );
        assert!(err.contains("`labctl up` starts"), "{err}");
    }
    assert_eq!(
        sent_to_double(&double)
            .await
            .into_values()
            .collect::<Vec<_>>(),
        [vec![ids["server"].clone()]],
        "only the command to the online, running server was sent"
    );
}

#[test]
fn exec_names_unknown_targets_and_instances_not_created_yet() {
    let (sb, lab) = lab_sandbox("exname");
    // Every case fails before any SSM call: no double to contact.
    let d = None;
    let run = exec(&sb, d, &["sever", "--", "true"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let err = run.stderr();
    assert!(
        err.contains("no instance or role named `sever`; did you mean `server`?"),
        "{err}"
    );
    assert!(
        err.contains("instances: `client-1`, `client-2`, `server`; roles: `server`, `client`"),
        "{err}"
    );
    for (target, says) in [
        (
            "client-2",
            "instance `client-2` is in the topology but has no instance yet; run `labctl up`",
        ),
        (
            "client",
            "role `client` has no instances yet; run `labctl up`",
        ),
        (
            "all",
            &*format!("lab `{lab}` has no instances; run `labctl up`"),
        ),
    ] {
        let run = exec(&sb, d, &[target, "--", "true"]);
        assert_eq!(run.code(), 1, "{}", run.transcript());
        assert!(run.stderr().contains(says), "{}", run.transcript());
    }
    // A command is required, after `--`.
    let run = exec(&sb, d, &["server"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(run.stderr().contains("<COMMAND>"), "{}", run.transcript());
}
