//! Outage drills against the real components: STS (moto) hung with SIGSTOP, killed, and
//! brought back. Timings are printed (the closing note reports them); the assertions use
//! bounds several times wider than the targets, so a loaded machine does not fail them,
//! while the properties themselves (no STS call while the breaker is open, cached users
//! always served, recovery within one probe interval) are asserted exactly.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{components, spawn_app_against, start_moto, unique_user, TestApp};

/// A metric's value; a metric that is not exported fails the test (a misnamed metric would
/// otherwise read as 0 and make "no calls while ..." checks pass by themselves).
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} is not exported:\n{text}"))
}

async fn timed_get(app: &TestApp, token: &str) -> (u16, Duration, Option<String>) {
    let started = Instant::now();
    let res = app.get_as("/s3credentials", token).await;
    let elapsed = started.elapsed();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status().as_u16(), elapsed, retry)
}

/// One outage: uncached users get fast 503s with Retry-After (the breaker opens after three
/// timeouts or refusals), cached users keep getting 200, and nothing reaches STS while the
/// breaker is open.
async fn outage(app: &TestApp, cached: &str, label: &str) {
    let mut first = Vec::new();
    for i in 0..3 {
        let (_, token) = unique_user(app, &format!("{label}-first-{i}"), json!(["science"])).await;
        let (status, elapsed, retry) = timed_get(app, &token).await;
        assert_eq!(status, 503, "{label}");
        assert!(retry.is_some(), "{label}: Retry-After");
        first.push(elapsed);
    }
    eprintln!("drill {label}: first uncached requests answered 503 in {first:?}");
    assert!(
        first.iter().all(|t| *t < Duration::from_secs(2)),
        "{label}: {first:?}"
    );
    assert_eq!(
        metric(
            app,
            "stsvend_sts_breaker_state{archive=\"main\",state=\"open\"}"
        )
        .await,
        1.0,
        "{label}: the breaker is open"
    );
    let calls = metric(app, "stsvend_sts_assume_role_calls_total{archive=\"main\"}").await;
    let mut open = Vec::new();
    for i in 0..20 {
        let (_, token) = unique_user(app, &format!("{label}-open-{i}"), json!(["science"])).await;
        let (status, elapsed, retry) = timed_get(app, &token).await;
        assert_eq!(status, 503);
        assert!(retry.is_some());
        open.push(elapsed);
    }
    open.sort();
    eprintln!(
        "drill {label}: with the breaker open, uncached 503 in median {:?}, max {:?}",
        open[open.len() / 2],
        open[open.len() - 1]
    );
    assert!(open[open.len() - 1] < Duration::from_secs(1), "{open:?}");
    assert_eq!(
        metric(app, "stsvend_sts_assume_role_calls_total{archive=\"main\"}").await,
        calls,
        "{label}: no AssumeRole while the breaker is open"
    );
    let (status, elapsed, _) = timed_get(app, cached).await;
    assert_eq!(status, 200, "{label}: cached users are served");
    eprintln!("drill {label}: cached user served in {elapsed:?}");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200, "readiness stays 200");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["sts"], "circuit_open", "{body}");
}

/// After STS comes back, the next request past the probe interval probes and succeeds.
async fn recovery(app: &TestApp, label: &str, probe_interval: Duration) {
    let started = Instant::now();
    tokio::time::sleep(probe_interval).await;
    let deadline = started + probe_interval * 2 + Duration::from_secs(5);
    loop {
        let (_, token) = unique_user(app, &format!("{label}-back"), json!(["science"])).await;
        let (status, _, _) = timed_get(app, &token).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: STS back but still refused"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "drill {label}: recovered {:?} after STS returned",
        started.elapsed()
    );
    assert_eq!(
        metric(
            app,
            "stsvend_sts_breaker_state{archive=\"main\",state=\"closed\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn sts_hung_then_dead_cached_users_served_others_refused_fast_then_recovery() {
    let (moto, moto_port) =
        tokio::task::spawn_blocking(|| crate::helpers::start_moto_anywhere(&[]))
            .await
            .unwrap();
    let endpoint = format!("http://127.0.0.1:{moto_port}");
    let issuer = components().issuer.clone();
    let probe = Duration::from_secs(2);
    let app = spawn_app_against(&issuer, &endpoint, |f| {
        use figment::providers::Serialized;
        f.merge(Serialized::default("server.metrics", true))
            .merge(Serialized::default(
                "sts.breaker_probe_interval_seconds",
                probe.as_secs(),
            ))
    })
    .await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let (_, cached) = unique_user(&app, "drill-cached", json!(["science"])).await;
    assert_eq!(timed_get(&app, &cached).await.0, 200);

    // Hung: the process is there, the socket accepts, nothing answers.
    moto.signal("STOP");
    outage(&app, &cached, "sts-hung").await;
    moto.signal("CONT");
    recovery(&app, "sts-hung", probe).await;

    // Dead: connections are refused.
    drop(moto);
    outage(&app, &cached, "sts-dead").await;
    let _moto = tokio::task::spawn_blocking(move || start_moto(moto_port))
        .await
        .unwrap();
    recovery(&app, "sts-dead", probe).await;
}

/// Slow clients: a client that trickles its request head is cut off after
/// `server.request_head_timeout_seconds`, an idle keep-alive connection after
/// `server.keep_alive_seconds`, and other clients are served all the while.
#[tokio::test]
async fn slowloris_clients_are_cut_off_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app_with(|f| {
        use figment::providers::Serialized;
        f.merge(Serialized::default(
            "server.request_head_timeout_seconds",
            1,
        ))
        .merge(Serialized::default("server.keep_alive_seconds", 1))
    })
    .await;
    let addr = format!("127.0.0.1:{}", app.port);
    // Twenty slow clients, each sending one byte of its head every 200 ms for up to 6 s.
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
                conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .unwrap();
                let mut buf = [0u8; 512];
                while started.elapsed() < Duration::from_secs(6) {
                    if conn.write_all(b"X").await.is_err() {
                        return started.elapsed();
                    }
                    match tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf))
                        .await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                        // The server's 408 before it closes.
                        Ok(Ok(_)) => {}
                        Err(_) => {}
                    }
                }
                started.elapsed()
            })
        })
        .collect();
    // Meanwhile, ordinary requests are answered.
    let mut served = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert_eq!(app.get("/healthz").await.status(), 200);
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut cut = Vec::new();
    for s in slow {
        cut.push(s.await.unwrap());
    }
    cut.sort();
    eprintln!(
        "drill slowloris: 20 slow clients cut off after {:?}..{:?}; {served} other requests served meanwhile",
        cut[0],
        cut[cut.len() - 1]
    );
    assert!(cut.iter().all(|t| *t < Duration::from_secs(4)), "{cut:?}");
    assert!(served >= 10);

    // An idle keep-alive connection is closed after the keep-alive timeout.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("the idle connection must be closed");
    assert!(matches!(closed, Ok(0) | Err(_)));
    eprintln!(
        "drill keep-alive: idle connection closed after {:?}",
        started.elapsed()
    );
}

/// STS throttling, injected by a proxy in front of moto: the SDK backs off and retries a
/// little, the user gets 503 + Retry-After, the breaker opens, and then nothing more is sent
/// while STS is throttling: no retry storm. When it stops, service resumes.
#[tokio::test]
async fn sts_throttling_backs_off_then_503_without_a_retry_storm() {
    use std::sync::atomic::Ordering;
    let (faults, proxy_url) = crate::helpers::faulty_sts();
    let probe = Duration::from_secs(2);
    let app = spawn_app_against(&components().issuer, &proxy_url, |f| {
        use figment::providers::Serialized;
        f.merge(Serialized::default("server.metrics", true))
            .merge(Serialized::default("sts.timeout_seconds", 5))
            .merge(Serialized::default(
                "sts.breaker_probe_interval_seconds",
                probe.as_secs(),
            ))
    })
    .await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let (_, ok) = unique_user(&app, "throttle-ok", json!(["science"])).await;
    assert_eq!(timed_get(&app, &ok).await.0, 200);
    faults.hits.lock().unwrap().clear();

    faults.throttle.store(true, Ordering::SeqCst);
    let mut answers = Vec::new();
    for i in 0..3 {
        let (_, token) = unique_user(&app, &format!("throttled-{i}"), json!(["science"])).await;
        let (status, elapsed, retry) = timed_get(&app, &token).await;
        assert_eq!(status, 503);
        assert!(retry.is_some());
        answers.push(elapsed);
    }
    let hits: Vec<Duration> = {
        let hits = faults.hits.lock().unwrap();
        hits.windows(2).map(|w| w[1] - w[0]).collect()
    };
    let sent = faults.hits.lock().unwrap().len();
    eprintln!(
        "drill sts-throttled: 3 users answered 503 in {answers:?}; {sent} AssumeRole attempts reached STS, gaps {hits:?}"
    );
    // At most the SDK's 3 attempts per user.
    assert!(sent <= 9, "{sent} attempts for 3 users");
    assert_eq!(
        metric(
            &app,
            "stsvend_sts_breaker_state{archive=\"main\",state=\"open\"}"
        )
        .await,
        1.0
    );
    for i in 0..30 {
        let (_, token) = unique_user(&app, &format!("storm-{i}"), json!(["science"])).await;
        assert_eq!(timed_get(&app, &token).await.0, 503);
    }
    assert_eq!(
        faults.hits.lock().unwrap().len(),
        sent,
        "nothing reaches STS while the breaker is open"
    );
    // A cached user is untouched by all this.
    assert_eq!(timed_get(&app, &ok).await.0, 200);

    faults.throttle.store(false, Ordering::SeqCst);
    recovery(&app, "sts-throttled", probe).await;
}

async fn idp_post(issuer: &str, path: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{issuer}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// The IdP hung, then dead: bearer users whose tokens are signed with keys stsvend already
/// has are served (new tokens too), a token needing a key refresh is refused within the IdP
/// timeout, and readiness stays 200 but says what is wrong.
#[tokio::test]
async fn idp_hung_then_dead_known_keys_keep_working_and_readiness_says_why() {
    let (idp, idp_port) = tokio::task::spawn_blocking(crate::helpers::start_idp_anywhere)
        .await
        .unwrap();
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let app = spawn_app_against(&issuer, &components().moto_endpoint, |f| {
        f.merge(figment::providers::Serialized::default(
            "oidc.http_timeout_seconds",
            1,
        ))
    })
    .await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let (_, seen) = unique_user(&app, "idp-seen", json!(["science"])).await;
    assert_eq!(timed_get(&app, &seen).await.0, 200);
    // Minted now, first presented while the IdP is down.
    let mut unseen = Vec::new();
    for i in 0..2 {
        unseen.push(
            unique_user(&app, &format!("idp-unseen-{i}"), json!(["science"]))
                .await
                .1,
        );
    }
    let foreign_kid = crate::helpers::mint(
        &issuer,
        json!({"sub": "idp-kid", "groups": ["science"]}),
        json!({"kid": "not-published-yet"}),
    )
    .await;

    for (label, outage) in [("idp-hung", "STOP"), ("idp-dead", "KILL")] {
        idp.signal(outage);
        let (status, elapsed, _) = timed_get(&app, &seen).await;
        assert_eq!(status, 200, "{label}: a verified token");
        let token = unseen.pop().unwrap();
        let (status, elapsed_new, _) = timed_get(&app, &token).await;
        assert_eq!(status, 200, "{label}: a new token signed with a known key");
        let started = Instant::now();
        let res = app.get_as("/whoami", &foreign_kid).await;
        let refused_in = started.elapsed();
        assert_eq!(
            res.status(),
            401,
            "{label}: an unknown key cannot be fetched"
        );
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status(), 200, "{label}");
        let body: Value = ready.json().await.unwrap();
        let check = body["checks"]["oidc_discovery"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(check.starts_with("degraded"), "{label}: {body}");
        eprintln!(
            "drill {label}: cached token served in {elapsed:?}, new token in {elapsed_new:?}; unknown key refused in {refused_in:?}; readiness: {check}"
        );
        if outage == "STOP" {
            idp.signal("CONT");
            // Readiness recovers by itself once the IdP answers again.
            let started = Instant::now();
            loop {
                let body: Value = app.get("/readyz").await.json().await.unwrap();
                if body["checks"]["oidc_discovery"] == "ok" {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(15), "{body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            eprintln!(
                "drill {label}: readiness ok again {:?} after the IdP resumed",
                started.elapsed()
            );
            // The key-refresh limit (one per 10 s) must pass before the next attempt.
            tokio::time::sleep(stsvend::auth::discovery::KEY_REFRESH_MIN_INTERVAL).await;
        }
    }
}

/// IdP signing-key rotation: a token with a new `kid` verifies after one JWKS refresh; once
/// the old key is withdrawn (and stsvend has seen the new key set), tokens signed with it are
/// refused, even ones verified and cached before.
#[tokio::test]
async fn key_rotation_new_kid_verifies_withdrawn_key_is_refused() {
    let (_idp, idp_port) = tokio::task::spawn_blocking(crate::helpers::start_idp_anywhere)
        .await
        .unwrap();
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let app = spawn_app_against(&issuer, &components().moto_endpoint, |f| f).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let (_, old) = unique_user(&app, "rot-old", json!(["science"])).await;
    assert_eq!(app.get_as("/whoami", &old).await.status(), 200);

    let rotated = idp_post(&issuer, "/test/rotate", json!({"step": "add"})).await;
    let (_, new) = unique_user(&app, "rot-new", json!(["science"])).await;
    let res = app.get_as("/whoami", &new).await;
    assert_eq!(
        res.status(),
        200,
        "new kid {} after one refresh",
        rotated["kid"]
    );
    assert_eq!(
        app.get_as("/whoami", &old).await.status(),
        200,
        "both published"
    );

    idp_post(&issuer, "/test/rotate", json!({"step": "retire"})).await;
    // stsvend learns of the new key set at its next refresh (hourly, or an unknown kid once
    // the 10 s limit has passed): make it happen now.
    tokio::time::sleep(stsvend::auth::discovery::KEY_REFRESH_MIN_INTERVAL).await;
    let unknown =
        crate::helpers::mint(&issuer, json!({"sub": "rot-x"}), json!({"kid": "nope"})).await;
    assert_eq!(app.get_as("/whoami", &unknown).await.status(), 401);
    let res = app.get_as("/whoami", &old).await;
    assert_eq!(res.status(), 401, "a token signed with a withdrawn key");
    assert_eq!(app.get_as("/whoami", &new).await.status(), 200);
}

/// STS refusing (the service's own AWS setup is wrong: AccessDenied, PackedPolicyTooLarge,
/// RegionDisabledException): the user gets 502 `credential_service_error` naming the request
/// id and nothing of AWS's answer; the log has the code and message at ERROR.
#[tokio::test]
async fn sts_refusals_are_502_with_the_details_only_in_the_log() {
    let (faults, proxy_url) = crate::helpers::faulty_sts();
    let app = spawn_app_against(&components().issuer, &proxy_url, |f| f).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    for (status, code, message) in [
        (403, "AccessDenied", "User: arn:aws:sts::123456789012:assumed-role/stsvend-service/pod is not authorized to perform: sts:AssumeRole on resource X9Q"),
        (400, "PackedPolicyTooLarge", "Packed policy consumes 104% of allotted space X9Q"),
        (403, "RegionDisabledException", "STS is not activated in this region for account 123456789012 X9Q"),
    ] {
        *faults.refuse.lock().unwrap() = Some((status, code, message));
        let (_, token) = unique_user(&app, "refused", json!(["science"])).await;
        let res = app.get_as("/s3credentials", &token).await;
        assert_eq!(res.status(), 502, "{code}");
        assert_eq!(res.headers()["cache-control"], "no-store", "{code}");
        let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = res.text().await.unwrap();
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["error"], "credential_service_error", "{code}");
        assert_eq!(parsed["request_id"], request_id.as_str());
        for leak in [code, "123456789012", "X9Q", "arn:aws"] {
            assert!(!body.contains(leak), "{code}: the answer shows {leak}: {body}");
        }
        let logged = crate::helpers::captured_logs()
            .lines()
            .any(|l| l.contains(&request_id) && l.contains(code) && l.contains("ERROR"));
        assert!(logged, "{code}: the log line with the details is missing");
    }
    *faults.refuse.lock().unwrap() = None;
}
