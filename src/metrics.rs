//! Prometheus metrics at `GET /metrics` (when `server.metrics = true`): HTTP request counts
//! and latencies by route pattern (actix-web-prom), plus credential cache hits, misses and
//! fallbacks, AssumeRole calls and cached credentials, read from the vendor at scrape time.

use std::sync::Arc;

use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::vend::guard::BreakerState;

use crate::vend::cache::Vendor;

struct VendCollector {
    vendor: Arc<Vendor>,
    hits: IntCounter,
    misses: IntCounter,
    fallbacks: IntCounter,
    sts_calls: IntCounter,
    cached: IntGauge,
    log_dropped: IntCounter,
    breaker_state: IntGaugeVec,
    breaker_transitions: IntCounterVec,
    sts_refused: IntCounterVec,
    sts_in_flight: IntGauge,
}

impl VendCollector {
    fn new(vendor: Arc<Vendor>) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| IntCounter::with_opts(Opts::new(name, help));
        Ok(Self {
            vendor,
            hits: counter(
                "stsvend_credential_cache_hits_total",
                "Credential requests served from the cache",
            )?,
            misses: counter(
                "stsvend_credential_cache_misses_total",
                "Credential requests that needed an AssumeRole",
            )?,
            fallbacks: counter(
                "stsvend_credential_cache_fallbacks_total",
                "Cached credentials served because STS was unavailable",
            )?,
            sts_calls: counter(
                "stsvend_sts_assume_role_calls_total",
                "AssumeRole calls sent to STS",
            )?,
            cached: IntGauge::with_opts(Opts::new(
                "stsvend_credentials_cached",
                "Credentials held in the cache",
            ))?,
            log_dropped: counter(
                "stsvend_log_lines_dropped_total",
                "Log lines dropped because the log queue was full",
            )?,
            breaker_state: IntGaugeVec::new(
                Opts::new(
                    "stsvend_sts_breaker_state",
                    "1 for the STS circuit breaker's current state (closed, open, half_open)",
                ),
                &["state"],
            )?,
            breaker_transitions: IntCounterVec::new(
                Opts::new(
                    "stsvend_sts_breaker_transitions_total",
                    "STS circuit breaker transitions, by the state entered",
                ),
                &["to"],
            )?,
            sts_refused: IntCounterVec::new(
                Opts::new(
                    "stsvend_sts_calls_refused_total",
                    "AssumeRole calls not attempted, by reason",
                ),
                &["reason"],
            )?,
            sts_in_flight: IntGauge::with_opts(Opts::new(
                "stsvend_sts_calls_in_flight",
                "AssumeRole calls in flight",
            ))?,
        })
    }

    fn set(counter: &IntCounter, value: u64) {
        counter.reset();
        counter.inc_by(value);
    }
}

impl Collector for VendCollector {
    fn desc(&self) -> Vec<&Desc> {
        [
            self.hits.desc(),
            self.misses.desc(),
            self.fallbacks.desc(),
            self.sts_calls.desc(),
            self.cached.desc(),
            self.log_dropped.desc(),
            self.breaker_state.desc(),
            self.breaker_transitions.desc(),
            self.sts_refused.desc(),
            self.sts_in_flight.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &self.vendor.stats;
        Self::set(&self.hits, stats.hits.load(Relaxed));
        Self::set(&self.misses, stats.misses.load(Relaxed));
        Self::set(&self.fallbacks, stats.fallbacks.load(Relaxed));
        Self::set(&self.sts_calls, self.vendor.sts_calls());
        self.cached
            .set(i64::try_from(self.vendor.cached_entries()).unwrap_or(i64::MAX));
        Self::set(&self.log_dropped, crate::logqueue::dropped_lines());
        let guard = self.vendor.guard();
        let now = guard.state();
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            self.breaker_state
                .with_label_values(&[state.as_str()])
                .set(i64::from(state == now));
        }
        let g = &guard.stats;
        for (to, n) in [
            ("open", &g.opened),
            ("half_open", &g.half_opened),
            ("closed", &g.closed),
        ] {
            Self::set(
                &self.breaker_transitions.with_label_values(&[to]),
                n.load(Relaxed),
            );
        }
        for (reason, n) in [
            ("circuit_open", &g.refused_open),
            ("too_many_in_flight", &g.refused_in_flight),
            ("rate_budget", &g.refused_rate),
        ] {
            Self::set(
                &self.sts_refused.with_label_values(&[reason]),
                n.load(Relaxed),
            );
        }
        self.sts_in_flight
            .set(i64::try_from(guard.in_flight()).unwrap_or(i64::MAX));
        [
            self.hits.collect(),
            self.misses.collect(),
            self.fallbacks.collect(),
            self.sts_calls.collect(),
            self.cached.collect(),
            self.log_dropped.collect(),
            self.breaker_state.collect(),
            self.breaker_transitions.collect(),
            self.sts_refused.collect(),
            self.sts_in_flight.collect(),
        ]
        .concat()
    }
}

/// The middleware that counts requests and answers `/metrics`.
pub fn middleware(vendor: Arc<Vendor>) -> Result<PrometheusMetrics, String> {
    let registry = Registry::new();
    let collector = VendCollector::new(vendor).map_err(|e| e.to_string())?;
    registry
        .register(Box::new(collector))
        .map_err(|e| e.to_string())?;
    PrometheusMetricsBuilder::new("stsvend")
        .registry(registry)
        .endpoint("/metrics")
        // Unknown paths must not become label values (a scanner would explode cardinality).
        .mask_unmatched_patterns("UNKNOWN")
        .build()
        .map_err(|e| e.to_string())
}
