//! The `serve` process: start-up failures and shutdown.

use std::process::Command;

use crate::config_errors::stsvend;

#[test]
fn serve_exits_1_when_the_port_is_in_use() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = stsvend(
        &["serve", "--config", "config/local.toml"],
        &[("STSVEND_SERVER__BIND", &addr)],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot listen on") && stderr.contains(&addr),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn serve_stops_cleanly_on_sigterm() {
    // No IdP or STS is needed to start and stop: nothing listens on port 9.
    let toml = crate::helpers::base_toml(0, "http://127.0.0.1:9", "http://127.0.0.1:9");
    let mut served =
        crate::helpers::serve_process(&toml, &[("STSVEND_SERVER__SHUTDOWN_TIMEOUT_SECONDS", "2")])
            .await;
    // Its signal handlers are installed before the socket is bound: once it answers HTTP,
    // SIGTERM is a graceful stop.
    let addr = format!("127.0.0.1:{}", served.port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !answers_healthz(&addr) {
        assert!(
            std::time::Instant::now() < deadline,
            "stsvend never served /healthz"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = served.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit}: {}", served.log_text());
    assert!(served.log_text().contains("stsvend stopped"));
}

fn answers_healthz(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200")
}

/// SIGTERM while 50 credential requests are in flight (STS answering slowly): every one of
/// them completes with its credential before the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish() {
    use std::time::{Duration, Instant};
    let c = crate::helpers::components();
    let (faults, proxy_url) = crate::helpers::faulty_sts();
    *faults.delay.lock().unwrap() = Duration::from_millis(1500);
    let toml = crate::helpers::base_toml(0, &c.issuer, &proxy_url)
        .replace("workers = 1", "workers = 2")
        .replace(
            "shutdown_timeout_seconds = 1",
            "shutdown_timeout_seconds = 20",
        );
    // 50 new users at once, each STS call slow: about shutdown, not the per-second STS
    // budget or STS's timeout.
    let mut served = crate::helpers::serve_process(
        &toml,
        &[
            ("STSVEND_STS__MAX_CALLS_PER_SECOND", "0"),
            ("STSVEND_STS__TIMEOUT_SECONDS", "10"),
        ],
    )
    .await;
    let port = served.port;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut tokens = Vec::new();
    for i in 0..50 {
        tokens.push(
            crate::helpers::mint(
                &c.issuer,
                serde_json::json!({"sub": format!("drain-{i}-{}", uuid::Uuid::new_v4().simple()), "groups": ["science"]}),
                serde_json::json!({}),
            )
            .await,
        );
    }
    let requests: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                let res = http
                    .get(format!("{base}/s3credentials"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = res.status().as_u16();
                let body = res.text().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((status, body))
            })
        })
        .collect();
    // Every request is waiting on STS.
    let deadline = Instant::now() + Duration::from_secs(20);
    while faults.hits.lock().unwrap().len() < 50 {
        assert!(Instant::now() < deadline, "not all requests reached STS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut outcomes = Vec::new();
    for r in requests {
        outcomes.push(r.await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(25);
    let exit = loop {
        if let Some(exit) = served.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = served.log_text();
    let completed = outcomes
        .iter()
        .filter(|o| matches!(o, Ok((200, body)) if body.contains("accessKeyId")))
        .count();
    assert_eq!(
        completed, 50,
        "requests in flight at SIGTERM: {outcomes:?}\nlog: {log}"
    );
    assert!(exit.success(), "exit status {exit}");
}
