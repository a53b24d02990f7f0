//! Reading the configured user-id and groups claims out of verified token payloads.

use serde_json::{Map, Value};

use crate::config::Settings;

/// The user id: a non-empty string claim (numbers are accepted and rendered as text).
pub fn user_id(claims: &Map<String, Value>, claim: &str) -> Option<String> {
    match claims.get(claim)? {
        Value::String(s) if !s.trim().is_empty() && s.len() <= 256 => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// All groups the claim lists: an array of strings, or one string.
pub fn groups(claims: &Map<String, Value>, claim: &str) -> Option<Vec<String>> {
    match claims.get(claim)? {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

/// Keep only the groups some bucket rule of some archive mentions: they are all that can
/// change what a user may read, and they keep the session cookie small however many groups
/// the IdP sends.
pub fn relevant_groups(settings: &Settings, groups: &[String]) -> Vec<String> {
    let mut out: Vec<String> = groups
        .iter()
        .filter(|g| {
            settings
                .archives
                .iter()
                .flat_map(|a| &a.buckets)
                .any(|b| b.groups.contains(g))
        })
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}
