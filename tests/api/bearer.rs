//! `Authorization: Bearer` tokens, verified against the real IdP's keys.

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use crate::helpers::{components, idp_token, mint, spawn_app_against, spawn_ready_app, TestApp};

async fn whoami(app: &TestApp, token: &str) -> reqwest::Response {
    app.get_as("/whoami", token).await
}

async fn assert_invalid_token(app: &TestApp, token: &str, why: &str) {
    let res = whoami(app, token).await;
    assert_eq!(res.status(), 401, "{why}");
    assert!(
        res.headers().get("location").is_none(),
        "{why}: never a redirect"
    );
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
        "{why}: {challenge}"
    );
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token", "{why}");
}

#[tokio::test]
async fn a_token_from_the_idp_token_api_is_accepted() {
    let app = spawn_ready_app().await;
    let token = idp_token(&app.issuer, "carol", "carol-pw").await;
    let res = whoami(&app, &token).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["user_id"], "carol");
    assert_eq!(body["groups"], json!(["restricted", "science"]));
    assert_eq!(body["authenticated_by"], "bearer");
    // Second use comes from the verified-token cache and answers the same.
    let again: serde_json::Value = whoami(&app, &token).await.json().await.unwrap();
    assert_eq!(again, body);
}

#[tokio::test]
async fn a_tampered_signature_is_rejected() {
    let app = spawn_ready_app().await;
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut sig: Vec<char> = sig.chars().collect();
    sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{rest}.{}", sig.into_iter().collect::<String>());
    assert_invalid_token(&app, &tampered, "tampered signature").await;

    // Changing the payload (granting groups) breaks the signature as well.
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["groups"] = json!(["restricted"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.to_string()),
        parts[2]
    );
    assert_invalid_token(&app, &forged, "edited payload").await;
}

#[tokio::test]
async fn alg_none_and_hmac_tokens_are_rejected() {
    let app = spawn_ready_app().await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = json!({
        "iss": app.issuer, "sub": "alice", "aud": "stsvend-local",
        "exp": chrono::Utc::now().timestamp() + 3600, "groups": ["restricted"],
    });
    let none = format!(
        "{}.{}.",
        b64.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        b64.encode(payload.to_string())
    );
    assert_invalid_token(&app, &none, "alg none").await;
    // HS256 "signed" with the public key: the classic algorithm-confusion attack.
    let hs = format!(
        "{}.{}.{}",
        b64.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string()),
        b64.encode(payload.to_string()),
        b64.encode([7u8; 32])
    );
    assert_invalid_token(&app, &hs, "HS256").await;
}

#[tokio::test]
async fn expired_wrong_audience_wrong_issuer_and_unknown_kid_are_rejected() {
    let app = spawn_ready_app().await;
    let now = chrono::Utc::now().timestamp();
    let expired = mint(
        &app.issuer,
        json!({"exp": now - 3600, "iat": now - 7200}),
        json!({}),
    )
    .await;
    assert_invalid_token(&app, &expired, "expired").await;
    let aud = mint(&app.issuer, json!({"aud": "someone-else"}), json!({})).await;
    assert_invalid_token(&app, &aud, "wrong aud").await;
    let iss = mint(&app.issuer, json!({"iss": "http://127.0.0.1:1"}), json!({})).await;
    assert_invalid_token(&app, &iss, "wrong iss").await;
    let kid = mint(
        &app.issuer,
        json!({}),
        json!({"kid": "not-a-published-key"}),
    )
    .await;
    assert_invalid_token(&app, &kid, "unknown kid").await;
    let nbf = mint(&app.issuer, json!({"nbf": now + 3600}), json!({})).await;
    assert_invalid_token(&app, &nbf, "not yet valid").await;
    let no_exp = mint(&app.issuer, json!({"exp": null}), json!({})).await;
    assert_invalid_token(&app, &no_exp, "no exp").await;
    // The control: the same minting with nothing wrong is accepted.
    let good = mint(&app.issuer, json!({}), json!({})).await;
    assert_eq!(whoami(&app, &good).await.status(), 200);
}

#[tokio::test]
async fn leeway_is_at_most_sixty_seconds() {
    let app = spawn_ready_app().await;
    let now = chrono::Utc::now().timestamp();
    let just_expired = mint(&app.issuer, json!({"exp": now - 30}), json!({})).await;
    assert_eq!(
        whoami(&app, &just_expired).await.status(),
        200,
        "within leeway"
    );
    let long_expired = mint(&app.issuer, json!({"exp": now - 120}), json!({})).await;
    assert_invalid_token(&app, &long_expired, "beyond leeway").await;
}

#[tokio::test]
async fn a_cached_token_still_expires_on_time() {
    let app = spawn_ready_app().await;
    let now = chrono::Utc::now().timestamp();
    let token = mint(&app.issuer, json!({"exp": now + 600}), json!({})).await;
    assert_eq!(whoami(&app, &token).await.status(), 200);
    app.clock.advance(Duration::from_secs(600 + 61));
    assert_invalid_token(&app, &token, "expired while cached").await;
}

#[tokio::test]
async fn garbage_and_empty_tokens_are_401() {
    let app = spawn_ready_app().await;
    for token in ["abc", "a.b.c", "....", &"x".repeat(20_000)] {
        assert_invalid_token(&app, token, token).await;
    }
    let res = app
        .http
        .get(app.url("/whoami"))
        .header("authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_refetches_the_jwks_at_most_once_per_interval() {
    // A dedicated IdP so its log counts only this test's key fetches.
    let (idp, port) = tokio::task::spawn_blocking(crate::helpers::start_idp_anywhere)
        .await
        .unwrap();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = spawn_app_against(&issuer, &components().moto_endpoint, |f| f).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let before = jwks_fetches(&idp.log);
    for i in 0..25 {
        let forged = mint(&issuer, json!({}), json!({"kid": format!("forged-{i}")})).await;
        assert_invalid_token(&app, &forged, "forged kid").await;
    }
    let refetches = jwks_fetches(&idp.log) - before;
    assert!(
        refetches <= 1,
        "{refetches} JWKS fetches for 25 forged tokens"
    );
    assert!(refetches == 1, "an unknown kid should trigger one refresh");
}

fn jwks_fetches(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"msg\":\"jwks\""))
        .count()
}

async fn opaque_token(issuer: &str, user: &str) -> String {
    opaque_token_for(issuer, user, crate::helpers::CLIENT_ID).await
}

#[tokio::test]
async fn opaque_tokens_are_checked_at_userinfo_only_when_enabled() {
    let app = spawn_ready_app().await;
    let token = opaque_token(&app.issuer, "carol").await;
    assert!(token.split('.').count() != 3, "opaque, not a JWT");
    assert_invalid_token(&app, &token, "opaque tokens are off by default").await;

    let app = crate::helpers::spawn_app_with(|f| {
        f.merge(figment::providers::Serialized::default(
            "oidc.accept_opaque_tokens",
            true,
        ))
    })
    .await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let res = whoami(&app, &token).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["user_id"], "carol");
    assert_eq!(body["groups"], json!(["restricted", "science"]));
    assert_invalid_token(&app, "not-a-real-opaque-token", "unknown to the IdP").await;
}

async fn opaque_token_for(issuer: &str, user: &str, client_id: &str) -> String {
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{issuer}/test/mint-opaque"))
        .json(&json!({"sub": user, "client_id": client_id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().unwrap().to_owned()
}

fn opaque_app_settings(burst: u32) -> impl FnOnce(figment::Figment) -> figment::Figment {
    move |f| {
        use figment::providers::Serialized;
        f.merge(Serialized::default("oidc.accept_opaque_tokens", true))
            .merge(Serialized::default("limits.idp_requests_per_minute", 1))
            .merge(Serialized::default("limits.idp_burst", burst))
    }
}

/// Review finding 1c: opaque tokens are bound to this client by introspection; a token the
/// IdP issued to another application is refused, though userinfo would accept it.
#[tokio::test]
async fn an_opaque_token_issued_to_another_application_is_refused() {
    let app = crate::helpers::spawn_app_with(opaque_app_settings(20)).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let foreign = opaque_token_for(&app.issuer, "carol", "other-app").await;
    // The IdP's userinfo accepts it: only introspection tells whose it is.
    let userinfo = reqwest::Client::new()
        .get(format!("{}/oauth/userinfo", app.issuer))
        .bearer_auth(&foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 200);
    assert_invalid_token(&app, &foreign, "issued to another client").await;
    let ours = opaque_token_for(&app.issuer, "carol", crate::helpers::CLIENT_ID).await;
    let res = whoami(&app, &ours).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["groups"], json!(["restricted", "science"]));
}

/// Review finding 1c: a refused opaque token is remembered briefly (replaying it costs the
/// IdP nothing), and checks of new unknown tokens are limited per client.
#[tokio::test]
async fn refused_opaque_tokens_are_remembered_and_new_ones_rate_limited() {
    let app = crate::helpers::spawn_app_with(opaque_app_settings(2)).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    // The same bad token five times: one IdP check, then answered from memory.
    for _ in 0..5 {
        assert_invalid_token(&app, "bogus-opaque-token", "unknown to the IdP").await;
    }
    // Distinct bad tokens: the second uses the last of the burst, then 429.
    assert_invalid_token(&app, "bogus-opaque-token-2", "unknown to the IdP").await;
    let res = whoami(&app, "bogus-opaque-token-3").await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_some());
}

/// Review finding 1h: the groups of a bearer token are trusted for
/// `oidc.groups_max_age_seconds`; an older token's groups are re-read at the IdP, so removing
/// a user from a group (or disabling the account) takes effect within that time.
#[tokio::test]
async fn an_old_tokens_groups_are_re_read_at_the_idp() {
    let app = spawn_ready_app().await;
    let set_account = |sub: String, body: serde_json::Value| {
        let issuer = app.issuer.clone();
        async move {
            let mut body = body;
            body["sub"] = json!(sub);
            let res = reqwest::Client::new()
                .post(format!("{issuer}/test/account"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    };
    let now = chrono::Utc::now().timestamp();
    let token_for = |sub: &str, iat: i64| {
        mint(
            &app.issuer,
            json!({"sub": sub, "groups": ["science"], "iat": iat, "exp": now + 3600}),
            json!({}),
        )
    };
    let tag = uuid::Uuid::new_v4().simple().to_string();
    // A fresh token: its own groups count, whatever the IdP says now.
    let fresh_user = format!("fresh-{tag}");
    set_account(fresh_user.clone(), json!({"groups": []})).await;
    let fresh = token_for(&fresh_user, now - 60).await;
    assert_eq!(
        app.get_as("/s3credentials/scope", &fresh).await.status(),
        200
    );
    // Two hours old, and the user was removed from `science` since: no buckets any more.
    let removed_user = format!("removed-{tag}");
    set_account(removed_user.clone(), json!({"groups": []})).await;
    let old = token_for(&removed_user, now - 7200).await;
    let res = app.get_as("/s3credentials", &old).await;
    assert_eq!(res.status(), 403, "group removal must take effect");
    // Still in the group at the IdP: an old token keeps working.
    let kept_user = format!("kept-{tag}");
    set_account(kept_user.clone(), json!({"groups": ["science"]})).await;
    let kept = token_for(&kept_user, now - 7200).await;
    let res = app.get_as("/whoami", &kept).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["groups"], json!(["science"]));
    // A disabled account's old token stops working.
    let disabled_user = format!("disabled-{tag}");
    set_account(disabled_user.clone(), json!({"disabled": true})).await;
    let disabled = token_for(&disabled_user, now - 7200).await;
    assert_invalid_token(&app, &disabled, "account disabled at the IdP").await;
}

/// A disabled user's old token is refused once at the IdP, then from memory: retries do not
/// make stsvend ask the IdP again (review finding d).
#[tokio::test]
async fn a_refused_stale_token_is_not_rechecked_at_the_idp_on_every_retry() {
    let app = spawn_ready_app().await;
    let sub = format!("retry-disabled-{}", uuid::Uuid::new_v4().simple());
    let now = chrono::Utc::now().timestamp();
    let token = mint(
        &app.issuer,
        json!({"sub": sub, "groups": ["science"], "iat": now - 7200, "exp": now + 3600}),
        json!({}),
    )
    .await;
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/test/account", app.issuer))
        .json(&json!({"sub": sub, "disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let calls = || async {
        let body: serde_json::Value = http
            .get(format!("{}/test/userinfo-calls?sub={sub}", app.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["calls"].as_u64().unwrap()
    };
    for _ in 0..30 {
        assert_eq!(whoami(&app, &token).await.status(), 401);
    }
    let made = calls().await;
    assert!(made <= 1, "{made} userinfo calls for 30 retries");
}

/// A token whose `exp` lies at the end of what a date can hold is handled, not a panic that
/// drops the connection (review finding f): first verification and the cached path.
#[tokio::test]
async fn a_token_expiring_at_the_end_of_time_does_not_drop_the_connection() {
    let app = spawn_ready_app().await;
    // chrono's last second (+262142-12-31T23:59:59Z), within the leeway of it, and past it.
    for exp in [
        8_210_266_876_799_i64,
        8_210_266_876_799 - 30,
        8_210_266_876_800,
        i64::MAX / 1000,
    ] {
        let sub = format!("end-of-time-{}", uuid::Uuid::new_v4().simple());
        let now = chrono::Utc::now().timestamp();
        let token = mint(
            &app.issuer,
            json!({"sub": sub, "groups": ["science"], "iat": now, "exp": exp, "nbf": -8_334_601_228_800_i64}),
            json!({}),
        )
        .await;
        for attempt in 0..2 {
            let res = app
                .http
                .get(app.url("/whoami"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("exp {exp}, attempt {attempt}: {e}"));
            assert!(
                res.status() == 200 || res.status() == 401,
                "exp {exp}: {}",
                res.status()
            );
        }
    }
}

/// Only access tokens are bearer tokens: an ID token (no `typ`, or `JWT`, and ID-token claims)
/// signed by the same IdP for this client is refused; `oidc.bearer_token_types` admits `JWT`
/// for IdPs such as Earthdata Login whose user tokens say so, but never ID-token claims.
#[tokio::test]
async fn an_id_token_is_not_accepted_as_a_bearer_token() {
    let app = spawn_ready_app().await;
    let sub = format!("typ-{}", uuid::Uuid::new_v4().simple());
    let id_token_like = mint(
        &app.issuer,
        json!({"sub": sub, "groups": ["science"], "nonce": "n-0123456789", "aud": crate::helpers::CLIENT_ID}),
        json!({"typ": null}),
    )
    .await;
    let plain_jwt = mint(
        &app.issuer,
        json!({"sub": sub, "groups": ["science"]}),
        json!({"typ": "JWT"}),
    )
    .await;
    let access = mint(
        &app.issuer,
        json!({"sub": sub, "groups": ["science"]}),
        json!({}),
    )
    .await;
    let long_form = mint(
        &app.issuer,
        json!({"sub": sub, "groups": ["science"]}),
        json!({"typ": "application/at+JWT"}),
    )
    .await;
    assert_invalid_token(&app, &id_token_like, "an ID token").await;
    assert_invalid_token(&app, &plain_jwt, "typ JWT by default").await;
    assert_eq!(whoami(&app, &access).await.status(), 200);
    assert_eq!(whoami(&app, &long_form).await.status(), 200);

    let earthdata = crate::helpers::spawn_app_with(|f| {
        f.merge(figment::providers::Serialized::default(
            "oidc.bearer_token_types",
            ["at+jwt", "JWT"],
        ))
    })
    .await;
    assert!(earthdata.wait_ready(Duration::from_secs(15)).await);
    assert_eq!(whoami(&earthdata, &plain_jwt).await.status(), 200);
    let with_nonce = mint(
        &earthdata.issuer,
        json!({"sub": sub, "groups": ["science"], "nonce": "n-0123456789"}),
        json!({"typ": "JWT"}),
    )
    .await;
    assert_invalid_token(&earthdata, &with_nonce, "ID-token claims").await;
}
