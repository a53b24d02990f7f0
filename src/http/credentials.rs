use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::auth::AuthenticatedUser;
use crate::error::ApiError;
use crate::http::state::AppState;
use crate::telemetry::capped;
use crate::vend::format::{self, Format};
use crate::vend::policy;
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
    let settings = &state.settings;
    let scope = state.scopes.get(settings, &user.groups).map_err(|e| {
        tracing::error!(user = %capped(&user.user_id), error = %e, "scope too large for one session");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "scope_too_large",
            "your groups grant more buckets than one AWS session can carry in this deployment; the operators have the details under this request id",
        )
    })?;
    let Some(scope) = scope else {
        let granting = policy::granting_groups(settings);
        let hint = if granting.is_empty() {
            format!("this service grants no bucket in {}", settings.sts.region)
        } else {
            format!(
                "membership in one of these groups grants access: {}",
                granting.join(", ")
            )
        };
        tracing::info!(user = %capped(&user.user_id), groups = ?user.groups, "no bucket allowed");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!(
                "your groups ({}) grant no bucket in {}; {hint}",
                if user.groups.is_empty() {
                    "none".to_owned()
                } else {
                    user.groups.join(", ")
                },
                settings.sts.region
            ),
        ));
    };
    let now = user.at;
    // The SDK's own operation timeout is the same; this also bounds a hung connection.
    let overall = settings.sts.timeout;
    let min_remaining = format.min_remaining(&settings.cache);
    let vended = state
        .vendor
        .vend_for(&user.user_id, &scope, min_remaining, now, overall)
        .await
        .map_err(|e| sts_failure(&e))?;
    let creds = &vended.credentials;
    let audit = Audit {
        user: &user.user_id,
        authenticated_by: user.method,
        session_name: &vended.session_name,
        scope: &scope,
        credentials: creds,
        rendered: &vended.rendered,
        cache: vended.outcome.as_str(),
        format: format.name(),
        client: req
            .peer_addr()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip()),
        forwarded_for: req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    };
    tracing::info!(target: "stsvend::audit", json_fields = ?audit, "credentials vended");
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .body(format::render(format, creds)))
}

/// The audit line's fields, rendered straight into the log line as JSON members (see
/// `telemetry::format::SPLICED`): user, session name, scope, policy hash, buckets, access key id,
/// expiration, packed policy size (rendered once per credential), then how they
/// authenticated, cache outcome, format, client and `X-Forwarded-For`. Every string is
/// escaped; client-controlled ones are capped.
struct Audit<'a> {
    user: &'a str,
    authenticated_by: crate::auth::AuthMethod,
    session_name: &'a str,
    scope: &'a crate::vend::scope::SessionScope,
    credentials: &'a crate::vend::sts::StsCredentials,
    rendered: &'a std::sync::OnceLock<Box<str>>,
    cache: &'static str,
    format: &'static str,
    client: std::net::IpAddr,
    forwarded_for: &'a str,
}

impl Audit<'_> {
    /// What is the same on every response with this credential, rendered once per
    /// credential: user, session name, scope, policy hash, buckets, key id, expiration,
    /// packed policy size.
    fn fixed(&self) -> String {
        use crate::json::{write_escaped, write_member};
        let mut out = String::with_capacity(256 + self.scope.buckets_joined.len());
        let render = |out: &mut String| -> std::fmt::Result {
            out.push_str("\"user\":\"");
            write_escaped(out, &capped(self.user))?;
            out.push('"');
            write_member(out, "session_name", self.session_name)?;
            write_member(out, "scope", self.scope.mode.as_str())?;
            write_member(out, "policy_hash", &self.scope.hash)?;
            write_member(out, "buckets", &self.scope.buckets_joined)?;
            write_member(out, "access_key_id", &self.credentials.access_key_id)?;
            write_member(out, "expiration", &self.credentials.expiration_rfc3339)?;
            if let Some(size) = self.credentials.packed_policy_size {
                out.push_str(",\"packed_policy_size\":");
                out.push_str(itoa::Buffer::new().format(size));
            }
            Ok(())
        };
        // Writing into a String cannot fail.
        let _ = render(&mut out);
        out
    }

    fn render(&self, out: &mut String) -> std::fmt::Result {
        use crate::json::{write_ip, write_member, write_static_member};
        out.push_str(self.rendered.get_or_init(|| self.fixed().into()));
        write_static_member(out, "authenticated_by", self.authenticated_by.name())?;
        write_static_member(out, "cache", self.cache)?;
        write_static_member(out, "format", self.format)?;
        out.push_str(",\"client\":\"");
        write_ip(out, self.client)?;
        out.push('"');
        write_member(out, "forwarded_for", &capped(self.forwarded_for))
    }
}

thread_local! {
    /// Where audit fields are put together before going into the line in one piece.
    static AUDIT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl std::fmt::Debug for Audit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        AUDIT.with(|buf| match buf.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                self.render(&mut buf)?;
                f.write_str(&buf)
            }
            // Only if formatting re-entered this function on this thread.
            Err(_) => {
                let mut own = String::new();
                self.render(&mut own)?;
                f.write_str(&own)
            }
        })
    }
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
