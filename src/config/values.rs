//! What every section's validation uses: the error naming the key at fault, the checks of
//! numbers, URLs and secrets, and the serializers that keep secrets out of the rendering.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use figment::value::magic::RelativePathBuf;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Environment variable prefix: `STSVEND_<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "STSVEND_";

/// A configuration problem, always naming the key at fault and what was expected.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {message}")]
pub struct ConfigError {
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn key(key: &str, message: impl fmt::Display) -> Self {
        Self {
            key: Some(key.to_owned()),
            message: format!("`{key}`: {message}"),
        }
    }

    /// The same error reported under `at` (e.g. `archives[1]`): its key becomes `at.key`.
    pub fn within(self, at: &str) -> Self {
        match &self.key {
            Some(key) => {
                let message = self
                    .message
                    .strip_prefix(&format!("`{key}`: "))
                    .unwrap_or(&self.message)
                    .to_owned();
                Self::key(&format!("{at}.{key}"), message)
            }
            None => self,
        }
    }

    /// An error about archive `i`'s view of the settings (`Settings::for_archive`), said
    /// where that archive is configured: the first is the top-level sections, the others
    /// `[[archives]]` entries.
    pub fn in_archive(self, i: usize) -> Self {
        match i {
            0 => self,
            _ => self.within(&format!("archives[{}]", i - 1)),
        }
    }

    pub(super) fn general(message: impl Into<String>) -> Self {
        Self {
            key: None,
            message: message.into(),
        }
    }
}

pub(super) fn redacted<S: serde::Serializer>(
    v: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("<redacted>"),
        None => s.serialize_none(),
    }
}

pub(super) fn redacted_list<S: serde::Serializer>(
    v: &[SecretString],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|_| "<redacted>"))
}

pub(super) fn resolved_paths<S: serde::Serializer>(
    v: &[RelativePathBuf],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(RelativePathBuf::relative))
}

pub(super) fn resolved_required<S: serde::Serializer>(
    v: &RelativePathBuf,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_some(&v.relative())
}

pub(super) fn resolved_path<S: serde::Serializer>(
    v: &Option<RelativePathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(p) => s.serialize_some(&p.relative()),
        None => s.serialize_none(),
    }
}

pub(super) fn validate_region(key: &str, region: &str) -> Result<(), ConfigError> {
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

pub use crate::common::is_loopback;

pub(super) fn parse_http_url(key: &str, value: &str) -> Result<Url, ConfigError> {
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

pub(super) fn required<'a>(key: &str, v: &'a Option<String>) -> Result<&'a str, ConfigError> {
    match v.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ConfigError::key(key, "is required but not set")),
    }
}

/// A secret given from the environment (`key`, STSVEND_<SECTION>__<KEY>) or as a file
/// (`<key>_file`), never both; None when neither is set.
pub(super) fn one_secret(
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
pub(super) const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

pub(super) fn read_secret_file(key: &str, path: &Path) -> Result<String, ConfigError> {
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
pub(super) fn within<T: PartialOrd + fmt::Display + Copy>(
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

pub(super) fn seconds(key: &str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    within(key, value, min, max)
        .map(Duration::from_secs)
        .map_err(|e| ConfigError {
            message: format!("{} seconds", e.message),
            ..e
        })
}

pub(super) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(s).ok())
}
