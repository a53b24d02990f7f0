//! `[session]`: the encrypted session cookie and its key.

use std::fmt;
use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::values::*;

const MIN_COOKIE_KEY_BYTES: usize = 64;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub cookie_name: String,
    #[serde(default, serialize_with = "redacted")]
    pub key: Option<SecretString>,
    #[serde(default, serialize_with = "resolved_path")]
    pub key_file: Option<RelativePathBuf>,
    pub lifetime_seconds: u64,
    pub secure: bool,
    /// Earlier keys, still accepted for reading cookies while they rotate out.
    #[serde(default, serialize_with = "redacted_list")]
    pub previous_keys: Vec<SecretString>,
    #[serde(default, serialize_with = "resolved_paths")]
    pub previous_key_files: Vec<RelativePathBuf>,
}

#[derive(Clone)]
pub struct CookieKey(std::sync::Arc<SecretBox<Vec<u8>>>);

impl CookieKey {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(std::sync::Arc::new(SecretBox::new(Box::new(bytes))))
    }

    pub fn bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieKey(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub cookie_name: String,
    pub key: CookieKey,
    /// Keys still accepted for reading cookies (rotation); new cookies use `key`.
    pub previous_keys: Vec<CookieKey>,
    pub lifetime: Duration,
    pub secure: bool,
}

/// A session key: base64 of at least 64 bytes.
fn cookie_key(key: &str, encoded: &str) -> Result<Vec<u8>, ConfigError> {
    let bytes = decode_base64(encoded)
        .ok_or_else(|| ConfigError::key(key, "is not valid base64 (openssl rand -base64 64)"))?;
    if bytes.len() < MIN_COOKIE_KEY_BYTES {
        return Err(ConfigError::key(
            key,
            format!(
                "is {} bytes once decoded; at least {MIN_COOKIE_KEY_BYTES} are required (openssl rand -base64 64)",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

pub(super) fn validate(raw: &RawSession, public_url: &Url) -> Result<SessionSettings, ConfigError> {
    let name = &raw.cookie_name;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(ConfigError::key(
            "session.cookie_name",
            format!("{name:?} must be letters, digits, '_', '-' or '.'"),
        ));
    }
    let encoded = one_secret("session.key", &raw.key, &raw.key_file)?
        .ok_or_else(|| {
            ConfigError::key(
                "session.key",
                "is required: set STSVEND_SESSION__KEY or session.key_file to at least 64 random bytes, base64 (openssl rand -base64 64)",
            )
        })?
        .trim()
        .to_owned();
    let bytes = cookie_key("session.key", &encoded)?;
    let mut previous_keys = Vec::new();
    for k in &raw.previous_keys {
        previous_keys.push(CookieKey::from_bytes(cookie_key(
            "session.previous_keys",
            k.expose_secret().trim(),
        )?));
    }
    for path in &raw.previous_key_files {
        let encoded = read_secret_file("session.previous_key_files", &path.relative())?;
        previous_keys.push(CookieKey::from_bytes(cookie_key(
            "session.previous_key_files",
            &encoded,
        )?));
    }
    let loopback_http = public_url.scheme() == "http" && is_loopback(public_url);
    if !raw.secure && !loopback_http {
        return Err(ConfigError::key(
            "session.secure",
            format!(
                "may be false only for loopback development over http; server.public_url is {public_url}"
            ),
        ));
    }
    Ok(SessionSettings {
        cookie_name: name.clone(),
        key: CookieKey::from_bytes(bytes),
        previous_keys,
        lifetime: seconds(
            "session.lifetime_seconds",
            raw.lifetime_seconds,
            60,
            30 * 86400,
        )?,
        secure: raw.secure,
    })
}
