//! The admin API, on the internal listener only, behind `Authorization: Bearer <admin token>`:
//! revoke a user, lift a revocation, list revocations.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::http::state::AppState;
use crate::revoke::{deny_statement, Revocation};
use crate::telemetry::capped;

/// Equal in time whatever the inputs: both sides are hashed to fixed length first.
fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(expected) = &state.settings.admin_token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no admin API here",
        ));
    };
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same_secret(given, expected.expose_secret()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_admin_token",
            "send the admin token as `Authorization: Bearer <token>`",
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub user: String,
    pub reason: Option<String>,
    /// Lift by itself after this many seconds; absent: until lifted.
    pub expires_in_seconds: Option<u64>,
}

impl RevokeRequest {
    /// The revocation a request body asks for, made at `now`; a 400 naming what is wrong.
    fn parse(body: &[u8], now: chrono::DateTime<chrono::Utc>) -> Result<Revocation, ApiError> {
        let body: Self = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(
                "invalid_request",
                format!("the body must be a JSON revocation: {e}"),
            )
        })?;
        check_user(&body.user)?;
        if body.reason.as_ref().is_some_and(|r| r.len() > 1024) {
            return Err(ApiError::bad_request(
                "invalid_reason",
                "reason is at most 1024 characters",
            ));
        }
        let expires_at = match body.expires_in_seconds {
            Some(s) => Some(
                chrono::TimeDelta::try_seconds(i64::try_from(s).unwrap_or(i64::MAX))
                    .and_then(|d| now.checked_add_signed(d))
                    .ok_or_else(|| {
                        ApiError::bad_request("invalid_expiry", "expires_in_seconds is too large")
                    })?,
            ),
            None => None,
        };
        Ok(Revocation {
            user: body.user,
            reason: body.reason,
            revoked_at: now,
            expires_at,
            lifted_at: None,
        })
    }
}

#[derive(Deserialize)]
pub struct UserQuery {
    pub user: String,
}

fn check_user(user: &str) -> Result<(), ApiError> {
    if user.is_empty() || user.len() > 1024 || user.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_user",
            "user must be 1-1024 characters without control characters",
        ));
    }
    Ok(())
}

/// `POST /admin/revocations`
pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The token first: nobody without it gets the body parsed.
    authorize(&req, &state)?;
    let now = state.clock.now();
    let revocation = RevokeRequest::parse(&body, now)?;
    let (revocation, fleet) = state.revocations.revoke(revocation).await;
    // Their tickets end for good: a lift later gives the user back, not what they handed out.
    let tickets = state.tickets.end_user(&revocation.user).await;
    tracing::info!(
        target: "stsvend::audit",
        user = %capped(&revocation.user),
        reason = %capped(revocation.reason.as_deref().unwrap_or("")),
        expires_at = ?revocation.expires_at,
        fleet,
        tickets_ended = tickets,
        "user revoked"
    );
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(serde_json::json!({
            "revocation": revocation,
            "applies_to": if fleet { "fleet" } else { "this replica" },
            "tickets_ended": tickets,
            "deny_statement": deny_statement(&state.settings, &revocation.user, revocation.revoked_at),
        })))
}

/// `DELETE /admin/revocations?user=U`
pub async fn lift(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<UserQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    check_user(&query.user)?;
    match state.revocations.lift(&query.user).await {
        Some(fleet) => {
            tracing::info!(target: "stsvend::audit", user = %capped(&query.user), fleet, "revocation lifted");
            Ok(HttpResponse::NoContent().finish())
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_revoked",
            "this user is not revoked",
        )),
    }
}

/// `GET /admin/revocations`
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(serde_json::json!({
            "revocations": state.revocations.list(state.clock.now()),
            "shared": state.fleet.is_some(),
        })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(super::same_secret("abc", "abc"));
        assert!(!super::same_secret("abc", "abd"));
        assert!(!super::same_secret("abc", "abcd"));
        assert!(!super::same_secret("", "abc"));
    }
}
