//! `stsvend configure`: one AWS profile whose `credential_process` is this helper, written into
//! the user's AWS config file in place: other profiles, comments and blank lines stay byte for
//! byte; a profile stsvend did not write is only replaced when asked to.

use std::path::{Path, PathBuf};

/// The line that marks a profile as written by `stsvend configure`.
pub const MARKER: &str = "# written by stsvend configure; run it again to change this profile";

/// What goes into the profile.
pub struct Profile<'a> {
    pub name: &'a str,
    pub region: Option<&'a super::checked::Region>,
    /// The helper's command line, each argument as is (quoted here where needed).
    pub command: Vec<String>,
}

/// The AWS config file: `AWS_CONFIG_FILE`, else `~/.aws/config`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AWS_CONFIG_FILE") {
        return Some(PathBuf::from(p));
    }
    crate::common::home_dir().map(|h| h.join(".aws").join("config"))
}

/// An argument as one word for both readers of `credential_process`: botocore and the AWS CLI
/// split it with Python's `shlex.split`, the AWS SDKs for Rust and Go hand it to `sh -c`.
/// Single quotes mean the same to both (nothing inside is special); a single quote itself is
/// `'\''`. Plain words are left bare when no shell would expand them.
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', "'\\''"))
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
    /// A value that cannot be written as itself (the reason, one line).
    Invalid(String),
}

impl Profile<'_> {
    /// Every value the section would hold, checked before anything is written.
    fn check(&self) -> Result<(), Refusal> {
        super::checked::profile_name(self.name).map_err(Refusal::Invalid)?;
        for arg in &self.command {
            super::checked::config_text("the argument", arg).map_err(Refusal::Invalid)?;
        }
        Ok(())
    }

    /// `credential_process` as written.
    fn process(&self) -> String {
        let words: Vec<String> = self.command.iter().map(|a| quote(a)).collect();
        words.join(" ")
    }
}

/// `text` with `profile`'s section written: replaced in place when it exists (when it is ours,
/// or `force`), else appended. Everything outside that section is kept as it was.
pub fn update(text: &str, profile: &Profile<'_>, force: bool) -> Result<String, Refusal> {
    profile.check()?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| opens(l, profile.name));
    let mut section = vec![header(profile.name), MARKER.to_owned()];
    if let Some(region) = profile.region {
        section.push(format!("region = {region}"));
    }
    section.push(format!("credential_process = {}", profile.process()));
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

/// Reads `after` the way botocore will and checks that it means what `profile` says: the
/// profile holds exactly its region and `credential_process`, the process splits back into
/// the command's words, and every other profile reads as it did in `before`. Returns the
/// command as botocore will run it.
pub fn read_back(before: &str, after: &str, profile: &Profile<'_>) -> Result<Vec<String>, String> {
    use super::botocore_ini::profiles;
    let then = profiles(before)
        .map_err(|e| format!("botocore cannot read the AWS config as it is ({e}); fix it first"))?;
    let now = profiles(after).map_err(|e| format!("botocore would not read the result ({e})"))?;
    let ours = now
        .get(profile.name)
        .ok_or_else(|| format!("botocore would not see a profile {}", profile.name))?;
    let mut want = super::botocore_ini::Keys::new();
    if let Some(region) = profile.region {
        want.insert("region".into(), region.to_string());
    }
    want.insert("credential_process".into(), profile.process());
    if *ours != want {
        return Err(format!(
            "botocore would read profile {} with other settings than were written",
            profile.name
        ));
    }
    let words = shlex::split(&want["credential_process"]).unwrap_or_default();
    if words != profile.command {
        return Err("botocore would split credential_process into other words".into());
    }
    let others_changed = now
        .keys()
        .chain(then.keys())
        .filter(|n| *n != profile.name)
        .any(|n| now.get(n) != then.get(n));
    if others_changed {
        return Err("other profiles would read differently to botocore".into());
    }
    Ok(words)
}

/// The file to write: `path`, or the file it links to (a config kept in a dotfiles folder
/// stays where it is, and `path` stays a link).
pub fn target(path: &Path) -> std::io::Result<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path),
        _ => Ok(path.to_path_buf()),
    }
}

/// Writes `text` to `path` (see `target`; mode 0600 when new, else the file's own) through a
/// temporary file and a rename, after keeping what was there as `<file>.stsvend-backup`.
/// Returns the backup's path, if any.
pub fn write(path: &Path, before: Option<&str>, text: &str) -> std::io::Result<Option<PathBuf>> {
    let file = target(path)?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mode = std::fs::metadata(&file)
        .map(|m| permissions(&m))
        .unwrap_or(0o600);
    let backup = match before {
        Some(before) => {
            let mut name = file.as_os_str().to_owned();
            name.push(".stsvend-backup");
            let backup = PathBuf::from(name);
            crate::common::replace_file(&backup, before.as_bytes(), mode)?;
            Some(backup)
        }
        None => None,
    };
    crate::common::replace_file(&file, text.as_bytes(), mode)?;
    Ok(backup)
}

#[cfg(unix)]
fn permissions(m: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777
}

#[cfg(not(unix))]
fn permissions(_m: &std::fs::Metadata) -> u32 {
    0o600
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn region(r: &str) -> &'static crate::client::checked::Region {
        Box::leak(Box::new(crate::client::checked::Region::parse(r).unwrap()))
    }

    fn profile(name: &str) -> Profile<'_> {
        Profile {
            name,
            region: Some(region("us-west-2")),
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
            format!("\n[profile archive]\n{MARKER}\nregion = us-west-2\ncredential_process = '/opt/my tools/stsvend' credential-process --endpoint https://data.example.org/s3credentials --token-file '/home/a b/.edl_token'\n")
        );
    }

    #[test]
    fn our_profile_is_replaced_in_place_keeping_the_neighbours_comments() {
        let first = update(BEFORE, &profile("work"), true).unwrap();
        let mut again = profile("work");
        again.region = Some(region("us-east-2"));
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
    fn arguments_are_quoted_so_shlex_and_sh_read_the_same_words() {
        assert_eq!(quote("/usr/bin/stsvend"), "/usr/bin/stsvend");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("x\"y$z"), "'x\"y$z'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("~x"), "'~x'", "no tilde expansion under sh");
        let words = [
            "/a $HOME `id` 'q\" dir/stsvend",
            "--x",
            "it's",
            "",
            "\\n",
            "~",
        ];
        let line: Vec<String> = words.iter().map(|w| quote(w)).collect();
        assert_eq!(shlex::split(&line.join(" ")).unwrap(), words);
    }

    #[test]
    fn what_would_read_back_as_something_else_is_refused_before_writing() {
        let mut p = profile("archive");
        p.command.push("s3://b/x\r[profile zz]".into());
        assert!(matches!(
            update(BEFORE, &p, false),
            Err(Refusal::Invalid(_))
        ));
        let p = profile("a b");
        assert!(matches!(
            update(BEFORE, &p, false),
            Err(Refusal::Invalid(_))
        ));
    }

    #[test]
    fn the_written_profile_reads_back_as_meant_and_nothing_else_moves() {
        let p = profile("archive");
        let after = update(BEFORE, &p, false).unwrap();
        assert_eq!(read_back(BEFORE, &after, &p).unwrap(), p.command);
        // A file that means something else to botocore than to us fails the check.
        let hijacked = after.replace(
            "region = us-west-2\n",
            "region = us-west-2\rcredential_process = evil\r[profile zz]\n",
        );
        assert!(read_back(BEFORE, &hijacked, &p).is_err());
        let other = after.replace("output = json", "output = text");
        assert!(read_back(BEFORE, &other, &p).is_err());
        assert!(read_back("[a]\n[a]\n", &after, &p).is_err());
    }
}
