//! Presigned object links: a SigV4 query-signed URL for one object, signed with the user's own
//! vended session credential (so the link can do nothing that credential cannot, ends when
//! the session does, and S3's logs show the user's session), by the SDK's signer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use secrecy::ExposeSecret;

use crate::config::Settings;
use crate::vend::sts::StsCredentials;

/// Everything but RFC 3986's unreserved characters is encoded (S3's rule for the path, and
/// SigV4's for query values); `/` separates a key's segments in the path.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A link signed this recently is handed out again for the same object, method and ask: a
/// client re-reading the same file (GDAL, a retrying script, a popular download) costs no
/// new signature. A minute off the link's life at most, which `Cache-Control` accounts for.
pub const REUSE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LinkKey {
    access_key_id: String,
    method: &'static str,
    bucket: String,
    key: String,
    asked: Option<u64>,
}

/// A signed link and when it stops working.
#[derive(Debug)]
pub struct Signed {
    pub url: String,
    pub signed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Links signed in the last `REUSE`, by signing credential, method, object and ask (bounded;
/// a new credential means new links).
pub struct Links {
    cache: moka::sync::Cache<LinkKey, Arc<Signed>, foldhash::fast::RandomState>,
}

impl Default for Links {
    fn default() -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(REUSE.to_std().unwrap_or(Duration::from_secs(60)))
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }
}

impl Links {
    /// A link for `method` on `bucket`/`key` signed by `credentials`, living `asked` seconds
    /// (None: `s3.presign_max_seconds`) but never past the setting or the credential; one
    /// signed less than `REUSE` ago (by the injected clock's `now`) when there is one.
    #[allow(clippy::too_many_arguments)]
    pub fn get_or_sign(
        &self,
        settings: &Settings,
        credentials: &StsCredentials,
        method: &'static str,
        bucket: &str,
        key: &str,
        asked: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<Arc<Signed>, String> {
        let id = LinkKey {
            access_key_id: credentials.access_key_id.clone(),
            method,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            asked,
        };
        let left = (credentials.expiration - now).num_seconds().max(1);
        let max = i64::try_from(settings.s3.presign_max.as_secs()).unwrap_or(i64::MAX);
        let life = i64::try_from(asked.unwrap_or(u64::MAX))
            .unwrap_or(i64::MAX)
            .min(max)
            .min(left);
        if let Some(hit) = self.cache.get(&id) {
            if reusable(&hit, now, life) {
                return Ok(hit);
            }
        }
        let mut unsigned = object_url(settings, bucket, key);
        if settings
            .buckets
            .iter()
            .any(|b| b.name == bucket && b.requester_pays)
        {
            // Signed into the link: S3 bills its reader, and refuses it without this.
            unsigned.push_str("?x-amz-request-payer=requester");
        }
        let url = presign(
            method,
            &unsigned,
            credentials,
            &settings.sts.region,
            now.into(),
            Duration::from_secs(life.unsigned_abs()),
        )?;
        let signed = Arc::new(Signed {
            url,
            signed_at: now,
            expires_at: now + chrono::TimeDelta::seconds(life),
        });
        self.cache.insert(id, signed.clone());
        Ok(signed)
    }
}

/// Whether `hit` may stand in for a link of `life` seconds signed `now`: signed within the last
/// `REUSE`, and short of that life by at most a tenth of it (a 5-second link is reused only
/// within half a second, an hour's within the minute).
fn reusable(hit: &Signed, now: DateTime<Utc>, life: i64) -> bool {
    let lost_ms = (life.saturating_mul(1000) / 10).min(REUSE.num_milliseconds());
    let left_ms = (hit.expires_at - now).num_milliseconds();
    now >= hit.signed_at
        && now - hit.signed_at < REUSE
        && left_ms >= life.saturating_mul(1000) - lost_ms
}

/// S3's longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a key cannot be linked: said to the user.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!("an object key is 1 to {MAX_KEY_BYTES} bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err("an object key here has no control characters".into());
    }
    // HTTP clients resolve `.` and `..` segments before sending: the link would name
    // another object than the one signed.
    if key.split('/').any(|s| s == "." || s == "..") {
        return Err("an object key with `.` or `..` segments cannot be linked".into());
    }
    Ok(())
}

/// The object's URL, unsigned: `[s3] endpoint_url` or AWS's regional endpoint, path-style when
/// `force_path_style` (or for AWS buckets with dots, which virtual-hosted TLS cannot serve),
/// virtual-hosted otherwise.
pub fn object_url(settings: &Settings, bucket: &str, key: &str) -> String {
    let key = utf8_percent_encode(key, PATH);
    let s3 = &settings.s3;
    match &s3.endpoint_url {
        Some(endpoint) => {
            let scheme = endpoint.scheme();
            let host = endpoint.host_str().unwrap_or("localhost");
            let port = endpoint.port().map(|p| format!(":{p}")).unwrap_or_default();
            if s3.force_path_style {
                format!("{scheme}://{host}{port}/{bucket}/{key}")
            } else {
                format!("{scheme}://{bucket}.{host}{port}/{key}")
            }
        }
        None => {
            let region = &settings.sts.region;
            let suffix = if settings.sts.role_arn.partition() == "aws-cn" {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            if s3.force_path_style || bucket.contains('.') {
                format!("https://s3.{region}.{suffix}/{bucket}/{key}")
            } else {
                format!("https://{bucket}.s3.{region}.{suffix}/{key}")
            }
        }
    }
}

/// `url` (from `object_url`) signed for `method` by `credentials`, valid `expires_in` from
/// `now`.
pub fn presign(
    method: &str,
    url: &str,
    credentials: &StsCredentials,
    region: &str,
    now: SystemTime,
    expires_in: Duration,
) -> Result<String, String> {
    let identity = aws_credential_types::Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose_secret().to_owned(),
        Some(credentials.session_token.expose_secret().to_owned()),
        None,
        "stsvend",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires_in);
    // S3 signs the path as sent: encoded once, never normalised.
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut out = String::with_capacity(url.len() + 1024);
    out.push_str(url);
    let mut separator = if url.contains('?') { '&' } else { '?' };
    for (name, value) in instructions.params() {
        out.push(separator);
        separator = '&';
        out.push_str(name);
        out.push('=');
        out.extend(utf8_percent_encode(value, QUERY));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_clients_would_rewrite_or_s3_refuses_are_not_linked() {
        for bad in ["", "a/../b", "./a", "a/.", "x\ny", &"k".repeat(1025)] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for good in ["a/b.nc", "a//b", "a/.hidden", "dir/..x", "é/ü space+plus"] {
            assert!(check_key(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn keys_are_encoded_once_with_their_slashes_kept() {
        let mut settings = crate::config::test_settings();
        assert_eq!(
            object_url(&settings, "demo-bucket", "a b/c+d/é.nc"),
            "https://demo-bucket.s3.us-west-2.amazonaws.com/a%20b/c%2Bd/%C3%A9.nc"
        );
        assert_eq!(
            object_url(&settings, "dotted.bucket", "k"),
            "https://s3.us-west-2.amazonaws.com/dotted.bucket/k"
        );
        settings.s3.endpoint_url = Some(url::Url::parse("http://127.0.0.1:9000").unwrap());
        assert_eq!(
            object_url(&settings, "demo-bucket", "k"),
            "http://demo-bucket.127.0.0.1:9000/k"
        );
        settings.s3.force_path_style = true;
        assert_eq!(
            object_url(&settings, "demo-bucket", "a/k"),
            "http://127.0.0.1:9000/demo-bucket/a/k"
        );
    }
    fn creds(now: DateTime<Utc>) -> StsCredentials {
        StsCredentials::new(
            "ASIAEXAMPLE".into(),
            secrecy::SecretString::from("s3cr3t".to_owned()),
            secrecy::SecretString::from("token".to_owned()),
            now + chrono::TimeDelta::hours(1),
            None,
        )
    }

    #[test]
    fn a_link_signed_within_the_minute_is_handed_out_again() {
        let settings = crate::config::test_settings();
        let links = Links::default();
        let t0 = chrono::Utc::now();
        let c = creds(t0);
        let sign = |at, method, asked| {
            links
                .get_or_sign(&settings, &c, method, "demo-bucket", "a/b.nc", asked, at)
                .unwrap()
        };
        let first = sign(t0, "GET", None);
        let again = sign(t0 + chrono::TimeDelta::seconds(30), "GET", None);
        assert!(Arc::ptr_eq(&first, &again), "reused within the minute");
        let head = sign(t0 + chrono::TimeDelta::seconds(30), "HEAD", None);
        assert!(
            !Arc::ptr_eq(&first, &head),
            "another method is another link"
        );
        assert_ne!(first.url, head.url);
        let later = sign(t0 + chrono::TimeDelta::seconds(61), "GET", None);
        assert!(!Arc::ptr_eq(&first, &later), "signed anew after the minute");
        assert_eq!(
            later.expires_at,
            t0 + chrono::TimeDelta::seconds(61 + 3600 - 61),
            "capped by the credential's life"
        );
    }

    #[test]
    fn a_short_link_is_never_handed_out_expired_or_nearly() {
        let settings = crate::config::test_settings();
        let links = Links::default();
        let t0 = chrono::Utc::now();
        let c = creds(t0);
        let sign = |at| {
            links
                .get_or_sign(&settings, &c, "GET", "demo-bucket", "k", Some(5), at)
                .unwrap()
        };
        let first = sign(t0);
        let ten_later = t0 + chrono::TimeDelta::seconds(10);
        let second = sign(ten_later);
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.expires_at, ten_later + chrono::TimeDelta::seconds(5));
        // Within a tenth of its life it is still the same link.
        let soon = ten_later + chrono::TimeDelta::milliseconds(400);
        assert!(Arc::ptr_eq(&second, &sign(soon)));
    }
}
