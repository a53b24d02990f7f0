//! Links anyone can follow: `GET|HEAD /s3/<bucket>/<key>` answers a 307 to a SigV4 presigned
//! URL signed with the caller's own session credential; against moto's S3 and STS.

use std::time::Duration;

use figment::providers::Serialized;
use serde_json::{json, Value};

use crate::helpers::{captured_logs, components, spawn_app_with, unique_user, TestApp};

/// An object in moto's S3 (moto takes unsigned writes), under a key no other test uses.
async fn put_object(bucket: &str, key: &str, body: &[u8]) {
    let moto = &components().moto_endpoint;
    let http = reqwest::Client::new();
    let _ = http.put(format!("{moto}/{bucket}")).send().await.unwrap();
    let res = http
        .put(format!("{moto}/{bucket}/{key}"))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
}

async fn app_with(extra: Value) -> TestApp {
    let moto = components().moto_endpoint.clone();
    let app = spawn_app_with(move |f| {
        let mut f = f
            .merge(Serialized::default("s3.endpoint_url", moto))
            .merge(Serialized::default("s3.force_path_style", true));
        for (k, v) in extra.as_object().unwrap() {
            f = f.merge(Serialized::default(k, v.clone()));
        }
        f
    })
    .await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    app
}

fn query(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The link is a 307 to the object's presigned URL (path-style on the configured endpoint),
/// signed with the same session credential `/s3credentials` hands the user; a client with no
/// credentials at all reads the object, a range, and a HEAD through it.
#[tokio::test]
async fn a_link_redirects_to_a_presigned_url_that_needs_no_credentials_to_follow() {
    let app = app_with(json!({})).await;
    let (user, token) = unique_user(&app, "link", json!(["science"])).await;
    let key = format!("links/{user}/hello world.txt");
    put_object("demo-inregion", &key, b"hello from the archive\n").await;

    let path = format!("/s3/demo-inregion/{}", key.replace(' ', "%20"));
    let res = app.get_as(&path, &token).await;
    assert_eq!(res.status(), 307);
    assert_eq!(res.headers()["cache-control"], "private, max-age=3540");
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    // A browser keeps the redirect only for the login that got it.
    assert_eq!(res.headers()["vary"], "Cookie, Authorization");
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let moto = &components().moto_endpoint;
    assert!(
        location.starts_with(&format!(
            "{moto}/demo-inregion/links/{user}/hello%20world.txt?"
        )),
        "{location}"
    );
    assert_eq!(
        query(&location, "X-Amz-Algorithm").as_deref(),
        Some("AWS4-HMAC-SHA256")
    );
    assert_eq!(query(&location, "X-Amz-Expires").as_deref(), Some("3600"));
    assert!(query(&location, "X-Amz-Signature").is_some());
    assert!(query(&location, "X-Amz-Security-Token").is_some());
    // Signed with the user's own session: the key /s3credentials gives them.
    let creds: Value = app
        .get_as("/s3credentials", &token)
        .await
        .json()
        .await
        .unwrap();
    let credential = query(&location, "X-Amz-Credential").unwrap();
    assert!(
        credential.starts_with(&format!("{}/", creds["accessKeyId"].as_str().unwrap())),
        "{credential}"
    );
    assert!(
        credential.ends_with("/us-west-2/s3/aws4_request"),
        "{credential}"
    );

    let anonymous = reqwest::Client::new();
    let got = anonymous.get(&location).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), &b"hello from the archive\n"[..]);
    let range = anonymous
        .get(&location)
        .header("range", "bytes=6-9")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(range.bytes().await.unwrap(), &b"from"[..]);

    let head = app
        .http
        .head(app.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 307);
    let head_location = head.headers()["location"].to_str().unwrap().to_owned();
    // The same instant (the injected clock stands still), so only the method differs.
    assert_eq!(
        query(&head_location, "X-Amz-Date"),
        query(&location, "X-Amz-Date")
    );
    assert_ne!(
        query(&head_location, "X-Amz-Signature"),
        query(&location, "X-Amz-Signature"),
        "a HEAD is signed as a HEAD"
    );
    let got = anonymous.head(&head_location).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-length"], "23");

    // curl -L, as the README page shows it.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-L",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &app.url(&path),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.stdout,
        b"hello from the archive\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The audit line names user, bucket, key and expiry; never the signature or the token.
    let logs = captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains("object link signed") && l.contains(&user))
        .expect("audit line");
    assert!(line.contains("\"bucket\":\"demo-inregion\""), "{line}");
    assert!(
        line.contains(&format!("links/{user}/hello world.txt")),
        "{line}"
    );
    assert!(line.contains("\"expires_at\":"), "{line}");
    let signature = query(&location, "X-Amz-Signature").unwrap();
    let token_part = &query(&location, "X-Amz-Security-Token").unwrap()[..40];
    assert!(!logs.contains(&signature), "signature logged");
    assert!(!logs.contains(token_part), "session token logged");
}

/// Nothing is signed for a key outside the caller's scope (403), a bucket the service does
/// not serve (404), a key that clients would rewrite, or a bad `expires_in` (400).
#[tokio::test]
async fn a_key_outside_the_scope_never_gets_a_signature() {
    let app = app_with(json!({})).await;
    let (_, token) = unique_user(&app, "link-denied", json!(["science"])).await;
    for (path, status, code) in [
        ("/s3/demo-restricted/hello.txt", 403, "access_denied"),
        ("/s3/demo-elsewhere/hello.txt", 404, "not_found"),
        ("/s3/no-such-bucket/hello.txt", 404, "not_found"),
        ("/s3/demo-inregion/", 400, "invalid_key"),
        (
            "/s3/demo-inregion/x.txt?expires_in=soon",
            400,
            "invalid_expires_in",
        ),
        (
            "/s3/demo-inregion/x.txt?expires_in=0",
            400,
            "invalid_expires_in",
        ),
    ] {
        let res = app
            .http
            .get(app.url(path))
            .bearer_auth(&token)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{path}");
        assert!(res.headers().get("location").is_none(), "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], code, "{path}: {body}");
        assert!(!body.to_string().contains("X-Amz-Signature"), "{path}");
    }
    // A `..` segment as sent on the wire (HTTP clients would resolve it before sending).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
            .await
            .unwrap();
        let request = format!(
            "GET /s3/demo-inregion/a/../b.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        assert!(response.contains("invalid_key"), "{response}");
        assert!(!response.contains("X-Amz-Signature"), "{response}");
    }
    // A browser gets the refusal as a page.
    let res = app
        .http
        .get(app.url("/s3/demo-restricted/hello.txt"))
        .bearer_auth(&token)
        .header("accept", crate::helpers::BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // Without credentials: the usual login (or 401 for JSON-only clients), never a link.
    let res = app
        .http
        .get(app.url("/s3/demo-inregion/x.txt"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .http
        .put(app.url("/s3/demo-inregion/x.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
}

/// `expires_in` is cut to `s3.presign_max_seconds` and to what is left of the signing
/// credential; JSON clients get the URL and its expiry instead of a redirect.
#[tokio::test]
async fn a_links_life_is_capped_by_the_setting_and_by_the_credential() {
    let app = app_with(json!({"s3.presign_max_seconds": 600})).await;
    let (_, token) = unique_user(&app, "link-life", json!(["science"])).await;
    let location = |res: &reqwest::Response| res.headers()["location"].to_str().unwrap().to_owned();
    let res = app
        .get_as("/s3/demo-inregion/x.txt?expires_in=999999", &token)
        .await;
    assert_eq!(
        query(&location(&res), "X-Amz-Expires").as_deref(),
        Some("600")
    );
    let res = app
        .get_as("/s3/demo-inregion/x.txt?expires_in=120", &token)
        .await;
    assert_eq!(
        query(&location(&res), "X-Amz-Expires").as_deref(),
        Some("120")
    );
    assert_eq!(res.headers()["cache-control"], "private, max-age=60");

    let res = app
        .http
        .get(app.url("/s3/demo-inregion/x.txt?expires_in=300"))
        .bearer_auth(&token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        query(body["url"].as_str().unwrap(), "X-Amz-Expires").as_deref(),
        Some("300")
    );
    let expiration =
        chrono::DateTime::parse_from_rfc3339(body["expiration"].as_str().unwrap()).unwrap();
    let left = expiration.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!((290..=301).contains(&left.num_seconds()), "{left}");

    // The credential is one hour long: 50 minutes on, the link lives at most what is left.
    let app = app_with(json!({})).await;
    let (_, token) = unique_user(&app, "link-late", json!(["science"])).await;
    let first = app.get_as("/s3/demo-inregion/x.txt", &token).await;
    assert_eq!(
        query(&location(&first), "X-Amz-Expires").as_deref(),
        Some("3600")
    );
    app.clock.advance(Duration::from_secs(40 * 60));
    let late = app.get_as("/s3/demo-inregion/x.txt", &token).await;
    let expires: i64 = query(&location(&late), "X-Amz-Expires")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1100..=1200).contains(&expires), "{expires}");
    let key_id = |url: &str| {
        query(url, "X-Amz-Credential").and_then(|c| c.split('/').next().map(str::to_owned))
    };
    assert_eq!(
        key_id(&location(&late)),
        key_id(&location(&first)),
        "the same session credential"
    );
}

/// Link requests are counted under their own route in the request metrics, not as unknown
/// paths, and in `stsvend_presigned_links_total`.
#[tokio::test]
async fn link_requests_are_counted_under_their_route() {
    let app = app_with(json!({"server.metrics": true})).await;
    let (_, token) = unique_user(&app, "link-metrics", json!(["science"])).await;
    assert_eq!(
        app.get_as("/s3/demo-inregion/x.txt", &token).await.status(),
        307
    );
    let text = app.get("/metrics").await.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("stsvend_http_requests_total{") && l.contains("status=\"307\""))
        .unwrap_or_else(|| panic!("no 307 counted:\n{text}"));
    assert!(line.contains("endpoint=\"/s3/{bucket}/{key}\""), "{line}");
    assert!(
        text.lines()
            .any(|l| l == "stsvend_presigned_links_total{archive=\"main\"} 1"),
        "{text}"
    );
}
