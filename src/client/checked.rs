//! Where values enter the helper on their way into a file the SDK reads or a line a shell
//! `eval`s: each is checked here, once, whether it came from the service (which may be
//! compromised), a cache file, or the command line.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An AWS region name: `[a-z0-9-]{1,32}`. Nothing else may reach `region = ...` or
/// `export AWS_REGION=...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "{} is not an AWS region name (a-z, 0-9 and -, at most 32)",
                shown(s)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Region {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<Region> for String {
    fn from(r: Region) -> String {
        r.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A profile name that reads back as itself in `[profile NAME]` (botocore shell-splits the
/// header) and on the AWS CLI's command line.
pub fn profile_name(s: &str) -> Result<(), String> {
    if !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@+".contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "the profile name {} must be 1-64 letters, digits and -_.@+",
            shown(s)
        ))
    }
}

/// A value written into a line of the AWS config: no control character (botocore ends a line
/// at `\r` as well as `\n`).
pub fn config_text(what: &str, s: &str) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        Err(format!(
            "{what} {} has a control character; it cannot go into the AWS config",
            shown(s)
        ))
    } else {
        Ok(())
    }
}

/// A value quoted in a one-line message: its control characters shown escaped, short.
/// A value from the network or the user, quoted and escaped for a one-line message.
pub fn shown(s: &str) -> String {
    let escaped: String = s.chars().flat_map(char::escape_debug).take(120).collect();
    format!("\"{escaped}\"")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_region_names_are_regions() {
        assert!(Region::parse("us-west-2").is_ok());
        assert!(Region::parse("eu-isoe-west-1").is_ok());
        for bad in [
            "",
            "US-WEST-2",
            "us west",
            "us-west-2\rx",
            &"a".repeat(33),
            "é",
        ] {
            let e = Region::parse(bad).unwrap_err();
            assert!(!e.contains('\r') && !e.contains('\n'), "{e}");
        }
        assert!(serde_json::from_str::<Region>("\"us-west-2\\r[x]\"").is_err());
    }

    #[test]
    fn profile_names_read_back_as_themselves() {
        assert!(profile_name("archive").is_ok());
        assert!(profile_name("my-archive.v2@x").is_ok());
        for bad in ["", "a b", "a]", "x\ry", "\"q\"", "a#b"] {
            assert!(profile_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn control_characters_never_reach_a_config_line() {
        assert!(config_text("a path", "/home/a b/$x").is_ok());
        assert!(config_text("a path", "/x\r[profile y]").is_err());
        assert!(config_text("a path", "/x\u{85}y").is_err());
    }
}
