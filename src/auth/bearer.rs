//! `Authorization: Bearer` tokens. JWTs are verified locally against the IdP's published keys
//! (algorithm allow-list, `iss`, `aud`, `exp`/`nbf` with leeway, all against the injected
//! clock); opaque tokens are checked at the userinfo endpoint when enabled. Verified tokens
//! are cached by their SHA-256 so the hot path does no RSA work.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::sync::Cache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::claims;
use super::discovery::Discovery;
use crate::config::OidcSettings;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: i64 = 60;
/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Even a long-lived token is re-verified this often, so a key the IdP withdrew stops working.
const VERIFIED_TTL: Duration = Duration::from_secs(3600);
/// Opaque tokens are re-checked at the IdP this often.
const OPAQUE_TTL: Duration = Duration::from_secs(300);

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
}

pub struct BearerVerifier {
    settings: OidcSettings,
    verified: Cache<[u8; 32], Arc<VerifiedToken>>,
    opaque: Cache<[u8; 32], Arc<VerifiedToken>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

impl BearerVerifier {
    pub fn new(settings: OidcSettings, max_entries: u64) -> Self {
        Self {
            settings,
            verified: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(VERIFIED_TTL)
                .build(),
            opaque: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(OPAQUE_TTL)
                .build(),
        }
    }

    pub async fn verify(
        &self,
        token: &str,
        discovery: &Discovery,
        http: &reqwest::Client,
        now: DateTime<Utc>,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES || !token.is_ascii() {
            return Err(TokenError::Malformed);
        }
        let key = digest(token);
        if !looks_like_jwt(token) {
            if !self.settings.accept_opaque_tokens {
                return Err(TokenError::Malformed);
            }
            if let Some(hit) = self.opaque.get(&key) {
                return Ok(hit);
            }
            let verified = Arc::new(self.check_opaque(token, discovery, http).await?);
            self.opaque.insert(key, verified.clone());
            return Ok(verified);
        }
        if let Some(hit) = self.verified.get(&key) {
            // Cached tokens still expire on time.
            let live = hit
                .expires_at
                .is_none_or(|exp| now <= exp + TimeDelta::seconds(LEEWAY_SECONDS));
            return if live {
                Ok(hit)
            } else {
                Err(TokenError::Expired)
            };
        }
        let verified = Arc::new(self.verify_jwt(token, discovery, http, now).await?);
        self.verified.insert(key, verified.clone());
        Ok(verified)
    }

    async fn verify_jwt(
        &self,
        token: &str,
        discovery: &Discovery,
        http: &reqwest::Client,
        now: DateTime<Utc>,
    ) -> Result<VerifiedToken, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if !ALLOWED.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let provider = discovery.provider().ok_or(TokenError::NotReady)?;
        let mut jwk = find_key(&provider.keys, header.kid.as_deref()).cloned();
        if jwk.is_none() && discovery.refresh_keys(http).await {
            if let Some(fresh) = discovery.provider() {
                jwk = find_key(&fresh.keys, header.kid.as_deref()).cloned();
            }
        }
        let jwk = jwk.ok_or(TokenError::UnknownKey)?;
        // A key that names its algorithm may only be used with that algorithm.
        if let Some(key_alg) = jwk.common.key_algorithm {
            if format!("{key_alg:?}") != format!("{:?}", header.alg) {
                return Err(TokenError::Algorithm);
            }
        }
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| TokenError::UnknownKey)?;

        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.settings.issuer.as_str()]);
        validation.set_audience(&self.settings.audiences);
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
        let claims = data.claims;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        if now > exp + TimeDelta::seconds(LEEWAY_SECONDS) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_i64()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .ok_or(TokenError::Malformed)?;
            if now + TimeDelta::seconds(LEEWAY_SECONDS) < nbf {
                return Err(TokenError::NotYetValid);
            }
        }
        self.identity(&claims, Some(exp))
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
        })
    }

    async fn check_opaque(
        &self,
        token: &str,
        discovery: &Discovery,
        http: &reqwest::Client,
    ) -> Result<VerifiedToken, TokenError> {
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
        let claims: Map<String, Value> = res.json().await.map_err(|_| TokenError::Rejected)?;
        self.identity(&claims, None)
    }
}

fn find_key<'a>(
    keys: &'a jsonwebtoken::jwk::JwkSet,
    kid: Option<&str>,
) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(kid) => keys.find(kid),
        // Without a kid, only an unambiguous single key will do.
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
}
