//! The small sections together: `[admin]`, `[cache]`, `[cors]`, `[limits]` and
//! `[revocations]`.

use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::server::ServerSettings;
use super::values::*;

/// `[admin]`: the admin API on the internal listener (revocations).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default, serialize_with = "redacted")]
    pub token: Option<SecretString>,
    #[serde(default, serialize_with = "resolved_path")]
    pub token_file: Option<RelativePathBuf>,
}

/// `[revocations]`: where this replica keeps revocations so that a restart never lifts them.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocations {
    #[serde(serialize_with = "resolved_required")]
    pub file: RelativePathBuf,
}

#[derive(Debug, Clone)]
pub struct RevocationSettings {
    /// The durable copy (written atomically on every change, read before the replica serves).
    pub file: std::path::PathBuf,
}

pub(super) fn validate_revocations(
    raw: &RawRevocations,
) -> Result<RevocationSettings, ConfigError> {
    let file = raw.file.relative();
    if file.as_os_str().is_empty() || file.file_name().is_none() {
        return Err(ConfigError::key(
            "revocations.file",
            "must name a file (its folder is created if missing)",
        ));
    }
    Ok(RevocationSettings { file })
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub enabled: bool,
    pub max_entries: u64,
    pub max_entries_per_user: u64,
    pub earthdata_min_remaining_seconds: u64,
    pub min_remaining_seconds: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub idp_requests_per_minute: u32,
    pub idp_burst: u32,
    pub login_starts_per_minute: u32,
    pub login_start_burst: u32,
    pub user_new_credentials_per_minute: u32,
    pub user_new_credentials_burst: u32,
}

/// Per-client limits on work that anonymous requests can make stsvend do at the IdP.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Sustained rate per client address; 0 turns the limit off.
    pub idp_requests_per_minute: u32,
    pub idp_burst: u32,
    /// Logins started per client address (each hands out a sealed login state); 0: no limit.
    pub login_starts_per_minute: u32,
    pub login_start_burst: u32,
    /// New credentials (AssumeRole calls) one signed-in user may cause (fleet-wide in fleet
    /// mode, else per replica); 0: no limit.
    pub user_new_credentials_per_minute: u32,
    pub user_new_credentials_burst: u32,
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub enabled: bool,
    pub max_entries: u64,
    /// Most credentials kept for one user (each narrowing and lifetime is one).
    pub max_entries_per_user: u64,
    pub earthdata_min_remaining: Duration,
    pub min_remaining: Duration,
}

#[derive(Debug, Clone)]
pub struct CorsSettings {
    pub allowed_origins: Vec<String>,
}

pub(super) fn validate_admin(
    raw: &RawAdmin,
    server: &ServerSettings,
) -> Result<SecretString, ConfigError> {
    let token = one_secret("admin.token", &raw.token, &raw.token_file)?
        .ok_or_else(|| {
            ConfigError::key(
                "admin.token",
                "is required with [admin]: set STSVEND_ADMIN__TOKEN or admin.token_file (openssl rand -hex 32)",
            )
        })?
        .trim()
        .to_owned();
    if token.len() < 32 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::key(
            "admin.token",
            "must be at least 32 characters without spaces (openssl rand -hex 32)",
        ));
    }
    if server.internal_bind.is_none() {
        return Err(ConfigError::key(
            "admin.token",
            "the admin API is served on the internal listener only: set server.internal_bind",
        ));
    }
    Ok(SecretString::from(token))
}

/// Thresholds above `sts.duration_seconds` are allowed: they mean cached credentials of
/// that format are never old enough to reuse, so every request gets a fresh one.
pub(super) fn validate_cache(raw: &RawCache) -> Result<CacheSettings, ConfigError> {
    if raw.enabled && raw.max_entries == 0 {
        return Err(ConfigError::key(
            "cache.max_entries",
            "must be at least 1 when the cache is enabled",
        ));
    }
    let earthdata = seconds(
        "cache.earthdata_min_remaining_seconds",
        raw.earthdata_min_remaining_seconds,
        60,
        43200,
    )?;
    let min = seconds(
        "cache.min_remaining_seconds",
        raw.min_remaining_seconds,
        60,
        43200,
    )?;
    let per_user = within(
        "cache.max_entries_per_user",
        raw.max_entries_per_user,
        1,
        10_000,
    )?;
    Ok(CacheSettings {
        enabled: raw.enabled,
        max_entries: raw.max_entries,
        max_entries_per_user: per_user,
        earthdata_min_remaining: earthdata,
        min_remaining: min,
    })
}

/// `[limits]`. One user's burst of new credentials must leave room for everybody else in the
/// replica's AssumeRole budget and in-flight cap.
pub(super) fn validate_limits(
    raw: &RawLimits,
    sts: &super::StsSettings,
) -> Result<LimitSettings, ConfigError> {
    let burst = raw.user_new_credentials_burst.max(1);
    if raw.user_new_credentials_per_minute > 0 {
        let room = |cap: u64| u64::from(burst) * 2 <= cap;
        if !room(sts.max_in_flight as u64)
            || (sts.max_calls_per_second > 0 && !room(u64::from(sts.max_calls_per_second)))
        {
            return Err(ConfigError::key(
                "limits.user_new_credentials_burst",
                format!(
                    "{burst} is more than half of sts.max_in_flight ({}) or sts.max_calls_per_second ({}): one user could take what other users need",
                    sts.max_in_flight, sts.max_calls_per_second
                ),
            ));
        }
    }
    Ok(LimitSettings {
        idp_requests_per_minute: raw.idp_requests_per_minute,
        idp_burst: raw.idp_burst.max(1),
        login_starts_per_minute: raw.login_starts_per_minute,
        login_start_burst: raw.login_start_burst.max(1),
        user_new_credentials_per_minute: raw.user_new_credentials_per_minute,
        user_new_credentials_burst: burst,
    })
}

pub(super) fn validate_cors(raw: &RawCors) -> Result<CorsSettings, ConfigError> {
    let mut origins = Vec::new();
    for o in &raw.allowed_origins {
        if o == "*" {
            return Err(ConfigError::key(
                "cors.allowed_origins",
                "\"*\" is not allowed: credential responses need explicit origins",
            ));
        }
        let url = parse_http_url("cors.allowed_origins", o)?;
        if url.path() != "/" || o.ends_with('/') {
            return Err(ConfigError::key(
                "cors.allowed_origins",
                format!("{o:?} must be an origin (scheme://host[:port]) without a path"),
            ));
        }
        if url.scheme() != "https" && !is_loopback(&url) {
            return Err(ConfigError::key(
                "cors.allowed_origins",
                format!("{o:?} must use https (plain http is allowed only on loopback): a page served over http can be altered on the way and would receive credentials"),
            ));
        }
        origins.push(url.origin().ascii_serialization());
    }
    Ok(CorsSettings {
        allowed_origins: origins,
    })
}
