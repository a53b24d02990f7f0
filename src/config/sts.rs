//! `[sts]`: the role to assume, the region and how STS is called.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::values::*;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSts {
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub region: String,
    pub endpoint_url: Option<String>,
    pub duration_seconds: u32,
    pub source_identity: bool,
    pub connect_timeout_seconds: u64,
    pub timeout_seconds: u64,
    pub session_tags: BTreeMap<String, String>,
    pub breaker_failures: u32,
    pub breaker_probe_interval_seconds: u64,
    pub max_in_flight: usize,
    pub max_calls_per_second: u32,
}

#[derive(Debug, Clone)]
pub struct StsSettings {
    pub role_arn: RoleArn,
    /// Sent as `ExternalId` (a role in another account may require one in its trust policy).
    pub external_id: Option<String>,
    pub region: String,
    pub endpoint_url: Option<Url>,
    pub duration_seconds: u32,
    pub source_identity: bool,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub session_tags: BTreeMap<String, String>,
    /// Consecutive transient failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe call tests STS.
    pub breaker_probe_interval: Duration,
    /// Most AssumeRole calls in flight at once (per replica).
    pub max_in_flight: usize,
    /// Most AssumeRole calls per second (per replica); 0: no budget.
    pub max_calls_per_second: u32,
}

/// An IAM role ARN: `arn:<partition>:iam::<12-digit account or empty>:role/<path/>name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn {
    arn: String,
    partition: String,
    account: String,
}

impl RoleArn {
    pub fn parse(s: &str) -> Result<Self, String> {
        let expected = "expected arn:<partition>:iam::<account id>:role/<name>";
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return Err(format!("{s:?} is not an ARN; {expected}"));
        };
        if arn != "arn" {
            return Err(format!("{s:?} does not start with `arn:`; {expected}"));
        }
        if partition.is_empty()
            || !partition
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "partition {partition:?} is not valid (aws, aws-us-gov, aws-cn, ...)"
            ));
        }
        if service != "iam" {
            return Err(format!("service is {service:?}, not `iam`; {expected}"));
        }
        if !region.is_empty() {
            return Err(format!("IAM ARNs have no region (found {region:?})"));
        }
        // Ceph RGW and MinIO role ARNs carry no account id.
        if !(account.is_empty()
            || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
        {
            return Err(format!(
                "account id {account:?} must be 12 digits (or empty for Ceph/MinIO)"
            ));
        }
        let Some(path_and_name) = resource.strip_prefix("role/") else {
            return Err(format!(
                "resource {resource:?} is not `role/<name>`; {expected}"
            ));
        };
        let name = path_and_name.rsplit('/').next().unwrap_or_default();
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        };
        if !valid_name(name) {
            return Err(format!(
                "role name {name:?} must be 1-64 characters of letters, digits and +=,.@_-"
            ));
        }
        if path_and_name.len() > 512 + 64 || path_and_name.contains("//") {
            return Err(format!("role path {path_and_name:?} is not valid"));
        }
        Ok(Self {
            arn: s.to_owned(),
            partition: partition.to_owned(),
            account: account.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }

    /// The partition S3 resource ARNs in session policies must use.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The role's account id (empty for Ceph/MinIO roles).
    pub fn account(&self) -> &str {
        &self.account
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

pub(super) fn validate(raw: &RawSts) -> Result<StsSettings, ConfigError> {
    let role_arn = RoleArn::parse(required("sts.role_arn", &raw.role_arn)?)
        .map_err(|e| ConfigError::key("sts.role_arn", e))?;
    validate_region("sts.region", &raw.region)?;
    let external_id = raw
        .external_id
        .as_deref()
        .map(|id| {
            // STS: 2-1224 characters of [\w+=,.@:/-].
            let ok = (2..=1224).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b));
            if ok {
                Ok(id.to_owned())
            } else {
                Err(ConfigError::key(
                    "sts.external_id",
                    "2-1224 characters of letters, digits and _+=,.@:/-",
                ))
            }
        })
        .transpose()?;
    let endpoint_url = raw
        .endpoint_url
        .as_deref()
        .map(|u| parse_http_url("sts.endpoint_url", u))
        .transpose()?;
    if let Some(url) = &endpoint_url {
        // The service's own AWS credentials and every vended secret cross this link.
        if url.scheme() != "https" && !is_loopback(url) {
            return Err(ConfigError::key(
                "sts.endpoint_url",
                format!("{url} must use https (plain http is allowed only on loopback)"),
            ));
        }
    }
    if !(900..=43200).contains(&raw.duration_seconds) {
        return Err(ConfigError::key(
            "sts.duration_seconds",
            format!(
                "{} is out of range; expected 900..=43200 seconds",
                raw.duration_seconds
            ),
        ));
    }
    if raw.session_tags.len() > 50 {
        return Err(ConfigError::key(
            "sts.session_tags",
            "at most 50 session tags are allowed",
        ));
    }
    let tag_ok = |s: &str, max: usize| {
        s.chars().count() <= max
            && s.chars()
                .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
    };
    for (k, v) in &raw.session_tags {
        if k.is_empty() || !tag_ok(k, 128) || !tag_ok(v, 256) || k.starts_with("aws:") {
            return Err(ConfigError::key(
                "sts.session_tags",
                format!("tag {k:?} = {v:?} is not valid (key 1-128, value 0-256 characters of letters, digits, spaces and _.:/=+-@; no aws: prefix)"),
            ));
        }
    }
    let connect_timeout = seconds(
        "sts.connect_timeout_seconds",
        raw.connect_timeout_seconds,
        1,
        60,
    )?;
    let timeout = seconds("sts.timeout_seconds", raw.timeout_seconds, 1, 120)?;
    Ok(StsSettings {
        role_arn,
        external_id,
        region: raw.region.clone(),
        endpoint_url,
        duration_seconds: raw.duration_seconds,
        source_identity: raw.source_identity,
        connect_timeout,
        timeout,
        session_tags: raw.session_tags.clone(),
        breaker_failures: within("sts.breaker_failures", raw.breaker_failures, 1, 1000)?,
        breaker_probe_interval: seconds(
            "sts.breaker_probe_interval_seconds",
            raw.breaker_probe_interval_seconds,
            1,
            300,
        )?,
        max_in_flight: within("sts.max_in_flight", raw.max_in_flight, 1, 10_000)?,
        max_calls_per_second: if raw.max_calls_per_second <= 600 {
            raw.max_calls_per_second
        } else {
            return Err(ConfigError::key(
                "sts.max_calls_per_second",
                format!(
                    "{} is above AWS's default AssumeRole quota of 600/s per account; expected 0..=600",
                    raw.max_calls_per_second
                ),
            ));
        },
    })
}
