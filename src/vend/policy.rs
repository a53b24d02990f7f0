//! Policy documents: the read-only slice of the role a user gets. Only buckets in the
//! service's region whose groups intersect the user's (or that have no groups) are granted;
//! GetObject on `<bucket>/<prefix>*`, ListBucket on the bucket (limited by `s3:prefix` when
//! prefixes are configured) and GetBucketLocation. Nothing else. Compact, deterministic JSON:
//! the same inputs always give the same bytes (and the same cache key). `scope` decides which
//! documents go where: inline, managed session policies, or the role's own policy.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{Bucket, Settings};

/// AWS's limit on an inline session policy, in characters.
pub const MAX_POLICY_CHARS: usize = 2048;

/// Buckets in `sts.region` the given groups may read, sorted by name.
pub fn allowed_buckets<'a>(settings: &'a Settings, groups: &[String]) -> Vec<&'a Bucket> {
    let mut buckets: Vec<&Bucket> = settings
        .buckets
        .iter()
        .filter(|b| b.region == settings.sts.region)
        .filter(|b| b.groups.is_empty() || b.groups.iter().any(|g| groups.contains(g)))
        .collect();
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    buckets
}

/// Groups that would grant at least one in-region bucket (for "ask for access" messages).
pub fn granting_groups(settings: &Settings) -> Vec<String> {
    let mut groups: Vec<String> = settings
        .buckets
        .iter()
        .filter(|b| b.region == settings.sts.region)
        .flat_map(|b| b.groups.iter().cloned())
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// The inline session policy for exactly these buckets (sorted by name): the grants, then
/// the network conditions as denials.
pub fn inline(settings: &Settings, buckets: &[&Bucket]) -> String {
    let mut statements = grants(settings, buckets, &Map::new());
    statements.extend(network_denials(settings));
    document(statements)
}

/// The largest inline policy any combination of groups can produce: all in-region buckets.
pub fn worst_case(settings: &Settings) -> Option<String> {
    let buckets = in_region(settings);
    (!buckets.is_empty()).then(|| inline(settings, &buckets))
}

/// Every bucket in `sts.region`, sorted by name.
pub fn in_region(settings: &Settings) -> Vec<&Bucket> {
    let mut buckets: Vec<&Bucket> = settings
        .buckets
        .iter()
        .filter(|b| b.region == settings.sts.region)
        .collect();
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    buckets
}

/// First 16 hex digits of SHA-256, for logs and audits.
pub fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The read-only actions stsvend ever grants.
pub const READ_ACTIONS: [&str; 3] = ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"];

fn one_or_many(mut items: Vec<String>) -> Value {
    if items.len() == 1 {
        Value::String(items.remove(0))
    } else {
        Value::Array(items.into_iter().map(Value::String).collect())
    }
}

fn allow(actions: &[&str], resources: Vec<String>, condition: Map<String, Value>) -> Value {
    let mut s = Map::new();
    s.insert("Effect".into(), Value::String("Allow".into()));
    s.insert(
        "Action".into(),
        one_or_many(actions.iter().map(|a| (*a).to_owned()).collect()),
    );
    s.insert("Resource".into(), one_or_many(resources));
    if !condition.is_empty() {
        s.insert("Condition".into(), Value::Object(condition));
    }
    Value::Object(s)
}

/// `extra` plus one more condition (merged into the operator's block when it is there).
pub fn with_condition(
    extra: &Map<String, Value>,
    operator: &str,
    key: &str,
    value: Value,
) -> Map<String, Value> {
    let mut condition = extra.clone();
    let block = condition
        .entry(operator.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(map) = block {
        map.insert(key.to_owned(), value);
    }
    condition
}

/// Statements granting read access to `buckets`, each carrying the `extra` conditions.
/// Compacted: one Resource list per action set, and buckets with the same prefixes share one
/// list statement. Only what the configuration names: no wildcard beyond `<prefix>*` and `/*`.
pub fn grants(settings: &Settings, buckets: &[&Bucket], extra: &Map<String, Value>) -> Vec<Value> {
    let partition = settings.sts.role_arn.partition();
    let arn = |rest: &str| format!("arn:{partition}:s3:::{rest}");
    let mut statements = Vec::new();
    if buckets.is_empty() {
        return statements;
    }
    let objects: Vec<String> = buckets
        .iter()
        .flat_map(|b| {
            if b.prefixes.is_empty() {
                vec![arn(&format!("{}/*", b.name))]
            } else {
                b.prefixes
                    .iter()
                    .map(|p| arn(&format!("{}/{p}*", b.name)))
                    .collect()
            }
        })
        .collect();
    statements.push(allow(&["s3:GetObject"], objects, extra.clone()));

    let whole: Vec<String> = buckets
        .iter()
        .filter(|b| b.prefixes.is_empty())
        .map(|b| arn(&b.name))
        .collect();
    if !whole.is_empty() {
        statements.push(allow(
            &["s3:ListBucket", "s3:GetBucketLocation"],
            whole,
            extra.clone(),
        ));
    }
    let mut by_prefixes: BTreeMap<&Vec<String>, Vec<String>> = BTreeMap::new();
    for b in buckets.iter().filter(|b| !b.prefixes.is_empty()) {
        by_prefixes
            .entry(&b.prefixes)
            .or_default()
            .push(arn(&b.name));
    }
    let mut located = Vec::new();
    for (prefixes, arns) in by_prefixes {
        let patterns: Vec<String> = prefixes.iter().map(|p| format!("{p}*")).collect();
        let condition = with_condition(extra, "StringLike", "s3:prefix", one_or_many(patterns));
        located.extend(arns.iter().cloned());
        statements.push(allow(&["s3:ListBucket"], arns, condition));
    }
    if !located.is_empty() {
        located.sort();
        statements.push(allow(&["s3:GetBucketLocation"], located, extra.clone()));
    }
    statements
}

/// `[policy]` network conditions as denials, one per key (each must hold on its own): stated
/// once per policy instead of on every grant.
pub fn network_denials(settings: &Settings) -> Vec<Value> {
    let mut statements = Vec::new();
    for (key, values) in [
        ("aws:SourceVpce", &settings.policy.source_vpce),
        ("aws:SourceVpc", &settings.policy.source_vpc),
    ] {
        if !values.is_empty() {
            let condition = with_condition(
                &Map::new(),
                "StringNotEquals",
                key,
                one_or_many(values.clone()),
            );
            statements.push(json!({
                "Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": condition
            }));
        }
    }
    statements
}

/// Denies every action but reading: keeps the read-only limit whatever other session
/// policies (managed ones) allow.
pub fn read_only_denial() -> Value {
    json!({ "Effect": "Deny", "NotAction": READ_ACTIONS, "Resource": "*" })
}

/// Allows reading anything the role allows (the role's policy does the scoping).
pub fn read_anything(settings: &Settings) -> Value {
    let partition = settings.sts.role_arn.partition();
    allow(
        &READ_ACTIONS,
        vec![format!("arn:{partition}:s3:::*")],
        Map::new(),
    )
}

/// A policy document from statements: compact, keys in a fixed order.
pub fn document(statements: Vec<Value>) -> String {
    to_ordered_json(&json!({ "Version": "2012-10-17", "Statement": statements }))
}

/// Compact JSON with object keys in a fixed order: Version/Statement first, then Sid,
/// Effect, Action, Resource, Condition; other maps sorted by key.
fn to_ordered_json(v: &Value) -> String {
    const ORDER: [&str; 8] = [
        "Version",
        "Statement",
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "Condition",
    ];
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| {
                (
                    ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()),
                    (*k).clone(),
                )
            });
            let body: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String(k.clone()),
                        to_ordered_json(&map[k.as_str()])
                    )
                })
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(to_ordered_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}
