//! The service's archive list (`GET <service>/s3credentials/archives`), read as untrusted
//! input for `configure --all-archives`: every value that reaches the AWS config (profile
//! name, region, endpoint) is checked here, and an archive's endpoint must be on the same
//! origin as the endpoint the user gave (it is where their token or password goes).

use serde::Deserialize;

use super::checked::{self, Region};

/// Most archives one list may name, and bytes it may take.
const MAX_ARCHIVES: usize = 100;
const MAX_BYTES: usize = 1 << 20;

/// One archive, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub region: Region,
    /// Its own credential endpoint, on the service's origin.
    pub endpoint: url::Url,
}

#[derive(Deserialize)]
struct Raw {
    archives: Vec<RawArchive>,
}

#[derive(Deserialize)]
struct RawArchive {
    name: String,
    region: String,
    endpoint: String,
}

/// Where the list of the service at `endpoint` (its `/s3credentials`) is.
pub fn list_url(endpoint: &url::Url) -> Result<url::Url, String> {
    let mut url = endpoint.clone();
    if !url.path().ends_with("/s3credentials") {
        return Err(format!(
            "--endpoint {} is not the service's /s3credentials (an archive's own endpoint cannot list the others)",
            checked::shown(endpoint.as_str())
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = format!("{}/archives", url.path());
    url.set_path(&path);
    Ok(url)
}

/// The archives in `body` (the list's JSON), each checked; Err names what is wrong.
pub fn parse(body: &[u8], endpoint: &url::Url) -> Result<Vec<Listed>, String> {
    if body.len() > MAX_BYTES {
        return Err("the service's archive list is too large".into());
    }
    // Where, not what: serde's message would quote the service's text back at length.
    let raw: Raw = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the service's archive list is not what stsvend serves (at line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if raw.archives.is_empty() || raw.archives.len() > MAX_ARCHIVES {
        return Err(format!(
            "the service lists {} archives (expected 1 to {MAX_ARCHIVES})",
            raw.archives.len()
        ));
    }
    let mut out: Vec<Listed> = Vec::with_capacity(raw.archives.len());
    for a in raw.archives {
        let name_ok = (1..=32).contains(&a.name.len())
            && a.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok || out.iter().any(|o| o.name == a.name) {
            return Err(format!(
                "the service lists an archive named {}, not a name stsvend gives",
                checked::shown(&a.name)
            ));
        }
        let region =
            Region::parse(&a.region).map_err(|e| format!("archive {}: the region {e}", a.name))?;
        let own = url::Url::parse(&a.endpoint)
            .ok()
            .filter(|u| {
                u.origin() == endpoint.origin()
                    && u.path().ends_with("/s3credentials")
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty()
                    && u.password().is_none()
            })
            .ok_or_else(|| {
                format!(
                    "archive {}: its endpoint {} is not an /s3credentials on {} (a login is never sent elsewhere)",
                    a.name,
                    checked::shown(&a.endpoint),
                    endpoint.origin().ascii_serialization()
                )
            })?;
        out.push(Listed {
            name: a.name,
            region,
            endpoint: own,
        });
    }
    Ok(out)
}

/// The list from the service (no login: it is public).
pub async fn fetch(endpoint: &url::Url) -> Result<Vec<Listed>, String> {
    let url = list_url(endpoint)?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let res = http
        .get(url.clone())
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("{}: {e}", url.origin().ascii_serialization()))?;
    if !res.status().is_success() {
        return Err(format!(
            "{} answered {} (a service before archives has no list: configure one --profile)",
            checked::shown(url.as_str()),
            res.status().as_u16()
        ));
    }
    let body = res.bytes().await.map_err(|e| e.to_string())?;
    parse(&body, endpoint)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn endpoint() -> url::Url {
        url::Url::parse("https://data.example.org/s3credentials").unwrap()
    }

    fn one(name: &str, region: &str, own: &str) -> String {
        serde_json::json!({"archives": [{"name": name, "region": region, "endpoint": own, "extra": 1}]})
            .to_string()
    }

    #[test]
    fn the_list_is_next_to_the_services_endpoint_only() {
        assert_eq!(
            list_url(&endpoint()).unwrap().as_str(),
            "https://data.example.org/s3credentials/archives"
        );
        let own = url::Url::parse("https://data.example.org/archives/x/s3credentials").unwrap();
        assert!(list_url(&own)
            .unwrap()
            .as_str()
            .ends_with("/archives/x/s3credentials/archives"));
        assert!(list_url(&url::Url::parse("https://data.example.org/other").unwrap()).is_err());
    }

    #[test]
    fn a_well_formed_list_is_read() {
        let got = parse(
            one(
                "second",
                "us-west-2",
                "https://data.example.org/archives/second/s3credentials",
            )
            .as_bytes(),
            &endpoint(),
        )
        .unwrap();
        assert_eq!(got[0].name, "second");
        assert_eq!(got[0].region.as_str(), "us-west-2");
    }

    /// A compromised service must not get a login sent elsewhere, a line into the AWS config,
    /// or a profile name that reads back as something else.
    /// Found by the archive_list fuzz target: serde's message quoted the offending value, so a
    /// hostile list made the one-line error as long as it liked.
    #[test]
    fn a_refused_list_is_named_in_a_short_line() {
        let long = format!("[\"{}\"]", "x".repeat(5000));
        let e = parse(long.as_bytes(), &endpoint()).unwrap_err();
        assert!(e.len() < 200, "{} bytes: {e}", e.len());
        assert!(!e.contains("xxxx"), "{e}");
    }

    #[test]
    fn a_hostile_list_is_refused() {
        let ok = "https://data.example.org/archives/a/s3credentials";
        for (name, region, own) in [
            ("a", "us-west-2", "https://evil.example.org/s3credentials"),
            ("a", "us-west-2", "http://data.example.org/s3credentials"),
            (
                "a",
                "us-west-2",
                "https://data.example.org:444/s3credentials",
            ),
            (
                "a",
                "us-west-2",
                "https://user:pw@data.example.org/s3credentials",
            ),
            (
                "a",
                "us-west-2",
                "https://data.example.org/s3credentials?x=1",
            ),
            ("a", "us-west-2", "https://data.example.org/elsewhere"),
            ("a", "us-west-2\ncredential_process = sh -c evil", ok),
            ("a]\n[profile b", "us-west-2", ok),
            ("A", "us-west-2", ok),
            ("", "us-west-2", ok),
        ] {
            assert!(
                parse(one(name, region, own).as_bytes(), &endpoint()).is_err(),
                "{name:?} {region:?} {own:?}"
            );
        }
        let twice = serde_json::json!({"archives": [
            {"name": "a", "region": "us-west-2", "endpoint": ok},
            {"name": "a", "region": "us-west-2", "endpoint": ok}
        ]});
        assert!(parse(twice.to_string().as_bytes(), &endpoint()).is_err());
        assert!(parse(b"{\"archives\": []}", &endpoint()).is_err());
        assert!(parse(b"<html>", &endpoint()).is_err());
    }
}
