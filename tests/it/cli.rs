//! The commands that need no AWS: validate, schema, graph; exit codes and usage errors.

use crate::harness::{Sandbox, repo};

fn fixture(path: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures").join(path)).expect("fixture")
}

#[test]
fn validate_accepts_the_default_lab() {
    let sb = Sandbox::new();
    let topology = std::fs::read_to_string(repo().join("topology.yaml")).expect("topology.yaml");
    sb.write("topology.yaml", &topology);
    let run = sb.run(&["validate"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    insta::assert_snapshot!(run.transcript());
}

#[test]
fn validate_reports_every_problem_and_exits_1() {
    let sb = Sandbox::new();
    sb.write("lab.yaml", &fixture("invalid/many-problems.yaml"));
    let run = sb.run(&["validate", "-f", "lab.yaml"]);
    assert_eq!(run.code(), 1);
    assert!(run.stdout().is_empty(), "diagnostics go to stderr");
    insta::assert_snapshot!(run.transcript());
}

#[test]
fn validate_json_lists_diagnostics_with_positions() {
    let sb = Sandbox::new();
    sb.write("topology.yaml", &fixture("invalid/unknown-role.yaml"));
    let run = sb.run(&["validate", "--json"]);
    assert_eq!(run.code(), 1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout()).expect("JSON on stdout");
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["errors"], 2);
    let first = &doc["diagnostics"][1];
    assert_eq!(first["pos"]["line"], 12);
    assert_eq!(first["pos"]["col"], 43);
    assert_eq!(first["hint"], "did you mean `client`?");
}

#[test]
fn missing_file_is_one_clear_error() {
    let sb = Sandbox::new();
    let run = sb.run(&["validate", "-f", "nope.yaml"]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr().contains("cannot read topology file nope.yaml"),
        "{}",
        run.transcript()
    );
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let sb = Sandbox::new();
    assert_eq!(sb.run(&["--no-such-flag"]).code(), 1);
    assert_eq!(sb.run(&["frobnicate"]).code(), 1);
    assert_eq!(sb.run(&["--my-ip", "not-an-ip", "graph"]).code(), 1);
    let help = sb.run(&["--help"]);
    assert_eq!(help.code(), 0);
    assert!(
        help.stdout().contains("Exit status"),
        "{}",
        help.transcript()
    );
}

#[test]
fn committed_schema_matches_labctl_schema() {
    let sb = Sandbox::new();
    let run = sb.run(&["schema"]);
    assert_eq!(run.code(), 0);
    let committed =
        std::fs::read_to_string(repo().join("topology.schema.json")).expect("topology.schema.json");
    assert_eq!(
        run.stdout(),
        committed,
        "topology.schema.json is stale: run `cargo run -q -- schema > topology.schema.json`"
    );
}

#[test]
fn graph_of_the_default_lab() {
    let sb = Sandbox::new();
    let topology = std::fs::read_to_string(repo().join("topology.yaml")).expect("topology.yaml");
    sb.write("topology.yaml", &topology);
    let run = sb.run(&["graph"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    insta::assert_snapshot!(run.stdout());
}

#[test]
fn graph_resolves_my_ip_from_the_environment_without_a_lookup() {
    let sb = Sandbox::new();
    sb.write("topology.yaml", &fixture("valid/everything.yaml"));
    let mut cmd = sb.labctl(&["graph", "--json"]);
    cmd.env("LABCTL_MY_IP", "52.94.76.23");
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rules = doc["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["address"] == "sg-rules/server")
        .expect("server rules");
    let peers: Vec<&serde_json::Value> = rules["spec"]["ingress"]
        .as_array()
        .expect("ingress")
        .iter()
        .map(|p| &p["peer"])
        .collect();
    assert!(
        peers.iter().any(|p| p["value"] == "52.94.76.23/32"),
        "{peers:?}"
    );
    assert!(!peers.iter().any(|p| p["type"] == "my-ip"), "{peers:?}");
}

#[test]
fn region_flag_contradicting_the_topology_is_an_error() {
    let sb = Sandbox::new();
    let topology = std::fs::read_to_string(repo().join("topology.yaml")).expect("topology.yaml");
    sb.write("topology.yaml", &topology);
    let run = sb.run(&["graph", "--region", "us-east-1"]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr()
            .contains("--region us-east-1 contradicts the topology's `region: eu-north-1`"),
        "{}",
        run.transcript()
    );
    assert_eq!(sb.run(&["graph", "--region", "eu-north-1"]).code(), 0);
}

/// A region of another partition from the environment is refused as the topology's
/// own would be, before any call (this sandbox's endpoint is unreachable).
#[test]
fn a_region_of_another_partition_is_refused_before_any_call() {
    let sb = Sandbox::new();
    let topology = std::fs::read_to_string(repo().join("topology.yaml")).expect("topology.yaml");
    sb.write(
        "topology.yaml",
        &topology.replace("region: eu-north-1\n", ""),
    );
    for region in ["cn-north-1", "us-gov-west-1"] {
        let mut cmd = sb.labctl(&["status"]);
        cmd.env("AWS_REGION", region);
        let run = crate::harness::Run(cmd.output().expect("labctl runs"));
        assert_eq!(run.code(), 1, "{}", run.transcript());
        assert!(
            run.stderr()
                .contains(&format!("region `{region}` is in the aws-")),
            "{}",
            run.transcript()
        );
        assert!(!run.stderr().contains("connect"), "{}", run.transcript());
    }
}

#[test]
fn an_invalid_topology_stops_before_any_aws_call() {
    // The endpoint in this sandbox is unreachable: reaching AWS would print a
    // connection error instead of the topology's problems.
    let sb = Sandbox::new();
    sb.write("topology.yaml", &fixture("invalid/graviton.yaml"));
    let run = sb.run(&["doctor"]);
    assert_eq!(run.code(), 1);
    assert!(run.stderr().contains("Graviton"), "{}", run.transcript());
    assert!(
        !run.stderr().contains("cannot reach"),
        "{}",
        run.transcript()
    );
}

#[test]
fn user_data_prints_what_an_instance_boots_with() {
    let sb = Sandbox::new();
    let topology = std::fs::read_to_string(repo().join("topology.yaml")).expect("topology.yaml");
    sb.write("topology.yaml", &topology);
    let first = sb.run(&["user-data", "client-2", "--offline"]);
    assert_eq!(first.code(), 0, "{}", first.transcript());
    let text = first.stdout();
    assert!(text.starts_with("#cloud-config\n"), "{text}");
    assert!(text.contains("hostname: client-2\n"), "{text}");
    assert!(text.contains("fqdn: client-2.lab.internal\n"), "{text}");
    assert!(text.contains("OnBootSec=235min"), "the 4h lifetime: {text}");
    assert!(
        text.contains("REGION=\"eu-north-1\""),
        "the topology's region: {text}"
    );
    assert!(
        first
            .stderr()
            .contains("`{account}` stands for your AWS account id"),
        "{}",
        first.transcript()
    );
    assert_eq!(
        sb.run(&["user-data", "client-2", "--offline"]).stdout(),
        text,
        "rendering is deterministic"
    );
    let server = sb.run(&["user-data", "server", "--offline"]).stdout();
    assert!(
        server.contains("SERVICES=\"alnum-server echo-server intro-server tcp-server udp-server\""),
        "{server}"
    );

    let unknown = sb.run(&["user-data", "sever"]);
    assert_eq!(unknown.code(), 1);
    assert!(
        unknown.stderr().contains("no instance `sever`"),
        "{}",
        unknown.transcript()
    );
    assert!(
        unknown.stderr().contains("did you mean `server`?"),
        "{}",
        unknown.transcript()
    );

    // Without --offline it asks AWS for the account id; unreachable, it says so and
    // how to do without.
    let unreachable = sb.run(&["user-data", "server"]);
    assert_eq!(unreachable.code(), 1, "{}", unreachable.transcript());
    assert!(
        unreachable
            .stderr()
            .contains("`--offline` renders without it"),
        "{}",
        unreachable.transcript()
    );
    assert_eq!(unreachable.stdout(), "");
}

/// The size limit and the alias-bomb guard say which of them stopped a file: 12 MB of
/// plain keys is too large, and only aliases that multiply are called a bomb.
#[test]
fn validate_tells_a_file_too_large_from_an_alias_bomb() {
    let sb = Sandbox::new();
    let mut big = String::new();
    let mut i = 0;
    while big.len() < 12 * 1024 * 1024 {
        big.push_str(&format!("key{i}: plain value {i}\n"));
        i += 1;
    }
    sb.write("big.yaml", &big);
    let run = sb.run(&["validate", "-f", "big.yaml"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let expected = format!(
        "big.yaml:1:1: error: the file is too large: {:.1} MiB ({} bytes), over the 1 MiB limit \
         for a topology",
        big.len() as f64 / 1_048_576.0,
        big.len()
    );
    assert!(run.stderr().contains(&expected), "{}", run.transcript());
    assert!(!run.stderr().contains("alias"), "{}", run.transcript());

    sb.write("bomb.yaml", &fixture("invalid/alias-bomb.yaml"));
    let run = sb.run(&["validate", "-f", "bomb.yaml"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr()
            .contains("bomb.yaml:7:8: error: YAML anchors and aliases expand beyond"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stderr().contains("the file looks like an alias bomb"),
        "{}",
        run.transcript()
    );
    assert!(!run.stderr().contains("too large"), "{}", run.transcript());
}

/// `lifetime:` reads the duration grammar every flag reads; what it shows reads back.
#[test]
fn validate_reads_lifetimes_as_durations_and_warns_without_one() {
    let sb = Sandbox::new();
    let default = std::fs::read_to_string(repo().join("topology.yaml")).expect("topology.yaml");
    assert!(
        default.contains("\nlifetime: 4h "),
        "the default lab sets a lifetime"
    );
    let with =
        |lifetime: &str| default.replace("\nlifetime: 4h ", &format!("\nlifetime: {lifetime} "));

    sb.write("lab.yaml", &with("90s"));
    let run = sb.run(&["validate", "-f", "lab.yaml"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr()
            .contains("error: lifetime 1m30s is out of range (10m to 30d)"),
        "{}",
        run.transcript()
    );
    assert!(
        !run.stderr().contains("unknown unit"),
        "{}",
        run.transcript()
    );

    sb.write("lab.yaml", &with("0h"));
    let run = sb.run(&["validate", "-f", "lab.yaml"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr()
            .contains("error: a zero lifetime would stop every instance as soon as it boots"),
        "{}",
        run.transcript()
    );

    sb.write("lab.yaml", &with("4h30s"));
    let run = sb.run(&["validate", "-f", "lab.yaml"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr()
            .contains("lifetime 4h30s is not a whole number of minutes")
            && run.stderr().contains("write `4h` or `4h1m`"),
        "{}",
        run.transcript()
    );

    sb.write("lab.yaml", &with("1h30m"));
    let run = sb.run(&["validate", "-f", "lab.yaml"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());

    let without: String = default
        .lines()
        .filter(|l| !l.starts_with("lifetime:"))
        .map(|l| format!("{l}\n"))
        .collect();
    sb.write("lab.yaml", &without);
    let run = sb.run(&["validate", "-f", "lab.yaml"]);
    assert_eq!(
        run.code(),
        0,
        "a warning, not an error: {}",
        run.transcript()
    );
    let first_key = without
        .lines()
        .position(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("a key")
        + 1;
    assert!(
        run.stderr().contains(&format!(
            "lab.yaml:{first_key}:1: warning: no `lifetime`: nothing stops the instances"
        )),
        "{}",
        run.transcript()
    );
    assert!(
        run.stderr().contains("add `lifetime: 4h`"),
        "{}",
        run.transcript()
    );
}

#[test]
fn validate_suggests_short_keys_and_takes_only_yaml_1_2_booleans() {
    let sb = Sandbox::new();
    sb.write("lab.yaml", &fixture("invalid/short-key-typo.yaml"));
    let run = sb.run(&["validate", "-f", "lab.yaml"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr()
            .contains("lab.yaml:9:3: error: unknown key `tll` in `dns`; did you mean `ttl`?"),
        "{}",
        run.transcript()
    );

    let default = std::fs::read_to_string(repo().join("topology.yaml")).expect("topology.yaml");
    let (line, col) = default
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            l.find("public: true")
                .map(|c| (i + 1, c + 1 + "public: ".len()))
        })
        .expect("the default lab has a public subnet");
    sb.write(
        "lab.yaml",
        &default.replacen("public: true", "public: yes", 1),
    );
    let run = sb.run(&["validate", "-f", "lab.yaml"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    assert!(
        run.stderr().contains(&format!(
            "lab.yaml:{line}:{col}: error: `yes` is not a boolean in YAML 1.2, which labctl and \
             editors follow; write true or false"
        )),
        "{}",
        run.transcript()
    );
    sb.write(
        "lab.yaml",
        &default.replacen("public: true", "public: TRUE", 1),
    );
    assert_eq!(sb.run(&["validate", "-f", "lab.yaml"]).code(), 0);
}

/// Every duration flag reads one grammar, and says what is wrong with a value.
#[test]
fn duration_flags_share_one_grammar() {
    let sb = Sandbox::new();
    let topology = std::fs::read_to_string(repo().join("topology.yaml")).expect("topology.yaml");
    sb.write("topology.yaml", &topology);
    for (args, why) in [
        (
            &["exec", "all", "--timeout", "2x", "--", "true"][..],
            "unknown unit `x`",
        ),
        (
            &["exec", "all", "--timeout", "49h", "--", "true"][..],
            "(1s to 2d)",
        ),
        (&["up", "--wait", "1h30"][..], "30 needs a unit"),
        (&["up", "--wait", "30m1h"][..], "largest to smallest"),
        (
            &["pcap-fetch", "--since", "2026-03-01T14:00:00"][..],
            "no UTC offset",
        ),
        (
            &["pcap-fetch", "--since", "yesterday"][..],
            "neither an RFC 3339 time",
        ),
    ] {
        let run = sb.run(args);
        assert_eq!(run.code(), 1, "{args:?}: {}", run.transcript());
        assert!(
            run.stderr().contains("invalid value"),
            "{args:?}: {}",
            run.transcript()
        );
        assert!(run.stderr().contains(why), "{args:?}: {}", run.transcript());
    }
    // Accepted values get as far as reading the topology, which stops them (before any
    // AWS call) only because it is invalid.
    sb.write("topology.yaml", &fixture("invalid/graviton.yaml"));
    for args in [
        &["exec", "all", "--timeout", "90", "--", "true"][..],
        &["exec", "all", "--timeout", "1h30m", "--", "true"][..],
        &["pcap-fetch", "--list", "--since", "90"][..],
        &[
            "pcap-fetch",
            "--list",
            "--since",
            "2026-03-01T14:00:00+01:00",
        ][..],
        &[
            "pcap-fetch",
            "--list",
            "--since",
            "2026-03-01T14:00:00-05:00",
        ][..],
        &["pcap-fetch", "--list", "--since", "2026-03-01t14:00:00z"][..],
    ] {
        let run = sb.run(args);
        assert_eq!(run.code(), 1, "{args:?}: {}", run.transcript());
        assert!(
            !run.stderr().contains("invalid value"),
            "{args:?}: {}",
            run.transcript()
        );
        assert!(
            run.stderr().contains("Graviton"),
            "{args:?}: {}",
            run.transcript()
        );
    }
}
