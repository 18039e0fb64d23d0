//! labnet's command line as scripts see it: usage errors exit 1 with the problem on
//! stderr, and `--help` and `--version` exit 0 with their text on stdout.

mod support;

use support::run;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn usage_errors_exit_1_and_name_the_problem() {
    let cases: &[(&[&str], &str)] = &[
        // An unknown flag.
        (&["load", "--bogus"], "'--bogus'"),
        // A flag whose value is missing.
        (&["load", "--clients"], "a value is required for '--clients"),
        // A value out of range.
        (&["load", "--clients", "0"], "--clients"),
        // A time that is not a number of seconds.
        (
            &["load", "--close-grace", "soon"],
            "is not a number of seconds",
        ),
        // No program at all.
        (&[], "Usage: labnet <COMMAND>"),
        // An unknown program.
        (&["intro-client"], "unrecognized subcommand 'intro-client'"),
    ];
    for (args, needle) in cases {
        let out = run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "labnet {args:?}: {err}");
        assert!(
            err.contains(needle),
            "labnet {args:?}: no {needle:?} in {err}"
        );
        assert!(out.stdout.is_empty(), "labnet {args:?} wrote to stdout");
    }
}

#[test]
fn help_and_version_exit_0_on_stdout() {
    for args in [&["--help"][..], &["load", "--help"], &["--version"]] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "labnet {args:?}: {}",
            stderr(&out)
        );
        assert!(!out.stdout.is_empty(), "labnet {args:?} printed nothing");
        assert!(out.stderr.is_empty(), "labnet {args:?}: {}", stderr(&out));
    }
    let help = String::from_utf8_lossy(&run(&["--help"]).stdout).into_owned();
    assert!(help.contains("usage errors included"), "{help}");
}
