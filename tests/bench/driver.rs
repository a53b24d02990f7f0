//! Benchmark scenarios that need more than wrk: STS call coalescing through the real request
//! path, memory per cached user through the library with an in-process STS, and start-up
//! time. Prints one JSON object per scenario on stdout.
//!
//!     bench-driver coalesce URL ISSUER MOTO_ENDPOINT N
//!     bench-driver memory USERS
//!     bench-driver startup STSVEND_BIN CONFIG RUNS   (env: the STSVEND_* overrides to use)
//!     bench-driver soak-prep URL ISSUER SESSION_KEY_FILE USERS OUT   (requests for soak.lua)
//!     bench-driver flood URL JWKS_FILE ISSUER N                      (distinct tokens, RSS)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use figment::providers::{Format, Serialized, Toml};
use futures_util::future::BoxFuture;
use secrecy::SecretString;
use serde_json::{json, Value};
use stsvend::vend::sts::{AssumeRoleRequest, StsApi, StsCredentials, StsError};
use stsvend::vend::vendor::Vendor;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("coalesce") if args.len() == 5 => {
            coalesce(
                &args[1],
                &args[2],
                &args[3],
                args[4].parse().unwrap_or(1000),
            )
            .await
        }
        Some("memory") if args.len() == 2 => memory(args[1].parse().unwrap_or(100_000)).await,
        Some("startup") if args.len() == 4 => {
            startup(&args[1], &args[2], args[3].parse().unwrap_or(5)).await
        }
        Some("soak-prep") if args.len() == 6 => {
            soak_prep(
                &args[1],
                &args[2],
                &args[3],
                args[4].parse().unwrap_or(1000),
                &args[5],
            )
            .await
        }
        Some("flood") if args.len() == 5 => {
            flood(
                &args[1],
                &args[2],
                &args[3],
                args[4].parse().unwrap_or(20_000),
            )
            .await
        }
        _ => {
            eprintln!("usage: bench-driver coalesce URL ISSUER MOTO N | memory USERS | startup BIN CONFIG RUNS");
            std::process::exit(2);
        }
    };
    println!("{result}");
}

async fn mint(http: &reqwest::Client, issuer: &str, user: &str) -> String {
    let res: Value = http
        .post(format!("{issuer}/test/mint"))
        .json(&json!({"claims": {"sub": user, "groups": ["science"]}}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("mint a token (the bench IdP runs with IDP_TEST_MINT=1)")
        .json()
        .await
        .expect("mint JSON");
    res["token"].as_str().expect("token").to_owned()
}

async fn assume_calls(http: &reqwest::Client, moto: &str, prefix: &str) -> usize {
    let data: Value = http
        .get(format!("{moto}/moto-api/data.json"))
        .send()
        .await
        .expect("moto data")
        .json()
        .await
        .expect("moto JSON");
    data["sts"]["AssumedRole"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| {
                    r["session_name"]
                        .as_str()
                        .is_some_and(|s| s.starts_with(prefix))
                })
                .count()
        })
        .unwrap_or(0)
}

async fn fire(http: &reqwest::Client, url: &str, tokens: Vec<String>) -> (usize, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|t| {
            let http = http.clone();
            let url = url.to_owned();
            tokio::spawn(async move {
                http.get(url)
                    .bearer_auth(t)
                    .send()
                    .await
                    .map(|r| r.status().as_u16() == 200)
                    .unwrap_or(false)
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap_or(false));
    }
    (ok, started.elapsed())
}

async fn coalesce(url: &str, issuer: &str, moto: &str, n: usize) -> Value {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let one_user = format!("one{}", &run[..12]);
    let token = mint(&http, issuer, &one_user).await;
    let (ok_same, t_same) = fire(&http, url, vec![token; n]).await;
    let calls_same = assume_calls(&http, moto, &one_user).await;

    let prefix = format!("many{}", &run[..8]);
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        tokens.push(mint(&http, issuer, &format!("{prefix}-{i:05}")).await);
    }
    let (ok_distinct, t_distinct) = fire(&http, url, tokens).await;
    let calls_distinct = assume_calls(&http, moto, &prefix).await;
    json!({
        "scenario": "coalesce",
        "requests": n,
        "same_user": {"ok": ok_same, "assume_role_calls": calls_same, "seconds": t_same.as_secs_f64()},
        "distinct_users": {"ok": ok_distinct, "assume_role_calls": calls_distinct, "seconds": t_distinct.as_secs_f64()},
    })
}

/// An in-process STS issuing credentials of AWS's real sizes (20-char key id, 40-char
/// secret, ~1,000-char session token).
struct FakeSts {
    calls: AtomicU64,
}

impl StsApi for FakeSts {
    fn assume_role<'a>(
        &'a self,
        request: &'a AssumeRoleRequest,
    ) -> BoxFuture<'a, Result<StsCredentials, StsError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::Relaxed);
            Ok(StsCredentials::new(
                format!("ASIA{n:016}"),
                SecretString::from(format!("{n:040}")),
                SecretString::from(format!("{n:01024}")),
                Utc::now() + TimeDelta::seconds(i64::from(request.duration_seconds)),
                Some(6),
            ))
        })
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn bench_settings() -> stsvend::config::Settings {
    let toml = r#"
[server]
public_url = "http://127.0.0.1:8080"
[oidc]
issuer = "http://127.0.0.1:9400"
client_id = "bench"
[sts]
role_arn = "arn:aws:iam::123456789012:role/stsvend-read"
# The in-process STS is not AWS: no budget, so the loop measures memory, not the guard.
max_calls_per_second = 0
[[buckets]]
name = "demo-inregion"
region = "us-west-2"
groups = ["science"]
"#;
    let figment = figment::Figment::from(Toml::string(stsvend::config::DEFAULT_TOML))
        .merge(Toml::string(toml))
        .merge(Serialized::default(
            "session.key",
            "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==",
        ));
    stsvend::config::from_figment(figment)
        .expect("bench settings")
        .1
}

async fn memory(users: usize) -> Value {
    let settings = bench_settings();
    let scope = stsvend::vend::scope::Scoper::new(&settings)
        .expect("scoper")
        .compute(&settings, &["science".to_owned()])
        .expect("scope")
        .expect("a bucket");
    let vendor = Vendor::new(
        Arc::new(FakeSts {
            calls: AtomicU64::new(0),
        }),
        &settings,
        Arc::new(stsvend::clock::SystemClock),
    );
    vendor.sync().await;
    let before = rss_kib();
    let now = Utc::now();
    let started = Instant::now();
    for i in 0..users {
        let user = format!("user-{i:07}@example.org");
        let vended = vendor
            .vend_for(
                stsvend::vend::vendor::Principal::user(&user),
                &scope,
                None,
                Duration::from_secs(900),
                now,
                Duration::from_secs(5),
            )
            .await
            .expect("vend");
        // What the credential route keeps per credential: its audit fields, rendered once.
        let c = &vended.credentials;
        vended.rendered.get_or_init(|| {
            let text: String = format!(
                r#""user":"{user}","session_name":"{}","scope":"{}","policy_hash":"{}","buckets":"{}","access_key_id":"{}","expiration":"{}","packed_policy_size":{}"#,
                vended.session_name,
                scope.mode.as_str(),
                scope.hash,
                scope.buckets_joined,
                c.access_key_id,
                c.expiration_rfc3339,
                c.packed_policy_size.unwrap_or(0)
            );
            let split = text.find(",\"access_key_id\"").unwrap_or(0);
            stsvend::vend::vendor::Rendered {
                text: text.into(),
                split,
            }
        });
    }
    vendor.sync().await;
    let fill = started.elapsed();
    let after = rss_kib();
    let entries = vendor.cached_entries();
    json!({
        "scenario": "memory",
        "method": "library API (stsvend::vend::vendor::Vendor::vend_for, as the route calls it, with the audit fields rendered once per credential as the route does) with an in-process STS issuing AWS-sized credentials (1,024-char session tokens)",
        "users": users,
        "cached_entries": entries,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_user": (after.saturating_sub(before)) as f64 / entries.max(1) as f64,
        "fill_seconds": fill.as_secs_f64(),
        "sts_calls": vendor.sts_calls(),
    })
}

async fn startup(bin: &str, config: &str, runs: usize) -> Value {
    let url = format!(
        "{}/readyz",
        std::env::var("STSVEND_SERVER__PUBLIC_URL").expect("STSVEND_SERVER__PUBLIC_URL")
    );
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let mut child = tokio::process::Command::new(bin)
            .args(["serve", "--config", config])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start stsvend");
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(30), "never ready");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        let _ = child.kill().await;
        let _ = child.wait().await;
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    json!({
        "scenario": "startup",
        "runs_ms": times,
        "median_ms": sorted[sorted.len() / 2],
    })
}

/// The soak's request mix, one line per user: `<path>\t<header>`. Half the users send a
/// bearer JWT from the IdP, half a session cookie (sealed with the deployment's session key,
/// as a login would leave it); formats rotate through all three. Every user's credential is
/// fetched once here, at a pace within the STS budget, as users arrive over time in real life.
async fn soak_prep(url: &str, issuer: &str, key_file: &str, users: usize, out: &str) -> Value {
    use stsvend::auth::session::{CookieCodec, SessionData};
    let http = reqwest::Client::new();
    let key = std::fs::read_to_string(key_file).expect("session key file");
    let figment = figment::Figment::from(Toml::string(stsvend::config::DEFAULT_TOML))
        .merge(Toml::string(
            "[server]\npublic_url = \"http://127.0.0.1:1\"\n[oidc]\nissuer = \"http://127.0.0.1:2\"\nclient_id = \"c\"\n[session]\nsecure = false\n[sts]\nrole_arn = \"arn:aws:iam::123456789012:role/r\"\n",
        ))
        .merge(Serialized::default("session.key", key.trim()));
    let settings = stsvend::config::from_figment(figment).expect("settings").1;
    let codec = CookieCodec::new(&settings.session, "/login", "").expect("codec");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let formats = ["", "?format=credential-process", "?format=container"];
    let mut lines = Vec::with_capacity(users);
    let started = Instant::now();
    for i in 0..users {
        let user = format!("soak{}-{i:05}", &run[..6]);
        let header = if i % 2 == 0 {
            format!("Authorization: Bearer {}", mint(&http, issuer, &user).await)
        } else {
            let now = Utc::now();
            let data = SessionData {
                sub: user.as_str().into(),
                groups: vec!["science".into()].into(),
                exp: now.timestamp() + 4 * 3600,
                auth_time: now.timestamp(),
            };
            let cookie = codec.session_cookie(&data, now).expect("cookie");
            format!("Cookie: {}={}", cookie.name(), cookie.value())
        };
        let path = format!("/s3credentials{}", formats[i % 3]);
        let (name, value) = header.split_once(": ").expect("header");
        let res = http
            .get(format!("{url}{}", &path["/s3credentials".len()..]))
            .header(name, value)
            .send()
            .await
            .expect("warm-up request");
        assert_eq!(res.status(), 200, "warm-up of {user}");
        lines.push(format!("{path}\t{header}"));
        // Stay within the default STS budget (100/s).
        tokio::time::sleep(Duration::from_millis(12)).await;
    }
    std::fs::write(out, lines.join("\n") + "\n").expect("write the request mix");
    json!({"scenario": "soak-prep", "users": users, "seconds": started.elapsed().as_secs_f64()})
}

/// A flood of distinct valid tokens (one user, a new `jti` each): each one is verified and
/// cached, so the server's memory must level off at the configured caps.
async fn flood(url: &str, jwks_file: &str, issuer: &str, n: usize) -> Value {
    let jwks: Value = serde_json::from_str(&std::fs::read_to_string(jwks_file).expect("jwks"))
        .expect("jwks JSON");
    let jwk = jwks["keys"][0].clone();
    let kid = jwk["kid"].as_str().expect("kid").to_owned();
    let der = rsa_private_der(&jwk);
    let key = jsonwebtoken::EncodingKey::from_rsa_der(&der);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid);
    let now = Utc::now().timestamp();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut ok = 0usize;
    let batch = 500;
    for start in (0..n).step_by(batch) {
        let tokens: Vec<String> = (start..(start + batch).min(n))
            .map(|i| {
                let claims = json!({
                    "iss": issuer, "aud": "stsvend-local", "sub": "flood-user",
                    "groups": ["science"], "iat": now, "exp": now + 3600, "jti": format!("{i}"),
                });
                jsonwebtoken::encode(&header, &claims, &key).expect("sign")
            })
            .collect();
        let (good, _) = fire(&http, url, tokens).await;
        ok += good;
    }
    json!({"scenario": "flood", "tokens": n, "ok": ok, "seconds": started.elapsed().as_secs_f64()})
}

/// PKCS#1 DER of an RSA private JWK (what jsonwebtoken's encoder takes).
fn rsa_private_der(jwk: &Value) -> Vec<u8> {
    use base64::Engine as _;
    let int = |name: &str| {
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().expect("JWK field"))
            .expect("base64url");
        if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            bytes.insert(0, 0);
        }
        der_item(0x02, &bytes)
    };
    let mut body = der_item(0x02, &[0]);
    for name in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
        body.extend(int(name));
    }
    der_item(0x30, &body)
}

fn der_item(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 128 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}
