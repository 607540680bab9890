//! Which devices a batch makes: CNs from a names file, or numbered
//! `PREFIX0001…`. Every name becomes a folder, so each is checked up front.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::{Error, Result};

/// The devices of one batch, in order.
pub enum DeviceNames {
    /// From a names file: the names and the line each came from.
    List {
        names: Vec<String>,
        lines: HashMap<String, usize>,
        label: String,
    },
    /// `prefix` + `start..start+count`, zero-padded to `width` digits.
    Numbered {
        prefix: String,
        start: u64,
        count: u64,
        width: usize,
    },
}

/// The width `--count` numbers get without `--width`: four digits, more
/// only when the last number needs them, so a fleet grown from 200 to
/// 1,000 devices keeps its names.
pub const DEFAULT_WIDTH: usize = 4;

impl DeviceNames {
    /// One CN per line, `#` comments and blank lines ignored. Duplicates
    /// and names unfit for a folder are refused, naming the line.
    pub fn from_text(text: &str, label: &str) -> Result<DeviceNames> {
        let mut lines = HashMap::new();
        let mut names = Vec::new();
        // Windows editors start UTF-8 files with a byte-order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let name = raw.trim();
            if name.is_empty() || name.starts_with('#') {
                continue;
            }
            check_folder_name(name).map_err(|why| Error::config(label, line, why))?;
            if let Some(first) = lines.insert(name.to_string(), line) {
                return Err(Error::config(
                    label,
                    line,
                    format!("duplicate device name '{name}' (first on line {first})"),
                ));
            }
            names.push(name.to_string());
        }
        if names.is_empty() {
            return Err(Error::parse("no devices", "the names file lists no device").file(label));
        }
        Ok(DeviceNames::List {
            names,
            lines,
            label: label.to_string(),
        })
    }

    /// `count` numbers from `start`, `width` digits (default
    /// [`DEFAULT_WIDTH`], more when the last number needs them). An explicit
    /// width too small for the last number is refused (the names would not
    /// line up).
    pub fn numbered(
        prefix: &str,
        start: u64,
        count: u64,
        width: Option<usize>,
    ) -> Result<DeviceNames> {
        let bad = |why: String| Error::parse("invalid device numbers", why);
        let last = start
            .checked_add(count.saturating_sub(1))
            .ok_or_else(|| bad(format!("--start {start} + --count {count} is too large")))?;
        let digits = last.to_string().len();
        let width = match width {
            Some(w) if w < digits => {
                return Err(bad(format!(
                    "device number {last} needs {digits} digits, more than --width {w}"
                )));
            }
            Some(w) => w,
            None => DEFAULT_WIDTH.max(digits),
        };
        let names = DeviceNames::Numbered {
            prefix: prefix.to_string(),
            start,
            count,
            width,
        };
        // The longest name is the last; the digits are safe characters.
        check_folder_name(&names.get(names.len().saturating_sub(1)))
            .map_err(|why| Error::parse("invalid --cn-prefix", why))?;
        Ok(names)
    }

    pub fn len(&self) -> usize {
        match self {
            DeviceNames::List { names, .. } => names.len(),
            DeviceNames::Numbered { count, .. } => *count as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th name (made on demand for numbered names: a million of
    /// them take no memory).
    pub fn get(&self, i: usize) -> Cow<'_, str> {
        match self {
            DeviceNames::List { names, .. } => Cow::Borrowed(&names[i]),
            DeviceNames::Numbered {
                prefix,
                start,
                width,
                ..
            } => Cow::Owned(format!("{prefix}{:0width$}", start + i as u64)),
        }
    }

    /// Whether `name` is one of these devices.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            DeviceNames::List { lines, .. } => lines.contains_key(name),
            DeviceNames::Numbered {
                prefix,
                start,
                count,
                width,
            } => name
                .strip_prefix(prefix.as_str())
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok())
                .is_some_and(|n| {
                    n >= *start
                        && n - start < *count
                        && name.len() == prefix.len() + width.max(&n.to_string().len())
                }),
        }
    }

    /// Refuses a device whose folder would be one of the batch's own files
    /// (`manifest.json`, a CSV manifest written into the folder), before
    /// any device is made: the batch would fail after issuing them all.
    pub fn refuse_own_files(&self, own: &[&str]) -> Result<()> {
        for file in own {
            if self.contains(file) {
                let why = format!("device name '{file}' is a file the batch itself writes there");
                return Err(match self {
                    DeviceNames::List { lines, label, .. } => {
                        Error::config(label, lines[*file], why)
                    }
                    DeviceNames::Numbered { .. } => Error::parse("invalid --cn-prefix", why),
                }
                .hint("rename the device"));
            }
        }
        Ok(())
    }
}

/// A CN becomes a folder name: keep to characters that are safe on every
/// filesystem and in shells, and never `.`/`..`, a path, or a name starting
/// with `.` (devcert's temp files and folders start with `.devcert-`).
pub fn check_folder_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if !ok_chars || name.is_empty() || name.starts_with('.') || name.len() > 64 {
        return Err(format!(
            "'{name}' is not a safe folder name (use up to 64 of A-Z a-z 0-9 - _ . @, not starting with '.')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Vec<String> {
        match DeviceNames::from_text(text, "n").unwrap() {
            DeviceNames::List { names, .. } => names,
            _ => unreachable!(),
        }
    }

    #[test]
    fn names_file_starting_with_a_byte_order_mark() {
        assert_eq!(list("\u{feff}dev-1\r\ndev-2\r\n"), ["dev-1", "dev-2"]);
    }

    #[test]
    fn names_file_rules() {
        assert_eq!(list("# fleet\n\ndev-1\n dev-2 \n"), ["dev-1", "dev-2"]);
        let e = DeviceNames::from_text("a\nb\na\n", "names.txt")
            .err()
            .unwrap();
        assert_eq!(e.file.as_deref(), Some("names.txt:3"));
        let e = DeviceNames::from_text("ok\n../etc\n", "names.txt")
            .err()
            .unwrap();
        assert_eq!(e.file.as_deref(), Some("names.txt:2"));
        assert!(DeviceNames::from_text("# nothing\n", "n").is_err());
        assert!(DeviceNames::from_text("a b\n", "n").is_err());
        assert!(DeviceNames::from_text(".devcert-x.tmp\n", "n").is_err());
    }

    #[test]
    fn numbered_names_are_four_digits_unless_more_are_needed() {
        let n = DeviceNames::numbered("dev-", 1, 10, None).unwrap();
        assert_eq!(
            (n.get(0).as_ref(), n.get(9).as_ref()),
            ("dev-0001", "dev-0010")
        );
        let n = DeviceNames::numbered("d", 9_999, 3, None).unwrap();
        assert_eq!((n.get(0).as_ref(), n.get(2).as_ref()), ("d09999", "d10001"));
        let n = DeviceNames::numbered("d", 201, 799, Some(3)).unwrap();
        assert_eq!(n.get(0), "d201");
        assert!(DeviceNames::numbered("d", 990, 20, Some(3)).is_err());
        assert!(DeviceNames::numbered("../x", 1, 1, None).is_err());
        assert!(DeviceNames::numbered("d", u64::MAX, 2, None).is_err());
    }

    #[test]
    fn membership_matches_the_names_made() {
        let n = DeviceNames::numbered("s-", 201, 800, None).unwrap();
        assert!(n.contains("s-0201") && n.contains("s-1000"));
        for other in ["s-201", "s-0200", "s-1001", "s-", "x-0201", "s-02a1"] {
            assert!(!n.contains(other), "{other}");
        }
        let n = DeviceNames::from_text("a\nmanifest.json\n", "names.txt").unwrap();
        let e = n.refuse_own_files(&["manifest.json"]).unwrap_err();
        assert_eq!(e.file.as_deref(), Some("names.txt:2"));
        assert!(n.refuse_own_files(&["fleet.csv"]).is_ok());
    }
}
