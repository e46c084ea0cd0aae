//! Shared helpers for the integration tests. Each file under `tests/` is its own test binary
//! and includes this directory with `mod support;`, so an item unused by one binary is used by
//! another.
#![allow(dead_code)]

pub mod controlplane;
pub mod helm;
pub mod operator;
pub mod reliability;
