//! The command-line surface as scripts and people meet it: one JSON document per
//! `--json` run, success or failure; the README's command table against each command's
//! `--help`; completions and manual pages; `init`; hints for verbs other tools use; the
//! version with its commit.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

use crate::double::Double;
use crate::exec::ids;
use crate::harness::{Run, Sandbox, Teardown, repo};
use crate::reconcile::lab_sandbox;

// ---------------------------------------------------------------- JSON documents

/// The one JSON document on stdout, with its shape version checked.
fn document(run: &Run) -> Value {
    let stdout = run.stdout();
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.transcript()));
    assert_eq!(
        docs.len(),
        1,
        "exactly one document on stdout:\n{}",
        run.transcript()
    );
    let doc = docs.into_iter().next().expect("one document");
    assert_eq!(
        doc["version"],
        1,
        "the shape version:\n{}",
        run.transcript()
    );
    doc
}

/// Asserts `value` is an object holding every key in `keys` (null values count).
fn has_keys(value: &Value, what: &str, keys: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {value}"));
    for key in keys {
        assert!(object.contains_key(*key), "{what} has no `{key}`: {value}");
    }
}

/// A successful run's document.
fn success(run: &Run, keys: &[&str]) -> Value {
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let doc = document(run);
    has_keys(&doc, "the document", keys);
    assert!(doc.get("error").is_none(), "{doc}");
    doc
}

/// A failed run's error document: exit 1, the message, and the diagnostics list.
fn failure(run: &Run) -> Value {
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let doc = document(run);
    has_keys(&doc["error"], "error", &["message", "file", "diagnostics"]);
    let message = doc["error"]["message"].as_str().expect("a message");
    assert!(!message.is_empty(), "{doc}");
    assert!(
        run.stderr().contains(message),
        "the document says what stderr says:\n{}",
        run.transcript()
    );
    assert!(doc["error"]["diagnostics"].is_array(), "{doc}");
    doc
}

fn default_topology() -> String {
    std::fs::read_to_string(repo().join("topology.yaml")).expect("topology.yaml")
}

/// An invalid topology: an unknown role in a rule.
fn invalid_topology() -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/invalid/unknown-role.yaml"))
        .expect("fixture")
}

/// The error document for a topology that failed validation names the file and carries
/// its diagnostics, whichever command read it.
fn invalid(run: &Run) {
    let doc = failure(run);
    assert_eq!(doc["error"]["file"], "topology.yaml", "{doc}");
    let diagnostics = doc["error"]["diagnostics"].as_array().expect("diagnostics");
    let errors: Vec<&Value> = diagnostics
        .iter()
        .filter(|d| d["severity"] == "error")
        .collect();
    assert!(!errors.is_empty(), "{doc}");
    for d in &errors {
        has_keys(d, "a diagnostic", &["severity", "pos", "message"]);
        // The same diagnostic as stderr shows it, at its position.
        let at = format!(
            "topology.yaml:{}:{}: error: {}",
            d["pos"]["line"],
            d["pos"]["col"],
            d["message"].as_str().expect("message")
        );
        assert!(run.stderr().contains(&at), "{at}\n{}", run.transcript());
    }
}

#[test]
fn json_documents_without_aws() {
    let good = Sandbox::new();
    good.write("topology.yaml", &default_topology());
    let bad = Sandbox::new();
    bad.write("topology.yaml", &invalid_topology());
    let none = Sandbox::new();

    // validate: its own document for any file it could read, valid or not.
    let doc = success(
        &good.run(&["validate", "--json"]),
        &[
            "file",
            "valid",
            "errors",
            "warnings",
            "notes",
            "diagnostics",
        ],
    );
    assert_eq!(doc["valid"], true, "{doc}");
    let run = bad.run(&["validate", "--json"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let doc = document(&run);
    assert_eq!(doc["valid"], false, "{doc}");
    failure(&none.run(&["validate", "--json"]));

    // graph: the resources and the steps that create them.
    let doc = success(
        &good.run(&["graph", "--json"]),
        &["lab", "resources", "steps"],
    );
    let resources = doc["resources"].as_array().expect("resources");
    let steps = doc["steps"].as_array().expect("steps");
    let mut placed = BTreeMap::new();
    for step in steps {
        has_keys(step, "a step", &["step", "resources"]);
        for r in step["resources"].as_array().expect("a step's resources") {
            has_keys(r, "a step's resource", &["address", "name", "depends_on"]);
            placed.insert(r["address"].to_string(), step["step"].as_u64());
        }
    }
    assert_eq!(placed.len(), resources.len(), "every resource in one step");
    // Each resource comes in a later step than everything it depends on.
    for step in steps {
        for r in step["resources"].as_array().expect("resources") {
            for dep in r["depends_on"].as_array().expect("depends_on") {
                assert!(
                    placed[&dep.to_string()] < step["step"].as_u64(),
                    "{} before {dep}",
                    r["address"]
                );
            }
        }
    }
    invalid(&bad.run(&["graph", "--json"]));

    // pcap-summary: every file's summary, in order.
    let file = crate::captures::refused(&none);
    let file = file.to_str().expect("path");
    let doc = success(&none.run(&["pcap-summary", "--json", file]), &["files"]);
    let files = doc["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{doc}");
    has_keys(
        &files[0],
        "a file's summary",
        &["file", "packets", "bytes", "conversations", "tcp_totals"],
    );
    none.write("not.pcap", "not a capture");
    failure(&none.run(&["pcap-summary", "--json", "not.pcap"]));

    // Commands that need AWS fail on the topology before any call, or on the
    // unreachable endpoint, each with one document.
    for args in [
        &["plan", "--json"][..],
        &["up", "--json", "--yes"],
        &["status", "--json"],
        &["doctor", "--json"],
        &["exec", "all", "--json", "--", "true"],
        &["capture", "all", "--json"],
    ] {
        invalid(&bad.run(args));
        failure(&none.run(args));
    }
    let doc = failure(&none.run(&["doctor", "--json"]));
    assert_eq!(doc["error"]["file"], Value::Null, "{doc}");

    // A usage error on a command line with --json.
    let run = good.run(&["plan", "--json", "--no-such-flag"]);
    let doc = failure(&run);
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--no-such-flag")),
        "{doc}"
    );
}

/// A stand-in for the instances' `lab-capture`: it answers as the real one does when
/// it starts, and refuses (as for a bad option) on the instance named in `REFUSE_ON`.
const CAPTURE_STUB: &str = r#"#!/bin/sh
if [ "$AWS_SSM_INSTANCE_ID" = "$REFUSE_ON" ]; then
    echo "lab-capture: no interface \`nosuch0'" >&2
    exit 2
fi
echo "recording on lo for 60s"
echo "files go to s3://stub-bucket/captures/$AWS_SSM_INSTANCE_ID/capture-20260101T000000Z/"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn json_documents_against_a_lab() {
    let (sb, lab) = lab_sandbox("surface");
    let run = |args: &[&str]| tokio::task::block_in_place(|| sb.run(args));

    let plan = run(&["plan", "--json"]);
    let doc = success(
        &plan,
        &["lab", "changes", "unchanged", "summary", "cost", "images"],
    );
    assert_eq!(doc["lab"], lab.as_str());
    let changes = doc["changes"].as_array().expect("changes");
    for action in ["create", "update", "replace", "delete"] {
        let n = changes.iter().filter(|c| c["action"] == action).count();
        assert_eq!(doc["summary"][action], n, "{action}: {}", doc["summary"]);
    }
    assert!(doc["summary"]["create"].as_u64() > Some(0), "a new lab");
    let cost = &doc["cost"];
    has_keys(
        cost,
        "cost",
        &[
            "region",
            "usd_per_hour",
            "breakdown",
            "unpriced_types",
            "lifetime",
        ],
    );
    let lines: f64 = cost["breakdown"]
        .as_array()
        .expect("breakdown")
        .iter()
        .map(|l| l["usd_per_hour"].as_f64().expect("a line's figure"))
        .sum();
    let total = cost["usd_per_hour"].as_f64().expect("hourly figure");
    assert!(total > 0.0 && (lines - total).abs() < 1e-5, "{cost}");
    // The topology's lifetime bounds what one run of the instances costs.
    let lifetime = &cost["lifetime"];
    let hours = lifetime["minutes"].as_f64().expect("the lifetime") / 60.0;
    let most = lifetime["usd_at_most"].as_f64().expect("the bound");
    assert!(
        most >= total * hours && most < total * hours + 0.01,
        "{cost}"
    );
    // The text says the same figure.
    let text = run(&["plan"]);
    assert!(
        text.stdout()
            .contains(&format!("{} to add", doc["summary"]["create"])),
        "{}",
        text.transcript()
    );

    let _down = Teardown::new(&sb, &[]);
    let up = run(&["up", "--yes", "--json"]);
    let doc = success(&up, &["lab", "instances", "bucket", "zone", "resources"]);
    let ids = ids(&lab).await;
    let shown: BTreeMap<String, String> = doc["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| {
            has_keys(
                i,
                "an instance",
                &[
                    "name",
                    "id",
                    "state",
                    "private_ip",
                    "public_ip",
                    "dns",
                    "bootstrap",
                ],
            );
            (
                i["name"].as_str().expect("name").to_owned(),
                i["id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    assert_eq!(shown, ids, "up shows the instances EC2 has");

    let doc = success(
        &run(&["status", "--json"]),
        &["lab", "instances", "bucket", "zone", "resources"],
    );
    assert_eq!(doc["instances"].as_array().map(Vec::len), Some(ids.len()));

    let doc = success(
        &run(&["doctor", "--json"]),
        &[
            "region",
            "endpoint",
            "credentials",
            "account",
            "caller",
            "lab",
            "lab_vpcs",
            "quotas",
            "zones",
            "image",
        ],
    );
    assert_eq!(doc["lab_vpcs"], 1, "{doc}");

    // exec and capture through the SSM test double (LocalStack runs no commands).
    let bin = tempfile::tempdir().expect("temp dir");
    let stub = bin.path().join("lab-capture");
    std::fs::write(&stub, CAPTURE_STUB).expect("write the stub");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let double = Double::start_with_env(&[], &[("PATH", &path), ("REFUSE_ON", &ids["client-2"])]);
    let via_double = |args: &[&str]| {
        let mut cmd = sb.labctl(args);
        cmd.env("AWS_ENDPOINT_URL_SSM", double.endpoint());
        tokio::task::block_in_place(|| Run(cmd.output().expect("labctl runs")))
    };

    let doc = success(
        &via_double(&["exec", "all", "--json", "--", "printf", "%s", "hi"]),
        &["instances"],
    );
    let rows = doc["instances"].as_array().expect("instances");
    assert_eq!(rows.len(), ids.len(), "{doc}");
    for row in rows {
        has_keys(
            row,
            "an exec result",
            &[
                "instance",
                "id",
                "command_id",
                "status",
                "exit_code",
                "stdout",
                "stderr",
                "stdout_truncated",
                "stderr_truncated",
                "error",
            ],
        );
        assert_eq!(row["stdout"], "hi", "{row}");
        assert_eq!(row["id"], ids[row["instance"].as_str().expect("name")]);
    }
    failure(&via_double(&["exec", "nosuch", "--json", "--", "true"]));

    let doc = success(
        &via_double(&["capture", "server", "--json"]),
        &["label", "seconds", "instances", "fetch"],
    );
    let rows = doc["instances"].as_array().expect("instances");
    assert_eq!(rows.len(), 1, "{doc}");
    has_keys(
        &rows[0],
        "a capture result",
        &[
            "instance",
            "id",
            "command_id",
            "status",
            "recording",
            "files",
            "error",
        ],
    );
    assert_eq!(rows[0]["status"], "started", "{doc}");
    assert_eq!(
        rows[0]["files"],
        format!(
            "s3://stub-bucket/captures/{}/capture-20260101T000000Z/",
            ids["server"]
        ),
        "{doc}"
    );
    assert!(
        doc["fetch"]
            .as_str()
            .is_some_and(|f| f.ends_with("pcap-fetch server")),
        "{doc}"
    );
    // One instance refusing: the same document, that instance failed, exit 1.
    let run = via_double(&["capture", "client", "--json"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let doc = document(&run);
    let status: BTreeMap<&str, (&str, &Value)> = doc["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|r| {
            (
                r["instance"].as_str().expect("name"),
                (r["status"].as_str().expect("status"), &r["error"]),
            )
        })
        .collect();
    assert_eq!(status["client-1"].0, "started", "{doc}");
    assert_eq!(status["client-2"].0, "failed", "{doc}");
    assert!(
        status["client-2"]
            .1
            .as_str()
            .is_some_and(|e| e.contains("no interface")),
        "{doc}"
    );
    failure(&via_double(&["capture", "nosuch", "--json"]));
}

// ---------------------------------------------------------------- README and --help

/// The lines of `text` under the line `title` up to the next line that is not
/// indented (a section of clap's help).
fn help_section<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| l.trim_end() != title)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

/// One option as `--help` lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Opt {
    short: Option<String>,
    long: Option<String>,
}

impl Opt {
    fn names(&self) -> impl Iterator<Item = &String> {
        self.short.iter().chain(&self.long)
    }

    fn is(&self, flag: &str) -> bool {
        self.names().any(|n| n == flag)
    }

    fn label(&self) -> String {
        self.names().cloned().collect::<Vec<_>>().join("/")
    }
}

/// The options of `labctl <args> --help`.
fn help_options(sb: &Sandbox, args: &[&str]) -> Vec<Opt> {
    let run = sb.run(&[args, &["--help"]].concat());
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let text = run.stdout();
    help_section(&text, "Options:")
        .into_iter()
        .filter_map(|line| {
            let trimmed = line.trim_start();
            // Descriptions are indented further than the options they describe.
            if !trimmed.starts_with('-') || line.len() - trimmed.len() > 6 {
                return None;
            }
            let head = trimmed.split("  ").next().unwrap_or_default();
            let mut opt = Opt {
                short: None,
                long: None,
            };
            for part in head.split(", ") {
                let flag = part.split([' ', '=', '[', '<']).next().unwrap_or_default();
                if flag.starts_with("--") {
                    opt.long = Some(flag.to_owned());
                } else {
                    opt.short = Some(flag.to_owned());
                }
            }
            Some(opt)
        })
        .collect()
}

/// The subcommands `labctl --help` lists (without clap's `help`).
fn subcommands(sb: &Sandbox) -> Vec<String> {
    let run = sb.run(&["--help"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let text = run.stdout();
    let names: Vec<String> = help_section(&text, "Commands:")
        .into_iter()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.len() > 10, "the commands of --help: {names:?}");
    names
}

/// The README's text from the heading `heading` to the next heading.
fn readme_section(readme: &str, heading: &str) -> String {
    readme
        .lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The words of a README usage such as `labctl graph [--json \| --dot]` that are
/// options.
fn flags_in(usage: &str) -> Vec<String> {
    usage
        .replace("\\|", " ")
        .split([' ', '[', ']', '|'])
        .filter(|w| w.starts_with('-') && *w != "--" && w.len() > 1)
        .map(|w| w.trim_end_matches([',', ';', '.']).to_owned())
        .collect()
}

#[test]
fn readme_commands_match_each_commands_help() {
    let sb = Sandbox::new();
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let section = readme_section(&readme, "## Commands");
    let mut problems = Vec::new();

    // The global options, in their own list.
    let globals: Vec<Opt> = help_options(&sb, &[])
        .into_iter()
        .filter(|o| !o.is("--help") && !o.is("--version"))
        .collect();
    let listed: Vec<String> = section
        .lines()
        .skip_while(|l| *l != "Global options:")
        .skip(2)
        .take_while(|l| l.starts_with("- "))
        .flat_map(|l| {
            l.split('`')
                .skip(1)
                .step_by(2)
                .flat_map(|code| code.split('/'))
                .filter(|w| w.starts_with('-'))
                // `-vv` and `-vvv` are `-v` given again.
                .map(|w| match w.as_bytes() {
                    [b'-', c, rest @ ..] if *c != b'-' && rest.iter().all(|r| r == c) => {
                        format!("-{}", *c as char)
                    }
                    _ => w.to_owned(),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!listed.is_empty(), "no global options list in README");
    for o in &globals {
        if !listed.iter().any(|w| o.is(w)) {
            problems.push(format!(
                "global option {} is not in README's list",
                o.label()
            ));
        }
    }
    for w in &listed {
        if !globals.iter().any(|o| o.is(w)) {
            problems.push(format!(
                "README lists global option {w}, which --help lacks"
            ));
        }
    }

    // Each row of the table: `labctl <command> <usage>`.
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `labctl ")) {
        let usage = line["| `".len()..].split('`').next().expect("a code span");
        let name = usage.split_whitespace().nth(1).expect("a command name");
        rows.insert(name.to_owned(), flags_in(usage));
    }
    let commands = subcommands(&sb);
    let named: BTreeSet<&String> = rows.keys().collect();
    let helped: BTreeSet<&String> = commands.iter().collect();
    for missing in helped.difference(&named) {
        problems.push(format!("README's table has no row for `labctl {missing}`"));
    }
    for extra in named.difference(&helped) {
        problems.push(format!(
            "README's table has `labctl {extra}`, which --help lacks"
        ));
    }
    for command in &commands {
        let Some(written) = rows.get(command) else {
            continue;
        };
        let options: Vec<Opt> = help_options(&sb, &[command])
            .into_iter()
            .filter(|o| !o.is("--help") && !o.is("--version"))
            .filter(|o| !globals.contains(o))
            .collect();
        for o in &options {
            if !written.iter().any(|w| o.is(w)) {
                problems.push(format!(
                    "`labctl {command}` has {}, which README's row lacks",
                    o.label()
                ));
            }
        }
        for w in written {
            if !options.iter().chain(&globals).any(|o| o.is(w)) {
                problems.push(format!(
                    "README's row for `labctl {command}` has {w}, which its --help lacks"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------- completions and man

/// How each shell's script names a subcommand it completes.
const SHELLS: &[(&str, &str)] = &[
    ("bash", "labctl,{}"),
    ("zsh", "({})"),
    ("fish", "-a \"{}\""),
    ("powershell", "'labctl;{}'"),
    ("elvish", "'labctl;{}'="),
];

#[test]
fn completions_and_man_pages_cover_every_command() {
    let sb = Sandbox::new();
    let commands = subcommands(&sb);
    for (shell, pattern) in SHELLS {
        let run = sb.run(&["completions", shell]);
        assert_eq!(run.code(), 0, "{}", run.transcript());
        let script = run.stdout();
        for c in &commands {
            let wanted = pattern.replace("{}", c);
            assert!(script.contains(&wanted), "{shell} lacks {wanted}");
        }
    }
    let unknown = sb.run(&["completions", "tcsh"]);
    assert_eq!(unknown.code(), 1, "{}", unknown.transcript());

    // One page, naming each command's own page.
    let run = sb.run(&["man"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let page = run.stdout();
    assert!(page.contains(".TH labctl 1"), "{page}");
    for c in &commands {
        let wanted = format!("labctl\\-{}(1)", c.replace('-', "\\-"));
        assert!(page.contains(&wanted), "the page lacks {wanted}");
    }
    // One page per command.
    let run = sb.run(&["man", "--out", "man1"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    for c in &commands {
        let path = sb.path().join(format!("man1/labctl-{c}.1"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), run.transcript()));
        assert!(text.contains(".TH labctl-"), "{}", path.display());
        assert!(
            run.stdout().contains(&format!("wrote man1/labctl-{c}.1\n")),
            "{}",
            run.transcript()
        );
    }
    assert!(sb.path().join("man1/labctl.1").is_file());
}

// ---------------------------------------------------------------- init

/// Every file under `dir`, with its bytes.
fn files(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect()
}

#[test]
fn init_writes_a_lab_that_validates_and_never_overwrites() {
    let sb = Sandbox::new();
    let run = sb.run(&["init", "lab"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    assert!(
        run.stdout()
            .contains("wrote lab/topology.yaml\nwrote lab/topology.schema.json\n"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stderr().contains("`labctl -f lab/topology.yaml plan`"),
        "{}",
        run.transcript()
    );
    let dir = sb.path().join("lab");
    let written = files(&dir);
    assert_eq!(
        written.keys().collect::<Vec<_>>(),
        ["topology.schema.json", "topology.yaml"]
    );
    let topology = String::from_utf8(written["topology.yaml"].clone()).expect("UTF-8");
    assert_eq!(
        topology.lines().next(),
        Some("# yaml-language-server: $schema=./topology.schema.json")
    );
    let schema = sb.run(&["schema"]);
    assert_eq!(written["topology.schema.json"], schema.stdout().as_bytes());
    let valid = sb.run(&["validate", "-f", "lab/topology.yaml"]);
    assert_eq!(valid.code(), 0, "{}", valid.transcript());
    // The same lab as the repository's, but for where the schema line sits.
    let strip = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("# yaml-language-server:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&topology), strip(&default_topology()));

    // Again: refused, naming the file, and nothing changes.
    let again = sb.run(&["init", "lab"]);
    assert_eq!(again.code(), 1, "{}", again.transcript());
    assert!(
        again.stderr().contains("lab/topology.yaml already exists"),
        "{}",
        again.transcript()
    );
    assert_eq!(files(&dir), written, "byte-identical");

    // Only the schema there: refused, and no topology written beside it.
    std::fs::create_dir(sb.path().join("half")).expect("mkdir");
    sb.write("half/topology.schema.json", "{}\n");
    let half = sb.run(&["init", "half"]);
    assert_eq!(half.code(), 1, "{}", half.transcript());
    assert!(
        half.stderr()
            .contains("half/topology.schema.json already exists"),
        "{}",
        half.transcript()
    );
    assert_eq!(
        files(&sb.path().join("half")),
        BTreeMap::from([("topology.schema.json".to_owned(), b"{}\n".to_vec())])
    );

    // The current folder by default, and then every command finds the file.
    let here = Sandbox::new();
    let run = here.run(&["init"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    assert!(
        run.stderr().contains("`labctl plan`"),
        "{}",
        run.transcript()
    );
    let valid = here.run(&["validate"]);
    assert_eq!(valid.code(), 0, "{}", valid.transcript());
}

// ---------------------------------------------------------------- hints and version

#[test]
fn verbs_of_other_tools_point_to_labctls_own() {
    let sb = Sandbox::new();
    for (verb, ours) in [
        ("destroy", "down"),
        ("delete", "down"),
        ("apply", "up"),
        ("ssh", "ssm-shell"),
    ] {
        let run = sb.run(&[verb]);
        assert_eq!(run.code(), 1, "{}", run.transcript());
        let tip = run
            .stderr()
            .lines()
            .filter(|l| l.trim_start().starts_with("tip:"))
            .any(|l| l.contains(ours));
        assert!(
            tip,
            "`{verb}` gets a tip naming `{ours}`:\n{}",
            run.transcript()
        );
    }
}

#[test]
fn a_missing_topology_points_to_init_and_the_file_option() {
    let sb = Sandbox::new();
    let run = sb.run(&["plan"]);
    assert_eq!(run.code(), 1, "{}", run.transcript());
    let err = run.stderr();
    assert!(
        err.contains("cannot read topology file topology.yaml"),
        "{err}"
    );
    assert!(err.contains("`labctl init`"), "{err}");
    assert!(err.contains("`-f FILE`"), "{err}");
    let run = sb.run(&["-f", "sub/topology.yaml", "status"]);
    assert!(
        run.stderr().contains("`labctl init sub`"),
        "{}",
        run.transcript()
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let sb = Sandbox::new();
    let run = sb.run(&["--version"]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let line = run.stdout();
    let commit = line
        .trim_end()
        .strip_prefix(&format!("labctl {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("labctl VERSION (COMMIT): {line:?}"));
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(repo())
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    if git(&["rev-parse", "--git-dir"]).is_some() {
        // A commit of this repository (HEAD, unless one was made since the build).
        assert_eq!(commit.len(), 12, "{commit}");
        assert!(
            git(&["cat-file", "-e", &format!("{commit}^{{commit}}")]).is_some(),
            "{commit} is not a commit here"
        );
    } else {
        assert_eq!(commit, "unknown");
    }
    // Each command says the same.
    let plan = sb.run(&["plan", "--version"]);
    assert!(
        plan.stdout().contains(&format!("({commit})")),
        "{}",
        plan.transcript()
    );
}
