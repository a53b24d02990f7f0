//! `GET|HEAD /s3/<bucket>/<key>`: a link to one object that needs no AWS credentials to
//! follow. The key is checked against the caller's scope before anything is signed; the
//! answer is a `307` to a presigned URL signed with the caller's own session credential (or,
//! for `Accept: application/json`, the URL and its expiry).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};

use crate::auth::AuthenticatedUser;
use crate::error::ApiError;
use crate::http::credentials::{scope_of, sts_failure};
use crate::http::state::AppState;
use crate::telemetry::capped;
use crate::vend::narrow::{self, Target};
use crate::vend::{policy, presign};

/// What a link answer says in JSON.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Link {
    /// The presigned URL: anyone holding it can read the object until `expiration`.
    pub url: String,
    /// RFC 3339.
    pub expiration: String,
}

/// The query of a link request, as OpenAPI describes it.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct LinkQuery {
    /// How long the link lives, in seconds: at most `s3.presign_max_seconds` and never past
    /// the session credential it is signed with (longer asks are cut to that).
    #[param(minimum = 1)]
    pub expires_in: Option<u64>,
}

/// Every request under `/s3`: other methods get 405 before anyone is asked to log in.
pub async fn link(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    use actix_web::HttpMessage;
    req.extensions_mut()
        .insert(crate::metrics::RouteLabel("/s3/{bucket}/{key}"));
    let method = match *req.method() {
        actix_web::http::Method::GET => "GET",
        actix_web::http::Method::HEAD => "HEAD",
        _ => return Err(crate::http::method_not_allowed("GET, HEAD").into()),
    };
    let user = <AuthenticatedUser as actix_web::FromRequest>::extract(&req).await?;
    Ok(signed_link(&req, user, method, &state).await?)
}

async fn signed_link(
    req: &HttpRequest,
    user: AuthenticatedUser,
    method: &'static str,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let (bucket, key) = bucket_and_key(req.match_info().unprocessed())?;
    let asked = expires_in(req.query_string())?;
    // The archive that owns the bucket signs with its own credential.
    let Some(archive) = state
        .archives
        .owner(&bucket)
        .filter(|a| a.serves_in_region(&bucket))
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "this service does not serve bucket {}",
                crate::error::quoted(&bucket, 80)
            ),
        ));
    };
    let settings = &*archive.settings;
    presign::check_key(&key).map_err(|e| ApiError::bad_request("invalid_key", e))?;
    let wanted = Target {
        bucket: bucket.clone(),
        prefix: key.clone(),
    };
    if let Some(opened) = user.ticket.as_ref().filter(|o| !o.targets.is_empty()) {
        if !opened.targets.iter().any(|t| t.covers(&wanted)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "beyond_ticket",
                format!("this ticket does not cover {}", capped(&wanted.to_string())),
            ));
        }
    }
    let allowed = policy::allowed_buckets(settings, &user.groups);
    if narrow::narrow(&allowed, std::slice::from_ref(&wanted)).is_err() {
        tracing::info!(user = %capped(&user.user_id), bucket = %bucket, "link outside scope");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!(
                "your groups do not grant reading {}",
                capped(&wanted.to_string())
            ),
        ));
    }
    // The user's own credential, as /s3credentials would hand it out (cached, or one
    // AssumeRole): the link can do no more than it, and ends with it.
    let scope = scope_of(archive, &user, &[])?;
    let vended = archive
        .vendor
        .vend_for(
            crate::http::credentials::principal(&user),
            &scope,
            None,
            settings.cache.min_remaining,
            user.at,
            settings.sts.timeout,
        )
        .await
        .map_err(|e| sts_failure(&e))?;
    let signed = state
        .links
        .get_or_sign(
            settings,
            &vended.credentials,
            method,
            &bucket,
            &key,
            asked,
            user.at,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "presigning failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the link could not be signed; the operators have the details under this request id",
            )
        })?;
    archive
        .vendor
        .stats
        .presigned
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    audit(
        req,
        &user,
        &archive.name,
        &vended.session_name,
        &wanted,
        method,
        signed.expires_at,
    );
    let life = (signed.expires_at - user.at).num_seconds();
    Ok(answer(req, &signed.url, signed.expires_at, life))
}

/// `/<bucket>/<key>` (the path after `/s3`), percent-decoded.
fn bucket_and_key(rest: &str) -> Result<(String, String), ApiError> {
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let Some((bucket, key)) = rest.split_once('/') else {
        return Err(ApiError::not_found());
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(std::borrow::Cow::into_owned)
            .map_err(|_| ApiError::bad_request("invalid_key", "the path is not UTF-8"))
    };
    Ok((decode(bucket)?, decode(key)?))
}

/// `expires_in`: whole seconds, 1 upward (capped later).
fn expires_in(query: &str) -> Result<Option<u64>, ApiError> {
    let mut asked = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name == "expires_in" {
            match value.parse::<u64>() {
                Ok(n) if n > 0 => asked = Some(n),
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_expires_in",
                        "expires_in is a whole number of seconds, 1 or more",
                    ))
                }
            }
        }
    }
    Ok(asked)
}

fn audit(
    req: &HttpRequest,
    user: &AuthenticatedUser,
    archive: &str,
    session_name: &str,
    object: &Target,
    method: &str,
    expires_at: DateTime<Utc>,
) {
    tracing::info!(
        target: "stsvend::audit",
        user = %capped(&user.user_id),
        authenticated_by = user.method.name(),
        ticket = user.ticket.as_ref().map_or("", |t| t.claims.id.as_str()),
        via = user.via.as_deref().unwrap_or(""),
        session_name,
        archive,
        bucket = %object.bucket,
        key = %capped(&object.prefix),
        method,
        expires_at = %expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        client = %req.peer_addr().map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip()),
        "object link signed"
    );
}

fn answer(req: &HttpRequest, url: &str, expires_at: DateTime<Utc>, life: i64) -> HttpResponse {
    let expiration = expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if crate::negotiate::wants_json_only(req) {
        // The URL is a credential in itself: not to be stored.
        return HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(Link {
                url: url.to_owned(),
                expiration,
            });
    }
    // A browser may reuse the redirect, never past the link's life (a minute to spare, as
    // NASA's TEA does); shared caches never. Only for the same login: the stored redirect is
    // keyed on what authenticated it (another person at the same browser sends another
    // cookie, or none), and logout clears the cache besides.
    let mut cache = String::with_capacity(32);
    cache.push_str("private, max-age=");
    cache.push_str(itoa::Buffer::new().format((life - 60).max(0)));
    let mut res = HttpResponse::TemporaryRedirect();
    res.insert_header((header::CACHE_CONTROL, cache))
        .insert_header((
            header::VARY,
            HeaderValue::from_static("Cookie, Authorization"),
        ))
        .insert_header((
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ));
    match HeaderValue::from_str(url) {
        Ok(location) => res.insert_header((header::LOCATION, location)).finish(),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}
