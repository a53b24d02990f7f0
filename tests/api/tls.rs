//! Native TLS, the internal listener, and certificate rotation under load.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use figment::providers::Serialized;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::config_errors::stsvend;
use crate::helpers::spawn_app_with;

/// A test CA and leaf certificates for 127.0.0.1 it signs.
struct TestPki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
    not_after: i64,
}

impl TestPki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "stsvend test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { ca }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn leaf(&self, year: i32) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let not_after = params.not_after.unix_timestamp();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            not_after,
        }
    }
}

/// The test configuration serving https with these files, its public URL https and its
/// cookies Secure.
fn with_tls(
    f: figment::Figment,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
) -> figment::Figment {
    let public = f
        .find_value("server.bind")
        .ok()
        .and_then(|v| v.into_string())
        .unwrap();
    f.merge(Serialized::default("server.tls.cert_file", cert))
        .merge(Serialized::default("server.tls.key_file", key))
        .merge(Serialized::default(
            "server.public_url",
            format!("https://{public}"),
        ))
        .merge(Serialized::default("session.secure", true))
}

/// stsvend serving https with `leaf` from files in its own folder, metrics on an internal
/// listener, and ready there.
struct HttpsApp {
    app: crate::helpers::TestApp,
    internal: String,
    cert_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl HttpsApp {
    async fn spawn(
        leaf: &Leaf,
        customize: impl FnOnce(figment::Figment) -> figment::Figment + Send + 'static,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_file, &leaf.cert_pem).unwrap();
        std::fs::write(&key_file, &leaf.key_pem).unwrap();
        let (cert, key) = (cert_file.clone(), key_file.clone());
        let app = spawn_app_with(move |f| {
            customize(with_tls(f, cert, key))
                .merge(Serialized::default("server.internal_bind", "127.0.0.1:0"))
                .merge(Serialized::default("server.metrics", true))
        })
        .await;
        let internal = app.internal.clone().expect("an internal listener");
        let plain = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while plain
            .get(format!("{internal}/readyz"))
            .send()
            .await
            .map_or(true, |r| r.status() != 200)
        {
            assert!(Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            app,
            internal,
            cert_file,
            key_file,
            _dir: dir,
        }
    }
}

/// Replace a file the way Kubernetes and cert-manager do: write aside, then rename over.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .tls_info(true)
        // A new connection (and handshake) for every request: each sees the served certificate.
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

fn peer_certificate(res: &reqwest::Response) -> Vec<u8> {
    res.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

#[tokio::test]
async fn https_with_http2_internal_listener_and_certificate_rotation_under_load() {
    let pki = TestPki::new();
    let first = pki.leaf(2031);
    let https = HttpsApp::spawn(&first, |f| {
        f.merge(Serialized::default("server.tls.reload_interval_seconds", 1))
    })
    .await;
    let (app, internal, cert_file, key_file) = (
        &https.app,
        &https.internal,
        &https.cert_file,
        &https.key_file,
    );
    let plain = reqwest::Client::new();
    let base = format!("https://127.0.0.1:{}", app.port);
    let client = https_client(&pki.ca_pem());
    let res = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_2, "h2 by ALPN");
    assert_eq!(peer_certificate(&res), first.der);
    // Served over https: browsers are told to stay on https.
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");

    // Metrics and probes live on the internal listener only.
    assert_eq!(
        client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let metrics = text(&plain, &format!("{internal}/metrics")).await;
    assert!(
        metrics.contains(&format!(
            "stsvend_tls_certificate_expiry_timestamp_seconds {}",
            first.not_after
        )),
        "{metrics}"
    );
    assert_eq!(
        plain
            .get(format!("{internal}/s3credentials"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Load: four clients, a new TLS connection per request, while the files are replaced.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
            let (ok, failed) = (ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match client.get(format!("{base}/healthz")).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = pki.leaf(2032);
    let swapped = Instant::now();
    replace(key_file, &second.key_pem);
    replace(cert_file, &second.cert_pem);
    loop {
        // A fresh client: a resumed TLS 1.3 session would not show the server's certificate.
        let res = https_client(&pki.ca_pem())
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        if peer_certificate(&res) == second.der {
            break;
        }
        assert!(
            swapped.elapsed() < Duration::from_secs(10),
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = swapped.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.await.unwrap();
    }
    eprintln!(
        "tls rotation: new certificate served {took:?} after the swap; {} requests under load, {} failed",
        ok.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst)
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no request dropped");
    assert!(ok.load(Ordering::SeqCst) > 20);
    let metrics = text(&plain, &format!("{internal}/metrics")).await;
    assert!(metrics.contains(&format!(
        "stsvend_tls_certificate_expiry_timestamp_seconds {}",
        second.not_after
    )));
    assert!(metrics.contains("stsvend_tls_certificate_reloads_total 1"));

    // A broken renewal (a key that does not match, then a file that is not PEM): the last good
    // certificate keeps serving and each failure is counted.
    let third = pki.leaf(2033);
    replace(key_file, &first.key_pem);
    replace(cert_file, &third.cert_pem);
    let failures = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("stsvend_tls_certificate_reload_failures_total "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .expect("reload failures metric")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while failures(&text(&plain, &format!("{internal}/metrics")).await) < 1 {
        assert!(
            Instant::now() < deadline,
            "the mismatched key was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replace(cert_file, "not a certificate\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while failures(&text(&plain, &format!("{internal}/metrics")).await) < 2 {
        assert!(
            Instant::now() < deadline,
            "the unreadable certificate was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = https_client(&pki.ca_pem())
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        peer_certificate(&res),
        second.der,
        "the last good certificate"
    );

    // TLS 1.0 and 1.1 are refused, by a client that is willing to speak them.
    for (flag, name) in [
        ("-tls1", "TLS 1.0"),
        ("-tls1_1", "TLS 1.1"),
        ("-tls1_2", "TLS 1.2"),
    ] {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", app.port),
                flag,
            ])
            .args(["-cipher", "DEFAULT@SECLEVEL=0", "-servername", "localhost"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run openssl s_client");
        let talk = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let negotiated = talk.contains("Protocol  :") || talk.contains("Protocol:");
        let cipher_none = talk.contains("Cipher is (NONE)") || talk.contains("Cipher    : 0000");
        if name == "TLS 1.2" {
            assert!(negotiated && !cipher_none, "{name} must work: {talk}");
        } else {
            assert!(
                !out.status.success() || cipher_none,
                "{name} was accepted: {talk}"
            );
        }
    }
}

#[test]
fn missing_or_mismatched_tls_files_stop_startup_with_one_line_naming_the_file() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (pki.leaf(2031), pki.leaf(2031));
    let cert = dir.path().join("a.crt");
    let wrong_key = dir.path().join("b.key");
    std::fs::write(&cert, &a.cert_pem).unwrap();
    std::fs::write(&wrong_key, &b.key_pem).unwrap();
    let missing = dir.path().join("missing.crt");
    for (cert_path, key_path, named) in [
        (&missing, &wrong_key, &missing),
        (&cert, &wrong_key, &wrong_key),
    ] {
        let out = stsvend(
            &["check-config", "--config", "config/local.toml"],
            &[
                (
                    "STSVEND_SERVER__TLS__CERT_FILE",
                    cert_path.to_str().unwrap(),
                ),
                ("STSVEND_SERVER__TLS__KEY_FILE", key_path.to_str().unwrap()),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(named.to_str().unwrap()), "{stderr}");
    }
}

/// The local stack's https: deploy/local/tls.sh makes a CA and a server certificate, stsvend
/// serves them, and Python `requests` (what earthaccess uses) trusts them through
/// REQUESTS_CA_BUNDLE, and refuses the connection without it.
#[tokio::test]
async fn python_requests_gets_credentials_over_https_with_the_local_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let out = std::process::Command::new(crate::helpers::repo_root().join("deploy/local/tls.sh"))
        .arg(&tls)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cert, key) = (tls.join("server.pem"), tls.join("server.key"));
    let app = spawn_app_with(move |f| with_tls(f, cert, key)).await;
    let (_, token) =
        crate::helpers::unique_user(&app, "https", serde_json::json!(["science"])).await;
    let url = format!("https://127.0.0.1:{}/s3credentials", app.port);
    let python = crate::helpers::repo_root().join("deploy/local/.venv/bin/python");
    let script = r#"
import os, sys, time, requests
url, token = sys.argv[1], sys.argv[2]
for _ in range(100):
    try:
        r = requests.get(url, headers={"Authorization": "Bearer " + token}, timeout=10)
        break
    except requests.exceptions.SSLError:
        raise
    except requests.exceptions.ConnectionError:
        time.sleep(0.1)
body = r.json()
print(r.status_code, sorted(body), r.headers.get("Cache-Control"))
"#;
    let run = |ca: Option<std::path::PathBuf>| {
        let mut cmd = tokio::process::Command::new(&python);
        cmd.args(["-c", script, &url, &token])
            .env_remove("REQUESTS_CA_BUNDLE");
        if let Some(ca) = ca {
            cmd.env("REQUESTS_CA_BUNDLE", ca);
        }
        cmd.output()
    };
    let out = run(Some(tls.join("ca.pem"))).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "200 ['accessKeyId', 'expiration', 'secretAccessKey', 'sessionToken'] no-store"
    );
    let untrusted = run(None).await.unwrap();
    assert!(!untrusted.status.success());
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("CERTIFICATE_VERIFY_FAILED"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
}

/// Every metric an alert rule (deploy/observability/alerts.yaml) or a dashboard panel
/// (grafana-dashboard.json) names is exported by a running stsvend: served over TLS, with
/// the internal listener, after a credential request. A renamed metric fails here rather than
/// leaving an alert that can never fire.
#[tokio::test]
async fn every_metric_named_by_an_alert_or_a_dashboard_panel_is_exported() {
    let observability = crate::helpers::repo_root().join("deploy/observability");
    let mut named = std::collections::BTreeSet::new();
    for file in ["alerts.yaml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(observability.join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("stsvend_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            // Histogram series belong to the family without the suffix.
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name)
                .to_owned();
            named.insert(family);
        }
    }
    assert!(named.len() >= 12, "too few metrics found: {named:?}");

    let pki = TestPki::new();
    // In fleet mode, so the shared cache's metrics exist too.
    let (_redis, redis_port) = crate::helpers::start_redis_anywhere();
    let https = HttpsApp::spawn(&pki.leaf(2031), crate::helpers::in_fleet(redis_port)).await;
    let (app, internal) = (&https.app, &https.internal);
    let plain = reqwest::Client::new();
    let (_, token) =
        crate::helpers::unique_user(app, "dashboard", serde_json::json!(["science"])).await;
    let res = https_client(&pki.ca_pem())
        .get(format!("https://127.0.0.1:{}/s3credentials", app.port))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let exported = text(&plain, &format!("{internal}/metrics")).await;
    let missing: Vec<_> = named
        .iter()
        .filter(|m| !exported.contains(&format!("# TYPE {m} ")))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{exported}");
}
