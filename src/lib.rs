//! pipecat-operator: run Pipecat Cloud voice agents as Kubernetes resources.
//!
//! The data flow:
//! 1. [`crd`]: a user applies a `PipecatAgent` (spec = the Pipecat Cloud agent body) or a
//!    `PipecatSecretSet` (a Pipecat Cloud secret set kept equal to a Kubernetes Secret).
//! 2. [`controllers`]: one controller per kind, over shared watches: [`agents`] and
//!    [`secret_sets`], each one straight pass (observe, plan purely, write, report status),
//!    over what every kind uses, the [`runtime`].
//! 3. [`cloud`]: the typed Pipecat Cloud HTTP client (no Kubernetes inside).
//!
//! The tests, the demo and the benchmark run the operator against a local Pipecat Cloud
//! emulator, a crate of its own: `pipecat-cloud-emulator` (`emulator/`).

pub mod agents;
pub mod cloud;
pub mod controllers;
pub mod crd;
pub mod duration;
pub mod export;
pub mod flags;
pub mod jitter;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod runtime;
pub mod secret_sets;
pub mod server;
pub mod telemetry;
pub mod text;
