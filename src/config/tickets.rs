//! `[tickets]`: what a signed-in user may hand to machines that cannot log in; and
//! `[[platforms]]`: services (a JupyterHub, a tile server) whose own OIDC client's tokens are
//! accepted as the user's, acting through the platform.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};

use super::values::*;

/// The longest a deployment may let a ticket live: a ticket is a bearer secret, and a week
/// bounds what a leaked one can do even when nobody deletes it.
const LONGEST_TICKET: Duration = Duration::from_secs(7 * 24 * 3600);
/// Live tickets one user may hold, at most, whatever the deployment says.
const MOST_PER_USER: u32 = 1000;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTickets {
    pub enabled: bool,
    #[serde(default, serialize_with = "resolved_path")]
    pub file: Option<RelativePathBuf>,
    pub default_lifetime_seconds: u64,
    pub max_lifetime_seconds: u64,
    pub max_per_user: u32,
}

#[derive(Debug, Clone)]
pub struct TicketSettings {
    pub enabled: bool,
    /// The durable copy of the tickets this replica knows (and their deletions).
    pub file: PathBuf,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub max_per_user: u32,
}

/// Where the tickets file is when `tickets.file` is not set: beside the revocations file, so
/// that the one volume that keeps revocations keeps tickets too.
fn beside(revocations: &Path) -> PathBuf {
    let stem = revocations
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "revocations".into());
    revocations.with_file_name(format!("{stem}-tickets.json"))
}

pub(super) fn validate(
    raw: &RawTickets,
    revocations: &Path,
) -> Result<TicketSettings, ConfigError> {
    let file = match &raw.file {
        Some(f) => {
            let file = f.relative();
            if file.as_os_str().is_empty() || file.file_name().is_none() {
                return Err(ConfigError::key(
                    "tickets.file",
                    "must name a file (its folder is created if missing)",
                ));
            }
            if file == revocations {
                return Err(ConfigError::key(
                    "tickets.file",
                    "must not be revocations.file",
                ));
            }
            file
        }
        None => beside(revocations),
    };
    let longest = LONGEST_TICKET.as_secs();
    let max = within(
        "tickets.max_lifetime_seconds",
        raw.max_lifetime_seconds,
        900,
        longest,
    )?;
    let default = within(
        "tickets.default_lifetime_seconds",
        raw.default_lifetime_seconds,
        900,
        longest,
    )?;
    if default > max {
        return Err(ConfigError::key(
            "tickets.default_lifetime_seconds",
            format!("is longer than tickets.max_lifetime_seconds ({max})"),
        ));
    }
    let max_per_user = within("tickets.max_per_user", raw.max_per_user, 1, MOST_PER_USER)?;
    Ok(TicketSettings {
        enabled: raw.enabled,
        file,
        default_lifetime: Duration::from_secs(default),
        max_lifetime: Duration::from_secs(max),
        max_per_user,
    })
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlatform {
    pub name: String,
    pub client_id: String,
    #[serde(default)]
    pub title: Option<String>,
}

/// A service allowed to act for its users with its own OIDC client's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `[a-z0-9-]`, 1-24 characters: it goes into STS session names and log lines.
    pub name: String,
    /// The platform's OIDC client id: a token issued to it (`aud`, `azp` or `client_id`).
    pub client_id: String,
    pub title: String,
}

/// The longest platform name (a session name holds the user, the service and the platform
/// in 64 characters).
const MAX_PLATFORM_NAME: usize = 24;

/// `server.app_name` and a platform's name together, at most: the session name
/// `<user>@<app>+<platform>` keeps 22 of its 64 characters for the user.
const APP_AND_PLATFORM: usize = 40;

pub(super) fn validate_platforms(
    raw: &[RawPlatform],
    own_client_id: &str,
    audiences: &[String],
    app_name: &str,
) -> Result<Vec<Platform>, ConfigError> {
    let mut out: Vec<Platform> = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let at = |k: &str| format!("platforms[{i}].{k}");
        let name_ok = !p.name.is_empty()
            && p.name.len() <= MAX_PLATFORM_NAME
            && p.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(ConfigError::key(
                &at("name"),
                format!("must be 1-{MAX_PLATFORM_NAME} characters of a-z, 0-9 and -"),
            ));
        }
        if app_name.len() + p.name.len() > APP_AND_PLATFORM {
            return Err(ConfigError::key(
                &at("name"),
                format!("with server.app_name ({app_name:?}) is over {APP_AND_PLATFORM} characters: STS session names (<user>@<app>+<platform>) would leave too little for the user"),
            ));
        }
        let id = p.client_id.trim();
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err(ConfigError::key(
                &at("client_id"),
                "must be the platform's OIDC client id",
            ));
        }
        if id == own_client_id || audiences.iter().any(|a| a == id) {
            return Err(ConfigError::key(
                &at("client_id"),
                "is this service's own client id or audience: tokens issued to it are the user's own, not a platform's",
            ));
        }
        if out.iter().any(|o| o.name == p.name) {
            return Err(ConfigError::key(&at("name"), "is used by another platform"));
        }
        if out.iter().any(|o| o.client_id == id) {
            return Err(ConfigError::key(
                &at("client_id"),
                "is used by another platform",
            ));
        }
        let title = p.title.clone().unwrap_or_else(|| p.name.clone());
        if title.len() > 200 || title.chars().any(char::is_control) {
            return Err(ConfigError::key(
                &at("title"),
                "must be at most 200 characters without control characters",
            ));
        }
        out.push(Platform {
            name: p.name.clone(),
            client_id: id.to_owned(),
            title,
        });
    }
    Ok(out)
}
