//! `[cluster]`: fleet mode, replicas sharing credentials and revocations on Redis.

use std::fmt;
use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::sts::StsSettings;
use super::values::*;

/// `[cluster]`: several replicas sharing a credential cache on Redis.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    #[serde(serialize_with = "redacted_url")]
    pub redis_url: Option<String>,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_command_timeout_ms")]
    pub command_timeout_ms: u64,
    #[serde(default = "default_retry_after_failure_ms")]
    pub retry_after_failure_ms: u64,
    #[serde(default = "default_lock_wait_ms")]
    pub lock_wait_ms: u64,
    #[serde(default = "default_sts_rate_per_second")]
    pub sts_rate_per_second: u32,
    #[serde(default = "default_sts_max_wait_ms")]
    pub sts_max_wait_ms: u64,
    /// The network to Redis is private to stsvend: allows `redis://` (no TLS) off loopback.
    #[serde(default)]
    pub trusted_network: bool,
    #[serde(default, serialize_with = "redacted")]
    pub encryption_key: Option<SecretString>,
    #[serde(default, serialize_with = "resolved_path")]
    pub encryption_key_file: Option<RelativePathBuf>,
    #[serde(default, serialize_with = "redacted_list")]
    pub previous_encryption_keys: Vec<SecretString>,
    #[serde(default, serialize_with = "resolved_paths")]
    pub previous_encryption_key_files: Vec<RelativePathBuf>,
}

fn default_key_prefix() -> String {
    "stsvend:".into()
}

fn default_connect_timeout_ms() -> u64 {
    500
}

fn default_command_timeout_ms() -> u64 {
    100
}

fn default_retry_after_failure_ms() -> u64 {
    1000
}

fn default_lock_wait_ms() -> u64 {
    2000
}

fn default_sts_rate_per_second() -> u32 {
    // A third of AWS's default 600/s per account: room for everything else in the account.
    200
}

fn default_sts_max_wait_ms() -> u64 {
    1000
}

/// A Redis URL without its password.
fn redacted_url<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v.as_deref().map(Url::parse) {
        Some(Ok(mut u)) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("<redacted>"));
            }
            s.serialize_some(u.as_str())
        }
        Some(Err(_)) => s.serialize_some("<invalid>"),
        None => s.serialize_none(),
    }
}

/// Fleet mode: the shared (second-level) credential cache on Redis.
#[derive(Clone)]
pub struct ClusterSettings {
    /// Holds credentials when Redis has ACLs: never logged.
    pub redis_url: SecretString,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub retry_after_failure: Duration,
    pub lock_wait: Duration,
    /// Fleet-wide AssumeRole budget (0: none), and how long a miss may wait for a slot.
    pub sts_rate_per_second: u32,
    pub sts_max_wait: Duration,
    /// The current key first, then earlier ones (read only), each at least 32 bytes.
    pub encryption_keys: Vec<SecretBytes>,
}

impl fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("key_prefix", &self.key_prefix)
            .field("encryption_keys", &self.encryption_keys.len())
            .finish_non_exhaustive()
    }
}

/// Key material that is never printed.
#[derive(Clone)]
pub struct SecretBytes(pub Vec<u8>);

/// A fleet encryption key: base64 of at least 32 bytes.
fn cluster_key(key: &str, encoded: &str) -> Result<SecretBytes, ConfigError> {
    let bytes = decode_base64(encoded.trim())
        .ok_or_else(|| ConfigError::key(key, "is not valid base64 (openssl rand -base64 32)"))?;
    if bytes.len() < 32 {
        return Err(ConfigError::key(
            key,
            format!(
                "is {} bytes once decoded; at least 32 are required (openssl rand -base64 32)",
                bytes.len()
            ),
        ));
    }
    Ok(SecretBytes(bytes))
}

pub(super) fn validate(
    raw: &RawCluster,
    sts: &StsSettings,
) -> Result<ClusterSettings, ConfigError> {
    let url_text = required("cluster.redis_url", &raw.redis_url)?;
    let url = Url::parse(url_text)
        .map_err(|e| ConfigError::key("cluster.redis_url", format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "redis" | "rediss") || url.host_str().is_none() {
        return Err(ConfigError::key(
            "cluster.redis_url",
            "must be redis://host:port or rediss://host:port (TLS)",
        ));
    }
    if url.scheme() == "redis" && !is_loopback(&url) && !raw.trusted_network {
        // Whoever can reach an unencrypted Redis can read its traffic and flush or rewrite
        // what the fleet shares (locks, the STS budget, revocation records).
        let why = if url.password().is_some() {
            "a password would cross the network in clear"
        } else {
            "Redis without TLS off loopback can be read and rewritten by anyone on the path"
        };
        return Err(ConfigError::key(
            "cluster.redis_url",
            format!("{why}: use rediss:// (TLS), or set cluster.trusted_network = true if the network to Redis is private to stsvend"),
        ));
    }
    let prefix = &raw.key_prefix;
    if prefix.is_empty()
        || prefix.len() > 64
        || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::key(
            "cluster.key_prefix",
            "1-64 characters, no spaces",
        ));
    }
    let mut keys = Vec::new();
    let current = one_secret(
        "cluster.encryption_key",
        &raw.encryption_key,
        &raw.encryption_key_file,
    )?
    .ok_or_else(|| {
        ConfigError::key(
            "cluster.encryption_key",
            "is required: set STSVEND_CLUSTER__ENCRYPTION_KEY or cluster.encryption_key_file to at least 32 random bytes, base64 (openssl rand -base64 32); every replica needs the same key",
        )
    })?;
    keys.push(cluster_key("cluster.encryption_key", &current)?);
    for k in &raw.previous_encryption_keys {
        keys.push(cluster_key(
            "cluster.previous_encryption_keys",
            k.expose_secret(),
        )?);
    }
    for path in &raw.previous_encryption_key_files {
        let text = read_secret_file("cluster.previous_encryption_key_files", &path.relative())?;
        keys.push(cluster_key("cluster.previous_encryption_key_files", &text)?);
    }
    let ms = |key: &str, v: u64, min: u64, max: u64| -> Result<Duration, ConfigError> {
        within(key, v, min, max).map(Duration::from_millis)
    };
    let command_timeout = ms(
        "cluster.command_timeout_ms",
        raw.command_timeout_ms,
        1,
        10_000,
    )?;
    let lock_wait = ms("cluster.lock_wait_ms", raw.lock_wait_ms, 0, 60_000)?;
    // A loser gives up waiting only after the winner's STS call could have finished.
    if lock_wait < sts.timeout {
        return Err(ConfigError::key(
            "cluster.lock_wait_ms",
            format!(
                "{} ms is shorter than sts.timeout_seconds; other replicas would call STS while the first call is still running",
                raw.lock_wait_ms
            ),
        ));
    }
    Ok(ClusterSettings {
        redis_url: SecretString::from(url_text.to_owned()),
        key_prefix: prefix.clone(),
        connect_timeout: ms(
            "cluster.connect_timeout_ms",
            raw.connect_timeout_ms,
            1,
            60_000,
        )?,
        command_timeout,
        retry_after_failure: ms(
            "cluster.retry_after_failure_ms",
            raw.retry_after_failure_ms,
            10,
            600_000,
        )?,
        lock_wait,
        sts_rate_per_second: within(
            "cluster.sts_rate_per_second",
            raw.sts_rate_per_second,
            0,
            100_000,
        )?,
        sts_max_wait: ms("cluster.sts_max_wait_ms", raw.sts_max_wait_ms, 0, 60_000)?,
        encryption_keys: keys,
    })
}
