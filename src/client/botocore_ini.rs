//! The AWS config file as botocore reads it, so that `configure` can check that what it wrote
//! means to the SDK what it meant to us. botocore opens the file with Python's universal
//! newlines (a lone `\r` ends a line, which Rust's `lines()` does not do) and parses it with
//! `configparser.RawConfigParser` (strict: a repeated section or key fails the whole file;
//! full-line `#`/`;` comments; an indented line continues the previous value), then names a
//! profile by shell-splitting a section that starts with `profile` into exactly two words.

use std::collections::BTreeMap;

/// A profile's keys (lower-cased, as configparser stores them) and values.
pub type Keys = BTreeMap<String, String>;

/// Every profile botocore would see, by name.
pub type Profiles = BTreeMap<String, Keys>;

/// Python's universal newlines: `\r\n`, `\r` and `\n` each end a line.
fn universal_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            b'\r' => {
                out.push(&text[start..i]);
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// A section as configparser holds it: its header, then each key with its value's lines.
type Section = (String, Vec<(String, Vec<String>)>);

/// configparser's sections in order.
fn sections(text: &str) -> Result<Vec<Section>, String> {
    let mut out: Vec<Section> = Vec::new();
    let mut seen_sections = std::collections::HashSet::new();
    let mut current: Option<usize> = None;
    let mut has_option = false;
    let mut indent_level = 0usize;
    for (n, line) in universal_lines(text).into_iter().enumerate() {
        let stripped = line.trim();
        let comment = stripped.starts_with('#') || stripped.starts_with(';');
        let value = if comment { "" } else { stripped };
        if value.is_empty() {
            // An empty line joins the current value (empty_lines_in_values), a comment does not.
            if !comment && has_option {
                if let Some(opt) = current.and_then(|c| out[c].1.last_mut()) {
                    opt.1.push(String::new());
                }
            }
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if let (Some(c), true) = (current, has_option && indent > indent_level) {
            if let Some(opt) = out[c].1.last_mut() {
                opt.1.push(value.to_owned());
            }
            continue;
        }
        indent_level = indent;
        if let Some(rest) = value.strip_prefix('[') {
            if let Some(close) = rest.rfind(']').filter(|&i| i > 0) {
                let header = rest[..close].to_owned();
                if !seen_sections.insert(header.clone()) {
                    return Err(format!("line {}: section [{header}] again", n + 1));
                }
                out.push((header, Vec::new()));
                current = Some(out.len() - 1);
                has_option = false;
                continue;
            }
        }
        let Some(c) = current else {
            return Err(format!("line {}: a key before any [section]", n + 1));
        };
        let Some(at) = value.find(['=', ':']) else {
            return Err(format!(
                "line {}: neither a key = value nor a [section]",
                n + 1
            ));
        };
        let key = value[..at].trim_end().to_lowercase();
        if key.is_empty() {
            return Err(format!("line {}: a value without a key", n + 1));
        }
        if out[c].1.iter().any(|(k, _)| *k == key) {
            return Err(format!("line {}: key {key} again in its section", n + 1));
        }
        out[c]
            .1
            .push((key, vec![value[at + 1..].trim().to_owned()]));
        has_option = true;
    }
    Ok(out)
}

/// The profiles in `text` as botocore builds them, or why botocore would refuse the file.
pub fn profiles(text: &str) -> Result<Profiles, String> {
    let mut profiles = Profiles::new();
    for (header, options) in sections(text)? {
        let name = if header == "default" {
            Some(header.clone())
        } else if header.starts_with("profile") {
            shlex::split(&header)
                .filter(|parts| parts.len() == 2)
                .and_then(|mut parts| parts.pop())
        } else {
            None
        };
        let Some(name) = name else { continue };
        let keys: Keys = options
            .into_iter()
            .map(|(k, lines)| (k, lines.join("\n").trim_end().to_owned()))
            .collect();
        profiles.insert(name, keys);
    }
    Ok(profiles)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_carriage_return_ends_a_line() {
        let text = "[profile archive]\nregion = us-west-2\rcredential_process = evil\r[profile zz]\ncredential_process = mine\n";
        let p = profiles(text).unwrap();
        assert_eq!(p["archive"]["credential_process"], "evil");
        assert_eq!(p["archive"]["region"], "us-west-2");
        assert_eq!(p["zz"]["credential_process"], "mine");
    }

    #[test]
    fn sections_comments_continuations_and_names_as_configparser_reads_them() {
        let text = "# top\n[default]\nregion=eu-west-1\n; note\n[profile  \"my x\" ]\ns3 =\n  addressing_style = path\nKey : v\n\n[profilefoo bar]\na = 1\n[preview]\nb = 2\n";
        let p = profiles(text).unwrap();
        assert_eq!(p["default"]["region"], "eu-west-1");
        assert_eq!(p["my x"]["s3"], "\naddressing_style = path");
        assert_eq!(p["my x"]["key"], "v");
        assert_eq!(p["bar"]["a"], "1", "botocore only checks the prefix");
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn what_configparser_refuses_is_refused() {
        assert!(profiles("[a]\nx = 1\n[a]\n").is_err());
        assert!(profiles("[a]\nx = 1\nX = 2\n").is_err());
        assert!(profiles("x = 1\n").is_err());
        assert!(profiles("[a]\njunk\n").is_err());
    }
}
