//! stsvend: temporary, read-only, in-region S3 credentials for users who signed in with
//! OpenID Connect.

pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod fleet;
pub mod http;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod negotiate;
pub mod revoke;
pub mod startup;
pub mod telemetry;
pub mod tls;
pub mod vend;
