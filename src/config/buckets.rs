//! `[[buckets]]` and `[policy]`: what users may read, and how their scope reaches STS.

use serde::{Deserialize, Serialize};

use super::values::*;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBucket {
    pub name: String,
    pub region: String,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requester_pays: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub source_vpce: Vec<String>,
    pub source_vpc: Vec<String>,
    pub mode: String,
    pub managed_policy_path: String,
    pub managed_policy_name_prefix: String,
    pub tag_key_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub region: String,
    pub prefixes: Vec<String>,
    pub groups: Vec<String>,
    /// Readers pay for requests and transfer: clients must send `x-amz-request-payer`.
    pub requester_pays: bool,
}

/// How a user's scope reaches STS, and the network conditions every grant carries.
#[derive(Debug, Clone, Default)]
pub struct PolicySettings {
    pub source_vpce: Vec<String>,
    pub source_vpc: Vec<String>,
    pub mode: ScopeMode,
    /// IAM path of the managed session policies (`/` or `/a/b/`).
    pub managed_policy_path: String,
    pub managed_policy_name_prefix: String,
    pub tag_key_prefix: String,
}

/// How a user's buckets reach STS (`policy.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScopeMode {
    /// One inline session policy listing the buckets (at most 2,048 characters).
    #[default]
    Inline,
    /// Managed session policies, one set per group, passed as `PolicyArns` (at most 10).
    Managed,
    /// One session tag per group; the role's policy grants by `aws:PrincipalTag`.
    Tags,
}

impl ScopeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inline => "inline",
            Self::Managed => "managed",
            Self::Tags => "tags",
        }
    }
}

/// What a key prefix in a session policy may be, as error messages say it.
pub const PREFIX_RULE: &str = "a non-empty key prefix of at most 512 characters without a leading '/', wildcards (*, ?), '$', quotes, backslashes or characters beyond U+00FF (STS refuses session policies with those)";

/// A prefix that means exactly itself in a policy's `Resource` and `s3:prefix` (no wildcard
/// or policy variable) and that STS accepts (`PREFIX_RULE`).
pub fn is_policy_safe_prefix(p: &str) -> bool {
    !(p.is_empty()
        || p.starts_with('/')
        || p.contains(['*', '?', '$', '"', '\\'])
        || p.chars().any(char::is_control)
        || p.chars().any(|c| u32::from(c) > 0xFF)
        || p.len() > 512)
}

/// S3 general-purpose bucket naming rules.
pub fn validate_bucket_name(name: &str) -> Result<(), String> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Err(format!("{name:?} must be 3-63 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(format!(
            "{name:?} may contain only lowercase letters, digits, dots and hyphens"
        ));
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[len - 1];
    if !(first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()) {
        return Err(format!(
            "{name:?} must begin and end with a letter or digit"
        ));
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err(format!(
            "{name:?} has adjacent dots or a dot next to a hyphen"
        ));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!("{name:?} must not look like an IP address"));
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Err(format!("{name:?} must not start with {prefix:?}"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", "--x-s3", ".mrap", "--table-s3"] {
        if name.ends_with(suffix) {
            return Err(format!("{name:?} must not end with {suffix:?}"));
        }
    }
    Ok(())
}

pub(super) fn validate(raw: &[RawBucket]) -> Result<Vec<Bucket>, ConfigError> {
    validate_at("buckets", raw)
}

/// `at`: where the list is in the configuration (`buckets`, `archives[1].buckets`).
pub(super) fn validate_at(at: &str, raw: &[RawBucket]) -> Result<Vec<Bucket>, ConfigError> {
    let mut out: Vec<Bucket> = Vec::with_capacity(raw.len());
    for (i, b) in raw.iter().enumerate() {
        let key = |field: &str| format!("{at}[{i}].{field}");
        validate_bucket_name(&b.name).map_err(|e| ConfigError::key(&key("name"), e))?;
        if out.iter().any(|o| o.name == b.name) {
            return Err(ConfigError::key(
                &key("name"),
                format!("{:?} is listed twice", b.name),
            ));
        }
        validate_region(&key("region"), &b.region)?;
        for p in &b.prefixes {
            if !is_policy_safe_prefix(p) {
                return Err(ConfigError::key(
                    &key("prefixes"),
                    format!("{p:?} must be {PREFIX_RULE}"),
                ));
            }
        }
        if let Some(g) = b.groups.iter().find(|g| g.trim().is_empty()) {
            return Err(ConfigError::key(
                &key("groups"),
                format!("{g:?} is not a group name"),
            ));
        }
        let mut prefixes = b.prefixes.clone();
        prefixes.sort();
        prefixes.dedup();
        let mut groups = b.groups.clone();
        groups.sort();
        groups.dedup();
        out.push(Bucket {
            name: b.name.clone(),
            region: b.region.clone(),
            prefixes,
            groups,
            requester_pays: b.requester_pays,
        });
    }
    Ok(out)
}

pub(super) fn validate_policy(raw: &RawPolicy) -> Result<PolicySettings, ConfigError> {
    let id_ok = |s: &str, prefix: &str| {
        s.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty() && rest.len() <= 32 && rest.bytes().all(|b| b.is_ascii_hexdigit())
        })
    };
    if let Some(bad) = raw.source_vpce.iter().find(|v| !id_ok(v, "vpce-")) {
        return Err(ConfigError::key(
            "policy.source_vpce",
            format!("{bad:?} is not a VPC endpoint id like \"vpce-1a2b3c4d\""),
        ));
    }
    if let Some(bad) = raw.source_vpc.iter().find(|v| !id_ok(v, "vpc-")) {
        return Err(ConfigError::key(
            "policy.source_vpc",
            format!("{bad:?} is not a VPC id like \"vpc-1a2b3c4d\""),
        ));
    }
    let mode = match raw.mode.as_str() {
        "inline" => ScopeMode::Inline,
        "managed" => ScopeMode::Managed,
        "tags" => ScopeMode::Tags,
        other => {
            return Err(ConfigError::key(
                "policy.mode",
                format!("{other:?} is not one of \"inline\", \"managed\", \"tags\""),
            ))
        }
    };
    let path = &raw.managed_policy_path;
    if !(path.starts_with('/') && path.ends_with('/'))
        || path.len() > 512
        || path.contains("//")
        || !path.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(ConfigError::key(
            "policy.managed_policy_path",
            format!("{path:?} is not an IAM path like \"/\" or \"/stsvend/\""),
        ));
    }
    // The prefixes end up in IAM policy names and tag keys: characters valid in both,
    // short enough to leave 64 for the group's part.
    let name_part_ok = |p: &str| {
        p.len() <= 32
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=.@-".contains(c))
    };
    if !name_part_ok(&raw.managed_policy_name_prefix) {
        return Err(ConfigError::key(
            "policy.managed_policy_name_prefix",
            "at most 32 characters of letters, digits and _+=.@-",
        ));
    }
    if !name_part_ok(&raw.tag_key_prefix)
        || raw.tag_key_prefix.is_empty()
        || raw.tag_key_prefix.to_ascii_lowercase().starts_with("aws:")
    {
        return Err(ConfigError::key(
            "policy.tag_key_prefix",
            "1-32 characters of letters, digits and _+=.@-",
        ));
    }
    Ok(PolicySettings {
        source_vpce: raw.source_vpce.clone(),
        source_vpc: raw.source_vpc.clone(),
        mode,
        managed_policy_path: path.clone(),
        managed_policy_name_prefix: raw.managed_policy_name_prefix.clone(),
        tag_key_prefix: raw.tag_key_prefix.clone(),
    })
}
