//! The `PipecatSecretSet` kind: keeps each resource's remote secret set equal to its
//! Kubernetes Secret, as one straight pass ([`reconcile`]) over the runtime
//! ([`crate::runtime`]):
//!
//! [`credentials`] (the key, and the in-use mark on its Secret) -> [`observe`] (the Secret's
//! [`desired`] values and their [`digest`], the remote set) -> [`plan`] (pure: create, adopt,
//! wait while pending, put on a new digest or a lost key, delete a key, nothing, or refuse) ->
//! [`intent`] (the one writer before a call: the finalizer, the in-use mark, `status.setName`)
//! -> [`execute`] (the one Pipecat Cloud call) -> [`assess`] (pure: what its answer means) ->
//! [`report`] (the status, computed purely, and the events). A resource being deleted goes to
//! [`cleanup`] instead, held while agents use the set, with the [`finalizer`].
//!
//! Around the pass: [`pass`] holds the types several steps share; [`context`] the shared
//! state; [`objects`] all per-object memory; [`watch`] turns changes of the resources, their
//! Secrets and the agents into passes.

pub mod assess;
pub mod cleanup;
pub mod context;
pub mod credentials;
pub mod desired;
pub mod digest;
mod error;
pub mod execute;
pub mod finalizer;
pub mod intent;
pub mod objects;
pub mod observe;
pub mod pass;
pub mod plan;
pub mod reconcile;
pub mod report;
pub mod watch;

pub use context::Context;
pub use error::Error;
pub use watch::run;
