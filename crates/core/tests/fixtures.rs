//! Validation against the files under `tests/fixtures/`.
//!
//! Each fixture states what validation must say about it in comments of the form
//! `# expect <error|warning> <line>:<col>: <message fragment>`; the test requires exactly
//! those diagnostics, at those positions, and no others. Snapshots of the full rendered
//! output pin the wording.

use std::path::{Path, PathBuf};

use labctl_core::{Severity, check};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

struct Expectation {
    severity: Severity,
    line: u32,
    col: u32,
    fragment: String,
}

fn expectations(text: &str) -> Vec<Expectation> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect "))
        .map(|rest| {
            let (head, fragment) = rest.split_once(": ").expect("`# expect sev L:C: text`");
            let (sev, pos) = head.split_once(' ').expect("severity and position");
            let (line, col) = pos.split_once(':').expect("line:col");
            Expectation {
                severity: match sev {
                    "error" => Severity::Error,
                    "warning" => Severity::Warning,
                    "note" => Severity::Note,
                    other => panic!("unknown severity {other}"),
                },
                line: line.parse().expect("line"),
                col: col.parse().expect("col"),
                fragment: fragment.to_owned(),
            }
        })
        .collect()
}

/// Checks one file against its expectations; returns the rendered diagnostics.
fn verify(path: &Path) -> String {
    verify_with(path, Vec::new())
}

/// As [`verify`], with expectations the file cannot carry itself.
fn verify_with(path: &Path, extra: Vec<Expectation>) -> String {
    let text = std::fs::read_to_string(path).expect("fixture readable");
    let checked = check(&text);
    let name = path.file_name().expect("file name").to_string_lossy();
    let rendered: Vec<String> = checked
        .diagnostics
        .iter()
        .map(|d| d.display_with_file(&name).to_string())
        .collect();
    let mut expected = expectations(&text);
    expected.extend(extra);
    let mut unmatched: Vec<&str> = rendered.iter().map(String::as_str).collect();
    for e in &expected {
        let found = checked.diagnostics.iter().position(|d| {
            d.severity == e.severity
                && (d.pos.line, d.pos.col) == (e.line, e.col)
                && d.display_with_file("").to_string().contains(&e.fragment)
        });
        let Some(i) = found else {
            panic!(
                "{name}: expected {:?} at {}:{} containing {:?}; got:\n{}",
                e.severity,
                e.line,
                e.col,
                e.fragment,
                rendered.join("\n")
            );
        };
        unmatched.retain(|r| *r != rendered[i]);
    }
    assert!(
        unmatched.is_empty(),
        "{name}: diagnostics not listed as `# expect` lines:\n{}",
        unmatched.join("\n")
    );
    assert_eq!(
        checked.topology.is_some(),
        !checked.diagnostics.has_errors(),
        "{name}: a topology is returned exactly when there are no errors"
    );
    rendered.join("\n")
}

#[test]
fn invalid_fixtures_report_every_problem_where_it_is() {
    for path in fixtures("invalid") {
        let text = std::fs::read_to_string(&path).expect("readable");
        assert!(
            expectations(&text)
                .iter()
                .any(|e| e.severity == Severity::Error),
            "{}: an invalid fixture must expect an error",
            path.display()
        );
        let rendered = verify(&path);
        let name = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        insta::assert_snapshot!(format!("invalid-{name}"), rendered);
    }
}

#[test]
fn valid_fixtures_and_the_default_lab_pass() {
    for path in fixtures("valid") {
        verify(&path);
    }
    // The default lab keeps the seed lab's AmazonDynamoDBFullAccess, and says what it
    // covers (the user's file carries no test comments).
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topology.yaml");
    let text = std::fs::read_to_string(&default).expect("readable");
    let line = text
        .lines()
        .position(|l| l.contains("AmazonDynamoDBFullAccess"))
        .expect("the default lab lists AmazonDynamoDBFullAccess");
    let col = text
        .lines()
        .nth(line)
        .and_then(|l| l.find("AmazonDynamoDBFullAccess"));
    verify_with(
        &default,
        vec![Expectation {
            severity: Severity::Note,
            line: u32::try_from(line + 1).expect("small"),
            col: u32::try_from(col.expect("column") + 1).expect("small"),
            fragment: "AmazonDynamoDBFullAccess covers every DynamoDB table in the account".into(),
        }],
    );
}

#[test]
fn several_semantic_problems_are_reported_in_one_run() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/invalid/many-problems.yaml");
    let checked = check(&std::fs::read_to_string(path).expect("readable"));
    assert!(
        checked.diagnostics.error_count() >= 8,
        "{:#?}",
        checked.diagnostics
    );
}
