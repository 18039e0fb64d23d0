//! Human renderings of the desired state: an indented list and Graphviz DOT.
//!
//! `labctl graph` shows these so a user sees what a topology creates before any AWS
//! call; they are plain functions of [`Desired`] so snapshots pin them down.

use std::fmt::Write;

use crate::desired::Desired;

/// One block per resource in creation order: address and AWS name, its attributes, and
/// what it waits for. Waves group what can be created at the same time.
pub fn render_text(desired: &Desired) -> String {
    let mut out = String::new();
    let waves = desired.waves();
    for (i, wave) in waves.iter().enumerate() {
        let _ = writeln!(out, "# step {} ({} in parallel)", i + 1, wave.len());
        for r in wave {
            let _ = writeln!(out, "+ {}  ({})", r.address, r.name);
            for a in r.attributes() {
                let _ = writeln!(out, "    {}: {}", a.name, a.value);
            }
            let present: Vec<_> = r
                .depends_on()
                .into_iter()
                .filter(|d| desired.get(d).is_some())
                .collect();
            if !present.is_empty() {
                let deps: Vec<String> = present.iter().map(ToString::to_string).collect();
                let _ = writeln!(out, "    after: {}", deps.join(", "));
            }
        }
    }
    let _ = writeln!(
        out,
        "{} resources for lab `{}`, created in {} steps.",
        desired.resources.len(),
        desired.lab,
        waves.len()
    );
    out
}

/// Graphviz DOT: an edge from each resource to what it depends on.
pub fn render_dot(desired: &Desired) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", desired.lab);
    let _ = writeln!(
        out,
        "  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];"
    );
    for r in &desired.resources {
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\"];",
            r.address, r.address, r.name
        );
        for dep in r.depends_on().iter().filter(|d| desired.get(d).is_some()) {
            let _ = writeln!(out, "  \"{}\" -> \"{}\";", r.address, dep);
        }
    }
    out.push_str("}\n");
    out
}
