//! pipecat-operator: run Pipecat Cloud voice agents as Kubernetes resources.
//!
//! The data flow, one module per step:
//! 1. [`crd`]: a user applies a `PipecatAgent` (spec = the Pipecat Cloud agent body).
//! 2. [`controller`]: the reconciler resolves the API key Secret, observes the remote agent,
//!    plans (a pure function) create / update / nothing, applies it, and reports status.
//! 3. [`cloud`]: the typed Pipecat Cloud HTTP client (no Kubernetes inside).
//!
//! The tests, the demo and the benchmark run the operator against a local Pipecat Cloud
//! emulator, a crate of its own: `pipecat-cloud-emulator` (`emulator/`).

pub mod cloud;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod export;
pub mod flags;
pub mod jitter;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod secret_sets;
pub mod server;
pub mod telemetry;
pub mod text;
