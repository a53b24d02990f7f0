//! Per-client rate limits on work that unauthenticated requests make stsvend do at the IdP
//! (finishing a login, checking an unknown opaque token). Each such request costs a round
//! trip signed with the client secret; without a limit, anyone could make stsvend hammer the
//! IdP on their behalf. The limiter is governor's keyed GCRA; idle clients are forgotten by a
//! periodic sweep so memory stays bounded by the clients seen recently.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Settings;
use crate::error::ApiError;

/// Who may speak for clients in `X-Forwarded-For`: `network.trusted_proxies`, or any peer
/// with `server.trust_x_forwarded_for`.
pub fn proxies(settings: &Settings) -> crate::network::Proxies {
    crate::network::Proxies {
        trusted: settings.network.trusted_proxies.clone(),
        any: settings.server.trust_x_forwarded_for,
    }
}

pub struct IdpLimiter {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Login starts: no IdP call, but each hands out a sealed login state.
    starts: Option<DefaultKeyedRateLimiter<IpAddr>>,
    proxies: crate::network::Proxies,
}

impl IdpLimiter {
    pub fn new(settings: &Settings) -> Self {
        let limits = &settings.limits;
        let keyed = |per_minute: u32, burst: u32| {
            NonZeroU32::new(per_minute).map(|rate| {
                let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
                RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
            })
        };
        Self {
            limiter: keyed(limits.idp_requests_per_minute, limits.idp_burst),
            starts: keyed(limits.login_starts_per_minute, limits.login_start_burst),
            proxies: proxies(settings),
        }
    }

    pub fn client_ip(&self, req: &HttpRequest) -> IpAddr {
        self.proxies.client(req)
    }

    /// Ok when `client` may make one more IdP-bound request now; otherwise how long to wait.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        Self::check_in(self.limiter.as_ref(), client)
    }

    /// `check` for starting a login, as the 429 the client gets.
    pub fn check_login_start(&self, req: &HttpRequest) -> Result<(), ApiError> {
        Self::check_in(self.starts.as_ref(), self.client_ip(req)).map_err(too_many)
    }

    fn check_in(
        limiter: Option<&DefaultKeyedRateLimiter<IpAddr>>,
        client: IpAddr,
    ) -> Result<(), Duration> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// `check` for a request, as the 429 the client gets.
    pub fn check_request(&self, req: &HttpRequest) -> Result<(), ApiError> {
        self.check(self.client_ip(req)).map_err(too_many)
    }

    /// Forget clients whose limit has fully recovered (run periodically).
    pub fn sweep(&self) {
        for limiter in [&self.limiter, &self.starts].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    pub fn tracked_clients(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }
}

/// 429 `rate_limited` with `Retry-After` in whole seconds (at least 1).
pub fn too_many(wait: Duration) -> ApiError {
    too_many_as(
        wait,
        "rate_limited",
        "too many login or token checks from your address; wait and try again",
    )
}

/// 429 with this code and description, and `Retry-After` in whole seconds (at least 1).
pub fn too_many_as(wait: Duration, code: &'static str, description: &'static str) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let value = HeaderValue::from_str(&secs.max(1).to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("1"));
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, description)
        .with_header(header::RETRY_AFTER, value)
}
