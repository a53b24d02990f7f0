//! stsvend: temporary, read-only, in-region S3 credentials for users who signed in with
//! OpenID Connect. The service is the `server` feature (on by default); without it only the
//! user's helper (`client`) and what it shares with the service (`common`) are built.

#[cfg(feature = "server")]
pub mod archive;
#[cfg(feature = "server")]
pub mod auth;
pub mod client;
#[cfg(feature = "server")]
pub mod clock;
pub mod common;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod fleet;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod json;
#[cfg(feature = "server")]
pub mod limits;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod negotiate;
#[cfg(feature = "server")]
pub mod network;
#[cfg(feature = "server")]
pub mod replicated;
#[cfg(feature = "server")]
pub mod revoke;
#[cfg(feature = "server")]
pub mod startup;
#[cfg(feature = "server")]
pub mod telemetry;
#[cfg(feature = "server")]
pub mod tickets;
#[cfg(feature = "server")]
pub mod tls;
#[cfg(feature = "server")]
pub mod vend;
