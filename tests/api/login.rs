//! Browser and script login against the real IdP.

use std::collections::HashMap;
use std::time::Duration;

use crate::helpers::{
    browser_login, follow, jar_client, spawn_ready_app, TestApp, BROWSER_ACCEPT, BROWSER_UA,
    SCRIPT_UA,
};

fn query(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_browser_is_redirected_to_the_idp_with_pkce_state_nonce_and_scopes() {
    let app = spawn_ready_app().await;
    let res = app
        .http
        .get(app.url("/whoami"))
        .header("user-agent", BROWSER_UA)
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/oauth/authorize?", app.issuer)),
        "{location}"
    );
    let q = query(&location);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["code_challenge"].len() >= 43);
    assert!(q["state"].len() >= 16 && q["nonce"].len() >= 16);
    assert_eq!(q["redirect_uri"], app.url("/login"));
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    assert!(
        scopes.contains(&"openid") && scopes.contains(&"groups"),
        "{scopes:?}"
    );
    assert!(
        !q.contains_key("app_type"),
        "browsers get the login form, not a Basic challenge"
    );

    let cookies = set_cookies(&res);
    let login = cookies
        .iter()
        .find(|c| c.starts_with("stsvend_session_login_"))
        .expect("login-state cookie");
    assert!(
        login.contains("HttpOnly") && login.contains("SameSite=Lax"),
        "{login}"
    );
    assert!(
        login.contains("Path=/login") && login.contains("Max-Age=600"),
        "{login}"
    );
    assert!(!login.contains(&q["state"]), "login state is encrypted");
    assert_eq!(res.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn browser_login_through_the_idp_form_ends_on_whoami_with_user_and_groups() {
    let app = spawn_ready_app().await;
    let client = jar_client(BROWSER_UA);
    let (hops, res) = browser_login(&app, &client, "/whoami", "carol", "carol-pw").await;
    assert_eq!(res.status(), 200, "{hops:#?}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["user_id"], "carol");
    assert_eq!(body["groups"], serde_json::json!(["restricted", "science"]));
    assert_eq!(body["authenticated_by"], "session");
    assert!(body["expires_at"].as_str().is_some());

    // The callback set the session cookie with the right attributes and went back to /whoami.
    let callback = hops
        .iter()
        .find(|h| h.url.starts_with(&app.url("/login?")))
        .unwrap();
    assert_eq!(callback.status, 302);
    assert_eq!(
        callback.location.as_deref(),
        Some(app.url("/whoami").as_str())
    );
}

#[tokio::test]
async fn the_session_cookie_is_httponly_samesite_lax_and_encrypted() {
    let app = spawn_ready_app().await;
    let client = jar_client(BROWSER_UA);
    let (mut hops, _) = follow(&client, &app.url("/whoami"), &app.issuer, None).await;
    let form = hops.pop().unwrap().url;
    let res = client
        .post(format!("{form}/login"))
        .form(&[("username", "alice"), ("password", "alice-pw")])
        .send()
        .await
        .unwrap();
    let resume = reqwest::Url::parse(&form)
        .unwrap()
        .join(res.headers()["location"].to_str().unwrap())
        .unwrap();
    // Walk to the callback by hand to see its Set-Cookie headers.
    let mut url = resume.to_string();
    loop {
        let res = client.get(&url).send().await.unwrap();
        if url.starts_with(&app.url("/login?")) {
            let cookies = set_cookies(&res);
            let session = cookies
                .iter()
                .find(|c| c.starts_with("stsvend_session="))
                .expect("session cookie");
            assert!(session.contains("HttpOnly"), "{session}");
            assert!(session.contains("SameSite=Lax"), "{session}");
            assert!(session.contains("Path=/"), "{session}");
            assert!(
                !session.contains("alice"),
                "session content is encrypted: {session}"
            );
            // secure = false in the loopback test config; the attribute follows it.
            assert!(!session.contains("Secure"), "{session}");
            let cleared = cookies
                .iter()
                .find(|c| c.starts_with("stsvend_session_login_"))
                .expect("login cookie cleared");
            assert!(cleared.contains("Max-Age=0"), "{cleared}");
            break;
        }
        url = reqwest::Url::parse(&url)
            .unwrap()
            .join(res.headers()["location"].to_str().unwrap())
            .unwrap()
            .to_string();
    }
}

#[tokio::test]
async fn scripts_get_app_type_401_and_the_netrc_basic_chain_completes() {
    let app = spawn_ready_app().await;
    let res = app
        .http
        .get(app.url("/whoami"))
        .header("user-agent", SCRIPT_UA)
        .header("accept", "*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let q = query(res.headers()["location"].to_str().unwrap());
    assert_eq!(q.get("app_type").map(String::as_str), Some("401"));

    let client = jar_client(SCRIPT_UA);
    let (hops, res) = follow(
        &client,
        &app.url("/whoami"),
        &app.issuer,
        Some(("alice", "alice-pw")),
    )
    .await;
    assert_eq!(res.status(), 200, "{hops:#?}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["user_id"], "alice");
    assert_eq!(body["groups"], serde_json::json!(["science"]));
}

#[tokio::test]
async fn without_credentials_the_idp_answers_a_script_with_a_basic_challenge() {
    let app = spawn_ready_app().await;
    let client = jar_client(SCRIPT_UA);
    let (hops, res) = follow(&client, &app.url("/whoami"), &app.issuer, None).await;
    assert_eq!(res.status(), 401, "{hops:#?}");
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
}

#[tokio::test]
async fn curl_with_a_netrc_file_and_a_cookie_jar_ends_on_json() {
    let app = spawn_ready_app().await;
    let dir = tempfile::tempdir().unwrap();
    let netrc = dir.path().join("netrc");
    // One entry for the host: curl sends it to stsvend too, which must treat Basic as
    // "no credentials" rather than answering 401.
    std::fs::write(&netrc, "machine 127.0.0.1 login carol password carol-pw\n").unwrap();
    let jar = dir.path().join("jar");
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-L", "--max-redirs", "10", "--netrc-file"])
        .arg(&netrc)
        .arg("-c")
        .arg(&jar)
        .arg("-b")
        .arg(&jar)
        .arg(app.url("/whoami"))
        .output()
        .await
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(body["user_id"], "carol");
}

#[tokio::test]
async fn an_api_client_asking_for_json_gets_401_not_a_redirect() {
    let app = spawn_ready_app().await;
    let res = app
        .http
        .get(app.url("/whoami"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("location").is_none());
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "login_required");
}

#[tokio::test]
async fn a_basic_header_is_treated_as_no_credentials() {
    let app = spawn_ready_app().await;
    let res = app
        .http
        .get(app.url("/whoami"))
        .basic_auth("alice", Some("alice-pw"))
        .header("user-agent", SCRIPT_UA)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        302,
        "a .netrc Basic header must not be answered with 401"
    );
}

/// Start a login and return (the IdP's callback URL with code and state, the login cookie).
async fn login_until_callback(app: &TestApp, user: &str, password: &str) -> (String, String) {
    let client = jar_client(SCRIPT_UA);
    let start = client.get(app.url("/whoami")).send().await.unwrap();
    let login_cookie = set_cookies(&start)
        .into_iter()
        .find(|c| c.starts_with("stsvend_session_login_"))
        .unwrap();
    let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
    let mut url = reqwest::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    loop {
        let res = client
            .get(url.clone())
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap();
        let next = url
            .join(res.headers()["location"].to_str().unwrap())
            .unwrap();
        if next.as_str().starts_with(&app.url("/login?")) {
            return (next.to_string(), login_cookie);
        }
        url = next;
    }
}

/// GET `url` (absolute) sending `cookie` (a `name=value` pair), no redirects followed.
async fn get_with_cookie(
    app: &TestApp,
    url: impl reqwest::IntoUrl,
    cookie: &str,
) -> reqwest::Response {
    app.http
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

fn sets_a_session(res: &reqwest::Response) -> bool {
    set_cookies(res)
        .iter()
        .any(|c| c.starts_with("stsvend_session=") && !c.contains("Max-Age=0"))
}

#[tokio::test]
async fn a_wrong_state_is_400_and_sets_nothing() {
    let app = spawn_ready_app().await;
    let (callback, login_cookie) = login_until_callback(&app, "alice", "alice-pw").await;
    let mut url = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let res = get_with_cookie(&app, url, &login_cookie).await;
    assert_eq!(res.status(), 400);
    assert!(!sets_a_session(&res));
    assert!(
        set_cookies(&res).is_empty(),
        "nothing is set on a failed callback"
    );
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn a_replayed_code_is_400_and_sets_nothing() {
    let app = spawn_ready_app().await;
    let (callback, login_cookie) = login_until_callback(&app, "alice", "alice-pw").await;
    let first = get_with_cookie(&app, &callback, &login_cookie).await;
    assert_eq!(first.status(), 302);
    assert!(sets_a_session(&first));
    let replay = get_with_cookie(&app, &callback, &login_cookie).await;
    assert_eq!(replay.status(), 400);
    assert!(!sets_a_session(&replay));
    let body: serde_json::Value = replay.json().await.unwrap();
    // Refused by stsvend itself: the used login state never reaches the IdP again.
    assert_eq!(body["error"], "invalid_request", "{body}");
}

#[tokio::test]
async fn a_callback_without_the_login_cookie_is_400_and_sets_nothing() {
    let app = spawn_ready_app().await;
    let (callback, _) = login_until_callback(&app, "alice", "alice-pw").await;
    let res = app.http.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(set_cookies(&res).is_empty());
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("login cookie"));
}

#[tokio::test]
async fn an_idp_error_at_the_callback_is_reported_not_hidden() {
    let app = spawn_ready_app().await;
    let res = app
        .get("/login?error=access_denied&error_description=User%20said%20no&state=x")
        .await;
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "login_failed");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("access_denied"));
}

async fn logged_in_cookie(app: &TestApp) -> String {
    let (callback, login_cookie) = login_until_callback(app, "alice", "alice-pw").await;
    let res = get_with_cookie(app, &callback, &login_cookie).await;
    let cookie = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("stsvend_session=") && !c.contains("Max-Age=0"))
        .unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

async fn whoami_with_cookie(app: &TestApp, cookie: &str) -> reqwest::Response {
    app.http
        .get(app.url("/whoami"))
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tampered_session_cookie_is_treated_as_anonymous() {
    let app = spawn_ready_app().await;
    let cookie = logged_in_cookie(&app).await;
    assert_eq!(whoami_with_cookie(&app, &cookie).await.status(), 200);
    let (name, value) = cookie.split_once('=').unwrap();
    let mut chars: Vec<char> = value.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{name}={}", chars.into_iter().collect::<String>());
    let res = whoami_with_cookie(&app, &tampered).await;
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "login_required");
}

#[tokio::test]
async fn a_session_expires_with_the_configured_lifetime() {
    // Ten minutes: well inside groups_max_age (an hour), so only the lifetime can end it.
    let app = crate::helpers::spawn_app_with(|f| {
        f.merge(figment::providers::Serialized::default(
            "session.lifetime_seconds",
            600,
        ))
    })
    .await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let cookie = logged_in_cookie(&app).await;
    assert_eq!(whoami_with_cookie(&app, &cookie).await.status(), 200);
    app.clock.advance(Duration::from_secs(590));
    assert_eq!(whoami_with_cookie(&app, &cookie).await.status(), 200);
    app.clock.advance(Duration::from_secs(11));
    assert_eq!(whoami_with_cookie(&app, &cookie).await.status(), 401);
}

#[tokio::test]
async fn logout_clears_the_cookie_and_ends_the_idp_session() {
    let app = spawn_ready_app().await;
    let cookie = logged_in_cookie(&app).await;
    let res = get_with_cookie(&app, app.url("/logout"), &cookie).await;
    assert_eq!(res.status(), 302);
    // What this login left in the browser's cache (object links' redirects) goes too.
    assert_eq!(res.headers()["clear-site-data"], "\"cache\", \"cookies\"");
    let location = res.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{}/oauth/logout?", app.issuer)),
        "{location}"
    );
    let cleared = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("stsvend_session="))
        .unwrap();
    assert!(
        cleared.starts_with("stsvend_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

/// Logging out is a POST (the README page's button): the cookie goes, the browser is sent on
/// to the IdP's logout with 303; a POST from another site's page is refused and clears
/// nothing.
#[tokio::test]
async fn logout_by_post_clears_the_session_and_refuses_other_sites() {
    let app = spawn_ready_app().await;
    let cookie = logged_in_cookie(&app).await;
    let page = app
        .http
        .get(app.url("/s3credentialsREADME"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let form = page
        .split("<form method=\"post\" action=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("the page's sign-out is a POST form: {page}"));
    assert!(
        form.split('"').next().unwrap().contains("logout") && form.contains("id=\"logout\""),
        "{form}"
    );
    let foreign = app
        .http
        .post(app.url("/logout"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(
        set_cookies(&foreign).is_empty(),
        "a foreign page cleared the session"
    );
    assert_eq!(whoami_with_cookie(&app, &cookie).await.status(), 200);

    let origin = app.url("");
    let res = app
        .http
        .post(app.url("/logout"))
        .header("cookie", &cookie)
        .header("origin", origin.trim_end_matches('/'))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with(&format!("{}/oauth/logout?", app.issuer)));
    let cleared = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("stsvend_session="))
        .unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // Other methods: 405 naming both.
    let put = app.http.put(app.url("/logout")).send().await.unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "GET, POST");
}

#[tokio::test]
async fn open_redirect_attempts_never_leave_the_site() {
    let app = spawn_ready_app().await;
    for attempt in [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "%2F%2Fevil.example",
        "/%2F/evil.example",
        "/%5Cevil.example",
    ] {
        let encoded: String = url::form_urlencoded::byte_serialize(attempt.as_bytes()).collect();
        let res = app.get(&format!("/login?return_to={encoded}")).await;
        assert_eq!(res.status(), 400, "{attempt}");
        assert!(res.headers().get("location").is_none(), "{attempt}");
    }
    // A legitimate return path goes through the whole login and back to this site only.
    let client = jar_client(SCRIPT_UA);
    let (hops, res) = follow(
        &client,
        &app.url("/login?return_to=%2Fwhoami"),
        &app.issuer,
        Some(("alice", "alice-pw")),
    )
    .await;
    assert_eq!(res.status(), 200, "{hops:#?}");
    let last_redirect = hops.iter().rev().find_map(|h| h.location.clone()).unwrap();
    assert_eq!(last_redirect, app.url("/whoami"));
    // A path that looks like a host is still just a path on this site.
    let res = app
        .http
        .get(format!("{}//evil.example/", app.address))
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("location").is_none());
}

#[tokio::test]
async fn errors_are_html_for_browsers_and_json_for_everyone_else() {
    let app = spawn_ready_app().await;
    let res = app
        .http
        .get(app.url("/login?code=x"))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = res.text().await.unwrap();
    assert!(page.contains("invalid_request") && page.contains("<!doctype html>"));

    let res = app.get("/login?code=x").await;
    assert_eq!(res.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn two_logins_in_parallel_in_one_browser_both_finish() {
    let app = spawn_ready_app().await;
    let client = jar_client(SCRIPT_UA);
    // Two tabs hit a protected page before either login completes.
    let first = client.get(app.url("/whoami")).send().await.unwrap();
    let second = client.get(app.url("/whoami")).send().await.unwrap();
    for start in [first, second] {
        let authorize = start.headers()["location"].to_str().unwrap().to_owned();
        let (hops, res) = follow(
            &client,
            &authorize,
            &app.issuer,
            Some(("alice", "alice-pw")),
        )
        .await;
        assert_eq!(res.status(), 200, "{hops:#?}");
    }
}

fn with_limits(per_minute: u32, burst: u32) -> impl FnOnce(figment::Figment) -> figment::Figment {
    move |f| {
        f.merge(figment::providers::Serialized::default(
            "limits.idp_requests_per_minute",
            per_minute,
        ))
        .merge(figment::providers::Serialized::default(
            "limits.idp_burst",
            burst,
        ))
    }
}

/// `callback` with its `code` replaced by `code`.
fn with_code(callback: &str, code: &str) -> String {
    let mut url = reqwest::Url::parse(callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code" {
                code.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.to_string()
}

/// Review finding 1b: however many logins an attacker makes a browser start, the cookies it
/// sends to the callback stay under 8 KB, and a real login still completes afterwards.
#[tokio::test]
async fn a_browser_never_holds_more_than_a_few_small_login_cookies() {
    use reqwest::cookie::CookieStore;
    let app = spawn_ready_app().await;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(SCRIPT_UA)
        .build()
        .unwrap();
    let mut login = reqwest::Url::parse(&app.url("/login")).unwrap();
    login.query_pairs_mut().append_pair(
        "return_to",
        &format!("/s3credentials?x={}", "a".repeat(480)),
    );
    for _ in 0..20 {
        let res = client.get(login.clone()).send().await.unwrap();
        assert_eq!(res.status(), 302);
    }
    // All at once too: parallel requests carry the same cookies.
    let parallel: Vec<_> = (0..20).map(|_| client.get(login.clone()).send()).collect();
    for res in futures_util::future::join_all(parallel).await {
        assert_eq!(res.unwrap().status(), 302);
    }
    // Protected pages with huge query strings start logins too.
    for _ in 0..5 {
        let res = client
            .get(app.url(&format!("/s3credentials?{}", "q".repeat(3000))))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302);
    }
    let callback = reqwest::Url::parse(&app.url("/login?code=x&state=y")).unwrap();
    let sent = jar
        .cookies(&callback)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let logins = sent
        .split("; ")
        .filter(|c| c.starts_with("stsvend_session_login_"))
        .count();
    assert!(
        sent.len() <= 8192,
        "Cookie header to the callback is {} bytes",
        sent.len()
    );
    assert!(
        logins <= stsvend::auth::session::LOGIN_SLOTS,
        "{logins} login cookies"
    );
    // A return path longer than a login may remember is refused outright.
    let mut too_long = reqwest::Url::parse(&app.url("/login")).unwrap();
    too_long
        .query_pairs_mut()
        .append_pair("return_to", &format!("/{}", "a".repeat(600)));
    assert_eq!(client.get(too_long).send().await.unwrap().status(), 400);
    // After all that, logging in still works.
    let (hops, res) = follow(
        &client,
        &app.url("/whoami"),
        &app.issuer,
        Some(("alice", "alice-pw")),
    )
    .await;
    assert_eq!(res.status(), 200, "{hops:#?}");
}

/// Review finding 1c: a login state is good for one callback; replaying it with made-up
/// codes is refused by stsvend without another token request to the IdP.
#[tokio::test]
async fn a_login_state_is_consumed_by_its_first_callback_even_a_failed_one() {
    let app = spawn_ready_app().await;
    let (callback, login_cookie) = login_until_callback(&app, "alice", "alice-pw").await;
    let junk = with_code(&callback, "junk-code");
    let first = get_with_cookie(&app, &junk, &login_cookie).await;
    assert_eq!(first.status(), 400);
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "the IdP refused the code");
    for code in ["junk-2", "junk-3"] {
        let replay = get_with_cookie(&app, with_code(&callback, code), &login_cookie).await;
        assert_eq!(replay.status(), 400);
        let body: serde_json::Value = replay.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
    }
    // Even the genuine code cannot use the spent login state.
    let genuine = get_with_cookie(&app, &callback, &login_cookie).await;
    assert_eq!(genuine.status(), 400);
    assert!(!sets_a_session(&genuine));
}

/// Review finding 1c: token requests to the IdP caused by anonymous callbacks are limited
/// per client address.
#[tokio::test]
async fn anonymous_callbacks_are_rate_limited_per_client() {
    let app = crate::helpers::spawn_app_with(with_limits(1, 3)).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        // A fresh login each time (no cookie jar): a new, valid login state.
        let start = app.get("/login").await;
        let location = start.headers()["location"].to_str().unwrap().to_owned();
        let state = query(&location)["state"].clone();
        let cookie = set_cookies(&start)
            .into_iter()
            .find(|c| c.starts_with("stsvend_session_login_"))
            .unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let res = get_with_cookie(
            &app,
            app.url(&format!("/login?code=junk&state={state}")),
            &cookie,
        )
        .await;
        if res.status() == 429 {
            assert!(res.headers().get("retry-after").is_some());
        }
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [400, 400, 400, 429, 429, 429]);
}

/// Review finding 1h: a session's groups are trusted for `oidc.groups_max_age_seconds` (one
/// hour by default); after that the same cookie no longer authorises anything and the user
/// logs in again, which reads the groups afresh (silently, while the IdP session lasts).
#[tokio::test]
async fn a_sessions_groups_expire_after_the_groups_max_age() {
    let app = spawn_ready_app().await;
    let cookie = logged_in_cookie(&app).await;
    assert_eq!(whoami_with_cookie(&app, &cookie).await.status(), 200);
    app.clock.advance(Duration::from_secs(3500));
    assert_eq!(whoami_with_cookie(&app, &cookie).await.status(), 200);
    app.clock.advance(Duration::from_secs(200));
    assert_eq!(whoami_with_cookie(&app, &cookie).await.status(), 401);
    // A browser or script is sent to log in again instead.
    let res = get_with_cookie(&app, app.url("/s3credentials"), &cookie).await;
    assert_eq!(res.status(), 302);
}

/// Review finding 1g: behind a proxy that serves stsvend under a path prefix, the cookies'
/// paths include the prefix, so the login-state cookie reaches the callback and the login
/// completes.
#[tokio::test]
async fn login_works_under_a_public_url_with_a_path_prefix() {
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = proxy.local_addr().unwrap().port();
    let public = format!("http://127.0.0.1:{proxy_port}/archive");
    let app = crate::helpers::spawn_app_with(|f| {
        f.merge(figment::providers::Serialized::default(
            "server.public_url",
            format!("{public}/"),
        ))
    })
    .await;
    crate::helpers::start_prefix_proxy(proxy, "/archive", app.address.clone());
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let client = jar_client(SCRIPT_UA);
    let (hops, res) = follow(
        &client,
        &format!("{public}/s3credentials"),
        &app.issuer,
        Some(("alice", "alice-pw")),
    )
    .await;
    assert_eq!(res.status(), 200, "{hops:#?}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["accessKeyId"].is_string(), "{body}");
    assert!(
        hops.iter()
            .any(|h| h.url.starts_with(&format!("{public}/login?"))),
        "{hops:#?}"
    );
}

/// Fleet mode: a login state spent on one replica is spent on all of them, so a replay sent to
/// another replica is refused there too, without a token request to the IdP.
#[tokio::test]
async fn a_login_state_spent_on_one_replica_is_refused_by_another() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let a = crate::helpers::spawn_app_with(crate::helpers::in_fleet(redis_port)).await;
    let b = crate::helpers::spawn_app_with(crate::helpers::in_fleet(redis_port)).await;
    for app in [&a, &b] {
        assert!(app.wait_ready(Duration::from_secs(15)).await);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
            if ready["checks"]["redis"] == "ok" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "redis never ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (callback, login_cookie) = login_until_callback(&a, "alice", "alice-pw").await;
    let first = get_with_cookie(&a, with_code(&callback, "junk-code"), &login_cookie).await;
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "the IdP refused the code");
    // The same login state, on the other replica.
    let on_b = with_code(&callback, "junk-2").replace(&a.address, &b.address);
    let replay = get_with_cookie(&b, on_b, &login_cookie).await;
    assert_eq!(replay.status(), 400);
    let body: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(
        body["error"], "invalid_request",
        "refused before the IdP: {body}"
    );
}
