//! Bad configuration fails at startup with one message naming the key.

use std::process::Command;

use figment::providers::{Format, Serialized, Toml};
use stsvend::config::{self, ConfigError};

use crate::helpers::{repo_root, test_figment};

/// What `serve` and `check-config` refuse: the configuration, then what the app checks of it.
fn load_with(extra_toml: &str) -> Result<(), ConfigError> {
    let figment = test_figment(8080, "http://127.0.0.1:9400", "http://127.0.0.1:9500")
        .merge(Toml::string(extra_toml));
    let (_, settings) = config::from_figment(figment)?;
    stsvend::startup::preflight(&settings).map(|_| ())
}

fn assert_rejected(extra_toml: &str, key: &str, says: &str) {
    let err = load_with(extra_toml).expect_err("configuration must be rejected");
    assert_eq!(err.key.as_deref(), Some(key), "{err}");
    assert!(
        err.message.contains(says),
        "message {:?} should mention {says:?}",
        err.message
    );
}

#[test]
fn the_test_configuration_itself_is_valid() {
    load_with("").unwrap();
}

#[test]
fn an_unknown_key_is_rejected_by_name() {
    assert_rejected(
        "[server]\nbind_adress = \"x\"\n",
        "server.bind_adress",
        "unknown key",
    );
    assert_rejected("[stss]\nregion = \"us-west-2\"\n", "stss", "unknown key");
    assert_rejected(
        "[[buckets]]\nname = \"abc\"\nregion = \"us-west-2\"\ngroup = []\n",
        "buckets[0].group",
        "unknown key",
    );
}

#[test]
fn a_malformed_role_arn_is_rejected() {
    assert_rejected(
        "[sts]\nrole_arn = \"arn:aws:iam::12:role/x\"\n",
        "sts.role_arn",
        "12 digits",
    );
    assert_rejected(
        "[sts]\nrole_arn = \"stsvend-read\"\n",
        "sts.role_arn",
        "not an ARN",
    );
    assert_rejected(
        "[sts]\nrole_arn = \"arn:aws:iam::123456789012:user/x\"\n",
        "sts.role_arn",
        "role/<name>",
    );
}

#[test]
fn a_role_arn_without_account_is_accepted_for_ceph_and_minio() {
    load_with("[sts]\nrole_arn = \"arn:aws:iam:::role/stsvend-read\"\n").unwrap();
}

#[test]
fn a_short_cookie_key_is_rejected() {
    let figment = test_figment(8080, "http://127.0.0.1:9400", "http://127.0.0.1:9500")
        .merge(Serialized::default("session.key", "c2hvcnQ="));
    let err = config::from_figment(figment).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("session.key"));
    assert!(err.message.contains("at least 64"), "{}", err.message);
}

#[test]
fn a_duration_out_of_range_is_rejected() {
    assert_rejected(
        "[sts]\nduration_seconds = 899\n",
        "sts.duration_seconds",
        "900..=43200",
    );
    assert_rejected(
        "[sts]\nduration_seconds = 43201\n",
        "sts.duration_seconds",
        "900..=43200",
    );
    load_with("[sts]\nduration_seconds = 900\n").unwrap();
}

#[test]
fn invalid_buckets_urls_and_types_are_rejected() {
    assert_rejected(
        "[[buckets]]\nname = \"Bad_Bucket\"\nregion = \"us-west-2\"\n",
        "buckets[0].name",
        "lowercase",
    );
    assert_rejected(
        "[[buckets]]\nname = \"ok-bucket\"\nregion = \"us-west-2\"\nprefixes = [\"a/*\"]\n",
        "buckets[0].prefixes",
        "wildcards",
    );
    assert_rejected(
        "[oidc]\nissuer = \"http://idp.example.org\"\n",
        "oidc.issuer",
        "https",
    );
    assert_rejected(
        "[server]\npublic_url = \"ftp://x\"\n",
        "server.public_url",
        "http(s)",
    );
    assert_rejected(
        "[sts]\nduration_seconds = \"an hour\"\n",
        "sts.duration_seconds",
        "invalid type",
    );
    assert_rejected(
        "[cors]\nallowed_origins = [\"*\"]\n",
        "cors.allowed_origins",
        "explicit",
    );
    assert_rejected(
        "[server]\nhelper_wheel_url = \"http://downloads.example.org/stsvend.whl\"\n",
        "server.helper_wheel_url",
        "https",
    );
    assert_rejected(
        "[server]\nhelper_wheel_url = \"https://downloads.example.org/stsvend\"\n",
        "server.helper_wheel_url",
        "index folder",
    );
    assert_rejected(
        "[s3]\nendpoint_url = \"http://rgw.example.org\"\n",
        "s3.endpoint_url",
        "https",
    );
}

#[test]
fn insecure_cookies_are_refused_off_loopback() {
    assert_rejected(
        "[server]\npublic_url = \"https://data.example.org\"\n[session]\nsecure = false\n",
        "session.secure",
        "loopback",
    );
}

pub fn stsvend(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stsvend"));
    cmd.args(args).current_dir(repo_root());
    for (k, _) in std::env::vars() {
        if k.starts_with("STSVEND_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(envs.iter().copied())
        .output()
        .expect("run stsvend")
}

#[test]
fn check_config_accepts_the_local_stack_configuration() {
    let out = stsvend(&["check-config", "--config", "config/local.toml"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("role_arn = \"arn:aws:iam::123456789012:role/stsvend-read\""));
    // Secrets read from files never appear in the output.
    let secret =
        std::fs::read_to_string(repo_root().join("deploy/local/secrets/oidc-client-secret"))
            .unwrap();
    let key =
        std::fs::read_to_string(repo_root().join("deploy/local/secrets/session-key.b64")).unwrap();
    assert!(!stdout.contains(secret.trim()) && !stdout.contains(key.trim()));
}

/// A copy of config/local.toml (secret paths made absolute), edited by `edit`.
fn local_config_copy(dir: &std::path::Path, edit: impl Fn(String) -> String) -> String {
    let path = dir.join("stsvend.toml");
    let local = std::fs::read_to_string(repo_root().join("config/local.toml")).unwrap();
    let local = local.replace("../deploy/", &format!("{}/deploy/", repo_root().display()));
    std::fs::write(&path, edit(local)).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn check_config_redacts_secrets_from_the_environment() {
    let secret = "super-secret-client-value";
    let dir = tempfile::tempdir().unwrap();
    let path = local_config_copy(dir.path(), |s| {
        s.lines()
            .filter(|l| !l.starts_with("client_secret_file"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let out = stsvend(
        &["check-config", "--config", &path],
        &[("STSVEND_OIDC__CLIENT_SECRET", secret)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("client_secret = \"<redacted>\""),
        "{stdout}"
    );
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
}

#[test]
fn a_secret_given_twice_is_refused_without_echoing_it() {
    let secret = "another-secret-value";
    let out = stsvend(
        &["check-config", "--config", "config/local.toml"],
        &[("STSVEND_OIDC__CLIENT_SECRET", secret)],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not both"), "{stderr}");
    assert!(!stderr.contains(secret));
}

#[test]
fn check_config_exits_1_with_one_line_naming_the_key() {
    let out = stsvend(
        &["check-config", "--config", "config/local.toml"],
        &[("STSVEND_STS__DURATION_SECONDS", "60")],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("sts.duration_seconds"), "{stderr}");
}

#[test]
fn secrets_in_a_config_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = local_config_copy(dir.path(), |s| {
        s.replace("[session]\n", "[session]\nkey = \"aW5saW5lLXNlY3JldA==\"\n")
    });
    let out = stsvend(&["check-config", "--config", &path], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("session.key") && stderr.contains("STSVEND_SESSION__KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains("aW5saW5lLXNlY3JldA=="), "{stderr}");
}

#[test]
fn a_missing_config_file_is_one_clear_line() {
    let out = stsvend(
        &["check-config", "--config", "/nonexistent/stsvend.toml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/stsvend.toml"), "{stderr}");
}

#[test]
fn stsvend_variables_that_are_not_settings_are_ignored() {
    // STSVEND_CONFIG names the file; STSVEND_BIN and friends belong to tooling.
    let out = stsvend(
        &["check-config"],
        &[
            ("STSVEND_CONFIG", "config/local.toml"),
            ("STSVEND_BIN", "/usr/local/bin/stsvend"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_worst_case_policy_over_2048_characters_refuses_to_start() {
    let mut extra = String::new();
    for i in 0..12 {
        extra.push_str(&format!(
            "[[buckets]]\nname = \"archive-bucket-number-{i:02}\"\nregion = \"us-west-2\"\nprefixes = [\"granules/level-2/collection-{i:02}/\", \"granules/level-3/collection-{i:02}/\"]\ngroups = [\"g{i}\"]\n"
        ));
    }
    let err = load_with(&extra).expect_err("too large");
    assert_eq!(err.key.as_deref(), Some("buckets"));
    assert!(
        err.message.contains("over AWS's limit of 2048")
            && err.message.contains("\"managed\"")
            && err.message.contains("\"tags\""),
        "{}",
        err.message
    );
    // Either other way takes them.
    load_with(&format!("{extra}[policy]\nmode = \"managed\"\n")).unwrap();
    load_with(&format!("{extra}[policy]\nmode = \"tags\"\n")).unwrap();
    // The same buckets in another region never enter a policy, so they are fine.
    load_with(&extra.replace("us-west-2", "eu-west-1")).unwrap();
}

#[test]
fn vpc_conditions_are_validated() {
    assert_rejected(
        "[policy]\nsource_vpce = [\"vpc-123\"]\n",
        "policy.source_vpce",
        "VPC endpoint id",
    );
    load_with("[policy]\nsource_vpce = [\"vpce-1a2b3c4d\"]\nsource_vpc = [\"vpc-0abc\"]\n")
        .unwrap();
}

#[test]
fn the_production_example_is_valid_with_secrets_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("production.toml");
    let example =
        std::fs::read_to_string(repo_root().join("config/production.example.toml")).unwrap();
    // The example names secret files under /run/secrets; this test gives them as env vars.
    let example: String = example
        .lines()
        .filter(|l| !l.starts_with("client_secret_file") && !l.starts_with("key_file"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, example).unwrap();
    let out = stsvend(
        &["check-config", "--config", path.to_str().unwrap()],
        &[
            ("STSVEND_OIDC__CLIENT_SECRET", "example-secret"),
            ("STSVEND_SESSION__KEY", crate::helpers::COOKIE_KEY_B64),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Review finding 1g: transport and policy settings STS or browsers would turn into leaks or
/// failures are refused at startup.
#[test]
fn plain_http_off_loopback_and_prefixes_sts_would_refuse_are_rejected() {
    assert_rejected(
        "[sts]\nendpoint_url = \"http://sts.example.org\"\n",
        "sts.endpoint_url",
        "https",
    );
    load_with("[sts]\nendpoint_url = \"https://sts.example.org\"\n").unwrap();
    assert_rejected(
        "[cors]\nallowed_origins = [\"http://hub.example.org\"]\n",
        "cors.allowed_origins",
        "https",
    );
    load_with("[cors]\nallowed_origins = [\"http://127.0.0.1:8888\"]\n").unwrap();
    assert_rejected(
        "[[buckets]]\nname = \"prefixed-bucket\"\nregion = \"us-west-2\"\nprefixes = [\"数据/\"]\n",
        "buckets[0].prefixes",
        "U+00FF",
    );
    load_with(
        "[[buckets]]\nname = \"prefixed-bucket\"\nregion = \"us-west-2\"\nprefixes = [\"données/\"]\n",
    )
    .unwrap();
    assert_rejected(
        "[oidc]\nunsafe_opaque_tokens_via_userinfo = true\n",
        "oidc.unsafe_opaque_tokens_via_userinfo",
        "accept_opaque_tokens",
    );
}

#[test]
fn scope_modes_are_validated_with_the_way_out_named() {
    assert_rejected(
        "[policy]\nmode = \"wildcard\"\n",
        "policy.mode",
        "\"inline\", \"managed\", \"tags\"",
    );
    // Managed policies live in the role's account: a Ceph-style role ARN has none.
    assert_rejected(
        "[policy]\nmode = \"managed\"\n[sts]\nrole_arn = \"arn:aws:iam:::role/read\"\n",
        "policy.mode",
        "account id",
    );
    // A static session tag with the group-tag prefix would grant a group's buckets to all.
    assert_rejected(
        "[policy]\nmode = \"tags\"\n[sts]\nsession_tags = { \"Stsvend-g-science\" = \"true\" }\n",
        "policy.mode",
        "tag_key_prefix",
    );
    assert_rejected(
        "[policy]\nmanaged_policy_path = \"stsvend\"\n",
        "policy.managed_policy_path",
        "IAM path",
    );
    assert_rejected(
        "[policy]\ntag_key_prefix = \"aws:x\"\n",
        "policy.tag_key_prefix",
        "letters",
    );
}

#[test]
fn fleet_mode_settings_are_validated() {
    let ok = "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nencryption_key = \"c3RzdmVuZC1mbGVldC10ZXN0LWtleS0zMi1ieXRlcyE=\"\n";
    // Secrets never come from a file's text; the test layer stands in for the environment.
    let with = |extra: &str| {
        let figment = test_figment(8080, "http://127.0.0.1:9400", "http://127.0.0.1:9500")
            .merge(Toml::string(extra));
        config::from_figment(figment).map(|_| ())
    };
    let dir = tempfile::tempdir().unwrap();
    let path = local_config_copy(dir.path(), |s| format!("{s}\n{ok}"));
    let out = stsvend(&["check-config", "--config", &path], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a key in a config file is refused"
    );
    assert!(
        stderr.contains("STSVEND_CLUSTER__ENCRYPTION_KEY")
            && !stderr.contains("c3RzdmVuZC1mbGVldC"),
        "{stderr}"
    );
    let env_key = |extra: &str| {
        let figment = test_figment(8080, "http://127.0.0.1:9400", "http://127.0.0.1:9500")
            .merge(Toml::string(extra))
            .merge(Serialized::default(
                "cluster.encryption_key",
                "c3RzdmVuZC1mbGVldC10ZXN0LWtleS0zMi1ieXRlcyE=",
            ));
        config::from_figment(figment).map(|_| ())
    };
    env_key("[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n").unwrap();
    env_key("[cluster]\nredis_url = \"rediss://redis.example.org:6380\"\n").unwrap();
    let err = |extra: &str| env_key(extra).expect_err("must be refused");
    let e = err("[cluster]\nredis_url = \"http://127.0.0.1:6379\"\n");
    assert_eq!(e.key.as_deref(), Some("cluster.redis_url"));
    let e = err("[cluster]\nredis_url = \"redis://:pw@redis.example.org:6379\"\n");
    assert!(e.message.contains("rediss://"), "{e}");
    // Plain Redis off loopback, even without a password: refused unless the network is
    // declared private.
    let e = err("[cluster]\nredis_url = \"redis://redis.example.org:6379\"\n");
    assert_eq!(e.key.as_deref(), Some("cluster.redis_url"));
    assert!(
        e.message.contains("rediss://") && e.message.contains("cluster.trusted_network"),
        "{e}"
    );
    env_key("[cluster]\nredis_url = \"redis://redis.example.org:6379\"\ntrusted_network = true\n")
        .unwrap();
    let e = err("[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nlock_wait_ms = 10\n");
    assert_eq!(e.key.as_deref(), Some("cluster.lock_wait_ms"));
    let e = err("[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\ncommand_timeout_ms = 0\n");
    assert_eq!(e.key.as_deref(), Some("cluster.command_timeout_ms"));
    let e = err("[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nunknown = 1\n");
    assert!(e.message.contains("unknown"), "{e}");
    // No key at all, or a short one.
    let e = with("[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n").expect_err("no key");
    assert_eq!(e.key.as_deref(), Some("cluster.encryption_key"));
    let short = test_figment(8080, "http://127.0.0.1:9400", "http://127.0.0.1:9500")
        .merge(Toml::string(
            "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n",
        ))
        .merge(Serialized::default("cluster.encryption_key", "c2hvcnQ="));
    let e = config::from_figment(short)
        .map(|_| ())
        .expect_err("short key");
    assert!(e.message.contains("at least 32"), "{e}");
}

#[test]
fn one_users_share_of_sts_must_leave_room_for_everyone_else() {
    assert_rejected(
        "[limits]\nuser_new_credentials_burst = 40\n[sts]\nmax_in_flight = 64\n",
        "limits.user_new_credentials_burst",
        "more than half of sts.max_in_flight",
    );
    assert_rejected(
        "[limits]\nuser_new_credentials_burst = 10\n[sts]\nmax_calls_per_second = 15\n",
        "limits.user_new_credentials_burst",
        "sts.max_calls_per_second",
    );
    load_with("[limits]\nuser_new_credentials_per_minute = 0\nuser_new_credentials_burst = 40\n")
        .unwrap();
    assert_rejected(
        "[cache]\nmax_entries_per_user = 0\n",
        "cache.max_entries_per_user",
        "",
    );
}

/// A second archive, as the test configuration has, with `extra` lines in its table.
fn with_archive(extra: &str) -> String {
    format!(
        "[[archives]]\nname = \"other\"\n{extra}\n[[archives.buckets]]\nname = \"other-bucket\"\nregion = \"us-west-2\"\n"
    )
}

#[test]
fn archives_are_refused_by_the_key_that_is_wrong() {
    let role = "sts = { role_arn = \"arn:aws:iam::210987654321:role/r\" }";
    // The base configuration already has archive "second" with demo-second.
    assert_rejected(
        "[[archives]]\nname = \"other\"\nsts = { role_arn = \"arn:aws:iam::210987654321:role/r\" }\n[[archives.buckets]]\nname = \"demo-inregion\"\nregion = \"us-west-2\"\n",
        "archives[0].buckets",
        "also in archive \"main\"",
    );
    assert_rejected(
        &with_archive(""),
        "archives[0].sts.role_arn",
        "each archive assumes its own role",
    );
    assert_rejected(
        &with_archive(&format!("{role}\nname2 = 1")),
        "archives[0].name2",
        "unknown key",
    );
    assert_rejected(
        &with_archive("sts = { role_arn = \"arn:aws:iam::210987654321:role/r\", regoin = \"x\" }"),
        "archives[0].sts",
        "regoin",
    );
    assert_rejected(
        &with_archive("sts = { role_arn = \"not an arn\" }"),
        "archives[0].sts.role_arn",
        "not an ARN",
    );
    assert_rejected(
        &with_archive(&format!("{role}\npath = \"/s3/other\"")),
        "archives[0].path",
        "would hide the service's own /s3",
    );
    assert_rejected(
        &with_archive(&format!("{role}\npath = \"/login\"")),
        "archives[0].path",
        "would hide",
    );
    assert_rejected(
        &with_archive(&format!("{role}\npath = \"/a/../b\"")),
        "archives[0].path",
        "must be a path",
    );
    assert_rejected(
        &with_archive(&format!("{role}\npath = \"/archives/main\"")),
        "archives[0].path",
        "already the path of archive",
    );
    assert_rejected(
        "[archive]\nname = \"Main Archive\"\n",
        "archive.name",
        "lowercase",
    );
    assert_rejected(
        "[[archives]]\nname = \"main\"\nsts = { role_arn = \"arn:aws:iam::210987654321:role/r\" }\n",
        "archives[0].name",
        "already the name",
    );
    assert_rejected(
        "[archive]\ndefault = \"nope\"\n",
        "archive.default",
        "main, second",
    );
    assert_rejected(
        &with_archive(
            "sts = { role_arn = \"arn:aws:iam::210987654321:role/r\", external_id = \"x\" }",
        ),
        "archives[0].sts.external_id",
        "2-1224",
    );
    // What the deployment-wide sections require of [sts], each archive's [sts] meets too.
    assert_rejected(
        &with_archive(
            "sts = { role_arn = \"arn:aws:iam::210987654321:role/r\", max_in_flight = 4 }",
        ),
        "archives[0].sts",
        "more than half of sts.max_in_flight",
    );
}

#[test]
fn an_archive_inherits_the_top_level_sections_but_never_the_roles_external_id() {
    let figment = test_figment(8080, "http://127.0.0.1:9400", "http://127.0.0.1:9500")
        .merge(Toml::string(
            "[sts]\nexternal_id = \"top-level-id\"\nduration_seconds = 7200\n[policy]\nmode = \"tags\"\n",
        ))
        .merge(Toml::string(&with_archive(
            "sts = { role_arn = \"arn:aws:iam::210987654321:role/r\", region = \"eu-west-1\" }\npolicy = { mode = \"inline\" }",
        )));
    let (_, settings) = config::from_figment(figment).unwrap();
    let other = &settings.archives[1];
    assert_eq!(other.name, "other");
    assert_eq!(other.path, "/archives/other");
    assert_eq!(other.sts.region, "eu-west-1");
    assert_eq!(other.sts.duration_seconds, 7200);
    assert_eq!(
        other.sts.endpoint_url.as_ref().map(url::Url::as_str),
        Some("http://127.0.0.1:9500/")
    );
    assert_eq!(other.sts.external_id, None);
    assert_eq!(other.policy.mode.as_str(), "inline");
    assert_eq!(
        settings.archives[0].sts.external_id.as_deref(),
        Some("top-level-id")
    );
    assert_eq!(settings.archives[0].policy.mode.as_str(), "tags");
}

#[test]
fn an_archive_whose_worst_case_policy_aws_would_refuse_is_named() {
    let mut buckets = String::new();
    for i in 0..60 {
        buckets.push_str(&format!(
            "[[archives.buckets]]\nname = \"big-bucket-{i:02}\"\nregion = \"us-west-2\"\nprefixes = [\"some/rather/long/prefix/{i}/\"]\n"
        ));
    }
    let err = load_with(&format!(
        "[[archives]]\nname = \"big\"\nsts = {{ role_arn = \"arn:aws:iam::210987654321:role/r\" }}\n{buckets}"
    ))
    .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("archives[0].buckets"), "{err}");
    assert!(err.message.contains("over AWS's limit"), "{err}");
}

#[test]
fn network_and_help_settings_are_refused_by_the_key_that_is_wrong() {
    assert_rejected(
        "[network]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
        "network.trusted_proxies",
        "not an address or CIDR",
    );
    assert_rejected(
        "[network]\nout_of_region = \"block\"\n",
        "network.out_of_region",
        "\"warn\", \"refuse\"",
    );
    assert_rejected(
        "[network]\nout_of_region = \"refuse\"\n",
        "network.out_of_region",
        "needs network.aws_ip_ranges_file",
    );
    assert_rejected(
        "[network]\naws_ip_ranges_file = \"/nonexistent/ip-ranges.json\"\n",
        "network.aws_ip_ranges_file",
        "cannot read",
    );
    assert_rejected(
        "[help.urls]\naccess_denide = \"https://example.org/x\"\n",
        "help.urls.access_denide",
        "not an error code",
    );
    assert_rejected(
        "[help.urls]\naccess_denied = \"http://example.org/x\"\n",
        "help.urls.access_denied",
        "must use https",
    );
    load_with(&format!(
        "[network]\naws_ip_ranges_file = \"{}\"\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\", \"2001:db8::/32\"]\n[help.urls]\naccess_denied = \"https://example.org/request-access\"\n",
        repo_root().join("deploy/local/ip-ranges.json").display()
    ))
    .unwrap();
}

#[test]
fn ticket_and_platform_settings_are_refused_by_the_key_that_is_wrong() {
    assert_rejected(
        "[tickets]\nmax_lifetime_seconds = 9999999\n",
        "tickets.max_lifetime_seconds",
        "out of range",
    );
    assert_rejected(
        "[tickets]\ndefault_lifetime_seconds = 200000\nmax_lifetime_seconds = 100000\n",
        "tickets.default_lifetime_seconds",
        "longer than",
    );
    assert_rejected(
        "[tickets]\nmax_per_user = 0\n",
        "tickets.max_per_user",
        "out of range",
    );
    // A file's [[platforms]] replaces the test config's list.
    let demo = "[[platforms]]\nname = \"demo\"\nclient_id = \"demo-platform\"\n";
    assert_rejected(
        "[[platforms]]\nname = \"Hub!\"\nclient_id = \"hub\"\n",
        "platforms[0].name",
        "a-z, 0-9 and -",
    );
    assert_rejected(
        "[[platforms]]\nname = \"mine\"\nclient_id = \"stsvend-local\"\n",
        "platforms[0].client_id",
        "own client id",
    );
    assert_rejected(
        &format!("{demo}[[platforms]]\nname = \"demo\"\nclient_id = \"another\"\n"),
        "platforms[1].name",
        "another platform",
    );
    assert_rejected(
        &format!("{demo}[[platforms]]\nname = \"second\"\nclient_id = \"demo-platform\"\n"),
        "platforms[1].client_id",
        "another platform",
    );
    assert_rejected(
        "[server]\napp_name = \"an-app-name-of-thirty-characters\"\n[[platforms]]\nname = \"a-long-platform-name\"\nclient_id = \"x\"\n",
        "platforms[0].name",
        "session names",
    );
}
