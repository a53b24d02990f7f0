//! The binary's commands: the user's helper always, the service's with the `server` feature.

pub mod helper;
#[cfg(feature = "server")]
pub mod server;

pub fn fail(error: impl std::fmt::Display) -> std::process::ExitCode {
    eprintln!("stsvend: {error}");
    std::process::ExitCode::FAILURE
}
