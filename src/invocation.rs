//! How labctl was invoked, for messages.
//!
//! A hint that names the next command must work when pasted: `labctl -f ../lab.yaml up`
//! ends with "take it down with `labctl -f ../lab.yaml down`", not a bare `labctl down`
//! that would look for another file. Errors about a setting name where it came from
//! (`--region` or `LABCTL_REGION`).

use std::sync::OnceLock;

use clap::ArgMatches;
use clap::parser::ValueSource;

use crate::cli::GlobalArgs;

/// The options that choose which lab a command acts on, as the user gave them.
#[derive(Debug, Default)]
struct Invocation {
    /// `-f FILE`, when it is not the default.
    file: Option<String>,
    /// `--region R`, when given on the command line.
    region: Option<String>,
    /// `--profile P`.
    profile: Option<String>,
    /// Where the region came from: `--region` or `LABCTL_REGION`.
    region_origin: Option<&'static str>,
}

static INVOCATION: OnceLock<Invocation> = OnceLock::new();

/// Records the invocation; called once, right after parsing.
pub fn record(matches: &ArgMatches, global: &GlobalArgs) {
    // Global options may sit on the subcommand's matches too; either place counts.
    let source = |id: &str| {
        let mut m = matches;
        let mut found = m.value_source(id);
        while let Some((_, sub)) = m.subcommand() {
            if let Some(s) = sub.value_source(id) {
                found = Some(s);
            }
            m = sub;
        }
        found
    };
    let file = global.file.to_string_lossy();
    let region_origin = match source("region") {
        Some(ValueSource::EnvVariable) => Some("LABCTL_REGION"),
        Some(_) => Some("--region"),
        None => None,
    };
    let _ = INVOCATION.set(Invocation {
        file: (file != "topology.yaml" && source("file") == Some(ValueSource::CommandLine))
            .then(|| file.into_owned()),
        region: (region_origin == Some("--region"))
            .then(|| global.region.clone())
            .flatten(),
        profile: global.profile.clone(),
        region_origin,
    });
}

/// A labctl command line for a hint: `rest` after the options that chose this lab.
pub fn command(rest: &str) -> String {
    let mut words = vec!["labctl".to_owned()];
    if let Some(i) = INVOCATION.get() {
        for (flag, value) in [
            ("-f", &i.file),
            ("--region", &i.region),
            ("--profile", &i.profile),
        ] {
            if let Some(v) = value {
                words.push(flag.to_owned());
                words.push(quote(v));
            }
        }
    }
    words.push(rest.to_owned());
    words.join(" ")
}

/// How the region given to labctl is named in messages.
pub fn region_origin() -> &'static str {
    INVOCATION
        .get()
        .and_then(|i| i.region_origin)
        .unwrap_or("--region")
}

/// A word as a POSIX shell reads it back, for commands that messages suggest.
pub fn quote(word: &str) -> String {
    shlex::try_quote(word).map_or_else(|_| word.to_owned(), |q| q.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(quote("../lab.yaml"), "../lab.yaml");
        assert_eq!(quote("my lab.yaml"), "'my lab.yaml'");
        assert_eq!(quote("it's.yaml"), "\"it's.yaml\"");
    }
}
