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
use stsvend::config::{self, Settings};
use stsvend::startup::Application;

pub const CLIENT_ID: &str = "stsvend-local";
pub const CLIENT_SECRET: &str = "stsvend-test-secret";
/// 64 bytes of 0x2a, base64: a fixed key is fine for tests, never for deployments.
pub const COOKIE_KEY_B64: &str =
    "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==";
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/stsvend-read";

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

impl Drop for Component {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `cmd`, copy its output to a log file, and wait until a line contains `ready_marker`.
fn start(name: &str, mut cmd: Command, ready_marker: &'static str) -> Component {
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
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        panic!(
            "{name} did not become ready within 60 s; log: {}",
            log.display()
        );
    }
    Component { child, log }
}

/// The demo IdP (deploy/local/idp/server.mjs) on `port`.
pub fn start_idp(port: u16) -> Component {
    let dir = repo_root().join("deploy/local/idp");
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "the IdP's npm packages are missing: run deploy/local/setup.sh (tests/run.sh does)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("server.mjs"))
        .env("IDP_PORT", port.to_string())
        .env("IDP_CLIENT_ID", CLIENT_ID)
        .env("IDP_CLIENT_SECRET", CLIENT_SECRET)
        .env("IDP_PARENT_PID", std::process::id().to_string())
        .env_remove("IDP_JWKS_FILE");
    start("idp", cmd, "\"msg\":\"listening\"")
}

/// moto in server mode, seeded with the demo buckets and role (deploy/local/moto_stack.py).
pub fn start_moto(port: u16) -> Component {
    let python = repo_root().join("deploy/local/.venv/bin/python");
    assert!(
        python.exists(),
        "the moto venv is missing: run deploy/local/setup.sh (tests/run.sh does)"
    );
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("deploy/local/moto_stack.py"))
        .arg("--port")
        .arg(port.to_string())
        .arg("--parent-pid")
        .arg(std::process::id().to_string());
    start("moto", cmd, "\"event\": \"ready\"")
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
        let idp_port = free_port();
        let moto_port = free_port();
        // Start both at once: each takes around a second.
        let idp = std::thread::spawn(move || start_idp(idp_port));
        let moto = start_moto(moto_port);
        let idp = idp.join().expect("IdP start thread");
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
"#
    )
}

/// Defaults + the base test configuration + secrets as the environment would give them.
pub fn test_figment(port: u16, issuer: &str, sts_endpoint: &str) -> Figment {
    Figment::from(Toml::string(config::DEFAULT_TOML))
        .merge(Toml::string(&base_toml(port, issuer, sts_endpoint)))
        .merge(Serialized::default("oidc.client_secret", CLIENT_SECRET))
        .merge(Serialized::default("session.key", COOKIE_KEY_B64))
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// Follows no redirects and keeps no cookies: tests look at each hop.
    pub http: reqwest::Client,
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
    let app = Application::build_with_listener(settings, listener)
        .await
        .expect("application builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client"),
    }
}
