//! Per-user credential cache (moka). The key hashes everything that shapes a credential (user,
//! role, policy bytes, duration, source identity, tags). Concurrent misses for one key share a
//! single AssumeRole; errors are never cached. A cached credential is served only while the
//! caller's format still has enough lifetime left; when STS is down or throttling, one with at
//! least `FALLBACK_MIN_REMAINING` left is served rather than failing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};

use super::session_name;
use super::sts::{AssumeRoleRequest, StsApi, StsCredentials, StsError};
use crate::clock::Clock;
use crate::config::Settings;
use crate::fleet::credentials::{Lock, Waited};

/// What botocore needs to not refresh on every call: never hand out less than this, even as a
/// fallback while STS is down.
pub const FALLBACK_MIN_REMAINING: Duration = Duration::from_secs(900);

/// Whom a credential is for: a user, acting on their own or through a platform.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'a> {
    pub user: &'a str,
    /// The platform's name (`[[platforms]]`).
    pub via: Option<&'a str>,
}

impl<'a> Principal<'a> {
    pub fn user(user: &'a str) -> Self {
        Self { user, via: None }
    }
}

/// A cache key: the user, and a digest of everything else that shapes their credential.
/// Compared whole, so users never share an entry; moka buckets keys with a cheap seeded hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    user: Box<str>,
    shape: [u8; 32],
    /// The credential's lifetime, in seconds: a shorter one asked for is its own entry.
    lifetime: u32,
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

/// A cache key borrowing its user: what a request looks up, without allocating (the owned
/// [`Key`] is made on a miss only).
#[derive(Clone, Copy)]
struct KeyRef<'a> {
    user: &'a str,
    shape: [u8; 32],
    lifetime: u32,
}

impl std::hash::Hash for KeyRef<'_> {
    /// The user, a quarter of the shape's digest (uniform bytes: as good a spread as all
    /// 32) and the lifetime; equality still compares all of it.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.user.as_bytes());
        state.write(&self.shape[..8]);
        state.write_u32(self.lifetime);
    }
}

impl moka::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *key.user == *self.user && key.shape == self.shape && key.lifetime == self.lifetime
    }
}

impl KeyRef<'_> {
    fn to_key(self) -> Key {
        Key {
            user: self.user.into(),
            shape: self.shape,
            lifetime: self.lifetime,
        }
    }
}

impl Key {
    fn as_ref(&self) -> KeyRef<'_> {
        KeyRef {
            user: &self.user,
            shape: self.shape,
            lifetime: self.lifetime,
        }
    }

    /// The key's name in the shared cache (fleet mode): the user, the shape and this
    /// deployment's call shape, so replicas configured differently (mid-rollout) never
    /// hand each other credentials. Computed only when the local cache misses.
    fn shared_digest(&self, calls: &[u8; 32]) -> [u8; 32] {
        super::Fields::default()
            .field(self.user.as_bytes())
            .field(&self.shape)
            .field(&self.lifetime.to_be_bytes())
            .field(calls)
            .digest()
    }
}

/// Where a vended credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// STS failed transiently; a cached credential with enough lifetime was served instead.
    Fallback,
    Disabled,
    /// Another replica's credential, from the shared cache (fleet mode).
    Shared,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Fallback => "fallback",
            Self::Disabled => "disabled",
            Self::Shared => "shared",
        }
    }

    /// `,"cache":"<outcome>"`, as the audit line writes it (one write, not five).
    pub fn audit_member(self) -> &'static str {
        match self {
            Self::Hit => ",\"cache\":\"hit\"",
            Self::Miss => ",\"cache\":\"miss\"",
            Self::Fallback => ",\"cache\":\"fallback\"",
            Self::Disabled => ",\"cache\":\"disabled\"",
            Self::Shared => ",\"cache\":\"shared\"",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Vended {
    pub credentials: Arc<StsCredentials>,
    pub outcome: CacheOutcome,
    pub session_name: Arc<str>,
    /// Text the caller renders once per credential and reuses on every hit (the audit
    /// line's per-credential fields); shared with the cache entry.
    pub rendered: Arc<OnceLock<Rendered>>,
}

/// A cached credential, the session name it was issued under (kept so that a hit does not
/// derive the name again), and what callers rendered from it once.
#[derive(Debug, Clone)]
struct Entry {
    credentials: Arc<StsCredentials>,
    session_name: Arc<str>,
    rendered: Arc<OnceLock<Rendered>>,
}

/// Text rendered once per credential, and the offset in it where each request's own part
/// goes (a credential can serve requests that asked differently).
#[derive(Debug)]
pub struct Rendered {
    pub text: Box<str>,
    pub split: usize,
}

impl Entry {
    fn new(credentials: Arc<StsCredentials>, session_name: Arc<str>) -> Self {
        Self {
            credentials,
            session_name,
            rendered: Arc::default(),
        }
    }
}

/// Counters for metrics and the benchmarks.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// AssumeRole calls sent (one that missed its fleet slot never left).
    pub sts_calls: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub fallbacks: AtomicU64,
    /// AssumeRole calls that failed, by kind (guard refusals are not calls).
    pub sts_throttled: AtomicU64,
    pub sts_unavailable: AtomicU64,
    pub sts_rejected: AtomicU64,
    /// Requests for a narrowed credential (`?target=`) and for a shorter lifetime.
    pub narrowed: AtomicU64,
    pub short_lifetime: AtomicU64,
    /// Object links signed (`GET /s3/...`).
    pub presigned: AtomicU64,
    /// Credential requests by where the caller was: in the archive's region, outside it,
    /// unknown (no AWS ranges).
    pub callers: [AtomicU64; 3],
}

impl CacheStats {
    pub fn count_caller(&self, placement: crate::network::Placement) {
        use crate::network::Placement;
        let i = match placement {
            Placement::InRegion => 0,
            Placement::OutOfRegion => 1,
            Placement::Unknown => 2,
        };
        self.callers[i].fetch_add(1, Ordering::Relaxed);
    }

    fn count_failure(&self, error: &StsError) {
        let counter = match error {
            StsError::Throttled => &self.sts_throttled,
            StsError::Unavailable(_) => &self.sts_unavailable,
            StsError::Rejected { .. } => &self.sts_rejected,
            StsError::Busy { .. } | StsError::UserBudget { .. } => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Evict entries once no format could still use them (memory hygiene only: freshness is
/// decided against the injected clock on every read). A refreshed credential gets its own
/// deadline: moka would otherwise keep the deadline of the entry it replaced.
struct UntilUnusable {
    clock: Arc<dyn Clock>,
}

impl UntilUnusable {
    fn usable_for(&self, value: &StsCredentials) -> Duration {
        reusable_for(value, self.clock.now())
    }
}

/// How long a credential just issued (or just read from the fleet) stays worth keeping:
/// until `FALLBACK_MIN_REMAINING` is left, or for a short one (a chosen lifetime) its first
/// tenth, the longest any request can reuse it (`narrow::min_remaining`).
fn reusable_for(c: &StsCredentials, now: DateTime<Utc>) -> Duration {
    let left = (c.expiration - now).to_std().unwrap_or_default();
    let floor = FALLBACK_MIN_REMAINING.min(left.mul_f64(0.9));
    left.saturating_sub(floor).max(Duration::from_secs(1))
}

impl moka::Expiry<Key, Entry> for UntilUnusable {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.usable_for(&value.credentials))
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        value: &Entry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.usable_for(&value.credentials))
    }
}

/// What every AssumeRole call of this deployment shares, and its digest (part of every
/// cache key built from a user and a scope).
struct CallShape {
    role_arn: String,
    /// The role's account (`none` for Ceph/MinIO roles): fleet budgets are kept per account.
    account: String,
    external_id: Option<String>,
    app_name: String,
    source_identity: bool,
    duration_seconds: u32,
    session_tags: Vec<(String, String)>,
    digest: [u8; 32],
}

impl CallShape {
    fn new(settings: &Settings) -> Self {
        let session_tags: Vec<(String, String)> = settings
            .sts
            .session_tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut h = super::Fields::default();
        h.field(settings.sts.role_arn.as_str().as_bytes())
            .field(settings.sts.external_id.as_deref().unwrap_or("").as_bytes())
            .field(settings.server.app_name.as_bytes())
            .field(&[u8::from(settings.sts.source_identity)])
            .field(&settings.sts.duration_seconds.to_be_bytes());
        for (k, v) in &session_tags {
            h.field(k.as_bytes()).field(v.as_bytes());
        }
        Self {
            role_arn: settings.sts.role_arn.as_str().to_owned(),
            account: match settings.sts.role_arn.account() {
                "" => "none".to_owned(),
                a => a.to_owned(),
            },
            external_id: settings.sts.external_id.clone(),
            app_name: settings.server.app_name.clone(),
            source_identity: settings.sts.source_identity,
            duration_seconds: settings.sts.duration_seconds,
            session_tags,
            digest: h.digest(),
        }
    }

    fn request(
        &self,
        who: Principal<'_>,
        scope: &crate::vend::scope::SessionScope,
        lifetime: u32,
    ) -> AssumeRoleRequest {
        let user_id = who.user;
        AssumeRoleRequest {
            user_id: user_id.to_owned(),
            role_arn: self.role_arn.clone(),
            external_id: self.external_id.clone(),
            role_session_name: session_name::role_session_name_via(
                user_id,
                &self.app_name,
                who.via,
            ),
            source_identity: self
                .source_identity
                .then(|| session_name::source_identity(user_id)),
            policy: scope.policy.clone(),
            policy_arns: scope.policy_arns.clone(),
            duration_seconds: lifetime,
            tags: self
                .session_tags
                .iter()
                .cloned()
                .chain(scope.tags.iter().cloned())
                .collect(),
            sign_by: None,
        }
    }

    /// The key of `user_id`'s credential for `scope`: the same inputs as the request
    /// `request` builds (the rest is this shape, the same for every entry), without building
    /// it: this runs on every credential request.
    fn key<'a>(
        &self,
        who: Principal<'a>,
        scope: &crate::vend::scope::SessionScope,
        lifetime: u32,
    ) -> KeyRef<'a> {
        // A platform's sessions are named for it: an entry of their own (the user's still,
        // so a revocation forgets them too).
        let shape = match who.via {
            None => scope.digest,
            Some(platform) => super::Fields::default()
                .field(&scope.digest)
                .field(platform.as_bytes())
                .digest(),
        };
        KeyRef {
            user: who.user,
            shape,
            lifetime,
        }
    }
}

/// How many credentials the cache holds for each user: counted when one is inserted, and
/// again by the eviction listener on every removal but a replacement. Touched on misses and
/// evictions only, never on a hit.
struct PerUser {
    counts: std::sync::Mutex<std::collections::HashMap<Box<str>, u64>>,
    cap: u64,
}

impl PerUser {
    fn new(cap: u64) -> Arc<Self> {
        Arc::new(Self {
            counts: std::sync::Mutex::default(),
            cap,
        })
    }

    fn full(&self, user: &str) -> bool {
        self.counts
            .lock()
            .map(|c| c.get(user).is_some_and(|n| *n >= self.cap))
            .unwrap_or(false)
    }

    fn added(&self, user: &str) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(user.into()).or_default() += 1;
        }
    }

    fn removed(&self, user: &str) {
        if let Ok(mut c) = self.counts.lock() {
            if let Some(n) = c.get_mut(user) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.remove(user);
                }
            }
        }
    }
}

fn cache_for(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    per_user: &Arc<PerUser>,
) -> Cache<Key, Entry, foldhash::fast::RandomState> {
    let counted = per_user.clone();
    Cache::builder()
        .max_capacity(settings.cache.max_entries)
        .expire_after(UntilUnusable { clock })
        .eviction_listener(move |key: Arc<Key>, _, cause| {
            if cause != moka::notification::RemovalCause::Replaced {
                counted.removed(&key.user);
            }
        })
        .support_invalidation_closures()
        .build_with_hasher(foldhash::fast::RandomState::default())
}

pub struct Vendor {
    sts: Arc<dyn StsApi>,
    guard: super::guard::StsGuard,
    cache: Option<Cache<Key, Entry, foldhash::fast::RandomState>>,
    /// Credentials cached per user, capped by `cache.max_entries_per_user`.
    per_user: Arc<PerUser>,
    shape: CallShape,
    /// Fleet mode: the second level, shared by all replicas through Redis.
    shared: Option<Arc<crate::fleet::Fleet>>,
    pub stats: CacheStats,
}

fn remaining(c: &StsCredentials, now: DateTime<Utc>) -> TimeDelta {
    c.expiration - now
}

fn enough(c: &StsCredentials, now: DateTime<Utc>, min: Duration) -> bool {
    remaining(c, now) >= TimeDelta::from_std(min).unwrap_or(TimeDelta::MAX)
}

fn vended(entry: Entry, outcome: CacheOutcome) -> Vended {
    Vended {
        credentials: entry.credentials,
        outcome,
        session_name: entry.session_name,
        rendered: entry.rendered,
    }
}

fn cache_key(request: &AssumeRoleRequest) -> Key {
    let mut h = super::Fields::default();
    h.field(request.role_arn.as_bytes())
        .field(request.external_id.as_deref().unwrap_or("").as_bytes())
        .field(request.role_session_name.as_bytes())
        .field(request.source_identity.as_deref().unwrap_or("").as_bytes())
        .field(request.policy.as_deref().unwrap_or("").as_bytes())
        .field(&[u8::from(request.policy.is_some())])
        .field(&(request.policy_arns.len() as u64).to_be_bytes());
    for arn in &request.policy_arns {
        h.field(arn.as_bytes());
    }
    h.field(&request.duration_seconds.to_be_bytes());
    for (k, v) in &request.tags {
        h.field(k.as_bytes()).field(v.as_bytes());
    }
    Key {
        user: request.user_id.as_str().into(),
        shape: h.digest(),
        lifetime: request.duration_seconds,
    }
}

impl Vendor {
    pub fn new(sts: Arc<dyn StsApi>, settings: &Settings, clock: Arc<dyn Clock>) -> Self {
        let per_user = PerUser::new(settings.cache.max_entries_per_user);
        let cache = settings
            .cache
            .enabled
            .then(|| cache_for(settings, clock, &per_user));
        Self {
            sts,
            guard: super::guard::StsGuard::new(&settings.sts, &settings.limits),
            cache,
            per_user,
            shape: CallShape::new(settings),
            shared: None,
            stats: CacheStats::default(),
        }
    }

    /// Drop every credential cached for `user_id`, here and (fleet mode) in Redis.
    pub async fn forget_user(&self, user_id: &str) {
        if let Some(cache) = &self.cache {
            let user: Box<str> = user_id.into();
            let _ = cache.invalidate_entries_if(move |k, _| k.user == user);
        }
        if let Some(shared) = &self.shared {
            shared.forget_user(user_id).await;
        }
    }

    /// Share credentials with the other replicas (fleet mode).
    pub fn with_fleet(mut self, fleet: Arc<crate::fleet::Fleet>) -> Self {
        self.shared = Some(fleet);
        self
    }

    /// The circuit breaker, in-flight cap and rate budget in front of STS.
    pub fn guard(&self) -> &super::guard::StsGuard {
        &self.guard
    }

    /// AssumeRole calls this vendor sent (archives may share one STS client).
    pub fn sts_calls(&self) -> u64 {
        self.stats.sts_calls.load(Ordering::Relaxed)
    }

    pub fn cached_entries(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.entry_count())
    }

    /// Run pending cache maintenance (tests and benchmarks read exact counts).
    pub async fn sync(&self) {
        if let Some(c) = &self.cache {
            c.run_pending_tasks().await;
        }
    }

    /// The AssumeRole call a user with this policy gets.
    pub fn request_for(
        settings: &Settings,
        user_id: &str,
        scope: &crate::vend::scope::SessionScope,
    ) -> AssumeRoleRequest {
        let shape = CallShape::new(settings);
        shape.request(Principal::user(user_id), scope, shape.duration_seconds)
    }

    /// Credentials for `user_id` with `scope` and `lifetime` seconds (None: the deployment's),
    /// under the settings this vendor was built with; the AssumeRole request is built only
    /// when STS is called.
    pub async fn vend_for(
        &self,
        who: Principal<'_>,
        scope: &crate::vend::scope::SessionScope,
        lifetime: Option<u32>,
        min_remaining: Duration,
        now: DateTime<Utc>,
        overall_timeout: Duration,
    ) -> Result<Vended, StsError> {
        if scope.narrowed_to.is_some() {
            self.stats.narrowed.fetch_add(1, Ordering::Relaxed);
        }
        let lifetime = match lifetime {
            Some(l) => {
                self.stats.short_lifetime.fetch_add(1, Ordering::Relaxed);
                l
            }
            None => self.shape.duration_seconds,
        };
        let key = self.shape.key(who, scope, lifetime);
        let request = || self.shape.request(who, scope, lifetime);
        self.vend_keyed(key, request, min_remaining, now, overall_timeout)
            .await
    }

    /// Credentials for `request` with at least `min_remaining` of lifetime (fresh ones are
    /// served whatever their lifetime).
    pub async fn vend(
        &self,
        request: AssumeRoleRequest,
        min_remaining: Duration,
        now: DateTime<Utc>,
        overall_timeout: Duration,
    ) -> Result<Vended, StsError> {
        let key = cache_key(&request);
        self.vend_keyed(
            key.as_ref(),
            move || request,
            min_remaining,
            now,
            overall_timeout,
        )
        .await
    }

    async fn vend_keyed(
        &self,
        key: KeyRef<'_>,
        request: impl FnOnce() -> AssumeRoleRequest,
        min_remaining: Duration,
        now: DateTime<Utc>,
        overall_timeout: Duration,
    ) -> Result<Vended, StsError> {
        if let Some(cache) = &self.cache {
            // A lookup completes at once (a hit or a miss): polled here, in place, rather
            // than kept in the request's future, which moka's ~1 KB lookup future would make
            // too large for the allocator's fast path on every request. Still pending (it met
            // moka's maintenance): asked again and awaited, boxed.
            let found = match futures_util::FutureExt::now_or_never(cache.get(&key)) {
                Some(found) => found,
                None => Box::pin(cache.get(&key)).await,
            };
            if let Some(hit) = found {
                if enough(&hit.credentials, now, min_remaining) {
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(vended(hit, CacheOutcome::Hit));
                }
            }
        }
        // The rest (STS, the shared cache, one call per key) makes a large future; boxed, so
        // that a hit's future stays small (it is moved several times per request).
        Box::pin(self.vend_missed(key.to_key(), request, min_remaining, now, overall_timeout)).await
    }

    /// One new credential out of `user`'s share: this replica's, and (fleet mode) the
    /// fleet's, so behind N replicas a user still gets one share. Checked before anything
    /// else an STS call takes (a fleet slot, the in-flight cap).
    async fn charge(
        &self,
        user: &str,
        shared: Option<&crate::fleet::Fleet>,
    ) -> Result<(), StsError> {
        self.guard.charge_user(user)?;
        if let (Some(shared), Some((per_minute, burst))) = (shared, self.guard.user_quota()) {
            use crate::fleet::budget::Share;
            if let Share::Refused(retry_after) = shared
                .user_share(&self.shape.account, user, per_minute, burst)
                .await
            {
                self.guard.count_user_refusal();
                return Err(StsError::UserBudget { retry_after });
            }
        }
        Ok(())
    }

    /// Wait for a slot in the fleet's AssumeRole budget: Ok(the instant the request must be
    /// signed by, which the STS client enforces; None when no fleet budget applies),
    /// Err(retry after) when the budget is used up for longer than `cluster.sts_max_wait_ms`.
    async fn fleet_slot(
        &self,
        shared: &crate::fleet::Fleet,
    ) -> Result<Option<std::time::Instant>, Duration> {
        use crate::fleet::budget::Slot;
        match shared.sts_slot(&self.shape.account).await {
            Slot::Local => Ok(None),
            Slot::Refused(over) => Err(over.max(Duration::from_secs(1))),
            Slot::At(at) => {
                tokio::time::sleep_until(at.into()).await;
                Ok(Some(at + crate::fleet::budget::SLOT_GRACE))
            }
        }
    }

    async fn vend_missed(
        &self,
        key: Key,
        request: impl FnOnce() -> AssumeRoleRequest,
        min_remaining: Duration,
        now: DateTime<Utc>,
        overall_timeout: Duration,
    ) -> Result<Vended, StsError> {
        let call = |req: AssumeRoleRequest| async move {
            let ticket = self.guard.admit()?;
            let result = tokio::time::timeout(overall_timeout, self.sts.assume_role(&req))
                .await
                .unwrap_or_else(|_| Err(StsError::Unavailable("timed out".into())));
            ticket.record(&result);
            if !matches!(&result, Err(StsError::Busy { reason, .. }) if *reason == super::sts::SLOT_MISSED)
            {
                self.stats.sts_calls.fetch_add(1, Ordering::Relaxed);
            }
            if let Err(e) = &result {
                self.stats.count_failure(e);
            }
            result
        };
        let Some(cache) = &self.cache else {
            let request = request();
            self.charge(&request.user_id, None).await?;
            let session_name = Arc::from(request.role_session_name.as_str());
            let credentials = Arc::new(call(request).await?);
            return Ok(vended(
                Entry::new(credentials, session_name),
                CacheOutcome::Disabled,
            ));
        };
        // Fleet mode: another replica's credential, or one AssumeRole for the whole fleet.
        let from_shared = std::sync::atomic::AtomicBool::new(false);
        let fetch = |req: AssumeRoleRequest| async {
            let req_user = req.user_id.clone();
            let Some(shared) = &self.shared else {
                self.charge(&req.user_id, None).await?;
                return call(req).await;
            };
            let usable = |c: &StsCredentials| enough(c, now, min_remaining);
            let digest = key.shared_digest(&self.shape.digest);
            if let Some(c) = shared.get(&digest).await.filter(|c| usable(c)) {
                from_shared.store(true, Ordering::Relaxed);
                return Ok(c);
            }
            let lifetime = |c: &StsCredentials| reusable_for(c, now);
            // The winner renews its lock while it calls STS; if it dies, the lock lapses
            // and one of the waiters takes over.
            let (token, took_over) = match shared.lock(&digest).await {
                Lock::Held => match shared.wait_for(&digest, usable).await {
                    Waited::Found(c) => {
                        from_shared.store(true, Ordering::Relaxed);
                        return Ok(c);
                    }
                    Waited::TookOver(token) => (Some(token), true),
                    Waited::TimedOut => (None, false),
                },
                Lock::Acquired(token) => (Some(token), false),
                Lock::Unavailable => (None, false),
            };
            // The previous holder may have written its credential and released the lock
            // between our lookup and our lock: look once more before calling STS. Only a
            // lock found lapsed without a credential is a takeover (its holder died).
            if let Some(token) = &token {
                if let Some(c) = shared.get(&digest).await.filter(|c| usable(c)) {
                    shared.unlock(&digest, token).await;
                    from_shared.store(true, Ordering::Relaxed);
                    return Ok(c);
                }
                if took_over {
                    shared.stats.lock_takeovers.fetch_add(1, Ordering::Relaxed);
                }
            }
            // A request signed after its slot (a busy machine woke it late, or the SDK took
            // long to prepare it) is not sent: it takes a new slot, within the max wait.
            let work = async {
                self.charge(&req.user_id, Some(shared)).await?;
                let started = tokio::time::Instant::now();
                let mut req = req;
                loop {
                    let refused = match self.fleet_slot(shared).await {
                        Ok(sign_by) => {
                            req.sign_by = sign_by;
                            match call(req.clone()).await {
                                Err(StsError::Busy { reason, .. })
                                    if reason == super::sts::SLOT_MISSED =>
                                {
                                    shared.stats.slots_forfeited.fetch_add(1, Ordering::Relaxed);
                                    (started.elapsed() >= shared.max_wait())
                                        .then_some(Duration::from_secs(1))
                                }
                                result => return result,
                            }
                        }
                        Err(retry_after) => Some(retry_after),
                    };
                    if let Some(retry_after) = refused {
                        self.guard.count_fleet_refusal();
                        return Err(StsError::Busy {
                            reason: "fleet_rate_budget",
                            retry_after,
                        });
                    }
                }
            };
            let result = match &token {
                Some(token) => shared.holding(&digest, token, work).await,
                None => work.await,
            };
            if let Ok(c) = &result {
                shared.put(&digest, &req_user, c, lifetime(c)).await;
            }
            if let Some(token) = token {
                shared.unlock(&digest, &token).await;
            }
            result
        };
        // Miss or too old: one caller at a time per key calls STS; the others then find the
        // fresh credential.
        // A user at `cache.max_entries_per_user` still gets a new credential (within their
        // own budget), handed out without being kept.
        let unkept = OnceLock::new();
        let computed = cache
            .entry(key.clone())
            .and_try_compute_with(|existing| async {
                let had = existing.is_some();
                if let Some(entry) = existing {
                    if enough(&entry.value().credentials, now, min_remaining) {
                        return Ok(Op::Nop);
                    }
                }
                let request = request();
                let session_name = Arc::from(request.role_session_name.as_str());
                let entry = Entry::new(Arc::new(fetch(request).await?), session_name);
                if !had && self.per_user.full(&key.user) {
                    let _ = unkept.set(entry);
                    return Ok::<_, StsError>(Op::Nop);
                }
                Ok(Op::Put(entry))
            })
            .await;
        if let Ok(CompResult::Inserted(_)) = &computed {
            self.per_user.added(&key.user);
        }
        match computed {
            Ok(CompResult::StillNone(_)) if unkept.get().is_some() => {
                let outcome = if from_shared.load(Ordering::Relaxed) {
                    CacheOutcome::Shared
                } else {
                    self.stats.misses.fetch_add(1, Ordering::Relaxed);
                    CacheOutcome::Miss
                };
                match unkept.into_inner() {
                    Some(entry) => Ok(vended(entry, outcome)),
                    None => Err(StsError::Unavailable("credential lost".into())),
                }
            }
            Ok(CompResult::Inserted(e)) | Ok(CompResult::ReplacedWith(e)) => {
                if from_shared.load(Ordering::Relaxed) {
                    Ok(vended(e.into_value(), CacheOutcome::Shared))
                } else {
                    self.stats.misses.fetch_add(1, Ordering::Relaxed);
                    Ok(vended(e.into_value(), CacheOutcome::Miss))
                }
            }
            Ok(CompResult::Unchanged(e)) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Ok(vended(e.into_value(), CacheOutcome::Hit))
            }
            Ok(_) => Err(StsError::Unavailable(
                "credential cache lost the entry".into(),
            )),
            Err(e) if e.is_transient() => match cache.get(&key).await {
                Some(stale) if enough(&stale.credentials, now, FALLBACK_MIN_REMAINING) => {
                    self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                    Ok(vended(stale, CacheOutcome::Fallback))
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    /// A borrowed key hashes and compares as the owned key it stands for.
    #[test]
    fn borrowed_keys_find_owned_keys() {
        use std::hash::BuildHasher;
        let hasher = foldhash::fast::RandomState::default();
        let owned = Key {
            user: "alice".into(),
            shape: [7; 32],
            lifetime: 3600,
        };
        let same = KeyRef {
            user: "alice",
            shape: [7; 32],
            lifetime: 3600,
        };
        assert_eq!(hasher.hash_one(&owned), hasher.hash_one(same));
        assert!(moka::Equivalent::equivalent(&same, &owned));
        for other in [
            KeyRef {
                user: "alicf",
                ..same
            },
            KeyRef {
                lifetime: 900,
                ..same
            },
            KeyRef {
                shape: [8; 32],
                ..same
            },
        ] {
            assert!(!moka::Equivalent::equivalent(&other, &owned));
        }
        assert_eq!(same.to_key(), owned);
    }
    use std::sync::Mutex;

    use futures_util::future::BoxFuture;
    use secrecy::SecretString;

    use super::*;

    /// An in-process STS: counts calls, can be switched to fail, issues credentials that
    /// expire `lifetime` after the fake's own notion of now.
    struct FakeSts {
        calls: AtomicU64,
        fail: Mutex<Option<StsError>>,
        now: Mutex<DateTime<Utc>>,
        delay: Duration,
    }

    impl FakeSts {
        fn new(now: DateTime<Utc>) -> Self {
            Self {
                calls: AtomicU64::new(0),
                fail: Mutex::new(None),
                now: Mutex::new(now),
                delay: Duration::from_millis(20),
            }
        }
    }

    impl StsApi for FakeSts {
        fn assume_role<'a>(
            &'a self,
            request: &'a AssumeRoleRequest,
        ) -> BoxFuture<'a, Result<StsCredentials, StsError>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                if let Some(e) = self.fail.lock().unwrap().clone() {
                    return Err(e);
                }
                let now = *self.now.lock().unwrap();
                Ok(StsCredentials::new(
                    format!("ASIAFAKE{n}"),
                    SecretString::from(format!("secret-{n}")),
                    SecretString::from(format!("token-{n}")),
                    now + TimeDelta::seconds(i64::from(request.duration_seconds)),
                    Some(10),
                ))
            })
        }
    }

    impl FakeSts {
        fn calls(&self) -> u64 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn key0() -> Key {
        Key {
            user: "alice".into(),
            shape: [0; 32],
            lifetime: 3600,
        }
    }

    fn request(user: &str) -> AssumeRoleRequest {
        AssumeRoleRequest {
            user_id: user.into(),
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            external_id: None,
            role_session_name: format!("{user}@app"),
            source_identity: Some(user.into()),
            policy: Some("{}".into()),
            policy_arns: vec![],
            duration_seconds: 3600,
            tags: vec![],
            sign_by: None,
        }
    }

    fn vendor(sts: Arc<FakeSts>) -> Vendor {
        vendor_with_breaker(sts, 1000)
    }

    fn vendor_with_breaker(sts: Arc<FakeSts>, failures: u32) -> Vendor {
        let mut sts_settings = test_sts_settings();
        sts_settings.breaker_failures = failures;
        let settings = test_settings();
        Vendor {
            sts,
            guard: crate::vend::guard::StsGuard::new(&sts_settings, &settings.limits),
            per_user: PerUser::new(settings.cache.max_entries_per_user),
            shape: CallShape::new(&settings),
            shared: None,
            cache: Some(
                Cache::builder()
                    .max_capacity(1000)
                    .expire_after(UntilUnusable {
                        clock: Arc::new(crate::clock::SystemClock),
                    })
                    .build_with_hasher(foldhash::fast::RandomState::default()),
            ),
            stats: CacheStats::default(),
        }
    }

    fn test_sts_settings() -> crate::config::StsSettings {
        test_settings().sts
    }

    fn test_settings() -> Settings {
        crate::config::test_settings()
    }

    fn credential_expiring(at: DateTime<Utc>) -> Arc<StsCredentials> {
        Arc::new(StsCredentials::new(
            "ASIAX".into(),
            SecretString::from("s".to_owned()),
            SecretString::from("t".to_owned()),
            at,
            None,
        ))
    }

    /// Review finding 1d: a refreshed credential must get its own eviction deadline, not the
    /// deadline of the one it replaced (else the STS-down fallback loses it ~45 min early).
    #[test]
    fn a_refreshed_credential_gets_its_own_eviction_deadline_on_the_injected_clock() {
        let clock = Arc::new(crate::clock::ManualClock::default());
        let expiry = UntilUnusable {
            clock: clock.clone(),
        };
        let start = clock.now();
        let first = credential_expiring(start + TimeDelta::hours(1));
        let entry = |credentials| Entry::new(credentials, Arc::from("alice@stsvend"));
        let first = entry(first);
        let created =
            moka::Expiry::expire_after_create(&expiry, &key0(), &first, Instant::now()).unwrap();
        assert!((Duration::from_secs(44 * 60)..=Duration::from_secs(45 * 60)).contains(&created));
        // 20 minutes on, the entry is refreshed with a credential valid for another hour.
        clock.advance(Duration::from_secs(20 * 60));
        let fresh = entry(credential_expiring(clock.now() + TimeDelta::hours(1)));
        let old_deadline_left = Some(created - Duration::from_secs(20 * 60));
        let updated = moka::Expiry::expire_after_update(
            &expiry,
            &key0(),
            &fresh,
            Instant::now(),
            old_deadline_left,
        )
        .unwrap();
        assert!(
            updated >= Duration::from_secs(44 * 60),
            "a fresh hour-long credential must stay ~45 min, not {updated:?}"
        );
        // The deadline follows the injected clock, not the wall clock.
        clock.advance(Duration::from_secs(30 * 60));
        let later =
            moka::Expiry::expire_after_create(&expiry, &key0(), &fresh, Instant::now()).unwrap();
        assert!(later <= Duration::from_secs(15 * 60), "{later:?}");
    }

    /// With STS hung, the breaker opens after `breaker_failures` timeouts: later misses are
    /// refused without a call, while cached users (even as a fallback) are still served.
    #[tokio::test]
    async fn an_open_breaker_refuses_misses_without_calling_sts_but_serves_the_cache() {
        let now = Utc::now();
        let mut fake = FakeSts::new(now);
        fake.delay = Duration::from_millis(300);
        let sts = Arc::new(fake);
        let v = vendor_with_breaker(sts.clone(), 2);
        let short = Duration::from_secs(5);
        let alice = v
            .vend(request("alice"), EARTHDATA, now, short)
            .await
            .unwrap();
        let hung = Duration::from_millis(50);
        for user in ["bob", "carol"] {
            let err = v
                .vend(request(user), EARTHDATA, now, hung)
                .await
                .unwrap_err();
            assert!(matches!(err, StsError::Unavailable(_)), "{err:?}");
        }
        assert_eq!(v.guard().state(), crate::vend::guard::BreakerState::Open);
        let calls = sts.calls();
        let err = v
            .vend(request("dave"), EARTHDATA, now, hung)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StsError::Busy {
                    reason: "circuit_open",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(sts.calls(), calls, "no call while the breaker is open");
        let hit = v
            .vend(request("alice"), EARTHDATA, now, hung)
            .await
            .unwrap();
        assert_eq!(hit.outcome, CacheOutcome::Hit);
        // Past the Earthdata window: the cached credential is served as a fallback.
        let later = now + TimeDelta::minutes(20);
        let fallback = v
            .vend(request("alice"), EARTHDATA, later, hung)
            .await
            .unwrap();
        assert_eq!(fallback.outcome, CacheOutcome::Fallback);
        assert_eq!(
            fallback.credentials.access_key_id,
            alice.credentials.access_key_id
        );
    }

    /// Failed AssumeRole calls are counted by kind (alerts watch them); refusals by the
    /// guard are not calls and are counted elsewhere.
    #[tokio::test]
    async fn failed_sts_calls_are_counted_by_kind() {
        let now = Utc::now();
        let sts = Arc::new(FakeSts::new(now));
        let v = vendor(sts.clone());
        let short = Duration::from_secs(5);
        let fail_with = |e: Option<StsError>| *sts.fail.lock().unwrap() = e;
        fail_with(Some(StsError::Throttled));
        v.vend(request("a"), EARTHDATA, now, short)
            .await
            .unwrap_err();
        fail_with(Some(StsError::Unavailable("down".into())));
        v.vend(request("b"), EARTHDATA, now, short)
            .await
            .unwrap_err();
        v.vend(request("c"), EARTHDATA, now, short)
            .await
            .unwrap_err();
        fail_with(Some(StsError::Rejected {
            code: "AccessDenied".into(),
            message: "no".into(),
        }));
        v.vend(request("d"), EARTHDATA, now, short)
            .await
            .unwrap_err();
        fail_with(None);
        v.vend(request("e"), EARTHDATA, now, short).await.unwrap();
        let s = &v.stats;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(
            (
                n(&s.sts_throttled),
                n(&s.sts_unavailable),
                n(&s.sts_rejected)
            ),
            (1, 2, 1)
        );
    }

    #[tokio::test]
    async fn users_with_the_same_session_name_get_different_entries() {
        let now = Utc::now();
        let sts = Arc::new(FakeSts::new(now));
        let v = vendor(sts.clone());
        let a = request("alice");
        let mut b = request("bob");
        b.role_session_name = a.role_session_name.clone();
        b.source_identity = a.source_identity.clone();
        let first = v.vend(a, EARTHDATA, now, T).await.unwrap();
        let second = v.vend(b, EARTHDATA, now, T).await.unwrap();
        assert_ne!(
            first.credentials.access_key_id,
            second.credentials.access_key_id
        );
        assert_eq!(sts.calls(), 2);
    }

    const T: Duration = Duration::from_secs(5);
    const EARTHDATA: Duration = Duration::from_secs(56 * 60);
    const SDK: Duration = Duration::from_secs(15 * 60);

    #[tokio::test]
    async fn concurrent_first_requests_share_one_sts_call() {
        let now = Utc::now();
        let sts = Arc::new(FakeSts::new(now));
        let v = Arc::new(vendor(sts.clone()));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let v = v.clone();
                tokio::spawn(async move { v.vend(request("alice"), EARTHDATA, now, T).await })
            })
            .collect();
        let mut keys = std::collections::HashSet::new();
        for t in tasks {
            keys.insert(t.await.unwrap().unwrap().credentials.access_key_id.clone());
        }
        assert_eq!(sts.calls(), 1);
        assert_eq!(keys.len(), 1);
    }

    #[tokio::test]
    async fn reuse_window_depends_on_the_format() {
        let now = Utc::now();
        let sts = Arc::new(FakeSts::new(now));
        let v = vendor(sts.clone());
        let first = v.vend(request("alice"), EARTHDATA, now, T).await.unwrap();
        assert_eq!(first.outcome, CacheOutcome::Miss);
        // 3 minutes later: 57 min left, still fine for Earthdata.
        let t1 = now + TimeDelta::minutes(3);
        let hit = v.vend(request("alice"), EARTHDATA, t1, T).await.unwrap();
        assert_eq!(hit.outcome, CacheOutcome::Hit);
        // 10 minutes later: 50 min left: too little for earthaccess, plenty for SDKs.
        let t2 = now + TimeDelta::minutes(10);
        let sdk = v.vend(request("alice"), SDK, t2, T).await.unwrap();
        assert_eq!(
            sdk.credentials.access_key_id,
            first.credentials.access_key_id
        );
        *sts.now.lock().unwrap() = t2;
        let fresh = v.vend(request("alice"), EARTHDATA, t2, T).await.unwrap();
        assert_eq!(fresh.outcome, CacheOutcome::Miss);
        assert_ne!(
            fresh.credentials.access_key_id,
            first.credentials.access_key_id
        );
        assert_eq!(sts.calls(), 2);
    }

    #[tokio::test]
    async fn errors_are_not_cached_and_sts_outages_fall_back_to_cached_credentials() {
        let now = Utc::now();
        let sts = Arc::new(FakeSts::new(now));
        let v = vendor(sts.clone());
        let first = v.vend(request("alice"), EARTHDATA, now, T).await.unwrap();
        *sts.fail.lock().unwrap() = Some(StsError::Unavailable("down".into()));
        // Past Earthdata's window but 40 min left: served as a fallback.
        let later = now + TimeDelta::minutes(20);
        let fallback = v.vend(request("alice"), EARTHDATA, later, T).await.unwrap();
        assert_eq!(fallback.outcome, CacheOutcome::Fallback);
        assert_eq!(
            fallback.credentials.access_key_id,
            first.credentials.access_key_id
        );
        // Under 15 minutes left: refused rather than handing out nearly expired credentials.
        let too_late = now + TimeDelta::minutes(50);
        assert!(v
            .vend(request("alice"), EARTHDATA, too_late, T)
            .await
            .is_err());
        // A user never seen: an error, and the error is not cached.
        assert!(v.vend(request("bob"), EARTHDATA, now, T).await.is_err());
        *sts.fail.lock().unwrap() = None;
        assert!(v.vend(request("bob"), EARTHDATA, now, T).await.is_ok());
    }

    #[tokio::test]
    async fn rejections_are_not_served_from_the_cache() {
        let now = Utc::now();
        let sts = Arc::new(FakeSts::new(now));
        let v = vendor(sts.clone());
        v.vend(request("alice"), EARTHDATA, now, T).await.unwrap();
        *sts.fail.lock().unwrap() = Some(StsError::Rejected {
            code: "AccessDenied".into(),
            message: "no".into(),
        });
        let later = now + TimeDelta::minutes(20);
        assert!(v.vend(request("alice"), EARTHDATA, later, T).await.is_err());
    }

    #[tokio::test]
    async fn different_users_and_policies_get_different_entries() {
        let now = Utc::now();
        let sts = Arc::new(FakeSts::new(now));
        let v = vendor(sts.clone());
        let a = v.vend(request("alice"), EARTHDATA, now, T).await.unwrap();
        let b = v.vend(request("bob"), EARTHDATA, now, T).await.unwrap();
        let mut other_policy = request("alice");
        other_policy.policy = Some("{\"x\":1}".into());
        let c = v.vend(other_policy, EARTHDATA, now, T).await.unwrap();
        // The same inline policy with managed policies, or with none at all, is another scope.
        let mut with_arns = request("alice");
        with_arns.policy_arns = vec!["arn:aws:iam::123456789012:policy/p".into()];
        let d = v.vend(with_arns, EARTHDATA, now, T).await.unwrap();
        let mut no_policy = request("alice");
        no_policy.policy = None;
        let e = v.vend(no_policy, EARTHDATA, now, T).await.unwrap();
        let mut empty_policy = request("alice");
        empty_policy.policy = Some(String::new());
        let f = v.vend(empty_policy, EARTHDATA, now, T).await.unwrap();
        let keys: std::collections::HashSet<_> = [&a, &b, &c, &d, &e, &f]
            .iter()
            .map(|x| x.credentials.access_key_id.clone())
            .collect();
        assert_eq!(keys.len(), 6);
        assert_eq!(sts.calls(), 6);
    }

    #[tokio::test]
    async fn a_hanging_sts_is_cut_off_by_the_timeout() {
        let now = Utc::now();
        let mut fake = FakeSts::new(now);
        fake.delay = Duration::from_secs(30);
        let v = vendor(Arc::new(fake));
        let started = std::time::Instant::now();
        let err = v
            .vend(request("alice"), EARTHDATA, now, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.is_transient());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
