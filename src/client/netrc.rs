//! A `.netrc` reader: `machine`, `login`, `password`, `default`, `account` and `macdef`
//! (both skipped), and `#` comments, the subset curl and Python's netrc module agree on.
//!
//! Credentials are only ever looked up for a host the file names: the `default` entry is
//! parsed but never handed out, because the login chain visits hosts chosen by redirects and
//! a catch-all password must not follow them.

use std::path::Path;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// None for `default`.
    host: Option<String>,
    login: String,
    password: String,
}

#[derive(Debug, Default)]
pub struct Netrc {
    entries: Vec<Entry>,
}

impl Netrc {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the netrc file {}: {e}", path.display()))?;
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut entries = Vec::new();
        let mut current: Option<Entry> = None;
        let mut lines = text.lines();
        // The value a keyword is waiting for, if any.
        let mut pending: Option<&str> = None;
        while let Some(line) = lines.next() {
            for token in line.split_whitespace() {
                if let Some(keyword) = pending.take() {
                    match (keyword, current.as_mut()) {
                        ("machine", _) => {
                            entries.extend(current.take());
                            current = Some(Entry {
                                host: Some(token.to_owned()),
                                login: String::new(),
                                password: String::new(),
                            });
                        }
                        ("login", Some(e)) => e.login = token.to_owned(),
                        ("password", Some(e)) => e.password = token.to_owned(),
                        _ => {}
                    }
                    continue;
                }
                // A `#` where a keyword is expected starts a comment to the end of the line.
                if token.starts_with('#') {
                    break;
                }
                match token {
                    "machine" | "login" | "password" | "account" => pending = Some(token),
                    "default" => {
                        entries.extend(current.take());
                        current = Some(Entry {
                            host: None,
                            login: String::new(),
                            password: String::new(),
                        });
                    }
                    "macdef" => {
                        // The macro name, then its body up to the next blank line.
                        for body in lines.by_ref() {
                            if body.trim().is_empty() {
                                break;
                            }
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        entries.extend(current.take());
        Self { entries }
    }

    /// Login and password of the entry that names `host` (netrc matches the host only, not
    /// the port). Never the `default` entry.
    pub fn credentials_for(&self, host: &str) -> Option<(&str, &str)> {
        self.entries
            .iter()
            .find(|e| e.host.as_deref() == Some(host))
            .map(|e| (e.login.as_str(), e.password.as_str()))
    }

    pub fn has_default(&self) -> bool {
        self.entries.iter().any(|e| e.host.is_none())
    }

    /// A digest of every host and login (not the passwords): what the helper's cache is
    /// keyed by, so editing the file to another account never serves the old one's keys.
    pub fn logins_fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for e in &self.entries {
            h.update(e.host.as_deref().unwrap_or("\0default").as_bytes());
            h.update([0]);
            h.update(e.login.as_bytes());
            h.update([0]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Netrc;

    #[test]
    fn machines_and_default() {
        let n = Netrc::parse(
            "machine urs.earthdata.nasa.gov login alice password s3cret\n\
             machine other.example\n  login bob\n  password pw\ndefault login anon password x\n",
        );
        assert_eq!(
            n.credentials_for("urs.earthdata.nasa.gov"),
            Some(("alice", "s3cret"))
        );
        assert_eq!(n.credentials_for("other.example"), Some(("bob", "pw")));
        assert!(n.has_default());
    }

    /// Review finding 1e: the default entry never goes to a host the file does not name.
    #[test]
    fn the_default_entry_is_never_handed_out() {
        let n = Netrc::parse("default login anon password x\n");
        assert_eq!(n.credentials_for("evil.example"), None);
        assert_eq!(n.credentials_for("urs.earthdata.nasa.gov"), None);
    }

    /// Review finding 1e: `#` comments are honoured; a `#` inside a value is not a comment.
    #[test]
    fn comments_are_skipped() {
        let n = Netrc::parse(
            "# machine a.example login old password wrong\n\
             machine a.example login new password pass#word # trailing comment login x\n\
             macdef init\n  cd /pub\n  machine b.example login m password m\n\n\
             machine c.example login c password c\n",
        );
        assert_eq!(n.credentials_for("a.example"), Some(("new", "pass#word")));
        assert_eq!(n.credentials_for("b.example"), None, "inside a macro");
        assert_eq!(n.credentials_for("c.example"), Some(("c", "c")));
    }

    #[test]
    fn the_fingerprint_follows_the_logins_not_the_passwords() {
        let a = Netrc::parse("machine h login carol password one\n");
        let b = Netrc::parse("machine h login carol password two\n");
        let c = Netrc::parse("machine h login alice password one\n");
        assert_eq!(a.logins_fingerprint(), b.logins_fingerprint());
        assert_ne!(a.logins_fingerprint(), c.logins_fingerprint());
    }
}
