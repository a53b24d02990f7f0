use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::ApiError;
use crate::http::state::AppState;

/// Liveness: the process is serving requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(json!({"status": "ok"}))
}

/// Readiness on the public listener: whether, not why. The IdP's error texts name hosts and
/// addresses behind stsvend, so only the internal listener (and the log) carries them.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    readiness(&state, false)
}

/// Readiness on the internal listener, with the IdP's last error.
pub async fn readyz_internal(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    readiness(&state, true)
}

/// Readiness: OIDC discovery has succeeded. An open STS circuit breaker does not make the
/// replica unready (cached users are still served, and every replica sees the same STS);
/// the JSON says so, for operators.
fn readiness(state: &AppState, detailed: bool) -> Result<HttpResponse, ApiError> {
    let last_error = state.discovery.last_error();
    let shown = last_error.as_ref().filter(|_| detailed);
    let mut missing = Vec::new();
    if !state.discovery.is_ready() {
        let why = shown
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default();
        missing.push(format!(
            "OIDC discovery of {} has not succeeded yet{why}",
            state.settings.oidc.issuer
        ));
    }
    if !state.revocations.synced() {
        missing.push(
            "the fleet's revocations have not been read from Redis yet (and this replica has no copy of its own from an earlier read)".to_owned(),
        );
    }
    if !state.tickets.synced() {
        missing.push(
            "the fleet's tickets have not been read from Redis yet (and this replica has no copy of its own from an earlier read)".to_owned(),
        );
    }
    let oidc = match (&last_error, shown) {
        (_, Some(e)) => format!("degraded: {e}"),
        (Some(_), None) => "degraded".to_owned(),
        (None, _) => "ok".to_owned(),
    };
    let sts = |archive: &crate::archive::Archive| match archive.vendor.guard().state() {
        crate::vend::guard::BreakerState::Closed => "ok".to_owned(),
        other => format!("circuit_{}", other.as_str()),
    };
    let archives = state.archives.all();
    let mut checks = json!({"oidc_discovery": oidc, "sts": sts(state.archives.default_archive())});
    // Each archive's STS is its own (another account, another endpoint).
    if archives.len() > 1 {
        checks["sts_by_archive"] = archives
            .iter()
            .map(|a| (a.name.to_string(), json!(sts(a))))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    // Redis trouble never makes a replica unready: it works alone meanwhile.
    if let Some(shared) = &state.fleet {
        checks["redis"] = json!(if shared.available() {
            "ok"
        } else {
            "unavailable"
        });
    }
    if missing.is_empty() {
        Ok(HttpResponse::Ok()
            .insert_header(("cache-control", "no-store"))
            .json(json!({"status": "ready", "checks": checks})))
    } else {
        Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            missing.join("; "),
        ))
    }
}

/// `GET /metrics`: the registry in Prometheus' text format.
pub async fn metrics(registry: web::Data<prometheus::Registry>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render(&registry))
}
