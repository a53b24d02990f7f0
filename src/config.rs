//! Typed settings: `config/default.toml` (compiled in), then an optional file, then
//! `STSVEND_<SECTION>__<KEY>` environment variables. Parsed into raw structs that reject unknown
//! keys, then validated once into the types the rest of the service uses.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use figment::providers::{Env, Format, Toml};
use figment::value::magic::RelativePathBuf;
use figment::{Figment, Source};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};
use url::{Host, Url};

/// The defaults every configuration starts from; also the documented reference of every key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variable prefix; `STSVEND_CONFIG` names the file and is not a setting.
pub const ENV_PREFIX: &str = "STSVEND_";
pub const CONFIG_PATH_ENV: &str = "STSVEND_CONFIG";

const MIN_COOKIE_KEY_BYTES: usize = 64;

/// A configuration problem, always naming the key at fault and what was expected.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {message}")]
pub struct ConfigError {
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    fn key(key: &str, message: impl fmt::Display) -> Self {
        Self {
            key: Some(key.to_owned()),
            message: format!("`{key}`: {message}"),
        }
    }

    fn general(message: impl Into<String>) -> Self {
        Self {
            key: None,
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw configuration: exactly what the files and environment say.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub server: RawServer,
    pub oidc: RawOidc,
    pub session: RawSession,
    pub sts: RawSts,
    #[serde(default)]
    pub buckets: Vec<RawBucket>,
    pub policy: RawPolicy,
    pub cache: RawCache,
    pub cors: RawCors,
    pub limits: RawLimits,
    #[serde(default)]
    pub cluster: Option<RawCluster>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
}

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
pub struct RawServer {
    pub bind: String,
    pub public_url: Option<String>,
    pub app_name: String,
    pub workers: usize,
    pub metrics: bool,
    pub shutdown_timeout_seconds: u64,
    pub log_format: LogFormat,
    pub log_queue_max_bytes: usize,
    pub trust_x_forwarded_for: bool,
    pub request_head_timeout_seconds: u64,
    pub keep_alive_seconds: u64,
    pub max_connections_per_worker: usize,
    /// A second listener for /metrics, /healthz and /readyz only.
    #[serde(default)]
    pub internal_bind: Option<String>,
    #[serde(default)]
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(serialize_with = "resolved_required")]
    pub cert_file: RelativePathBuf,
    #[serde(serialize_with = "resolved_required")]
    pub key_file: RelativePathBuf,
    #[serde(default = "default_tls_reload")]
    pub reload_interval_seconds: u64,
}

fn default_tls_reload() -> u64 {
    10
}

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

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSts {
    pub role_arn: Option<String>,
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBucket {
    pub name: String,
    pub region: String,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
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

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub idp_requests_per_minute: u32,
    pub idp_burst: u32,
    pub login_starts_per_minute: u32,
    pub login_start_burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

fn redacted<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("<redacted>"),
        None => s.serialize_none(),
    }
}

fn redacted_list<S: serde::Serializer>(v: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|_| "<redacted>"))
}

fn resolved_paths<S: serde::Serializer>(v: &[RelativePathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(RelativePathBuf::relative))
}

fn resolved_required<S: serde::Serializer>(v: &RelativePathBuf, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_some(&v.relative())
}

fn resolved_path<S: serde::Serializer>(
    v: &Option<RelativePathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(p) => s.serialize_some(&p.relative()),
        None => s.serialize_none(),
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// The layers a configuration is built from, in order of precedence (last wins).
pub fn figment(path: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
    if let Some(path) = path {
        // figment treats a missing file as empty; a named file that is missing is a mistake.
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(ConfigError::general(format!(
                    "config file {} is not a regular file",
                    path.display()
                )))
            }
            Err(e) => {
                return Err(ConfigError::general(format!(
                    "cannot read config file {}: {e}",
                    path.display()
                )))
            }
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    // Only STSVEND_<SECTION>__<KEY> are settings; other STSVEND_* variables (STSVEND_CONFIG,
    // tooling's own) are not configuration and must not trip the unknown-key check.
    Ok(figment.merge(
        Env::prefixed(ENV_PREFIX)
            .filter(|key| key.as_str().contains("__"))
            .split("__"),
    ))
}

/// Load and validate from the default layers: defaults, `path`, environment.
pub fn load(path: Option<&Path>) -> Result<(RawSettings, Settings), ConfigError> {
    from_figment(figment(path)?)
}

/// Extract and validate any set of layers (tests add their own on top of the defaults).
pub fn from_figment(figment: Figment) -> Result<(RawSettings, Settings), ConfigError> {
    for secret in [
        "oidc.client_secret",
        "session.key",
        "session.previous_keys",
        "cluster.encryption_key",
        "cluster.previous_encryption_keys",
        "admin.token",
    ] {
        if let Some(md) = figment.find_metadata(secret) {
            if let Some(Source::File(path)) = &md.source {
                let env = format!("{ENV_PREFIX}{}", secret.replace('.', "__").to_uppercase());
                return Err(ConfigError::key(
                    secret,
                    format!(
                        "secrets are not read from config files (found in {}); set {env} or `{}_file`",
                        path.display(),
                        secret
                    ),
                ));
            }
        }
    }
    let raw: RawSettings = figment.extract().map_err(describe_figment_error)?;
    let settings = Settings::validate(&raw)?;
    Ok((raw, settings))
}

fn describe_figment_error(err: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let err = err
        .into_iter()
        .next()
        .unwrap_or_else(|| figment::Error::from("unknown configuration error".to_string()));
    // `buckets.0.name` reads better as `buckets[0].name`, the form validation errors use.
    let parent = err.path.iter().fold(String::new(), |mut acc, seg| {
        if seg.bytes().all(|b| b.is_ascii_digit()) && !acc.is_empty() {
            acc.push_str(&format!("[{seg}]"));
        } else {
            if !acc.is_empty() {
                acc.push('.');
            }
            acc.push_str(seg);
        }
        acc
    });
    let join = |field: &str| {
        if parent.is_empty() {
            field.to_owned()
        } else {
            format!("{parent}.{field}")
        }
    };
    let origin = err
        .metadata
        .as_ref()
        .map(|md| match &md.source {
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", md.name),
        })
        .unwrap_or_default();
    match &err.kind {
        // figment's path already ends with the unknown field itself.
        Kind::UnknownField(field, expected) => ConfigError::key(
            &if err.path.last() == Some(field) {
                parent
            } else {
                join(field)
            },
            format!(
                "unknown key{origin}; expected one of: {}",
                expected.join(", ")
            ),
        ),
        Kind::MissingField(field) => {
            ConfigError::key(&join(field), "is required but not set".to_string())
        }
        other => ConfigError::key(&parent, format!("{other}{origin}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Validated settings: what the service uses.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub oidc: OidcSettings,
    pub session: SessionSettings,
    pub sts: StsSettings,
    pub buckets: Vec<Bucket>,
    pub policy: PolicySettings,
    pub cache: CacheSettings,
    pub cors: CorsSettings,
    pub limits: LimitSettings,
    pub cluster: Option<ClusterSettings>,
    /// The admin API's bearer token (`[admin]`); the API exists only when set.
    pub admin_token: Option<SecretString>,
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

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    pub public_url: Url,
    pub app_name: String,
    pub workers: usize,
    pub metrics: bool,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub log_queue_max_bytes: usize,
    pub trust_x_forwarded_for: bool,
    pub internal_bind: Option<SocketAddr>,
    pub tls: Option<TlsSettings>,
    /// A client must send a whole request head within this (slowloris defence).
    pub request_head_timeout: Duration,
    /// Idle keep-alive connections are closed after this.
    pub keep_alive: Duration,
    pub max_connections_per_worker: usize,
}

impl ServerSettings {
    /// The path of `public_url` without its trailing `/`: empty when the service is at the
    /// root, `/archive` for `https://host/archive/`. The proxy in front strips it.
    pub fn path_prefix(&self) -> &str {
        self.public_url.path().trim_end_matches('/')
    }
}

/// Native TLS: the PEM files (certificate chain, private key), re-read this often.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    pub reload_interval: Duration,
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

#[derive(Debug, Clone)]
pub struct StsSettings {
    pub role_arn: RoleArn,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub region: String,
    pub prefixes: Vec<String>,
    pub groups: Vec<String>,
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

fn validate_region(key: &str, region: &str) -> Result<(), ConfigError> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::key(
            key,
            format!("{region:?} is not a region name like \"us-west-2\""),
        ))
    }
}

/// Whether `url` points at this machine (127.0.0.0/8, ::1 or localhost): the only place plain
/// http is accepted for anything carrying credentials.
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

pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        // Non-special schemes (redis://) leave addresses unparsed.
        Some(Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

fn parse_http_url(key: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value)
        .map_err(|e| ConfigError::key(key, format!("{value:?} is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::key(
            key,
            format!("{value:?} must be an absolute http(s) URL"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::key(
            key,
            format!("{value:?} must not have a query or fragment"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::key(
            key,
            "must not carry credentials in the URL".to_string(),
        ));
    }
    Ok(url)
}

fn required<'a>(key: &str, v: &'a Option<String>) -> Result<&'a str, ConfigError> {
    match v.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ConfigError::key(key, "is required but not set")),
    }
}

/// A secret given from the environment (`key`, STSVEND_<SECTION>__<KEY>) or as a file
/// (`<key>_file`), never both; None when neither is set.
fn one_secret(
    key: &str,
    value: &Option<SecretString>,
    file: &Option<RelativePathBuf>,
) -> Result<Option<String>, ConfigError> {
    let file_key = format!("{key}_file");
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::key(
            &file_key,
            format!(
                "set either {ENV_PREFIX}{} or {file_key}, not both",
                key.replace('.', "__").to_uppercase()
            ),
        )),
        (Some(v), None) => Ok(Some(v.expose_secret().to_owned())),
        (None, Some(path)) => read_secret_file(&file_key, &path.relative()).map(Some),
        (None, None) => Ok(None),
    }
}

/// Secrets are small: anything bigger is a mistake (or `/dev/zero`), not a key.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

fn read_secret_file(key: &str, path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let fail = |e: &dyn fmt::Display| {
        ConfigError::key(key, format!("cannot read {}: {e}", path.display()))
    };
    // Only regular files (symlinks to them, as Kubernetes mounts secrets, are fine): a FIFO
    // or device would hang startup or never end.
    let meta = std::fs::metadata(path).map_err(|e| fail(&e))?;
    if !meta.is_file() {
        return Err(fail(&"not a regular file"));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| fail(&e))?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(fail(&format!("larger than {MAX_SECRET_FILE_BYTES} bytes")));
    }
    Ok(text.trim().to_owned())
}

/// `value` when it lies in `min..=max`; otherwise an error naming the key and the range.
fn within<T: PartialOrd + fmt::Display + Copy>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::key(
            key,
            format!("{value} is out of range; expected {min}..={max}"),
        ))
    }
}

fn seconds(key: &str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    within(key, value, min, max)
        .map(Duration::from_secs)
        .map_err(|e| ConfigError {
            message: format!("{} seconds", e.message),
            ..e
        })
}

impl Settings {
    pub fn validate(raw: &RawSettings) -> Result<Self, ConfigError> {
        let server = Self::validate_server(&raw.server)?;
        let oidc = Self::validate_oidc(&raw.oidc)?;
        let session = Self::validate_session(&raw.session, &server.public_url)?;
        let sts = Self::validate_sts(&raw.sts)?;
        let buckets = Self::validate_buckets(&raw.buckets)?;
        let policy = Self::validate_policy(&raw.policy)?;
        let cache = Self::validate_cache(&raw.cache)?;
        let cors = Self::validate_cors(&raw.cors)?;
        let limits = LimitSettings {
            idp_requests_per_minute: raw.limits.idp_requests_per_minute,
            idp_burst: raw.limits.idp_burst.max(1),
            login_starts_per_minute: raw.limits.login_starts_per_minute,
            login_start_burst: raw.limits.login_start_burst.max(1),
        };
        let cluster = match &raw.cluster {
            Some(c) => Some(Self::validate_cluster(c, &sts)?),
            None => None,
        };
        let admin_token = match &raw.admin {
            Some(a) => Some(Self::validate_admin(a, &server)?),
            None => None,
        };
        let settings = Self {
            admin_token,
            cluster,
            server,
            oidc,
            session,
            sts,
            buckets,
            policy,
            cache,
            cors,
            limits,
        };
        // Key: "buckets" when the inline way cannot hold them, else the way's own setting.
        let key = match settings.policy.mode {
            ScopeMode::Inline => "buckets",
            _ => "policy.mode",
        };
        crate::vend::scope::check(&settings).map_err(|e| ConfigError::key(key, e))?;
        Ok(settings)
    }

    fn validate_admin(
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

    fn validate_cluster(
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

    fn validate_policy(raw: &RawPolicy) -> Result<PolicySettings, ConfigError> {
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

    fn validate_server(raw: &RawServer) -> Result<ServerSettings, ConfigError> {
        let bind = raw.bind.parse::<SocketAddr>().map_err(|_| {
            ConfigError::key(
                "server.bind",
                format!("{:?} is not an address like \"127.0.0.1:8080\"", raw.bind),
            )
        })?;
        let public_url = parse_http_url(
            "server.public_url",
            required("server.public_url", &raw.public_url)?,
        )?;
        let app = raw.app_name.trim();
        if app.is_empty()
            || app.len() > 32
            || !app
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        {
            return Err(ConfigError::key(
                "server.app_name",
                format!(
                    "{app:?} must be 1-32 characters of letters, digits and +=,.@_- (it ends every STS session name)"
                ),
            ));
        }
        Ok(ServerSettings {
            bind,
            public_url,
            app_name: app.to_owned(),
            workers: within("server.workers", raw.workers, 0, 256)?,
            metrics: raw.metrics,
            shutdown_timeout: seconds(
                "server.shutdown_timeout_seconds",
                raw.shutdown_timeout_seconds,
                0,
                3600,
            )?,
            log_format: raw.log_format,
            log_queue_max_bytes: within(
                "server.log_queue_max_bytes",
                raw.log_queue_max_bytes,
                64 * 1024,
                1 << 30,
            )?,
            trust_x_forwarded_for: raw.trust_x_forwarded_for,
            request_head_timeout: seconds(
                "server.request_head_timeout_seconds",
                raw.request_head_timeout_seconds,
                1,
                120,
            )?,
            keep_alive: seconds("server.keep_alive_seconds", raw.keep_alive_seconds, 1, 3600)?,
            internal_bind: match &raw.internal_bind {
                None => None,
                Some(a) => {
                    let addr = a.parse::<SocketAddr>().map_err(|_| {
                        ConfigError::key(
                            "server.internal_bind",
                            format!("{a:?} is not an address like \"0.0.0.0:9090\""),
                        )
                    })?;
                    if addr == bind && addr.port() != 0 {
                        return Err(ConfigError::key(
                            "server.internal_bind",
                            "must differ from server.bind",
                        ));
                    }
                    Some(addr)
                }
            },
            tls: match &raw.tls {
                None => None,
                Some(t) => {
                    let (cert_file, key_file) = (t.cert_file.relative(), t.key_file.relative());
                    // Load once now: a missing, unreadable or mismatched pair stops startup
                    // (and check-config) with one line naming the file.
                    crate::tls::load(&cert_file, &key_file).map_err(|e| {
                        let key = if e.path == key_file {
                            "server.tls.key_file"
                        } else {
                            "server.tls.cert_file"
                        };
                        ConfigError::key(key, e)
                    })?;
                    Some(TlsSettings {
                        cert_file,
                        key_file,
                        reload_interval: seconds(
                            "server.tls.reload_interval_seconds",
                            t.reload_interval_seconds,
                            1,
                            3600,
                        )?,
                    })
                }
            },
            max_connections_per_worker: within(
                "server.max_connections_per_worker",
                raw.max_connections_per_worker,
                1,
                1_000_000,
            )?,
        })
    }

    fn validate_oidc(raw: &RawOidc) -> Result<OidcSettings, ConfigError> {
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

    fn validate_session(
        raw: &RawSession,
        public_url: &Url,
    ) -> Result<SessionSettings, ConfigError> {
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

    fn validate_sts(raw: &RawSts) -> Result<StsSettings, ConfigError> {
        let role_arn = RoleArn::parse(required("sts.role_arn", &raw.role_arn)?)
            .map_err(|e| ConfigError::key("sts.role_arn", e))?;
        validate_region("sts.region", &raw.region)?;
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

    fn validate_buckets(raw: &[RawBucket]) -> Result<Vec<Bucket>, ConfigError> {
        let mut out: Vec<Bucket> = Vec::with_capacity(raw.len());
        for (i, b) in raw.iter().enumerate() {
            let key = |field: &str| format!("buckets[{i}].{field}");
            validate_bucket_name(&b.name).map_err(|e| ConfigError::key(&key("name"), e))?;
            if out.iter().any(|o| o.name == b.name) {
                return Err(ConfigError::key(
                    &key("name"),
                    format!("{:?} is listed twice", b.name),
                ));
            }
            validate_region(&key("region"), &b.region)?;
            for p in &b.prefixes {
                if p.is_empty()
                    || p.starts_with('/')
                    || p.contains(['*', '?', '$', '"', '\\'])
                    || p.chars().any(char::is_control)
                    || p.chars().any(|c| u32::from(c) > 0xFF)
                    || p.len() > 512
                {
                    return Err(ConfigError::key(
                        &key("prefixes"),
                        format!("{p:?} must be a non-empty key prefix of at most 512 characters without a leading '/', wildcards (*, ?), '$', quotes, backslashes or characters beyond U+00FF (STS refuses session policies with those)"),
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
            });
        }
        Ok(out)
    }

    /// Thresholds above `sts.duration_seconds` are allowed: they mean cached credentials of
    /// that format are never old enough to reuse, so every request gets a fresh one.
    fn validate_cache(raw: &RawCache) -> Result<CacheSettings, ConfigError> {
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

    fn validate_cors(raw: &RawCors) -> Result<CorsSettings, ConfigError> {
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

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(s).ok())
}

/// The effective configuration as TOML with secrets replaced by `<redacted>`.
pub fn render_redacted(raw: &RawSettings) -> String {
    toml::to_string_pretty(raw).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn role_arn_accepts_every_partition_and_ceph_style() {
        for ok in [
            "arn:aws:iam::123456789012:role/stsvend-read",
            "arn:aws-us-gov:iam::123456789012:role/path/to/r",
            "arn:aws-cn:iam::123456789012:role/r+=,.@_-",
            "arn:aws:iam:::role/stsvend-read",
        ] {
            assert!(RoleArn::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            RoleArn::parse("arn:aws-us-gov:iam::123456789012:role/x")
                .unwrap()
                .partition(),
            "aws-us-gov"
        );
    }

    #[test]
    fn role_arn_rejects_malformed() {
        for bad in [
            "",
            "role/x",
            "arn:aws:iam::123:role/x",
            "arn:aws:s3:::bucket",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
            "arn:AWS:iam::123456789012:role/x",
            "arn:aws:iam::123456789012:role/has space",
        ] {
            assert!(RoleArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "demo-inregion", "a.b-c.d", "123bucket"] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Upper",
            "-start",
            "end-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            "under_score",
            &"a".repeat(64),
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_key_variants_decode() {
        let key = [7u8; 64];
        let std = base64::engine::general_purpose::STANDARD.encode(key);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
        assert_eq!(decode_base64(&std).unwrap(), key);
        assert_eq!(decode_base64(&url).unwrap(), key);
        assert!(decode_base64("not base64 !!").is_none());
    }
}
