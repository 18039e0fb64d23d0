//! The hand-written JSON Schema and the hand-written decoder must agree: files the
//! decoder accepts satisfy the schema, and files with unknown keys or wrong types (which
//! the decoder rejects) violate it, so an editor flags what `labctl validate` flags.

use std::path::Path;

use labctl_core::schema::topology_schema;
use labctl_core::yaml::{self, Node, Value};
use serde_json::Value as Json;

fn to_json(node: &Node) -> Json {
    match &node.value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => Json::from(*f),
        Value::Str(s) => Json::String(s.clone()),
        Value::Seq(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| match &k.value {
                    Value::Str(s) => (s.clone(), to_json(v)),
                    other => panic!("non-string key {other:?}"),
                })
                .collect(),
        ),
    }
}

fn load(rel: &str) -> Json {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    to_json(&yaml::parse(&text).unwrap_or_else(|d| panic!("{rel}: {d:?}")))
}

#[test]
fn schema_is_valid_draft_2020_12() {
    jsonschema::draft202012::meta::validate(&topology_schema()).expect("schema is a valid schema");
}

#[test]
fn files_the_decoder_accepts_satisfy_the_schema() {
    let schema = jsonschema::draft202012::new(&topology_schema()).expect("compiles");
    for rel in [
        "topology.yaml",
        "tests/fixtures/valid/minimal.yaml",
        "tests/fixtures/valid/everything.yaml",
    ] {
        let errors: Vec<String> = schema
            .iter_errors(&load(rel))
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{rel}: {errors:#?}");
    }
}

#[test]
fn files_with_unknown_keys_or_wrong_types_violate_the_schema() {
    let schema = jsonschema::draft202012::new(&topology_schema()).expect("compiles");
    for rel in [
        "tests/fixtures/invalid/unknown-key.yaml",
        "tests/fixtures/invalid/wrong-type.yaml",
        "tests/fixtures/invalid/port-out-of-range.yaml",
        "tests/fixtures/invalid/count-zero.yaml",
        "tests/fixtures/invalid/many-problems.yaml",
    ] {
        assert!(
            !schema.is_valid(&load(rel)),
            "{rel} should violate the schema"
        );
    }
}

/// The schema's lifetime pattern is the duration grammar: an editor accepts exactly the
/// spellings `labctl validate` reads.
#[test]
fn the_lifetime_pattern_is_the_duration_grammar() {
    let schema = jsonschema::draft202012::new(&topology_schema()).expect("compiles");
    let mut lab = load("tests/fixtures/valid/minimal.yaml");
    for written in [
        "4h", "90m", "1h30m", "2d", "1d2h3m4s", "1d4s", "600s", "600", "10m0s", "", "h", "1h30",
        "30m1h", "1m1m", "4 h", "4H", "1.5h", "-4h", "5min", "1ms", "1s1m",
    ] {
        lab["lifetime"] = Json::String(written.to_owned());
        assert_eq!(
            schema.is_valid(&lab),
            labctl_core::duration::parse(written).is_ok(),
            "`{written}`"
        );
    }
    for (secs, whole_minutes_in_range) in [(600, true), (5_400, true), (90, false), (630, false)] {
        lab["lifetime"] = Json::from(secs);
        assert_eq!(schema.is_valid(&lab), whole_minutes_in_range, "{secs}");
    }
}
