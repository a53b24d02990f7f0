//! Asking for less: `target=s3://bucket/prefix` narrows a credential to those targets,
//! `duration_seconds` shortens its life; against moto (its request recorder shows what reached
//! STS) and the IdP.

use std::time::Duration;

use figment::providers::Serialized;
use serde_json::{json, Value};

use crate::helpers::{captured_logs, components, spawn_app_against, unique_user, TestApp};

/// The AssumeRole calls moto recorded for `user`.
fn recorded(recording: &std::path::Path, user: &str) -> Vec<Vec<(String, String)>> {
    crate::helpers::recorded_assume_roles_of(recording, user)
}

fn field(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

async fn error_of(res: reqwest::Response) -> (u16, String, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or("").to_owned(),
        body["error_description"].as_str().unwrap_or("").to_owned(),
    )
}

/// A test app in `mode` against a moto of its own that records each request.
async fn app_in(
    mode: &'static str,
    dir: &std::path::Path,
) -> (TestApp, crate::helpers::Component, std::path::PathBuf) {
    let (moto, endpoint, recording) = crate::helpers::start_recording_moto(dir);
    let issuer = components().issuer.clone();
    let app = spawn_app_against(&issuer, &endpoint, move |f| {
        f.merge(Serialized::default("policy.mode", mode))
            .merge(Serialized::default(
                "buckets",
                json!([
                    {"name": "demo-inregion", "region": "us-west-2", "groups": ["science"]},
                    {"name": "demo-prefixed", "region": "us-west-2", "groups": ["science"], "prefixes": ["data/"]},
                    {"name": "demo-restricted", "region": "us-west-2", "groups": ["restricted"]},
                    {"name": "demo-elsewhere", "region": "us-east-1", "groups": ["science"]},
                ]),
            ))
    })
    .await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    // One call by another user first: the recording exists and records, so a test finding
    // no call for its user has proved something.
    let (control, token) = unique_user(&app, "recording", json!(["science"])).await;
    assert_eq!(app.get_as("/s3credentials", &token).await.status(), 200);
    assert_eq!(recorded(&recording, &control).len(), 1, "moto records");
    (app, moto, recording)
}

/// In every `policy.mode`, a narrowed credential's AssumeRole carries an inline policy for
/// exactly the targets (no managed policy ARNs, which would allow more), the user's tags in
/// tags mode, and the lifetime asked for; the body keeps the Earthdata shape.
#[tokio::test]
async fn a_narrowed_credential_reaches_sts_as_an_inline_policy_for_just_the_targets() {
    for mode in ["inline", "managed", "tags"] {
        let dir = tempfile::tempdir().unwrap();
        let (app, _moto, recording) = app_in(mode, dir.path()).await;
        let (user, token) = unique_user(&app, "narrow", json!(["science"])).await;
        let res = app
            .get_as(
                "/s3credentials?target=s3://demo-inregion/p1/&target=s3%3A%2F%2Fdemo-prefixed%2Fdata%2F2024%2F&duration_seconds=1000",
                &token,
            )
            .await;
        assert_eq!(res.status(), 200, "{mode}");
        assert_eq!(res.headers()["cache-control"], "no-store");
        let text = res.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body.as_object().unwrap().len(), 4, "{mode}: {text}");
        let at: Vec<usize> = [
            "accessKeyId",
            "secretAccessKey",
            "sessionToken",
            "expiration",
        ]
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{mode}: {text}");
        let calls = recorded(&recording, &user);
        assert_eq!(calls.len(), 1, "{mode}");
        let form = &calls[0];
        assert_eq!(
            field(form, "DurationSeconds").as_deref(),
            Some("1800"),
            "{mode}"
        );
        assert!(
            !form.iter().any(|(k, _)| k.starts_with("PolicyArns")),
            "{mode}: {form:?}"
        );
        // Every statement, each (effect, action, resource, condition) on its own: nothing
        // beyond the targets, no other Allow, no ListBucket without its prefix condition.
        let policy = field(form, "Policy").unwrap();
        let mut grants: Vec<String> = Vec::new();
        let as_list = |v: &Value| match v {
            Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
            x => vec![x.as_str().unwrap().to_owned()],
        };
        for s in serde_json::from_str::<Value>(&policy).unwrap()["Statement"]
            .as_array()
            .unwrap()
        {
            for action in as_list(&s["Action"]) {
                for resource in as_list(&s["Resource"]) {
                    grants.push(format!(
                        "{} {action} {resource} {}",
                        s["Effect"].as_str().unwrap(),
                        s.get("Condition").cloned().unwrap_or(Value::Null)
                    ));
                }
            }
        }
        grants.sort();
        assert_eq!(
            grants,
            [
                "Allow s3:GetBucketLocation arn:aws:s3:::demo-inregion null",
                "Allow s3:GetBucketLocation arn:aws:s3:::demo-prefixed null",
                "Allow s3:GetObject arn:aws:s3:::demo-inregion/p1/* null",
                "Allow s3:GetObject arn:aws:s3:::demo-prefixed/data/2024/* null",
                "Allow s3:ListBucket arn:aws:s3:::demo-inregion {\"StringLike\":{\"s3:prefix\":\"p1/*\"}}",
                "Allow s3:ListBucket arn:aws:s3:::demo-prefixed {\"StringLike\":{\"s3:prefix\":\"data/2024/*\"}}",
            ],
            "{mode}: {policy}"
        );
        let tagged = form
            .iter()
            .any(|(k, v)| k.starts_with("Tags.member.") && v.contains("g-science"));
        assert_eq!(tagged, mode == "tags", "{mode}: {form:?}");
    }
    // The audit line says what the credential was narrowed to.
    let logs = captured_logs();
    assert!(
        logs.lines().any(|l| l.contains("credentials vended")
            && l.contains(
                "\"narrowed_to\":\"s3://demo-inregion/p1/,s3://demo-prefixed/data/2024/\""
            )),
        "no audit line with narrowed_to"
    );
}

/// A target the user may not read is refused by name, with the others: never dropped, never
/// widened; bad targets and lifetimes are 400s naming the rule.
#[tokio::test]
async fn asking_for_more_than_the_groups_grant_is_refused_naming_what_is_not_covered() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _moto, recording) = app_in("inline", dir.path()).await;
    let (user, token) = unique_user(&app, "refused", json!(["science"])).await;
    let ask = |q: &str| {
        let path = format!("/s3credentials?{q}");
        let (app, token) = (&app, &token);
        async move { app.get_as(&path, token).await }
    };

    let (status, code, text) =
        error_of(ask("target=s3://demo-inregion/ok/&target=s3://demo-restricted/x/").await).await;
    assert_eq!((status, code.as_str()), (403, "access_denied"));
    assert!(
        text.contains("s3://demo-restricted/x/ (not a bucket you may read here)"),
        "{text}"
    );
    assert!(!text.contains("demo-inregion"), "{text}");
    let (status, _, text) = error_of(ask("target=s3://demo-prefixed/").await).await;
    assert_eq!(status, 403);
    assert!(
        text.contains("you may read only s3://demo-prefixed/data/"),
        "{text}"
    );
    let (status, _, text) = error_of(ask("target=s3://demo-elsewhere/").await).await;
    assert_eq!(status, 403, "{text}");
    // Nothing of the above reached STS.
    assert!(recorded(&recording, &user).is_empty());

    for (q, want) in [
        ("target=s3://demo-inregion/a*b", "invalid_target"),
        (
            "target=s3://demo-inregion/$%7Baws:username%7D",
            "invalid_target",
        ),
        ("target=s3://NOT_A_BUCKET/", "invalid_target"),
        ("duration_seconds=899", "invalid_duration"),
        ("duration_seconds=3601", "invalid_duration"),
        ("duration_seconds=soon", "invalid_duration"),
    ] {
        let (status, code, text) = error_of(ask(q).await).await;
        assert_eq!((status, code.as_str()), (400, want), "{q}: {text}");
        if want == "invalid_duration" {
            assert!(text.contains("from 900 to 3600"), "{q}: {text}");
        }
    }
    let many: Vec<String> = (0..21)
        .map(|i| format!("target=s3://demo-inregion/p{i}/"))
        .collect();
    let (status, code, _) = error_of(ask(&many.join("&")).await).await;
    assert_eq!((status, code.as_str()), (400, "too_many_targets"));
    assert!(recorded(&recording, &user).is_empty());
}

/// Each narrowing and each lifetime is its own cache entry: a plain request never gets a
/// narrowed credential or the other way round, the same targets in another order are the
/// same entry, and a short credential is not served once less than nine tenths of it is left.
#[tokio::test]
async fn narrowed_and_short_credentials_are_cached_apart_from_the_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _moto, recording) = app_in("inline", dir.path()).await;
    let (user, token) = unique_user(&app, "apart", json!(["science"])).await;
    let key = |q: &'static str| {
        let app = &app;
        let token = &token;
        async move {
            let res = app.get_as(&format!("/s3credentials{q}"), token).await;
            assert_eq!(res.status(), 200, "{q}");
            let body: Value = res.json().await.unwrap();
            body["accessKeyId"].as_str().unwrap().to_owned()
        }
    };
    let full = key("").await;
    let narrowed = key("?target=s3://demo-inregion/a/&target=s3://demo-prefixed/data/").await;
    assert_ne!(full, narrowed);
    assert_eq!(
        key("?target=demo-prefixed/data/&target=s3://demo-inregion/a/*").await,
        narrowed,
        "the same targets spelled otherwise"
    );
    assert_eq!(key("").await, full);
    let short = key("?duration_seconds=900").await;
    assert_ne!(short, full);
    assert_eq!(key("?duration_seconds=900").await, short);
    // The deployment's own lifetime asked for explicitly is the plain credential.
    assert_eq!(key("?duration_seconds=3600").await, full);
    assert_eq!(recorded(&recording, &user).len(), 3);

    app.clock.advance(Duration::from_secs(100));
    let later = key("?duration_seconds=900").await;
    assert_ne!(
        later, short,
        "a 900 s credential with 800 s left is not reused"
    );
    assert_eq!(key("").await, full);
}

/// `/s3credentials/scope` takes the same query and says what that credential would cover,
/// and refuses exactly what `/s3credentials` would.
#[tokio::test]
async fn the_scope_endpoint_says_what_a_narrowed_credential_would_cover() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _moto, recording) = app_in("inline", dir.path()).await;
    let (user, token) = unique_user(&app, "scope", json!(["science"])).await;
    let res = app
        .get_as(
            "/s3credentials/scope?target=s3://demo-prefixed/data/x/&target=s3://demo-inregion&duration_seconds=1000",
            &token,
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "region": "us-west-2",
            "buckets": [
                {"name": "demo-inregion", "prefixes": []},
                {"name": "demo-prefixed", "prefixes": ["data/x/"]},
            ],
            "duration_seconds": 1800,
        })
    );
    let res = app
        .get_as("/s3credentials/scope?target=s3://demo-restricted/", &token)
        .await;
    assert_eq!(error_of(res).await.0, 403);
    assert!(recorded(&recording, &user).is_empty(), "no STS call");
}

/// A narrowing that equals the user's whole scope shares the plain credential (one policy,
/// one cache entry), yet each audit line says what its own request asked for, in either order.
#[tokio::test]
async fn each_audit_line_says_what_its_own_request_narrowed_to() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _moto, _recording) = app_in("inline", dir.path()).await;
    let whole = "target=s3://demo-inregion/&target=s3://demo-prefixed/data/";
    for narrowed_first in [false, true] {
        let (user, token) = unique_user(&app, "audit-each", json!(["science"])).await;
        let order = if narrowed_first {
            [
                format!("/s3credentials?{whole}"),
                "/s3credentials".to_owned(),
            ]
        } else {
            [
                "/s3credentials".to_owned(),
                format!("/s3credentials?{whole}"),
            ]
        };
        let mut keys = Vec::new();
        for path in &order {
            let res = app.get_as(path, &token).await;
            assert_eq!(res.status(), 200, "{path}");
            let body: Value = res.json().await.unwrap();
            keys.push(body["accessKeyId"].as_str().unwrap().to_owned());
        }
        assert_eq!(keys[0], keys[1], "the whole scope is the plain credential");
        let lines: Vec<String> = captured_logs()
            .lines()
            .filter(|l| {
                l.contains("credentials vended") && l.contains(&format!("\"user\":\"{user}\""))
            })
            .map(str::to_owned)
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let narrowed: Vec<bool> = lines
            .iter()
            .map(|l| l.contains("\"narrowed_to\":"))
            .collect();
        assert_eq!(
            narrowed,
            [narrowed_first, !narrowed_first],
            "order {order:?}: {lines:?}"
        );
        let said = lines
            .iter()
            .find(|l| l.contains("\"narrowed_to\":"))
            .unwrap();
        assert!(
            said.contains("\"narrowed_to\":\"s3://demo-inregion/,s3://demo-prefixed/data/\""),
            "{said}"
        );
    }
}
