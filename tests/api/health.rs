use std::time::Duration;

use figment::providers::Serialized;

use crate::helpers::{components, free_port, spawn_app, spawn_app_against, start_idp, TestApp};

/// An app whose issuer is a port where nothing listens (yet), returned once its discovery has
/// failed at least once (the internal readiness names the last error): the port, the issuer.
async fn app_with_an_unreachable_idp() -> (TestApp, u16, String) {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = spawn_app_against(&issuer, &components().moto_endpoint, |f| {
        f.merge(Serialized::default("server.internal_bind", "127.0.0.1:0"))
    })
    .await;
    let internal = format!("{}/readyz", app.internal.as_deref().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body: serde_json::Value = reqwest::get(&internal).await.unwrap().json().await.unwrap();
        if body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("last error"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "discovery never failed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (app, port, issuer)
}

#[tokio::test]
async fn liveness_answers_200_while_the_process_serves() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readiness_becomes_200_once_discovery_against_the_real_idp_succeeds() {
    let app = spawn_app().await;
    assert!(app.wait_ready(Duration::from_secs(15)).await, "never ready");
    let body: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["oidc_discovery"], "ok");
}

#[tokio::test]
async fn readiness_is_503_until_an_idp_that_comes_up_later_answers() {
    // An issuer on a port where nothing listens yet.
    let (app, port, issuer) = app_with_an_unreachable_idp().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("x-request-id").is_some());
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "not_ready");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("OIDC discovery") && description.contains(&issuer),
        "{description}"
    );
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));

    // Bring the IdP up; the service keeps retrying (backoff capped at 1 s in tests).
    let idp = tokio::task::spawn_blocking(move || start_idp(port))
        .await
        .unwrap();
    assert!(
        app.wait_ready(Duration::from_secs(15)).await,
        "not ready after the IdP came up; IdP log: {}",
        idp.log.display()
    );
}

#[tokio::test]
async fn a_sane_client_request_id_is_echoed_and_a_hostile_one_replaced() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-42.a_b:c")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-42.a_b:c");

    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "evil value\" injected")
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "evil value\" injected");
    assert!(uuid_like(&id), "{id}");

    let res = app.get("/healthz").await;
    let generated = res.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid_like(generated), "{generated}");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[tokio::test]
async fn unknown_paths_get_the_json_error_shape_with_the_request_id() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/no/such/thing"))
        .header("x-request-id", "req-404")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert_eq!(body["request_id"], "req-404");
    assert!(body["error_description"].as_str().is_some());
}

#[tokio::test]
async fn http_1_0_clients_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(response.ends_with("{\"status\":\"ok\"}"), "{response}");
}

#[tokio::test]
async fn metrics_are_off_by_default_and_count_vending_when_on() {
    let app = spawn_app().await;
    assert_eq!(app.get("/metrics").await.status(), 404);

    let app = crate::helpers::spawn_app_with(|f| {
        f.merge(figment::providers::Serialized::default(
            "server.metrics",
            true,
        ))
    })
    .await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let (_, token) =
        crate::helpers::unique_user(&app, "metrics", serde_json::json!(["science"])).await;
    for query in ["", "", "?duration_seconds=3600"] {
        // The deployment's own lifetime asked for explicitly is the plain request.
        let res = app.get_as(&format!("/s3credentials{query}"), &token).await;
        assert_eq!(res.status(), 200);
    }
    let narrowed = app
        .get_as(
            "/s3credentials?target=s3://demo-inregion/p/&duration_seconds=900",
            &token,
        )
        .await;
    assert_eq!(narrowed.status(), 200);
    let _ = app.get("/some/random/path").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert_eq!(
        value("stsvend_sts_assume_role_calls_total{archive=\"main\"}"),
        2.0
    );
    assert_eq!(
        value("stsvend_credential_cache_misses_total{archive=\"main\"}"),
        2.0
    );
    for asked in ["narrowed", "short_lifetime"] {
        let name = format!(
            "stsvend_credential_requests_asking_less_total{{archive=\"main\",asked=\"{asked}\"}}"
        );
        assert_eq!(value(&name), 1.0, "{name}");
    }
    assert_eq!(
        value("stsvend_credential_cache_hits_total{archive=\"main\"}"),
        2.0
    );
    // Every response counted once, by route pattern, method and status.
    let ok = r#"{endpoint="/s3credentials",method="GET",status="200"}"#;
    assert_eq!(value(&format!("stsvend_http_requests_total{ok}")), 4.0);
    assert_eq!(
        value(&format!("stsvend_http_requests_duration_seconds_count{ok}")),
        4.0
    );
    let unknown = r#"{endpoint="UNKNOWN",method="GET",status="404"}"#;
    assert_eq!(value(&format!("stsvend_http_requests_total{unknown}")), 1.0);
    assert!(
        !text.contains("/some/random/path"),
        "unmatched paths are masked"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = crate::helpers::spawn_app().await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: serde_json::Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    std::fs::write(
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openapi.json"),
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
    for path in [
        "/s3credentials",
        "/s3credentials/scope",
        "/s3credentialsREADME",
        "/login",
        "/logout",
        "/whoami",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} is not described"
        );
    }
    let creds = &doc["paths"]["/s3credentials"]["get"]["responses"];
    for status in ["200", "302", "400", "401", "403", "429", "502", "503"] {
        assert!(creds[status].is_object(), "/s3credentials {status}");
    }
    assert!(creds["401"]["headers"]["WWW-Authenticate"].is_object());
    assert!(creds["503"]["headers"]["Retry-After"].is_object());
    assert!(creds["200"]["headers"]["Cache-Control"].is_object());
    let tickets = &doc["paths"]["/s3credentials/tickets"];
    assert!(tickets["get"].is_object() && tickets["post"].is_object());
    assert_eq!(
        tickets["post"]["requestBody"]["required"], false,
        "an empty POST makes a ticket for everything"
    );
    assert!(doc["paths"]["/s3credentials/tickets/{id}"]["delete"].is_object());
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let app = crate::helpers::spawn_app().await;
    for (path, allow) in [
        ("/s3credentials", "GET"),
        ("/whoami", "GET"),
        ("/healthz", "GET, HEAD"),
    ] {
        let res = app.http.delete(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 405, "{path}");
        assert_eq!(res.headers()["allow"], allow, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed");
    }
    assert_eq!(app.get("/nope").await.status(), 404);
}

/// Invented HTTP methods (actix accepts any token) cannot grow the metric registry: they are
/// counted under one `OTHER` label.
#[tokio::test]
async fn invented_methods_share_one_metric_label() {
    let app = crate::helpers::spawn_app_with(|f| {
        f.merge(figment::providers::Serialized::default(
            "server.metrics",
            true,
        ))
    })
    .await;
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let res = app
            .http
            .request(method, app.url("/s3credentials"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    let methods: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("stsvend_http_requests_total{"))
        .filter_map(|l| l.split("method=\"").nth(1)?.split('"').next())
        .collect();
    assert!(methods.contains("OTHER"), "{methods:?}");
    assert!(
        methods.len() <= 12,
        "{} method labels: {methods:?}",
        methods.len()
    );
}

/// Every response says `X-Content-Type-Options: nosniff` (errors and redirects too); plain
/// HTTP sends no `Strict-Transport-Security` (the https test checks it is there).
#[tokio::test]
async fn every_response_forbids_content_sniffing() {
    let app = spawn_app().await;
    for path in ["/healthz", "/no/such/path", "/s3credentials", "/login"] {
        let res = app.get(path).await;
        assert_eq!(
            res.headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{path} ({})",
            res.status()
        );
        assert!(res.headers().get("strict-transport-security").is_none());
    }
}

/// The public `/readyz` says the IdP is not reachable without echoing the IdP's error text
/// (a caller learns nothing of the network behind stsvend); the log has the details.
#[tokio::test]
async fn public_readiness_does_not_echo_idp_errors() {
    let (app, _, _) = app_with_an_unreachable_idp().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let text = res.text().await.unwrap();
    for leak in [
        "Connection refused",
        "error sending request",
        "tcp connect",
        "os error",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}
