//! Asking for less: a request may name targets (`s3://bucket/prefix`, repeatable) to get a
//! credential for just those, and a shorter lifetime. Narrowing only ever takes away: every
//! target must lie inside what the user's groups allow, or the request is refused naming
//! what is not covered (never widened to fit, never dropped).
//!
//! Lifetimes are rounded up to whole quarters of an hour (at most `sts.duration_seconds`), so
//! a user has at most `duration_seconds / 900` credentials per scope in the cache, whatever a
//! client asks for.

use std::time::Duration;

use crate::config::{is_policy_safe_prefix, validate_bucket_name, Bucket, PREFIX_RULE};

/// Targets in one request.
pub const MAX_TARGETS: usize = 20;
/// AWS's shortest session, and the step lifetimes are rounded up to.
pub const LIFETIME_STEP: u32 = 900;

/// A bucket, or a key prefix in it (`prefix` empty: the whole bucket).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub bucket: String,
    pub prefix: String,
}

impl Target {
    /// `s3://bucket`, `s3://bucket/`, `s3://bucket/prefix` (the scheme may be left out; one
    /// trailing `*`, as S3 Access Grants write a prefix, is the same as none).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bare = text.strip_prefix("s3://").unwrap_or(text);
        let bare = bare.strip_suffix('*').unwrap_or(bare);
        let (bucket, prefix) = bare.split_once('/').unwrap_or((bare, ""));
        validate_bucket_name(bucket).map_err(|e| format!("target {}: bucket {e}", shown(text)))?;
        if !prefix.is_empty() && !is_policy_safe_prefix(prefix) {
            return Err(format!(
                "target {}: the prefix must be {PREFIX_RULE}",
                shown(text)
            ));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// Everything `other` names is named by this target too.
    pub fn covers(&self, other: &Target) -> bool {
        self.bucket == other.bucket && other.prefix.starts_with(&self.prefix)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

fn shown(text: &str) -> String {
    crate::error::quoted(text, 80)
}

/// Sorted, without repeats or targets another one already covers: the same request in any
/// order or spelling gives the same list (and the same cache key).
pub fn canonical(mut targets: Vec<Target>) -> Vec<Target> {
    targets.sort();
    let mut out: Vec<Target> = Vec::with_capacity(targets.len());
    for t in targets {
        // Sorted: a covering target (same bucket, shorter prefix) comes first.
        if !out.iter().any(|kept| kept.covers(&t)) {
            out.push(t);
        }
    }
    out
}

/// The buckets a narrowed credential grants: each target's bucket with the target's prefixes
/// (none: the whole bucket), sorted by name. Err: each target not inside `allowed`, said the
/// way the user can fix it.
pub fn narrow(allowed: &[&Bucket], targets: &[Target]) -> Result<Vec<Bucket>, Vec<String>> {
    let mut out: Vec<Bucket> = Vec::new();
    let mut refused = Vec::new();
    for t in targets {
        let Some(b) = allowed.iter().find(|b| b.name == t.bucket) else {
            refused.push(format!("{t} (not a bucket you may read here)"));
            continue;
        };
        let inside = b.prefixes.is_empty() || b.prefixes.iter().any(|p| t.prefix.starts_with(p));
        if !inside {
            let yours: Vec<String> = b
                .prefixes
                .iter()
                .map(|p| format!("s3://{}/{p}", b.name))
                .collect();
            refused.push(format!("{t} (you may read only {})", yours.join(", ")));
            continue;
        }
        match out.iter_mut().find(|n| n.name == t.bucket) {
            Some(n) => n.prefixes.push(t.prefix.clone()),
            None => out.push(Bucket {
                name: b.name.clone(),
                region: b.region.clone(),
                prefixes: vec![t.prefix.clone()],
                groups: Vec::new(),
                requester_pays: b.requester_pays,
            }),
        }
    }
    if !refused.is_empty() {
        return Err(refused);
    }
    for b in &mut out {
        // Canonical targets: a whole-bucket target is its bucket's only one.
        if b.prefixes.iter().any(String::is_empty) {
            b.prefixes.clear();
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The lifetime a request gets: `asked` rounded up to a multiple of `LIFETIME_STEP`, at most
/// `max` (`sts.duration_seconds`); none asked: `max`. Err: the range, for the user.
pub fn lifetime(asked: Option<u32>, max: u32) -> Result<u32, String> {
    let Some(asked) = asked else {
        return Ok(max);
    };
    if !(LIFETIME_STEP..=max).contains(&asked) {
        return Err(format!(
            "duration_seconds must be from {LIFETIME_STEP} to {max} (this deployment's longest)"
        ));
    }
    Ok(asked
        .div_ceil(LIFETIME_STEP)
        .saturating_mul(LIFETIME_STEP)
        .min(max))
}

/// The least remaining life a cached credential needs to be served: the format's threshold,
/// and for a shorter lifetime than the deployment's at most nine tenths of it (a credential
/// asked for 15 minutes is reused for its first 90 seconds, and never outlives what was asked).
pub fn min_remaining(format_min: Duration, lifetime: u32, max: u32) -> Duration {
    if lifetime >= max {
        return format_min;
    }
    format_min.min(Duration::from_secs(u64::from(lifetime) * 9 / 10))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    fn bucket(name: &str, prefixes: &[&str]) -> Bucket {
        Bucket {
            name: name.into(),
            region: "us-west-2".into(),
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            groups: vec![],
            requester_pays: false,
        }
    }

    #[test]
    fn targets_are_read_with_or_without_the_scheme_and_a_trailing_star() {
        for s in [
            "s3://demo-bucket/p1/",
            "demo-bucket/p1/",
            "s3://demo-bucket/p1/*",
        ] {
            assert_eq!(
                Target::parse(s).unwrap(),
                Target {
                    bucket: "demo-bucket".into(),
                    prefix: "p1/".into()
                },
                "{s}"
            );
        }
        for s in [
            "s3://demo-bucket",
            "s3://demo-bucket/",
            "s3://demo-bucket/*",
        ] {
            assert_eq!(t(s).prefix, "", "{s}");
        }
        assert_eq!(
            t("s3://demo-bucket/p1/").to_string(),
            "s3://demo-bucket/p1/"
        );
    }

    #[test]
    fn targets_that_would_widen_a_policy_or_that_sts_refuses_are_refused() {
        for s in [
            "s3://demo-bucket/p*/x",
            "s3://demo-bucket/p?",
            "s3://demo-bucket/${aws:username}",
            "s3://demo-bucket//abs",
            "s3://demo-bucket/a\"b",
            "s3://Demo/x",
            "s3://ab",
            "s3://*",
            "",
            "s3://",
        ] {
            let e = Target::parse(s).unwrap_err();
            assert!(e.starts_with("target "), "{s}: {e}");
        }
    }

    #[test]
    fn canonical_targets_are_sorted_and_drop_what_another_covers() {
        let got = canonical(vec![
            t("s3://b-two/x/y/"),
            t("s3://b-one/a/"),
            t("s3://b-two/x/"),
            t("s3://b-one/a/"),
            t("s3://b-one/"),
            t("s3://b-two/z"),
        ]);
        let shown: Vec<String> = got.iter().map(Target::to_string).collect();
        assert_eq!(shown, ["s3://b-one/", "s3://b-two/x/", "s3://b-two/z"]);
    }

    #[test]
    fn a_target_inside_what_is_allowed_is_granted_as_asked() {
        let allowed = [bucket("b-one", &[]), bucket("b-two", &["data/"])];
        let allowed: Vec<&Bucket> = allowed.iter().collect();
        let got = narrow(
            &allowed,
            &canonical(vec![t("s3://b-two/data/2024/"), t("s3://b-one/p1/")]),
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].name.as_str(), got[0].prefixes.clone()),
            ("b-one", vec!["p1/".to_owned()])
        );
        assert_eq!(got[1].prefixes, ["data/2024/"]);
        let whole = narrow(&allowed, &[t("s3://b-one")]).unwrap();
        assert!(whole[0].prefixes.is_empty());
    }

    #[test]
    fn a_target_outside_what_is_allowed_is_refused_by_name_not_dropped() {
        let allowed = [bucket("b-one", &[]), bucket("b-two", &["data/"])];
        let allowed: Vec<&Bucket> = allowed.iter().collect();
        let refused = narrow(
            &allowed,
            &[t("s3://b-one/ok/"), t("s3://b-two/"), t("s3://b-three/x/")],
        )
        .unwrap_err();
        assert_eq!(
            refused,
            [
                "s3://b-two/ (you may read only s3://b-two/data/)",
                "s3://b-three/x/ (not a bucket you may read here)"
            ]
        );
        // A prefix shorter than the allowed one would reach beyond it.
        assert!(narrow(&allowed, &[t("s3://b-two/dat")]).is_err());
    }

    #[test]
    fn lifetimes_round_up_to_quarter_hours_within_the_deployments_range() {
        assert_eq!(lifetime(None, 3600), Ok(3600));
        assert_eq!(lifetime(Some(900), 3600), Ok(900));
        assert_eq!(lifetime(Some(901), 3600), Ok(1800));
        assert_eq!(lifetime(Some(3599), 3600), Ok(3600));
        assert_eq!(lifetime(Some(3000), 3000), Ok(3000));
        assert_eq!(lifetime(Some(2800), 3000), Ok(3000));
        assert_eq!(lifetime(Some(2600), 3000), Ok(2700));
        for bad in [0, 899, 3601, u32::MAX] {
            let e = lifetime(Some(bad), 3600).unwrap_err();
            assert!(e.contains("900 to 3600"), "{bad}: {e}");
        }
        // At most max/900 distinct lifetimes, whatever is asked.
        let distinct: std::collections::BTreeSet<u32> = (900..=43200)
            .map(|a| lifetime(Some(a), 43200).unwrap())
            .collect();
        assert_eq!(distinct.len(), 48);
    }

    #[test]
    fn a_short_lifetime_is_never_served_past_what_was_asked() {
        let fmt = Duration::from_secs(3360);
        assert_eq!(min_remaining(fmt, 3600, 3600), fmt);
        assert_eq!(min_remaining(fmt, 900, 3600), Duration::from_secs(810));
        assert_eq!(
            min_remaining(Duration::from_secs(900), 2700, 3600),
            Duration::from_secs(900)
        );
    }
}
