use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use std::sync::Arc;

use crate::auth::AuthenticatedUser;
use crate::config::Settings;
use crate::error::ApiError;
use crate::http::audit;
use crate::http::state::AppState;
use crate::telemetry::capped;
use crate::vend::format::{self, Format};
use crate::vend::policy;
use crate::vend::scope::SessionScope;
use crate::vend::sts::StsError;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CredentialQuery {
    /// Response format: `earthdata` (default), `credential-process` (or `credential_process`),
    /// `container`.
    #[param(pattern = "^(earthdata|credential-process|credential_process|container)$")]
    pub format: Option<String>,
}

/// `GET /s3credentials`: temporary read-only credentials for the caller's in-region buckets.
pub async fn s3credentials(
    req: HttpRequest,
    user: AuthenticatedUser,
    query: web::Query<CredentialQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let format = Format::parse(query.format.as_deref())?;
    let scope = scope_of(&state, &user)?;
    let settings = &state.settings;
    // The SDK's own operation timeout is the same; this also bounds a hung connection.
    let overall = settings.sts.timeout;
    let min_remaining = format.min_remaining(&settings.cache);
    let vended = state
        .vendor
        .vend_for(&user.user_id, &scope, min_remaining, user.at, overall)
        .await
        .map_err(|e| sts_failure(&e))?;
    audit::vended(&req, &user, &scope, &vended, format);
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .body(format::render(format, &vended.credentials)))
}

/// What goes to STS for this user; a clear refusal when their groups grant nothing here.
fn scope_of(state: &AppState, user: &AuthenticatedUser) -> Result<Arc<SessionScope>, ApiError> {
    let settings = &state.settings;
    let scope = state.scopes.get(settings, &user.groups).map_err(|e| {
        tracing::error!(user = %capped(&user.user_id), error = %e, "scope too large for one session");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "scope_too_large",
            "your groups grant more buckets than one AWS session can carry in this deployment; the operators have the details under this request id",
        )
    })?;
    scope.ok_or_else(|| {
        tracing::info!(user = %capped(&user.user_id), groups = ?user.groups, "no bucket allowed");
        no_bucket(settings, &user.groups)
    })
}

fn no_bucket(settings: &Settings, groups: &[String]) -> ApiError {
    let granting = policy::granting_groups(settings);
    let hint = if granting.is_empty() {
        format!("this service grants no bucket in {}", settings.sts.region)
    } else {
        format!(
            "membership in one of these groups grants access: {}",
            granting.join(", ")
        )
    };
    let groups = if groups.is_empty() {
        "none".to_owned()
    } else {
        groups.join(", ")
    };
    ApiError::new(
        StatusCode::FORBIDDEN,
        "access_denied",
        format!(
            "your groups ({groups}) grant no bucket in {}; {hint}",
            settings.sts.region
        ),
    )
}

fn sts_failure(e: &StsError) -> ApiError {
    if let StsError::Busy {
        reason,
        retry_after,
    } = e
    {
        tracing::debug!(reason, "STS call not attempted");
        let secs = retry_after.as_secs().max(1).to_string();
        return ApiError::unavailable(
            "temporary credentials cannot be issued right now; retry shortly",
        )
        .with_header(
            header::RETRY_AFTER,
            HeaderValue::from_str(&secs).unwrap_or_else(|_| HeaderValue::from_static("5")),
        );
    }
    if e.is_transient() {
        tracing::warn!(error = %e, "STS unavailable");
        ApiError::unavailable("temporary credentials cannot be issued right now; retry shortly")
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("10"))
    } else {
        // The code and message stay in the logs: they describe the service's own AWS setup.
        tracing::error!(error = %e, "STS refused AssumeRole");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "credential_service_error",
            "the credential service refused to issue credentials; the operators have the details under this request id",
        )
    }
}

/// What `/s3credentials/scope` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Scope {
    pub region: String,
    pub buckets: Vec<ScopeBucket>,
    pub duration_seconds: u32,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ScopeBucket {
    pub name: String,
    /// Key prefixes the credentials may read; empty: the whole bucket.
    pub prefixes: Vec<String>,
}

/// `GET /s3credentials/scope`: which buckets (and prefixes) the caller's credentials would
/// cover, in which region, for how long. No STS call.
pub async fn scope(user: AuthenticatedUser, state: web::Data<AppState>) -> HttpResponse {
    let settings = &state.settings;
    let buckets = policy::allowed_buckets(settings, &user.groups)
        .into_iter()
        .map(|b| ScopeBucket {
            name: b.name.clone(),
            prefixes: b.prefixes.clone(),
        })
        .collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Scope {
            region: settings.sts.region.clone(),
            buckets,
            duration_seconds: settings.sts.duration_seconds,
        })
}
