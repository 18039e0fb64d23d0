//! Diagnostics: what validation says about a topology file, and where.
//!
//! Every problem carries a 1-based line and column so the CLI can print
//! `file:line:col: error: message`, the form editors and terminals turn into links.
//! Validation never stops at the first problem: it collects them all here.

use std::fmt;

use serde::Serialize;

/// A 1-based position in the topology file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub col: u32,
}

impl Pos {
    /// A position known to lie at `line`:`col`.
    pub const fn new(line: u32, col: u32) -> Self {
        Self { line, col }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// How serious a diagnostic is: errors fail validation, warnings and notes do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The topology cannot be used.
    Error,
    /// The topology works but probably not as intended, or is risky.
    Warning,
    /// Worth knowing about a choice that is fine as it is.
    Note,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        })
    }
}

/// One problem found in a topology file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong, naming the offending value.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// Renders the diagnostic as `file:line:col: severity: message; hint`.
    pub fn display_with_file<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        struct D<'a>(&'a Diagnostic, &'a str);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let d = self.0;
                write!(f, "{}:{}: {}: {}", self.1, d.pos, d.severity, d.message)?;
                if let Some(hint) = &d.hint {
                    write!(f, "; {hint}")?;
                }
                Ok(())
            }
        }
        D(self, file)
    }
}

/// An ordered collection of diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// Records an error at `pos`.
    pub fn error(&mut self, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Error, pos, message.into())
    }

    /// Records a warning at `pos`.
    pub fn warning(&mut self, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Warning, pos, message.into())
    }

    /// Records a note at `pos`.
    pub fn note(&mut self, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Note, pos, message.into())
    }

    fn push(&mut self, severity: Severity, pos: Pos, message: String) -> &mut Diagnostic {
        self.0.push(Diagnostic {
            severity,
            pos,
            message,
            hint: None,
        });
        self.0.last_mut().expect("just pushed")
    }

    /// True when at least one diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.0
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Number of diagnostics of any severity.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The diagnostics in file order (stable for equal positions).
    pub fn sorted(mut self) -> Self {
        self.0.sort_by_key(|d| d.pos);
        self
    }

    /// Iterates over the diagnostics.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl Diagnostic {
    /// Attaches a hint.
    pub fn hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attaches "did you mean `x`?" when a candidate is close enough to `got`.
    pub fn did_you_mean<'a>(
        &mut self,
        got: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> &mut Self {
        if let Some(best) = closest(got, candidates) {
            self.hint = Some(format!("did you mean `{best}`?"));
        }
        self
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The candidate closest to `got`, if it is close enough to be a plausible typo.
///
/// Two measures, because each misses what the other sees: Jaro-Winkler similarity
/// (at least 0.8) catches longer words with letters dropped or moved, but scores short
/// words low however slight the slip (`tll` for `ttl` is 0.8 at best); the count of
/// edits, a swap of neighbours counting as one, catches those: one edit per four
/// letters of the candidate, and at least one. The fewest edits win, then similarity.
pub fn closest<'a>(got: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter_map(|c| {
            let similarity = strsim::jaro_winkler(got, c);
            let edits = strsim::osa_distance(got, c);
            let allowed = (c.chars().count() / 4).max(1);
            (similarity >= 0.8 || edits <= allowed).then_some((edits, similarity, c))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_and_ignores_strangers() {
        let roles = ["server", "client"];
        assert_eq!(closest("clinet", roles), Some("client"));
        assert_eq!(closest("sever", roles), Some("server"));
        assert_eq!(closest("database", roles), None);
    }

    #[test]
    fn short_words_get_suggestions_too() {
        assert_eq!(closest("tll", ["zone", "ttl"]), Some("ttl"));
        assert_eq!(closest("tl", ["zone", "ttl"]), Some("ttl"));
        assert_eq!(closest("ot", ["proto", "ports", "to"]), Some("to"));
        assert_eq!(closest("xyz", ["zone", "ttl"]), None);
        assert_eq!(
            closest("id", ["name", "role", "type", "image", "count"]),
            None
        );
    }

    #[test]
    fn renders_file_line_col() {
        let mut d = Diagnostics::default();
        d.error(Pos::new(3, 7), "unknown role `clinet`")
            .did_you_mean("clinet", ["client"]);
        let line = d
            .iter()
            .next()
            .unwrap()
            .display_with_file("t.yaml")
            .to_string();
        assert_eq!(
            line,
            "t.yaml:3:7: error: unknown role `clinet`; did you mean `client`?"
        );
    }
}
