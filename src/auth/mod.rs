//! Who is asking: OIDC discovery and keys (login, sessions and bearer tokens build on these).

pub mod discovery;
