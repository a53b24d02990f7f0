//! Say why before the 403: callers outside the archive's region are told at issuance (or
//! refused, when the deployment says so), and every error names a page that says what to do.
//! The fixture `deploy/local/ip-ranges.json` (AWS's format) makes 127.0.0.2 an AWS us-west-2
//! address and 127.0.0.3 a us-east-1 one; 127.0.0.1 is outside every region.

use std::net::IpAddr;

use figment::providers::{Format, Serialized, Toml};
use serde_json::{json, Value};

use crate::helpers::*;

fn ranges() -> String {
    repo_root()
        .join("deploy/local/ip-ranges.json")
        .display()
        .to_string()
}

/// A client whose requests leave from `from`.
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get_from(app: &TestApp, from: &str, path: &str, token: &str) -> reqwest::Response {
    client_from(from)
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn placed_app(extra: &'static str) -> TestApp {
    let app = spawn_app_with(|f| {
        f.merge(Serialized::default("network.aws_ip_ranges_file", ranges()))
            .merge(Toml::string(extra))
    })
    .await;
    assert!(app.wait_ready(std::time::Duration::from_secs(15)).await);
    app
}

#[tokio::test]
async fn a_caller_outside_the_region_gets_the_credential_with_a_warning_that_scope_repeats() {
    let app = placed_app("").await;
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;

    // From an AWS us-west-2 address: no warning.
    let res = get_from(&app, "127.0.0.2", "/s3credentials", &token).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("stsvend-warning").is_none());
    let scope: Value = get_from(&app, "127.0.0.2", "/s3credentials/scope", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(scope["in_region"], true);
    assert!(scope.get("hint").is_none(), "{scope}");

    // From elsewhere: the same credential body, and the warning beside it.
    for from in ["127.0.0.1", "127.0.0.3"] {
        let res = get_from(&app, from, "/s3credentials", &token).await;
        assert_eq!(res.status(), 200);
        let warning = res.headers()["stsvend-warning"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            warning,
            "out_of_region: your address is outside AWS us-west-2; these credentials work only in us-west-2"
        );
        let text = res.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            body.as_object().unwrap().len(),
            4,
            "the Earthdata body stays as it is"
        );
        assert!(text.starts_with("{\"accessKeyId\":"));
        let scope: Value = get_from(&app, from, "/s3credentials/scope", &token)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(scope["in_region"], false);
        let hint = scope["hint"].as_str().unwrap();
        assert!(
            hint.contains("object links") && hint.contains(from),
            "{scope}"
        );
    }
    // The bundle warns too, naming the region once.
    let res = get_from(
        &app,
        "127.0.0.1",
        "/s3credentials/bundle?target=s3://demo-inregion/&target=s3://demo-second/",
        &token,
    )
    .await;
    assert_eq!(res.status(), 200);
    let warning = res.headers()["stsvend-warning"].to_str().unwrap();
    assert_eq!(warning.matches("us-west-2").count(), 2, "{warning}");
}

#[tokio::test]
async fn without_aws_ranges_nobody_is_placed_and_scope_is_as_before() {
    let app = spawn_ready_app().await;
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    let res = get_from(&app, "127.0.0.1", "/s3credentials", &token).await;
    assert!(res.headers().get("stsvend-warning").is_none());
    let scope: Value = get_from(&app, "127.0.0.1", "/s3credentials/scope", &token)
        .await
        .json()
        .await
        .unwrap();
    let keys: Vec<&String> = scope.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["buckets", "duration_seconds", "region"]);
}

#[tokio::test]
async fn the_refusal_mode_answers_out_of_region_and_points_at_object_links() {
    let app = placed_app("[network]\nout_of_region = \"refuse\"\n").await;
    let (user, token) = unique_user(&app, "outside", json!(["science"])).await;
    let res = get_from(&app, "127.0.0.1", "/s3credentials", &token).await;
    assert_eq!(res.status(), 403);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"], "out_of_region");
    let says = err["error_description"].as_str().unwrap();
    assert!(
        says.contains("127.0.0.1") && says.contains("us-west-2") && says.contains("/s3/"),
        "{says}"
    );
    // The bundle is refused as a whole; an in-region caller is served.
    let res = get_from(
        &app,
        "127.0.0.1",
        "/s3credentials/bundle?target=s3://demo-second/",
        &token,
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        get_from(&app, "127.0.0.2", "/s3credentials", &token)
            .await
            .status(),
        200
    );
    // Refused before STS: the out-of-region asks made no AssumeRole.
    assert_eq!(
        assume_role_calls(&user).await,
        1,
        "one AssumeRole, for the in-region caller"
    );
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let app = placed_app("[network]\ntrusted_proxies = [\"127.0.0.1\"]\n").await;
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    let via = |from: &'static str, forwarded: &'static str| {
        let (url, token) = (app.url("/s3credentials"), token.clone());
        async move {
            client_from(from)
                .get(url)
                .bearer_auth(token)
                .header("x-forwarded-for", forwarded)
                .send()
                .await
                .unwrap()
        }
    };
    // The trusted proxy says the client is in us-west-2: believed.
    let res = via("127.0.0.1", "198.51.100.7, 127.0.0.2").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("stsvend-warning").is_none());
    // Anyone else saying so is not: they are placed by their own address.
    let res = via("127.0.0.3", "127.0.0.2").await;
    assert!(res.headers().get("stsvend-warning").is_some());
    let scope: Value = client_from("127.0.0.3")
        .get(app.url("/s3credentials/scope"))
        .bearer_auth(&token)
        .header("x-forwarded-for", "127.0.0.2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        scope["hint"].as_str().unwrap().contains("127.0.0.3"),
        "{scope}"
    );
}

#[tokio::test]
async fn the_helper_prints_the_warning_once_when_it_fetches() {
    let app = placed_app("").await;
    let token = idp_token(&app.issuer, "alice", "alice-pw").await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let run = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_stsvend"));
        cmd.args([
            "credential-process",
            "--endpoint",
            &app.url("/s3credentials"),
        ])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"));
        async move {
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        }
    };
    let first = run().await;
    assert!(first.status.success());
    let err = String::from_utf8_lossy(&first.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("stsvend: warning: out_of_region: your address is outside AWS us-west-2"),
        "{err}"
    );
    let again = run().await;
    assert!(again.status.success());
    assert!(again.stderr.is_empty(), "from the cache: no warning again");
}

/// Every error code pointed at a page, as the local stack does.
fn every_help_url(f: figment::Figment) -> figment::Figment {
    let urls: serde_json::Map<String, Value> = stsvend::common::ERROR_CODES
        .iter()
        .map(|c| {
            (
                (*c).to_owned(),
                json!(format!("https://help.example.org/stsvend/{c}")),
            )
        })
        .collect();
    f.merge(Serialized::default("help.urls", urls))
}

#[tokio::test]
async fn every_refusal_names_its_code_and_the_page_configured_for_it() {
    let app = spawn_app_with(|f| {
        every_help_url(f)
            .merge(Serialized::default("network.aws_ip_ranges_file", ranges()))
            .merge(Serialized::default("network.out_of_region", "refuse"))
    })
    .await;
    assert!(app.wait_ready(std::time::Duration::from_secs(15)).await);
    let alice = idp_token(&app.issuer, "alice", "alice-pw").await;
    let (_, bob) = unique_user(&app, "nobody", json!([])).await;
    let in_region = client_from("127.0.0.2");
    let get = |path: &str, token: Option<&str>| {
        let mut r = in_region
            .get(app.url(path))
            .header("accept", "application/json");
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let cases: Vec<(&str, Option<&str>, u16, &str)> = vec![
        ("/s3credentials", Some(bob.as_str()), 403, "access_denied"),
        (
            "/s3credentials?format=yaml",
            Some(&alice),
            400,
            "invalid_format",
        ),
        (
            "/s3credentials?target=s3://UP/",
            Some(&alice),
            400,
            "invalid_target",
        ),
        (
            "/s3credentials?duration_seconds=5",
            Some(&alice),
            400,
            "invalid_duration",
        ),
        (
            "/s3credentials?target=s3://demo-inregion/&target=s3://demo-second/",
            Some(&alice),
            400,
            "targets_in_several_archives",
        ),
        ("/s3credentials/bundle", Some(&alice), 400, "missing_target"),
        (
            "/s3credentials/locate?bucket_name=not-served-here",
            None,
            404,
            "unknown_bucket",
        ),
        (
            "/s3credentials/locate?url=http://x/",
            None,
            400,
            "invalid_url",
        ),
        ("/s3credentials", Some("not-a-token"), 401, "invalid_token"),
        ("/no/such/path", None, 404, "not_found"),
        (
            "/s3/demo-inregion/a?expires_in=0",
            Some(&alice),
            400,
            "invalid_expires_in",
        ),
        ("/s3credentials", None, 401, "login_required"),
    ];
    for (path, token, status, code) in cases {
        let res = get(path, token).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], code, "{path}: {body}");
        assert_eq!(
            body["help_url"],
            format!("https://help.example.org/stsvend/{code}"),
            "{path}"
        );
    }
    // From outside the region (refused here), and for methods that are not served.
    let res = client_from("127.0.0.1")
        .get(app.url("/s3credentials"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["help_url"],
        "https://help.example.org/stsvend/out_of_region"
    );
    let res = in_region
        .delete(app.url("/s3credentials"))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["help_url"],
        "https://help.example.org/stsvend/method_not_allowed"
    );
    // The HTML variant links it too.
    let res = in_region
        .get(app.url("/s3credentials"))
        .bearer_auth(&bob)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let page = res.text().await.unwrap();
    assert!(
        page.contains("<a id=\"help\" href=\"https://help.example.org/stsvend/access_denied\">"),
        "{page}"
    );
    // The helper prints the sentence and the page, in its one line.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &bob).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stsvend"))
        .args([
            "credential-process",
            "--endpoint",
            &app.url("/s3credentials"),
        ])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("(see https://help.example.org/stsvend/access_denied)"),
        "{err}"
    );
}
