//! The HTTP API as OpenAPI 3.1, generated from the handlers' types and the annotations here,
//! served at `GET /openapi.json`. Schemathesis checks the running service against it
//! (tests/contract).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::http::auth::{TicketShown, WhoAmI};
use crate::http::catalog::{Access, Catalog, ListedArchive, ListedBucket, Located};
use crate::http::credentials::{Scope, ScopeBucket};
use crate::http::objects::Link;
use crate::http::tickets::{MintRequest, Minted, TicketList};
use crate::tickets::Listed;
use crate::vend::format::{Bundle, BundleEntry, Container, CredentialProcess, Earthdata};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "stsvend",
        description = "Temporary, read-only, in-region S3 credentials for users who signed in with OpenID Connect.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        s3credentials, scope, bundle, locate, archives, tickets_list, tickets_mint, tickets_delete,
        link, readme, login, logout, logout_post, whoami,
        healthz, readyz, openapi_json, favicon
    ),
    components(schemas(
        Earthdata, CredentialProcess, Container, ErrorBody, Scope, ScopeBucket, Link, WhoAmI, Health,
        Ready, Credentials, Bundle, BundleEntry, Located, Access, Catalog, ListedArchive, ListedBucket,
        MintRequest, Minted, TicketList, Listed, TicketShown
    )),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from the identity provider (Earthdata Login: Generate Token), a platform's token for its user (`[[platforms]]`), or a ticket (`stsvend_tk1_...`, from POST /s3credentials/tickets).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "stsvend_session",
                "The session cookie set after a browser or .netrc login (named __Host-<cookie_name> over https).",
            ))),
        );
    }
}

/// One archive's own endpoints in the document: where, and its longest lifetime.
pub struct ArchivePaths<'a> {
    pub path: &'a str,
    pub max_duration: u32,
}

/// The document for this deployment, rendered once at startup: what `duration_seconds` may ask
/// for (`max_duration`: the longest of any archive, which `/s3credentials` may route to), and
/// each archive's own endpoints, described as the service's are.
pub fn document(max_duration: u32, archives: &[ArchivePaths<'_>]) -> String {
    let Ok(mut doc) = serde_json::to_value(ApiDoc::openapi()) else {
        return "{}".to_owned();
    };
    let set_max = |doc: &mut serde_json::Value, path: &str, max: u32| {
        let params = doc
            .pointer_mut(&format!(
                "/paths/{}/get/parameters",
                path.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(|p| p.as_array_mut());
        for p in params.into_iter().flatten() {
            if p["name"] == "duration_seconds" {
                p["schema"]["maximum"] = max.into();
            }
        }
    };
    for path in [
        "/s3credentials",
        "/s3credentials/scope",
        "/s3credentials/bundle",
    ] {
        set_max(&mut doc, path, max_duration);
    }
    // A ticket request may have no body at all (`curl -X POST`): every field has a default.
    if let Some(body) = doc.pointer_mut("/paths/~1s3credentials~1tickets/post/requestBody") {
        body["required"] = serde_json::Value::Bool(false);
    }
    for archive in archives {
        for own in [
            "/s3credentials",
            "/s3credentials/scope",
            "/s3credentialsREADME",
        ] {
            let mut item = doc["paths"][own].clone();
            if let Some(get) = item.get_mut("get") {
                get["tags"] = serde_json::json!(["archives"]);
                if let Some(id) = get.get("operationId").and_then(|v| v.as_str()) {
                    get["operationId"] = format!(
                        "{id}_{}",
                        archive
                            .path
                            .trim_start_matches('/')
                            .replace(['/', '.', '~'], "_")
                    )
                    .into();
                }
            }
            let at = format!("{}{own}", archive.path);
            doc["paths"][&at] = item;
            set_max(&mut doc, &at, archive.max_duration);
        }
    }
    doc.to_string()
}

/// The three credential formats (`format=earthdata|credential-process|container`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum Credentials<'a> {
    Earthdata(Earthdata<'a>),
    CredentialProcess(CredentialProcess<'a>),
    Container(Container<'a>),
}

/// Liveness answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// Readiness answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    pub status: String,
    /// `oidc_discovery`: "ok"; `sts`: "ok", "circuit_open" or "circuit_half_open".
    #[schema(value_type = Object)]
    pub checks: serde_json::Value,
}

// Operation descriptions. The handlers live in `routes`; these functions only carry the
// annotations (actix handlers take extractors utoipa cannot see through).

#[utoipa::path(
    get, path = "/s3credentials", tag = "credentials",
    params(crate::http::credentials::CredentialQuery),
    security(("bearer" = []), ("session" = []), ()),
    responses(
        (status = 200, description = "Credentials, in the format asked for. `Cache-Control: no-store`.",
            body = Credentials, content_type = "application/json",
            headers(
                ("Cache-Control" = String, description = "always `no-store`"),
                ("Pragma" = String, description = "always `no-cache`"),
                ("x-request-id" = String),
                ("stsvend-warning" = String, description = "present when the caller is outside the archive's region (`out_of_region: ...`): the credential will not work from there"),
            )),
        (status = 302, description = "No credentials: sent to the identity provider to log in (scripts get Earthdata's `app_type=401`).",
            headers(("Location" = String), ("Set-Cookie" = String), ("Cache-Control" = String))),
        (status = 400, description = "Unknown `format`, a `target` that is not a bucket or a safe key prefix, more than 20 targets, targets too many for one session policy, targets in more than one archive (`targets_in_several_archives`: ask `/s3credentials/bundle`), or `duration_seconds` out of range.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "Bad or expired bearer token, or no credentials and the client asked for JSON only.",
            content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"stsvend\"[, error=\"invalid_token\", ...]`"))),
        (status = 403, description = "Authenticated, but the user's groups grant no bucket in the region, or not every `target` (each one not covered is named), or (`network.out_of_region = \"refuse\"`) the caller is outside the archive's region (`out_of_region`).", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 429, description = "Too many checks of unknown tokens from this address, or this user has caused too many new credentials (narrowings, lifetimes) lately (`too_many_new_credentials`; cached ones are still served).", content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("Retry-After" = String))),
        (status = 502, description = "STS refused to issue credentials (a configuration problem; details in the logs).", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 503, description = "STS or the identity provider cannot be reached, the STS circuit breaker is open, or (fleet mode) this replica has not yet read which accounts are revoked.", content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("Retry-After" = String))),
    )
)]
#[allow(dead_code)]
fn s3credentials() {}

#[utoipa::path(
    get, path = "/s3credentials/scope", tag = "credentials",
    params(crate::http::credentials::CredentialQuery),
    security(("bearer" = []), ("session" = []), ()),
    responses(
        (status = 200, description = "What credentials for the same query would cover, and for how long. No STS call.", body = Scope,
            headers(("Cache-Control" = String))),
        (status = 400, description = "A bad `target` or `duration_seconds` (as for `/s3credentials`).", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "Not every `target` is inside what the user may read.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 302, description = "Sent to log in.", headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, description = "Bad token, or JSON-only client without credentials.", content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("WWW-Authenticate" = String))),
        (status = 429, description = "Rate limited.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
        (status = 503, description = "The identity provider cannot be reached.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
    )
)]
#[allow(dead_code)]
fn scope() {}

#[utoipa::path(
    get, path = "/s3credentials/bundle", tag = "credentials",
    params(crate::http::bundle::BundleQuery),
    security(("bearer" = []), ("session" = []), ()),
    responses(
        (status = 200, description = "One credential per archive the targets touch, each for just its targets (from its archive's cache). `Cache-Control: no-store`.", body = Bundle,
            headers(("Cache-Control" = String), ("Pragma" = String),
                ("stsvend-warning" = String, description = "present when the caller is outside one of the archives' regions"))),
        (status = 302, description = "Sent to log in.", headers(("Location" = String), ("Set-Cookie" = String), ("Cache-Control" = String))),
        (status = 400, description = "No `target`, a bad `target` or `duration_seconds`, more than 20 targets, or a `format` (a bundle has one).", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "Bad token, or JSON-only client without credentials.", content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "A target the caller may not read (each is named), or an out-of-region caller the deployment refuses: nothing is issued.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 429, description = "Rate limited.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
        (status = 502, description = "STS refused to issue a credential.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 503, description = "STS or the identity provider cannot be reached.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
    )
)]
#[allow(dead_code)]
fn bundle() {}

#[utoipa::path(
    get, path = "/s3credentials/locate", tag = "archives",
    params(crate::http::catalog::LocateQuery),
    security(("bearer" = []), ("session" = []), ()),
    responses(
        (status = 200, description = "The archive that serves the bucket, where its credentials come from, and (signed-in callers) whether they may read it and why not.", body = Located,
            headers(("Cache-Control" = String), ("Vary" = String))),
        (status = 400, description = "Neither or both of `url` and `bucket_name`, or not an `s3://` URL of a valid bucket.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "A bearer token that is not valid.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("WWW-Authenticate" = String))),
        (status = 404, description = "No archive here serves the bucket.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 429, description = "Rate limited.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
        (status = 503, description = "The identity provider cannot be reached.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
    )
)]
#[allow(dead_code)]
fn locate() {}

#[utoipa::path(
    get, path = "/s3credentials/archives", tag = "archives",
    security(("bearer" = []), ("session" = []), ()),
    responses(
        (status = 200, description = "Every archive: its endpoints, region and buckets (and for a signed-in caller, which they may read).", body = Catalog,
            headers(("Cache-Control" = String), ("Vary" = String))),
        (status = 401, description = "A bearer token that is not valid.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("WWW-Authenticate" = String))),
        (status = 429, description = "Rate limited.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
        (status = 503, description = "The identity provider cannot be reached.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
    )
)]
#[allow(dead_code)]
fn archives() {}

#[utoipa::path(
    get, path = "/s3credentials/tickets", tag = "tickets",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The caller's live tickets, newest first (never their secrets). `Cache-Control: no-store`.", body = TicketList,
            headers(("Cache-Control" = String))),
        (status = 302, description = "Sent to log in.", headers(("Location" = String), ("Set-Cookie" = String), ("Cache-Control" = String))),
        (status = 401, description = "Bad token or ticket, or JSON-only client without credentials.", content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "A ticket cannot list tickets (`ticket_not_allowed`), or the user is revoked.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, description = "Tickets are turned off in this deployment.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 429, description = "Rate limited.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
        (status = 503, description = "The identity provider cannot be reached, or this replica has not yet read the fleet's tickets.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
    )
)]
#[allow(dead_code)]
fn tickets_list() {}

#[utoipa::path(
    post, path = "/s3credentials/tickets", tag = "tickets",
    request_body(content((MintRequest = "application/json"), (MintRequest = "application/x-www-form-urlencoded")),
        description = "What the ticket may read, for how long. A browser session must post from this service's page (same `Origin`, the form's `csrf`)."),
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 201, description = "The ticket, shown this once: machines send it as `Authorization: Bearer <ticket>` to `/s3credentials` and object links (a page showing it, for the page's form in a browser). `Cache-Control: no-store`.",
            content((Minted = "application/json"), (String = "text/html")),
            headers(("Cache-Control" = String), ("Pragma" = String))),
        (status = 302, description = "Sent to log in.", headers(("Location" = String), ("Set-Cookie" = String), ("Cache-Control" = String))),
        (status = 400, description = "A body that is not a ticket request, a bad `target`, more than 20 targets, a `duration_seconds` or `expires_in` out of range, or a bad `label`.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "Bad token or ticket, or JSON-only client without credentials.", content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "A target the caller may not read (each is named), a ticket asking for a ticket (`ticket_not_allowed`), a session's post from another page (`cross_site_request`), or the user is revoked.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, description = "Tickets are turned off in this deployment.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 409, description = "The caller already holds the most live tickets one user may (`too_many_tickets`): delete one.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 415, description = "A body that is neither JSON nor a form.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 429, description = "Rate limited.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
        (status = 503, description = "The identity provider cannot be reached, or this replica has not yet read the fleet's tickets.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
    )
)]
#[allow(dead_code)]
fn tickets_mint() {}

#[utoipa::path(
    delete, path = "/s3credentials/tickets/{id}", tag = "tickets",
    params(("id" = String, Path, description = "The ticket's id (from the list, or the answer that made it).", max_length = 64)),
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 204, description = "The ticket is ended, on every replica within a second (and for good)."),
        (status = 302, description = "Sent to log in.", headers(("Location" = String), ("Set-Cookie" = String), ("Cache-Control" = String))),
        (status = 401, description = "Bad token or ticket, or JSON-only client without credentials.", content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "A ticket cannot delete tickets, a session's request from another page, or the user is revoked.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, description = "The caller has no live ticket with this id (`unknown_ticket`), or tickets are turned off.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 429, description = "Rate limited.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
        (status = 503, description = "The identity provider cannot be reached, or this replica has not yet read the fleet's tickets.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
    )
)]
#[allow(dead_code)]
fn tickets_delete() {}

#[utoipa::path(
    method(get, head), path = "/s3/{bucket}/{key}", tag = "links",
    params(
        ("bucket" = String, Path, description = "A bucket this service serves in its region."),
        ("key" = String, Path, description = "The object's key (may contain `/`; no `.` or `..` segments).", max_length = 256, pattern = r#"^([^/.\u0000-\u001f\u007f-\u009f]|\.[^/.\u0000-\u001f\u007f-\u009f]|\.\.[^/\u0000-\u001f\u007f-\u009f])[^/\u0000-\u001f\u007f-\u009f]*$"#),
        crate::http::objects::LinkQuery,
    ),
    security(("bearer" = []), ("session" = []), ()),
    responses(
        (status = 307, description = "To the object's presigned URL, signed with the caller's own session credential; follow it with no credentials. `Cache-Control: private, max-age=<life - 60>`.",
            headers(("Location" = String), ("Cache-Control" = String), ("Referrer-Policy" = String))),
        (status = 200, description = "For `Accept: application/json`: the URL (a presigned `HEAD` for `HEAD`) and when it stops working. `Cache-Control: no-store`.", body = Link,
            headers(("Cache-Control" = String))),
        (status = 302, description = "Sent to log in.", headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 400, description = "A key clients would rewrite (`.`/`..` segments, control characters, over 1,024 bytes) or a bad `expires_in`.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "Bad token, or JSON-only client without credentials.", content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "The key is outside what the caller may read: nothing is signed.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, description = "A bucket this service does not serve.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 429, description = "Rate limited (per address, or the user's share of new credentials when the signing credential is not cached).", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
        (status = 502, description = "STS refused to issue the signing credential.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 503, description = "STS or the identity provider cannot be reached.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
    )
)]
#[allow(dead_code)]
fn link() {}

#[utoipa::path(
    get, path = "/s3credentialsREADME", tag = "documentation",
    responses((status = 200, description = "How to use the credentials (HTML).", body = String, content_type = "text/html"))
)]
#[allow(dead_code)]
fn readme() {}

#[utoipa::path(
    get, path = "/login", tag = "login",
    params(
        ("code" = Option<String>, Query, description = "Authorization code from the identity provider"),
        ("state" = Option<String>, Query, description = "The login's state"),
        ("iss" = Option<String>, Query, description = "RFC 9207 issuer"),
        ("error" = Option<String>, Query, description = "Error from the identity provider"),
        ("error_description" = Option<String>, Query),
        ("return_to" = Option<String>, Query, description = "Local path to return to after a login this request starts (at most 512 characters)"),
    ),
    responses(
        (status = 302, description = "Without `code`/`state`/`error`: a login starts (to the identity provider). After a successful callback: back to the return path with the session cookie.",
            headers(("Location" = String), ("Set-Cookie" = String), ("Cache-Control" = String))),
        (status = 400, description = "Bad `return_to`, an error from the identity provider, or no login in progress for this `state` (missing, expired or already used).", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 429, description = "Too many callbacks from this address.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
        (status = 502, description = "The identity provider could not be reached or returned no usable ID token.", content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 503, description = "The identity provider has not been discovered yet.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
    )
)]
#[allow(dead_code)]
fn login() {}

#[utoipa::path(
    get, path = "/logout", tag = "login",
    responses(
        (status = 200, description = "Session cleared (the identity provider has no logout endpoint).", content_type = "application/json", headers(("Set-Cookie" = String))),
        (status = 302, description = "Session cleared; on to the identity provider's logout.", headers(("Location" = String), ("Set-Cookie" = String))),
    )
)]
#[allow(dead_code)]
fn logout() {}

#[utoipa::path(
    post, path = "/logout", tag = "login",
    responses(
        (status = 200, description = "Session cleared (the identity provider has no logout endpoint).", content_type = "application/json", headers(("Set-Cookie" = String))),
        (status = 303, description = "Session cleared; on to the identity provider's logout.", headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 403, description = "Sent from another site's page (`Origin` is not this service).", body = ErrorBody, content_type = "application/json"),
    )
)]
#[allow(dead_code)]
fn logout_post() {}

#[utoipa::path(
    get, path = "/whoami", tag = "login",
    security(("bearer" = []), ("session" = []), ()),
    responses(
        (status = 200, description = "The caller as stsvend sees them.", body = WhoAmI),
        (status = 302, description = "Sent to log in.", headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, description = "Bad token, or JSON-only client without credentials.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("WWW-Authenticate" = String))),
        (status = 429, description = "Rate limited.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
        (status = 503, description = "The identity provider cannot be reached.", content((ErrorBody = "application/json"), (String = "text/html")), headers(("Retry-After" = String))),
    )
)]
#[allow(dead_code)]
fn whoami() {}

#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process serves requests.", body = Health))
)]
#[allow(dead_code)]
fn healthz() {}

#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready (also while the STS breaker is open: cached users are served).", body = Ready),
        (status = 503, description = "OIDC discovery has not succeeded yet.", content((ErrorBody = "application/json"), (String = "text/html"))),
    )
)]
#[allow(dead_code)]
fn readyz() {}

#[utoipa::path(
    get, path = "/openapi.json", tag = "documentation",
    responses((status = 200, description = "This document.", content_type = "application/json"))
)]
#[allow(dead_code)]
fn openapi_json() {}

#[utoipa::path(
    get, path = "/favicon.ico", tag = "documentation",
    responses((status = 204, description = "No icon."))
)]
#[allow(dead_code)]
fn favicon() {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    /// Schema-valid means accepted: the document says this deployment's range.
    #[test]
    fn the_document_says_this_deployments_longest_lifetime() {
        let d: serde_json::Value = serde_json::from_str(&super::document(
            2700,
            &[super::ArchivePaths {
                path: "/archives/second",
                max_duration: 900,
            }],
        ))
        .unwrap();
        for path in ["/s3credentials", "/s3credentials/scope"] {
            let params = d["paths"][path]["get"]["parameters"].as_array().unwrap();
            let duration = params
                .iter()
                .find(|p| p["name"] == "duration_seconds")
                .unwrap();
            assert_eq!(duration["schema"]["maximum"], 2700, "{path}");
            let target = params.iter().find(|p| p["name"] == "target").unwrap();
            assert_eq!(target["schema"]["maxItems"], 20, "{path}");
        }
        let own = &d["paths"]["/archives/second/s3credentials"]["get"]["parameters"];
        let duration = own
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "duration_seconds")
            .unwrap();
        assert_eq!(duration["schema"]["maximum"], 900);
    }
}
