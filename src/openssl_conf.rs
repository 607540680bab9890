//! OpenSSL's config syntax (`openssl.cnf`, `client.csr.cfg`, `-extfile`),
//! read into sections of ordered `key = value` entries that keep their line
//! numbers, so every later error can name the line.
//!
//! Follows OpenSSL's NCONF reader: `[section]` headers, `#` comments (and
//! whole-line `;` comments), single/double quotes, backslash escapes, a
//! trailing `\` continues the line, `$var`, `${var}`, `$sect::var` and
//! `${sect::var}` expansion. Keys outside any section belong to the
//! unnamed top section, [`DEFAULT_SECTION`].

use std::collections::HashMap;

use crate::error::{Error, Result};

/// The name OpenSSL gives the section before the first `[header]`.
pub const DEFAULT_SECTION: &str = "default";

/// OpenSSL's `MAX_CONF_VALUE_LENGTH`: a value that expands to this many
/// bytes or more is an error ("variable expansion too long"), so `a=$b$b`, `b=$c$c`, ... cannot
/// double its way to gigabytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// All values of one file together: 64 KiB values on every line of a
/// 10 MiB file would still be gigabytes.
pub const MAX_TOTAL_VALUE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based line number the entry starts on.
    pub line: usize,
    /// Text `$ENV::VAR` put into the value (directly or through another
    /// variable), as (VAR, text): errors about this entry never show it.
    pub from_env: Vec<(String, String)>,
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

    /// An error about line `line` of this file. Text the environment put
    /// into that line's value is masked out of `why`: a config may take a
    /// secret from `$ENV::`, and errors end up in CI logs.
    pub fn error(&self, line: usize, why: impl Into<String>) -> Error {
        let mut why = why.into();
        for entry in self.sections.iter().flat_map(|s| &s.entries) {
            if entry.line == line {
                for (var, text) in &entry.from_env {
                    why = mask_env_text(&why, text, var);
                }
            }
        }
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
        // Lookups by name through maps: a 10 MiB file of sections or of
        // `$var` references must not take quadratic time.
        let mut index = Index::default();
        index.sections.insert(DEFAULT_SECTION.to_string(), 0);
        let mut total = 0usize;
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
                current = index.section(&mut conf, name, start_line);
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
            let mut entry = conf.parse_value(&index, &line[eq + 1..], start_line, current)?;
            total += entry.value.len();
            if total > MAX_TOTAL_VALUE_BYTES {
                return Err(conf.error(
                    start_line,
                    format!(
                        "the values of this file add up to more than {} MiB",
                        MAX_TOTAL_VALUE_BYTES >> 20
                    ),
                ));
            }
            // `sect::key = v` writes into another section, as OpenSSL allows.
            let (target, key) = match key.split_once("::") {
                Some((s, k)) => (index.section(&mut conf, s, start_line), k),
                None => (current, key),
            };
            entry.key = key.to_string();
            index.keys.insert(
                (target, entry.key.clone()),
                conf.sections[target].entries.len(),
            );
            conf.sections[target].entries.push(entry);
        }
        Ok(conf)
    }

    /// Unquotes, unescapes, expands variables and drops a trailing comment;
    /// the entry's key is filled in by the caller.
    fn parse_value(&self, index: &Index, raw: &str, line: usize, section: usize) -> Result<Entry> {
        let mut out = String::new();
        let mut from_env = Vec::new();
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
                    // OpenSSL's order: the named (or current) section, the
                    // environment for `ENV`, then the default section.
                    let own = match sect.as_deref() {
                        Some(s) => index.sections.get(s).copied(),
                        None => Some(section),
                    };
                    let found = own.and_then(|s| index.entry(self, s, &name));
                    let env = sect.as_deref() == Some("ENV") && found.is_none();
                    if env && crate::passphrase::is_protected_env_var(&name) {
                        return Err(self.error(
                            line,
                            format!("$ENV::{name} holds a passphrase; a config must not copy it"),
                        ));
                    }
                    match (found, env.then(|| std::env::var(&name).ok()).flatten()) {
                        (None, Some(value)) => {
                            out.push_str(&value);
                            from_env.push((name, value));
                        }
                        (found, _) => {
                            let e =
                                found
                                    .or_else(|| index.entry(self, 0, &name))
                                    .ok_or_else(|| {
                                        self.error(line, format!("variable '{name}' has no value"))
                                    })?;
                            out.push_str(&e.value);
                            from_env.extend(e.from_env.iter().cloned());
                        }
                    }
                    if out.len() >= MAX_VALUE_BYTES {
                        return Err(
                            self.error(line, "variable expansion too long (64 KiB or more)")
                        );
                    }
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
        Ok(Entry {
            key: String::new(),
            value: out,
            line,
            from_env,
        })
    }
}

/// Where each section and each section's last `key` sit while parsing.
#[derive(Default)]
struct Index {
    sections: HashMap<String, usize>,
    keys: HashMap<(usize, String), usize>,
}

impl Index {
    /// The section called `name`, created (at `line`) if new.
    fn section(&mut self, conf: &mut Config, name: &str, line: usize) -> usize {
        *self.sections.entry(name.to_string()).or_insert_with(|| {
            conf.sections.push(Section {
                name: name.to_string(),
                line,
                entries: Vec::new(),
            });
            conf.sections.len() - 1
        })
    }

    /// The last entry called `name` in section number `sect`.
    fn entry<'c>(&self, conf: &'c Config, sect: usize, name: &str) -> Option<&'c Entry> {
        let e = self.keys.get(&(sect, name.to_string()))?;
        Some(&conf.sections[sect].entries[*e])
    }
}

/// `why` with every run of 3 or more characters that also occurs in `text`
/// (2 for a 2-character `text`) replaced by `$ENV::var`: an error may echo
/// a value whole, in part, or item by item.
fn mask_env_text(why: &str, text: &str, var: &str) -> String {
    let min = text.chars().count().min(3);
    if min < 2 {
        return why.to_string();
    }
    // Errors are short; a value-sized one is cut first, keeping this fast.
    let chars: Vec<char> = why.chars().take(2000).collect();
    let (mut out, mut i) = (String::new(), 0);
    while i < chars.len() {
        let span = |k: usize| chars[i..i + k].iter().collect::<String>();
        let mut k = 0;
        if i + min <= chars.len() && text.contains(&span(min)) {
            k = min;
            while i + k < chars.len() && text.contains(&span(k + 1)) {
                k += 1;
            }
        }
        if k > 0 {
            out.push_str(&format!("$ENV::{var}"));
            i += k;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
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

    /// The review's 680-byte file: each line doubles the last.
    fn doubling(lines: usize) -> String {
        let mut t = String::from("v0 = 0123456789abcdef0123456789abcdef\n");
        for i in 1..=lines {
            t.push_str(&format!("v{i} = $v{p}$v{p}\n", p = i - 1));
        }
        t
    }

    #[test]
    fn expansion_stops_at_64_kib_naming_the_line() {
        // 2^10 * 32 bytes fit; 2^11 * 32 = 64 KiB is one byte too many
        // for OpenSSL too (tests/review.rs runs both).
        assert!(Config::parse(&doubling(10), "x").is_ok());
        let e = Config::parse(&doubling(40), "big.cnf").unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Config);
        assert_eq!(e.file.as_deref(), Some("big.cnf:12"));
        assert!(e.why.contains("variable expansion too long"), "{}", e.why);
    }

    #[test]
    fn all_values_together_are_capped() {
        let v = "a".repeat(60 * 1024);
        let mut t = format!("big = {v}\n");
        for i in 0..300 {
            t.push_str(&format!("k{i} = $big\n"));
        }
        let e = Config::parse(&t, "x").unwrap_err();
        assert!(e.why.contains("more than 16 MiB"), "{}", e.why);
    }

    #[test]
    fn many_sections_and_references_parse_in_linear_time() {
        // Quadratic lookups would take minutes on these.
        let mut t = String::new();
        for i in 0..100_000 {
            t.push_str(&format!("[s{i}]\nk{i} = x\n"));
        }
        t.push_str(&"r = $k99999\n".repeat(100_000));
        let c = Config::parse(&t, "x").unwrap();
        assert_eq!(c.sections.len(), 100_001);
    }

    #[test]
    fn env_text_is_masked_in_errors_whole_or_in_part() {
        let secret = "Hunter2-correct-horse";
        let e = Config {
            label: "c".into(),
            sections: vec![Section {
                name: DEFAULT_SECTION.into(),
                line: 0,
                entries: vec![Entry {
                    key: "k".into(),
                    value: format!("x{secret}"),
                    line: 3,
                    from_env: vec![("SECRET".into(), secret.into())],
                }],
            }],
        }
        .error(
            3,
            format!("'x{secret}' is bad; 'Hunter2' and 'horse' too, got 21"),
        );
        assert_eq!(
            e.why,
            "'x$ENV::SECRET' is bad; '$ENV::SECRET' and '$ENV::SECRET' too, got 21"
        );
    }

    #[test]
    fn env_origin_follows_variables() {
        // SAFETY: unit tests of this module do not read this variable elsewhere.
        unsafe { std::env::set_var("DEVCERT_TEST_CONF_ORIGIN", "s3cr3t") };
        let c =
            Config::parse("a = $ENV::DEVCERT_TEST_CONF_ORIGIN\n[s]\nb = <${a}>\n", "x").unwrap();
        let b = c.get("s", "b").unwrap();
        assert_eq!(b.value, "<s3cr3t>");
        assert_eq!(
            b.from_env,
            [("DEVCERT_TEST_CONF_ORIGIN".into(), "s3cr3t".into())]
        );
    }

    #[test]
    fn a_passphrase_variable_is_never_expanded() {
        crate::passphrase::protect_env_var("DEVCERT_TEST_CONF_PASS");
        // SAFETY: as above.
        unsafe { std::env::set_var("DEVCERT_TEST_CONF_PASS", "pw") };
        let e = Config::parse("[s]\nCN = $ENV::DEVCERT_TEST_CONF_PASS\n", "x").unwrap_err();
        assert_eq!(e.file.as_deref(), Some("x:2"));
        assert!(e.why.contains("holds a passphrase"), "{}", e.why);
        let e = Config::parse("CN = ${ENV::DEVCERT_PKCS11_PIN}\n", "x").unwrap_err();
        assert!(e.why.contains("holds a passphrase"), "{}", e.why);
    }
}
