//! `Authorization: Bearer` tokens. JWTs are verified locally against the IdP's published keys
//! (algorithm allow-list, `iss`, `aud`, `exp`/`nbf` with leeway, all against the injected
//! clock); opaque tokens are checked at the userinfo endpoint when enabled. Verified tokens
//! are cached under the whole token so the hot path does no RSA work.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::sync::Cache;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::claims;
use super::discovery::{find_key, Discovery};
use crate::config::{OidcSettings, Platform};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: i64 = 60;
/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Even a long-lived token is re-verified this often, so a key the IdP withdrew stops working.
const VERIFIED_TTL: Duration = Duration::from_secs(3600);
/// Opaque tokens are re-checked at the IdP this often.
const OPAQUE_TTL: Duration = Duration::from_secs(300);
/// A token the IdP refused is refused again without asking for this long, so replaying a
/// bad token cannot make stsvend call the IdP on every request.
const REJECTED_TTL: Duration = Duration::from_secs(60);

/// Asymmetric algorithms only: never `none`, never HMAC (a public key is not a secret).
const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the bearer token is malformed")]
    Malformed,
    #[error("the bearer token's signing algorithm is not accepted")]
    Algorithm,
    #[error("the bearer token was signed with a key the identity provider does not publish")]
    UnknownKey,
    #[error("the bearer token's signature does not verify")]
    Signature,
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token is not valid yet")]
    NotYetValid,
    #[error("the bearer token was issued by another identity provider")]
    Issuer,
    #[error("the bearer token was issued for another audience")]
    Audience,
    #[error("the bearer token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("the identity provider does not accept the bearer token")]
    Rejected,
    #[error("the identity provider could not be reached to check the token")]
    IdpUnavailable,
    #[error("the identity provider has not been discovered yet")]
    NotReady,
    #[error("too many token checks from this address")]
    RateLimited(Duration),
    #[error("the bearer token is not an access token (an ID token, or a `typ` this service does not accept); send an access token")]
    NotAccessToken,
    #[error("the bearer token is older than {0} seconds and the identity provider would not confirm your groups; get a new token")]
    GroupsStale(u64),
}

impl TokenError {
    /// Errors that are about the service, not the token: 503, not 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::IdpUnavailable | Self::NotReady)
    }
}

/// A token stsvend has verified.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub user_id: String,
    pub groups: Vec<String>,
    /// When the token stops being accepted (None: an opaque token, re-checked periodically).
    pub expires_at: Option<DateTime<Utc>>,
    /// When the IdP issued it (`iat`); None when it does not say, or for opaque tokens
    /// (whose groups are re-read at every re-check).
    pub issued_at: Option<DateTime<Utc>>,
    /// The user id and the groups this deployment's rules mention, as requests carry them;
    /// worked out at the first request and shared by every later one with this token.
    pub principal: std::sync::OnceLock<(Arc<str>, Arc<[String]>)>,
    /// The key it was verified with (JWTs only): a cached verification holds only while the
    /// IdP still publishes that key.
    pub kid: Option<String>,
    /// The platform whose client the token was issued to (`[[platforms]]`): the user acts
    /// through it.
    pub via: Option<Arc<str>>,
}

/// A verified token's groups: young enough (or re-read recently enough) to trust, or to be
/// read again at the IdP.
enum Standing {
    Fresh(Arc<VerifiedToken>),
    Stale(Arc<VerifiedToken>),
}

pub struct BearerVerifier {
    settings: OidcSettings,
    /// Platforms whose clients' tokens are accepted as their users' (`[[platforms]]`).
    platforms: Vec<Platform>,
    /// This service's audiences and every platform's client id: what `aud` may name.
    audiences: Vec<String>,
    /// Keyed by the whole token: a hit compares it byte for byte, so the cheap seeded hash
    /// moka buckets by is only a lookup aid (a collision is a miss, never a wrong user).
    verified: TokenCache,
    opaque: Cache<[u8; 32], Arc<VerifiedToken>>,
    rejected: Cache<[u8; 32], TokenError>,
    /// Groups re-read at userinfo for JWTs older than `groups_max_age` (Earthdata's user
    /// tokens live for weeks, so this is the hot path of most scripts): keyed like `verified`.
    regrouped: TokenCache,
}

/// A token as a cache key: its text, hashed and compared as bytes, so a request's header is
/// looked up before it is read as text (a hit is, byte for byte, a token verified before).
#[derive(Clone, PartialEq, Eq)]
struct TokenKey(Arc<str>);

impl std::hash::Hash for TokenKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_token(self.0.as_bytes(), state);
    }
}

/// A token looked up by its bytes.
struct TokenBytes<'a>(&'a [u8]);

impl std::hash::Hash for TokenBytes<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_token(self.0, state);
    }
}

impl quick_cache::Equivalent<TokenKey> for TokenBytes<'_> {
    fn equivalent(&self, key: &TokenKey) -> bool {
        key.0.as_bytes() == self.0
    }
}

/// A token's length and last 64 bytes: a JWT's signature, which differs from token to token
/// (it signs the rest), so the hash spreads tokens as the whole token would at a tenth of the
/// cost. Only a lookup aid: a hit compares the whole token. Tokens enter the cache only once
/// verified, so no one can fill a bucket with tokens that share a tail.
fn hash_token<H: std::hash::Hasher>(token: &[u8], state: &mut H) {
    state.write_usize(token.len());
    state.write(&token[token.len().saturating_sub(64)..]);
}

/// A verification and until when it is trusted (None: for good).
/// A verification, until when it is trusted (None: for good), when its groups may be taken
/// as they are, and where the IdP's keys stood when it was made ([`Discovery::generation`]).
type TrustedUntil = (Arc<VerifiedToken>, Option<DateTime<Utc>>, FreshWindow, u64);

/// When a verified token may be taken with its own groups without a second look: from `.0` to
/// `.1` it has not expired (with the leeway) and its groups are young enough. Worked out
/// once, when the token is stored, so a request compares two instants. None: never on its
/// own (no `iat`: see `standing`).
type FreshWindow = Option<(DateTime<Utc>, DateTime<Utc>)>;

/// Verified tokens by the whole token, each trusted for `ttl` from when it was stored (by
/// the injected clock). Read on every bearer request: a lookup is a hash of the token, one
/// shard's read lock and a comparison (moka's bookkeeping per read cost more than that).
/// When full, the least used go first (S3-FIFO), so a flood of new tokens cannot evict the
/// ones in use.
struct TokenCache {
    entries: quick_cache::sync::Cache<
        TokenKey,
        TrustedUntil,
        quick_cache::UnitWeighter,
        foldhash::fast::RandomState,
    >,
    ttl: TimeDelta,
}

impl TokenCache {
    fn new(max_entries: u64, ttl: Duration) -> Self {
        // The table starts small and grows with use: sized for `max_entries` at once, it
        // would take its memory before the first token.
        let items = usize::try_from(max_entries)
            .unwrap_or(usize::MAX)
            .clamp(1, 1024);
        Self {
            entries: quick_cache::sync::Cache::with(
                items,
                max_entries.max(1),
                quick_cache::UnitWeighter,
                foldhash::fast::RandomState::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            ),
            ttl: TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX),
        }
    }

    fn get(&self, token: &[u8], now: DateTime<Utc>) -> Option<Arc<VerifiedToken>> {
        self.entry(token, now).map(|(hit, _, _)| hit)
    }

    fn entry(
        &self,
        token: &[u8],
        now: DateTime<Utc>,
    ) -> Option<(Arc<VerifiedToken>, FreshWindow, u64)> {
        let (hit, until, window, keys) = self.entries.get(&TokenBytes(token))?;
        if until.is_some_and(|until| now > until) {
            self.entries.remove(&TokenBytes(token));
            return None;
        }
        Some((hit, window, keys))
    }

    fn insert(
        &self,
        token: &str,
        verified: Arc<VerifiedToken>,
        window: FreshWindow,
        keys: u64,
        now: DateTime<Utc>,
    ) {
        // Trusted until then (None: a TTL beyond chrono's range, so for good).
        let until = now.checked_add_signed(self.ttl);
        self.entries
            .insert(TokenKey(Arc::from(token)), (verified, until, window, keys));
    }
}

/// Whether the caller may make stsvend send one more request to the IdP now (the per-client
/// limit on unauthenticated IdP-bound work); Err carries how long to wait. Called only when
/// a request would reach the IdP, so cached tokens never pay for it.
pub type IdpPermit<'a> = &'a dyn Fn() -> Result<(), Duration>;

/// The key of a token in the caches other than the verified one (opaque tokens, refusals,
/// re-read groups): BLAKE3, collision resistant, so a hit is the same token without keeping
/// the token itself (a flood of bad 16 KiB tokens must not fill memory).
fn digest(token: &str) -> [u8; 32] {
    blake3::hash(token.as_bytes()).into()
}

/// Non-empty, at most `MAX_TOKEN_BYTES`, ASCII: anything else is refused before parsing.
fn plausible(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_BYTES && token.is_ascii()
}

/// A JWT's header, if it parses and names an allowed algorithm.
fn checked_header(token: &str) -> Result<jsonwebtoken::Header, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if ALLOWED.contains(&header.alg) {
        Ok(header)
    } else {
        Err(TokenError::Algorithm)
    }
}

// Claims meet durations here only, with checked arithmetic: an IdP-signed `exp` or `iat` at
// the end of chrono's range must be a verdict, not a panic.

/// Past `exp` by more than the leeway (an `exp` too late to add the leeway to never is).
pub fn expired(exp: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    exp.checked_add_signed(TimeDelta::seconds(LEEWAY_SECONDS))
        .is_some_and(|limit| now > limit)
}

/// Before `nbf`, beyond the leeway.
pub fn not_yet_valid(nbf: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now.checked_add_signed(TimeDelta::seconds(LEEWAY_SECONDS))
        .is_none_or(|limit| limit < nbf)
}

/// Groups issued at `iat` are young enough to trust: at most `max_age` old, and not from
/// the future beyond the leeway (a clock far ahead must not make them trusted forever).
pub fn groups_fresh(iat: DateTime<Utc>, now: DateTime<Utc>, max_age: Duration) -> bool {
    let max_age = TimeDelta::from_std(max_age).unwrap_or(TimeDelta::MAX);
    let age = now.signed_duration_since(iat);
    age <= max_age && age >= TimeDelta::seconds(-LEEWAY_SECONDS)
}

/// When a token issued at `iat` and expiring at `exp` is usable with its own groups:
/// [`expired`] and [`groups_fresh`] as two instants (an end beyond chrono's range is no end).
fn fresh_window(
    iat: Option<DateTime<Utc>>,
    exp: Option<DateTime<Utc>>,
    max_age: Duration,
) -> FreshWindow {
    let iat = iat?;
    let leeway = TimeDelta::seconds(LEEWAY_SECONDS);
    let max_age = TimeDelta::from_std(max_age).unwrap_or(TimeDelta::MAX);
    let groups_until = iat.checked_add_signed(max_age);
    let usable_until = exp.and_then(|exp| exp.checked_add_signed(leeway));
    let to = [groups_until, usable_until]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let from = iat
        .checked_sub_signed(leeway)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    Some((from, to))
}

fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

impl BearerVerifier {
    pub fn new(settings: OidcSettings, platforms: Vec<Platform>, max_entries: u64) -> Self {
        let audiences = settings
            .audiences
            .iter()
            .cloned()
            .chain(platforms.iter().map(|p| p.client_id.clone()))
            .collect();
        Self {
            platforms,
            audiences,
            verified: TokenCache::new(max_entries, VERIFIED_TTL),
            opaque: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(OPAQUE_TTL)
                .build(),
            rejected: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(REJECTED_TTL)
                .build(),
            regrouped: TokenCache::new(max_entries, settings.groups_max_age),
            settings,
        }
    }

    pub async fn verify(
        &self,
        token: &str,
        discovery: &Discovery,
        http: &reqwest::Client,
        now: DateTime<Utc>,
        permit: IdpPermit<'_>,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        // A token verified before is taken as it is: the lookup compares it whole.
        if let Some((hit, _)) = self.cached(token.as_bytes(), discovery, now) {
            return match self.standing(token, hit, now)? {
                Standing::Fresh(hit) => Ok(hit),
                Standing::Stale(hit) => {
                    Box::pin(self.regroup(token, hit, discovery, http, permit, now)).await
                }
            };
        }
        // Verifying (and the IdP calls it may need) makes a large future: boxed, so that a
        // cached token's future stays small.
        Box::pin(self.verify_uncached(token, discovery, http, now, permit)).await
    }

    async fn verify_uncached(
        &self,
        token: &str,
        discovery: &Discovery,
        http: &reqwest::Client,
        now: DateTime<Utc>,
        permit: IdpPermit<'_>,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        if !plausible(token) {
            return Err(TokenError::Malformed);
        }
        if !looks_like_jwt(token) {
            if !self.settings.accept_opaque_tokens {
                return Err(TokenError::Malformed);
            }
            let key = digest(token);
            if let Some(hit) = self.opaque.get(&key) {
                return Ok(hit);
            }
            if let Some(e) = self.rejected.get(&key) {
                return Err(e);
            }
            permit().map_err(TokenError::RateLimited)?;
            let checked = self.check_opaque(token, discovery, http).await;
            return self.remember(key, checked, Some(&self.opaque));
        }
        let key = digest(token);
        // Only misses consult the refusals: the hot path is one cache lookup.
        if let Some(e) = self.rejected.get(&key) {
            return Err(e);
        }
        // Read before the keys the token is checked against (see `still_publishes`).
        let keys = discovery.generation();
        let checked = self.verify_jwt(token, discovery, http, now).await;
        let verified = self.remember(key, checked, None)?;
        let window = self.fresh_window(&verified);
        self.verified
            .insert(token, verified.clone(), window, keys, now);
        match self.standing(token, verified, now)? {
            Standing::Fresh(verified) => Ok(verified),
            Standing::Stale(verified) => {
                self.regroup(token, verified, discovery, http, permit, now)
                    .await
            }
        }
    }

    /// A verified JWT, if this exact token was verified before with a key the IdP still
    /// publishes (a key the IdP withdrew takes its tokens with it, cached or not).
    fn cached(
        &self,
        token: &[u8],
        discovery: &Discovery,
        now: DateTime<Utc>,
    ) -> Option<(Arc<VerifiedToken>, FreshWindow)> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        self.verified
            .entry(token, now)
            .filter(|(hit, _, keys)| discovery.still_publishes(hit.kid.as_deref(), *keys))
            .map(|(hit, window, _)| (hit, window))
    }

    /// The verification of a token sent before whose groups may still be trusted, looked up
    /// by the header's bytes before they are read as text; None sends the request the whole
    /// way ([`Self::verify`]), which also tells an expired token from an unknown one.
    pub fn fresh(
        &self,
        token: &[u8],
        discovery: &Discovery,
        now: DateTime<Utc>,
    ) -> Option<Arc<VerifiedToken>> {
        let (hit, window) = self.cached(token, discovery, now)?;
        // Within its window: not expired, and its own groups young enough.
        if window.is_some_and(|(from, to)| from <= now && now <= to) {
            return Some(hit);
        }
        if hit.expires_at.is_some_and(|exp| expired(exp, now)) {
            return None;
        }
        self.regrouped.get(token, now)
    }

    fn fresh_window(&self, v: &VerifiedToken) -> FreshWindow {
        fresh_window(v.issued_at, v.expires_at, self.settings.groups_max_age)
    }

    /// A verified JWT as it stands now: an error when it has expired; `Fresh` with its own
    /// groups, or with groups re-read at the IdP within `groups_max_age`; otherwise `Stale`,
    /// to be read again ([`Self::regroup`]).
    fn standing(
        &self,
        token: &str,
        verified: Arc<VerifiedToken>,
        now: DateTime<Utc>,
    ) -> Result<Standing, TokenError> {
        // Cached tokens still expire on time.
        if verified.expires_at.is_some_and(|exp| expired(exp, now)) {
            return Err(TokenError::Expired);
        }
        if verified
            .issued_at
            .is_some_and(|iat| groups_fresh(iat, now, self.settings.groups_max_age))
        {
            return Ok(Standing::Fresh(verified));
        }
        Ok(match self.regrouped.get(token.as_bytes(), now) {
            Some(regrouped) => Standing::Fresh(regrouped),
            None => Standing::Stale(verified),
        })
    }

    /// The token's groups read again at the IdP (remembered for `groups_max_age`).
    async fn regroup(
        &self,
        token: &str,
        verified: Arc<VerifiedToken>,
        discovery: &Discovery,
        http: &reqwest::Client,
        permit: IdpPermit<'_>,
        now: DateTime<Utc>,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        // Refused at the last re-read (a disabled account, removed groups): the token stays in
        // the verified cache, so its refusal is remembered here, not asked again.
        let key = digest(token);
        if let Some(e) = self.rejected.get(&key) {
            return Err(e);
        }
        // The groups in the token are older than we may trust: read them again at the IdP.
        permit().map_err(TokenError::RateLimited)?;
        let fresh = match self.userinfo(token, discovery, http).await {
            Ok(info)
                if claims::user_id(&info, &self.settings.user_id_claim).as_deref()
                    == Some(verified.user_id.as_str()) =>
            {
                Ok(VerifiedToken {
                    groups: claims::groups(&info, &self.settings.groups_claim).unwrap_or_default(),
                    // The groups changed: worked out afresh.
                    principal: std::sync::OnceLock::new(),
                    ..(*verified).clone()
                })
            }
            Ok(_) | Err(TokenError::Rejected) => Err(TokenError::GroupsStale(
                self.settings.groups_max_age.as_secs(),
            )),
            Err(e) => Err(e),
        };
        let fresh = self.remember(key, fresh, None)?;
        self.regrouped.insert(token, fresh.clone(), None, 0, now);
        Ok(fresh)
    }

    /// Cache a verdict: successes in `ok` (if given), refusals (not outages) in the rejected
    /// cache.
    fn remember(
        &self,
        key: [u8; 32],
        verdict: Result<VerifiedToken, TokenError>,
        ok: Option<&Cache<[u8; 32], Arc<VerifiedToken>>>,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        match verdict {
            Ok(v) => {
                let v = Arc::new(v);
                if let Some(ok) = ok {
                    ok.insert(key, v.clone());
                }
                Ok(v)
            }
            Err(e) => {
                // A key unknown now may be published at the next refresh: not remembered.
                if !e.is_unavailable()
                    && !matches!(e, TokenError::RateLimited(_) | TokenError::UnknownKey)
                {
                    self.rejected.insert(key, e.clone());
                }
                Err(e)
            }
        }
    }

    async fn verify_jwt(
        &self,
        token: &str,
        discovery: &Discovery,
        http: &reqwest::Client,
        now: DateTime<Utc>,
    ) -> Result<VerifiedToken, TokenError> {
        let header = checked_header(token)?;
        let provider = discovery.provider().ok_or(TokenError::NotReady)?;
        let mut jwk = find_key(&provider.keys, header.kid.as_deref()).cloned();
        if jwk.is_none() && discovery.refresh_keys(http).await {
            if let Some(fresh) = discovery.provider() {
                jwk = find_key(&fresh.keys, header.kid.as_deref()).cloned();
            }
        }
        let jwk = jwk.ok_or(TokenError::UnknownKey)?;
        self.check_signed(token, &header, &jwk, now)
    }

    /// Verify a JWT against a fixed key set, without fetching anything: the whole of bearer
    /// verification that outside bytes reach (the fuzz targets drive it).
    pub fn verify_with_keys(
        &self,
        token: &str,
        keys: &jsonwebtoken::jwk::JwkSet,
        now: DateTime<Utc>,
    ) -> Result<VerifiedToken, TokenError> {
        if !plausible(token) {
            return Err(TokenError::Malformed);
        }
        let header = checked_header(token)?;
        let jwk = find_key(keys, header.kid.as_deref()).ok_or(TokenError::UnknownKey)?;
        self.check_signed(token, &header, jwk, now)
    }

    fn check_signed(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        jwk: &jsonwebtoken::jwk::Jwk,
        now: DateTime<Utc>,
    ) -> Result<VerifiedToken, TokenError> {
        // A key that names its algorithm may only be used with that algorithm.
        if let Some(key_alg) = jwk.common.key_algorithm {
            if format!("{key_alg:?}") != format!("{:?}", header.alg) {
                return Err(TokenError::Algorithm);
            }
        }
        // Access tokens only: an ID token issued to this client would otherwise pass the
        // audience check.
        let typ = crate::config::token_type(header.typ.as_deref());
        if !self.settings.bearer_token_types.contains(&typ) {
            return Err(TokenError::NotAccessToken);
        }
        let decoding = DecodingKey::from_jwk(jwk).map_err(|_| TokenError::UnknownKey)?;

        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.settings.issuer.as_str()]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // Time is checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;

        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature => TokenError::Signature,
                    ErrorKind::InvalidIssuer => TokenError::Issuer,
                    ErrorKind::InvalidAudience => TokenError::Audience,
                    ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        TokenError::Algorithm
                    }
                    _ => TokenError::Malformed,
                }
            })?;
        let mut verified = self.check_claims(&data.claims, now)?;
        verified.kid = header.kid.clone();
        Ok(verified)
    }

    /// The claims of a token whose signature, issuer and audience were checked: its times
    /// against `now`, and who it names (the fuzz target `claims` drives this with any JSON).
    pub fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<VerifiedToken, TokenError> {
        // What only ID tokens carry (OIDC Core §2, §3.1.3.6, §3.3.2.11).
        if ["nonce", "at_hash", "c_hash"]
            .iter()
            .any(|c| claims.contains_key(*c))
        {
            return Err(TokenError::NotAccessToken);
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        if expired(exp, now) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_i64()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .ok_or(TokenError::Malformed)?;
            if not_yet_valid(nbf, now) {
                return Err(TokenError::NotYetValid);
            }
        }
        let issued_at = claims
            .get("iat")
            .and_then(Value::as_i64)
            .and_then(|s| DateTime::from_timestamp(s, 0));
        let mut verified = self.identity(claims, Some(exp))?;
        verified.issued_at = issued_at;
        verified.via = self.platform_of(claims);
        Ok(verified)
    }

    fn platform(&self, client_id: &str) -> Option<Arc<str>> {
        self.platforms
            .iter()
            .find(|p| p.client_id == client_id)
            .map(|p| p.name.as_str().into())
    }

    /// The platform a token was issued to: its client (`azp`, or RFC 9068's `client_id`) is
    /// a platform's, or its audience names a platform and not this service. None: the
    /// user's own token (its audience was checked to be this service's or a platform's).
    fn platform_of(&self, claims: &Map<String, Value>) -> Option<Arc<str>> {
        if self.platforms.is_empty() {
            return None;
        }
        let by_client = ["azp", "client_id"]
            .iter()
            .filter_map(|c| claims.get(*c)?.as_str())
            .find_map(|id| self.platform(id));
        if by_client.is_some() {
            return by_client;
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if audiences
            .iter()
            .any(|a| self.settings.audiences.iter().any(|ours| ours == a))
        {
            return None;
        }
        audiences.iter().find_map(|a| self.platform(a))
    }

    /// The user id and groups of verified claims.
    fn identity(
        &self,
        claims: &Map<String, Value>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<VerifiedToken, TokenError> {
        let user_id = claims::user_id(claims, &self.settings.user_id_claim)
            .ok_or_else(|| TokenError::MissingClaim(self.settings.user_id_claim.clone()))?;
        let groups = claims::groups(claims, &self.settings.groups_claim).unwrap_or_default();
        Ok(VerifiedToken {
            user_id,
            groups,
            expires_at,
            issued_at: None,
            principal: std::sync::OnceLock::new(),
            kid: None,
            via: None,
        })
    }

    /// An opaque token: introspection (RFC 7662) proves it is active and was issued to this
    /// client; groups come from introspection or, failing that, userinfo. Without an
    /// introspection endpoint only the explicitly unsafe userinfo-only check remains.
    async fn check_opaque(
        &self,
        token: &str,
        discovery: &Discovery,
        http: &reqwest::Client,
    ) -> Result<VerifiedToken, TokenError> {
        let provider = discovery.provider().ok_or(TokenError::NotReady)?;
        let introspection = provider
            .metadata
            .additional_metadata()
            .introspection_endpoint
            .clone();
        let Some(endpoint) = introspection else {
            if !self.settings.unsafe_opaque_tokens_via_userinfo {
                tracing::warn!(
                    "an opaque bearer token was refused: the IdP offers no introspection endpoint (set oidc.unsafe_opaque_tokens_via_userinfo to accept tokens userinfo accepts, issued to any client)"
                );
                return Err(TokenError::Rejected);
            }
            let info = self.userinfo(token, discovery, http).await?;
            return self.identity(&info, None);
        };
        let mut form = vec![("token", token), ("token_type_hint", "access_token")];
        let mut req = http.post(endpoint).header("accept", "application/json");
        match &self.settings.client_secret {
            Some(secret) => {
                req = req.basic_auth(&self.settings.client_id, Some(secret.expose_secret()));
            }
            None => form.push(("client_id", &self.settings.client_id)),
        }
        let res = req
            .form(&form)
            .send()
            .await
            .map_err(|_| TokenError::IdpUnavailable)?;
        if !res.status().is_success() {
            tracing::warn!(status = res.status().as_u16(), "token introspection failed");
            return Err(if res.status().is_server_error() {
                TokenError::IdpUnavailable
            } else {
                TokenError::Rejected
            });
        }
        let answer: Map<String, Value> =
            res.json().await.map_err(|_| TokenError::IdpUnavailable)?;
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err(TokenError::Rejected);
        }
        if !self.issued_to_us(&answer) {
            return Err(TokenError::Audience);
        }
        let mut verified = self.identity(&answer, None)?;
        verified.via = self.platform_of(&answer);
        if claims::groups(&answer, &self.settings.groups_claim).is_none() {
            let info = self.userinfo(token, discovery, http).await?;
            if claims::user_id(&info, &self.settings.user_id_claim).as_deref()
                != Some(verified.user_id.as_str())
            {
                return Err(TokenError::Rejected);
            }
            verified.groups =
                claims::groups(&info, &self.settings.groups_claim).unwrap_or_default();
        }
        Ok(verified)
    }

    /// An introspection answer names this client as the token's `client_id`, or one of the
    /// accepted audiences in `aud`.
    fn issued_to_us(&self, answer: &Map<String, Value>) -> bool {
        let client = answer.get("client_id").and_then(Value::as_str);
        let audiences: Vec<&str> = match answer.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        client == Some(self.settings.client_id.as_str())
            || client.is_some_and(|c| self.platform(c).is_some())
            || audiences
                .iter()
                .any(|a| self.audiences.iter().any(|ours| ours == a))
    }

    /// The userinfo endpoint's claims for `token`.
    async fn userinfo(
        &self,
        token: &str,
        discovery: &Discovery,
        http: &reqwest::Client,
    ) -> Result<Map<String, Value>, TokenError> {
        let provider = discovery.provider().ok_or(TokenError::NotReady)?;
        let endpoint = provider
            .metadata
            .userinfo_endpoint()
            .ok_or(TokenError::Rejected)?
            .url()
            .clone();
        let res = http
            .get(endpoint)
            .bearer_auth(token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|_| TokenError::IdpUnavailable)?;
        match res.status().as_u16() {
            200 => {}
            400 | 401 | 403 => return Err(TokenError::Rejected),
            _ => return Err(TokenError::IdpUnavailable),
        }
        res.json().await.map_err(|_| TokenError::Rejected)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The window decides as `expired` and `groups_fresh` do, at and around every edge.
    #[test]
    fn the_fresh_window_is_expired_and_groups_fresh_as_two_instants() {
        use chrono::TimeZone;
        let base = Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap();
        let s = |n: i64| base + TimeDelta::seconds(n);
        let ms = |n: i64| base + TimeDelta::milliseconds(n);
        let max_age = Duration::from_secs(600);
        let iats = [None, Some(s(0)), Some(s(-5000)), Some(s(500))];
        let exps = [
            None,
            Some(s(300)),
            Some(s(900)),
            Some(DateTime::<Utc>::MAX_UTC),
        ];
        let mut nows: Vec<DateTime<Utc>> = Vec::new();
        for edge in [
            -61, -60, -59, 0, 299, 300, 359, 360, 361, 599, 600, 601, 959, 960, 961,
        ] {
            nows.extend([s(edge), ms(edge * 1000 - 1), ms(edge * 1000 + 1)]);
        }
        for iat in iats {
            for exp in exps {
                let window = fresh_window(iat, exp, max_age);
                for &now in &nows {
                    let by_window = window.is_some_and(|(from, to)| from <= now && now <= to);
                    let by_rules = !exp.is_some_and(|e| expired(e, now))
                        && iat.is_some_and(|i| groups_fresh(i, now, max_age));
                    assert_eq!(by_window, by_rules, "iat {iat:?} exp {exp:?} now {now}");
                }
            }
        }
    }
}
