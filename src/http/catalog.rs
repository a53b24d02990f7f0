//! What a client needs instead of a hard-coded table from bucket to endpoint:
//! `GET /s3credentials/locate?url=s3://bucket/key` (or `bucket_name=`, as NASA's TEA spells
//! it) says which archive serves an object and where its credentials come from;
//! `GET /s3credentials/archives` lists every archive.
//!
//! Anonymous callers see what a client needs to route: archives, their endpoints and regions,
//! bucket names, prefixes and whether a bucket is requester-pays (bucket names are public on
//! S3 anyway, and CMR publishes them). Which groups grant a bucket, and whether the caller may
//! read it and why not, are said only to a signed-in caller, about themselves.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::archive::Archive;
use crate::auth::AuthenticatedUser;
use crate::config::{validate_bucket_name, Bucket};
use crate::error::{quoted, ApiError};
use crate::http::extractor::MaybeUser;
use crate::http::state::AppState;
use crate::vend::policy;

/// Longest S3 key, in bytes.
const MAX_KEY: usize = 1024;

/// The query of `/s3credentials/locate`, as OpenAPI describes it.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct LocateQuery {
    /// `s3://bucket/key` (the key may be left out). Exactly one of `url` and `bucket_name`.
    #[param(
        pattern = r#"^s3://[a-z0-9][a-z0-9-]{1,61}[a-z0-9](/[^\u0000-\u001f\u007f-\u009f]{0,256})?$"#
    )]
    pub url: Option<String>,
    /// Just the bucket, as NASA's thin-egress-app asks.
    #[param(pattern = r#"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"#)]
    pub bucket_name: Option<String>,
}

/// Whether the caller may read what they asked about (signed-in callers only).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Access {
    pub readable: bool,
    /// Why not, in words the caller can act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Groups any one of which would grant the bucket (when the caller's do not).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups_granting: Vec<String>,
    /// The parts of the bucket the caller may read (when the asked key is outside them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub readable_prefixes: Vec<String>,
}

/// What `/s3credentials/locate` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Located {
    pub bucket: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub archive: String,
    pub title: String,
    /// Where the bucket is, and the region its credentials work in.
    pub region: String,
    /// Credentials are issued for the bucket (it is in its archive's region).
    pub in_region: bool,
    /// Readers pay: clients must send the requester-pays option.
    pub requester_pays: bool,
    /// The archive's own Earthdata-compatible endpoint.
    pub endpoint: String,
    /// A credential for just this object's bucket (or key's prefix) through the one endpoint.
    pub credentials_url: String,
    /// Present when the caller is signed in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

/// One bucket in `/s3credentials/archives`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ListedBucket {
    pub name: String,
    pub region: String,
    /// Key prefixes readable (empty: the whole bucket), for whoever it is granted to.
    pub prefixes: Vec<String>,
    pub in_region: bool,
    pub requester_pays: bool,
    /// Whether the signed-in caller may read it (absent for anonymous callers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readable: Option<bool>,
}

/// One archive in `/s3credentials/archives`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ListedArchive {
    pub name: String,
    pub title: String,
    /// `/s3credentials` without a target is this archive's.
    pub default: bool,
    pub region: String,
    /// Its own Earthdata-compatible endpoint, and what its credentials would cover.
    pub endpoint: String,
    pub scope_endpoint: String,
    /// How to use it, with recipes.
    pub readme: String,
    pub buckets: Vec<ListedBucket>,
}

/// What `/s3credentials/archives` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Catalog {
    /// Routes `?target=s3://...` to the archive that owns the bucket.
    pub endpoint: String,
    pub bundle_endpoint: String,
    pub locate_endpoint: String,
    /// How a caller may sign in (the same for every archive): `browser` (OIDC login),
    /// `netrc` (Earthdata's Basic redirect chain), `bearer` (a token from the IdP).
    pub login: Vec<&'static str>,
    pub archives: Vec<ListedArchive>,
}

fn in_region(archive: &Archive, b: &Bucket) -> bool {
    b.region == archive.settings.sts.region
}

/// Whether `user` may read `key` (None: anything) in `bucket` of `archive`, and if not, why.
fn access(archive: &Archive, b: &Bucket, key: Option<&str>, user: &AuthenticatedUser) -> Access {
    let settings = &archive.settings;
    let denied = |reason: String| Access {
        readable: false,
        reason: Some(reason),
        groups_granting: Vec::new(),
        readable_prefixes: Vec::new(),
    };
    if !in_region(archive, b) {
        return denied(format!(
            "the bucket is in {}; archive {} issues credentials for {} only",
            b.region, archive.name, settings.sts.region
        ));
    }
    let allowed = policy::allowed_buckets(settings, &user.groups);
    let Some(mine) = allowed.iter().find(|a| a.name == b.name) else {
        let mut access = denied(format!(
            "your groups do not grant this bucket; membership in one of these would: {}",
            b.groups.join(", ")
        ));
        access.groups_granting = b.groups.clone();
        return access;
    };
    let inside =
        |k: &str| mine.prefixes.is_empty() || mine.prefixes.iter().any(|p| k.starts_with(p));
    match key {
        Some(k) if !inside(k) => {
            let mut access =
                denied("the key is outside the parts of this bucket you may read".to_owned());
            access.readable_prefixes = mine
                .prefixes
                .iter()
                .map(|p| format!("s3://{}/{p}", b.name))
                .collect();
            access
        }
        _ => Access {
            readable: true,
            reason: None,
            groups_granting: Vec::new(),
            readable_prefixes: Vec::new(),
        },
    }
}

/// `url=` or `bucket_name=`: the bucket, and the key when the URL has one.
fn asked(query: &str) -> Result<(String, Option<String>), ApiError> {
    let mut url = None;
    let mut bucket_name = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "url" => url = Some(value.into_owned()),
            "bucket_name" => bucket_name = Some(value.into_owned()),
            _ => {}
        }
    }
    let invalid = |m: String| ApiError::bad_request("invalid_url", m);
    let (bucket, key) = match (url, bucket_name) {
        (Some(u), None) => {
            let rest = u.strip_prefix("s3://").ok_or_else(|| {
                invalid(format!("url {} must be s3://bucket/key", quoted(&u, 80)))
            })?;
            match rest.split_once('/') {
                Some((b, k)) if !k.is_empty() => (b.to_owned(), Some(k.to_owned())),
                Some((b, _)) => (b.to_owned(), None),
                None => (rest.to_owned(), None),
            }
        }
        (None, Some(b)) => (b, None),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "ask with exactly one of url=s3://bucket/key or bucket_name=bucket",
            ))
        }
    };
    validate_bucket_name(&bucket).map_err(|e| invalid(format!("bucket {e}")))?;
    if let Some(k) = &key {
        if k.len() > MAX_KEY || k.chars().any(char::is_control) {
            return Err(invalid(format!(
                "the key must be at most {MAX_KEY} bytes without control characters"
            )));
        }
    }
    Ok((bucket, key))
}

/// `GET /s3credentials/locate`.
pub async fn locate(
    req: HttpRequest,
    user: MaybeUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (bucket, key) = asked(req.query_string())?;
    let Some(archive) = state.archives.owner(&bucket) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_bucket",
            format!("no archive of this service serves bucket {bucket}"),
        ));
    };
    let Some(b) = archive.bucket(&bucket) else {
        return Err(ApiError::not_found());
    };
    let target = match &key {
        // The key's folder: a credential for the prefix it is under.
        Some(k) => format!(
            "s3://{bucket}/{}",
            k.rsplit_once('/').map_or("", |(p, _)| p)
        ),
        None => format!("s3://{bucket}/"),
    };
    let target = if target.ends_with('/') {
        target
    } else {
        format!("{target}/")
    };
    let credentials_url = format!(
        "{}?{}",
        state.login.absolute("/s3credentials"),
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("target", &target)
            .finish()
    );
    let located = Located {
        access: user
            .0
            .as_ref()
            .map(|u| access(archive, b, key.as_deref(), u)),
        bucket: b.name.clone(),
        key,
        archive: archive.name.to_string(),
        title: archive.title.to_string(),
        region: b.region.clone(),
        in_region: in_region(archive, b),
        requester_pays: b.requester_pays,
        endpoint: state
            .login
            .absolute(&format!("{}/s3credentials", archive.path)),
        credentials_url,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .insert_header((header::VARY, "Cookie, Authorization"))
        .json(located))
}

/// `GET /s3credentials/archives`.
pub async fn archives(user: MaybeUser, state: web::Data<AppState>) -> HttpResponse {
    let default: &str = &state.archives.default_archive().name;
    let listed = state
        .archives
        .all()
        .iter()
        .map(|a| {
            let allowed = user
                .0
                .as_ref()
                .map(|u| policy::allowed_buckets(&a.settings, &u.groups));
            ListedArchive {
                name: a.name.to_string(),
                title: a.title.to_string(),
                default: &*a.name == default,
                region: a.settings.sts.region.clone(),
                endpoint: state.login.absolute(&format!("{}/s3credentials", a.path)),
                scope_endpoint: state
                    .login
                    .absolute(&format!("{}/s3credentials/scope", a.path)),
                readme: state
                    .login
                    .absolute(&format!("{}/s3credentialsREADME", a.path)),
                buckets: a
                    .settings
                    .buckets
                    .iter()
                    .map(|b| ListedBucket {
                        name: b.name.clone(),
                        region: b.region.clone(),
                        prefixes: b.prefixes.clone(),
                        in_region: in_region(a, b),
                        requester_pays: b.requester_pays,
                        readable: allowed
                            .as_ref()
                            .map(|mine| mine.iter().any(|m| m.name == b.name)),
                    })
                    .collect(),
            }
        })
        .collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .insert_header((header::VARY, "Cookie, Authorization"))
        .json(Catalog {
            endpoint: state.login.absolute("/s3credentials"),
            bundle_endpoint: state.login.absolute("/s3credentials/bundle"),
            locate_endpoint: state.login.absolute("/s3credentials/locate"),
            login: vec!["browser", "netrc", "bearer"],
            archives: listed,
        })
}
