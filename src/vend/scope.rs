//! How a user's scope reaches STS (`policy.mode`), within AWS's limits: an inline session
//! policy of at most 2,048 characters; at most 10 managed session policies of at most 6,144
//! characters each; at most 50 session tags. Whatever the way, a user can read exactly the
//! buckets and prefixes `policy::allowed_buckets` names, nothing more.
//!
//! Buckets are granted in units: the buckets open to everyone (`public`) and each group's
//! buckets (`g-<group>`). In managed mode each unit is one or more customer-managed policies
//! the operator uploads (`stsvend managed-policies`); a user's call names the units of their
//! groups. In tags mode a user's session carries one tag per group unit, and the role's
//! policy (`stsvend role-policy`) grants each unit to sessions with its tag.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::config::{Bucket, ScopeMode, Settings};
use crate::vend::narrow::{self, Target};
use crate::vend::policy;
use crate::vend::session_name;

/// AWS: an inline session policy, in characters.
pub const MAX_INLINE_CHARS: usize = policy::MAX_POLICY_CHARS;
/// AWS: a customer-managed policy document, in characters (whitespace not counted; ours
/// has none).
pub const MAX_MANAGED_CHARS: usize = 6144;
/// AWS: managed session policies in one AssumeRole call.
pub const MAX_POLICY_ARNS: usize = 10;
/// AWS: session tags in one AssumeRole call.
pub const MAX_SESSION_TAGS: usize = 50;
/// AWS: managed policies attached to one role (default quota 10, at most 20 on request).
pub const MAX_ROLE_POLICIES: usize = 20;
pub const DEFAULT_ROLE_POLICIES: usize = 10;

/// Buckets granted together: those open to everyone, or one group's.
#[derive(Debug, Clone)]
pub struct Unit<'a> {
    /// None for the buckets open to everyone.
    pub group: Option<&'a str>,
    /// `public` or `g-<group name made safe for IAM names and tag keys>`.
    pub name: String,
    pub buckets: Vec<&'a Bucket>,
}

/// Every unit, public first, then groups by name.
pub fn units(settings: &Settings) -> Vec<Unit<'_>> {
    let buckets = policy::in_region(settings);
    let mut out = Vec::new();
    let public: Vec<&Bucket> = buckets
        .iter()
        .copied()
        .filter(|b| b.groups.is_empty())
        .collect();
    if !public.is_empty() {
        out.push(Unit {
            group: None,
            name: "public".into(),
            buckets: public,
        });
    }
    let mut by_group: BTreeMap<&str, Vec<&Bucket>> = BTreeMap::new();
    for b in &buckets {
        for g in &b.groups {
            by_group.entry(g.as_str()).or_default().push(b);
        }
    }
    for (group, mut buckets) in by_group {
        buckets.dedup_by(|a, b| a.name == b.name);
        out.push(Unit {
            group: Some(group),
            name: format!("g-{}", session_name::group_name(group)),
            buckets,
        });
    }
    out
}

/// A customer-managed policy stsvend expects to exist (managed mode).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManagedPolicy {
    pub name: String,
    pub path: String,
    pub arn: String,
    /// The group it grants to; None: everyone.
    pub group: Option<String>,
    /// `public` or `g-<group>`: what a user's groups are matched against.
    pub unit: String,
    pub buckets: Vec<String>,
    pub document: String,
}

/// Split `buckets` into runs whose documents have at most `max` characters, in order: each
/// run's range in `buckets` and its document.
fn chunked(
    buckets: &[&Bucket],
    max: usize,
    doc: impl Fn(&[&Bucket]) -> String,
) -> Result<Vec<(std::ops::Range<usize>, String)>, String> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < buckets.len() {
        // Grow the chunk while it fits; a single bucket that does not fit is an error.
        let mut end = start + 1;
        let mut text = doc(&buckets[start..end]);
        if text.len() > max {
            return Err(format!(
                "bucket {} alone needs a {}-character policy, over the limit of {max}",
                buckets[start].name,
                text.len()
            ));
        }
        while end < buckets.len() {
            let next = doc(&buckets[start..end + 1]);
            if next.len() > max {
                break;
            }
            text = next;
            end += 1;
        }
        out.push((start..end, text));
        start = end;
    }
    Ok(out)
}

/// The managed session policies of managed mode, one or more per unit.
pub fn managed_policies(settings: &Settings) -> Result<Vec<ManagedPolicy>, String> {
    let account = settings.sts.role_arn.account();
    let partition = settings.sts.role_arn.partition();
    let p = &settings.policy;
    let mut out = Vec::new();
    for unit in units(settings) {
        let docs = chunked(&unit.buckets, MAX_MANAGED_CHARS, |b| {
            policy::document(policy::grants(settings, b, &Map::new()))
        })?;
        let several = docs.len() > 1;
        for (i, (run, document)) in docs.into_iter().enumerate() {
            let mut name = format!("{}{}", p.managed_policy_name_prefix, unit.name);
            if several {
                name.push_str(&format!("-{}", i + 1));
            }
            out.push(ManagedPolicy {
                arn: format!(
                    "arn:{partition}:iam::{account}:policy{}{name}",
                    p.managed_policy_path
                ),
                name,
                path: p.managed_policy_path.clone(),
                group: unit.group.map(str::to_owned),
                unit: unit.name.clone(),
                buckets: unit.buckets[run].iter().map(|b| b.name.clone()).collect(),
                document,
            });
        }
    }
    Ok(out)
}

/// The session tag a unit's members carry (tags mode).
pub fn tag_key(settings: &Settings, unit: &Unit<'_>) -> String {
    format!("{}{}", settings.policy.tag_key_prefix, unit.name)
}

/// The role's policy documents for tags mode: each unit granted to sessions tagged with it
/// (the public unit to every session), split into documents of at most 6,144 characters to
/// attach as customer-managed policies.
pub fn role_policy(settings: &Settings) -> Result<Vec<String>, String> {
    let mut statements_per_unit = Vec::new();
    for unit in units(settings) {
        let extra = match unit.group {
            None => Map::new(),
            Some(_) => policy::with_condition(
                &Map::new(),
                "StringEquals",
                &format!("aws:PrincipalTag/{}", tag_key(settings, &unit)),
                json!("true"),
            ),
        };
        // A unit too large for one document is split by buckets.
        let docs = chunked(&unit.buckets, MAX_MANAGED_CHARS, |b| {
            policy::document(policy::grants(settings, b, &extra))
        })?;
        for (run, _) in docs {
            statements_per_unit.push(policy::grants(settings, &unit.buckets[run], &extra));
        }
    }
    // Pack whole units' statements into as few documents as fit.
    let mut docs: Vec<Vec<Value>> = Vec::new();
    for statements in statements_per_unit {
        let fits = docs.last().is_some_and(|current| {
            let mut candidate = current.clone();
            candidate.extend(statements.iter().cloned());
            policy::document(candidate).len() <= MAX_MANAGED_CHARS
        });
        match docs.last_mut() {
            Some(current) if fits => current.extend(statements),
            _ => docs.push(statements),
        }
    }
    Ok(docs.into_iter().map(policy::document).collect())
}

/// Exactly what goes to STS for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionScope {
    /// The way used for this user (inline when their groups exceed the mode's limits).
    pub mode: ScopeMode,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
    /// Scope tags (the static `sts.session_tags` are added to the call as well).
    pub tags: Vec<(String, String)>,
    /// The buckets the user can read, sorted.
    pub buckets: Vec<String>,
    /// The same, comma-separated (as the audit line shows them).
    pub buckets_joined: String,
    /// BLAKE3 over the mode, policy, ARNs and tags, length-prefixed: what the credential
    /// cache key is made from.
    pub digest: [u8; 32],
    /// The first 16 hex digits of `digest`, for logs.
    pub hash: String,
    /// A narrowed credential's targets, comma-separated (as the audit line shows them).
    pub narrowed_to: Option<String>,
}

/// Why a user's scope cannot reach STS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TooLarge(pub String);

/// What a set of relevant groups may read here: None when no bucket.
type GroupsScope = Result<Option<Arc<SessionScope>>, TooLarge>;

/// Per-deployment lookups, made once: the managed policies' ARNs by unit.
pub struct Scoper {
    arns: BTreeMap<String, Vec<String>>,
    /// By the user's relevant groups; read on every credential request (a lookup here is a
    /// hash, a shard's read lock and a comparison, where moka's bookkeeping per read cost
    /// several times that).
    cache: quick_cache::sync::Cache<
        Vec<String>,
        GroupsScope,
        quick_cache::UnitWeighter,
        foldhash::fast::RandomState,
    >,
    narrowed: moka::sync::Cache<
        (Vec<String>, Vec<Target>),
        Arc<SessionScope>,
        foldhash::fast::RandomState,
    >,
}

impl Scoper {
    /// Refuses settings whose worst-case scope AWS would not accept (`check_settings`).
    pub fn new(settings: &Settings) -> Result<Self, crate::config::ConfigError> {
        check_settings(settings)?;
        let mut arns: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if settings.policy.mode == ScopeMode::Managed {
            for m in managed_policies(settings)
                .map_err(|e| crate::config::ConfigError::key("policy.mode", e))?
            {
                arns.entry(m.unit).or_default().push(m.arn);
            }
        }
        Ok(Self {
            arns,
            // A deployment has few distinct combinations of relevant groups, and building
            // the scope is the most expensive step of a cached credential request.
            // Starts small and grows (a deployment has few combinations of groups).
            cache: quick_cache::sync::Cache::with(
                64,
                10_000,
                quick_cache::UnitWeighter,
                foldhash::fast::RandomState::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            ),
            // Bounded whatever clients ask for; refusals are not kept.
            narrowed: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        })
    }

    /// The scope for a user with `groups` (sorted, deduplicated); None when no bucket is
    /// allowed.
    pub fn get(
        &self,
        settings: &Settings,
        groups: &[String],
    ) -> Result<Option<Arc<SessionScope>>, TooLarge> {
        if let Some(hit) = self.cache.get(groups) {
            return hit;
        }
        // Two requests may both work it out: the same answer, stored twice.
        let scope = self.compute(settings, groups).map(|s| s.map(Arc::new));
        self.cache.insert(groups.to_vec(), scope.clone());
        scope
    }

    pub fn compute(
        &self,
        settings: &Settings,
        groups: &[String],
    ) -> Result<Option<SessionScope>, TooLarge> {
        let allowed = policy::allowed_buckets(settings, groups);
        if allowed.is_empty() {
            return Ok(None);
        }
        let buckets: Vec<String> = allowed.iter().map(|b| b.name.clone()).collect();
        let mine: Vec<Unit<'_>> = units(settings)
            .into_iter()
            .filter(|u| u.group.is_none_or(|g| groups.iter().any(|x| x == g)))
            .collect();
        let static_tags = settings.sts.session_tags.len();
        let chosen = match settings.policy.mode {
            ScopeMode::Inline => None,
            ScopeMode::Managed => {
                let arns: Vec<String> = mine
                    .iter()
                    .flat_map(|u| self.arns.get(&u.name).cloned().unwrap_or_default())
                    .collect();
                (arns.len() <= MAX_POLICY_ARNS).then(|| {
                    let mut guard = vec![policy::read_only_denial()];
                    guard.extend(policy::network_denials(settings));
                    (
                        ScopeMode::Managed,
                        Some(policy::document(guard)),
                        arns,
                        vec![],
                    )
                })
            }
            ScopeMode::Tags => {
                let tags: Vec<(String, String)> = mine
                    .iter()
                    .filter(|u| u.group.is_some())
                    .map(|u| (tag_key(settings, u), "true".to_owned()))
                    .collect();
                (tags.len() + static_tags <= MAX_SESSION_TAGS).then(|| {
                    let mut statements = vec![policy::read_anything(settings)];
                    statements.extend(policy::network_denials(settings));
                    (
                        ScopeMode::Tags,
                        Some(policy::document(statements)),
                        vec![],
                        tags,
                    )
                })
            }
        };
        let (mode, policy_text, policy_arns, tags) = match chosen {
            Some(c) => c,
            None => {
                let json = policy::inline(settings, &allowed);
                if json.len() > MAX_INLINE_CHARS {
                    return Err(TooLarge(format!(
                        "the groups {groups:?} grant {} buckets: {}, and as an inline policy {} characters (AWS allows {MAX_INLINE_CHARS})",
                        buckets.len(),
                        match settings.policy.mode {
                            ScopeMode::Managed => format!("more than {MAX_POLICY_ARNS} managed policies"),
                            ScopeMode::Tags => format!("more than {MAX_SESSION_TAGS} session tags"),
                            ScopeMode::Inline => "too many for one inline policy".to_owned(),
                        },
                        json.len()
                    )));
                }
                (ScopeMode::Inline, Some(json), vec![], vec![])
            }
        };
        Ok(Some(SessionScope::new(
            mode,
            policy_text,
            policy_arns,
            tags,
            buckets,
            None,
        )))
    }

    /// The scope of a credential for just `targets` (canonical, see `narrow::canonical`) for
    /// a user with `groups`. Always an inline policy of the targets' grants: in managed mode
    /// without the managed policies (each would allow more than asked); in tags mode with
    /// the user's tags, which the role's policy needs to grant anything.
    pub fn narrowed(
        &self,
        settings: &Settings,
        groups: &[String],
        targets: &[Target],
    ) -> Result<Arc<SessionScope>, Narrowing> {
        let key = (groups.to_vec(), targets.to_vec());
        if let Some(hit) = self.narrowed.get(&key) {
            return Ok(hit);
        }
        let allowed = policy::allowed_buckets(settings, groups);
        if allowed.is_empty() {
            return Err(Narrowing::NoBucket);
        }
        let granted = narrow::narrow(&allowed, targets).map_err(Narrowing::NotCovered)?;
        let granted: Vec<&Bucket> = granted.iter().collect();
        let json = policy::inline(settings, &granted);
        if json.len() > MAX_INLINE_CHARS {
            return Err(Narrowing::TooLarge(json.len()));
        }
        let tags = match self.get(settings, groups) {
            Ok(Some(base)) if base.mode == ScopeMode::Tags => base.tags.clone(),
            _ => vec![],
        };
        let scope = Arc::new(SessionScope::new(
            ScopeMode::Inline,
            Some(json),
            vec![],
            tags,
            granted.iter().map(|b| b.name.clone()).collect(),
            Some(
                targets
                    .iter()
                    .map(Target::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ));
        self.narrowed.insert(key, scope.clone());
        Ok(scope)
    }
}

/// Why a narrowed credential cannot be issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Narrowing {
    /// The user's groups grant no bucket at all.
    NoBucket,
    /// These targets are not inside what the user may read (each said with why).
    NotCovered(Vec<String>),
    /// The narrowed policy would have this many characters, over AWS's inline limit.
    TooLarge(usize),
}

impl SessionScope {
    fn new(
        mode: ScopeMode,
        policy: Option<String>,
        policy_arns: Vec<String>,
        tags: Vec<(String, String)>,
        buckets: Vec<String>,
        narrowed_to: Option<String>,
    ) -> Self {
        let digest = {
            let mut h = crate::vend::Fields::default();
            h.field(mode.as_str().as_bytes())
                .field(&[u8::from(policy.is_some())])
                .field(policy.as_deref().unwrap_or("").as_bytes())
                .field(&(policy_arns.len() as u64).to_be_bytes());
            for arn in &policy_arns {
                h.field(arn.as_bytes());
            }
            for (k, v) in &tags {
                h.field(k.as_bytes()).field(v.as_bytes());
            }
            h.digest()
        };
        Self {
            mode,
            policy,
            policy_arns,
            tags,
            buckets_joined: buckets.join(","),
            buckets,
            narrowed_to,
            hash: digest[..8].iter().map(|b| format!("{b:02x}")).collect(),
            digest,
        }
    }
}

/// What startup and `check-config` say about the chosen way: an error when the deployment
/// cannot work, and notes with the sizes against each limit.
pub fn check_settings(settings: &Settings) -> Result<Vec<String>, crate::config::ConfigError> {
    // Key: "buckets" when the inline way cannot hold them, else the way's own setting.
    let key = match settings.policy.mode {
        ScopeMode::Inline => "buckets",
        _ => "policy.mode",
    };
    check(settings).map_err(|e| crate::config::ConfigError::key(key, e))
}

/// The check behind `check_settings`, its refusal without the key.
pub fn check(settings: &Settings) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let Some(worst) = policy::worst_case(settings) else {
        return Ok(notes);
    };
    let all_units = units(settings);
    let group_units = all_units.iter().filter(|u| u.group.is_some()).count();
    let inline_note = format!(
        "inline: a user of every group needs a {}-character policy (limit {MAX_INLINE_CHARS})",
        worst.len()
    );
    match settings.policy.mode {
        ScopeMode::Inline => {
            if worst.len() > MAX_INLINE_CHARS {
                let managed = managed_policies(settings).map(|m| m.len());
                let tags = role_policy(settings).map(|d| d.len());
                return Err(format!(
                    "the largest session policy (a user allowed all {} in-region buckets) is {} characters, {} over AWS's limit of {MAX_INLINE_CHARS} for inline session policies. Set policy.mode = \"managed\" ({}) or \"tags\" ({}); see README \"Large archives\"",
                    policy::in_region(settings).len(),
                    worst.len(),
                    worst.len() - MAX_INLINE_CHARS,
                    match managed {
                        Ok(n) => format!("{n} managed policies, at most 10 per user"),
                        Err(e) => e,
                    },
                    match tags {
                        Ok(n) => format!("{group_units} session tags, a role policy of {n} documents"),
                        Err(e) => e,
                    },
                ));
            }
            notes.push(inline_note);
        }
        ScopeMode::Managed => {
            if settings.sts.role_arn.account().is_empty() {
                return Err("policy.mode = \"managed\" needs sts.role_arn with an account id (the managed policies' ARNs are in that account)".into());
            }
            let managed = managed_policies(settings)?;
            let public = managed.iter().filter(|m| m.group.is_none()).count();
            if public > MAX_POLICY_ARNS {
                return Err(format!("the buckets open to everyone need {public} managed policies, more than the {MAX_POLICY_ARNS} AWS allows per session"));
            }
            let largest = managed.iter().map(|m| m.document.len()).max().unwrap_or(0);
            let mut per_group: BTreeMap<Option<&str>, usize> = BTreeMap::new();
            for m in &managed {
                *per_group.entry(m.group.as_deref()).or_default() += 1;
            }
            let most = per_group
                .iter()
                .filter(|(g, _)| g.is_some())
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0);
            notes.push(format!(
                "managed: {} policies for {} groups{} (largest {largest} of {MAX_MANAGED_CHARS} characters; upload them with `stsvend managed-policies`); a user's call names {public} + up to {most} per group of theirs, at most {MAX_POLICY_ARNS}: users in more groups get an inline policy if it fits ({inline_note})",
                managed.len(),
                group_units,
                if public > 0 { " and everyone" } else { "" },
            ));
        }
        ScopeMode::Tags => {
            let prefix = settings.policy.tag_key_prefix.to_ascii_lowercase();
            if let Some(k) = settings
                .sts
                .session_tags
                .keys()
                .find(|k| k.to_ascii_lowercase().starts_with(&prefix))
            {
                return Err(format!("sts.session_tags key {k:?} starts with policy.tag_key_prefix {:?}: it would grant a group's buckets", settings.policy.tag_key_prefix));
            }
            let docs = role_policy(settings)?;
            if docs.len() > MAX_ROLE_POLICIES {
                return Err(format!("the role's policy needs {} documents of at most {MAX_MANAGED_CHARS} characters, more than the {MAX_ROLE_POLICIES} managed policies a role can have; use fewer groups per bucket or split the deployment", docs.len()));
            }
            let room = MAX_SESSION_TAGS - settings.sts.session_tags.len();
            notes.push(format!(
                "tags: {group_units} groups, one session tag each (a user's call carries one per group of theirs plus {} static, at most {MAX_SESSION_TAGS}: users in more than {room} groups get an inline policy if it fits); the role's policy (`stsvend role-policy`) is {} documents{}",
                settings.sts.session_tags.len(),
                docs.len(),
                if docs.len() > DEFAULT_ROLE_POLICIES {
                    format!(", above the default quota of {DEFAULT_ROLE_POLICIES} managed policies per role: request an increase")
                } else {
                    String::new()
                }
            ));
        }
    }
    Ok(notes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use figment::providers::{Format, Serialized, Toml};
    use figment::Figment;

    use super::*;

    const KEY: &str =
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZg==";

    /// `buckets` in-region buckets; bucket i belongs to groups `team-(i % teams)` and
    /// `all-(i % 7)`, every tenth is open to everyone, every fifth has two prefixes.
    fn settings(mode: &str, buckets: usize, teams: usize, extra: &str) -> Settings {
        let mut toml = format!(
            "[server]\npublic_url = \"http://127.0.0.1:8080\"\n[oidc]\nissuer = \"http://127.0.0.1:9400\"\nclient_id = \"c\"\n[session]\nsecure = false\n[sts]\nrole_arn = \"arn:aws:iam::123456789012:role/read\"\nregion = \"us-west-2\"\n[policy]\nmode = \"{mode}\"\n"
        );
        for i in 0..buckets {
            let groups = if i % 10 == 0 {
                "[]".to_owned()
            } else {
                format!("[\"team-{:02}\", \"all-{}\"]", i % teams, i % 7)
            };
            let prefixes = if i % 5 == 0 {
                format!("prefixes = [\"collection-{i:03}/\", \"browse/{i:03}/\"]\n")
            } else {
                String::new()
            };
            toml.push_str(&format!(
                "[[buckets]]\nname = \"archive-bucket-{i:03}\"\nregion = \"us-west-2\"\n{prefixes}groups = {groups}\n"
            ));
        }
        toml.push_str("[[buckets]]\nname = \"elsewhere\"\nregion = \"us-east-1\"\ngroups = []\n");
        let figment = Figment::from(Toml::string(crate::config::DEFAULT_TOML))
            .merge(Toml::string(&toml))
            .merge(Toml::string(extra))
            .merge(Serialized::default("oidc.client_secret", "s"))
            .merge(Serialized::default("session.key", KEY));
        crate::config::from_figment(figment).unwrap().1
    }

    fn groups(names: &[&str]) -> Vec<String> {
        let mut g: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        g.sort();
        g
    }

    /// Every (action, resource) a set of grant statements allows, as written.
    fn granted(documents: &[String]) -> BTreeSet<(String, String, String)> {
        let mut out = BTreeSet::new();
        for d in documents {
            let v: Value = serde_json::from_str(d).unwrap();
            for s in v["Statement"].as_array().unwrap() {
                if s["Effect"] != "Allow" {
                    continue;
                }
                let list = |x: &Value| match x {
                    Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
                    v => vec![v.as_str().unwrap().to_owned()],
                };
                let cond = s["Condition"]["StringLike"]["s3:prefix"].to_string();
                for a in list(&s["Action"]) {
                    for r in list(&s["Resource"]) {
                        out.insert((a.clone(), r.clone(), cond.clone()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn group_names_are_lowercase_valid_and_one_to_one() {
        let names: Vec<String> = [
            "science",
            "Science",
            "SCIENCE",
            "sci ence",
            "a",
            "x".repeat(200).as_str(),
            "science-0123456789abcdef",
        ]
        .iter()
        .map(|g| session_name::group_name(g))
        .collect();
        assert_eq!(names[0], "science");
        let distinct: BTreeSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        for n in &names {
            assert!(n.len() <= 64 && n.len() >= 2, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_+=.@-".contains(c)),
                "{n}"
            );
        }
        assert!(
            names[1].starts_with("science-"),
            "readable head: {}",
            names[1]
        );
    }

    /// Compaction never widens: the inline policy grants exactly the pairs the old
    /// one-statement-per-action layout granted (objects by prefix, buckets, locations).
    #[test]
    fn inline_policies_grant_exactly_the_configured_buckets_and_prefixes() {
        let s = settings("inline", 12, 3, "");
        for user_groups in [vec![], vec!["team-01"], vec!["team-00", "all-3"]] {
            let g = groups(&user_groups);
            let allowed = policy::allowed_buckets(&s, &g);
            let doc = policy::inline(&s, &allowed);
            let mut want = BTreeSet::new();
            for b in &allowed {
                let arn = format!("arn:aws:s3:::{}", b.name);
                want.insert((
                    "s3:GetBucketLocation".to_owned(),
                    arn.clone(),
                    "null".to_owned(),
                ));
                if b.prefixes.is_empty() {
                    want.insert((
                        "s3:GetObject".to_owned(),
                        format!("{arn}/*"),
                        "null".to_owned(),
                    ));
                    want.insert(("s3:ListBucket".to_owned(), arn.clone(), "null".to_owned()));
                } else {
                    for p in &b.prefixes {
                        want.insert((
                            "s3:GetObject".to_owned(),
                            format!("{arn}/{p}*"),
                            "null".to_owned(),
                        ));
                    }
                    let patterns: Vec<String> =
                        b.prefixes.iter().map(|p| format!("{p}*")).collect();
                    want.insert((
                        "s3:ListBucket".to_owned(),
                        arn.clone(),
                        serde_json::to_string(&patterns).unwrap(),
                    ));
                }
            }
            assert_eq!(granted(&[doc]), want, "{user_groups:?}");
        }
    }

    #[test]
    fn managed_policies_fit_and_together_grant_each_group_exactly_its_buckets() {
        let s = settings("managed", 200, 40, "");
        let managed = managed_policies(&s).unwrap();
        for m in &managed {
            assert!(
                m.document.len() <= MAX_MANAGED_CHARS,
                "{} is {}",
                m.name,
                m.document.len()
            );
            assert!(
                m.arn
                    .starts_with("arn:aws:iam::123456789012:policy/stsvend/stsvend-"),
                "{}",
                m.arn
            );
            assert!(m.name.len() <= 128);
        }
        for unit in units(&s) {
            let docs: Vec<String> = managed
                .iter()
                .filter(|m| m.group.as_deref() == unit.group)
                .map(|m| m.document.clone())
                .collect();
            let want = granted(&[policy::document(policy::grants(
                &s,
                &unit.buckets,
                &Map::new(),
            ))]);
            assert_eq!(granted(&docs), want, "{:?}", unit.group);
        }
        let names: BTreeSet<&String> = managed.iter().map(|m| &m.name).collect();
        assert_eq!(names.len(), managed.len(), "names are unique");
    }

    #[test]
    fn a_managed_scope_names_the_users_groups_and_denies_anything_but_reading() {
        let s = settings("managed", 200, 40, "");
        let scoper = Scoper::new(&s).unwrap();
        let scope = scoper
            .compute(&s, &groups(&["team-03", "all-2", "unrelated"]))
            .unwrap()
            .unwrap();
        assert_eq!(scope.mode, ScopeMode::Managed);
        let managed = managed_policies(&s).unwrap();
        let want: Vec<String> = managed
            .iter()
            .filter(|m| matches!(m.group.as_deref(), None | Some("team-03") | Some("all-2")))
            .map(|m| m.arn.clone())
            .collect();
        assert_eq!(scope.policy_arns, want);
        let guard: Value = serde_json::from_str(scope.policy.as_deref().unwrap()).unwrap();
        assert!(
            guard["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["Effect"] == "Deny"),
            "{guard}"
        );
        assert!(scope.tags.is_empty());
        // No group of the user's: exactly the bucket everyone may read (bucket 0 of the
        // fixture), through its one managed policy.
        let tiny = settings("managed", 3, 2, "");
        let public = Scoper::new(&tiny)
            .unwrap()
            .compute(&tiny, &groups(&[]))
            .unwrap()
            .unwrap();
        assert_eq!(public.buckets, ["archive-bucket-000"]);
        assert_eq!(
            public.policy_arns,
            ["arn:aws:iam::123456789012:policy/stsvend/stsvend-public"]
        );
    }

    #[test]
    fn too_many_managed_policies_fall_back_to_inline_or_refuse() {
        // 12 single-bucket groups: a user of all needs 12 ARNs; an inline policy still fits.
        let small = settings("managed", 12, 12, "");
        let all: Vec<String> = (0..12).map(|i| format!("team-{i:02}")).collect();
        let scope = Scoper::new(&small)
            .unwrap()
            .compute(
                &small,
                &groups(&all.iter().map(String::as_str).collect::<Vec<_>>()),
            )
            .unwrap()
            .unwrap();
        assert_eq!(scope.mode, ScopeMode::Inline);
        assert!(scope.policy_arns.is_empty());
        // 200 buckets in 40 teams: a user of all teams fits neither way.
        let big = settings("managed", 200, 40, "");
        let all: Vec<String> = (0..40).map(|i| format!("team-{i:02}")).collect();
        let err = Scoper::new(&big)
            .unwrap()
            .compute(
                &big,
                &groups(&all.iter().map(String::as_str).collect::<Vec<_>>()),
            )
            .unwrap_err();
        assert!(
            err.0.contains("managed policies") && err.0.contains("2048"),
            "{err}"
        );
    }

    #[test]
    fn a_tag_scope_carries_one_tag_per_group_and_the_role_policy_grants_by_tag() {
        let s = settings(
            "tags",
            200,
            40,
            "[sts]\nsession_tags = { project = \"x\" }\n",
        );
        let scope = Scoper::new(&s)
            .unwrap()
            .compute(&s, &groups(&["team-03", "all-2", "unrelated"]))
            .unwrap()
            .unwrap();
        assert_eq!(scope.mode, ScopeMode::Tags);
        assert_eq!(
            scope.tags,
            vec![
                ("stsvend-g-all-2".to_owned(), "true".to_owned()),
                ("stsvend-g-team-03".to_owned(), "true".to_owned())
            ]
        );
        assert!(scope.policy_arns.is_empty());
        let inline = scope.policy.unwrap();
        assert!(
            !inline.contains("archive-bucket"),
            "no bucket list in the call: {inline}"
        );
        let docs = role_policy(&s).unwrap();
        assert!(docs.iter().all(|d| d.len() <= MAX_MANAGED_CHARS));
        // Each group's buckets are granted exactly under its tag; public ones unconditioned.
        for unit in units(&s) {
            let mut want = BTreeSet::new();
            for (a, r, c) in granted(&[policy::document(policy::grants(
                &s,
                &unit.buckets,
                &Map::new(),
            ))]) {
                want.insert((a, r, c));
            }
            let mut got = BTreeSet::new();
            for d in &docs {
                let v: Value = serde_json::from_str(d).unwrap();
                let filtered: Vec<Value> = v["Statement"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|st| {
                        let tag = &st["Condition"]["StringEquals"];
                        match unit.group {
                            None => tag.is_null(),
                            Some(_) => {
                                tag[format!("aws:PrincipalTag/{}", tag_key(&s, &unit))] == "true"
                            }
                        }
                    })
                    .cloned()
                    .collect();
                got.extend(granted(&[policy::document(filtered)]));
            }
            assert_eq!(got, want, "{:?}", unit.group);
        }
    }

    #[test]
    fn startup_refuses_a_large_archive_inline_and_accepts_it_managed_or_tagged() {
        let s = settings("managed", 200, 40, "");
        assert!(check(&s).unwrap()[0].starts_with("managed:"));
        let s = settings("tags", 200, 40, "");
        assert!(check(&s).unwrap()[0].starts_with("tags:"));
        let mut s = settings("managed", 200, 40, "");
        s.policy.mode = ScopeMode::Inline;
        let err = check(&s).unwrap_err();
        assert!(
            err.contains("\"managed\"") && err.contains("\"tags\"") && err.contains("2048"),
            "{err}"
        );
    }
}
