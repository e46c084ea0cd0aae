//! Shared helpers for the integration tests. Each test binary includes this directory: the
//! grouped ones (`tests/e2e/`, `tests/reliability/`, `tests/packaging/`, each a `main.rs` with one
//! module per behaviour) with `#[path = "../support/mod.rs"] mod support;`, the single-file ones
//! (`tests/upgrade.rs`, `tests/reliability_apiserver.rs`) with `mod support;`. An item unused by
//! one binary is used by another.
#![allow(dead_code)]

pub mod controlplane;
pub mod helm;
pub mod operator;
pub mod reliability;
