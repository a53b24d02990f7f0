//! Prometheus metrics at `GET /metrics` (when `server.metrics = true`): HTTP request counts
//! and latencies by route pattern, plus credential cache hits, misses and fallbacks,
//! AssumeRole calls and cached credentials, read from the vendor at scrape time.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServiceResponse;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::vend::guard::BreakerState;

struct VendCollector {
    archives: Arc<crate::archive::Archives>,
    discovery: Arc<crate::auth::discovery::Discovery>,
    ready: IntGauge,
    log_dropped: IntCounter,
    // The rest by archive (a label bounded by the configuration).
    hits: IntCounterVec,
    misses: IntCounterVec,
    fallbacks: IntCounterVec,
    sts_calls: IntCounterVec,
    cached: IntGaugeVec,
    breaker_state: IntGaugeVec,
    breaker_transitions: IntCounterVec,
    sts_refused: IntCounterVec,
    sts_in_flight: IntGaugeVec,
    sts_errors: IntCounterVec,
    asked_less: IntCounterVec,
    presigned: IntCounterVec,
    callers: IntCounterVec,
}

impl VendCollector {
    fn new(
        archives: Arc<crate::archive::Archives>,
        discovery: Arc<crate::auth::discovery::Discovery>,
    ) -> Result<Self, prometheus::Error> {
        let by_archive =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["archive"]);
        let counter_by = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &["archive", label])
        };
        Ok(Self {
            archives,
            discovery,
            ready: IntGauge::with_opts(Opts::new(
                "stsvend_ready",
                "1 while /readyz answers 200 (the IdP's discovery document is loaded)",
            ))?,
            log_dropped: IntCounter::with_opts(Opts::new(
                "stsvend_log_lines_dropped_total",
                "Log lines dropped because the log queue was full",
            ))?,
            hits: by_archive(
                "stsvend_credential_cache_hits_total",
                "Credential requests served from the cache",
            )?,
            misses: by_archive(
                "stsvend_credential_cache_misses_total",
                "Credential requests that needed an AssumeRole",
            )?,
            fallbacks: by_archive(
                "stsvend_credential_cache_fallbacks_total",
                "Cached credentials served because STS was unavailable",
            )?,
            sts_calls: by_archive(
                "stsvend_sts_assume_role_calls_total",
                "AssumeRole calls sent to STS",
            )?,
            cached: IntGaugeVec::new(
                Opts::new("stsvend_credentials_cached", "Credentials held in the cache"),
                &["archive"],
            )?,
            breaker_state: IntGaugeVec::new(
                Opts::new(
                    "stsvend_sts_breaker_state",
                    "1 for the STS circuit breaker's current state (closed, open, half_open)",
                ),
                &["archive", "state"],
            )?,
            breaker_transitions: counter_by(
                "stsvend_sts_breaker_transitions_total",
                "STS circuit breaker transitions, by the state entered",
                "to",
            )?,
            sts_refused: counter_by(
                "stsvend_sts_calls_refused_total",
                "AssumeRole calls not attempted, by reason",
                "reason",
            )?,
            sts_in_flight: IntGaugeVec::new(
                Opts::new("stsvend_sts_calls_in_flight", "AssumeRole calls in flight"),
                &["archive"],
            )?,
            sts_errors: counter_by(
                "stsvend_sts_errors_total",
                "AssumeRole calls that failed, by kind (throttled, unavailable, rejected)",
                "kind",
            )?,
            asked_less: counter_by(
                "stsvend_credential_requests_asking_less_total",
                "Credential requests that asked for less: narrowed to targets, or a shorter lifetime",
                "asked",
            )?,
            presigned: by_archive(
                "stsvend_presigned_links_total",
                "Object links signed (GET/HEAD /s3/<bucket>/<key>)",
            )?,
            callers: counter_by(
                "stsvend_credential_requests_by_caller_total",
                "Credential requests by where the caller was: in the archive's region, outside it, or unknown (no AWS ranges)",
                "caller",
            )?,
        })
    }

    fn set(counter: &IntCounter, value: u64) {
        counter.reset();
        counter.inc_by(value);
    }

    fn collect_archive(&self, archive: &crate::archive::Archive) {
        use std::sync::atomic::Ordering::Relaxed;
        let name: &str = &archive.name;
        let vendor = &archive.vendor;
        let stats = &vendor.stats;
        let one = |v: &IntCounterVec, n: u64| Self::set(&v.with_label_values(&[name]), n);
        one(&self.hits, stats.hits.load(Relaxed));
        one(&self.misses, stats.misses.load(Relaxed));
        one(&self.fallbacks, stats.fallbacks.load(Relaxed));
        one(&self.sts_calls, vendor.sts_calls());
        one(&self.presigned, stats.presigned.load(Relaxed));
        self.cached
            .with_label_values(&[name])
            .set(i64::try_from(vendor.cached_entries()).unwrap_or(i64::MAX));
        let two = |v: &IntCounterVec, label: &str, n: u64| {
            Self::set(&v.with_label_values(&[name, label]), n)
        };
        for (kind, n) in [
            ("throttled", &stats.sts_throttled),
            ("unavailable", &stats.sts_unavailable),
            ("rejected", &stats.sts_rejected),
        ] {
            two(&self.sts_errors, kind, n.load(Relaxed));
        }
        for (caller, n) in ["in_region", "out_of_region", "unknown"]
            .into_iter()
            .zip(&stats.callers)
        {
            two(&self.callers, caller, n.load(Relaxed));
        }
        for (asked, n) in [
            ("narrowed", &stats.narrowed),
            ("short_lifetime", &stats.short_lifetime),
        ] {
            two(&self.asked_less, asked, n.load(Relaxed));
        }
        let guard = vendor.guard();
        let now = guard.state();
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            self.breaker_state
                .with_label_values(&[name, state.as_str()])
                .set(i64::from(state == now));
        }
        let g = &guard.stats;
        for (to, n) in [
            ("open", &g.opened),
            ("half_open", &g.half_opened),
            ("closed", &g.closed),
        ] {
            two(&self.breaker_transitions, to, n.load(Relaxed));
        }
        for (reason, n) in [
            ("circuit_open", &g.refused_open),
            ("too_many_in_flight", &g.refused_in_flight),
            ("rate_budget", &g.refused_rate),
            ("fleet_rate_budget", &g.refused_fleet_rate),
            ("user_budget", &g.refused_user_budget),
        ] {
            two(&self.sts_refused, reason, n.load(Relaxed));
        }
        self.sts_in_flight
            .with_label_values(&[name])
            .set(i64::try_from(guard.in_flight()).unwrap_or(i64::MAX));
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
            self.sts_errors.desc(),
            self.asked_less.desc(),
            self.presigned.desc(),
            self.callers.desc(),
            self.ready.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for archive in self.archives.all() {
            self.collect_archive(archive);
        }
        Self::set(&self.log_dropped, crate::telemetry::queue::dropped_lines());
        self.ready.set(i64::from(self.discovery.is_ready()));
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
            self.sts_errors.collect(),
            self.asked_less.collect(),
            self.presigned.collect(),
            self.callers.collect(),
            self.ready.collect(),
        ]
        .concat()
    }
}

/// Reads one counter of the shared cache's statistics.
type ReadShared = fn(&crate::fleet::FleetStats) -> u64;

/// Fleet mode: the shared cache on Redis.
struct SharedCollector {
    shared: Arc<crate::fleet::Fleet>,
    counters: Vec<(IntCounter, ReadShared)>,
    available: IntGauge,
}

impl SharedCollector {
    fn new(shared: Arc<crate::fleet::Fleet>) -> Result<Self, prometheus::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let specs: [(&str, &str, ReadShared); 9] = [
            ("stsvend_shared_cache_hits_total", "Credentials found in the shared cache (another replica's AssumeRole)", |s| s.hits.load(Relaxed)),
            ("stsvend_shared_cache_misses_total", "Shared cache lookups that found nothing usable", |s| s.misses.load(Relaxed)),
            ("stsvend_shared_cache_writes_total", "Fresh credentials written to the shared cache", |s| s.writes.load(Relaxed)),
            ("stsvend_shared_cache_lock_waits_total", "Misses that waited for another replica's AssumeRole", |s| s.waits.load(Relaxed)),
            ("stsvend_shared_cache_lock_wait_timeouts_total", "Waits that ended without the other replica's credential (then STS was called)", |s| s.wait_timeouts.load(Relaxed)),
            ("stsvend_shared_cache_lock_takeovers_total", "Waits that found the other replica's lock lapsed without a credential (it died or lost Redis) and called STS in its place", |s| s.lock_takeovers.load(Relaxed)),
            ("stsvend_sts_budget_slots_forfeited_total", "Fleet budget slots given up because the call would have been signed after them (a busy replica woke or prepared it late); it took a new one", |s| s.slots_forfeited.load(Relaxed)),
            ("stsvend_revocations_lost_total", "Revocations Redis had lost (flush, restart without persistence, failover) that this replica put back", |s| s.revocations_lost.load(Relaxed)),
            ("stsvend_redis_errors_total", "Redis commands that failed or timed out (the replica then works alone for a while)", |s| s.errors.load(Relaxed)),
        ];
        let mut counters = Vec::new();
        for (name, help, read) in specs {
            counters.push((IntCounter::with_opts(Opts::new(name, help))?, read));
        }
        Ok(Self {
            shared,
            counters,
            available: IntGauge::with_opts(Opts::new(
                "stsvend_redis_available",
                "1 while Redis answers (the credential cache is shared), 0 while this replica works alone",
            ))?,
        })
    }
}

impl Collector for SharedCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut out: Vec<&Desc> = self.counters.iter().flat_map(|(c, _)| c.desc()).collect();
        out.extend(self.available.desc());
        out
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        for (counter, read) in &self.counters {
            VendCollector::set(counter, read(&self.shared.stats));
            out.extend(counter.collect());
        }
        self.available.set(i64::from(self.shared.available()));
        out.extend(self.available.collect());
        out
    }
}

/// The served certificate's expiry and reloads, when stsvend terminates TLS.
struct TlsCollector {
    reloader: Arc<crate::tls::CertReloader>,
    not_after: IntGauge,
    reloads: IntCounter,
    failures: IntCounter,
}

impl Collector for TlsCollector {
    fn desc(&self) -> Vec<&Desc> {
        [
            self.not_after.desc(),
            self.reloads.desc(),
            self.failures.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        use std::sync::atomic::Ordering::Relaxed;
        self.not_after.set(self.reloader.not_after());
        VendCollector::set(&self.reloads, self.reloader.reloads.load(Relaxed));
        VendCollector::set(&self.failures, self.reloader.reload_failures.load(Relaxed));
        [
            self.not_after.collect(),
            self.reloads.collect(),
            self.failures.collect(),
        ]
        .concat()
    }
}

/// The request-counting middleware and the registry `/metrics` renders.
pub struct Metrics {
    pub middleware: HttpMetrics,
    pub registry: Registry,
}

impl Metrics {
    pub fn new(
        archives: Arc<crate::archive::Archives>,
        fleet: Option<Arc<crate::fleet::Fleet>>,
        discovery: Arc<crate::auth::discovery::Discovery>,
        tls: Option<Arc<crate::tls::CertReloader>>,
    ) -> Result<Self, String> {
        let registry = Registry::new();
        if let Some(fleet) = fleet {
            let collector = SharedCollector::new(fleet).map_err(|e| e.to_string())?;
            registry
                .register(Box::new(collector))
                .map_err(|e| e.to_string())?;
        }
        let collector = VendCollector::new(archives, discovery).map_err(|e| e.to_string())?;
        registry
            .register(Box::new(collector))
            .map_err(|e| e.to_string())?;
        if let Some(reloader) = tls {
            let tls = TlsCollector {
                reloader,
                not_after: IntGauge::with_opts(Opts::new(
                    "stsvend_tls_certificate_expiry_timestamp_seconds",
                    "When the served TLS certificate expires (Unix time)",
                ))
                .map_err(|e| e.to_string())?,
                reloads: IntCounter::with_opts(Opts::new(
                    "stsvend_tls_certificate_reloads_total",
                    "TLS certificates loaded after their files changed",
                ))
                .map_err(|e| e.to_string())?,
                failures: IntCounter::with_opts(Opts::new(
                    "stsvend_tls_certificate_reload_failures_total",
                    "Changed TLS files that did not load (the previous certificate stays)",
                ))
                .map_err(|e| e.to_string())?,
            };
            registry
                .register(Box::new(tls))
                .map_err(|e| e.to_string())?;
        }
        let middleware = HttpMetrics::new(&registry).map_err(|e| e.to_string())?;
        Ok(Self {
            middleware,
            registry,
        })
    }
}

/// The route label of requests no route matched: unknown paths must not become label values
/// (a scanner would explode the series count).
const UNMATCHED: &str = "UNKNOWN";

/// The route a handler reached through a prefix (`web::scope` without a pattern of its own,
/// where actix knows no `match_pattern`): the label its requests are counted under.
#[derive(Clone, Copy)]
pub struct RouteLabel(pub &'static str);

/// The method label: the standard methods by name, any other token (actix accepts every one)
/// as `OTHER`, so invented methods cannot add series without bound.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// `stsvend_http_requests_total` and `stsvend_http_requests_duration_seconds` by route
/// pattern, method and status (the names, labels, help and buckets actix-web-prom used).
/// Each worker keeps the labelled series it has used ([`Recorder`]), so a request costs a map
/// lookup and two atomic updates instead of resolving label values in the registry every time.
#[derive(Clone)]
pub struct HttpMetrics {
    total: IntCounterVec,
    duration: HistogramVec,
}

type Series = (IntCounter, Histogram);

impl HttpMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let labels = ["endpoint", "method", "status"];
        let total = IntCounterVec::new(
            Opts::new("http_requests_total", "Total number of HTTP requests").namespace("stsvend"),
            &labels,
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_requests_duration_seconds",
                "HTTP request duration in seconds for all requests",
            )
            .namespace("stsvend"),
            &labels,
        )?;
        registry.register(Box::new(total.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { total, duration })
    }

    /// What one worker counts its requests with.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            metrics: self.clone(),
            counted: RefCell::new(Counted::default()),
        }
    }
}

/// The most static routes a worker remembers (a deployment has a few dozen).
const MAX_STATIC_PATHS: usize = 1024;

type Hasher = foldhash::fast::RandomState;

/// The series a worker has used, by (method, status).
#[derive(Default)]
struct ByOutcome {
    /// The (method, status) counted last, looked at first: a route's requests mostly end
    /// alike.
    last: Option<(&'static str, u16, Series)>,
    all: HashMap<(&'static str, u16), Series, Hasher>,
}

#[derive(Default)]
struct Counted {
    /// Static routes by their path, which is their pattern: counted without asking the
    /// router again. Routing depends on the path alone and the routes never change, so the
    /// answer is the router's.
    static_paths: HashMap<String, ByOutcome, Hasher>,
    /// Every other route by its pattern (and requests no route matched).
    patterns: HashMap<String, ByOutcome, Hasher>,
}

/// A worker's request counter: the series it has used, by (route pattern, method, status).
pub struct Recorder {
    metrics: HttpMetrics,
    counted: RefCell<Counted>,
}

impl Recorder {
    /// Counts a response and how long it took.
    pub fn record<B>(&self, res: &ServiceResponse<B>, elapsed: Duration) {
        // A worker records one response at a time; were it ever re-entered, the response
        // would go uncounted rather than panic.
        let Ok(mut counted) = self.counted.try_borrow_mut() else {
            return;
        };
        let counted = &mut *counted;
        let req = res.request();
        let path = req.path();
        let method = method_label(req.method());
        let status = res.status();
        if let Some(by) = counted.static_paths.get_mut(path) {
            return self.count(by, path, method, status, elapsed);
        }
        let pattern = req.match_pattern().unwrap_or_else(|| {
            actix_web::HttpMessage::extensions(req)
                .get::<RouteLabel>()
                .map_or(UNMATCHED, |r| r.0)
                .to_owned()
        });
        let map = if pattern == path && counted.static_paths.len() < MAX_STATIC_PATHS {
            &mut counted.static_paths
        } else {
            &mut counted.patterns
        };
        if !map.contains_key(&pattern) {
            map.insert(pattern.clone(), ByOutcome::default());
        }
        if let Some(by) = map.get_mut(&pattern) {
            self.count(by, &pattern, method, status, elapsed);
        }
    }

    fn count(
        &self,
        by: &mut ByOutcome,
        route: &str,
        method: &'static str,
        status: actix_web::http::StatusCode,
        elapsed: Duration,
    ) {
        let code = status.as_u16();
        if !matches!(&by.last, Some((m, c, _)) if *m == method && *c == code) {
            let series = by.all.entry((method, code)).or_insert_with(|| {
                let labels = [route, method, status.as_str()];
                (
                    self.metrics.total.with_label_values(&labels),
                    self.metrics.duration.with_label_values(&labels),
                )
            });
            by.last = Some((method, code, series.clone()));
        }
        if let Some((_, _, (count, latency))) = &by.last {
            count.inc();
            latency.observe(elapsed.as_secs_f64());
        }
    }
}

/// `/metrics` on the internal listener: the registry in Prometheus' text format.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}
