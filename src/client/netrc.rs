//! A `.netrc` reader: `machine`, `login`, `password`, `default` (and `account`/`macdef`,
//! skipped), the subset curl and Python's netrc module agree on.

use std::path::Path;

#[derive(Debug, Default)]
pub struct Netrc {
    machines: Vec<(Option<String>, String, String)>,
}

impl Netrc {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the netrc file {}: {e}", path.display()))?;
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut machines = Vec::new();
        let mut tokens = text.split_whitespace().peekable();
        let mut current: Option<(Option<String>, String, String)> = None;
        while let Some(token) = tokens.next() {
            match token {
                "machine" | "default" => {
                    if let Some(m) = current.take() {
                        machines.push(m);
                    }
                    let host = if token == "machine" {
                        tokens.next().map(str::to_owned)
                    } else {
                        None
                    };
                    current = Some((host, String::new(), String::new()));
                }
                "login" => {
                    if let (Some(m), Some(v)) = (current.as_mut(), tokens.next()) {
                        m.1 = v.to_owned();
                    }
                }
                "password" => {
                    if let (Some(m), Some(v)) = (current.as_mut(), tokens.next()) {
                        m.2 = v.to_owned();
                    }
                }
                "account" => {
                    tokens.next();
                }
                "macdef" => {
                    // A macro runs to the next blank line; whitespace splitting cannot see
                    // it, so stop parsing: entries after a macdef are rare.
                    break;
                }
                _ => {}
            }
        }
        if let Some(m) = current.take() {
            machines.push(m);
        }
        Self { machines }
    }

    /// Login and password for `host` (netrc matches the host only, not the port).
    pub fn credentials_for(&self, host: &str) -> Option<(&str, &str)> {
        self.machines
            .iter()
            .find(|(h, _, _)| h.as_deref() == Some(host))
            .or_else(|| self.machines.iter().find(|(h, _, _)| h.is_none()))
            .map(|(_, l, p)| (l.as_str(), p.as_str()))
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
        assert_eq!(n.credentials_for("unknown.example"), Some(("anon", "x")));
    }
}
