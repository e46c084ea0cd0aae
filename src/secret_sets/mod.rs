//! The secret set controller: keeps each `PipecatSecretSet`'s remote set equal to its
//! Kubernetes Secret. The same layout as the agent controller ([`crate::controller`]), whose
//! credentials resolution, condition helpers and Pipecat Cloud client it shares:
//! [`apply`] (credentials, the Secret -> [`desired`] values and their [`digest`], the remote
//! set, [`plan`] (pure), the call) -> [`report`] (pure `next_status`, events) in
//! [`reconcile`]; [`cleanup`] on deletion, held while agents use the set, with the
//! [`finalizer`]; [`objects`] is all the per-object memory; [`watch`] turns changes of the
//! resources, their Secrets and the agents into passes.

pub mod apply;
pub mod cleanup;
pub mod context;
pub mod credentials;
pub mod desired;
pub mod digest;
mod error;
pub mod finalizer;
pub mod objects;
pub mod pass;
pub mod plan;
pub mod reconcile;
pub mod report;
pub mod watch;

pub use context::Context;
pub use error::Error;
pub use watch::run;
