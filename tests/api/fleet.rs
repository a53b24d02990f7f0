//! Fleet mode: replicas sharing one credential cache on a real redis-server, and what happens
//! when Redis dies or hangs.

use std::time::{Duration, Instant};

use figment::providers::Serialized;
use figment::Figment;
use futures_util::future::join_all;
use serde_json::Value;

use crate::helpers::{
    assume_role_calls, components, in_fleet, spawn_app_with, start_redis, unique_user, TestApp,
};

async fn replica(redis_port: u16) -> TestApp {
    let app = spawn_app_with(in_fleet(redis_port)).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    app
}

/// What the coalescing and budget tests prove holds while Redis answers. Under the whole
/// suite's load a Redis reply can take longer than the default 100 ms command timeout, and a
/// replica then rightly works alone (its own budget, its own AssumeRole): the outage test
/// covers that. These replicas wait longer, so the test sees the behaviour it is about.
fn patient(f: Figment) -> Figment {
    f.merge(Serialized::default("cluster.command_timeout_ms", 2000))
}

pub(crate) async fn patient_replica(redis_port: u16) -> TestApp {
    let fleet = in_fleet(redis_port);
    let app = spawn_app_with(move |f| patient(fleet(f))).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    app
}

async fn readiness(app: &TestApp) -> Value {
    app.get("/readyz").await.json().await.unwrap()
}

/// Until every replica has its Redis connection.
pub(crate) async fn wait_for_redis(apps: &[&TestApp], want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for app in apps {
        while readiness(app).await["checks"]["redis"] != want {
            assert!(Instant::now() < deadline, "redis never {want}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn access_key(app: &TestApp, token: &str) -> String {
    access_key_for(app, token, "").await
}

async fn access_key_for(app: &TestApp, token: &str, query: &str) -> String {
    let res = app.get_as(&format!("/s3credentials{query}"), token).await;
    assert_eq!(res.status(), 200, "{query}");
    let body: Value = res.json().await.unwrap();
    body["accessKeyId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn three_replicas_make_one_assume_role_per_user_and_hand_out_the_same_keys() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let apps = [
        patient_replica(redis_port).await,
        patient_replica(redis_port).await,
        patient_replica(redis_port).await,
    ];
    wait_for_redis(&apps.iter().collect::<Vec<_>>(), "ok").await;

    // 300 concurrent first requests for one user, spread over the replicas.
    let (user, token) = unique_user(&apps[0], "fleet", serde_json::json!(["science"])).await;
    let keys = join_all((0..300).map(|i| access_key(&apps[i % 3], &token))).await;
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "one credential for the fleet"
    );
    assert_eq!(assume_role_calls(&user).await, 1, "one AssumeRole");

    // 40 distinct users at once, each asked on every replica: one call each.
    let users = join_all(
        (0..40).map(|_| unique_user(&apps[0], "fleet-many", serde_json::json!(["science"]))),
    )
    .await;
    let asks = users
        .iter()
        .flat_map(|(_, token)| apps.iter().map(move |app| access_key(app, token)));
    join_all(asks).await;
    for (user, _) in &users {
        assert_eq!(assume_role_calls(user).await, 1, "{user}");
    }

    // Redis holds no user id, bucket, key id or secret in clear.
    let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let names: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(names.len() >= 41, "{} entries", names.len());
    for name in &names {
        assert!(!name.contains("fleet") && !name.contains("demo-"), "{name}");
        let kind: String = redis::cmd("TYPE")
            .arg(name)
            .query_async(&mut conn)
            .await
            .unwrap();
        // Entries are strings; a user's index is a set of entry names.
        let text = if kind == "set" {
            let members: Vec<String> = redis::cmd("SMEMBERS")
                .arg(name)
                .query_async(&mut conn)
                .await
                .unwrap();
            members.join(" ")
        } else {
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(name)
                .query_async(&mut conn)
                .await
                .unwrap();
            String::from_utf8_lossy(value.as_deref().unwrap_or_default()).into_owned()
        };
        assert!(
            !text.contains("fleet")
                && !text.contains("ASIA")
                && !text.contains("demo-")
                && !text.contains(&keys[0]),
            "{name} holds something in clear"
        );
        let ttl: i64 = redis::cmd("PTTL")
            .arg(name)
            .query_async(&mut conn)
            .await
            .unwrap();
        // -2: expired since KEYS listed it (the budget's slot key lives about a second).
        if ttl == -2 {
            continue;
        }
        assert!(
            ttl > 0 && ttl <= 3600 * 1000,
            "{name} has a lifetime: {ttl}"
        );
    }
}

/// A narrowed or shorter-lived credential is shared by the fleet like a full one (one
/// AssumeRole, the same key on every replica), and never handed out for another ask: the full
/// credential, the narrowed one and the 15-minute one are three entries.
#[tokio::test]
async fn the_fleet_shares_narrowed_credentials_apart_from_full_ones() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let apps = [
        patient_replica(redis_port).await,
        patient_replica(redis_port).await,
    ];
    wait_for_redis(&apps.iter().collect::<Vec<_>>(), "ok").await;
    let (user, token) = unique_user(&apps[0], "fleet-narrow", serde_json::json!(["science"])).await;
    let key_for = |app, query| access_key_for(app, &token, query);
    let narrowed = "?target=s3://demo-inregion/p1/";
    let short = "?duration_seconds=900";
    let first = key_for(&apps[0], narrowed).await;
    assert_eq!(
        key_for(&apps[1], narrowed).await,
        first,
        "the other replica's narrowed credential"
    );
    let short_key = key_for(&apps[1], short).await;
    assert_eq!(key_for(&apps[0], short).await, short_key);
    let full = key_for(&apps[0], "").await;
    assert_eq!(key_for(&apps[1], "").await, full);
    assert!(first != full && short_key != full && first != short_key);
    assert_eq!(
        assume_role_calls(&user).await,
        3,
        "one AssumeRole per ask for the fleet"
    );
}

/// Each archive's credentials are shared across the fleet apart from the others': one
/// AssumeRole per archive and ask for the whole fleet, whichever replica is asked.
#[tokio::test]
async fn the_fleet_shares_each_archives_credentials_apart() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let apps = [
        patient_replica(redis_port).await,
        patient_replica(redis_port).await,
    ];
    wait_for_redis(&apps.iter().collect::<Vec<_>>(), "ok").await;
    let (user, token) =
        unique_user(&apps[0], "fleet-archives", serde_json::json!(["science"])).await;
    let own = |app: &TestApp, path: &'static str| {
        let token = token.clone();
        let url = app.url(path);
        let http = app.http.clone();
        async move {
            let res = http.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let body: Value = res.json().await.unwrap();
            body["accessKeyId"].as_str().unwrap().to_owned()
        }
    };
    let routed = "?target=s3://demo-second/";
    let first = access_key_for(&apps[0], &token, routed).await;
    assert_eq!(access_key_for(&apps[1], &token, routed).await, first);
    let whole = own(&apps[1], "/archives/second/s3credentials").await;
    assert_eq!(own(&apps[0], "/archives/second/s3credentials").await, whole);
    let main = access_key(&apps[0], &token).await;
    assert_eq!(access_key(&apps[1], &token).await, main);
    assert!(first != whole && whole != main && first != main);
    assert_eq!(
        assume_role_calls(&user).await,
        3,
        "one AssumeRole per archive and ask for the fleet"
    );
}

/// Redis hung (SIGSTOP) or gone (SIGKILL): cached users and users STS can serve get their
/// credentials, within milliseconds of the command timeout; readiness stays 200 and says
/// Redis is unavailable; when Redis answers again the replica shares again by itself.
#[tokio::test]
async fn redis_hanging_or_dying_never_fails_a_request() {
    let (redis, redis_port) = crate::helpers::start_redis_anywhere();
    let a = replica(redis_port).await;
    let b = replica(redis_port).await;
    wait_for_redis(&[&a, &b], "ok").await;
    let (_, cached) = unique_user(&a, "hang-cached", serde_json::json!(["science"])).await;
    let first = access_key(&a, &cached).await;

    redis.signal("STOP");
    let started = Instant::now();
    assert_eq!(
        access_key(&a, &cached).await,
        first,
        "an L1 hit never touches Redis"
    );
    for replica in [&a, &b] {
        let (_, token) = unique_user(replica, "hang-new", serde_json::json!(["science"])).await;
        let t = Instant::now();
        access_key(replica, &token).await;
        // One command timeout (100 ms) for the failed lookup, then STS.
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    let ready = a.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["redis"], "unavailable", "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));

    redis.signal("CONT");
    // A replica retries after cluster.retry_after_failure_ms (1 s) and shares again: wait
    // until both have had an answer from Redis (their resync), not for a fixed time.
    let (user, token) = unique_user(&a, "hang-recovered", serde_json::json!(["science"])).await;
    wait_for_redis(&[&a, &b], "ok").await;
    let k1 = access_key(&a, &token).await;
    let k2 = access_key(&b, &token).await;
    assert_eq!(k1, k2, "shared again after Redis came back");
    assert_eq!(assume_role_calls(&user).await, 1);
    wait_for_redis(&[&a, &b], "ok").await;

    redis.signal("KILL");
    let (_, token) = unique_user(&b, "dead-new", serde_json::json!(["science"])).await;
    let t = Instant::now();
    access_key(&b, &token).await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(access_key(&a, &cached).await, first);
    let ready = b.get("/readyz").await;
    assert_eq!(ready.status(), 200);
}

/// A flood of distinct users over three replicas never makes more AssumeRole calls in any
/// second than `cluster.sts_rate_per_second` (counted from moto's own request record);
/// misses past the budget wait briefly, then get 503 + Retry-After; cached users are not
/// slowed down.
// Multi-threaded, like the replicas in production: on one test thread the three replicas'
// calls would queue behind each other and drift from their slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_wide_sts_budget_holds_in_every_second() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, moto, recording) = crate::helpers::start_recording_moto(dir.path());
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    const BUDGET: u32 = 20;
    let mut apps = Vec::new();
    for _ in 0..3 {
        let moto = moto.clone();
        let fleet = in_fleet(redis_port);
        let app = crate::helpers::spawn_app_against(&components().issuer, &moto, move |f| {
            patient(fleet(f))
                .merge(Serialized::default("cluster.sts_rate_per_second", BUDGET))
                .merge(Serialized::default("cluster.sts_max_wait_ms", 2000))
        })
        .await;
        assert!(app.wait_ready(Duration::from_secs(15)).await);
        apps.push(app);
    }
    wait_for_redis(&apps.iter().collect::<Vec<_>>(), "ok").await;
    let (_, cached) = unique_user(&apps[0], "budget-cached", serde_json::json!(["science"])).await;
    access_key(&apps[0], &cached).await;

    let users = join_all(
        (0..150).map(|_| unique_user(&apps[0], "budget-flood", serde_json::json!(["science"]))),
    )
    .await;
    let flood = join_all(users.iter().enumerate().map(|(i, (_, token))| {
        let app = &apps[i % 3];
        async move {
            let res = app.get_as("/s3credentials", token).await;
            (
                res.status().as_u16(),
                res.headers().get("retry-after").is_some(),
            )
        }
    }));
    let hit = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        access_key(&apps[1], &cached).await;
        t.elapsed()
    };
    let (results, hit_took) = tokio::join!(flood, hit);
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let refused = results.iter().filter(|(s, r)| *s == 503 && *r).count();
    assert_eq!(
        ok + refused,
        150,
        "only 200 or 503 + Retry-After: {results:?}"
    );
    assert!(
        refused > 0 && ok > BUDGET as usize,
        "ok {ok}, refused {refused}"
    );
    assert!(
        hit_took < Duration::from_millis(500),
        "a cached user waited {hit_took:?}"
    );

    // AssumeRole calls per second, by the signing time moto recorded.
    let mut per_second = std::collections::BTreeMap::<String, u32>::new();
    for line in std::fs::read_to_string(&recording).unwrap().lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        let is_assume_role = entry["body"].as_str().is_some_and(|b| {
            let body = if entry["body_encoded"] == true {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default()
            } else {
                b.to_owned()
            };
            body.contains("Action=AssumeRole") && body.contains("budget-flood")
        });
        if is_assume_role {
            let second = entry["headers"]["X-Amz-Date"].as_str().unwrap().to_owned();
            *per_second.entry(second).or_default() += 1;
        }
    }
    let calls: u32 = per_second.values().sum();
    assert_eq!(calls as usize, ok, "every 200 was one AssumeRole");
    let busiest = per_second.values().max().copied().unwrap_or(0);
    eprintln!("fleet budget {BUDGET}/s: {ok} served, {refused} refused with Retry-After, AssumeRole per second {per_second:?}, cached user answered in {hit_took:?}");
    assert!(
        busiest <= BUDGET,
        "{busiest} AssumeRole calls in one second: {per_second:?}"
    );
}

pub(crate) const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";

async fn admin_replica(redis_port: Option<u16>) -> TestApp {
    admin_replica_with(redis_port, |f| f).await
}

/// An admin replica with more settings (`more` is merged last). Patient with Redis like the
/// coalescing replicas: these tests are about revocations while Redis answers (or is gone),
/// not about a reply slower than 100 ms under the suite's load.
pub(crate) async fn admin_replica_with(
    redis_port: Option<u16>,
    more: impl Fn(Figment) -> Figment + Send + Sync + 'static,
) -> TestApp {
    let app = admin_replica_unready(redis_port, more).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    app
}

/// `admin_replica_with`, without waiting for it to be ready.
async fn admin_replica_unready(
    redis_port: Option<u16>,
    more: impl Fn(Figment) -> Figment + Send + Sync + 'static,
) -> TestApp {
    spawn_app_with(move |f| {
        let f = f
            .merge(Serialized::default("server.internal_bind", "127.0.0.1:0"))
            .merge(Serialized::default("admin.token", ADMIN_TOKEN));
        more(match redis_port {
            Some(port) => patient(in_fleet(port)(f)),
            None => f,
        })
    })
    .await
}

/// `n` admin replicas on the Redis at `redis_port`, each connected to it.
pub(crate) async fn admin_fleet(redis_port: u16, n: usize) -> Vec<TestApp> {
    let mut apps = Vec::new();
    for _ in 0..n {
        apps.push(admin_replica(Some(redis_port)).await);
    }
    wait_for_redis(&apps.iter().collect::<Vec<_>>(), "ok").await;
    apps
}

pub(crate) fn admin(
    app: &TestApp,
    method: reqwest::Method,
    query: &str,
) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(
            method,
            format!(
                "{}/admin/revocations{query}",
                app.internal.as_deref().unwrap()
            ),
        )
        .bearer_auth(ADMIN_TOKEN)
}

/// Revoking a user on one replica reaches every replica within a second: their bearer tokens
/// get 403 `revoked` (JSON, or HTML for a browser), their cached credentials are dropped
/// (lifting the revocation makes a new AssumeRole), other users are untouched; the admin API
/// is on the internal listener only, behind its token; the CLI works against it.
// Multi-threaded: the CLI runs as a blocking child process while the replicas' Redis
// connections (driven on this runtime) keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_replica_within_a_second() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let apps = admin_fleet(redis_port, 3).await;
    let (user, token) = unique_user(&apps[0], "revoked", serde_json::json!(["science"])).await;
    let (_, other) = unique_user(&apps[0], "kept", serde_json::json!(["science"])).await;
    let before = access_key(&apps[0], &token).await;
    for app in &apps {
        assert_eq!(access_key(app, &token).await, before);
    }

    // The API is not on the public port, and wants its token before it reads a body.
    let unread = reqwest::Client::new()
        .post(format!(
            "{}/admin/revocations",
            apps[0].internal.as_deref().unwrap()
        ))
        .bearer_auth("not-the-token")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        unread.status(),
        401,
        "the body was parsed before the token was checked"
    );
    let public = reqwest::Client::new()
        .post(apps[0].url("/admin/revocations"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"user": user}))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let wrong = reqwest::Client::new()
        .get(format!(
            "{}/admin/revocations",
            apps[0].internal.as_deref().unwrap()
        ))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let started = Instant::now();
    let res = admin(&apps[0], reqwest::Method::POST, "")
        .json(&serde_json::json!({"user": user, "reason": "abuse report 42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["applies_to"], "fleet");
    assert_eq!(body["deny_statement"]["Effect"], "Deny");
    // Every replica refuses within a second.
    let mut reached = Duration::ZERO;
    for app in &apps {
        loop {
            let res = app.get_as("/s3credentials", &token).await;
            if res.status() == 403 {
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["error"], "revoked");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "not revoked within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reached = reached.max(started.elapsed());
    }
    eprintln!("revocation reached 3 replicas in {reached:?}");
    let html = apps[2]
        .http
        .get(apps[2].url("/s3credentials"))
        .bearer_auth(&token)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), 403);
    assert!(html.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    access_key(&apps[1], &other).await;
    let listed: Value = admin(&apps[1], reqwest::Method::GET, "")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["revocations"][0]["user"], user.as_str());
    assert_eq!(listed["revocations"][0]["reason"], "abuse report 42");
    // Lifting a revocation that does not exist is 404 in the fleet too.
    let missing = admin(&apps[0], reqwest::Method::DELETE, "?user=nobody")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Lifted (through the CLI): the user is back everywhere, with fresh credentials: the
    // cached ones were dropped on revocation.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    // `stsvend <command> --admin-url <app's internal listener> --admin-token-file F <args>`
    let cli = |app: &TestApp, command: &str, args: &[&str]| {
        let mut all = vec![
            command,
            "--admin-url",
            app.internal.as_deref().unwrap(),
            "--admin-token-file",
            token_file.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        crate::config_errors::stsvend(&all, &[])
    };
    let out = cli(&apps[2], "unrevoke", &["--user", &user]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    for app in &apps {
        while app.get_as("/s3credentials", &token).await.status() != 200 {
            assert!(
                Instant::now() < deadline,
                "still revoked on {}",
                app.url("")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let after = access_key(&apps[1], &token).await;
    assert_ne!(after, before, "the cached credential was dropped");
    assert_eq!(assume_role_calls(&user).await, 2);
    for app in &apps {
        assert_eq!(access_key(app, &token).await, after);
    }

    // The CLI revokes too, and prints the deny statement.
    let out = cli(&apps[0], "revoke", &["--user", &user, "--reason", "again"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let statement: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        statement["Condition"]["StringEquals"]["aws:SourceIdentity"],
        user.as_str()
    );
    let out = cli(&apps[1], "revocations", &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&user));
}

/// Without Redis a revocation applies to the replica that received it, and says so.
#[tokio::test]
async fn without_redis_a_revocation_applies_to_one_replica() {
    let app = admin_replica(None).await;
    let (user, token) = unique_user(&app, "revoked-alone", serde_json::json!(["science"])).await;
    access_key(&app, &token).await;
    let body: Value = admin(&app, reqwest::Method::POST, "")
        .json(&serde_json::json!({"user": user, "expires_in_seconds": 60}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["applies_to"], "this replica");
    assert_eq!(app.get_as("/s3credentials", &token).await.status(), 403);
    // The README page does not greet a revoked user or list what they could read.
    let page = app
        .get_as("/s3credentialsREADME", &token)
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("s3credentials"), "{page}");
    assert!(
        !page.contains(&user),
        "a revoked user is shown as signed in"
    );
    // It expires by itself.
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(app.get_as("/s3credentials", &token).await.status(), 200);
    let missing = admin(&app, reqwest::Method::DELETE, "?user=nobody")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// The status a replica gives `token` on `/s3credentials`.
async fn status_for(app: &TestApp, token: &str) -> u16 {
    app.get_as("/s3credentials", token).await.status().as_u16()
}

/// Until every replica answers `token` with `want` (or `within` passes: a failure).
pub(crate) async fn until_every_replica_says(
    apps: &[&TestApp],
    token: &str,
    want: u16,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    for app in apps {
        loop {
            let got = status_for(app, token).await;
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} still answers {got}, not {want}, after {within:?}",
                app.url("")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// For `span`, every replica keeps answering `token` with `want` (several resyncs).
pub(crate) async fn every_replica_keeps_saying(
    apps: &[&TestApp],
    token: &str,
    want: u16,
    span: Duration,
) {
    let until = Instant::now() + span;
    while Instant::now() < until {
        for app in apps {
            assert_eq!(status_for(app, token).await, want, "on {}", app.url(""));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub(crate) async fn revoke_on(app: &TestApp, user: &str) -> Value {
    let res = admin(app, reqwest::Method::POST, "")
        .json(&serde_json::json!({"user": user}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// A counter's value from a replica's internal listener; a missing metric fails the test.
async fn internal_metric(app: &TestApp, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", app.internal.as_deref().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {text}"))
}

/// Redis losing its data (`FLUSHALL`, a restart without persistence, a failover) lifts no
/// revocation: the replicas keep refusing, put the record back, and count the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_survives_redis_losing_its_data() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let with_metrics = || |f: Figment| f.merge(Serialized::default("server.metrics", true));
    let apps = [
        admin_replica_with(Some(redis_port), with_metrics()).await,
        admin_replica_with(Some(redis_port), with_metrics()).await,
        admin_replica_with(Some(redis_port), with_metrics()).await,
    ];
    let refs: Vec<&TestApp> = apps.iter().collect();
    wait_for_redis(&refs, "ok").await;
    let (user, token) = unique_user(&apps[0], "flushed", serde_json::json!(["science"])).await;
    access_key(&apps[0], &token).await;
    assert_eq!(revoke_on(&apps[0], &user).await["applies_to"], "fleet");
    until_every_replica_says(&refs, &token, 403, Duration::from_secs(1)).await;

    assert_eq!(redis_cli(redis_port, &["FLUSHALL"]), "OK");
    every_replica_keeps_saying(&refs, &token, 403, Duration::from_millis(1500)).await;
    let hash = format!("{}revocations", "stsvend:");
    let deadline = Instant::now() + Duration::from_secs(2);
    while redis_cli(redis_port, &["HLEN", &hash]) != "1" {
        assert!(Instant::now() < deadline, "the record was not put back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lost = 0.0;
    for app in &apps {
        lost += internal_metric(app, "stsvend_revocations_lost_total").await;
    }
    assert!(lost >= 1.0, "the loss was not counted");
    // A replica that starts now learns the revocation from Redis.
    let late = admin_replica(Some(redis_port)).await;
    until_every_replica_says(&[&late], &token, 403, Duration::from_secs(2)).await;
}

/// A revocation accepted while Redis was down ("this replica") reaches every replica once
/// Redis answers again, even empty, and a replica started afterwards learns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_made_during_a_redis_outage_reaches_the_fleet_when_redis_returns() {
    let (redis, redis_port) = crate::helpers::start_redis_anywhere();
    let apps = admin_fleet(redis_port, 3).await;
    let refs: Vec<&TestApp> = apps.iter().collect();
    let (user, token) = unique_user(&apps[0], "outage", serde_json::json!(["science"])).await;
    access_key(&apps[0], &token).await;

    drop(redis);
    wait_for_redis(&refs, "unavailable").await;
    assert_eq!(
        revoke_on(&apps[0], &user).await["applies_to"],
        "this replica"
    );
    assert_eq!(status_for(&apps[0], &token).await, 403);
    // Redis back, empty (no persistence); the replicas retry after 1 s.
    let _redis = start_redis(redis_port);
    until_every_replica_says(&refs, &token, 403, Duration::from_secs(4)).await;
    every_replica_keeps_saying(&refs, &token, 403, Duration::from_secs(1)).await;
    let late = admin_replica(Some(redis_port)).await;
    until_every_replica_says(&[&late], &token, 403, Duration::from_secs(2)).await;
}

/// Rotating `cluster.encryption_key` (old key kept as previous, then dropped): records are
/// re-sealed under the new key, a lift made by a new replica holds (nothing comes back on
/// the next resync), and a replica that only knows the new key still refuses the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_cluster_key_keeps_revocations_and_their_lifts() {
    const NEW_KEY: &str = "bmV3LXN0c3ZlbmQtZmxlZXQta2V5LTMyLWJ5dGVzLSE=";
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let old = admin_replica(Some(redis_port)).await;
    wait_for_redis(&[&old], "ok").await;
    let (lifted, lifted_token) =
        unique_user(&old, "rotated-lift", serde_json::json!(["science"])).await;
    let (kept, kept_token) =
        unique_user(&old, "rotated-kept", serde_json::json!(["science"])).await;
    assert_eq!(revoke_on(&old, &lifted).await["applies_to"], "fleet");
    assert_eq!(revoke_on(&old, &kept).await["applies_to"], "fleet");

    let rotated = || {
        |f: Figment| {
            f.merge(Serialized::default("cluster.encryption_key", NEW_KEY))
                .merge(Serialized::default(
                    "cluster.previous_encryption_keys",
                    vec![crate::helpers::FLEET_KEY],
                ))
        }
    };
    let b = admin_replica_with(Some(redis_port), rotated()).await;
    let c = admin_replica_with(Some(redis_port), rotated()).await;
    drop(old);
    let refs = [&b, &c];
    wait_for_redis(&refs, "ok").await;
    until_every_replica_says(&refs, &lifted_token, 403, Duration::from_secs(2)).await;

    let res = admin(&b, reqwest::Method::DELETE, &format!("?user={lifted}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    until_every_replica_says(&refs, &lifted_token, 200, Duration::from_secs(2)).await;
    every_replica_keeps_saying(&refs, &lifted_token, 200, Duration::from_millis(1500)).await;
    every_replica_keeps_saying(&refs, &kept_token, 403, Duration::from_millis(200)).await;

    // The old key dropped: what was sealed with it has been re-sealed.
    let d = admin_replica_with(Some(redis_port), |f| {
        f.merge(Serialized::default("cluster.encryption_key", NEW_KEY))
    })
    .await;
    wait_for_redis(&[&d], "ok").await;
    until_every_replica_says(&[&d], &kept_token, 403, Duration::from_secs(2)).await;
    every_replica_keeps_saying(&[&d], &lifted_token, 200, Duration::from_millis(1200)).await;
}

/// Login error callbacks never reach the IdP, so they claim nothing in Redis; and login
/// starts are rate-limited per client like the other IdP-bound work (review finding c).
#[tokio::test]
async fn anonymous_login_error_callbacks_leave_nothing_in_redis() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let app = patient_replica(redis_port).await;
    wait_for_redis(&[&app], "ok").await;
    let keys_before: i64 = redis_cli(redis_port, &["DBSIZE"]).parse().unwrap();
    let (mut started, mut limited) = (0, 0);
    for _ in 0..150 {
        let res = app.get("/login").await;
        if res.status() == 429 {
            assert!(res.headers().get("retry-after").is_some());
            limited += 1;
            continue;
        }
        assert_eq!(res.status(), 302);
        started += 1;
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        let state = reqwest::Url::parse(&location)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let cookie = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("; ");
        let res = app
            .http
            .get(app.url("/login"))
            .query(&[("state", state.as_str()), ("error", "access_denied")])
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let keys_after: i64 = redis_cli(redis_port, &["DBSIZE"]).parse().unwrap();
    eprintln!("{started} logins started, {limited} refused with 429; Redis keys {keys_before} -> {keys_after}");
    assert!(limited > 0, "login starts are not rate-limited");
    assert!(
        keys_after - keys_before <= 5,
        "{} Redis keys for error callbacks",
        keys_after - keys_before
    );
}

/// A user whose groups shrink gets a credential for the smaller scope: the broader one, cached
/// here or by another replica, is not reused; replicas still share per scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrunk_groups_never_reuse_the_broader_cached_credential() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let a = patient_replica(redis_port).await;
    let b = patient_replica(redis_port).await;
    wait_for_redis(&[&a, &b], "ok").await;
    let user = format!("shrunk-{}", uuid::Uuid::new_v4().simple());
    let token = |groups: Value| {
        crate::helpers::mint(
            &a.issuer,
            serde_json::json!({"sub": user, "groups": groups}),
            serde_json::json!({}),
        )
    };
    let broad = token(serde_json::json!(["science", "restricted"])).await;
    let narrow = token(serde_json::json!(["science"])).await;
    let broad_key = access_key(&a, &broad).await;
    assert_eq!(access_key(&a, &broad).await, broad_key, "cached");
    // Same replica, fewer groups: not the broader credential.
    let narrow_key = access_key(&a, &narrow).await;
    assert_ne!(narrow_key, broad_key);
    // Another replica, fewer groups: neither the broader L2 entry; the narrower one is shared.
    assert_eq!(access_key(&b, &narrow).await, narrow_key);
    assert_eq!(access_key(&b, &broad).await, broad_key);
    assert_eq!(assume_role_calls(&user).await, 2);
}

/// Another replica's shared (L2) entry is held to the same reuse window as a local one: the
/// Earthdata format wants 56 minutes left, so a credential with 55 left is not handed out
/// as Earthdata JSON (a new one is made), while the SDK formats may still use it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replicas_entry_respects_the_earthdata_reuse_window() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let a = patient_replica(redis_port).await;
    let b = patient_replica(redis_port).await;
    wait_for_redis(&[&a, &b], "ok").await;
    let (user, token) = unique_user(&a, "l2-window", serde_json::json!(["science"])).await;
    let first = access_key(&a, &token).await;
    // Five minutes later on replica b: 55 minutes left.
    b.clock.advance(Duration::from_secs(300));
    let sdk: Value = b
        .get_as("/s3credentials?format=credential-process", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sdk["AccessKeyId"], first.as_str(), "SDK formats reuse it");
    let earthdata = access_key(&b, &token).await;
    assert_ne!(earthdata, first, "55 minutes left served as Earthdata JSON");
    assert_eq!(assume_role_calls(&user).await, 2);
}

/// A revocation with an expiry ends on every replica when it expires, and does not come back
/// from Redis or another replica afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_expires_on_every_replica_and_stays_expired() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let apps = admin_fleet(redis_port, 2).await;
    let refs: Vec<&TestApp> = apps.iter().collect();
    let (user, token) = unique_user(&apps[0], "expiring", serde_json::json!(["science"])).await;
    let res = admin(&apps[0], reqwest::Method::POST, "")
        .json(&serde_json::json!({"user": user, "expires_in_seconds": 120}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    until_every_replica_says(&refs, &token, 403, Duration::from_secs(2)).await;
    for app in &apps {
        app.clock.advance(Duration::from_secs(121));
    }
    until_every_replica_says(&refs, &token, 200, Duration::from_secs(2)).await;
    every_replica_keeps_saying(&refs, &token, 200, Duration::from_millis(1500)).await;
    let listed: Value = admin(&apps[1], reqwest::Method::GET, "")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["revocations"], serde_json::json!([]));
}

/// A replica that starts after a revocation refuses the user from its first answer: it is
/// not ready until it has read the fleet's revocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_after_a_revocation_refuses_from_its_first_answer() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let first = admin_replica(Some(redis_port)).await;
    wait_for_redis(&[&first], "ok").await;
    let (user, token) = unique_user(&first, "before-start", serde_json::json!(["science"])).await;
    assert_eq!(revoke_on(&first, &user).await["applies_to"], "fleet");
    for _ in 0..3 {
        let late = admin_replica(Some(redis_port)).await;
        assert_eq!(
            status_for(&late, &token).await,
            403,
            "served before it knew"
        );
    }
}

/// A user signed in with a browser session (cookie, not a token) is refused on every replica
/// once revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_cookie_session_is_refused_on_every_replica() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let apps = admin_fleet(redis_port, 2).await;
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(crate::helpers::BROWSER_UA)
        .build()
        .unwrap();
    let (_, res) =
        crate::helpers::browser_login(&apps[0], &client, "/s3credentials", "alice", "alice-pw")
            .await;
    assert_eq!(res.status(), 200);
    let cookie = reqwest::cookie::CookieStore::cookies(&*jar, &apps[0].address.parse().unwrap())
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let with_cookie = |app: &TestApp| {
        app.http
            .get(app.url("/s3credentials"))
            .header("cookie", cookie.clone())
            .header("accept", "application/json")
            .send()
    };
    // The session key is shared, so the cookie works on both replicas.
    assert_eq!(with_cookie(&apps[1]).await.unwrap().status(), 200);
    assert_eq!(revoke_on(&apps[1], "alice").await["applies_to"], "fleet");
    let deadline = Instant::now() + Duration::from_secs(2);
    for app in &apps {
        loop {
            let res = with_cookie(app).await.unwrap();
            if res.status() == 403 {
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["error"], "revoked");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cookie still works on {}",
                app.url("")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A replica killed while its AssumeRole runs holds the user's lock only briefly: once the
/// lock lapses, one of the replicas waiting on it calls STS and the others take that
/// credential, long before `cluster.lock_wait_ms` runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_holder_that_dies_mid_call_hands_over_to_one_waiter() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let c = components();
    // The holder's STS never answers in time; the waiters' STS answers at once, and counts.
    let (slow, slow_url) = crate::helpers::faulty_sts();
    *slow.delay.lock().unwrap() = Duration::from_secs(60);
    let (fast, fast_url) = crate::helpers::faulty_sts();
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let holder = crate::helpers::serve_process(
        &crate::helpers::base_toml(0, &c.issuer, &slow_url),
        &[
            ("STSVEND_CLUSTER__REDIS_URL", &redis_url),
            ("STSVEND_CLUSTER__ENCRYPTION_KEY", crate::helpers::FLEET_KEY),
            // A lease of 1 s + 2 x 500 ms.
            ("STSVEND_CLUSTER__COMMAND_TIMEOUT_MS", "500"),
            ("STSVEND_STS__TIMEOUT_SECONDS", "30"),
            ("STSVEND_CLUSTER__LOCK_WAIT_MS", "30000"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http
        .get(holder.url("/readyz"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "holder never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting = |f: Figment| {
        patient(f)
            .merge(Serialized::default("server.internal_bind", "127.0.0.1:0"))
            .merge(Serialized::default("server.metrics", true))
            .merge(Serialized::default("sts.timeout_seconds", 30))
            .merge(Serialized::default("cluster.lock_wait_ms", 30_000))
    };
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let fleet = in_fleet(redis_port);
        let app =
            crate::helpers::spawn_app_against(&c.issuer, &fast_url, move |f| waiting(fleet(f)))
                .await;
        assert!(app.wait_ready(Duration::from_secs(15)).await);
        waiters.push(app);
    }
    wait_for_redis(&waiters.iter().collect::<Vec<_>>(), "ok").await;
    let (user, token) = unique_user(&waiters[0], "dies", serde_json::json!(["science"])).await;

    // The holder takes the lock and calls STS...
    let call = http
        .get(holder.url("/s3credentials"))
        .bearer_auth(&token)
        .send();
    let holder_call = tokio::spawn(call);
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow.hits.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the holder never called STS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...both others wait for it...
    let asks: Vec<_> = waiters
        .iter()
        .map(|app| {
            let (url, token) = (app.url("/s3credentials"), token.clone());
            tokio::spawn(async move {
                let res = reqwest::Client::new()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), res.text().await.unwrap())
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    for app in &waiters {
        while internal_metric(app, "stsvend_shared_cache_lock_waits_total").await < 1.0 {
            assert!(Instant::now() < deadline, "a replica never waited");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // ...and it dies.
    let killed = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &holder.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut keys = Vec::new();
    for ask in asks {
        let (status, body) = ask.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        keys.push(body["accessKeyId"].as_str().unwrap().to_owned());
    }
    let handed_over = killed.elapsed();
    eprintln!("handed over {handed_over:?} after the holder died");
    assert!(
        holder_call.await.unwrap().is_err(),
        "the killed holder answered"
    );
    assert_eq!(keys[0], keys[1], "both waiters got the one new credential");
    assert_eq!(
        fast.hits.lock().unwrap().len(),
        1,
        "one waiter called STS for {user}"
    );
    // The lapse, not the 30 s wait, handed the work over.
    assert!(
        handed_over < Duration::from_secs(10),
        "took {handed_over:?} after the holder died"
    );
}

/// The fleet budget holds where STS counts: a request whose slot passed while the SDK was
/// still preparing it is not signed or sent (a busy machine can take longer between the
/// budget check and the signature than the slot's grace).
#[tokio::test]
async fn a_request_prepared_after_its_budget_slot_is_never_sent() {
    use stsvend::vend::sts::{AssumeRoleRequest, AwsSts, StsApi, StsError, SLOT_MISSED};
    let (faults, url) = crate::helpers::faulty_sts();
    let figment = crate::helpers::test_figment(0, &components().issuer, &url);
    let (_, settings) = stsvend::config::from_figment(figment).unwrap();
    let sts = AwsSts::from_settings(
        &settings.sts,
        Some(aws_sdk_sts::config::Credentials::new(
            "testing", "testing", None, None, "test",
        )),
    )
    .await;
    let mut request = AssumeRoleRequest {
        user_id: "late".into(),
        role_arn: settings.sts.role_arn.to_string(),
        external_id: None,
        role_session_name: "late@stsvend-test".into(),
        source_identity: None,
        policy: None,
        policy_arns: vec![],
        duration_seconds: 900,
        tags: vec![],
        sign_by: Some(Instant::now() - Duration::from_millis(1)),
    };
    match sts.assume_role(&request).await {
        Err(StsError::Busy { reason, .. }) => assert_eq!(reason, SLOT_MISSED),
        other => panic!("a late request was not refused: {:?}", other.map(|_| ())),
    }
    assert_eq!(faults.hits.lock().unwrap().len(), 0, "it reached STS");
    // In time, the same request is sent and answered.
    request.sign_by = Some(Instant::now() + Duration::from_secs(5));
    assert!(sts.assume_role(&request).await.is_ok());
    assert_eq!(faults.hits.lock().unwrap().len(), 1);
}

/// Settings that keep a replica's revocations in `file` (a restart names the same file).
pub(crate) fn keeping_revocations_in(
    file: &std::path::Path,
) -> impl Fn(Figment) -> Figment + Send + Sync {
    let file = file.display().to_string();
    move |f| f.merge(Serialized::default("revocations.file", file.clone()))
}

/// A lone replica keeps revocations on disk: the next start (the same file) refuses the user
/// from its first answer, and a lift is kept the same way.
#[tokio::test]
async fn a_lone_replicas_revocations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state/revocations.json");
    let first = admin_replica_with(None, keeping_revocations_in(&file)).await;
    let (user, token) = unique_user(&first, "durable", serde_json::json!(["science"])).await;
    let (_, other) = unique_user(&first, "durable-other", serde_json::json!(["science"])).await;
    assert_eq!(revoke_on(&first, &user).await["applies_to"], "this replica");
    assert_eq!(status_for(&first, &token).await, 403);
    drop(first);

    let second = admin_replica_with(None, keeping_revocations_in(&file)).await;
    assert_eq!(
        status_for(&second, &token).await,
        403,
        "a restart lifted it"
    );
    assert_eq!(status_for(&second, &other).await, 200);
    let lifted = admin(&second, reqwest::Method::DELETE, &format!("?user={user}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 204);
    drop(second);

    let third = admin_replica_with(None, keeping_revocations_in(&file)).await;
    assert_eq!(status_for(&third, &token).await, 200, "the lift was lost");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

/// A replica that starts while Redis hangs, with no copy of its own, serves no signed-in
/// request (503, not ready) until it has read the fleet's revocations; then it refuses the
/// revoked user and serves the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_redis_hangs_serves_nobody_until_it_knows_the_revocations() {
    let (redis, redis_port) = crate::helpers::start_redis_anywhere();
    let first = admin_replica(Some(redis_port)).await;
    wait_for_redis(&[&first], "ok").await;
    let (user, token) = unique_user(&first, "hung-start", serde_json::json!(["science"])).await;
    let (_, other) = unique_user(&first, "hung-other", serde_json::json!(["science"])).await;
    assert_eq!(revoke_on(&first, &user).await["applies_to"], "fleet");

    redis.signal("STOP");
    let late = admin_replica_unready(Some(redis_port), |f| f).await;
    // Wait for everything else to be ready (OIDC discovery), then look.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = late.get("/readyz").await;
        assert_eq!(res.status(), 503, "ready without the fleet's revocations");
        let body: Value = res.json().await.unwrap();
        let says = body["error_description"].as_str().unwrap_or("").to_owned();
        if !says.contains("OIDC") {
            assert!(says.contains("revocations"), "{says}");
            break;
        }
        assert!(Instant::now() < deadline, "{says}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in [&token, &other] {
        let res = late.get_as("/s3credentials", t).await;
        assert_eq!(
            res.status(),
            503,
            "served while not knowing the revocations"
        );
        assert!(res.headers().contains_key("retry-after"));
    }
    // The README page does not show anyone as signed in meanwhile.
    let page = late
        .get_as("/s3credentialsREADME", &token)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains(&user),
        "the page greets a user it cannot check"
    );

    redis.signal("CONT");
    assert!(late.wait_ready(Duration::from_secs(15)).await);
    assert_eq!(status_for(&late, &token).await, 403);
    assert_eq!(status_for(&late, &other).await, 200);
}

/// A fleet replica restarting while Redis is down starts from its own copy, written after it
/// had read the fleet's set: ready, and the user revoked before is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarting_while_redis_is_down_refuses_from_its_own_copy() {
    let (redis, redis_port) = crate::helpers::start_redis_anywhere();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("revocations.json");
    let first = admin_replica_with(Some(redis_port), keeping_revocations_in(&file)).await;
    wait_for_redis(&[&first], "ok").await;
    let (user, token) = unique_user(&first, "copy-start", serde_json::json!(["science"])).await;
    assert_eq!(revoke_on(&first, &user).await["applies_to"], "fleet");
    drop(first);
    redis.signal("KILL");

    let again = admin_replica_with(Some(redis_port), keeping_revocations_in(&file)).await;
    assert_eq!(status_for(&again, &token).await, 403);
}

/// A replica whose clock runs behind revokes a user just after a replica ahead of it lifted
/// the same user's revocation: the revocation is stamped after the lift it has seen and
/// stays in force on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_on_a_replica_whose_clock_is_behind_wins_over_the_lift_before_it() {
    use stsvend::clock::Clock;
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let apps = admin_fleet(redis_port, 2).await;
    apps[0].clock.advance(Duration::from_secs(600));
    let (user, token) = unique_user(&apps[1], "skewed", serde_json::json!(["science"])).await;
    for round in 0..5 {
        revoke_on(&apps[0], &user).await;
        // Without their channel the replicas learn of each other's changes only at their
        // next periodic read (up to half a second later): the revoke below comes before it.
        redis_cli(redis_port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
        let lifted = admin(&apps[0], reqwest::Method::DELETE, &format!("?user={user}"))
            .send()
            .await
            .unwrap();
        assert_eq!(lifted.status(), 204, "round {round}");
        let body = revoke_on(&apps[1], &user).await;
        let refs: Vec<&TestApp> = apps.iter().collect();
        until_every_replica_says(&refs, &token, 403, Duration::from_secs(2)).await;
        every_replica_keeps_saying(&refs, &token, 403, Duration::from_millis(1200)).await;
        let stamped: chrono::DateTime<chrono::Utc> = body["revocation"]["revoked_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            stamped > apps[1].clock.now() + chrono::TimeDelta::seconds(500),
            "round {round}: stamped {stamped}, before the lift it had seen"
        );
    }
}

/// A user's share of new credentials holds across the fleet: asking three replicas in turn
/// for 30 distinct narrowings gets them one share's worth (on Redis's clock), not three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_share_of_new_credentials_holds_across_replicas() {
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let mut apps = Vec::new();
    for _ in 0..3 {
        let app = spawn_app_with(move |f| {
            patient(in_fleet(redis_port)(f))
                .merge(Serialized::default(
                    "limits.user_new_credentials_per_minute",
                    6,
                ))
                .merge(Serialized::default("limits.user_new_credentials_burst", 3))
        })
        .await;
        assert!(app.wait_ready(Duration::from_secs(15)).await);
        apps.push(app);
    }
    wait_for_redis(&apps.iter().collect::<Vec<_>>(), "ok").await;
    let (user, token) = unique_user(&apps[0], "fleet-share", serde_json::json!(["science"])).await;
    let started = Instant::now();
    let asks = (0..30).map(|i| {
        let (app, token) = (&apps[i % 3], &token);
        async move {
            let res = app
                .get_as(
                    &format!("/s3credentials?target=s3://demo-inregion/s{i}/"),
                    token,
                )
                .await;
            res.status().as_u16()
        }
    });
    let statuses = join_all(asks).await;
    let elapsed = started.elapsed().as_secs_f64();
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    // The burst, and what 6 a minute adds while the asks ran (each replica alone would give 3).
    let bound = 3 + (6.0 * elapsed / 60.0).ceil() as usize;
    assert!(
        served <= bound,
        "{served} served across the fleet, bound {bound}: {statuses:?}"
    );
    assert_eq!(assume_role_calls(&user).await, served);
}
