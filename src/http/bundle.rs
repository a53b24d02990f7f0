//! `GET /s3credentials/bundle?target=…&target=…`: one credential per archive the targets
//! touch, for tools that read across archives (virtual chunks, one bucket read and another
//! written). All or nothing: every target is checked before anything is issued, and a
//! target the caller may not read refuses the whole bundle, naming it.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::archive::Archive;
use crate::auth::AuthenticatedUser;
use crate::error::ApiError;
use crate::http::audit;
use crate::http::credentials::{carrying_credentials, placed, sts_failure};
use crate::http::state::AppState;
use crate::network::Placement;
use crate::network::{out_of_region_warning, WARNING_HEADER};
use crate::vend::format::{BundleEntry, Format};
use crate::vend::narrow::{self, Target};
use crate::vend::scope::{Narrowing, SessionScope};

/// The query of `/s3credentials/bundle`, as OpenAPI describes it (read by `Ask::parse`).
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct BundleQuery {
    /// What the bundle is for (`s3://bucket/prefix`, repeatable, at most 20): each in any
    /// archive; one credential per archive touched, each for just its targets.
    #[param(explode, style = Form, min_items = 1, max_items = 20, pattern = r#"^(s3://)?[a-z0-9][a-z0-9-]{1,61}[a-z0-9](/([ !#%-)+-.0->@-\[\]-~\u00a0-\u00ff][ !#%-)+->@-\[\]-~\u00a0-\u00ff]{0,254})?)?\*?$"#)]
    pub target: Vec<String>,
    /// A shorter lifetime, in seconds: from 900 to each archive's `duration_seconds`, rounded
    /// up to a multiple of 900.
    #[param(minimum = 900, maximum = 43200)]
    pub duration_seconds: Option<u32>,
}

/// What one archive's part of a bundle is: its targets, the scope for them, the lifetime.
struct Part<'a> {
    archive: &'a Archive,
    targets: Vec<Target>,
    scope: Arc<SessionScope>,
    lifetime: Option<u32>,
}

pub async fn bundle(
    req: HttpRequest,
    user: AuthenticatedUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ask = super::credentials::asked(&req, &user)?;
    if ask.format.is_some() {
        return Err(ApiError::bad_request(
            "invalid_format",
            "a bundle has one format (see /openapi.json); ask /s3credentials for the others",
        ));
    }
    if ask.targets.is_empty() {
        return Err(ApiError::bad_request(
            "missing_target",
            "name the objects the bundle is for: ?target=s3://bucket/prefix, repeatable",
        ));
    }
    let (by_archive, unknown) = state.archives.split(&ask.targets);
    let mut refused: Vec<String> = unknown
        .iter()
        .map(|t| format!("{t} (no archive here serves this bucket)"))
        .collect();
    let mut parts = Vec::with_capacity(by_archive.len());
    for (archive, targets) in by_archive {
        let lifetime = ask.lifetime(archive.settings.sts.duration_seconds)?;
        match archive
            .scopes
            .narrowed(&archive.settings, &user.groups, &targets)
        {
            Ok(scope) => parts.push(Part {
                archive,
                targets,
                scope,
                lifetime,
            }),
            Err(Narrowing::NotCovered(what)) => refused.extend(what),
            Err(Narrowing::NoBucket) => refused.extend(targets.iter().map(|t| {
                format!("{t} (your groups grant nothing in archive {})", archive.name)
            })),
            Err(Narrowing::TooLarge(chars)) => {
                return Err(ApiError::bad_request(
                    "targets_too_large",
                    format!("the targets in archive {} need a {chars}-character session policy, over AWS's limit of {}; ask for fewer or shorter prefixes", archive.name, crate::vend::scope::MAX_INLINE_CHARS),
                ))
            }
        }
    }
    if !refused.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!(
                "your groups do not grant all of the targets, so no credential was issued: {}",
                refused.join("; ")
            ),
        ));
    }
    // Every part's region, before anything is issued.
    let mut outside: Vec<&str> = Vec::new();
    for p in &parts {
        if placed(&state, p.archive, &user)? == Placement::OutOfRegion {
            outside.push(&p.archive.settings.sts.region);
        }
    }
    outside.sort_unstable();
    outside.dedup();
    let cache = &state.settings.cache;
    let vended = futures_util::future::try_join_all(parts.iter().map(|p| {
        let max = p.archive.settings.sts.duration_seconds;
        let min_remaining = narrow::min_remaining(
            Format::CredentialProcess.min_remaining(cache),
            p.lifetime.unwrap_or(max),
            max,
        );
        p.archive.vendor.vend_for(
            crate::http::credentials::principal(&user),
            &p.scope,
            p.lifetime,
            min_remaining,
            user.at,
            p.archive.settings.sts.timeout,
        )
    }))
    .await
    .map_err(|e| sts_failure(&e))?;
    let mut credentials = Vec::with_capacity(parts.len());
    for (p, v) in parts.iter().zip(&vended) {
        audit::vended(&req, &user, p.archive, &p.scope, v, audit::BUNDLE_FORMAT);
        credentials.push(BundleEntry::new(
            &p.archive.name,
            &p.archive.settings.sts.region,
            p.targets.iter().map(Target::to_string).collect(),
            &v.credentials,
        ));
    }
    let mut res = carrying_credentials(crate::vend::format::render_bundle(&credentials));
    if !outside.is_empty() {
        res.headers_mut()
            .insert(WARNING_HEADER, out_of_region_warning(&outside));
    }
    Ok(res)
}
