//! One ticket as the registry, Redis and the file on disk hold it.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// A ticket's record: what it was made for, and what became of it. Everything but `groups`
/// and `deleted_at` is fixed when it is made; those two only ever take away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    pub id: String,
    pub user: String,
    pub label: String,
    /// Canonical `s3://bucket/prefix`; empty: whatever the user may read.
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The user's groups the ticket may still use: those they had when making it, less every
    /// group stsvend has since seen them without.
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// How long a record outlives its ticket: a replica whose clock runs behind must still know
/// a deleted ticket is deleted while it would still take it as live.
const KEPT_AFTER_EXPIRY: TimeDelta = TimeDelta::minutes(10);

/// The fields fixed when a ticket is made.
type Fixed<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [String],
    Option<u32>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<&'a str>,
);

impl TicketRecord {
    fn fixed(&self) -> Fixed<'_> {
        (
            &self.id,
            &self.user,
            &self.label,
            &self.targets,
            self.duration_seconds,
            self.created_at,
            self.expires_at,
            self.via.as_deref(),
        )
    }
}

impl crate::replicated::Record for TicketRecord {
    fn key(&self) -> &str {
        &self.id
    }

    /// Deleted if either says so (the earlier deletion), with only the groups both still
    /// have: the same record whatever the order.
    fn join(&self, other: &Self) -> Self {
        let deleted_at = match (self.deleted_at, other.deleted_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut groups: Vec<String> = self
            .groups
            .iter()
            .filter(|g| other.groups.contains(g))
            .cloned()
            .collect();
        groups.sort();
        groups.dedup();
        // The fixed fields are the same in both; should two ever differ, the smaller record's
        // are taken, so that they still meet in one place.
        let base = if self.fixed() == other.fixed()
            || serde_json::to_vec(self).ok() <= serde_json::to_vec(other).ok()
        {
            self
        } else {
            other
        };
        Self {
            groups,
            deleted_at,
            ..base.clone()
        }
    }

    fn relevant(&self, now: DateTime<Utc>) -> bool {
        self.expires_at
            .checked_add_signed(KEPT_AFTER_EXPIRY)
            .is_none_or(|until| now < until)
    }

    fn effective(&self, _now: DateTime<Utc>) -> bool {
        self.deleted_at.is_some()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::replicated::Record;

    fn record() -> TicketRecord {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        TicketRecord {
            id: "t1".into(),
            user: "alice".into(),
            label: "dask".into(),
            targets: vec![],
            duration_seconds: None,
            created_at: t,
            expires_at: t + TimeDelta::days(1),
            via: None,
            groups: vec!["a".into(), "b".into(), "c".into()],
            deleted_at: None,
        }
    }

    #[test]
    fn joining_only_takes_away_and_is_the_same_in_any_order() {
        let base = record();
        let mut narrowed = base.clone();
        narrowed.groups = vec!["a".into(), "c".into()];
        let mut other_narrowing = base.clone();
        other_narrowing.groups = vec!["a".into(), "b".into()];
        let mut deleted = base.clone();
        deleted.deleted_at = Some(base.created_at + TimeDelta::hours(1));
        let all = [&base, &narrowed, &other_narrowing, &deleted];
        for a in all {
            assert_eq!(a.join(a), *a, "idempotent");
            for b in all {
                assert_eq!(a.join(b), b.join(a), "commutative");
                for c in all {
                    assert_eq!(a.join(b).join(c), a.join(&b.join(c)), "associative");
                }
            }
        }
        let both = narrowed.join(&other_narrowing).join(&deleted);
        assert_eq!(both.groups, vec!["a".to_owned()]);
        assert!(both.effective(base.created_at));
    }

    #[test]
    fn a_record_is_kept_a_while_after_its_ticket_expires() {
        let r = record();
        assert!(r.relevant(r.expires_at + TimeDelta::minutes(9)));
        assert!(!r.relevant(r.expires_at + TimeDelta::minutes(10)));
    }
}
