//! The `serve` process: start-up failures and shutdown.

use std::process::Command;

use crate::config_errors::stsvend;
use crate::helpers::repo_root;

#[test]
fn serve_exits_1_when_the_port_is_in_use() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = stsvend(
        &["serve", "--config", "config/local.toml"],
        &[("STSVEND_SERVER__BIND", &addr)],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot listen on") && stderr.contains(&addr),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let port = crate::helpers::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stsvend"));
    cmd.args(["serve", "--config", "config/local.toml"])
        .current_dir(repo_root())
        .env("STSVEND_SERVER__BIND", &addr)
        .env("STSVEND_SERVER__SHUTDOWN_TIMEOUT_SECONDS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // The socket is bound before the server installs its signal handlers: wait until it
    // answers HTTP, i.e. until it is really serving.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !answers_healthz(&addr) {
        assert!(
            std::time::Instant::now() < deadline,
            "stsvend never served /healthz"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit}");
}

fn answers_healthz(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200")
}
