//! `[archive]` and `[[archives]]`: one deployment serving several archives, each with its own
//! role (in any account), region, STS and S3 settings, policy mode and buckets.
//!
//! The top-level `[sts]`, `[[buckets]]`, `[policy]` and `[s3]` describe the first archive,
//! named by `[archive]`: a configuration written before archives existed is one archive and
//! means exactly what it meant. Each `[[archives]]` entry is another archive; its `sts`,
//! `policy` and `s3` tables override the top-level sections key by key, except that its role
//! (`sts.role_arn`, `sts.external_id`) is always its own.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::buckets::{self, Bucket, PolicySettings, RawBucket, RawPolicy};
use super::s3::{self, RawS3, S3Settings};
use super::sts::{self, RawSts, StsSettings};
use super::values::ConfigError;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawArchiveMain {
    pub name: String,
    pub path: String,
    pub title: String,
    pub default: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawArchive {
    pub name: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub sts: toml::Table,
    #[serde(default)]
    pub policy: toml::Table,
    #[serde(default)]
    pub s3: toml::Table,
    #[serde(default)]
    pub buckets: Vec<RawBucket>,
}

/// One archive: what its credentials are sessions of, and what they may read.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    /// `[a-z0-9-]`, at most 32: a metrics label and part of URLs.
    pub name: String,
    /// Where its own Earthdata-compatible endpoints are (`<path>/s3credentials`), no trailing
    /// slash.
    pub path: String,
    /// A human title for pages and listings (the name when not set).
    pub title: String,
    pub sts: StsSettings,
    pub buckets: Vec<Bucket>,
    pub policy: PolicySettings,
    pub s3: S3Settings,
}

/// Top-level paths an archive's path may not start with: the service's own routes.
const RESERVED: [&str; 10] = [
    "s3",
    "s3credentials",
    "s3credentialsREADME",
    "logout",
    "whoami",
    "favicon.ico",
    "openapi.json",
    "healthz",
    "readyz",
    "metrics",
];

fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::key(
            key,
            format!("{name:?} must be 1-32 lowercase letters, digits and inner hyphens"),
        ))
    }
}

fn check_path(key: &str, path: &str, name: &str, callback: &str) -> Result<String, ConfigError> {
    if path.is_empty() {
        return Ok(format!("/archives/{name}"));
    }
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or("").split('/').collect();
    let ok = path.starts_with('/')
        && path.len() <= 128
        && segments.iter().all(|s| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
        });
    if !ok {
        return Err(ConfigError::key(
            key,
            format!("{path:?} must be a path like \"/archives/{name}\": segments of letters, digits and ._~- (no trailing slash)"),
        ));
    }
    let first = segments.first().copied().unwrap_or("");
    let callback_first = callback.trim_start_matches('/').split('/').next();
    if RESERVED.contains(&first) || callback_first == Some(first) {
        return Err(ConfigError::key(
            key,
            format!("{path:?} would hide the service's own /{first}: choose another first segment"),
        ));
    }
    Ok(path.to_owned())
}

/// `base` with `over`'s keys in place of its own, read back as `T` (which rejects unknown keys).
fn overlay<T: Serialize + DeserializeOwned>(
    base: &T,
    over: &toml::Table,
    at: &str,
    drop: &[&str],
) -> Result<T, ConfigError> {
    let mut table = match toml::Value::try_from(base) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    for key in drop {
        table.remove(*key);
    }
    for (k, v) in over {
        table.insert(k.clone(), v.clone());
    }
    T::deserialize(toml::Value::Table(table))
        .map_err(|e| ConfigError::key(at, e.message().trim().to_owned()))
}

/// The first archive: the top-level sections under `[archive]`'s name.
pub(super) fn first(
    raw: &RawArchiveMain,
    callback: &str,
    parts: (StsSettings, Vec<Bucket>, PolicySettings, S3Settings),
) -> Result<ArchiveSettings, ConfigError> {
    check_name("archive.name", &raw.name)?;
    let path = check_path("archive.path", &raw.path, &raw.name, callback)?;
    let (sts, buckets, policy, s3) = parts;
    Ok(ArchiveSettings {
        title: if raw.title.trim().is_empty() {
            raw.name.clone()
        } else {
            raw.title.clone()
        },
        name: raw.name.clone(),
        path,
        sts,
        buckets,
        policy,
        s3,
    })
}

/// `[[archives]]` entry `i`, its sections laid over the top-level ones.
pub(super) fn other(
    i: usize,
    raw: &RawArchive,
    top: (&RawSts, &RawPolicy, &RawS3),
    callback: &str,
) -> Result<ArchiveSettings, ConfigError> {
    let at = format!("archives[{i}]");
    check_name(&format!("{at}.name"), &raw.name)?;
    let path = check_path(&format!("{at}.path"), &raw.path, &raw.name, callback)?;
    if !raw.sts.contains_key("role_arn") {
        return Err(ConfigError::key(
            &format!("{at}.sts.role_arn"),
            "is required: each archive assumes its own role",
        ));
    }
    let raw_sts: RawSts = overlay(top.0, &raw.sts, &format!("{at}.sts"), &["external_id"])?;
    let raw_policy: RawPolicy = overlay(top.1, &raw.policy, &format!("{at}.policy"), &[])?;
    let raw_s3: RawS3 = overlay(top.2, &raw.s3, &format!("{at}.s3"), &[])?;
    Ok(ArchiveSettings {
        name: raw.name.clone(),
        title: if raw.title.trim().is_empty() {
            raw.name.clone()
        } else {
            raw.title.clone()
        },
        path,
        sts: sts::validate(&raw_sts).map_err(|e| e.within(&at))?,
        buckets: buckets::validate_at(&format!("{at}.buckets"), &raw.buckets)?,
        policy: buckets::validate_policy(&raw_policy).map_err(|e| e.within(&at))?,
        s3: s3::validate(&raw_s3).map_err(|e| e.within(&at))?,
    })
}

/// What must hold across archives: unique names and paths, no bucket in two archives, a
/// default that exists. Returns the default's index.
pub(super) fn check_all(all: &[ArchiveSettings], default: &str) -> Result<usize, ConfigError> {
    let at = |i: usize| {
        if i == 0 {
            "archive".to_owned()
        } else {
            format!("archives[{}]", i - 1)
        }
    };
    for (i, a) in all.iter().enumerate() {
        if let Some(j) = all[..i].iter().position(|o| o.name == a.name) {
            return Err(ConfigError::key(
                &format!("{}.name", at(i)),
                format!("{:?} is already the name of {}", a.name, at(j)),
            ));
        }
        if let Some(j) = all[..i].iter().position(|o| o.path == a.path) {
            return Err(ConfigError::key(
                &format!("{}.path", at(i)),
                format!("{:?} is already the path of {}", a.path, at(j)),
            ));
        }
        for b in &a.buckets {
            if let Some(o) = all[..i]
                .iter()
                .find(|o| o.buckets.iter().any(|x| x.name == b.name))
            {
                return Err(ConfigError::key(
                    &format!("{}.buckets", at(i)),
                    format!(
                        "bucket {:?} is also in archive {:?}: a bucket belongs to one archive (one role reads it)",
                        b.name, o.name
                    ),
                ));
            }
        }
    }
    let default = if default.is_empty() {
        all[0].name.as_str()
    } else {
        default
    };
    all.iter().position(|a| a.name == default).ok_or_else(|| {
        ConfigError::key(
            "archive.default",
            format!(
                "{default:?} is not an archive; expected one of: {}",
                all.iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}
