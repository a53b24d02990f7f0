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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn raw(endpoint: Option<&str>, max: u64) -> RawS3 {
        RawS3 {
            endpoint_url: endpoint.map(str::to_owned),
            force_path_style: false,
            presign_max_seconds: max,
        }
    }

    #[test]
    fn links_never_point_over_plain_http_off_loopback_or_live_past_sigv4s_week() {
        for (endpoint, max, key) in [
            (Some("http://rgw.example.org"), 3600, "s3.endpoint_url"),
            (
                Some("https://rgw.example.org/prefix"),
                3600,
                "s3.endpoint_url",
            ),
            (
                Some("https://rgw.example.org/?x=1"),
                3600,
                "s3.endpoint_url",
            ),
            (None, 59, "s3.presign_max_seconds"),
            (None, MAX_PRESIGN_SECONDS + 1, "s3.presign_max_seconds"),
        ] {
            let e = validate(&raw(endpoint, max)).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{endpoint:?} {max}: {e}");
        }
        let ok = validate(&raw(Some("http://127.0.0.1:9000"), 600)).unwrap();
        assert_eq!(ok.presign_max, Duration::from_secs(600));
        assert!(validate(&raw(Some("https://rgw.example.org"), MAX_PRESIGN_SECONDS)).is_ok());
    }
}
