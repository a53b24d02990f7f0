//! The small sections together: `[admin]`, `[cache]`, `[cors]` and `[limits]`.

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

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub enabled: bool,
    pub max_entries: u64,
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
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub enabled: bool,
    pub max_entries: u64,
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
    Ok(CacheSettings {
        enabled: raw.enabled,
        max_entries: raw.max_entries,
        earthdata_min_remaining: earthdata,
        min_remaining: min,
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
