//! Nothing one user does may cost another: a user asking for hundreds of distinct narrowed
//! credentials is bounded (429 + Retry-After for them alone) and everyone else is served.

use std::time::Duration;

use figment::providers::Serialized;
use serde_json::{json, Value};

use crate::helpers::{components, spawn_app_against, unique_user, TestApp};

/// The AssumeRole calls moto recorded for `user`.
fn calls_for(recording: &std::path::Path, user: &str) -> usize {
    crate::helpers::recorded_assume_roles_of(recording, user).len()
}

async fn app_with(
    dir: &std::path::Path,
    extra: Value,
) -> (TestApp, crate::helpers::Component, std::path::PathBuf) {
    let (moto, endpoint, recording) = crate::helpers::start_recording_moto(dir);
    let issuer = components().issuer.clone();
    let app = spawn_app_against(&issuer, &endpoint, move |f| {
        let mut f = f.merge(Serialized::default("server.metrics", true));
        for (k, v) in extra.as_object().unwrap() {
            f = f.merge(Serialized::default(k, v.clone()));
        }
        f
    })
    .await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let (control, token) = unique_user(&app, "recording", json!(["science"])).await;
    assert_eq!(app.get_as("/s3credentials", &token).await.status(), 200);
    assert_eq!(calls_for(&recording, &control), 1, "moto records");
    (app, moto, recording)
}

/// One user fires 600 distinct narrowed asks, 30 at a time, while 20 other users make their
/// first request: every other user gets a credential; the greedy user's AssumeRoles stay
/// within their own bound and the rest of their asks are 429s with Retry-After, counted.
#[tokio::test]
async fn one_user_asking_for_hundreds_of_narrowings_cannot_refuse_anyone_else() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _moto, recording) = app_with(
        dir.path(),
        json!({
            "sts.max_calls_per_second": 50,
            // What is measured is the budget, not moto's speed on a loaded machine.
            "sts.timeout_seconds": 10,
            "limits.user_new_credentials_per_minute": 30,
            "limits.user_new_credentials_burst": 10,
        }),
    )
    .await;
    let (greedy, greedy_token) = unique_user(&app, "greedy", json!(["science"])).await;
    let mut others = Vec::new();
    for _ in 0..20 {
        others.push(unique_user(&app, "patient", json!(["science"])).await);
    }
    let started = std::time::Instant::now();
    let app = &app;
    // The others ask once the greedy user has hit a limit: the moment they would be refused
    // if that limit were everybody's.
    let limit_hit = &std::sync::atomic::AtomicBool::new(false);
    let flood = async {
        use futures_util::StreamExt;
        futures_util::stream::iter(0..600)
            .map(|i| {
                let token = greedy_token.clone();
                async move {
                    let res = app
                        .get_as(
                            &format!("/s3credentials?target=s3://demo-inregion/p{i}/"),
                            &token,
                        )
                        .await;
                    let status = res.status().as_u16();
                    if status != 200 {
                        limit_hit.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    let retry = res.headers().get("retry-after").is_some();
                    let body: Value = res.json().await.unwrap_or_default();
                    (
                        status,
                        retry,
                        body["error"].as_str().unwrap_or("").to_owned(),
                    )
                }
            })
            .buffer_unordered(30)
            .collect::<Vec<_>>()
            .await
    };
    let patient = async {
        let waiting = std::time::Instant::now();
        while !limit_hit.load(std::sync::atomic::Ordering::SeqCst)
            && waiting.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let asks = others.iter().map(|(_, token)| async move {
            app.get_as("/s3credentials", token).await.status().as_u16()
        });
        futures_util::future::join_all(asks).await
    };
    let (flooded, served) = tokio::join!(flood, patient);
    let elapsed = started.elapsed();

    assert!(
        served.iter().all(|s| *s == 200),
        "other users were refused: {served:?}"
    );
    let ok = flooded.iter().filter(|(s, _, _)| *s == 200).count();
    let limited: Vec<_> = flooded.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(ok + limited.len(), 600, "only 200s and 429s: {flooded:?}");
    assert!(
        limited
            .iter()
            .all(|(_, retry, code)| *retry && code == "too_many_new_credentials"),
        "{limited:?}"
    );
    // The burst, and what 30 a minute adds over the time the flood took.
    let bound = 10 + (30.0 * elapsed.as_secs_f64() / 60.0).ceil() as usize;
    let greedy_calls = calls_for(&recording, &greedy);
    assert!(
        greedy_calls <= bound && greedy_calls == ok,
        "{greedy_calls} AssumeRoles for the greedy user ({ok} served), bound {bound}"
    );
    for (user, _) in &others {
        assert_eq!(calls_for(&recording, user), 1);
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let refused = metrics
        .lines()
        .find(|l| {
            l.starts_with("stsvend_sts_calls_refused_total{")
                && l.contains("reason=\"user_budget\"")
        })
        .unwrap_or_else(|| panic!("no user_budget refusals counted:\n{metrics}"));
    assert!(
        refused.ends_with(&format!(" {}", limited.len())),
        "{refused}"
    );
}

/// A user's distinct cached credentials are capped: past `cache.max_entries_per_user` a new
/// narrowing is still served (within the user's bound) but not kept, so one user cannot
/// fill the cache that everybody shares.
#[tokio::test]
async fn a_users_cached_credentials_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _moto, recording) =
        app_with(dir.path(), json!({"cache.max_entries_per_user": 3})).await;
    let (user, token) = unique_user(&app, "capped", json!(["science"])).await;
    let ask = |i: usize| {
        let (app, token) = (&app, &token);
        async move {
            let res = app
                .get_as(
                    &format!("/s3credentials?target=s3://demo-inregion/c{i}/"),
                    token,
                )
                .await;
            assert_eq!(res.status(), 200, "c{i}");
            let body: Value = res.json().await.unwrap();
            body["accessKeyId"].as_str().unwrap().to_owned()
        }
    };
    let mut first = Vec::new();
    for i in 0..5 {
        first.push(ask(i).await);
    }
    assert_eq!(calls_for(&recording, &user), 5);
    // The first three are kept; the fourth and fifth were not.
    for (i, key) in first.iter().enumerate().take(3) {
        assert_eq!(&ask(i).await, key, "c{i} from the cache");
    }
    assert_eq!(calls_for(&recording, &user), 5);
    assert_ne!(ask(3).await, first[3], "c3 was not kept");
    assert_eq!(calls_for(&recording, &user), 6);
    // Another user is unaffected by this one's cap.
    let (other, other_token) = unique_user(&app, "capped-other", json!(["science"])).await;
    for _ in 0..2 {
        assert_eq!(
            app.get_as("/s3credentials", &other_token).await.status(),
            200
        );
    }
    assert_eq!(calls_for(&recording, &other), 1);
}
