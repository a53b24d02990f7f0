//! Test harness: the real components (oidc-provider IdP, moto) started once per test binary on
//! free loopback ports by the project's own scripts, and `spawn_app()` starting stsvend on
//! port 0 against them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use stsvend::clock::ManualClock;
use stsvend::config::{self, Settings};
use stsvend::startup::{Application, Dependencies};

pub const CLIENT_ID: &str = "stsvend-local";
pub const CLIENT_SECRET: &str = "stsvend-test-secret";
/// 64 bytes of 0x2a, base64: a fixed key is fine for tests, never for deployments.
pub const COOKIE_KEY_B64: &str =
    "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==";
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/stsvend-read";
/// The second archive's role: another account, with the external id its trust policy asks for.
pub const SECOND_ROLE_ARN: &str = "arn:aws:iam::210987654321:role/stsvend-read";
pub const SECOND_EXTERNAL_ID: &str = "stsvend-local";

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-logs");
    std::fs::create_dir_all(&dir).expect("create log dir");
    dir
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// A component process; killed when dropped. Components also watch this test process and
/// exit when it is gone, so shared ones (never dropped) do not outlive the run.
pub struct Component {
    child: Child,
    pub log: PathBuf,
}

impl Component {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` (STOP, CONT, KILL...) to the component.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `cmd`, copy its output to a log file, and wait until a line contains `ready_marker`.
/// Start a component, trying twice: a test component that fails to come up once (a port
/// grabbed in between, a slow machine) should not fail the whole run. The first failure is
/// printed, never hidden.
fn start(name: &str, make: impl Fn() -> Command, ready_marker: &'static str) -> Component {
    match try_start(name, make(), ready_marker) {
        Ok(c) => c,
        Err(first) => {
            eprintln!("{name} failed to start, retrying once: {first}");
            try_start(name, make(), ready_marker).unwrap_or_else(|e| panic!("{e}"))
        }
    }
}

/// Start a component on a port chosen here, trying up to three different ports: a port found
/// free can be taken by another process before the component binds it, and the answer to that
/// is a new port, not the same one again. Returns the component and its port.
fn start_anywhere(
    name: &str,
    make: impl Fn(u16) -> Command,
    ready_marker: &'static str,
) -> (Component, u16) {
    let mut failures = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        match try_start(name, make(port), ready_marker) {
            Ok(c) => {
                for f in &failures {
                    eprintln!("{name} failed to start on another port first: {f}");
                }
                return (c, port);
            }
            Err(e) => failures.push(e),
        }
    }
    panic!("{name} did not start on three ports: {failures:#?}")
}

fn try_start(
    name: &str,
    mut cmd: Command,
    ready_marker: &'static str,
) -> Result<Component, String> {
    let log = log_dir().join(format!("{name}-{}.log", free_port()));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}; run deploy/local/setup.sh first"));
    let (tx, rx) = mpsc::channel();
    let file = std::sync::Arc::new(Mutex::new(
        std::fs::File::create(&log).expect("create component log"),
    ));
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    for (stream, tx) in [
        (Box::new(stdout) as Box<dyn std::io::Read + Send>, Some(tx)),
        (Box::new(stderr), None),
    ] {
        let file = file.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{line}");
                }
                if line.contains(ready_marker) {
                    if let Some(tx) = &tx {
                        let _ = tx.send(());
                    }
                }
            }
        });
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            std::thread::sleep(Duration::from_millis(200)); // let the log threads finish
            return Err(format!(
                "{name} exited ({status}) before it was ready:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{name} did not become ready within 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
    }
    Ok(Component { child, log })
}

/// The demo IdP (deploy/local/idp/server.mjs) on `port` (a port chosen in advance: for an
/// IdP that comes up after stsvend).
pub fn start_idp(port: u16) -> Component {
    start("idp", || idp_command(port), "\"msg\":\"listening\"")
}

/// The demo IdP on a port of its own: the component and its port.
pub fn start_idp_anywhere() -> (Component, u16) {
    start_anywhere("idp", idp_command, "\"msg\":\"listening\"")
}

fn idp_command(port: u16) -> Command {
    let dir = repo_root().join("deploy/local/idp");
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "the IdP's npm packages are missing: run deploy/local/setup.sh (tests/run.sh does)"
    );
    {
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("server.mjs"))
            .env("IDP_PORT", port.to_string())
            .env("IDP_CLIENT_ID", CLIENT_ID)
            .env("IDP_CLIENT_SECRET", CLIENT_SECRET)
            .env("IDP_PARENT_PID", std::process::id().to_string())
            .env("IDP_TEST_MINT", "1")
            // The default loopback callbacks, plus one under a path prefix (a deployment
            // behind a proxy that serves it at /archive).
            .env(
                "IDP_REDIRECT_URIS",
                "http://127.0.0.1/login,http://localhost/login,http://127.0.0.1/archive/login",
            )
            .env_remove("IDP_JWKS_FILE");
        cmd
    }
}

/// moto in server mode, seeded with the demo buckets and role (deploy/local/moto_stack.py).
pub fn start_moto(port: u16) -> Component {
    start_moto_with(port, &[])
}

/// moto with extra environment, e.g. its request recorder (`MOTO_ENABLE_RECORDING`).
pub fn start_moto_with(port: u16, env: &[(&str, &std::ffi::OsStr)]) -> Component {
    start("moto", || moto_command(port, env), "\"event\": \"ready\"")
}

/// moto on a port of its own, with extra environment: the component and its port.
pub fn start_moto_anywhere(env: &[(&str, &std::ffi::OsStr)]) -> (Component, u16) {
    start_anywhere(
        "moto",
        |port| moto_command(port, env),
        "\"event\": \"ready\"",
    )
}

fn moto_command(port: u16, env: &[(&str, &std::ffi::OsStr)]) -> Command {
    let python = repo_root().join("deploy/local/.venv/bin/python");
    assert!(
        python.exists(),
        "the moto venv is missing: run deploy/local/setup.sh (tests/run.sh does)"
    );
    {
        let mut cmd = Command::new(&python);
        cmd.arg(repo_root().join("deploy/local/moto_stack.py"))
            .arg("--port")
            .arg(port.to_string())
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .envs(env.iter().copied());
        cmd
    }
}

/// redis-server from Debian on loopback, nothing persisted (fleet mode tests), on `port` (a
/// restart on the port the replicas know).
pub fn start_redis(port: u16) -> Component {
    start(
        "redis",
        || redis_command(port),
        "Ready to accept connections",
    )
}

/// redis-server on a port of its own: the component and its port.
pub fn start_redis_anywhere() -> (Component, u16) {
    start_anywhere("redis", redis_command, "Ready to accept connections")
}

fn redis_command(port: u16) -> Command {
    {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--protected-mode", "yes"]);
        cmd
    }
}

/// A moto of its own that records every request it gets (moto's request recorder) into a
/// file in `dir`: its endpoint and the recording's path.
pub fn start_recording_moto(dir: &Path) -> (Component, String, PathBuf) {
    let recording = dir.join("moto-recording.jsonl");
    let (moto, port) = start_moto_anywhere(&[
        ("MOTO_ENABLE_RECORDING", std::ffi::OsStr::new("1")),
        ("MOTO_RECORDER_FILEPATH", recording.as_os_str()),
    ]);
    (moto, format!("http://127.0.0.1:{port}"), recording)
}

/// The AssumeRole form bodies moto's recorder saw, decoded into (name, value) pairs. A
/// recording that does not exist fails the test: "no call" must mean moto saw none, not that
/// nothing was recorded.
pub fn recorded_assume_roles(recording: &std::path::Path) -> Vec<Vec<(String, String)>> {
    let text = std::fs::read_to_string(recording)
        .unwrap_or_else(|e| panic!("moto's recording {}: {e}", recording.display()));
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|entry| {
            let body = entry["body"].as_str()?;
            if entry["body_encoded"] == true {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(body).ok()
            } else {
                Some(body.as_bytes().to_vec())
            }
        })
        .map(|body| {
            url::form_urlencoded::parse(&body)
                .into_owned()
                .collect::<Vec<_>>()
        })
        .filter(|form| form.iter().any(|(k, v)| k == "Action" && v == "AssumeRole"))
        .collect()
}

/// The AssumeRole calls moto recorded for `user` (their session names start `<user>@`).
pub fn recorded_assume_roles_of(
    recording: &std::path::Path,
    user: &str,
) -> Vec<Vec<(String, String)>> {
    recorded_assume_roles(recording)
        .into_iter()
        .filter(|form| {
            form.iter()
                .any(|(k, v)| k == "RoleSessionName" && v.starts_with(&format!("{user}@")))
        })
        .collect()
}

/// 32 bytes, base64: the fleet's shared encryption key in tests.
pub const FLEET_KEY: &str = "c3RzdmVuZC1mbGVldC10ZXN0LWtleS0zMi1ieXRlcyE=";

/// Fleet mode against the redis-server on `redis_port`.
pub fn in_fleet(redis_port: u16) -> impl Fn(Figment) -> Figment + Clone + Send + 'static {
    move |f| {
        f.merge(Serialized::default(
            "cluster.redis_url",
            format!("redis://127.0.0.1:{redis_port}"),
        ))
        .merge(Serialized::default("cluster.encryption_key", FLEET_KEY))
    }
}

/// The components shared by every test of this binary, started on first use.
pub struct Components {
    pub issuer: String,
    pub moto_endpoint: String,
    _idp: Component,
    _moto: Component,
}

pub fn components() -> &'static Components {
    static COMPONENTS: OnceLock<Components> = OnceLock::new();
    COMPONENTS.get_or_init(|| {
        // Start both at once: each takes around a second.
        let idp = std::thread::spawn(start_idp_anywhere);
        let (moto, moto_port) = start_moto_anywhere(&[]);
        let (idp, idp_port) = idp.join().expect("IdP start thread");
        Components {
            issuer: format!("http://127.0.0.1:{idp_port}"),
            moto_endpoint: format!("http://127.0.0.1:{moto_port}"),
            _idp: idp,
            _moto: moto,
        }
    })
}

/// The configuration every test app starts from: the shared components and demo buckets.
pub fn base_toml(port: u16, issuer: &str, sts_endpoint: &str) -> String {
    format!(
        r#"
[server]
bind = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
app_name = "stsvend-test"
workers = 1
shutdown_timeout_seconds = 1
log_format = "json"

[oidc]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
discovery_retry_max_seconds = 1
http_timeout_seconds = 5

[session]
secure = false

[sts]
role_arn = "{ROLE_ARN}"
region = "us-west-2"
endpoint_url = "{sts_endpoint}"

[[buckets]]
name = "demo-inregion"
region = "us-west-2"
groups = ["science"]

[[buckets]]
name = "demo-restricted"
region = "us-west-2"
groups = ["restricted"]

[[buckets]]
name = "demo-elsewhere"
region = "us-east-1"
groups = ["science"]

[[archives]]
name = "second"
sts = {{ role_arn = "{SECOND_ROLE_ARN}", external_id = "{SECOND_EXTERNAL_ID}" }}

[[archives.buckets]]
name = "demo-second"
region = "us-west-2"
groups = ["science"]

[[archives.buckets]]
name = "demo-second-rp"
region = "us-west-2"
groups = ["science"]
requester_pays = true

[[platforms]]
name = "demo"
client_id = "demo-platform"
"#
    )
}

/// Defaults + the base test configuration + secrets as the environment would give them.
/// A revocations file of its own for each app (a test that restarts an app names one).
pub fn fresh_revocations_file() -> String {
    std::env::temp_dir()
        .join(format!("stsvend-tests-{}", std::process::id()))
        .join(format!(
            "revocations-{}.json",
            uuid::Uuid::new_v4().simple()
        ))
        .display()
        .to_string()
}

pub fn test_figment(port: u16, issuer: &str, sts_endpoint: &str) -> Figment {
    Figment::from(Toml::string(config::DEFAULT_TOML))
        .merge(Toml::string(&base_toml(port, issuer, sts_endpoint)))
        .merge(Serialized::default(
            "revocations.file",
            fresh_revocations_file(),
        ))
        .merge(Serialized::default("oidc.client_secret", CLIENT_SECRET))
        .merge(Serialized::default("session.key", COOKIE_KEY_B64))
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub issuer: String,
    /// The internal listener (`server.internal_bind`), when configured.
    pub internal: Option<String>,
    /// Follows no redirects and keeps no cookies: tests look at each hop.
    pub http: reqwest::Client,
    /// The app's clock: `clock.advance(..)` moves time forward for expiry tests.
    pub clock: std::sync::Arc<ManualClock>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request to stsvend")
    }

    /// GET `path` with `Authorization: Bearer <token>`.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request to stsvend")
    }

    /// Poll /readyz until it answers 200 (or give up after `timeout`).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.get("/readyz").await.status() == 200 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// `spawn_app()`, once `/readyz` answers 200.
pub async fn spawn_ready_app() -> TestApp {
    let app = spawn_app().await;
    assert!(app.wait_ready(Duration::from_secs(15)).await, "never ready");
    app
}

/// A user id no other test uses, with `groups`, and a token for it signed by the IdP.
pub async fn unique_user(
    app: &TestApp,
    prefix: &str,
    groups: serde_json::Value,
) -> (String, String) {
    let user = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    let token = mint(
        &app.issuer,
        serde_json::json!({"sub": user, "groups": groups}),
        serde_json::json!({}),
    )
    .await;
    (user, token)
}

/// stsvend against the shared components, configured by the test config.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|f| f).await
}

/// Like `spawn_app`, with a hook to layer test-specific settings over the base config.
pub async fn spawn_app_with(customize: impl FnOnce(Figment) -> Figment) -> TestApp {
    let c = components();
    let issuer = c.issuer.clone();
    let moto = c.moto_endpoint.clone();
    spawn_app_against(&issuer, &moto, customize).await
}

pub async fn spawn_app_against(
    issuer: &str,
    sts_endpoint: &str,
    customize: impl FnOnce(Figment) -> Figment,
) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let port = listener.local_addr().expect("local addr").port();
    let figment = customize(test_figment(port, issuer, sts_endpoint));
    let (_, settings) = config::from_figment(figment).expect("test configuration is valid");
    start_app(settings, listener).await
}

async fn start_app(settings: Settings, listener: TcpListener) -> TestApp {
    init_log_capture();
    let clock = std::sync::Arc::new(ManualClock::default());
    let issuer = settings.oidc.issuer.clone();
    // An internal listener, when configured, on a free port too.
    let internal_listener = settings
        .server
        .internal_bind
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"));
    let deps = Dependencies {
        clock: Some(clock.clone()),
        sts: None,
        internal_listener,
        // moto accepts any credentials; these stand for the service's own.
        aws_credentials: Some(aws_sdk_sts::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        )),
    };
    let app = Application::build_with(settings, listener, deps)
        .await
        .expect("application builds");
    let port = app.port();
    let internal = app.internal_port().map(|p| format!("http://127.0.0.1:{p}"));
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        issuer,
        internal,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client"),
        clock,
    }
}

// ---------------------------------------------------------------------------------------------
// Captured logs: every stsvend log line of this test binary, at debug level, so tests can
// assert that no secret ever reaches them.
// ---------------------------------------------------------------------------------------------

static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct CaptureWriter;

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut captured) = CAPTURED.lock() {
            captured.extend_from_slice(buf);
        }
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_log_capture() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        // The service's own JSON line format, as in production.
        let _ = tracing_subscriber::fmt()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(stsvend::telemetry::format::JsonLines)
            // Everything at debug, except the test clients' own cookie jar (stsvend keeps
            // no client-side cookies; the jar logs what the *test* received).
            .with_env_filter("debug,cookie_store=off")
            .with_writer(|| CaptureWriter)
            .try_init();
        // The lines the service writes straight to its sink, as `telemetry::init` does.
        stsvend::telemetry::line::install(Box::new(|line, _audit| {
            let _ = CaptureWriter.write_all(line);
        }));
    });
}

pub fn captured_logs() -> String {
    String::from_utf8_lossy(&CAPTURED.lock().expect("log buffer")).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Talking to the IdP like users and scripts do.
// ---------------------------------------------------------------------------------------------

pub const BROWSER_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156 Safari/537.36";
pub const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
pub const SCRIPT_UA: &str = "python-requests/2.32.3";

/// A client with a cookie jar that follows no redirects, so tests can inspect every hop.
pub fn jar_client(user_agent: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
        .build()
        .expect("http client")
}

/// A bearer token the way Earthdata users get one: the IdP's token API with Basic auth.
pub async fn idp_token(issuer: &str, user: &str, password: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!("{issuer}/api/users/find_or_create_token"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("token API");
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.expect("token JSON");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// A token signed by the IdP's real key with `claims`/`header` overriding the defaults
/// (null removes a claim). Test-only IdP endpoint.
pub async fn mint(issuer: &str, claims: serde_json::Value, header: serde_json::Value) -> String {
    let res = reqwest::Client::new()
        .post(format!("{issuer}/test/mint"))
        .json(&serde_json::json!({"claims": claims, "header": header}))
        .send()
        .await
        .expect("mint");
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.expect("mint JSON");
    body["token"].as_str().expect("token").to_owned()
}

/// One hop of a redirect chain.
#[derive(Debug)]
pub struct Hop {
    pub url: String,
    pub status: u16,
    pub location: Option<String>,
}

/// Follow redirects like `curl -n -L -c jar -b jar` (or Python `requests` with a .netrc):
/// cookies kept, Basic credentials sent to the IdP's host:port only. Returns every hop and
/// the final response.
pub async fn follow(
    client: &reqwest::Client,
    start: &str,
    idp_origin: &str,
    basic: Option<(&str, &str)>,
) -> (Vec<Hop>, reqwest::Response) {
    let mut url = reqwest::Url::parse(start).expect("start URL");
    let mut hops = Vec::new();
    for _ in 0..15 {
        let mut req = client.get(url.clone());
        if let Some((u, p)) = basic {
            if url.as_str().starts_with(idp_origin) {
                req = req.basic_auth(u, Some(p));
            }
        }
        let res = req.send().await.expect("hop");
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        hops.push(Hop {
            url: url.to_string(),
            status: res.status().as_u16(),
            location: location.clone(),
        });
        match (res.status().is_redirection(), location) {
            (true, Some(loc)) => url = url.join(&loc).expect("location URL"),
            _ => return (hops, res),
        }
    }
    panic!("too many redirects: {hops:#?}");
}

/// Log in through the IdP's HTML form, as a person in a browser would, starting at `path`.
/// Returns the final response (after the callback's redirect back to `path`).
pub async fn browser_login(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    user: &str,
    password: &str,
) -> (Vec<Hop>, reqwest::Response) {
    let (mut hops, res) = follow(client, &app.url(path), &app.issuer, None).await;
    assert_eq!(res.status(), 200, "expected the IdP login form: {hops:#?}");
    let form_url = hops.last().expect("hops").url.clone();
    assert!(form_url.contains("/interaction/"), "{form_url}");
    let html = res.text().await.expect("form");
    assert!(html.contains("name=\"password\""), "{html}");
    let res = client
        .post(format!("{form_url}/login"))
        .header("accept", BROWSER_ACCEPT)
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .expect("submit login form");
    assert_eq!(res.status(), 303, "login form rejected");
    let next = res.headers()["location"].to_str().expect("location");
    let next = reqwest::Url::parse(&form_url)
        .expect("url")
        .join(next)
        .expect("join");
    let (more, res) = follow(client, next.as_str(), &app.issuer, None).await;
    hops.extend(more);
    (hops, res)
}

// ---------------------------------------------------------------------------------------------
// A reverse proxy that serves stsvend under a path prefix and strips it, as an ingress with a
// rewrite rule does.
// ---------------------------------------------------------------------------------------------

/// Serve `http://127.0.0.1:<port><prefix>/...` from `upstream` with the prefix stripped. The
/// listener is bound by the caller (so the app's `public_url` can name its port).
pub fn start_prefix_proxy(listener: TcpListener, prefix: &'static str, upstream: String) {
    start_proxy(listener, prefix, upstream, None);
}

/// Faults a proxy injects: while `throttle` is on, every request is answered as STS answers
/// when its rate is exceeded (HTTP 400, `Throttling`), and not forwarded. `hits` records when
/// each request arrived.
/// `refuse`, when set, answers every request as STS answers a refusal: (HTTP status, error
/// code, message), with STS's XML error body.
#[derive(Default)]
pub struct Faults {
    pub throttle: std::sync::atomic::AtomicBool,
    pub refuse: Mutex<Option<(u16, &'static str, &'static str)>>,
    /// Every forwarded request waits this long first (a slow STS).
    pub delay: Mutex<Duration>,
    pub hits: Mutex<Vec<std::time::Instant>>,
}

/// A proxy in front of the shared moto whose faults the test sets: the faults and the
/// endpoint to give stsvend as STS.
pub fn faulty_sts() -> (std::sync::Arc<Faults>, String) {
    let faults = std::sync::Arc::new(Faults::default());
    let proxy = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let url = format!(
        "http://127.0.0.1:{}",
        proxy.local_addr().expect("local addr").port()
    );
    start_proxy(
        proxy,
        "",
        components().moto_endpoint.clone(),
        Some(faults.clone()),
    );
    (faults, url)
}

pub fn start_proxy(
    listener: TcpListener,
    prefix: &'static str,
    upstream: String,
    faults: Option<std::sync::Arc<Faults>>,
) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("proxy client");
    let server = HttpServer::new(move || {
        let client = client.clone();
        let upstream = upstream.clone();
        let faults = faults.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let client = client.clone();
            let upstream = upstream.clone();
            let faults = faults.clone();
            async move {
                if let Some(f) = &faults {
                    f.hits.lock().unwrap().push(std::time::Instant::now());
                    let refusal = *f.refuse.lock().unwrap();
                    if let Some((status, code, message)) = refusal {
                        return HttpResponse::build(
                            actix_web::http::StatusCode::from_u16(status).unwrap(),
                        )
                        .content_type("text/xml")
                        .body(format!(
                            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>00000000-0000-0000-0000-000000000001</RequestId></ErrorResponse>"
                        ));
                    }
                    if f.throttle.load(std::sync::atomic::Ordering::SeqCst) {
                        return HttpResponse::BadRequest()
                            .content_type("text/xml")
                            .body(
                                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>",
                            );
                    }
                }
                let delay = faults.as_ref().map(|f| *f.delay.lock().unwrap());
                if let Some(delay) = delay.filter(|d| !d.is_zero()) {
                    tokio::time::sleep(delay).await;
                }
                let Some(rest) = req.uri().path().strip_prefix(prefix) else {
                    return HttpResponse::NotFound().finish();
                };
                let query = req
                    .uri()
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                let mut out = client.request(
                    reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap(),
                    format!("{upstream}{rest}{query}"),
                );
                for (name, value) in req.headers() {
                    if name != "host" && name != "content-length" {
                        out = out.header(name.as_str(), value.as_bytes());
                    }
                }
                let res = out.body(body.to_vec()).send().await.expect("upstream");
                let mut back = HttpResponse::build(
                    actix_web::http::StatusCode::from_u16(res.status().as_u16()).unwrap(),
                );
                for (name, value) in res.headers() {
                    if name != "content-length" && name != "transfer-encoding" {
                        back.append_header((name.as_str(), value.as_bytes()));
                    }
                }
                back.body(res.bytes().await.unwrap_or_default())
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .expect("proxy listens")
    .run();
    tokio::spawn(server);
}

/// `stsvend serve` as its own process, bound to port 0; killed when dropped.
pub struct Served {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `stsvend serve` with `toml` (whose `server.bind` should use port 0) and `env` on
/// top of the test secrets; returns once its "listening" line names the port.
pub async fn serve_process(toml: &str, env: &[(&str, &str)]) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("stsvend.toml");
    std::fs::write(&config, toml).expect("write config");
    let log = dir.path().join("stsvend.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_stsvend"));
    command
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(repo_root())
        .env("STSVEND_OIDC__CLIENT_SECRET", CLIENT_SECRET)
        .env("STSVEND_SESSION__KEY", COOKIE_KEY_B64)
        .env("STSVEND_SERVER__LOG_FORMAT", "json")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().expect("spawn stsvend serve");
    let mut served = Served {
        child,
        port: 0,
        log,
        _dir: dir,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    served.port = loop {
        let text = served.log_text();
        let port = text
            .lines()
            .filter(|l| l.contains("stsvend listening"))
            .find_map(|l| {
                l.split("\"port\":")
                    .nth(1)?
                    .split([',', '}'])
                    .next()?
                    .parse::<u16>()
                    .ok()
            });
        if let Some(port) = port {
            break port;
        }
        if let Ok(Some(exit)) = served.child.try_wait() {
            panic!("stsvend serve exited ({exit}): {text}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never listened: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    served
}

/// The AssumeRole calls the shared moto has answered for `user` (session names `<user>@...`).
pub async fn assume_role_calls(user: &str) -> usize {
    let data: serde_json::Value =
        reqwest::get(format!("{}/moto-api/data.json", components().moto_endpoint))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    data["sts"]["AssumedRole"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| {
                    r["session_name"]
                        .as_str()
                        .is_some_and(|s| s.starts_with(&format!("{user}@")))
                })
                .count()
        })
        .unwrap_or(0)
}

/// A response's status and JSON body (a body that is not JSON fails the test, showing it).
pub async fn json_of(res: reqwest::Response) -> (u16, serde_json::Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}
