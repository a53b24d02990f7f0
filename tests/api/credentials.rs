//! `/s3credentials` against the real IdP and moto's STS and S3.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    components, idp_token, mint, spawn_app_against, spawn_ready_app, unique_user, TestApp,
    BROWSER_ACCEPT,
};

async fn get_credentials(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.get_as(&format!("/s3credentials{query}"), token).await
}

/// Every AssumeRole moto has seen: session name and policy.
async fn moto_assumed_roles(endpoint: &str) -> Vec<Value> {
    let data: Value = reqwest::get(format!("{endpoint}/moto-api/data.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    data["sts"]["AssumedRole"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn assume_calls_for(endpoint: &str, user: &str) -> Vec<Value> {
    moto_assumed_roles(endpoint)
        .await
        .into_iter()
        .filter(|r| {
            r["session_name"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("{user}@")))
        })
        .collect()
}

pub(crate) fn s3_client(endpoint: &str, creds: &Value) -> aws_sdk_s3::Client {
    let credentials = aws_sdk_s3::config::Credentials::new(
        creds["accessKeyId"].as_str().unwrap(),
        creds["secretAccessKey"].as_str().unwrap(),
        Some(creds["sessionToken"].as_str().unwrap().to_owned()),
        None,
        "stsvend",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-west-2"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(credentials)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[tokio::test]
async fn the_earthdata_response_is_exact_and_reads_the_in_region_bucket() {
    let app = spawn_ready_app().await;
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    let res = get_credentials(&app, &token, "").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["pragma"], "no-cache");
    let text = res.text().await.unwrap();

    // Keys in Earthdata's order, nothing else.
    let keys = [
        "accessKeyId",
        "secretAccessKey",
        "sessionToken",
        "expiration",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 4);
    assert!(body["accessKeyId"].as_str().unwrap().starts_with("ASIA"));

    // YYYY-MM-DD HH:MM:SS+00:00, about an hour ahead.
    let exp = body["expiration"].as_str().unwrap();
    assert_eq!(exp.len(), 25, "{exp}");
    assert!(
        exp.ends_with("+00:00") && exp.as_bytes()[10] == b' ',
        "{exp}"
    );
    let parsed = chrono::DateTime::parse_from_str(exp, "%Y-%m-%d %H:%M:%S%:z").unwrap();
    let left = parsed.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!((3500..=3600).contains(&left.num_seconds()), "{left}");

    let endpoint = &components().moto_endpoint;
    let s3 = s3_client(endpoint, &body);
    let object = s3
        .get_object()
        .bucket("demo-inregion")
        .key("hello.txt")
        .send()
        .await
        .unwrap();
    let bytes = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], b"hello from demo-inregion (us-west-2)\n");
}

#[tokio::test]
async fn the_session_policy_sent_to_sts_is_in_region_and_read_only() {
    let app = spawn_ready_app().await;
    let (user, token) = unique_user(&app, "policy", json!(["science", "restricted"])).await;
    assert_eq!(get_credentials(&app, &token, "").await.status(), 200);
    let calls = assume_calls_for(&components().moto_endpoint, &user).await;
    assert_eq!(calls.len(), 1);
    let policy = calls[0]["policy"].as_str().unwrap();
    assert!(
        !policy.contains(' ') && !policy.contains('\n'),
        "compact: {policy}"
    );
    let policy: Value = serde_json::from_str(policy).unwrap();
    let text = policy.to_string();
    assert!(text.contains("arn:aws:s3:::demo-inregion/*"));
    assert!(text.contains("arn:aws:s3:::demo-restricted/*"));
    assert!(
        !text.contains("demo-elsewhere"),
        "wrong region must never appear: {text}"
    );
    let actions: Vec<&str> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| match &s["Action"] {
            Value::Array(a) => a.iter().map(|a| a.as_str().unwrap()).collect(),
            a => vec![a.as_str().unwrap()],
        })
        .collect();
    assert!(actions
        .iter()
        .all(|a| ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"].contains(a)));
    assert!(policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["Effect"] == "Allow"));
    assert_eq!(calls[0]["role_arn"], crate::helpers::ROLE_ARN);
}

#[tokio::test]
async fn sdk_formats_have_their_own_shapes_and_unknown_formats_are_400() {
    let app = spawn_ready_app().await;
    let token = idp_token(&app.issuer, "carol", "carol-pw").await;
    let cp: Value = get_credentials(&app, &token, "?format=credential-process")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cp["Version"], 1);
    for k in [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    ] {
        assert!(cp[k].as_str().is_some(), "{k}: {cp}");
    }
    let exp = cp["Expiration"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(exp).is_ok() && exp.ends_with('Z'),
        "{exp}"
    );

    let container: Value = get_credentials(&app, &token, "?format=container")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(container.as_object().unwrap().len(), 4);
    assert!(container["Token"].as_str().is_some());
    assert_eq!(
        container["AccessKeyId"], cp["AccessKeyId"],
        "one cached credential"
    );

    let res = get_credentials(&app, &token, "?format=yaml").await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    let d = body["error_description"].as_str().unwrap();
    assert!(d.contains("earthdata") && d.contains("credential-process") && d.contains("container"));
}

#[tokio::test]
async fn a_user_without_allowed_buckets_gets_403_naming_the_granting_groups() {
    let app = spawn_ready_app().await;
    let token = idp_token(&app.issuer, "bob", "bob-pw").await;
    let res = get_credentials(&app, &token, "").await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "access_denied");
    let d = body["error_description"].as_str().unwrap();
    assert!(d.contains("restricted") && d.contains("science"), "{d}");

    let html = app
        .http
        .get(app.url("/s3credentials"))
        .bearer_auth(&token)
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), 403);
    assert!(html.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
}

#[tokio::test]
async fn the_same_user_gets_the_same_key_and_different_users_different_keys() {
    let app = spawn_ready_app().await;
    let (_, a) = unique_user(&app, "same", json!(["science"])).await;
    let (_, b) = unique_user(&app, "other", json!(["science"])).await;
    let key = |v: Value| v["accessKeyId"].as_str().unwrap().to_owned();
    let a1 = key(get_credentials(&app, &a, "").await.json().await.unwrap());
    let a2 = key(get_credentials(&app, &a, "").await.json().await.unwrap());
    let b1 = key(get_credentials(&app, &b, "").await.json().await.unwrap());
    assert_eq!(a1, a2);
    assert_ne!(a1, b1);
}

#[tokio::test]
async fn many_concurrent_first_requests_for_one_user_make_one_assume_role() {
    let app = spawn_ready_app().await;
    let (user, token) = unique_user(&app, "burst", json!(["science"])).await;
    let requests: Vec<_> = (0..50)
        .map(|_| {
            let http = app.http.clone();
            let url = app.url("/s3credentials");
            let token = token.clone();
            tokio::spawn(async move {
                let res = http.get(url).bearer_auth(token).send().await.unwrap();
                assert_eq!(res.status(), 200);
                res.json::<Value>().await.unwrap()["accessKeyId"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect();
    let mut keys = std::collections::HashSet::new();
    for r in requests {
        keys.insert(r.await.unwrap());
    }
    assert_eq!(keys.len(), 1);
    let calls = assume_calls_for(&components().moto_endpoint, &user).await;
    assert_eq!(calls.len(), 1, "moto saw {} AssumeRole calls", calls.len());
}

#[tokio::test]
async fn moving_past_the_reuse_window_vends_a_new_credential() {
    let app = spawn_ready_app().await;
    let (user, token) = unique_user(&app, "window", json!(["science"])).await;
    let key = |v: Value| v["accessKeyId"].as_str().unwrap().to_owned();
    let first = key(get_credentials(&app, &token, "")
        .await
        .json()
        .await
        .unwrap());
    // 3 minutes on: 57 min left, above earthaccess's 56.
    app.clock.advance(Duration::from_secs(180));
    assert_eq!(
        first,
        key(get_credentials(&app, &token, "")
            .await
            .json()
            .await
            .unwrap())
    );
    // 5 minutes on: 55 min left. SDK formats still reuse it; the Earthdata format does not.
    app.clock.advance(Duration::from_secs(120));
    let sdk: Value = get_credentials(&app, &token, "?format=credential-process")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sdk["AccessKeyId"], first.as_str());
    let second = key(get_credentials(&app, &token, "")
        .await
        .json()
        .await
        .unwrap());
    assert_ne!(first, second);
    assert_eq!(
        assume_calls_for(&components().moto_endpoint, &user)
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn with_sts_down_cached_users_are_served_and_others_get_503_with_retry_after() {
    let (moto, moto_port) =
        tokio::task::spawn_blocking(|| crate::helpers::start_moto_anywhere(&[]))
            .await
            .unwrap();
    let endpoint = format!("http://127.0.0.1:{moto_port}");
    let issuer = components().issuer.clone();
    let app = spawn_app_against(&issuer, &endpoint, |f| {
        f.merge(figment::providers::Serialized::default(
            "sts.timeout_seconds",
            2,
        ))
        .merge(figment::providers::Serialized::default(
            "sts.connect_timeout_seconds",
            1,
        ))
    })
    .await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let (_, cached) = unique_user(&app, "cached", json!(["science"])).await;
    let (_, fresh) = unique_user(&app, "fresh", json!(["science"])).await;
    let first: Value = get_credentials(&app, &cached, "")
        .await
        .json()
        .await
        .unwrap();

    drop(moto); // STS (and S3) gone.
                // Past the Earthdata reuse window, so a new credential would be wanted; 50 min remain.
    app.clock.advance(Duration::from_secs(600));
    let res = get_credentials(&app, &cached, "").await;
    assert_eq!(res.status(), 200, "served from the cache while STS is down");
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["accessKeyId"], first["accessKeyId"]);

    let started = std::time::Instant::now();
    let res = get_credentials(&app, &fresh, "").await;
    assert_eq!(res.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the timeouts"
    );
    assert!(res.headers().get("retry-after").is_some());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");

    // 14 minutes left: too little to hand out, even with STS down (a client would get a
    // credential that dies before its next refresh).
    app.clock.advance(Duration::from_secs(36 * 60));
    let res = get_credentials(&app, &cached, "").await;
    assert_eq!(
        res.status(),
        503,
        "a credential with under 15 minutes left was served"
    );
    assert!(res.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn hostile_user_ids_get_valid_distinct_session_names() {
    let app = spawn_ready_app().await;
    let endpoint = &components().moto_endpoint;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let ids = [
        format!("{tag} with spaces"),
        format!("{tag}/slash"),
        format!("{tag}-ünïcødé-用户"),
        format!("{tag}{}", "x".repeat(200)),
    ];
    let mut names = Vec::new();
    for id in &ids {
        let token = mint(
            &app.issuer,
            json!({"sub": id, "groups": ["science"]}),
            json!({}),
        )
        .await;
        let res = get_credentials(&app, &token, "").await;
        assert_eq!(res.status(), 200, "{id}");
    }
    for r in moto_assumed_roles(endpoint).await {
        let name = r["session_name"].as_str().unwrap_or("");
        if name.starts_with(&tag[..8]) {
            names.push(name.to_owned());
        }
    }
    assert_eq!(names.len(), ids.len(), "{names:?}");
    for name in &names {
        assert!((2..=64).contains(&name.len()), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)),
            "{name}"
        );
        assert!(name.ends_with("@stsvend-test"), "{name}");
    }
    let unique: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len());
}

#[tokio::test]
async fn an_unauthenticated_script_is_sent_to_login_not_given_credentials() {
    let app = spawn_ready_app().await;
    let res = app.get("/s3credentials").await;
    assert_eq!(res.status(), 302);
    let res = app
        .http
        .get(app.url("/s3credentials"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

/// Review finding 1a: a user whose id is another user's session name must not be handed the
/// other user's credential (nor share a session name with them).
#[tokio::test]
async fn a_user_whose_id_is_another_users_session_name_gets_their_own_credential() {
    let app = spawn_ready_app().await;
    let endpoint = &components().moto_endpoint;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..12];
    // `|` is replaced in session names, so this id is sanitised and gets a hash suffix.
    let first_id = format!("auth0|{tag}");
    let first = mint(
        &app.issuer,
        json!({"sub": first_id, "groups": ["science"]}),
        json!({}),
    )
    .await;
    let res = get_credentials(&app, &first, "").await;
    assert_eq!(res.status(), 200);
    let first_creds: Value = res.json().await.unwrap();
    let first_name = moto_assumed_roles(endpoint)
        .await
        .into_iter()
        .filter_map(|r| r["session_name"].as_str().map(str::to_owned))
        .find(|n| n.starts_with(&format!("auth0_{tag}")))
        .expect("moto saw the first user's AssumeRole");
    // The second user's id is exactly the first user's session name without the app suffix.
    let second_id = first_name.strip_suffix("@stsvend-test").unwrap().to_owned();
    assert_ne!(second_id, first_id);
    let second = mint(
        &app.issuer,
        json!({"sub": second_id, "groups": ["science"]}),
        json!({}),
    )
    .await;
    let res = get_credentials(&app, &second, "").await;
    assert_eq!(res.status(), 200);
    let second_creds: Value = res.json().await.unwrap();
    assert_ne!(
        first_creds["accessKeyId"], second_creds["accessKeyId"],
        "two users were handed one credential"
    );
    let names: Vec<String> = moto_assumed_roles(endpoint)
        .await
        .into_iter()
        .filter_map(|r| r["session_name"].as_str().map(str::to_owned))
        .filter(|n| n.contains(tag))
        .collect();
    assert_eq!(names.len(), 2, "one AssumeRole per user: {names:?}");
    assert_ne!(names[0], names[1], "session names must differ: {names:?}");
}

/// In the managed and tags ways the call carries the user's managed policy ARNs (with a
/// deny-only inline guard) or one session tag per group (with no bucket list), as moto's
/// request recorder shows; the static session tags ride along.
#[tokio::test]
async fn managed_policy_arns_and_group_tags_reach_sts() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, moto, recording) = crate::helpers::start_recording_moto(dir.path());
    let issuer = components().issuer.clone();
    let with_mode = |mode: &'static str| {
        move |f: figment::Figment| {
            f.merge(figment::providers::Serialized::default("policy.mode", mode))
                .merge(figment::providers::Serialized::default(
                    "sts.session_tags",
                    json!({"project": "archive"}),
                ))
        }
    };
    let field = |form: &[(String, String)], name: &str| -> Option<String> {
        form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    let calls_for = |session: &str| -> Vec<Vec<(String, String)>> {
        crate::helpers::recorded_assume_roles(&recording)
            .into_iter()
            .filter(|f| {
                f.iter()
                    .any(|(k, v)| k == "RoleSessionName" && v.starts_with(session))
            })
            .collect()
    };

    let app = spawn_app_against(&issuer, &moto, with_mode("managed")).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let (user, token) = unique_user(&app, "managed", json!(["science", "restricted"])).await;
    assert_eq!(get_credentials(&app, &token, "").await.status(), 200);
    let calls = calls_for(&format!("{user}@"));
    assert_eq!(calls.len(), 1, "one AssumeRole recorded");
    let form = &calls[0];
    let mut arns: Vec<String> = form
        .iter()
        .filter(|(k, _)| k.starts_with("PolicyArns.member.") && k.ends_with(".arn"))
        .map(|(_, v)| v.clone())
        .collect();
    arns.sort();
    assert_eq!(
        arns,
        [
            "arn:aws:iam::123456789012:policy/stsvend/stsvend-g-restricted",
            "arn:aws:iam::123456789012:policy/stsvend/stsvend-g-science",
        ]
    );
    let guard: Value = serde_json::from_str(&field(form, "Policy").unwrap()).unwrap();
    assert!(
        guard["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["Effect"] == "Deny"),
        "{guard}"
    );
    assert_eq!(field(form, "Tags.member.1.Key").as_deref(), Some("project"));

    let app = spawn_app_against(&issuer, &moto, with_mode("tags")).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let (user, token) = unique_user(&app, "tags", json!(["science", "restricted"])).await;
    assert_eq!(get_credentials(&app, &token, "").await.status(), 200);
    let calls = calls_for(&format!("{user}@"));
    assert_eq!(calls.len(), 1);
    let form = &calls[0];
    let mut tags: Vec<(String, String)> = (1..=10)
        .filter_map(|i| {
            Some((
                field(form, &format!("Tags.member.{i}.Key"))?,
                field(form, &format!("Tags.member.{i}.Value"))?,
            ))
        })
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        [
            ("project".to_owned(), "archive".to_owned()),
            ("stsvend-g-restricted".to_owned(), "true".to_owned()),
            ("stsvend-g-science".to_owned(), "true".to_owned()),
        ]
    );
    assert!(field(form, "PolicyArns.member.1.arn").is_none());
    assert!(
        !field(form, "Policy").unwrap().contains("demo-"),
        "no bucket list in the call"
    );
    assert!(
        !form.iter().any(|(k, _)| k.starts_with("TransitiveTagKeys")),
        "tags are not transitive"
    );
}
