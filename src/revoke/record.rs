//! One user's revocation record, as the set, Redis and the file on disk hold it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub user: String,
    pub reason: Option<String>,
    pub revoked_at: DateTime<Utc>,
    /// None: until lifted.
    pub expires_at: Option<DateTime<Utc>>,
    /// Set when lifted: the record stays as a tombstone so that no copy elsewhere brings the
    /// revocation back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted_at: Option<DateTime<Utc>>,
}

impl Revocation {
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.lifted_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }

    /// Whether the record still matters: a revocation until it expires, a lift for as long as
    /// the revocation it lifted would have lasted.
    pub(super) fn relevant(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }

    pub(super) fn changed_at(&self) -> DateTime<Utc> {
        self.lifted_at.unwrap_or(self.revoked_at)
    }

    /// Which of two records for a user wins: the later change; on a tie the revocation (fail
    /// closed). Local changes are stamped after the record they replace, so a lift always
    /// beats what it lifted even when the clock did not move.
    pub(super) fn supersedes(&self, other: &Revocation) -> bool {
        match self.changed_at().cmp(&other.changed_at()) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.lifted_at.is_none() && other.lifted_at.is_some(),
        }
    }
}

impl crate::replicated::Record for Revocation {
    fn key(&self) -> &str {
        &self.user
    }

    fn join(&self, other: &Self) -> Self {
        if self.supersedes(other) {
            self.clone()
        } else {
            other.clone()
        }
    }

    fn relevant(&self, now: DateTime<Utc>) -> bool {
        Revocation::relevant(self, now)
    }

    fn effective(&self, now: DateTime<Utc>) -> bool {
        self.active(now)
    }
}
