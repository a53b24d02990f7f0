//! stsvend's integration tests: one binary, real components (see helpers.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod config_errors;
mod health;
mod helpers;
mod lifecycle;
