//! Single values as a topology writes them: lifetimes in the duration grammar, YAML 1.2
//! booleans, and files the parser's limits refuse, each named for what it is.

use std::time::Duration;

use labctl_core::{Checked, Diagnostic, Pos, Severity, check};

/// The least lab, with `extra` appended at the top level.
fn lab(extra: &str) -> String {
    format!(
        "name: mini\n\
         network:\n  cidr: 10.0.0.0/16\n  subnets: [{{ name: lab, cidr: 10.0.1.0/24, public: true }}]\n\
         roles:\n  server: {{}}\n\
         instances:\n  - {{ name: server, role: server, type: t3.micro, image: ubuntu-24.04 }}\n\
         {extra}"
    )
}

fn errors(checked: &Checked) -> Vec<&Diagnostic> {
    checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

/// The one diagnostic of `text`, which must be an error.
fn only_error(text: &str) -> Diagnostic {
    let checked = check(text);
    let all: Vec<&Diagnostic> = checked.diagnostics.iter().collect();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].severity, Severity::Error, "{all:#?}");
    all[0].clone()
}

#[test]
fn lifetimes_take_the_duration_grammar() {
    for (written, secs) in [
        ("4h", 14_400),
        ("90m", 5_400),
        ("1h30m", 5_400),
        ("2d", 172_800),
        ("600s", 600),
        ("1d1h1m", 90_060),
        // A bare number is seconds, as everywhere else.
        ("5400", 5_400),
        ("\"5400\"", 5_400),
    ] {
        let checked = check(&lab(&format!("lifetime: {written}\n")));
        assert!(
            checked.diagnostics.is_empty(),
            "{written}: {:#?}",
            checked.diagnostics
        );
        let lifetime = checked
            .topology
            .expect("valid")
            .lifetime
            .expect("a lifetime");
        assert_eq!(lifetime.value.0, Duration::from_secs(secs), "{written}");
    }
}

#[test]
fn a_lifetime_in_seconds_is_read_and_then_judged() {
    // `90s` reads as a duration (it was once "unknown unit `s`") and is too short.
    let d = only_error(&lab("lifetime: 90s\n"));
    assert_eq!(d.message, "lifetime 1m30s is out of range (10m to 30d)");
    assert_eq!(d.pos, Pos::new(9, 11));

    let d = only_error(&lab("lifetime: 10m30s\n"));
    assert!(
        d.message
            .contains("lifetime 10m30s is not a whole number of minutes"),
        "{d:?}"
    );
    assert_eq!(d.hint.as_deref(), Some("write `10m` or `11m`"));

    let d = only_error(&lab("lifetime: 31d\n"));
    assert_eq!(d.message, "lifetime 31d is out of range (10m to 30d)");
}

#[test]
fn a_zero_lifetime_is_refused_however_it_is_written() {
    for zero in ["0h", "0m", "0", "0d0h"] {
        let d = only_error(&lab(&format!("lifetime: {zero}\n")));
        assert_eq!(
            d.message, "a zero lifetime would stop every instance as soon as it boots",
            "{zero}"
        );
        assert!(!d.message.contains("0m"), "{zero}: {d:?}");
    }
}

#[test]
fn a_lifetime_outside_the_grammar_says_why() {
    for (written, why) in [
        ("4 hours", "without spaces"),
        ("1h30", "30 needs a unit"),
        ("30m1h", "largest to smallest"),
        ("4hr", "unknown unit `hr`"),
        ("-4h", "no sign"),
    ] {
        let d = only_error(&lab(&format!("lifetime: {written}\n")));
        assert!(d.message.contains("is not a duration"), "{written}: {d:?}");
        assert!(d.message.contains(why), "{written}: {d:?}");
    }
    let d = only_error(&lab("lifetime: -60\n"));
    assert!(d.message.contains("negative"), "{d:?}");
}

#[test]
fn no_lifetime_is_a_warning_at_the_top() {
    let text = format!("# a comment first\n{}", lab(""));
    let checked = check(&text);
    let all: Vec<&Diagnostic> = checked.diagnostics.iter().collect();
    assert_eq!(all.len(), 1, "{all:#?}");
    let d = all[0];
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(d.pos, Pos::new(2, 1), "where the topology starts");
    assert!(d.message.contains("no `lifetime`"), "{d:?}");
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("add `lifetime: 4h`")),
        "{d:?}"
    );
    assert!(checked.topology.is_some(), "a warning, not an error");

    // A lifetime that is present but wrong is its own error, not also "no lifetime".
    let checked = check(&lab("lifetime: soon\n"));
    assert!(
        checked
            .diagnostics
            .iter()
            .all(|d| !d.message.contains("no `lifetime`")),
        "{:#?}",
        checked.diagnostics
    );
}

/// The boolean keys of a topology, each placed in a lab as `value`.
fn booleans(value: &str) -> [String; 2] {
    [
        lab("lifetime: 4h\n").replace("public: true", &format!("public: {value}")),
        lab("lifetime: 4h\n").replace(
            "server: {}",
            &format!(
                "server:\n    ingress:\n      - {{ proto: tcp, ports: 80, from: [0.0.0.0/0], allow_world: {value} }}"
            ),
        ),
    ]
}

#[test]
fn booleans_are_yaml_1_2_core_booleans() {
    for value in ["true", "True", "TRUE"] {
        for text in booleans(value) {
            let checked = check(&text);
            assert!(
                errors(&checked).is_empty(),
                "{value}: {:#?}",
                checked.diagnostics
            );
        }
    }
    // False is read as false: the subnet has no way out, and the rule no consent.
    for value in ["false", "False", "FALSE"] {
        let [subnet, rule] = booleans(value).map(|text| check(&text));
        let messages =
            |c: &Checked| -> Vec<String> { errors(c).iter().map(|d| d.message.clone()).collect() };
        assert_eq!(
            messages(&subnet).len(),
            1,
            "{value}: {:#?}",
            subnet.diagnostics
        );
        assert!(messages(&subnet)[0].contains("has no route out"), "{value}");
        assert_eq!(messages(&rule).len(), 1, "{value}: {:#?}", rule.diagnostics);
        assert!(
            messages(&rule)[0].contains("would open tcp port 80"),
            "{value}"
        );
    }
}

#[test]
fn yaml_1_1_booleans_are_refused_at_the_value() {
    for value in ["yes", "no", "on", "off", "Yes", "NO", "On", "OFF", "y", "n"] {
        for text in booleans(value) {
            let checked = check(&text);
            let errs = errors(&checked);
            assert_eq!(errs.len(), 1, "{value}: {errs:#?}");
            let d = errs[0];
            assert_eq!(
                d.message,
                format!("`{value}` is not a boolean in YAML 1.2, which labctl and editors follow")
            );
            assert_eq!(d.hint.as_deref(), Some("write true or false"));
            let (line, col) = (d.pos.line as usize, d.pos.col as usize);
            let at = &text.lines().nth(line - 1).expect("line")[col - 1..];
            assert!(at.starts_with(value), "{value}: points at {at:?}");
        }
    }
}

#[test]
fn a_file_over_the_size_limit_is_too_large_not_an_alias_bomb() {
    // 12 MB of plain keys, no anchor anywhere.
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 12_000_000 {
        text.push_str(&format!("key{i}: value\n"));
        i += 1;
    }
    let d = only_error(&text);
    assert!(d.message.contains("too large"), "{d:?}");
    assert!(
        d.message.contains(&format!("({} bytes)", text.len())),
        "{d:?}"
    );
    assert!(d.message.contains("over the 1 MiB limit"), "{d:?}");
    assert!(!format!("{d:?}").contains("alias"), "{d:?}");
    assert_eq!(d.pos, Pos::new(1, 1));
}

#[test]
fn many_nodes_or_deep_nesting_under_the_size_limit_are_named_as_such() {
    // 150,000 plain nodes in 300 KB: too many, but written out, not expanded.
    let many = format!("list: [{}]\n", vec!["1"; 150_000].join(","));
    assert!(many.len() < labctl_core::yaml::MAX_FILE_BYTES);
    let d = only_error(&many);
    assert!(d.message.contains("more than 100000 YAML nodes"), "{d:?}");
    assert!(!format!("{d:?}").contains("alias"), "{d:?}");

    // As deep as allowed parses (on a test thread, the smallest stack labctl runs on);
    // one level deeper is refused before it costs any stack.
    let nested = |levels: usize| format!("{}{}\n", "[".repeat(levels), "]".repeat(levels));
    let max = labctl_core::yaml::MAX_DEPTH;
    assert!(labctl_core::yaml::parse(&nested(max)).is_ok());
    for levels in [max + 1, 10_000] {
        let d = labctl_core::yaml::parse(&nested(levels)).expect_err("too deep");
        assert_eq!(
            d.message,
            format!("the file nests more than {max} levels deep")
        );
    }
}
