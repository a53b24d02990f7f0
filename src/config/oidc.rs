//! `[oidc]`: the IdP, the client, and what a bearer token must be.

use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::values::*;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    #[serde(default, serialize_with = "redacted")]
    pub client_secret: Option<SecretString>,
    /// Relative paths are resolved against the directory of the file that sets them.
    #[serde(default, serialize_with = "resolved_path")]
    pub client_secret_file: Option<RelativePathBuf>,
    pub scopes: Vec<String>,
    pub user_id_claim: String,
    pub groups_claim: String,
    pub audiences: Vec<String>,
    pub bearer_token_types: Vec<String>,
    pub callback_path: String,
    pub accept_opaque_tokens: bool,
    pub unsafe_opaque_tokens_via_userinfo: bool,
    pub groups_max_age_seconds: u64,
    pub discovery_retry_max_seconds: u64,
    pub http_timeout_seconds: u64,
}

#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// Exactly as configured: discovery compares it with the IdP's `issuer` byte for byte.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub scopes: Vec<String>,
    pub user_id_claim: String,
    pub groups_claim: String,
    pub audiences: Vec<String>,
    /// Accepted `typ` headers of bearer JWTs, as [`token_type`] normalises them.
    pub bearer_token_types: Vec<String>,
    pub callback_path: String,
    pub accept_opaque_tokens: bool,
    /// Accept opaque tokens that only userinfo can check (no proof they were issued to us).
    pub unsafe_opaque_tokens_via_userinfo: bool,
    /// How long groups read from a login or a token are trusted before they are re-read.
    pub groups_max_age: Duration,
    pub discovery_retry_max: Duration,
    pub http_timeout: Duration,
}

/// A JWT `typ` as compared: lower case, without the optional `application/` (RFC 9068 §4);
/// a token without `typ` counts as `jwt` (RFC 7519 §5.1).
pub fn token_type(typ: Option<&str>) -> String {
    let t = typ.unwrap_or("JWT").to_ascii_lowercase();
    t.strip_prefix("application/")
        .map(str::to_owned)
        .unwrap_or(t)
}

fn token_types(raw: &[String]) -> Result<Vec<String>, ConfigError> {
    if raw.is_empty() || raw.iter().any(|t| t.trim().is_empty()) {
        return Err(ConfigError::key(
            "oidc.bearer_token_types",
            "must list the JWT `typ` values accepted as bearer tokens, e.g. [\"at+jwt\"] (add \"JWT\" for Earthdata Login's user tokens)",
        ));
    }
    Ok(raw.iter().map(|t| token_type(Some(t.trim()))).collect())
}

pub(super) fn validate(raw: &RawOidc) -> Result<OidcSettings, ConfigError> {
    let issuer_str = required("oidc.issuer", &raw.issuer)?;
    let issuer_url = parse_http_url("oidc.issuer", issuer_str)?;
    if issuer_url.scheme() != "https" && !is_loopback(&issuer_url) {
        return Err(ConfigError::key(
            "oidc.issuer",
            format!("{issuer_str} must use https (plain http is allowed only on loopback)"),
        ));
    }
    let issuer = issuer_str.to_owned();
    let client_id = required("oidc.client_id", &raw.client_id)?.to_owned();
    let client_secret = one_secret(
        "oidc.client_secret",
        &raw.client_secret,
        &raw.client_secret_file,
    )?
    .map(SecretString::from);
    if client_secret
        .as_ref()
        .is_some_and(|s| s.expose_secret().is_empty())
    {
        return Err(ConfigError::key("oidc.client_secret", "is empty"));
    }
    if !raw.scopes.iter().any(|s| s == "openid") {
        return Err(ConfigError::key("oidc.scopes", "must include \"openid\""));
    }
    if let Some(bad) = raw
        .scopes
        .iter()
        .find(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '"'))
    {
        return Err(ConfigError::key(
            "oidc.scopes",
            format!("{bad:?} is not a valid scope"),
        ));
    }
    for (key, claim) in [
        ("oidc.user_id_claim", &raw.user_id_claim),
        ("oidc.groups_claim", &raw.groups_claim),
    ] {
        if claim.trim().is_empty() {
            return Err(ConfigError::key(key, "must not be empty"));
        }
    }
    let path = &raw.callback_path;
    if !path.starts_with('/') || path.starts_with("//") || path.contains(['?', '#', '\\']) {
        return Err(ConfigError::key(
            "oidc.callback_path",
            format!("{path:?} must be a path starting with a single '/'"),
        ));
    }
    let audiences = if raw.audiences.is_empty() {
        vec![client_id.clone()]
    } else {
        raw.audiences.clone()
    };
    Ok(OidcSettings {
        issuer,
        client_id,
        client_secret,
        scopes: raw.scopes.clone(),
        user_id_claim: raw.user_id_claim.clone(),
        groups_claim: raw.groups_claim.clone(),
        audiences,
        bearer_token_types: token_types(&raw.bearer_token_types)?,
        callback_path: path.clone(),
        accept_opaque_tokens: raw.accept_opaque_tokens,
        unsafe_opaque_tokens_via_userinfo: if raw.unsafe_opaque_tokens_via_userinfo
            && !raw.accept_opaque_tokens
        {
            return Err(ConfigError::key(
                "oidc.unsafe_opaque_tokens_via_userinfo",
                "only means something with oidc.accept_opaque_tokens = true",
            ));
        } else {
            raw.unsafe_opaque_tokens_via_userinfo
        },
        groups_max_age: seconds(
            "oidc.groups_max_age_seconds",
            raw.groups_max_age_seconds,
            60,
            30 * 86400,
        )?,
        discovery_retry_max: seconds(
            "oidc.discovery_retry_max_seconds",
            raw.discovery_retry_max_seconds,
            1,
            3600,
        )?,
        http_timeout: seconds(
            "oidc.http_timeout_seconds",
            raw.http_timeout_seconds,
            1,
            120,
        )?,
    })
}
