use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use std::sync::Arc;

use crate::archive::Archive;
use crate::auth::AuthenticatedUser;
use crate::config::Settings;
use crate::error::ApiError;
use crate::http::audit;
use crate::http::state::AppState;
use crate::network::Placement;
use crate::telemetry::capped;
use crate::vend::format::{self, Format};
use crate::vend::narrow::{self, Target};
use crate::vend::policy;
use crate::vend::scope::{Narrowing, SessionScope};
use crate::vend::sts::StsError;

/// The query of `/s3credentials` and `/s3credentials/scope`, as OpenAPI describes it (read by
/// `Ask::parse`: `target` repeats, which serde's query form cannot say).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct CredentialQuery {
    /// Response format: `earthdata` (default), `credential-process` (or `credential_process`),
    /// `container`.
    #[param(pattern = "^(earthdata|credential-process|credential_process|container)$")]
    pub format: Option<String>,
    /// Narrow the credential to these buckets or key prefixes (`s3://bucket/prefix`,
    /// repeatable, at most 20); each must lie inside what the caller may read.
    #[param(explode, style = Form, max_items = 20, pattern = r#"^(s3://)?[a-z0-9][a-z0-9-]{1,61}[a-z0-9](/([ !#%-)+-.0->@-\[\]-~\u00a0-\u00ff][ !#%-)+->@-\[\]-~\u00a0-\u00ff]{0,254})?)?\*?$"#)]
    pub target: Option<Vec<String>>,
    /// A shorter lifetime, in seconds: from 900 to the deployment's `duration_seconds`,
    /// rounded up to a multiple of 900.
    #[param(minimum = 900, maximum = 43200)]
    pub duration_seconds: Option<u32>,
}

/// What a credential request asks for beyond who is asking.
#[derive(Debug, Default)]
pub struct Ask {
    pub(crate) format: Option<String>,
    /// Canonical (`narrow::canonical`); empty: everything the user may read.
    pub(crate) targets: Vec<Target>,
    duration_seconds: Option<u32>,
    /// The lifetime the ticket the request came with gives, when none is asked for.
    ticket_duration: Option<u32>,
}

impl Ask {
    pub(crate) fn parse(query: &str) -> Result<Self, ApiError> {
        let mut ask = Self::default();
        if query.is_empty() {
            return Ok(ask);
        }
        let mut targets = Vec::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "format" => ask.format = Some(value.into_owned()),
                "target" => {
                    if targets.len() == narrow::MAX_TARGETS {
                        return Err(ApiError::bad_request(
                            "too_many_targets",
                            format!("at most {} targets in one request", narrow::MAX_TARGETS),
                        ));
                    }
                    targets.push(
                        Target::parse(&value)
                            .map_err(|e| ApiError::bad_request("invalid_target", e))?,
                    );
                }
                "duration_seconds" => {
                    ask.duration_seconds = Some(value.parse().unwrap_or(0));
                }
                _ => {}
            }
        }
        ask.targets = narrow::canonical(targets);
        Ok(ask)
    }

    /// The ask as a ticket bounds it: no targets means the ticket's, any target must lie
    /// inside one of the ticket's, no lifetime beyond the ticket's; on an archive's own
    /// endpoint (`pinned`), the ticket's targets in that archive.
    fn within_ticket(
        &mut self,
        opened: &crate::auth::ticket::Opened,
        pinned: Option<&Archive>,
    ) -> Result<(), ApiError> {
        let beyond = |what: String| ApiError::new(StatusCode::FORBIDDEN, "beyond_ticket", what);
        // Said only when refusing: a ticket's served request builds no text.
        let covered = || {
            let all: Vec<String> = opened.targets.iter().map(ToString::to_string).collect();
            all.join(", ")
        };
        if !opened.targets.is_empty() {
            if self.targets.is_empty() {
                self.targets = opened
                    .targets
                    .iter()
                    .filter(|t| pinned.is_none_or(|a| a.serves(&t.bucket)))
                    .cloned()
                    .collect();
                if self.targets.is_empty() {
                    return Err(beyond(format!(
                        "this ticket reads nothing in this archive; it covers {}",
                        covered()
                    )));
                }
            } else {
                let outside: Vec<String> = self
                    .targets
                    .iter()
                    .filter(|t| !opened.targets.iter().any(|mine| mine.covers(t)))
                    .map(ToString::to_string)
                    .collect();
                if !outside.is_empty() {
                    return Err(beyond(format!(
                        "this ticket covers only {}; beyond it: {}",
                        covered(),
                        outside.join(", ")
                    )));
                }
            }
        }
        if let Some(most) = opened.claims.dur {
            match self.duration_seconds {
                Some(asked) if asked > most => {
                    return Err(beyond(format!(
                        "this ticket gives credentials of at most {most} seconds"
                    )));
                }
                _ => self.ticket_duration = Some(most),
            }
        }
        Ok(())
    }

    /// A shorter lifetime than the deployment's, checked against `max`; None: the
    /// deployment's (asked for or not: the same credential).
    pub(crate) fn lifetime(&self, max: u32) -> Result<Option<u32>, ApiError> {
        // A ticket's lifetime is at most any archive's longest.
        let asked = self
            .duration_seconds
            .or(self.ticket_duration.map(|t| t.min(max)));
        narrow::lifetime(asked, max)
            .map(|l| (l < max).then_some(l))
            .map_err(|e| ApiError::bad_request("invalid_duration", e))
    }
}

/// What a credential request asks for, bounded by the ticket it came with (if any).
pub(crate) fn asked(req: &HttpRequest, user: &AuthenticatedUser) -> Result<Ask, ApiError> {
    let mut ask = Ask::parse(req.query_string())?;
    if let Some(opened) = &user.ticket {
        let pinned = req.app_data::<Pinned>().map(|p| &*p.0);
        ask.within_ticket(opened, pinned)?;
    }
    Ok(ask)
}

/// An archive's own endpoints (`<archive path>/s3credentials`, ...) answer for it alone.
#[derive(Clone)]
pub struct Pinned(pub Arc<Archive>);

/// The archive a request is for: the one its path names, else the one owning its targets'
/// buckets (the default without targets).
pub(crate) fn archive_for<'a>(
    req: &'a HttpRequest,
    state: &'a AppState,
    targets: &[Target],
) -> Result<&'a Archive, ApiError> {
    if let Some(Pinned(archive)) = req.app_data::<Pinned>() {
        return Ok(archive);
    }
    routed(state, targets)
}

/// The archive owning `targets`' buckets (the default without targets).
fn routed<'a>(state: &'a AppState, targets: &[Target]) -> Result<&'a Archive, ApiError> {
    state.archives.route(targets).map_err(|several| {
        let names: Vec<&str> = several.iter().map(|a| &*a.name).collect();
        ApiError::bad_request(
            "targets_in_several_archives",
            format!(
                "these targets are in different archives ({}) and one credential is one role's session: ask /s3credentials/bundle with the same targets for one credential per archive, or ask each archive for its own",
                names.join(", ")
            ),
        )
    })
}

/// `GET /s3credentials`: temporary read-only credentials for the caller's in-region buckets.
/// `PINNED`: at an archive's own path, which names the archive (the top-level route, the
/// busiest, does not look for one).
pub async fn s3credentials<const PINNED: bool>(
    req: HttpRequest,
    user: AuthenticatedUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ask = asked(&req, &user)?;
    let format = Format::parse(ask.format.as_deref())?;
    let archive = if PINNED {
        archive_for(&req, &state, &ask.targets)?
    } else {
        routed(&state, &ask.targets)?
    };
    let settings = &*archive.settings;
    let max = settings.sts.duration_seconds;
    let lifetime = ask.lifetime(max)?;
    let scope = scope_of(archive, &user, &ask.targets)?;
    let placement = placed(&state, archive, &user)?;
    // The SDK's own operation timeout is the same; this also bounds a hung connection.
    let overall = settings.sts.timeout;
    let min_remaining = narrow::min_remaining(
        format.min_remaining(&settings.cache),
        lifetime.unwrap_or(max),
        max,
    );
    let vended = archive
        .vendor
        .vend_for(
            crate::http::credentials::principal(&user),
            &scope,
            lifetime,
            min_remaining,
            user.at,
            overall,
        )
        .await
        .map_err(|e| sts_failure(&e))?;
    audit::vended(&req, &user, archive, &scope, &vended, format.audit_member());
    let mut res = carrying_credentials(format::render(format, &vended.credentials));
    if placement == Placement::OutOfRegion {
        res.headers_mut().append(
            crate::network::WARNING_HEADER,
            archive.out_of_region_warning.clone(),
        );
    }
    Ok(res)
}

/// Where the caller is relative to `archive`'s region, counted per archive; Err when the
/// deployment refuses callers outside it (`network.out_of_region = "refuse"`).
pub(crate) fn placed(
    state: &AppState,
    archive: &Archive,
    user: &AuthenticatedUser,
) -> Result<Placement, ApiError> {
    let region = &archive.settings.sts.region;
    let placement = state.network.placement(user.client, region);
    archive.vendor.stats.count_caller(placement);
    if placement == Placement::OutOfRegion
        && state.settings.network.out_of_region == crate::config::OutOfRegion::Refuse
    {
        tracing::info!(user = %capped(&user.user_id), client = %user.client, region = %region, "out-of-region caller refused");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "out_of_region",
            format!(
                "you are calling from {}, outside AWS {region}: credentials for this archive work only in {region}, so none are issued here. Run your code in {region}, or ask for object links (GET /s3/<bucket>/<key>), which work wherever the bucket allows",
                user.client
            ),
        ));
    }
    Ok(placement)
}

/// Whom the credential is for: the user, through the platform acting for them if any.
pub(crate) fn principal(user: &AuthenticatedUser) -> crate::vend::vendor::Principal<'_> {
    crate::vend::vendor::Principal {
        user: &user.user_id,
        via: user.via.as_deref(),
    }
}

/// A 200 whose JSON body carries credentials: never stored by any cache.
pub(crate) fn carrying_credentials(body: String) -> HttpResponse {
    // Straight into the new response's empty header map (the builder converts each name and
    // value again, and an insert looks for an old value first).
    let mut res = HttpResponse::with_body(StatusCode::OK, body);
    let headers = res.headers_mut();
    headers.append(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.append(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.append(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res.map_into_boxed_body()
}

/// What goes to STS for this user (for just `targets` when there are any); a clear refusal
/// when their groups grant nothing here or not all of the targets.
pub(crate) fn scope_of(
    archive: &Archive,
    user: &AuthenticatedUser,
    targets: &[Target],
) -> Result<Arc<SessionScope>, ApiError> {
    let settings = &*archive.settings;
    if !targets.is_empty() {
        return archive
            .scopes
            .narrowed(settings, &user.groups, targets)
            .map_err(|e| match e {
                Narrowing::NoBucket => no_bucket(settings, &user.groups),
                Narrowing::NotCovered(what) => ApiError::new(
                    StatusCode::FORBIDDEN,
                    "access_denied",
                    format!("your groups do not grant all of the targets: {}", what.join("; ")),
                ),
                Narrowing::TooLarge(chars) => ApiError::bad_request(
                    "targets_too_large",
                    format!("these targets need a {chars}-character session policy, over AWS's limit of {}; ask for fewer or shorter prefixes", crate::vend::scope::MAX_INLINE_CHARS),
                ),
            });
    }
    let scope = archive.scopes.get(settings, &user.groups).map_err(|e| {
        tracing::error!(user = %capped(&user.user_id), archive = %archive.name, error = %e, "scope too large for one session");
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

pub(crate) fn sts_failure(e: &StsError) -> ApiError {
    if let StsError::UserBudget { retry_after } = e {
        return crate::limits::too_many_as(
            *retry_after,
            "too_many_new_credentials",
            "you have asked for many new credentials (narrowings, lifetimes) in a short time; credentials you already have keep working, new ones again after Retry-After seconds",
        );
    }
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
    /// Whether the caller's address is in `region` (only when the deployment knows AWS's
    /// ranges): the credentials work only there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_region: Option<bool>,
    /// What to do about it, when `in_region` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ScopeBucket {
    pub name: String,
    /// Key prefixes the credentials may read; empty: the whole bucket.
    pub prefixes: Vec<String>,
}

/// `GET /s3credentials/scope`: which buckets (and prefixes) the caller's credentials would
/// cover, in which region, for how long; with the same query as `/s3credentials`, what that
/// request's credential would. No STS call.
pub async fn scope(
    req: HttpRequest,
    user: AuthenticatedUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ask = asked(&req, &user)?;
    // The same query as the credential it describes, refused the same way.
    Format::parse(ask.format.as_deref())?;
    let archive = archive_for(&req, &state, &ask.targets)?;
    let settings = &*archive.settings;
    let max = settings.sts.duration_seconds;
    let lifetime = ask.lifetime(max)?.unwrap_or(max);
    let allowed = policy::allowed_buckets(settings, &user.groups);
    let listed = |b: &crate::config::Bucket| ScopeBucket {
        name: b.name.clone(),
        prefixes: b.prefixes.clone(),
    };
    let buckets = if ask.targets.is_empty() {
        allowed.into_iter().map(listed).collect()
    } else {
        // Refused exactly when the credential would be.
        scope_of(archive, &user, &ask.targets)?;
        narrow::narrow(&allowed, &ask.targets)
            .unwrap_or_default()
            .iter()
            .map(listed)
            .collect()
    };
    let region = &settings.sts.region;
    let (in_region, hint) = match state.network.placement(user.client, region) {
        Placement::Unknown => (None, None),
        Placement::InRegion => (Some(true), None),
        Placement::OutOfRegion => (
            Some(false),
            Some(format!(
                "you are calling from {}, outside AWS {region}: these credentials work only in {region}. Run your code there, or use object links (GET /s3/<bucket>/<key>)",
                user.client
            )),
        ),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Scope {
            region: region.clone(),
            buckets,
            duration_seconds: lifetime,
            in_region,
            hint,
        }))
}
