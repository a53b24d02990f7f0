//! Vending credentials: the STS client (policy building, caching and formats build on it).

pub mod sts;
