//! `stsvend configure` and the helper treat the service as untrusted: what they write into the
//! user's AWS config (or print for `eval`) is checked first, and the written profile is read
//! back the way botocore reads it.

use std::process::{Command, Output};

use serde_json::json;

use crate::helpers::{components, repo_root, spawn_ready_app, unique_user};

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `configure` failed with one line and left no config file behind.
fn refused_without_writing(out: &Output, config: &std::path::Path, case: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{case}: {err}");
    assert_eq!(err.lines().count(), 1, "{case}: {err}");
    assert!(!config.exists(), "{case}: the file was written");
}

/// A compromised service: a valid credential, and a "region" that is really config lines
/// (botocore reads a lone `\r` as a line end).
fn hostile_service(region: &'static str) -> String {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/s3credentials",
        listener.local_addr().unwrap().port()
    );
    let server = HttpServer::new(move || {
        App::new()
            .route(
                "/s3credentials/scope",
                web::get().to(move || async move {
                    HttpResponse::Ok()
                        .json(json!({"region": region, "buckets": [], "duration_seconds": 3600}))
                }),
            )
            .route(
                "/s3credentials",
                web::get().to(|| async {
                    let expires = chrono::Utc::now() + chrono::TimeDelta::hours(1);
                    HttpResponse::Ok().json(json!({
                        "Version": 1,
                        "AccessKeyId": "ASIAFAKEFAKEFAKE",
                        "SecretAccessKey": "fake/secret",
                        "SessionToken": "fake-token",
                        "Expiration": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    }))
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    url
}

const INJECTED: &str =
    "us-west-2\rcredential_process = sh -c \"touch /tmp/stsvend-pwned\"\r[profile zz]";

#[tokio::test]
async fn configure_refuses_a_region_from_the_service_that_is_not_a_region() {
    let endpoint = hostile_service(INJECTED);
    let home = tempfile::tempdir().unwrap();
    let token = home.path().join("token");
    std::fs::write(&token, "some-token").unwrap();
    let config = home.path().join("aws-config");
    let before = "# mine\n[profile work]\nregion = eu-west-1\n";
    std::fs::write(&config, before).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stsvend"));
    cmd.args(["configure", "--endpoint", &endpoint, "--profile", "archive"])
        .arg("--token-file")
        .arg(&token)
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", &config)
        .env_remove("XDG_CACHE_HOME");
    let out = run(cmd).await;
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("region"), "{err}");
    assert!(!err.contains('\r'), "{err:?}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);

    // `--format env` output is meant for `eval`: refused as well, nothing printed.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stsvend"));
    cmd.args([
        "credential-process",
        "--endpoint",
        &endpoint,
        "--format",
        "env",
    ])
    .arg("--token-file")
    .arg(&token)
    .arg("--cache-dir")
    .arg(home.path().join("cache"));
    let out = run(cmd).await;
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr(&out).contains("region"), "{}", stderr(&out));
}

#[tokio::test]
async fn configure_refuses_a_region_or_profile_name_that_would_not_read_back() {
    let endpoint = hostile_service("us-west-2");
    let home = tempfile::tempdir().unwrap();
    let token = home.path().join("token");
    std::fs::write(&token, "some-token").unwrap();
    let config = home.path().join("aws-config");
    for (flag, value) in [
        ("--region", "us-west-2\rcredential_process = x"),
        ("--region", "us west 2"),
        ("--profile", "a]\n[profile b"),
        ("--profile", "x\ry"),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stsvend"));
        cmd.args(["configure", "--endpoint", &endpoint])
            .args(if flag == "--profile" {
                vec![flag, value]
            } else {
                vec!["--profile", "archive", flag, value]
            })
            .arg("--token-file")
            .arg(&token)
            .env("HOME", home.path())
            .env("AWS_CONFIG_FILE", &config);
        refused_without_writing(&run(cmd).await, &config, &format!("{flag} {value:?}"));
    }
}

/// With `--region`, the region comes from the user, but the login is still proved before
/// anything is written.
#[tokio::test]
async fn configure_with_a_region_and_a_login_that_fails_writes_nothing() {
    let app = spawn_ready_app().await;
    let home = tempfile::tempdir().unwrap();
    let bad = home.path().join("bad-token");
    std::fs::write(&bad, "not-a-token").unwrap();
    let config = home.path().join("aws-config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stsvend"));
    cmd.args(["configure", "--endpoint", &app.url("/s3credentials")])
        .args([
            "--profile",
            "archive",
            "--region",
            "us-west-2",
            "--token-file",
        ])
        .arg(&bad)
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", &config)
        .env_remove("XDG_CACHE_HOME");
    refused_without_writing(&run(cmd).await, &config, "a login that fails");
}

/// The profile as botocore reads it: the helper at a path with a space, `$`, a backtick and a
/// quote; the region asked for (not the service's); the narrowing; a config file that is a
/// symlink into a dotfiles folder stays one; a planted backup symlink is not followed; the
/// default `~/.aws/config` is never touched when `AWS_CONFIG_FILE` says otherwise.
#[tokio::test]
async fn configure_writes_a_profile_botocore_reads_as_meant() {
    let app = spawn_ready_app().await;
    let (_, token) = unique_user(&app, "configure-botocore", json!(["science"])).await;
    // Beside the build (the same filesystem), so the helper can be hard-linked there.
    let place = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let odd = place.path().join("a $HOME `id` 'q\" dir");
    std::fs::create_dir_all(&odd).unwrap();
    let helper = odd.join("stsvend");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_stsvend"), &helper).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_stsvend"), &helper).unwrap();
    }
    let home = place.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let token_file = home.join("edl token");
    std::fs::write(&token_file, &token).unwrap();
    let dotfiles = place.path().join("dotfiles");
    std::fs::create_dir_all(&dotfiles).unwrap();
    let real = dotfiles.join("aws-config");
    let before = "# mine\n[profile work]\nregion = eu-west-1\n";
    std::fs::write(&real, before).unwrap();
    let config = place.path().join("config-link");
    std::os::unix::fs::symlink(&real, &config).unwrap();
    let victim = place.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    for backup in [
        place.path().join("config-link.stsvend-backup"),
        dotfiles.join("aws-config.stsvend-backup"),
    ] {
        std::os::unix::fs::symlink(&victim, backup).unwrap();
    }

    let mut cmd = Command::new(&helper);
    cmd.args(["configure", "--endpoint", &app.url("/s3credentials")])
        .args(["--profile", "archive", "--region", "eu-north-1"])
        .args(["--target", "s3://demo-inregion/p1/", "--token-file"])
        .arg(&token_file)
        .env("HOME", &home)
        .env("AWS_CONFIG_FILE", &config)
        .env_remove("XDG_CACHE_HOME");
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", stderr(&out));

    assert!(
        std::fs::symlink_metadata(&config)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the config symlink was replaced by a file"
    );
    let written = std::fs::read_to_string(&real).unwrap();
    assert!(written.starts_with(before), "{written}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!home.join(".aws").exists(), "wrote the default config too");

    let script = format!(
        "import boto3, json\n\
         s = boto3.Session(profile_name='archive')\n\
         c = s.get_credentials().get_frozen_credentials()\n\
         cfg = s._session.get_scoped_config()\n\
         print(json.dumps({{'region': s.region_name, 'key': c.access_key, 'process': cfg['credential_process'], 'keys': sorted(cfg)}}))\n\
         s3 = s.client('s3', endpoint_url='{}', region_name='us-west-2')\n\
         print(s3.get_object(Bucket='demo-inregion', Key='hello.txt')['Body'].read().decode() != '')\n",
        components().moto_endpoint
    );
    let mut python = Command::new(repo_root().join("deploy/local/.venv/bin/python"));
    python
        .args(["-c", &script])
        .env("HOME", &home)
        .env("AWS_CONFIG_FILE", &config)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION");
    let out = run(python).await;
    assert!(out.status.success(), "{}\n{written}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    let seen: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(seen["region"], "eu-north-1", "{seen}");
    assert!(seen["key"].as_str().unwrap().len() >= 16, "{seen}");
    assert_eq!(
        seen["keys"],
        json!(["credential_process", "region"]),
        "{seen}"
    );
    assert!(
        seen["process"]
            .as_str()
            .unwrap()
            .contains("--target s3://demo-inregion/p1/"),
        "{seen}"
    );
    assert_eq!(lines.next(), Some("True"), "{stdout}");
}

/// The reader `configure` checks its work with (`client::botocore_ini`) sees the same profiles
/// as botocore itself on files made to disagree: lone `\r`, `\r\n`, continuation lines, empty
/// lines inside values, comments, `:` as the delimiter, upper-case keys, quoted and
/// prefix-only profile names, and the repetitions configparser refuses.
#[test]
fn the_config_reader_agrees_with_botocore() {
    let cases = [
        "[profile a]\nregion = us-west-2\rcredential_process = evil\r[profile zz]\nx = 1\n",
        "[default]\r\nregion=eu-west-1\r\n\r\n[profile b]\r\noutput : json\r\n",
        "# c\n[profile c]\ns3 =\n  addressing_style = path\n\n  signature_version = s3v4\nKey = V\n; end\n",
        "[profile  \"my d\" ]\nregion = x\n[profilefoo e]\na = 1\n[preview]\nb = 2\n[profile f g h]\nc = 3\n",
        "[profile a]\nregion = 1\n[profile a]\nregion = 2\n",
        "[profile a]\nregion = 1\nREGION = 2\n",
        "[profile a]\n\tregion = 1\n  credential_process = x\n",
        "[profile a]\nregion = \n credential_process = y\n",
    ];
    let dir = tempfile::tempdir().unwrap();
    let script = "import json, sys\n\
        from botocore.configloader import raw_config_parse, build_profile_map\n\
        try:\n    p = build_profile_map(raw_config_parse(sys.argv[1], parse_subsections=False))['profiles']\n    print(json.dumps(p, sort_keys=True))\n\
        except Exception:\n    print('refused')\n";
    for (i, text) in cases.iter().enumerate() {
        let path = dir.path().join(format!("config-{i}"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(repo_root().join("deploy/local/.venv/bin/python"))
            .args(["-c", script])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let theirs = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let ours = match stsvend::client::botocore_ini::profiles(text) {
            Ok(p) => serde_json::to_string(&p).unwrap(),
            Err(_) => "refused".to_owned(),
        };
        let theirs = if theirs == "refused" {
            theirs
        } else {
            serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&theirs).unwrap())
                .unwrap()
        };
        assert_eq!(ours, theirs, "case {i}: {text:?}");
    }
}

/// The AWS config as botocore reads it, through the test venv's Python: profile -> region
/// and credential_process.
async fn profiles_read_back(config: &std::path::Path) -> serde_json::Value {
    let script = "import botocore.session, json, sys\n\
         s = botocore.session.Session()\n\
         print(json.dumps({n: s.full_config['profiles'][n] for n in s.available_profiles}))\n";
    let mut python = Command::new(repo_root().join("deploy/local/.venv/bin/python"));
    python.args(["-c", script]).env("AWS_CONFIG_FILE", config);
    let out = run(python).await;
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn configure_all_archives_writes_a_working_profile_for_each_archive_the_user_may_read() {
    let app = spawn_ready_app().await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("aws-config");
    let before = "[profile work]\nregion = eu-west-1\n";
    for (groups, expected, skipped) in [
        (json!(["science"]), vec!["data-main", "data-second"], None),
        (
            json!(["restricted"]),
            vec!["data-main"],
            Some("archive second skipped"),
        ),
    ] {
        std::fs::write(&config, before).unwrap();
        let (_, token) = unique_user(&app, "configure-all", groups.clone()).await;
        let token_file = home.path().join("token");
        std::fs::write(&token_file, &token).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stsvend"));
        cmd.args(["configure", "--endpoint", &app.url("/s3credentials")])
            .args([
                "--all-archives",
                "--profile-prefix",
                "data-",
                "--token-file",
            ])
            .arg(&token_file)
            .env("HOME", home.path())
            .env("AWS_CONFIG_FILE", &config)
            .env_remove("XDG_CACHE_HOME");
        let out = run(cmd).await;
        let err = stderr(&out);
        assert!(out.status.success(), "{groups}: {err}");
        match skipped {
            Some(says) => assert!(err.contains(says), "{err}"),
            None => assert!(!err.contains("skipped"), "{err}"),
        }
        let seen = profiles_read_back(&config).await;
        let mut names: Vec<&str> = seen
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|n| n.starts_with("data-"))
            .collect();
        names.sort_unstable();
        assert_eq!(names, expected, "{seen}");
        assert_eq!(seen["work"]["region"], "eu-west-1");
        // Each profile names its archive's own endpoint and that archive's region.
        for name in expected {
            let archive = name.trim_start_matches("data-");
            let process = seen[name]["credential_process"].as_str().unwrap();
            assert!(
                process.contains(&app.url(&format!("/archives/{archive}/s3credentials"))),
                "{process}"
            );
            assert_eq!(seen[name]["region"], "us-west-2");
        }
    }

    // Nothing the user may read: nothing written, one line.
    std::fs::remove_file(&config).unwrap();
    let (_, token) = unique_user(&app, "configure-none", json!([])).await;
    let token_file = home.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stsvend"));
    cmd.args(["configure", "--endpoint", &app.url("/s3credentials")])
        .args(["--all-archives", "--token-file"])
        .arg(&token_file)
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", &config)
        .env_remove("XDG_CACHE_HOME");
    let out = run(cmd).await;
    assert!(!out.status.success());
    assert!(!config.exists(), "{}", stderr(&out));
    assert!(stderr(&out)
        .lines()
        .last()
        .unwrap()
        .contains("nothing written"));
}
