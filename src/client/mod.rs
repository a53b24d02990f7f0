//! `stsvend credential-process`: the client side for AWS `credential_process`, GDAL and other
//! environment-only tools. Authenticates with a bearer token or a `.netrc` (the Earthdata
//! redirect chain), keeps a per-endpoint-and-identity cache file (mode 0600, atomic writes)
//! under `$XDG_CACHE_HOME/stsvend/`, and reuses it while more than 15 minutes remain, so
//! hundreds of SDK processes do not each call the service.

pub mod archives;
pub mod botocore_ini;
pub mod checked;
pub mod configure;
pub mod netrc;
pub mod tickets;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Reuse a cached credential only while more than this remains (botocore refreshes at 15).
pub const REUSE_MIN_REMAINING: TimeDelta = TimeDelta::minutes(15);
const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: usize = 10;

#[derive(Debug, Clone)]
pub enum Auth {
    Bearer(String),
    /// The netrc file to read credentials for the IdP's host from.
    Netrc(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    CredentialProcess,
    Env,
}

pub struct Options {
    pub endpoint: url::Url,
    pub auth: Auth,
    pub format: OutputFormat,
    pub cache_dir: Option<PathBuf>,
    pub region: Option<checked::Region>,
}

/// What the cache file holds: the credential_process document plus the region.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cached {
    #[serde(rename = "Version")]
    version: u8,
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: String,
    #[serde(rename = "SessionToken")]
    session_token: String,
    #[serde(rename = "Expiration")]
    expiration: String,
    /// Checked on the way in: a cache file written by an older helper may hold anything.
    #[serde(rename = "Region", default, skip_serializing_if = "Option::is_none")]
    region: Option<checked::Region>,
}

impl Cached {
    fn expires(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.expiration)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    fn usable(&self, now: DateTime<Utc>) -> bool {
        self.expires()
            .is_some_and(|e| e - now > REUSE_MIN_REMAINING)
    }
}

/// A failure worth one clear line on stderr. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Usage(String),
    #[error("the service rejected the token ({0}); get a new one from your identity provider (Earthdata Login: Profile > Generate Token) and try again")]
    TokenRejected(String),
    #[error("not signed in: {0}")]
    LoginFailed(String),
    #[error("access denied: {0}")]
    Forbidden(String),
    #[error("the service answered {status}{detail}")]
    Service { status: u16, detail: String },
    #[error("cannot reach {0}")]
    Unreachable(String),
    #[error("cache: {0}")]
    Cache(String),
}

/// The cache file for this endpoint and identity (the token's hash, or the netrc login).
fn cache_path(dir: &Path, endpoint: &url::Url, identity: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(endpoint.as_str().as_bytes());
    h.update([0]);
    h.update(identity.as_bytes());
    let name: String = h
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    dir.join(format!("{name}.json"))
}

/// `$XDG_CACHE_HOME/stsvend`, else `~/.cache/stsvend`; on Windows `%LOCALAPPDATA%\stsvend`
/// (a folder only its user may read, by the profile's default permissions).
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            if cfg!(windows) {
                var("LOCALAPPDATA").map(PathBuf::from)
            } else {
                None
            }
        })
        .or_else(|| crate::common::home_dir().map(|h| h.join(".cache")))
        .map(|d| d.join("stsvend"))
}

/// Whether `meta` belongs to the user running the helper and nobody else can write it.
#[cfg(unix)]
fn private_to_us(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o022 == 0
}

/// Elsewhere (Windows) ownership and modes are ACLs the helper does not read: the cache
/// lives in the user's own profile folder, and a link there is refused (see `read_cache`).
#[cfg(not(unix))]
fn private_to_us(meta: &std::fs::Metadata) -> bool {
    !meta.file_type().is_symlink()
}

/// Create the cache directory if needed, and refuse one that is a symlink, not ours, or
/// writable by others: whoever can write it could plant credentials for us to use, or
/// links that make us overwrite their choice of file.
fn checked_cache_dir(dir: &Path) -> Result<(), ClientError> {
    crate::common::create_private_dir(dir)
        .map_err(|e| ClientError::Cache(format!("cannot create {}: {e}", dir.display())))?;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| ClientError::Cache(format!("cannot read {}: {e}", dir.display())))?;
    if !meta.is_dir() || !private_to_us(&meta) {
        return Err(ClientError::Cache(format!(
            "{} is not a private directory of this user (it must be owned by you and not group- or world-writable); not caching",
            dir.display()
        )));
    }
    Ok(())
}

fn read_cache(path: &Path) -> Option<Cached> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    // Without O_NOFOLLOW, a link is refused by looking first (a race the user's own
    // profile folder leaves to the user alone).
    #[cfg(not(unix))]
    if !std::fs::symlink_metadata(path).ok()?.is_file() {
        return None;
    }
    let mut file = options.open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || !private_to_us(&meta) {
        return None;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// Replaces the cache file whole (`common::replace_file`): a concurrent reader sees the old
/// file or the new one, and a link at `path` is replaced, never followed.
fn write_cache(path: &Path, value: &Cached) -> Result<(), ClientError> {
    let dir = path
        .parent()
        .ok_or_else(|| ClientError::Cache("no cache directory".into()))?;
    checked_cache_dir(dir)?;
    let json = serde_json::to_vec(value).map_err(|e| ClientError::Cache(e.to_string()))?;
    crate::common::replace_file(path, &json, 0o600)
        .map_err(|e| ClientError::Cache(format!("cannot replace {}: {e}", path.display())))
}

fn render(cached: &Cached, format: OutputFormat) -> String {
    match format {
        OutputFormat::CredentialProcess => {
            let mut doc = cached.clone();
            doc.region = None;
            serde_json::to_string(&doc).unwrap_or_default()
        }
        OutputFormat::Env => {
            let mut out = format!(
                "export AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\nexport AWS_SESSION_TOKEN={}\nexport AWS_CREDENTIAL_EXPIRATION={}\n",
                shell_quote(&cached.access_key_id),
                shell_quote(&cached.secret_access_key),
                shell_quote(&cached.session_token),
                shell_quote(&cached.expiration),
            );
            if let Some(region) = &cached.region {
                out.push_str(&format!(
                    "export AWS_REGION={0}\nexport AWS_DEFAULT_REGION={0}\n",
                    shell_quote(region.as_str())
                ));
            }
            out
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Run the helper: print credentials on stdout, from the cache when they are fresh enough.
pub async fn run(options: Options) -> Result<String, ClientError> {
    let identity = match &options.auth {
        Auth::Bearer(token) => {
            let digest = Sha256::digest(token.as_bytes());
            format!(
                "bearer:{}",
                digest
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            )
        }
        Auth::Netrc(path) => {
            let netrc = netrc::Netrc::load(path).map_err(ClientError::Usage)?;
            format!("netrc:{}:{}", path.display(), netrc.logins_fingerprint())
        }
    };
    let cache_file = match options.cache_dir.clone().or_else(default_cache_dir) {
        Some(dir) => match checked_cache_dir(&dir) {
            Ok(()) => Some(cache_path(&dir, &options.endpoint, &identity)),
            Err(e) => {
                eprintln!("stsvend: warning: {e}");
                None
            }
        },
        None => None,
    };
    let now = Utc::now();
    if let Some(cached) = cache_file.as_deref().and_then(read_cache) {
        if cached.usable(now) {
            return Ok(render(&cached, options.format));
        }
    }
    let (fresh, warning) = fetch(&options).await?;
    // Once, when the credential is fetched (not on every cached run the SDK makes).
    if let Some(w) = warning {
        eprintln!("stsvend: warning: {w}");
    }
    if let Some(path) = &cache_file {
        // A cache that cannot be written only costs a round trip next time.
        if let Err(e) = write_cache(path, &fresh) {
            eprintln!("stsvend: warning: {e}");
        }
    }
    Ok(render(&fresh, options.format))
}

pub(crate) fn http_client() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(TIMEOUT)
        .user_agent(concat!(
            "stsvend-credential-process/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|e| ClientError::Unreachable(e.to_string()))
}

fn with_format(endpoint: &url::Url) -> url::Url {
    let mut url = endpoint.clone();
    let keep: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "format")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(keep)
        .append_pair("format", "credential-process");
    url
}

/// A fresh credential, and the service's warning about it (`stsvend-warning`), made printable.
async fn fetch(options: &Options) -> Result<(Cached, Option<String>), ClientError> {
    let http = http_client()?;
    let url = with_format(&options.endpoint);
    let res = match &options.auth {
        Auth::Bearer(token) => http
            .get(url.clone())
            .bearer_auth(token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                ClientError::Unreachable(format!("{}: {e}", url.origin().ascii_serialization()))
            })?,
        Auth::Netrc(path) => netrc_chain(&http, url.clone(), path).await?,
    };
    let status = res.status().as_u16();
    let request_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let warning = res
        .headers()
        .get("stsvend-warning")
        .and_then(|v| v.to_str().ok())
        .map(printable)
        .filter(|w| !w.is_empty());
    let text = res.text().await.unwrap_or_default();
    let mut cached = parse_response(status, request_id.as_deref(), &text)?;
    cached.region = match &options.region {
        Some(r) => Some(r.clone()),
        None => fetch_region(&http, options).await?,
    };
    Ok((cached, warning))
}

/// Text from the service shown on the user's terminal: no control characters (escape
/// sequences), and short.
fn printable(s: &str) -> String {
    crate::common::printable(s, 300)
}

/// The one-line error the user sees for an answer that is not a success: the service's
/// sentence and help page, made printable.
pub(crate) fn refusal(status: u16, request_id: Option<&str>, text: &str) -> ClientError {
    let body: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let mut description = printable(body["error_description"].as_str().unwrap_or(""));
    // Where the operator says to read about it: an http(s) URL only, shown as text.
    if let Some(help) = body["help_url"]
        .as_str()
        .and_then(|u| url::Url::parse(u).ok())
        .filter(|u| matches!(u.scheme(), "https" | "http"))
    {
        description.push_str(" (see ");
        description.push_str(&printable(help.as_str()));
        description.push(')');
    }
    let request_id = request_id.map(printable);
    match status {
        401 => ClientError::TokenRejected(description),
        403 => ClientError::Forbidden(description),
        _ => ClientError::Service {
            status,
            detail: match request_id {
                Some(id) => format!(
                    " (request id {id}){}",
                    if description.is_empty() {
                        String::new()
                    } else {
                        format!(": {description}")
                    }
                ),
                None => String::new(),
            },
        },
    }
}

/// The service's answer as a credential, or the one-line error the user sees. Everything in
/// it comes from the network, so nothing is trusted: sizes, characters and shapes are checked.
pub fn parse_response(
    status: u16,
    request_id: Option<&str>,
    text: &str,
) -> Result<Cached, ClientError> {
    if status != 200 {
        return Err(refusal(status, request_id, text));
    }
    let not_a_document = || ClientError::Service {
        status,
        detail: ": the response is not a credential_process document".into(),
    };
    let cached: Cached = serde_json::from_str(text).map_err(|_| not_a_document())?;
    // What goes into shell `export` lines and SDK config must be plain text.
    let plain = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
    };
    if cached.version != 1
        || !plain(&cached.access_key_id, 128)
        || !plain(&cached.secret_access_key, 256)
        || !plain(&cached.session_token, 16 * 1024)
        || cached.expires().is_none()
    {
        return Err(not_a_document());
    }
    Ok(cached)
}

/// The region from `<endpoint>/scope`, for `--format env` users and `configure`: none when the
/// service does not say (best effort), refused when what it says is not a region name.
async fn fetch_region(
    http: &reqwest::Client,
    options: &Options,
) -> Result<Option<checked::Region>, ClientError> {
    let mut url = options.endpoint.clone();
    url.set_query(None);
    let path = format!("{}/scope", url.path().trim_end_matches('/'));
    url.set_path(&path);
    let mut req = http.get(url).header("accept", "application/json");
    if let Auth::Bearer(token) = &options.auth {
        req = req.bearer_auth(token);
    }
    let Ok(res) = req.send().await else {
        return Ok(None);
    };
    let Ok(body) = res.json::<serde_json::Value>().await else {
        return Ok(None);
    };
    body["region"]
        .as_str()
        .map(|r| {
            checked::Region::parse(r).map_err(|e| ClientError::Service {
                status: 200,
                detail: format!(": its region {e}"),
            })
        })
        .transpose()
}

/// The Earthdata redirect chain: follow redirects keeping cookies, sending the netrc
/// credentials (HTTP Basic) only to the host they are for.
async fn netrc_chain(
    http: &reqwest::Client,
    start: url::Url,
    netrc_path: &Path,
) -> Result<reqwest::Response, ClientError> {
    let netrc = netrc::Netrc::load(netrc_path).map_err(ClientError::Usage)?;
    let mut url = start;
    for _ in 0..MAX_REDIRECTS {
        let mut req = http.get(url.clone());
        if let Some(host) = url.host_str() {
            // The service itself must not get the password unless the netrc names it.
            if let Some((login, password)) = netrc.credentials_for(host) {
                if url.scheme() == "https" || crate::common::is_loopback(&url) {
                    req = req.basic_auth(login, Some(password));
                }
            }
        }
        let res = req.send().await.map_err(|e| {
            ClientError::Unreachable(format!("{}: {e}", url.origin().ascii_serialization()))
        })?;
        if !res.status().is_redirection() {
            if res.status().as_u16() == 401 && res.headers().contains_key("www-authenticate") {
                let host = url.host_str().unwrap_or("the identity provider");
                let hint = if netrc.credentials_for(host).is_none() && netrc.has_default() {
                    format!(" (its `default` entry is never sent; add `machine {host} login ... password ...`)")
                } else {
                    String::new()
                };
                return Err(ClientError::LoginFailed(format!(
                    "{host} asked for credentials the netrc file does not have (or they are wrong){hint}"
                )));
            }
            return Ok(res);
        }
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::LoginFailed("a redirect without a Location".into()))?;
        url = url
            .join(location)
            .map_err(|_| ClientError::LoginFailed("a redirect to an invalid URL".into()))?;
    }
    Err(ClientError::LoginFailed("too many redirects".into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(expiration: &str) -> Cached {
        Cached {
            version: 1,
            access_key_id: "ASIA".into(),
            secret_access_key: "s'ecret".into(),
            session_token: "tok".into(),
            expiration: expiration.into(),
            region: Some(checked::Region::parse("us-west-2").unwrap()),
        }
    }

    #[test]
    fn cache_reuse_needs_more_than_15_minutes() {
        let now = Utc::now();
        let fmt = |d: DateTime<Utc>| d.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        assert!(sample(&fmt(now + TimeDelta::minutes(16))).usable(now));
        assert!(!sample(&fmt(now + TimeDelta::minutes(14))).usable(now));
        assert!(!sample("garbage").usable(now));
    }

    #[test]
    fn writes_are_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("x.json");
        write_cache(&path, &sample("2030-01-01T00:00:00Z")).unwrap();
        assert_eq!(read_cache(&path).unwrap().access_key_id, "ASIA");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp files left behind");
    }

    /// Review finding 1e: the cache is never read or written through a link, and a shared
    /// cache directory is refused.
    #[cfg(unix)]
    #[test]
    fn links_and_shared_directories_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private");
        let planted = dir.path().join("planted.json");
        write_cache(&planted, &sample("2030-01-01T00:00:00Z")).unwrap();
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = private.join("x.json");
        std::os::unix::fs::symlink(&planted, &link).unwrap();
        assert!(read_cache(&link).is_none(), "read through a link");
        // Writing replaces the link, never the file it points to.
        let mut mine = sample("2031-01-01T00:00:00Z");
        mine.access_key_id = "MINE".into();
        write_cache(&link, &mine).unwrap();
        assert_eq!(read_cache(&planted).unwrap().access_key_id, "ASIA");
        assert_eq!(read_cache(&link).unwrap().access_key_id, "MINE");
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(checked_cache_dir(&shared).is_err());
        assert!(write_cache(&shared.join("y.json"), &mine).is_err());
        // A readable file someone else could write is not trusted either.
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(read_cache(&planted).is_none());
    }

    #[test]
    fn output_formats() {
        let c = sample("2030-01-01T00:00:00Z");
        let cp: serde_json::Value =
            serde_json::from_str(&render(&c, OutputFormat::CredentialProcess)).unwrap();
        assert_eq!(cp["Version"], 1);
        assert!(cp.get("Region").is_none());
        let env = render(&c, OutputFormat::Env);
        assert!(env.contains("export AWS_SECRET_ACCESS_KEY='s'\\''ecret'\n"));
        assert!(env.contains("export AWS_REGION='us-west-2'\n"));
    }

    #[test]
    fn cache_files_differ_by_endpoint_and_identity() {
        let d = Path::new("/tmp");
        let a = url::Url::parse("https://a.example/s3credentials").unwrap();
        let b = url::Url::parse("https://b.example/s3credentials").unwrap();
        assert_ne!(cache_path(d, &a, "x"), cache_path(d, &b, "x"));
        assert_ne!(cache_path(d, &a, "x"), cache_path(d, &a, "y"));
    }
}
