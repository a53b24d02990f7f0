//! Vending credentials: the session policy, STS behind a trait, session names, the per-user
//! cache, and the output formats clients read.

pub mod cache;
pub mod format;
pub mod guard;
pub mod policy;
pub mod scope;
pub mod session_name;
pub mod shared;
pub mod sts;
