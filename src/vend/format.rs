//! What clients read. The Earthdata format is byte-for-byte what NASA's services return
//! (key order, `YYYY-MM-DD HH:MM:SS+00:00` expiry); the others are the AWS SDKs'
//! `credential_process` and container-provider shapes.

use std::time::Duration;

use serde::Serialize;

use super::sts::StsCredentials;
use crate::config::CacheSettings;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Earthdata,
    CredentialProcess,
    Container,
}

pub const FORMAT_NAMES: &str = "earthdata, credential-process, container";

impl Format {
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("earthdata") => Ok(Self::Earthdata),
            Some("credential-process") | Some("credential_process") => Ok(Self::CredentialProcess),
            Some("container") => Ok(Self::Container),
            Some(other) => Err(ApiError::bad_request(
                "invalid_format",
                format!(
                    "unknown format {}; valid formats are: {FORMAT_NAMES}",
                    crate::error::quoted(other, 40)
                ),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Earthdata => "earthdata",
            Self::CredentialProcess => "credential-process",
            Self::Container => "container",
        }
    }

    /// `,"format":"<name>"`, as the audit line writes it (one write, not five).
    pub fn audit_member(self) -> &'static str {
        match self {
            Self::Earthdata => ",\"format\":\"earthdata\"",
            Self::CredentialProcess => ",\"format\":\"credential-process\"",
            Self::Container => ",\"format\":\"container\"",
        }
    }

    /// The least lifetime a cached credential must have for this format's clients:
    /// earthaccess ignores the expiry and uses credentials for 55 minutes; the SDKs read it.
    pub fn min_remaining(self, cache: &CacheSettings) -> Duration {
        match self {
            Self::Earthdata => cache.earthdata_min_remaining,
            Self::CredentialProcess | Self::Container => cache.min_remaining,
        }
    }
}

/// The Earthdata (TEA/Cumulus) response, byte for byte: keys in this order, `expiration` as
/// `YYYY-MM-DD HH:MM:SS+00:00`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = EarthdataCredentials)]
pub(crate) struct Earthdata<'a> {
    #[serde(rename = "accessKeyId")]
    access_key_id: &'a str,
    #[serde(rename = "secretAccessKey")]
    secret_access_key: &'a str,
    #[serde(rename = "sessionToken")]
    session_token: &'a str,
    #[schema(
        example = "2026-01-27 00:50:09+00:00",
        pattern = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\+00:00$"
    )]
    expiration: String,
}

/// AWS `credential_process` output (`?format=credential-process`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = CredentialProcessCredentials)]
pub(crate) struct CredentialProcess<'a> {
    #[schema(minimum = 1, maximum = 1)]
    version: u8,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    session_token: &'a str,
    #[schema(example = "2026-01-27T00:50:09Z")]
    expiration: String,
}

/// What the SDKs' container credential provider reads (`?format=container`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = ContainerCredentials)]
pub(crate) struct Container<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    #[schema(example = "2026-01-27T00:50:09Z")]
    expiration: String,
}

/// One archive's credential in a bundle (`GET /s3credentials/bundle`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct BundleEntry<'a> {
    /// The archive (`GET /s3credentials/archives`) whose role this is a session of.
    #[schema(example = "main")]
    pub archive: &'a str,
    /// Where the credential's buckets are: the region to give the S3 client.
    #[schema(example = "us-west-2")]
    pub region: &'a str,
    /// The asked targets this credential covers (and nothing more).
    #[schema(example = json!(["s3://demo-inregion/"]))]
    pub targets: Vec<String>,
    #[serde(rename = "accessKeyId")]
    pub access_key_id: &'a str,
    #[serde(rename = "secretAccessKey")]
    pub secret_access_key: &'a str,
    #[serde(rename = "sessionToken")]
    pub session_token: &'a str,
    /// RFC 3339.
    #[schema(example = "2026-01-27T00:50:09Z")]
    pub expiration: &'a str,
}

/// `GET /s3credentials/bundle`: one credential per archive the targets touch.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Bundle<'a> {
    pub credentials: Vec<BundleEntry<'a>>,
}

impl<'a> BundleEntry<'a> {
    pub fn new(
        archive: &'a str,
        region: &'a str,
        targets: Vec<String>,
        c: &'a StsCredentials,
    ) -> Self {
        use secrecy::ExposeSecret;
        Self {
            archive,
            region,
            targets,
            access_key_id: &c.access_key_id,
            secret_access_key: c.secret_access_key.expose_secret(),
            session_token: c.session_token.expose_secret(),
            expiration: &c.expiration_rfc3339,
        }
    }
}

/// The bundle's body: the `Bundle` shape above, written by hand like `render` (a test holds
/// it to serde_json's bytes).
pub fn render_bundle(entries: &[BundleEntry<'_>]) -> String {
    use crate::json::write_escaped;
    let size = 24
        + entries
            .iter()
            .map(|e| {
                180 + e.archive.len()
                    + e.region.len()
                    + e.targets.iter().map(|t| t.len() + 3).sum::<usize>()
                    + e.access_key_id.len()
                    + e.secret_access_key.len()
                    + e.session_token.len()
                    + e.expiration.len()
            })
            .sum::<usize>();
    let mut out = String::with_capacity(size);
    // Writing into a String cannot fail.
    let _ = (|| -> std::fmt::Result {
        out.push_str("{\"credentials\":[");
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"archive\":\"");
            write_escaped(&mut out, e.archive)?;
            out.push_str("\",\"region\":\"");
            write_escaped(&mut out, e.region)?;
            out.push_str("\",\"targets\":[");
            for (j, t) in e.targets.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push('"');
                write_escaped(&mut out, t)?;
                out.push('"');
            }
            out.push(']');
            for (key, value) in [
                ("accessKeyId", e.access_key_id),
                ("secretAccessKey", e.secret_access_key),
                ("sessionToken", e.session_token),
                ("expiration", e.expiration),
            ] {
                crate::json::write_member(&mut out, key, value)?;
            }
            out.push('}');
        }
        out.push_str("]}");
        Ok(())
    })();
    out
}

/// The response body for `format`: the serde shapes above, written by hand (this runs on
/// every credential response; the test below holds it to serde_json's bytes).
pub fn render(format: Format, c: &StsCredentials) -> String {
    // The text around the four values, keys and punctuation together: nine writes a body.
    let (around, expiration) = match format {
        Format::Earthdata => (
            [
                "{\"accessKeyId\":\"",
                "\",\"secretAccessKey\":\"",
                "\",\"sessionToken\":\"",
                "\",\"expiration\":\"",
                "\"}",
            ],
            &c.expiration_earthdata,
        ),
        Format::CredentialProcess => (
            [
                "{\"Version\":1,\"AccessKeyId\":\"",
                "\",\"SecretAccessKey\":\"",
                "\",\"SessionToken\":\"",
                "\",\"Expiration\":\"",
                "\"}",
            ],
            &c.expiration_rfc3339,
        ),
        Format::Container => (
            [
                "{\"AccessKeyId\":\"",
                "\",\"SecretAccessKey\":\"",
                "\",\"Token\":\"",
                "\",\"Expiration\":\"",
                "\"}",
            ],
            &c.expiration_rfc3339,
        ),
    };
    let values = [c.access_key_id.as_str(), c.secret(), c.token(), expiration];
    // The expiry is digits and punctuation; the rest was checked once per credential.
    let plain = c.plain();
    let size = around.iter().chain(&values).map(|t| t.len()).sum::<usize>();
    let mut out = String::with_capacity(if plain { size } else { size + 64 });
    for (before, value) in around.iter().zip(values) {
        out.push_str(before);
        if plain {
            out.push_str(value);
        } else {
            // Writing into a String cannot fail.
            let _ = crate::json::write_escaped(&mut out, value);
        }
    }
    out.push_str(around[4]);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn the_bundle_is_written_as_serde_writes_it() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 1, 27, 0, 50, 9).unwrap();
        let c = StsCredentials::new(
            "ASIAEXAMPLE".into(),
            SecretString::from("se/cr+et".to_owned()),
            SecretString::from("to\"ken\\with\u{1}odd".to_owned()),
            at,
            None,
        );
        for entries in [
            vec![],
            vec![BundleEntry::new(
                "main",
                "us-west-2",
                vec!["s3://a-b/c/".into()],
                &c,
            )],
            vec![
                BundleEntry::new(
                    "main",
                    "us-west-2",
                    vec!["s3://a-b/\"q\"/".into(), "s3://c-d/".into()],
                    &c,
                ),
                BundleEntry::new("second", "eu-west-1", vec![], &c),
            ],
        ] {
            let bundle = Bundle {
                credentials: entries,
            };
            assert_eq!(
                render_bundle(&bundle.credentials),
                serde_json::to_string(&bundle).unwrap()
            );
        }
    }

    #[test]
    fn an_unknown_format_of_unassigned_characters_gets_a_short_error() {
        // Found by the format_query fuzz target: Debug-quoting writes each unassigned
        // character as a ten-character `\u{80000}` escape.
        let asked = "\u{80000}".repeat(100);
        let e = Format::parse(Some(&asked)).unwrap_err();
        assert!(e.description().len() < 300, "{}", e.description());
        assert!(!e.description().contains("\\u{"), "{}", e.description());
    }

    fn creds() -> StsCredentials {
        StsCredentials::new(
            "ASIAEXAMPLE".into(),
            SecretString::from("s3cr3t/+x".to_owned()),
            SecretString::from("tok\"en".to_owned()),
            chrono::Utc.with_ymd_and_hms(2021, 1, 27, 0, 50, 9).unwrap(),
            None,
        )
    }

    #[test]
    fn earthdata_is_byte_for_byte() {
        assert_eq!(
            render(Format::Earthdata, &creds()),
            r#"{"accessKeyId":"ASIAEXAMPLE","secretAccessKey":"s3cr3t/+x","sessionToken":"tok\"en","expiration":"2021-01-27 00:50:09+00:00"}"#
        );
    }

    #[test]
    fn sdk_formats_use_rfc3339() {
        assert_eq!(
            render(Format::CredentialProcess, &creds()),
            r#"{"Version":1,"AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"s3cr3t/+x","SessionToken":"tok\"en","Expiration":"2021-01-27T00:50:09Z"}"#
        );
        assert_eq!(
            render(Format::Container, &creds()),
            r#"{"AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"s3cr3t/+x","Token":"tok\"en","Expiration":"2021-01-27T00:50:09Z"}"#
        );
    }

    /// The hand-written bodies are serde_json's, byte for byte, whatever the values hold.
    #[test]
    fn bodies_equal_serde_json_for_any_values() {
        let odd = "q\"b\\n\nc\u{1}é🚀/+=";
        for (key, secret, token) in [
            ("ASIAEXAMPLE", "s3cr3t/+x", "FwoGZXIvYXdzE"),
            (odd, odd, odd),
            ("", "", ""),
        ] {
            let c = StsCredentials::new(
                key.into(),
                SecretString::from(secret.to_owned()),
                SecretString::from(token.to_owned()),
                chrono::Utc.with_ymd_and_hms(2021, 1, 27, 0, 50, 9).unwrap(),
                Some(7),
            );
            let serde = [
                serde_json::to_string(&Earthdata {
                    access_key_id: key,
                    secret_access_key: secret,
                    session_token: token,
                    expiration: c.expiration_earthdata.clone(),
                }),
                serde_json::to_string(&CredentialProcess {
                    version: 1,
                    access_key_id: key,
                    secret_access_key: secret,
                    session_token: token,
                    expiration: c.expiration_rfc3339.clone(),
                }),
                serde_json::to_string(&Container {
                    access_key_id: key,
                    secret_access_key: secret,
                    token,
                    expiration: c.expiration_rfc3339.clone(),
                }),
            ];
            for (format, expected) in [
                Format::Earthdata,
                Format::CredentialProcess,
                Format::Container,
            ]
            .into_iter()
            .zip(serde)
            {
                assert_eq!(render(format, &c), expected.unwrap());
            }
        }
    }

    #[test]
    fn unknown_formats_name_the_valid_ones() {
        let err = Format::parse(Some("yaml")).unwrap_err();
        assert!(err.description().contains(FORMAT_NAMES));
        assert_eq!(Format::parse(None).unwrap(), Format::Earthdata);
    }
}
