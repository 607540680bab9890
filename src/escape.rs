//! Text from certificates, CSRs, keys and file names made safe to print:
//! a crafted value must not move the cursor, erase a line or reorder text
//! on the terminal that shows it (a CSR could hide its own `CA:TRUE`).

use std::borrow::Cow;

/// Characters a terminal acts on instead of showing: C0 controls, DEL, C1
/// controls (U+0080–U+009F, CSI among them), and the bidirectional marks,
/// embeddings, overrides and isolates that reorder what follows.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with each unsafe character written as `\x1B`, or `\u{202E}` above
/// U+00FF; everything else unchanged.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match u32::from(c) {
            _ if !is_unsafe(c) => out.push(c),
            n if n <= 0xFF => out.push_str(&format!("\\x{n:02X}")),
            n => out.push_str(&format!("\\u{{{n:04X}}}")),
        }
    }
    Cow::Owned(out)
}

/// JSON text with every unsafe character as a `\uXXXX` escape: the same
/// JSON value (they can only occur inside strings), safe on a terminal.
/// serde_json escapes C0 controls itself; DEL, C1 and bidi it writes raw.
pub fn json(s: String) -> String {
    // A raw C0 character is the document's own whitespace (serde escapes
    // them inside strings): left alone.
    let escape = |c: char| c >= ' ' && is_unsafe(c);
    if !s.chars().any(escape) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if escape(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_shown_not_obeyed() {
        assert_eq!(text("plain é ✓"), "plain é ✓");
        assert_eq!(text("a\x1b[2K\rCA:FALSE"), "a\\x1B[2K\\x0DCA:FALSE");
        assert_eq!(text("x\u{9b}y\u{7f}\n"), "x\\x9By\\x7F\\x0A");
        assert_eq!(text("evil\u{202e}gnp.exe"), "evil\\u{202E}gnp.exe");
    }

    #[test]
    fn json_escapes_decode_to_the_same_value() {
        let v = serde_json::json!({ "s": "a\u{7f}\u{9b}\u{202e}\u{1b}é" });
        let raw = serde_json::to_string_pretty(&v).unwrap();
        let safe = json(raw);
        assert!(!safe.chars().any(|c| c != '\n' && is_unsafe(c)), "{safe}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap(), v);
    }
}
