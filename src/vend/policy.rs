//! The session policy: the read-only slice of the role a user gets. Only buckets in the
//! service's region whose groups intersect the user's (or that have no groups) are included;
//! GetObject on `<bucket>/<prefix>*`, ListBucket on the bucket (limited by `s3:prefix` when
//! prefixes are configured) and GetBucketLocation. Nothing else. Compact, deterministic JSON:
//! the same inputs always give the same bytes (and the same cache key).

use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{Bucket, Settings};

/// AWS's limit on an inline session policy, in characters.
pub const MAX_POLICY_CHARS: usize = 2048;

/// A session policy ready for AssumeRole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionPolicy {
    pub json: String,
    /// Bucket names the policy grants, sorted.
    pub buckets: Vec<String>,
    /// First 16 hex digits of the policy's SHA-256, for logs and audits.
    pub hash: String,
}

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

/// The policy for a user with `groups`, or None when no bucket is allowed.
pub fn for_groups(settings: &Settings, groups: &[String]) -> Option<SessionPolicy> {
    let buckets = allowed_buckets(settings, groups);
    (!buckets.is_empty()).then(|| build(settings, &buckets))
}

/// Policies by group set: a deployment has few distinct combinations of relevant groups, and
/// building the JSON is the most expensive step of a cached credential request.
pub struct PolicyCache {
    cache: moka::sync::Cache<Vec<String>, Option<std::sync::Arc<SessionPolicy>>>,
}

impl Default for PolicyCache {
    fn default() -> Self {
        Self {
            cache: moka::sync::Cache::builder().max_capacity(10_000).build(),
        }
    }
}

impl PolicyCache {
    /// `groups` must be sorted and deduplicated (as `AuthenticatedUser::groups` are).
    pub fn get(
        &self,
        settings: &Settings,
        groups: &[String],
    ) -> Option<std::sync::Arc<SessionPolicy>> {
        self.cache.get_with_by_ref(groups, || {
            for_groups(settings, groups).map(std::sync::Arc::new)
        })
    }
}

/// The largest policy any combination of groups can produce: all in-region buckets.
pub fn worst_case(settings: &Settings) -> Option<SessionPolicy> {
    let mut buckets: Vec<&Bucket> = settings
        .buckets
        .iter()
        .filter(|b| b.region == settings.sts.region)
        .collect();
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    (!buckets.is_empty()).then(|| build(settings, &buckets))
}

fn one_or_many(mut items: Vec<String>) -> Value {
    if items.len() == 1 {
        Value::String(items.remove(0))
    } else {
        Value::Array(items.into_iter().map(Value::String).collect())
    }
}

fn statement(
    sid: &str,
    action: &str,
    resources: Vec<String>,
    condition: Map<String, Value>,
) -> Value {
    let mut s = Map::new();
    s.insert("Sid".into(), Value::String(sid.into()));
    s.insert("Effect".into(), Value::String("Allow".into()));
    s.insert("Action".into(), Value::String(action.into()));
    s.insert("Resource".into(), one_or_many(resources));
    if !condition.is_empty() {
        s.insert("Condition".into(), Value::Object(condition));
    }
    Value::Object(s)
}

/// Network conditions from `[policy]` that every statement carries.
fn network_conditions(settings: &Settings) -> Map<String, Value> {
    let mut equals = Map::new();
    if !settings.policy.source_vpce.is_empty() {
        equals.insert(
            "aws:SourceVpce".into(),
            one_or_many(settings.policy.source_vpce.clone()),
        );
    }
    if !settings.policy.source_vpc.is_empty() {
        equals.insert(
            "aws:SourceVpc".into(),
            one_or_many(settings.policy.source_vpc.clone()),
        );
    }
    let mut condition = Map::new();
    if !equals.is_empty() {
        condition.insert("StringEquals".into(), Value::Object(equals));
    }
    condition
}

fn build(settings: &Settings, buckets: &[&Bucket]) -> SessionPolicy {
    let partition = settings.sts.role_arn.partition();
    let arn = |rest: &str| format!("arn:{partition}:s3:::{rest}");
    let network = network_conditions(settings);

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
    let mut statements = vec![statement("Read", "s3:GetObject", objects, network.clone())];

    let whole: Vec<String> = buckets
        .iter()
        .filter(|b| b.prefixes.is_empty())
        .map(|b| arn(&b.name))
        .collect();
    if !whole.is_empty() {
        statements.push(statement("List", "s3:ListBucket", whole, network.clone()));
    }
    for (i, b) in buckets
        .iter()
        .filter(|b| !b.prefixes.is_empty())
        .enumerate()
    {
        let mut condition = network.clone();
        let prefixes: Vec<String> = b.prefixes.iter().map(|p| format!("{p}*")).collect();
        condition.insert(
            "StringLike".into(),
            json!({ "s3:prefix": one_or_many(prefixes) }),
        );
        statements.push(statement(
            &format!("ListPrefixes{i}"),
            "s3:ListBucket",
            vec![arn(&b.name)],
            condition,
        ));
    }
    let all: Vec<String> = buckets.iter().map(|b| arn(&b.name)).collect();
    statements.push(statement("Locate", "s3:GetBucketLocation", all, network));

    let policy = json!({ "Version": "2012-10-17", "Statement": statements });
    // serde_json keeps insertion order only with preserve_order; build the text by hand
    // from ordered maps so the bytes are stable whatever features are enabled.
    let json = to_ordered_json(&policy);
    let digest = Sha256::digest(json.as_bytes());
    let hash = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    SessionPolicy {
        json,
        buckets: buckets.iter().map(|b| b.name.clone()).collect(),
        hash,
    }
}

/// Compact JSON with object keys in a fixed order: Version/Statement first, then Sid,
/// Effect, Action, Resource, Condition; other maps sorted by key.
fn to_ordered_json(v: &Value) -> String {
    const ORDER: [&str; 7] = [
        "Version",
        "Statement",
        "Sid",
        "Effect",
        "Action",
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
