//! stsvend's integration tests: one binary, real components (see helpers.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod archives;
mod bearer;
mod clients;
mod config_errors;
mod configure;
mod credentials;
mod drills;
mod fairness;
mod fleet;
mod health;
mod helpers;
mod lifecycle;
mod links;
mod login;
mod narrowing;
mod placement;
mod platforms;
mod secrets_in_logs;
mod tickets;
mod tls;
