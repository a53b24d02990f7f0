//! No token, cookie, code or secret ever reaches the logs.

use std::time::Duration;

use crate::helpers::{
    browser_login, captured_logs, idp_token, spawn_app, BROWSER_UA, CLIENT_SECRET, COOKIE_KEY_B64,
};

#[tokio::test]
async fn no_token_cookie_code_or_secret_appears_in_the_logs() {
    let app = spawn_app().await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);

    // A bearer request, a rejected bearer request, and a full browser login.
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    let ok = app.get_as("/whoami", &token).await;
    assert_eq!(ok.status(), 200);
    let creds: serde_json::Value = app
        .get_as("/s3credentials", &token)
        .await
        .json()
        .await
        .unwrap();
    let secret_key = creds["secretAccessKey"].as_str().unwrap().to_owned();
    let session_token = creds["sessionToken"].as_str().unwrap().to_owned();
    let bad_token = format!("{token}x");
    let bad = app.get_as("/whoami", &bad_token).await;
    assert_eq!(bad.status(), 401);

    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(BROWSER_UA)
        .build()
        .unwrap();
    let (hops, res) = browser_login(&app, &client, "/whoami", "carol", "carol-pw").await;
    assert_eq!(res.status(), 200);
    let callback = hops
        .iter()
        .find(|h| h.url.contains("/login?code="))
        .unwrap();
    let code = reqwest::Url::parse(&callback.url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let cookie_header = reqwest::cookie::CookieStore::cookies(&*jar, &app.address.parse().unwrap());

    let logs = captured_logs();
    assert!(!logs.contains(&secret_key), "secret access key leaked");
    assert!(!logs.contains(&session_token[..40]), "session token leaked");
    // One audit line per credential response, with what an auditor needs.
    let access_key = creds["accessKeyId"].as_str().unwrap();
    let audit = logs
        .lines()
        .find(|l| l.contains("credentials vended") && l.contains(access_key))
        .expect("audit line");
    for field in [
        "\"user\":\"alice\"",
        "\"session_name\":\"alice@stsvend-test\"",
        "\"policy_hash\":",
        "demo-inregion",
        "\"expiration\":",
        "\"cache\":",
        "\"client\":\"127.0.0.1\"",
        "\"request_id\":",
    ] {
        assert!(audit.contains(field), "audit line lacks {field}: {audit}");
    }
    // The browser login's own line, naming who logged in: the capture saw this test's login.
    assert!(
        logs.lines()
            .any(|l| l.contains("\"message\":\"login\"") && l.contains("\"user\":\"carol\"")),
        "the login line was not captured"
    );
    let signature = token.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature), "bearer token leaked");
    assert!(!logs.contains(&code), "authorization code leaked");
    assert!(!logs.contains(CLIENT_SECRET), "client secret leaked");
    assert!(!logs.contains(COOKIE_KEY_B64), "cookie key leaked");
    let cookies = cookie_header.expect("the browser holds cookies");
    assert!(cookies.to_str().unwrap().contains("stsvend_session="));
    {
        for pair in cookies.to_str().unwrap().split("; ") {
            let value = pair.split_once('=').map(|(_, v)| v).unwrap_or("");
            if value.len() > 16 {
                assert!(!logs.contains(value), "a cookie value leaked: {pair}");
            }
        }
    }
}

/// Review finding 1f: clients do not decide how long our log lines are: the path, the user id
/// and X-Forwarded-For are cut to a fixed size in every line.
#[tokio::test]
async fn client_controlled_fields_are_capped_in_log_lines() {
    let app = spawn_app().await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let id = format!("logcap-{}", uuid::Uuid::new_v4().simple());
    let long_user = format!("u{}", "x".repeat(250));
    let token = crate::helpers::mint(
        &app.issuer,
        serde_json::json!({"sub": long_user, "groups": ["science"]}),
        serde_json::json!({}),
    )
    .await;
    let huge = "1.2.3.4, ".repeat(1000);
    for path in [
        format!("/{}", "p".repeat(8000)),
        "/s3credentials".to_owned(),
    ] {
        let res = app
            .http
            .get(app.url(&path))
            .bearer_auth(&token)
            .header("x-request-id", &id)
            .header("x-forwarded-for", &huge)
            .header("user-agent", "A".repeat(8000))
            .send()
            .await
            .unwrap();
        assert!(
            res.status() == 404 || res.status() == 200,
            "{}",
            res.status()
        );
    }
    // Until the audit line of that request has been captured.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let logs = loop {
        let logs = captured_logs();
        if logs
            .lines()
            .any(|l| l.contains(&id) && l.contains("credentials vended"))
        {
            break logs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit line for {id}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(&id)).collect();
    assert!(
        lines.iter().any(|l| l.contains("credentials vended")),
        "{lines:#?}"
    );
    for line in &lines {
        assert!(line.len() < 3000, "a {}-byte log line", line.len());
    }
}
