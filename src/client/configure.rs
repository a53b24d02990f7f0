//! `stsvend configure`: one AWS profile whose `credential_process` is this helper, written into
//! the user's AWS config file in place: other profiles, comments and blank lines stay byte for
//! byte; a profile stsvend did not write is only replaced when asked to.

use std::path::{Path, PathBuf};

/// The line that marks a profile as written by `stsvend configure`.
pub const MARKER: &str = "# written by stsvend configure; run it again to change this profile";

/// What goes into the profile.
pub struct Profile<'a> {
    pub name: &'a str,
    pub region: Option<&'a str>,
    /// The helper's command line, each argument as is (quoted here where needed).
    pub command: Vec<String>,
}

/// The AWS config file: `AWS_CONFIG_FILE`, else `~/.aws/config`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AWS_CONFIG_FILE") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws").join("config"))
}

/// An argument as botocore's `credential_process` splitting (POSIX shell words) reads it back.
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,~".contains(c));
    if plain {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn header(name: &str) -> String {
    if name == "default" {
        "[default]".to_owned()
    } else {
        format!("[profile {name}]")
    }
}

/// Whether `line` opens the section of profile `name` (`[profile  name ]` spacing as botocore
/// accepts it).
fn opens(line: &str, name: &str) -> bool {
    let t = line.trim();
    let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return false;
    };
    let inner = inner.trim();
    if name == "default" && inner == "default" {
        return true;
    }
    inner
        .strip_prefix("profile")
        .is_some_and(|rest| rest.starts_with(char::is_whitespace) && rest.trim() == name)
}

/// Why a config cannot be changed as asked.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The profile exists and was not written by stsvend (no `--force`).
    NotOurs(String),
}

/// `text` with `profile`'s section written: replaced in place when it exists (when it is ours,
/// or `force`), else appended. Everything outside that section is kept as it was.
pub fn update(text: &str, profile: &Profile<'_>, force: bool) -> Result<String, Refusal> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| opens(l, profile.name));
    let mut section = vec![header(profile.name), MARKER.to_owned()];
    if let Some(region) = profile.region {
        section.push(format!("region = {region}"));
    }
    let command: Vec<String> = profile.command.iter().map(|a| quote(a)).collect();
    section.push(format!("credential_process = {}", command.join(" ")));
    let block = section.join("\n") + "\n";
    let Some(start) = start else {
        let mut out = text.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&block);
        return Ok(out);
    };
    // The section runs to the next header; blank lines and comments just before that header
    // belong to what follows.
    let mut end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |i| start + 1 + i);
    let ours = lines[start + 1..end].iter().any(|l| l.trim() == MARKER);
    if !ours && !force {
        return Err(Refusal::NotOurs(profile.name.to_owned()));
    }
    while end > start + 1 {
        let l = lines[end - 1].trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            end -= 1;
        } else {
            break;
        }
    }
    let mut out = String::with_capacity(text.len() + block.len());
    for l in &lines[..start] {
        out.push_str(l);
    }
    out.push_str(&block);
    for l in &lines[end..] {
        out.push_str(l);
    }
    Ok(out)
}

/// Writes `text` to `path` (mode 0600 when new) through a temporary file and a rename, after
/// copying what was there to `<path>.stsvend-backup`. Returns the backup's path, if any.
pub fn write(path: &Path, text: &str) -> std::io::Result<Option<PathBuf>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let backup = if path.exists() {
        let mut name = path.as_os_str().to_owned();
        name.push(".stsvend-backup");
        let backup = PathBuf::from(name);
        std::fs::copy(path, &backup)?;
        Some(backup)
    } else {
        None
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".stsvend-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mode = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap_or(0o600);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(backup)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn profile(name: &str) -> Profile<'_> {
        Profile {
            name,
            region: Some("us-west-2"),
            command: vec![
                "/opt/my tools/stsvend".into(),
                "credential-process".into(),
                "--endpoint".into(),
                "https://data.example.org/s3credentials".into(),
                "--token-file".into(),
                "/home/a b/.edl_token".into(),
            ],
        }
    }

    const BEFORE: &str = "# my AWS setup\n[default]\nregion = us-east-1\n\n; work account\n[profile work]\nregion = eu-west-1\nrole_arn = arn:aws:iam::1:role/x\n\n# next\n[profile other]\noutput = json\n";

    #[test]
    fn a_new_profile_is_appended_and_nothing_else_changes() {
        let out = update(BEFORE, &profile("archive"), false).unwrap();
        assert!(out.starts_with(BEFORE), "{out}");
        assert_eq!(
            &out[BEFORE.len()..],
            format!("\n[profile archive]\n{MARKER}\nregion = us-west-2\ncredential_process = \"/opt/my tools/stsvend\" credential-process --endpoint https://data.example.org/s3credentials --token-file \"/home/a b/.edl_token\"\n")
        );
    }

    #[test]
    fn our_profile_is_replaced_in_place_keeping_the_neighbours_comments() {
        let first = update(BEFORE, &profile("work"), true).unwrap();
        let mut again = profile("work");
        again.region = Some("us-east-2");
        let second = update(&first, &again, false).unwrap();
        assert!(
            second.contains("; work account\n[profile work]\n"),
            "{second}"
        );
        assert!(
            second.contains("region = us-east-2\ncredential_process = "),
            "{second}"
        );
        assert!(
            !second.contains("eu-west-1") && !second.contains("role_arn"),
            "{second}"
        );
        assert!(
            second.contains("\n\n# next\n[profile other]\noutput = json\n"),
            "{second}"
        );
        assert!(
            second.starts_with("# my AWS setup\n[default]\nregion = us-east-1\n"),
            "{second}"
        );
        assert_eq!(second.matches("[profile work]").count(), 1);
    }

    #[test]
    fn a_profile_stsvend_did_not_write_is_refused_without_force() {
        assert_eq!(
            update(BEFORE, &profile("work"), false),
            Err(Refusal::NotOurs("work".into()))
        );
        assert_eq!(
            update(BEFORE, &profile("default"), false),
            Err(Refusal::NotOurs("default".into()))
        );
        assert!(update(BEFORE, &profile("default"), true)
            .unwrap()
            .contains("[default]\n# written by stsvend"));
    }

    #[test]
    fn arguments_are_quoted_the_way_shell_splitting_reads_them_back() {
        assert_eq!(quote("/usr/bin/stsvend"), "/usr/bin/stsvend");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("x\"y$z"), "\"x\\\"y\\$z\"");
        assert_eq!(quote(""), "\"\"");
    }
}
