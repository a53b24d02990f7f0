//! `[network]`: where callers are (trusted proxies, AWS's published ranges) and what happens
//! when one is outside the archive's region; `[help]`: where each error code points users.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};
use url::Url;

use super::values::*;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    #[serde(default, serialize_with = "resolved_path")]
    pub aws_ip_ranges_file: Option<RelativePathBuf>,
    pub aws_ip_ranges_reload_seconds: u64,
    pub trusted_proxies: Vec<String>,
    pub out_of_region: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHelp {
    pub urls: BTreeMap<String, String>,
}

/// What an out-of-region caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfRegion {
    /// The credential, with a warning (a header, `/scope`, the page, the helper's stderr).
    Warn,
    /// `403 out_of_region`.
    Refuse,
}

#[derive(Debug, Clone)]
pub struct NetworkSettings {
    pub aws_ip_ranges_file: Option<PathBuf>,
    pub aws_ip_ranges_reload: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub out_of_region: OutOfRegion,
}

pub(super) fn validate(raw: &RawNetwork) -> Result<NetworkSettings, ConfigError> {
    let mut trusted_proxies = Vec::with_capacity(raw.trusted_proxies.len());
    for p in &raw.trusted_proxies {
        // A bare address is a network of one.
        let net = p
            .parse::<ipnet::IpNet>()
            .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                ConfigError::key(
                    "network.trusted_proxies",
                    format!("{p:?} is not an address or CIDR network like \"10.0.0.0/8\""),
                )
            })?;
        trusted_proxies.push(net);
    }
    let out_of_region = match raw.out_of_region.as_str() {
        "warn" => OutOfRegion::Warn,
        "refuse" => OutOfRegion::Refuse,
        other => {
            return Err(ConfigError::key(
                "network.out_of_region",
                format!("{other:?} is not one of \"warn\", \"refuse\""),
            ))
        }
    };
    let aws_ip_ranges_file = raw
        .aws_ip_ranges_file
        .as_ref()
        .map(RelativePathBuf::relative);
    if out_of_region == OutOfRegion::Refuse && aws_ip_ranges_file.is_none() {
        return Err(ConfigError::key(
            "network.out_of_region",
            "\"refuse\" needs network.aws_ip_ranges_file (without AWS's ranges no caller can be placed)",
        ));
    }
    Ok(NetworkSettings {
        aws_ip_ranges_file,
        aws_ip_ranges_reload: seconds(
            "network.aws_ip_ranges_reload_seconds",
            raw.aws_ip_ranges_reload_seconds,
            1,
            86_400,
        )?,
        trusted_proxies,
        out_of_region,
    })
}

/// `[help] urls`: error code → where to read about it. Only codes the service answers with.
pub(super) fn validate_help(
    raw: &RawHelp,
    codes: &[&str],
) -> Result<BTreeMap<String, Url>, ConfigError> {
    let mut out = BTreeMap::new();
    for (code, url) in &raw.urls {
        if !codes.contains(&code.as_str()) {
            return Err(ConfigError::key(
                &format!("help.urls.{code}"),
                format!(
                    "is not an error code of this service; expected one of: {}",
                    codes.join(", ")
                ),
            ));
        }
        let key = format!("help.urls.{code}");
        let parsed = parse_http_url(&key, url)?;
        if parsed.scheme() != "https" && !is_loopback(&parsed) {
            return Err(ConfigError::key(
                &key,
                format!("{parsed} must use https (plain http is allowed only on loopback)"),
            ));
        }
        out.insert(code.clone(), parsed);
    }
    Ok(out)
}
