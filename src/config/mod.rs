//! Typed settings: `config/default.toml` (compiled in), then an optional file, then
//! `STSVEND_<SECTION>__<KEY>` environment variables. Parsed into raw structs that reject unknown
//! keys, then validated once into the types the rest of the service uses.

use std::path::Path;

use figment::providers::{Env, Format, Toml};
use figment::{Figment, Source};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

mod archives;
mod buckets;
mod cluster;
mod minor;
mod network;
mod oidc;
mod s3;
mod server;
mod session;
mod sts;
mod tickets;
mod values;

pub use archives::{ArchiveSettings, RawArchive, RawArchiveMain};
pub use buckets::{
    is_policy_safe_prefix, validate_bucket_name, Bucket, PolicySettings, RawBucket, RawPolicy,
    ScopeMode, PREFIX_RULE,
};
pub use cluster::{ClusterSettings, RawCluster, SecretBytes};
pub use minor::{
    CacheSettings, CorsSettings, LimitSettings, RawAdmin, RawCache, RawCors, RawLimits,
    RawRevocations, RevocationSettings,
};
pub use network::{NetworkSettings, OutOfRegion, RawHelp, RawNetwork};
pub use oidc::{token_type, OidcSettings, RawOidc};
pub use s3::{RawS3, S3Settings};
pub use server::{LogFormat, RawServer, RawTls, ServerSettings, TlsSettings};
pub use session::{CookieKey, RawSession, SessionSettings};
pub use sts::{RawSts, RoleArn, StsSettings};
pub use tickets::{Platform, RawPlatform, RawTickets, TicketSettings};
pub use values::{is_loopback, ConfigError, ENV_PREFIX};

/// The defaults every configuration starts from; also the documented reference of every key.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Names the configuration file; not a setting.
pub const CONFIG_PATH_ENV: &str = "STSVEND_CONFIG";

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
    pub s3: RawS3,
    pub revocations: RawRevocations,
    #[serde(default)]
    pub cluster: Option<RawCluster>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    pub archive: RawArchiveMain,
    #[serde(default)]
    pub archives: Vec<RawArchive>,
    pub network: RawNetwork,
    pub help: RawHelp,
    pub tickets: RawTickets,
    #[serde(default)]
    pub platforms: Vec<RawPlatform>,
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
    pub s3: S3Settings,
    pub revocations: RevocationSettings,
    pub cluster: Option<ClusterSettings>,
    /// The admin API's bearer token (`[admin]`); the API exists only when set.
    pub admin_token: Option<SecretString>,
    /// Every archive, the top-level one (`sts`, `buckets`, `policy`, `s3` above) first.
    pub archives: Vec<ArchiveSettings>,
    /// The archive `/s3credentials` serves when a request names no target.
    pub default_archive: usize,
    pub network: NetworkSettings,
    /// `[help] urls`: where each error code points users.
    pub help_urls: std::collections::BTreeMap<String, url::Url>,
    pub tickets: TicketSettings,
    pub platforms: Vec<Platform>,
}

impl Settings {
    pub fn validate(raw: &RawSettings) -> Result<Self, ConfigError> {
        let server = server::validate(&raw.server)?;
        let oidc = oidc::validate(&raw.oidc)?;
        let session = session::validate(&raw.session, &server.public_url)?;
        let sts = sts::validate(&raw.sts)?;
        let buckets = buckets::validate(&raw.buckets)?;
        let policy = buckets::validate_policy(&raw.policy)?;
        let cache = minor::validate_cache(&raw.cache)?;
        let cors = minor::validate_cors(&raw.cors)?;
        let s3 = s3::validate(&raw.s3)?;
        let revocations = minor::validate_revocations(&raw.revocations)?;
        let limits = minor::validate_limits(&raw.limits, &sts)?;
        let cluster = match &raw.cluster {
            Some(c) => Some(cluster::validate(c, &sts)?),
            None => None,
        };
        let callback = &oidc.callback_path;
        let mut all = vec![archives::first(
            &raw.archive,
            callback,
            (sts.clone(), buckets.clone(), policy.clone(), s3.clone()),
        )?];
        for (i, a) in raw.archives.iter().enumerate() {
            let archive = archives::other(i, a, (&raw.sts, &raw.policy, &raw.s3), callback)?;
            // What the deployment-wide sections require of `[sts]`, each archive's meets too.
            let at = format!("archives[{i}].sts");
            minor::validate_limits(&raw.limits, &archive.sts)
                .map_err(|e| ConfigError::key(&at, e.message))?;
            if let Some(c) = &raw.cluster {
                cluster::validate(c, &archive.sts).map_err(|e| ConfigError::key(&at, e.message))?;
            }
            all.push(archive);
        }
        let default_archive = archives::check_all(&all, &raw.archive.default)?;
        let network = network::validate(&raw.network)?;
        let help_urls = network::validate_help(&raw.help, crate::common::ERROR_CODES)?;
        let tickets = tickets::validate(&raw.tickets, &revocations.file)?;
        let platforms = tickets::validate_platforms(
            &raw.platforms,
            &oidc.client_id,
            &oidc.audiences,
            &server.app_name,
        )?;
        let admin_token = match &raw.admin {
            Some(a) => Some(minor::validate_admin(a, &server)?),
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
            s3,
            revocations,
            limits,
            archives: all,
            default_archive,
            network,
            help_urls,
            tickets,
            platforms,
        };
        Ok(settings)
    }
}

impl Settings {
    /// The deployment as archive `i` sees it: its `sts`, `buckets`, `policy` and `s3` in
    /// place of the top-level ones (everything that builds a credential reads those).
    pub fn for_archive(&self, i: usize) -> Settings {
        let mut view = self.clone();
        if let Some(a) = self.archives.get(i) {
            view.sts = a.sts.clone();
            view.buckets = a.buckets.clone();
            view.policy = a.policy.clone();
            view.s3 = a.s3.clone();
        }
        view
    }
}

/// The effective configuration as TOML with secrets replaced by `<redacted>`.
pub fn render_redacted(raw: &RawSettings) -> String {
    toml::to_string_pretty(raw).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
}

/// Defaults plus the few keys without one, for unit tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub fn test_settings() -> Settings {
    let (_, settings) = from_figment(
        Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Toml::string(
                "[server]\npublic_url = \"http://127.0.0.1:1\"\n[oidc]\nissuer = \"http://127.0.0.1:2\"\nclient_id = \"c\"\n[session]\nsecure = false\n[sts]\nrole_arn = \"arn:aws:iam::123456789012:role/r\"\n",
            ))
            .merge(figment::providers::Serialized::default(
                "session.key",
                "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==",
            )),
    )
    .unwrap();
    settings
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use base64::Engine as _;

    use super::values::decode_base64;
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
