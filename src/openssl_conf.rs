//! OpenSSL's config syntax (`openssl.cnf`, `client.csr.cfg`, `-extfile`),
//! read into sections of ordered `key = value` entries that keep their line
//! numbers, so every later error can name the line.
//!
//! Follows OpenSSL's NCONF reader: `[section]` headers, `#` comments (and
//! whole-line `;` comments), single/double quotes, backslash escapes, a
//! trailing `\` continues the line, `$var`, `${var}`, `$sect::var` and
//! `${sect::var}` expansion. Keys outside any section belong to the
//! unnamed top section, [`DEFAULT_SECTION`].

use crate::error::{Error, Result};

/// The name OpenSSL gives the section before the first `[header]`.
pub const DEFAULT_SECTION: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based line number the entry starts on.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

impl Section {
    /// The last value of `key` (OpenSSL's lookup: a repeated key wins last).
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.key == key)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// What to call the file in errors (its path, or `<stdin>`).
    pub label: String,
    pub sections: Vec<Section>,
}

impl Config {
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Looks `key` up in `section`, then in the default section, as
    /// OpenSSL's `NCONF_get_string` does.
    pub fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        self.section(section)
            .and_then(|s| s.get(key))
            .or_else(|| self.section(DEFAULT_SECTION).and_then(|s| s.get(key)))
    }

    /// An error about line `line` of this file.
    pub fn error(&self, line: usize, why: impl Into<String>) -> Error {
        Error::config(&self.label, line, why)
    }

    pub fn parse(text: &str, label: &str) -> Result<Config> {
        let mut conf = Config {
            label: label.to_string(),
            sections: vec![Section {
                name: DEFAULT_SECTION.to_string(),
                line: 0,
                entries: Vec::new(),
            }],
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut current = 0usize;
        let mut lines = text.lines().enumerate();
        while let Some((idx, raw)) = lines.next() {
            let start_line = idx + 1;
            // Join continuation lines: an odd number of trailing backslashes.
            let mut logical = raw.trim_end_matches('\r').to_string();
            while ends_with_continuation(&logical) {
                logical.pop();
                match lines.next() {
                    Some((_, next)) => logical.push_str(next.trim_end_matches('\r')),
                    None => break,
                }
            }
            let line = logical.trim_start();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(end) = rest.find(']') else {
                    return Err(conf.error(start_line, "missing closing ']' in section header"));
                };
                let name = rest[..end].trim();
                if name.is_empty() || !name.chars().all(is_name_char) {
                    return Err(conf.error(start_line, format!("invalid section name '{name}'")));
                }
                let after = strip_comment(&rest[end + 1..]);
                if !after.trim().is_empty() {
                    return Err(conf.error(start_line, "unexpected text after section header"));
                }
                current = match conf.sections.iter().position(|s| s.name == name) {
                    Some(i) => i,
                    None => {
                        conf.sections.push(Section {
                            name: name.to_string(),
                            line: start_line,
                            entries: Vec::new(),
                        });
                        conf.sections.len() - 1
                    }
                };
                continue;
            }
            if line.starts_with(".include") || line.starts_with(".pragma") {
                return Err(conf.error(
                    start_line,
                    format!(
                        "'{}' directives are not supported",
                        line.split_whitespace().next().unwrap_or(line)
                    ),
                ));
            }
            let Some(eq) = line.find('=') else {
                return Err(conf.error(
                    start_line,
                    format!("expected 'key = value', found '{}'", line.trim()),
                ));
            };
            let key = line[..eq].trim();
            if key.is_empty() || !key.chars().all(is_name_char) {
                return Err(conf.error(start_line, format!("invalid key '{key}'")));
            }
            // `sect::key = v` writes into another section, as OpenSSL allows.
            let (target, key) = match key.split_once("::") {
                Some((s, k)) => (Some(s.to_string()), k.to_string()),
                None => (None, key.to_string()),
            };
            let value =
                conf.parse_value(&line[eq + 1..], start_line, &conf.sections[current].name)?;
            let idx = match target {
                Some(s) => match conf.sections.iter().position(|x| x.name == s) {
                    Some(i) => i,
                    None => {
                        conf.sections.push(Section {
                            name: s,
                            line: start_line,
                            entries: Vec::new(),
                        });
                        conf.sections.len() - 1
                    }
                },
                None => current,
            };
            conf.sections[idx].entries.push(Entry {
                key,
                value,
                line: start_line,
            });
        }
        Ok(conf)
    }

    /// Unquotes, unescapes, expands variables and drops a trailing comment.
    fn parse_value(&self, raw: &str, line: usize, section: &str) -> Result<String> {
        let mut out = String::new();
        let mut chars = raw.trim_start().chars().peekable();
        // Trailing unquoted whitespace is dropped; remember where quoted text ended.
        let mut keep_len = 0usize;
        while let Some(c) = chars.next() {
            match c {
                '#' => break,
                '"' | '\'' => {
                    let quote = c;
                    loop {
                        match chars.next() {
                            Some(q) if q == quote => break,
                            Some('\\') if quote == '"' => match chars.next() {
                                Some(e) => out.push(unescape(e)),
                                None => return Err(self.error(line, "unterminated quoted value")),
                            },
                            Some(ch) => out.push(ch),
                            None => return Err(self.error(line, "unterminated quoted value")),
                        }
                    }
                    keep_len = out.len();
                }
                '\\' => {
                    if let Some(e) = chars.next() {
                        out.push(unescape(e));
                        keep_len = out.len();
                    }
                }
                '$' => {
                    let (sect, name) = read_variable(&mut chars)
                        .ok_or_else(|| self.error(line, "'$' must be followed by a variable name (write '\\$' for a dollar sign)"))?;
                    let sect_name = sect.as_deref().unwrap_or(section);
                    let value = self
                        .get(sect_name, &name)
                        .map(|e| e.value.clone())
                        .or_else(|| {
                            if sect.as_deref() == Some("ENV") {
                                std::env::var(&name).ok()
                            } else {
                                None
                            }
                        })
                        .ok_or_else(|| {
                            self.error(line, format!("variable '{name}' has no value"))
                        })?;
                    out.push_str(&value);
                    keep_len = out.len();
                }
                _ => {
                    out.push(c);
                    if !c.is_whitespace() {
                        keep_len = out.len();
                    }
                }
            }
        }
        out.truncate(keep_len);
        Ok(out)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '_' | '.'
                | '-'
                | ':'
                | ';'
                | '!'
                | '%'
                | '&'
                | '*'
                | '+'
                | ','
                | '/'
                | '<'
                | '>'
                | '?'
                | '@'
                | '^'
                | '`'
                | '|'
                | '~'
        )
}

fn ends_with_continuation(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

fn strip_comment(s: &str) -> &str {
    s.split('#').next().unwrap_or("")
}

fn unescape(c: char) -> char {
    match c {
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'b' => '\u{8}',
        other => other,
    }
}

/// Reads `name`, `{name}`, `sect::name` or `{sect::name}` after a `$`.
fn read_variable(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Option<(Option<String>, String)> {
    let braced = chars.peek() == Some(&'{');
    if braced {
        chars.next();
    }
    let mut text = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            text.push(c);
            chars.next();
        } else {
            break;
        }
    }
    if braced && chars.next() != Some('}') {
        return None;
    }
    let (sect, name) = match text.split_once("::") {
        Some((s, n)) => (Some(s.to_string()), n.to_string()),
        None => (None, text),
    };
    if name.is_empty() {
        None
    } else {
        Some((sect, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_CSR_CFG: &str = "[req]\ndefault_bits = 2048\nprompt = no\ndefault_md = sha256\ndistinguished_name = dn\n[dn]\nC=CN\nST=ZJ\nL=HZ\nO=ALI\nOU=MQTT\nemailAddress=xxx@xxx\nCN=client-test\n";

    #[test]
    fn parses_the_seed_config() {
        let c = Config::parse(SEED_CSR_CFG, "client.csr.cfg").unwrap();
        assert_eq!(c.get("req", "distinguished_name").unwrap().value, "dn");
        let dn = c.section("dn").unwrap();
        let keys: Vec<_> = dn.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["C", "ST", "L", "O", "OU", "emailAddress", "CN"]);
        assert_eq!(dn.get("CN").unwrap().line, 13);
    }

    #[test]
    fn top_section_is_default_and_comments_are_dropped() {
        let c = Config::parse(
            "authorityKeyIdentifier=keyid,issuer # trailing\n; whole line\nbasicConstraints=CA:FALSE\n",
            "x",
        )
        .unwrap();
        let d = c.section(DEFAULT_SECTION).unwrap();
        assert_eq!(d.entries.len(), 2);
        assert_eq!(d.entries[0].value, "keyid,issuer");
    }

    #[test]
    fn quotes_escapes_continuations_and_variables() {
        let text = "base = acme\n[s]\na = \"  spaced # not comment \"\nb = one\\\n two\nc = $base-${base}\nd = ${s::a}x\ne = 50\\% \\#1\n";
        let c = Config::parse(text, "x").unwrap();
        let s = c.section("s").unwrap();
        assert_eq!(s.get("a").unwrap().value, "  spaced # not comment ");
        assert_eq!(s.get("b").unwrap().value, "one two");
        assert_eq!(s.get("c").unwrap().value, "acme-acme");
        assert_eq!(s.get("d").unwrap().value, "  spaced # not comment x");
        assert_eq!(s.get("e").unwrap().value, "50% #1");
    }

    #[test]
    fn errors_name_the_line() {
        let e = Config::parse("[ok]\na = 1\n[broken\n", "f.cfg").unwrap_err();
        assert_eq!(e.file.as_deref(), Some("f.cfg:3"));
        let e = Config::parse("a = 1\nnot a pair\n", "f.cfg").unwrap_err();
        assert_eq!(e.file.as_deref(), Some("f.cfg:2"));
        let e = Config::parse("a = $nope\n", "f.cfg").unwrap_err();
        assert!(e.why.contains("nope"));
    }

    #[test]
    fn repeated_key_lookup_takes_the_last() {
        let c = Config::parse("[s]\nk=1\nk=2\n", "x").unwrap();
        assert_eq!(c.get("s", "k").unwrap().value, "2");
        assert_eq!(c.section("s").unwrap().entries.len(), 2);
    }
}
