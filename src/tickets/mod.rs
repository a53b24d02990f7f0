//! The ticket registry: every ticket made (its label, targets, groups and whether it was
//! deleted), a replicated set (`replicated::Set`) like revocations, so that a deletion reaches
//! every replica within a second and no restart or Redis loss undoes it. A ticket itself is
//! self-contained (`auth::ticket`): a replica that has not yet heard of one still takes it,
//! and a replica refuses one the moment it knows it was deleted.

mod record;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};

use crate::auth::ticket::{self, Opened, TicketClaims, TicketCodec, TicketError};
use crate::clock::Clock;
use crate::config::TicketSettings;
use crate::fleet::records::RecordSet;
use crate::fleet::Fleet;
use crate::replicated::{Loaded, Set, Store};
pub use record::TicketRecord;

/// What the tickets file is called in errors.
pub const FILE_KIND: &str = "a tickets file";
/// A ticket's use is noted at most this often (seconds): "last used" is a minute's news.
const NOTE_EVERY: i64 = 60;
/// Past this many noted uses, those of tickets that have ended are forgotten.
const SWEEP_USES_AT: usize = 10_000;

/// What a user asked a new ticket to be (checked against what they may read by the caller).
pub struct Spec {
    pub label: String,
    pub targets: Vec<String>,
    pub duration_seconds: Option<u32>,
    pub lifetime: std::time::Duration,
}

/// Why a ticket could not be made or found.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooMany(u32),
    Unknown,
    Unsealable,
}

pub struct Tickets {
    set: Arc<Set<TicketRecord>>,
    codec: TicketCodec,
    pub settings: TicketSettings,
    clock: Arc<dyn Clock>,
    fleet: Option<Arc<Fleet>>,
    /// When this replica last saw each ticket used (Unix seconds), noted once a minute.
    used: Mutex<HashMap<String, i64>>,
}

/// A live ticket as the caller sees it in a list.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Listed {
    pub id: String,
    pub label: String,
    pub targets: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u32>,
    /// RFC 3339.
    pub created: String,
    pub expires: String,
    /// When a machine last presented it (to the minute), if ever.
    pub last_used: Option<String>,
    /// The platform the user made it through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Tickets {
    pub fn new(
        settings: TicketSettings,
        codec: TicketCodec,
        fleet: Option<Arc<Fleet>>,
        clock: Arc<dyn Clock>,
        store: Store<TicketRecord>,
        loaded: Loaded<TicketRecord>,
    ) -> Self {
        let set = Set::new(
            fleet.clone().map(|f| (f, RecordSet::Tickets)),
            clock.clone(),
            store,
            loaded,
            // A deleted ticket needs nothing forgotten: every request checks the set.
            Arc::new(|_| Box::pin(async {})),
        );
        Self {
            set: Arc::new(set),
            codec,
            settings,
            clock,
            fleet,
            used: Mutex::default(),
        }
    }

    pub fn codec(&self) -> &TicketCodec {
        &self.codec
    }

    /// Whether this replica knows which tickets were deleted (see `Revocations::synced`).
    pub fn synced(&self) -> bool {
        self.set.synced()
    }

    pub fn start_sync(&self) {
        self.set.start_sync();
    }

    /// The hot path: a ticket presented as a bearer token, opened and checked against the
    /// registry. Ok: its claims, and the groups it may use now.
    pub fn authenticate(
        &self,
        ticket: &str,
        now: DateTime<Utc>,
    ) -> Result<(Arc<Opened>, Option<Vec<String>>), TicketError> {
        if !self.settings.enabled {
            return Err(TicketError::Disabled);
        }
        let opened = self.codec.open(ticket, now)?;
        let narrowed = self.set.with(&opened.claims.id, |r| match r {
            Some(r) if r.deleted_at.is_some() => Err(TicketError::Deleted),
            // Narrowed since it was made: only what both still grant.
            Some(r) if r.groups.len() != opened.claims.grp.len() => Ok(Some(r.groups.clone())),
            _ => Ok(None),
        })?;
        self.note_use(&opened, now);
        Ok((opened, narrowed))
    }

    /// Remember that a ticket was used (once a minute per ticket and replica).
    fn note_use(&self, opened: &Opened, now: DateTime<Utc>) {
        let at = now.timestamp();
        let last = opened.noted.load(Ordering::Relaxed);
        if at - last < NOTE_EVERY
            || opened
                .noted
                .compare_exchange(last, at, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let id = opened.claims.id.clone();
        if let Ok(mut used) = self.used.lock() {
            // Forget tickets that have ended, so the map stays as small as the live set.
            if used.len() >= SWEEP_USES_AT {
                used.retain(|id, _| self.set.with(id, |r| r.is_some_and(|r| now < r.expires_at)));
            }
            used.insert(id.clone(), at);
        }
        if let Some(fleet) = self.fleet.clone() {
            let ttl = opened.claims.exp - at;
            tokio::spawn(async move { fleet.note_ticket_use(&id, at, ttl).await });
        }
    }

    /// Make a ticket for `user` (whose `groups` and reach the caller checked `spec` against):
    /// its record and the secret, shown once.
    pub async fn mint(
        &self,
        user: &str,
        groups: &[String],
        via: Option<&str>,
        spec: Spec,
    ) -> Result<(TicketRecord, String), Refusal> {
        self.set.resync().await;
        let now = self.clock.now();
        let live = self.live_of(user, now).len();
        if live >= self.settings.max_per_user as usize {
            return Err(Refusal::TooMany(self.settings.max_per_user));
        }
        let lifetime = TimeDelta::from_std(spec.lifetime).unwrap_or(TimeDelta::days(1));
        // Whole seconds: the ticket says Unix seconds, the record must say the same.
        let now = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        let claims = TicketClaims {
            id: ticket::new_id(),
            sub: user.to_owned(),
            grp: groups.to_vec(),
            tgt: spec.targets.clone(),
            dur: spec.duration_seconds,
            iat: now.timestamp(),
            exp: (now + lifetime).timestamp(),
            via: via.map(str::to_owned),
        };
        let secret = self.codec.seal(&claims).ok_or(Refusal::Unsealable)?;
        let record = TicketRecord {
            id: claims.id.clone(),
            user: user.to_owned(),
            label: spec.label,
            targets: spec.targets,
            duration_seconds: spec.duration_seconds,
            created_at: now,
            expires_at: claims.expires_at(),
            via: claims.via.clone(),
            groups: claims.grp.clone(),
            deleted_at: None,
        };
        let (stored, _) = self.set.record(&record.id, |_| record.clone()).await;
        Ok((stored, secret))
    }

    fn live_of(&self, user: &str, now: DateTime<Utc>) -> Vec<TicketRecord> {
        self.set.records(now, |r| {
            r.user == user && r.deleted_at.is_none() && now < r.expires_at
        })
    }

    /// The user's live tickets, newest first.
    pub async fn list(&self, user: &str) -> Vec<Listed> {
        self.set.resync().await;
        let now = self.clock.now();
        let mut live = self.live_of(user, now);
        live.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        let ids: Vec<&str> = live.iter().map(|r| r.id.as_str()).collect();
        let fleet_uses = match &self.fleet {
            Some(f) => f.ticket_uses(&ids).await,
            None => vec![None; ids.len()],
        };
        let here = self.used.lock().map(|u| u.clone()).unwrap_or_default();
        live.into_iter()
            .zip(fleet_uses)
            .map(|(r, theirs)| {
                let last = here.get(&r.id).copied().max(theirs);
                Listed {
                    last_used: last
                        .and_then(|t| DateTime::from_timestamp(t, 0))
                        .map(rfc3339),
                    created: rfc3339(r.created_at),
                    expires: rfc3339(r.expires_at),
                    id: r.id,
                    label: r.label,
                    targets: r.targets,
                    duration_seconds: r.duration_seconds,
                    via: r.via,
                }
            })
            .collect()
    }

    /// End one of the user's tickets: whether the fleet was told. Another user's ticket is
    /// as unknown as one that never was.
    pub async fn delete(&self, user: &str, id: &str) -> Result<bool, Refusal> {
        self.set.resync().await;
        let now = self.clock.now();
        let mine = self.set.with(id, |r| {
            r.is_some_and(|r| r.user == user && r.deleted_at.is_none() && now < r.expires_at)
        });
        if !mine {
            return Err(Refusal::Unknown);
        }
        let (_, told) = self
            .set
            .update(id, |r| deleted(r, now))
            .await
            .ok_or(Refusal::Unknown)?;
        Ok(told)
    }

    /// End every ticket of `user` (their access was revoked): how many.
    pub async fn end_user(&self, user: &str) -> usize {
        self.set.resync().await;
        let now = self.clock.now();
        let live = self.live_of(user, now);
        for r in &live {
            self.set.update(&r.id, |r| deleted(r, now)).await;
        }
        live.len()
    }

    /// stsvend has just read `user`'s groups at the IdP (a login, a token): any of their
    /// tickets that still lists a group they no longer have loses it, everywhere.
    pub fn observe(self: &Arc<Self>, user: &str, groups: &[String]) {
        if !self.settings.enabled {
            return;
        }
        // Looking through every ticket is work for the task, not for the request that read
        // the groups.
        let me = self.clone();
        let (user, groups) = (user.to_owned(), groups.to_vec());
        tokio::spawn(async move {
            let now = me.clock.now();
            let stale: Vec<String> = me
                .set
                .records(now, |r| {
                    r.user == user
                        && r.deleted_at.is_none()
                        && r.groups.iter().any(|g| !groups.contains(g))
                })
                .into_iter()
                .map(|r| r.id)
                .collect();
            if !stale.is_empty() {
                tracing::info!(user = %crate::telemetry::capped(&user), tickets = stale.len(), "the user's groups shrank: narrowing their tickets");
            }
            for id in stale {
                me.set
                    .update(&id, |r| {
                        let mut r = r.clone();
                        r.groups.retain(|g| groups.contains(g));
                        r
                    })
                    .await;
            }
        });
    }
}

fn deleted(r: &TicketRecord, now: DateTime<Utc>) -> TicketRecord {
    let mut r = r.clone();
    r.deleted_at.get_or_insert(now);
    r
}
