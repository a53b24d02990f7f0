//! One endpoint for many archives: the test configuration serves two, `main` (account
//! 123456789012) and `second` (account 210987654321, its role asked with an external id),
//! both on the shared moto, which keeps each account apart.

use figment::providers::{Format, Serialized, Toml};
use serde_json::{json, Value};

use crate::helpers::*;

/// Who moto says a vended credential is: (account, ARN).
async fn caller_identity(creds: &Value) -> (String, String) {
    let credentials = aws_sdk_sts::config::Credentials::new(
        creds["accessKeyId"].as_str().unwrap(),
        creds["secretAccessKey"].as_str().unwrap(),
        Some(creds["sessionToken"].as_str().unwrap().to_owned()),
        None,
        "stsvend",
    );
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-west-2"))
        .endpoint_url(&components().moto_endpoint)
        .credentials_provider(credentials)
        .build();
    let who = aws_sdk_sts::Client::from_conf(config)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    (
        who.account().unwrap().to_owned(),
        who.arn().unwrap().to_owned(),
    )
}

/// The object's text, read with a vended credential.
async fn read(creds: &Value, bucket: &str, key: &str) -> Result<String, String> {
    match crate::credentials::s3_client(&components().moto_endpoint, creds)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(o) => {
            Ok(String::from_utf8(o.body.collect().await.unwrap().into_bytes().to_vec()).unwrap())
        }
        Err(e) => Err(format!("{e:?}")),
    }
}

#[tokio::test]
async fn a_target_is_answered_by_the_archive_that_owns_its_bucket_with_a_session_of_its_role() {
    let app = spawn_ready_app().await;
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;

    let (status, second) = json_of(
        app.get_as("/s3credentials?target=s3://demo-second/", &token)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let (account, arn) = caller_identity(&second).await;
    assert_eq!(account, "210987654321");
    assert!(
        arn.starts_with("arn:aws:sts::210987654321:assumed-role/stsvend-read/alice@"),
        "{arn}"
    );
    assert_eq!(
        read(&second, "demo-second", "hello.txt").await.unwrap(),
        "hello from demo-second (us-west-2, account 210987654321)\n"
    );

    // No target: the default archive, as before archives existed.
    let (status, main) = json_of(app.get_as("/s3credentials", &token).await).await;
    assert_eq!(status, 200);
    let (account, _) = caller_identity(&main).await;
    assert_eq!(account, "123456789012");
    assert_eq!(
        read(&main, "demo-inregion", "hello.txt").await.unwrap(),
        "hello from demo-inregion (us-west-2)\n"
    );
    // A bucket no archive serves is refused as before (by the default archive).
    let res = app
        .get_as("/s3credentials?target=s3://not-served-here/", &token)
        .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn each_archives_assume_role_carries_its_own_role_and_external_id() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint, recording) = start_recording_moto(dir.path());
    let c = components();
    let app = spawn_app_against(&c.issuer, &endpoint, |f| f).await;
    assert!(app.wait_ready(std::time::Duration::from_secs(15)).await);
    let (user, token) = unique_user(&app, "roles", json!(["science"])).await;
    for query in ["", "?target=s3://demo-second/"] {
        let res = app.get_as(&format!("/s3credentials{query}"), &token).await;
        assert_eq!(res.status(), 200, "{query}");
    }
    let calls = recorded_assume_roles_of(&recording, &user);
    assert_eq!(calls.len(), 2, "{calls:?}");
    let field = |call: &Vec<(String, String)>, name: &str| {
        call.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    let by_role: std::collections::BTreeMap<String, Option<String>> = calls
        .iter()
        .map(|c| (field(c, "RoleArn").unwrap(), field(c, "ExternalId")))
        .collect();
    assert_eq!(
        by_role,
        [
            (ROLE_ARN.to_owned(), None),
            (
                SECOND_ROLE_ARN.to_owned(),
                Some(SECOND_EXTERNAL_ID.to_owned())
            ),
        ]
        .into_iter()
        .collect()
    );
    // The second archive's session policy names only its bucket.
    let second = calls
        .iter()
        .find(|c| field(c, "RoleArn").as_deref() == Some(SECOND_ROLE_ARN))
        .unwrap();
    let policy = field(second, "Policy").unwrap();
    assert!(policy.contains("arn:aws:s3:::demo-second"), "{policy}");
    assert!(!policy.contains("demo-inregion"), "{policy}");
}

#[tokio::test]
async fn targets_in_two_archives_are_refused_naming_both_and_the_bundle_answers_them() {
    let app = spawn_ready_app().await;
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    let both = "target=s3://demo-inregion/&target=s3://demo-second/";
    let (status, err) = json_of(app.get_as(&format!("/s3credentials?{both}"), &token).await).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], "targets_in_several_archives");
    let says = err["error_description"].as_str().unwrap();
    assert!(
        says.contains("main, second") && says.contains("/s3credentials/bundle"),
        "{says}"
    );

    let res = app
        .get_as(&format!("/s3credentials/bundle?{both}"), &token)
        .await;
    assert_eq!(res.headers()["cache-control"], "no-store");
    let (status, bundle) = json_of(res).await;
    assert_eq!(status, 200, "{bundle}");
    let entries = bundle["credentials"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{bundle}");
    let expected = [
        (
            "main",
            "s3://demo-inregion/",
            "123456789012",
            "demo-inregion",
        ),
        ("second", "s3://demo-second/", "210987654321", "demo-second"),
    ];
    for (entry, (archive, target, account, bucket)) in entries.iter().zip(expected) {
        assert_eq!(entry["archive"], archive);
        assert_eq!(entry["region"], "us-west-2");
        assert_eq!(entry["targets"], json!([target]));
        assert_eq!(entry.as_object().unwrap().len(), 7, "{entry}");
        assert!(entry["expiration"].as_str().unwrap().ends_with('Z'));
        assert_eq!(caller_identity(entry).await.0, account);
        assert!(read(entry, bucket, "hello.txt").await.is_ok());
    }
    // Each entry is its archive's cached credential for those targets.
    let (_, again) = json_of(
        app.get_as(&format!("/s3credentials/bundle?{both}"), &token)
            .await,
    )
    .await;
    assert_eq!(
        again["credentials"][1]["accessKeyId"],
        entries[1]["accessKeyId"]
    );
    let (_, alone) = json_of(
        app.get_as("/s3credentials?target=s3://demo-second/", &token)
            .await,
    )
    .await;
    assert_eq!(alone["accessKeyId"], entries[1]["accessKeyId"]);
}

#[tokio::test]
async fn a_bundle_is_all_or_nothing_naming_every_target_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint, recording) = start_recording_moto(dir.path());
    let c = components();
    let app = spawn_app_against(&c.issuer, &endpoint, |f| f).await;
    assert!(app.wait_ready(std::time::Duration::from_secs(15)).await);
    let (user, token) = unique_user(&app, "bundle", json!(["science"])).await;
    let (status, err) = json_of(
        app.get_as(
            "/s3credentials/bundle?target=s3://demo-second/&target=s3://demo-restricted/x/&target=s3://not-served-here/",
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(status, 403, "{err}");
    let says = err["error_description"].as_str().unwrap();
    assert!(
        says.contains("s3://demo-restricted/x/") && says.contains("s3://not-served-here/"),
        "{says}"
    );
    assert!(!says.contains("s3://demo-second/"), "{says}");
    // Nothing was issued, not even the part that was allowed.
    assert!(recorded_assume_roles_of(&recording, &user).is_empty());

    let (status, err) = json_of(app.get_as("/s3credentials/bundle", &token).await).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("missing_target"))
    );
    let (status, _) = json_of(
        app.get_as(
            "/s3credentials/bundle?target=s3://demo-second/&format=container",
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    // Signed out: no credential, the same as /s3credentials.
    let res = app
        .get_as(
            "/s3credentials/bundle?target=s3://demo-second/",
            "not-a-token",
        )
        .await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn each_archive_has_earthdata_endpoints_of_its_own() {
    let app = spawn_ready_app().await;
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    let res = app.get_as("/archives/second/s3credentials", &token).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let text = res.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    // Earthdata's keys, in Earthdata's order, nothing else.
    assert_eq!(body.as_object().unwrap().len(), 4, "{text}");
    let at = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
    assert!(text.starts_with("{\"accessKeyId\":"), "{text}");
    assert!(at("secretAccessKey") < at("sessionToken") && at("sessionToken") < at("expiration"));
    assert_eq!(caller_identity(&body).await.0, "210987654321");
    // Its whole scope: both its buckets, nothing of the other archive.
    assert!(read(&body, "demo-second-rp", "hello.txt").await.is_ok());

    let (status, scope) = json_of(
        app.get_as("/archives/second/s3credentials/scope", &token)
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        scope,
        json!({"region": "us-west-2", "buckets": [
            {"name": "demo-second", "prefixes": []},
            {"name": "demo-second-rp", "prefixes": []}
        ], "duration_seconds": 3600})
    );
    // Only its own buckets: another archive's target is refused here as any unknown one.
    let res = app
        .get_as(
            "/archives/second/s3credentials?target=s3://demo-inregion/",
            &token,
        )
        .await;
    assert_eq!(res.status(), 403);
    // The default archive's own path answers as /s3credentials does.
    let (status, main) = json_of(app.get_as("/archives/main/s3credentials", &token).await).await;
    assert_eq!(status, 200);
    assert_eq!(caller_identity(&main).await.0, "123456789012");

    let page = app
        .get_as("/archives/second/s3credentialsREADME", &token)
        .await
        .text()
        .await
        .unwrap()
        .replace("&#x2f;", "/");
    assert!(
        page.contains(&app.url("/archives/second/s3credentials")),
        "{page}"
    );
    assert!(page.contains("demo-second"), "{page}");
    assert!(
        !page.contains("id=\"archive-list\""),
        "an archive's page lists no others"
    );
    // The service's page lists both archives, with whether alice may read each.
    let page = app
        .get_as("/s3credentialsREADME", &token)
        .await
        .text()
        .await
        .unwrap()
        .replace("&#x2f;", "/");
    assert!(page.contains("id=\"archive-list\""), "{page}");
    assert!(
        page.contains(&app.url("/archives/second/s3credentialsREADME")),
        "{page}"
    );
    // Other methods: 405, as on /s3credentials.
    let res = app
        .http
        .post(app.url("/archives/second/s3credentials"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    // Signed out: sent to log in, and brought back to the archive's endpoint.
    let res = app.get("/archives/second/s3credentials").await;
    assert!(res.status().is_redirection(), "{}", res.status());
}

#[tokio::test]
async fn locate_says_which_archive_serves_an_object_and_why_the_caller_may_not_read_it() {
    let app = spawn_ready_app().await;
    let (status, anon) = json_of(
        app.get("/s3credentials/locate?url=s3://demo-second/a/b/c.nc")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{anon}");
    assert_eq!(anon["archive"], "second");
    assert_eq!(anon["bucket"], "demo-second");
    assert_eq!(anon["key"], "a/b/c.nc");
    assert_eq!(anon["region"], "us-west-2");
    assert_eq!(anon["in_region"], true);
    assert_eq!(anon["requester_pays"], false);
    assert_eq!(anon["endpoint"], app.url("/archives/second/s3credentials"));
    assert_eq!(
        anon["credentials_url"],
        app.url("/s3credentials?target=s3%3A%2F%2Fdemo-second%2Fa%2Fb%2F")
    );
    assert!(
        anon.get("access").is_none(),
        "anonymous callers learn nothing of access: {anon}"
    );
    let (_, rp) = json_of(
        app.get("/s3credentials/locate?bucket_name=demo-second-rp")
            .await,
    )
    .await;
    assert_eq!(rp["requester_pays"], true);

    let (status, err) = json_of(
        app.get("/s3credentials/locate?bucket_name=not-served-here")
            .await,
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (404, Some("unknown_bucket"))
    );
    for bad in [
        "",
        "?url=https://x/y",
        "?url=s3://UPPER/x",
        "?bucket_name=a&url=s3://b/c",
    ] {
        let (status, _) = json_of(app.get(&format!("/s3credentials/locate{bad}")).await).await;
        assert_eq!(status, 400, "{bad}");
    }

    // Signed in: whether they may read it, and if not, what would let them.
    let (_, bob) = unique_user(&app, "nobody", json!([])).await;
    let (_, denied) = json_of(
        app.get_as("/s3credentials/locate?url=s3://demo-second/x", &bob)
            .await,
    )
    .await;
    assert_eq!(denied["access"]["readable"], false, "{denied}");
    assert_eq!(denied["access"]["groups_granting"], json!(["science"]));
    let alice = idp_token(&app.issuer, "alice", "alice-pw").await;
    let (_, ok) = json_of(
        app.get_as("/s3credentials/locate?url=s3://demo-second/x", &alice)
            .await,
    )
    .await;
    assert_eq!(ok["access"], json!({"readable": true}));
    let (_, away) = json_of(
        app.get_as("/s3credentials/locate?bucket_name=demo-elsewhere", &alice)
            .await,
    )
    .await;
    assert_eq!(away["in_region"], false);
    assert_eq!(away["access"]["readable"], false);
    assert!(
        away["access"]["reason"]
            .as_str()
            .unwrap()
            .contains("us-east-1"),
        "{away}"
    );
}

#[tokio::test]
async fn the_archive_list_is_what_a_client_needs_to_drop_its_table() {
    let app = spawn_ready_app().await;
    let (status, anon) = json_of(app.get("/s3credentials/archives").await).await;
    assert_eq!(status, 200);
    assert_eq!(anon["endpoint"], app.url("/s3credentials"));
    assert_eq!(anon["login"], json!(["browser", "netrc", "bearer"]));
    let archives = anon["archives"].as_array().unwrap();
    let names: Vec<&str> = archives
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["main", "second"]);
    assert_eq!(archives[0]["default"], true);
    assert_eq!(archives[1]["default"], false);
    assert_eq!(
        archives[1]["endpoint"],
        app.url("/archives/second/s3credentials")
    );
    let buckets: Vec<&str> = archives[1]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(buckets, ["demo-second", "demo-second-rp"]);
    assert!(!anon.to_string().contains("readable"), "{anon}");
    assert!(
        !anon.to_string().contains("science"),
        "no groups for anonymous callers: {anon}"
    );

    let alice = idp_token(&app.issuer, "alice", "alice-pw").await;
    let (_, mine) = json_of(app.get_as("/s3credentials/archives", &alice).await).await;
    let readable: Vec<(String, bool)> = mine["archives"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["buckets"].as_array().unwrap().clone())
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_owned(),
                b["readable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        readable,
        [
            ("demo-inregion".to_owned(), true),
            ("demo-restricted".to_owned(), false),
            ("demo-elsewhere".to_owned(), false),
            ("demo-second".to_owned(), true),
            ("demo-second-rp".to_owned(), true),
        ]
    );
}

#[tokio::test]
async fn links_are_signed_by_the_archive_that_owns_the_bucket_with_the_request_payer_when_due() {
    let moto = components().moto_endpoint.clone();
    let app = spawn_app_with(|f| {
        f.merge(Serialized::default("s3.endpoint_url", moto))
            .merge(Serialized::default("s3.force_path_style", true))
    })
    .await;
    assert!(app.wait_ready(std::time::Duration::from_secs(15)).await);
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    for (bucket, payer) in [("demo-second", false), ("demo-second-rp", true)] {
        let res = app
            .http
            .get(app.url(&format!("/s3/{bucket}/hello.txt")))
            .bearer_auth(&token)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let (status, link) = json_of(res).await;
        assert_eq!(status, 200, "{link}");
        let url = link["url"].as_str().unwrap();
        assert_eq!(
            url.contains("x-amz-request-payer=requester&"),
            payer,
            "{url}"
        );
        // Signed with the second archive's session: moto finds the object in its account.
        let got = reqwest::get(url).await.unwrap();
        assert_eq!(got.status(), 200, "{url}");
        assert!(got.text().await.unwrap().contains("account 210987654321"));
    }
}

#[tokio::test]
async fn a_group_that_only_another_archive_grants_is_kept_at_login() {
    // Before archives, groups no top-level bucket named were dropped from the session.
    let app = spawn_app_with(|f| {
        f.merge(Toml::string(
            r#"
[[archives]]
name = "oceans"
sts = { role_arn = "arn:aws:iam::210987654321:role/stsvend-read", external_id = "stsvend-local" }
[[archives.buckets]]
name = "demo-second"
region = "us-west-2"
groups = ["oceanographers"]
"#,
        ))
    })
    .await;
    assert!(app.wait_ready(std::time::Duration::from_secs(15)).await);
    let (_, token) = unique_user(&app, "oceans", json!(["oceanographers"])).await;
    let (status, body) = json_of(
        app.get_as("/s3credentials?target=s3://demo-second/", &token)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(caller_identity(&body).await.0, "210987654321");
}

#[tokio::test]
async fn the_default_archive_is_a_setting() {
    let app = spawn_app_with(|f| f.merge(Serialized::default("archive.default", "second"))).await;
    assert!(app.wait_ready(std::time::Duration::from_secs(15)).await);
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    let (status, body) = json_of(app.get_as("/s3credentials", &token).await).await;
    assert_eq!(status, 200);
    assert_eq!(caller_identity(&body).await.0, "210987654321");
    let (_, listed) = json_of(app.get("/s3credentials/archives").await).await;
    assert_eq!(listed["archives"][1]["default"], true);
}

#[tokio::test]
async fn credential_process_profiles_with_targets_read_both_archives_through_the_aws_cli() {
    let app = spawn_ready_app().await;
    let (_, token) = unique_user(&app, "awscli", json!(["science"])).await;
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let config = home.path().join("aws-config");
    let helper = env!("CARGO_BIN_EXE_stsvend");
    let endpoint = app.url("/s3credentials");
    let mut text = String::new();
    for (profile, bucket) in [("one", "demo-inregion"), ("two", "demo-second")] {
        text.push_str(&format!(
            "[profile {profile}]\nregion = us-west-2\ncredential_process = {helper} credential-process --endpoint {endpoint} --token-file {} --target s3://{bucket}/\n",
            token_file.display()
        ));
    }
    std::fs::write(&config, text).unwrap();
    for (profile, bucket, says) in [
        (
            "one",
            "demo-inregion",
            "hello from demo-inregion (us-west-2)",
        ),
        ("two", "demo-second", "account 210987654321"),
    ] {
        let out = tokio::task::spawn_blocking({
            let (home, config) = (home.path().to_owned(), config.clone());
            move || {
                std::process::Command::new(repo_root().join("deploy/local/.venv/bin/aws"))
                    .args([
                        "--profile",
                        profile,
                        "s3",
                        "cp",
                        &format!("s3://{bucket}/hello.txt"),
                        "-",
                    ])
                    .env("HOME", &home)
                    .env("AWS_CONFIG_FILE", &config)
                    .env("AWS_ENDPOINT_URL_S3", &components().moto_endpoint)
                    .env("XDG_CACHE_HOME", home.join("cache"))
                    .env_remove("AWS_ACCESS_KEY_ID")
                    .env_remove("AWS_SECRET_ACCESS_KEY")
                    .env_remove("AWS_SESSION_TOKEN")
                    .env_remove("AWS_PROFILE")
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(says),
            "{profile}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What NASA's thin-egress-app checks of `/s3credentials` end to end (its
/// `tests_e2e/test_s3credentials.py`), as python-requests does it, on the service's endpoint
/// and on each archive's own: without a login the redirect chain ends in 401; after the
/// `.netrc` (Basic) chain, 200 with Earthdata's keys in Earthdata's order.
#[tokio::test]
async fn teas_end_to_end_checks_hold_on_the_service_and_every_archive_endpoint() {
    let app = spawn_ready_app().await;
    for path in [
        "/s3credentials",
        "/archives/main/s3credentials",
        "/archives/second/s3credentials",
    ] {
        let client = jar_client(SCRIPT_UA);
        let (hops, res) = follow(&client, &app.url(path), &app.issuer, None).await;
        assert_eq!(res.status(), 401, "{path}: {hops:#?}");
        let (hops, res) = follow(
            &client,
            &app.url(path),
            &app.issuer,
            Some(("alice", "alice-pw")),
        )
        .await;
        assert_eq!(res.status(), 200, "{path}: {hops:#?}");
        let text = res.text().await.unwrap();
        let keys: Vec<usize> = [
            "accessKeyId",
            "secretAccessKey",
            "sessionToken",
            "expiration",
        ]
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{path}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body.as_object().unwrap().len(), 4, "{path}");
    }
}

#[tokio::test]
async fn the_pages_list_the_archives_and_a_requester_pays_archives_recipes_say_so() {
    use crate::clients::{assert_valid_html, unescape};
    let app = spawn_app_with(|f| {
        f.merge(Toml::string(
            r#"
[[archives]]
name = "paying"
title = "Readers pay"
sts = { role_arn = "arn:aws:iam::210987654321:role/stsvend-read", external_id = "stsvend-local" }
[[archives.buckets]]
name = "demo-second-rp"
region = "us-west-2"
groups = ["science"]
requester_pays = true
"#,
        ))
    })
    .await;
    assert!(app.wait_ready(std::time::Duration::from_secs(15)).await);
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    // The service's page: both archives, alice may read both.
    let page = unescape(
        &app.get_as("/s3credentialsREADME", &token)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(
        page.contains("Readers pay</a> (<code>paying</code>)"),
        "{page}"
    );
    assert!(
        page.contains(&app.url("/archives/paying/s3credentialsREADME")),
        "{page}"
    );
    assert!(
        !page.contains("RequestPayer"),
        "the main archive's recipes: {page}"
    );
    assert_valid_html(&page);
    // The paying archive's page: its bucket marked, its recipes with the option set.
    let page = unescape(
        &app.get_as("/archives/paying/s3credentialsREADME", &token)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(
        page.contains("<code>demo-second-rp</code> (requester pays)"),
        "{page}"
    );
    for recipe in [
        "RequestPayer=\"requester\"",
        "requester_pays=True",
        "export AWS_REQUEST_PAYER=requester",
        "--request-payer requester",
    ] {
        assert!(page.contains(recipe), "{recipe}: {page}");
    }
    assert!(
        page.contains(&app.url("/archives/paying/s3credentials")),
        "{page}"
    );
    assert_valid_html(&page);
}
