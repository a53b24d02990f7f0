//! What stands between a cache miss and STS: a circuit breaker, a cap on concurrent
//! AssumeRole calls and a per-replica rate budget. When STS is down or hung, users without a
//! cached credential get a 503 with `Retry-After` at once instead of each waiting out the
//! timeout; one probe at a time finds out when STS is back. Cached users are never affected:
//! the guard is consulted only on a miss.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::sts::StsError;
use crate::config::{LimitSettings, StsSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is testing STS; everyone else is refused until it reports.
    HalfOpen,
}

/// The breaker's state as reported in metrics and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct GuardStats {
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    pub half_opened: AtomicU64,
    pub refused_open: AtomicU64,
    pub refused_in_flight: AtomicU64,
    pub refused_rate: AtomicU64,
    /// Fleet mode: refused by the fleet-wide budget on Redis.
    pub refused_fleet_rate: AtomicU64,
    /// Refused because the user has caused as many new credentials as one user may.
    pub refused_user_budget: AtomicU64,
}

pub struct StsGuard {
    state: Mutex<State>,
    failures_to_open: u32,
    probe_interval: Duration,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    budget: Option<DefaultDirectRateLimiter>,
    /// Each user's own share of the budget: new credentials per user (governor's keyed GCRA;
    /// users whose share has recovered are forgotten by `sweep`).
    per_user: Option<DefaultKeyedRateLimiter<Box<str>>>,
    /// The share's rate and burst, for the fleet-wide check (fleet mode).
    user_quota: Option<(u32, u32)>,
    pub stats: GuardStats,
}

/// Permission to make one AssumeRole call. Report the outcome with `record`; a ticket dropped
/// unreported (the request was cancelled) frees a probe slot for the next request.
pub struct Ticket<'a> {
    guard: &'a StsGuard,
    probe: bool,
    reported: bool,
    _permit: OwnedSemaphorePermit,
}

impl StsGuard {
    pub fn new(settings: &StsSettings, limits: &LimitSettings) -> Self {
        let budget = NonZeroU32::new(settings.max_calls_per_second)
            .map(|rate| RateLimiter::direct(Quota::per_second(rate)));
        let per_user = NonZeroU32::new(limits.user_new_credentials_per_minute).map(|rate| {
            let burst =
                NonZeroU32::new(limits.user_new_credentials_burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures_to_open: settings.breaker_failures.max(1),
            probe_interval: settings.breaker_probe_interval,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            max_in_flight: settings.max_in_flight,
            budget,
            per_user,
            user_quota: (limits.user_new_credentials_per_minute > 0).then_some((
                limits.user_new_credentials_per_minute,
                limits.user_new_credentials_burst,
            )),
            stats: GuardStats::default(),
        }
    }

    /// Each user's share (per minute, burst), when one is set.
    pub fn user_quota(&self) -> Option<(u32, u32)> {
        self.user_quota
    }

    /// Count a refusal by the fleet-wide share (fleet mode).
    pub fn count_user_refusal(&self) {
        self.stats
            .refused_user_budget
            .fetch_add(1, Ordering::Relaxed);
    }

    /// May `user` cause one more new credential now? Checked before anything else that an
    /// STS call takes (a fleet slot, the in-flight cap), so a user over their share uses
    /// none of what other users need.
    pub fn charge_user(&self, user: &str) -> Result<(), StsError> {
        let Some(limiter) = &self.per_user else {
            return Ok(());
        };
        let key: Box<str> = user.into();
        limiter.check_key(&key).map_err(|not_until| {
            self.stats
                .refused_user_budget
                .fetch_add(1, Ordering::Relaxed);
            StsError::UserBudget {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            }
        })
    }

    /// Forget users whose share has fully recovered (run periodically).
    pub fn sweep(&self) {
        if let Some(limiter) = &self.per_user {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    fn retry_after(&self) -> Duration {
        self.probe_interval.max(Duration::from_secs(1))
    }

    /// May a call go to STS now? Refusals are `StsError::Busy`, answered in microseconds.
    pub fn admit(&self) -> Result<Ticket<'_>, StsError> {
        let probe = {
            let mut state = self.state.lock().map_err(|_| StsError::Busy {
                reason: "circuit_open",
                retry_after: self.retry_after(),
            })?;
            match *state {
                State::Closed { .. } => false,
                State::Open { until } if Instant::now() >= until => {
                    *state = State::HalfOpen;
                    self.stats.half_opened.fetch_add(1, Ordering::Relaxed);
                    true
                }
                State::Open { until } => {
                    self.stats.refused_open.fetch_add(1, Ordering::Relaxed);
                    let left = until.saturating_duration_since(Instant::now());
                    return Err(StsError::Busy {
                        reason: "circuit_open",
                        retry_after: left.max(Duration::from_secs(1)),
                    });
                }
                State::HalfOpen => {
                    self.stats.refused_open.fetch_add(1, Ordering::Relaxed);
                    return Err(StsError::Busy {
                        reason: "circuit_open",
                        retry_after: self.retry_after(),
                    });
                }
            }
        };
        let ticket = |permit| Ticket {
            guard: self,
            probe,
            reported: false,
            _permit: permit,
        };
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.stats.refused_in_flight.fetch_add(1, Ordering::Relaxed);
            if probe {
                self.reopen();
            }
            return Err(StsError::Busy {
                reason: "too_many_in_flight",
                retry_after: Duration::from_secs(1),
            });
        };
        if let Some(budget) = &self.budget {
            if budget.check().is_err() {
                self.stats.refused_rate.fetch_add(1, Ordering::Relaxed);
                if probe {
                    self.reopen();
                }
                return Err(StsError::Busy {
                    reason: "rate_budget",
                    retry_after: Duration::from_secs(1),
                });
            }
        }
        Ok(ticket(permit))
    }

    fn reopen(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = State::Open {
                until: Instant::now(),
            };
        }
    }

    fn report(&self, probe: bool, transient_failure: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let next = match (*state, transient_failure) {
            (State::HalfOpen, false) if probe => State::Closed { failures: 0 },
            (State::HalfOpen, true) if probe => State::Open {
                until: Instant::now() + self.probe_interval,
            },
            (State::Closed { .. }, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 >= self.failures_to_open => {
                State::Open {
                    until: Instant::now() + self.probe_interval,
                }
            }
            (State::Closed { failures }, true) => State::Closed {
                failures: failures + 1,
            },
            // A call admitted before the breaker opened: its news is old.
            (other, _) => other,
        };
        match (*state, next) {
            (State::Closed { .. }, State::Open { .. }) | (State::HalfOpen, State::Open { .. }) => {
                if matches!(*state, State::Closed { .. }) {
                    self.stats.opened.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        failures = self.failures_to_open,
                        probe_in_s = self.probe_interval.as_secs(),
                        "STS circuit breaker opened: uncached requests are refused until a probe succeeds"
                    );
                }
            }
            (State::HalfOpen, State::Closed { .. }) => {
                self.stats.closed.fetch_add(1, Ordering::Relaxed);
                tracing::info!("STS circuit breaker closed: STS answers again");
            }
            _ => {}
        }
        *state = next;
    }

    pub fn state(&self) -> BreakerState {
        match self.state.lock().map(|s| *s) {
            Ok(State::Closed { .. }) => BreakerState::Closed,
            Ok(State::HalfOpen) => BreakerState::HalfOpen,
            Ok(State::Open { .. }) | Err(_) => BreakerState::Open,
        }
    }

    pub fn count_fleet_refusal(&self) {
        self.stats
            .refused_fleet_rate
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.in_flight.available_permits()
    }
}

impl Ticket<'_> {
    /// Report how the call went: only transient failures (timeouts, 5xx, throttling) count
    /// against STS; a refusal is STS answering. `Busy` was never sent (it missed its fleet
    /// budget slot): it says nothing about STS, as if the call had been cancelled.
    pub fn record(mut self, result: &Result<impl Sized, StsError>) {
        if matches!(result, Err(StsError::Busy { .. })) {
            return;
        }
        self.reported = true;
        let transient = matches!(result, Err(e) if e.is_transient());
        self.guard.report(self.probe, transient);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            // The probe was cancelled: let the next request probe instead.
            self.guard.reopen();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn guard(failures: u32, probe_s: u64, in_flight: usize, rate: u32) -> StsGuard {
        StsGuard {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures_to_open: failures,
            probe_interval: Duration::from_secs(probe_s),
            in_flight: Arc::new(Semaphore::new(in_flight)),
            max_in_flight: in_flight,
            budget: NonZeroU32::new(rate).map(|r| RateLimiter::direct(Quota::per_second(r))),
            per_user: None,
            user_quota: None,
            stats: GuardStats::default(),
        }
    }

    fn down() -> Result<(), StsError> {
        Err(StsError::Unavailable("timed out".into()))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_probes_once_and_closes_on_success() {
        let g = guard(3, 5, 10, 0);
        for _ in 0..2 {
            g.admit().unwrap().record(&down());
        }
        assert_eq!(g.state(), BreakerState::Closed);
        g.admit().unwrap().record(&down());
        assert_eq!(g.state(), BreakerState::Open);
        assert!(matches!(
            g.admit(),
            Err(StsError::Busy {
                reason: "circuit_open",
                ..
            })
        ));
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = g.admit().unwrap();
        assert_eq!(g.state(), BreakerState::HalfOpen);
        // Only one probe at a time.
        assert!(g.admit().is_err());
        probe.record(&Ok::<(), StsError>(()));
        assert_eq!(g.state(), BreakerState::Closed);
        assert!(g.admit().is_ok());
        assert_eq!(g.stats.opened.load(Ordering::Relaxed), 1);
        assert_eq!(g.stats.closed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_or_cancelled_probe_keeps_it_open() {
        let g = guard(1, 5, 10, 0);
        g.admit().unwrap().record(&down());
        tokio::time::advance(Duration::from_secs(5)).await;
        g.admit().unwrap().record(&down());
        assert_eq!(g.state(), BreakerState::Open);
        assert!(g.admit().is_err(), "a new probe interval starts");
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(g.admit().unwrap());
        assert_eq!(g.state(), BreakerState::Open);
        assert!(
            g.admit().is_ok(),
            "a cancelled probe frees the slot at once"
        );
    }

    #[tokio::test]
    async fn refusals_and_successes_reset_the_count() {
        let g = guard(2, 5, 10, 0);
        g.admit().unwrap().record(&down());
        g.admit().unwrap().record(&Err::<(), _>(StsError::Rejected {
            code: "AccessDenied".into(),
            message: String::new(),
        }));
        g.admit().unwrap().record(&down());
        assert_eq!(g.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn in_flight_cap_and_rate_budget_refuse_beyond_their_limits() {
        let g = guard(3, 5, 2, 0);
        let a = g.admit().unwrap();
        let _b = g.admit().unwrap();
        assert!(matches!(
            g.admit(),
            Err(StsError::Busy {
                reason: "too_many_in_flight",
                ..
            })
        ));
        drop(a);
        assert!(g.admit().is_ok());
        let g = guard(3, 5, 100, 5);
        let admitted = (0..20).filter(|_| g.admit().is_ok()).count();
        assert_eq!(admitted, 5);
        assert_eq!(g.stats.refused_rate.load(Ordering::Relaxed), 15);
    }
}
