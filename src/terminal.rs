//! The one escaping of text for the terminal. Messages carry text from
//! outside (tar entry names, a registry's error codes, platform strings,
//! paths from a spec); a control character in it could move the cursor,
//! erase the line (`ESC[2K\r`) or hide what follows, and a bidirectional
//! override could reorder it. Every message goes through [`escape`] where
//! it is printed.

use std::fmt::Write as _;

/// `text` with every control character (C0, DEL, C1) and every Unicode
/// bidirectional control written as a visible escape (`\x1b`, `\n`,
/// `\u{202e}`), and a backslash doubled only where it could be taken for
/// one of those.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (0x80..0xa0).contains(&(c as u32)) || is_bidi_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The characters that change the direction of the text after them.
fn is_bidi_control(c: char) -> bool {
    matches!(c as u32, 0x061c | 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn controls_become_visible() {
        assert_eq!(escape("a\x1b[2K\rb"), "a\\x1b[2K\\rb");
        assert_eq!(escape("line\nnext\ttab\x7f"), "line\\nnext\\ttab\\x7f");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
    }

    #[test]
    fn plain_text_is_unchanged() {
        let text = "layer 2 of ./base.tar: entry \"äöü/日本\" is fine";
        assert_eq!(escape(text), text);
    }
}
