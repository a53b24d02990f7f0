//! `[s3]`: where presigned object links point (`GET /s3/<bucket>/<key>`) and how long they
//! may live.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::values::*;

/// SigV4 query signing allows at most seven days.
pub const MAX_PRESIGN_SECONDS: u64 = 7 * 24 * 3600;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3 {
    pub endpoint_url: Option<String>,
    pub force_path_style: bool,
    pub presign_max_seconds: u64,
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    /// None: AWS's regional endpoint, `https://s3.<sts.region>.amazonaws.com`.
    pub endpoint_url: Option<Url>,
    /// `<endpoint>/<bucket>/<key>` instead of `<bucket>.<endpoint host>/<key>`.
    pub force_path_style: bool,
    /// The longest a link may live (it also never outlives the credential it is signed with).
    pub presign_max: Duration,
}

pub(super) fn validate(raw: &RawS3) -> Result<S3Settings, ConfigError> {
    let endpoint_url = raw
        .endpoint_url
        .as_deref()
        .map(|u| parse_http_url("s3.endpoint_url", u))
        .transpose()?;
    if let Some(url) = &endpoint_url {
        // Links carry a session token: over http anyone on the way could use it.
        if url.scheme() != "https" && !is_loopback(url) {
            return Err(ConfigError::key(
                "s3.endpoint_url",
                format!("{url} must use https (plain http is allowed only on loopback)"),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
            return Err(ConfigError::key(
                "s3.endpoint_url",
                format!("{url} must be a scheme, host and port only (no path or query)"),
            ));
        }
    }
    Ok(S3Settings {
        endpoint_url,
        force_path_style: raw.force_path_style,
        presign_max: seconds(
            "s3.presign_max_seconds",
            raw.presign_max_seconds,
            60,
            MAX_PRESIGN_SECONDS,
        )?,
    })
}
