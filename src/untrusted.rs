//! Text an instance wrote, made safe to print.
//!
//! Anything on an instance can write its report or name its files, so nothing it
//! wrote reaches the terminal as it is: an escape sequence could move the cursor,
//! rewrite earlier lines, retitle the window or hide text, and bidirectional
//! overrides could make a line read differently from what it holds. Every string
//! read from the bucket passes through here before it is shown.

/// One line: control characters, including line breaks, become nothing or a space.
pub fn line(s: &str) -> String {
    clean(s, false)
}

/// Several lines: line breaks are kept, every other control character removed.
pub fn text(s: &str) -> String {
    clean(s, true)
}

fn clean(s: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' | '\t' => out.push(' '),
            c if is_unsafe(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// C0 and C1 controls, DEL, and the invisible characters that reorder or hide text.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}' // zero-width spaces and marks
                | '\u{202A}'..='\u{202E}' // bidirectional embeddings and overrides
                | '\u{2066}'..='\u{2069}' // bidirectional isolates
                | '\u{FEFF}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_controls_never_reach_the_terminal() {
        let hostile = "ok\x1b[2J\x1b]0;pwned\x07\r\x1b[1Aready\u{9b}31m\u{202e}gnp.exe\x00";
        let shown = line(hostile);
        assert_eq!(shown, "ok[2J]0;pwned[1Aready31mgnp.exe");
        assert!(!shown.chars().any(is_unsafe));
        assert_eq!(text("a\nb\r\n\tc"), "a\nb\n c");
        assert_eq!(line("a\nb"), "a b");
        assert_eq!(line("naïve — 日本"), "naïve — 日本", "printable text stays");
    }
}
