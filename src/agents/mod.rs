//! The `PipecatAgent` kind: keeps each resource's remote agent equal to its spec, as one
//! straight pass ([`reconcile`]) over the runtime ([`crate::runtime`]):
//!
//! [`gate`] (the managed secret sets it uses are ready) -> [`credentials`] (the key) ->
//! [`ownership`] (no older resource owns the name) -> [`observe`] (the remote agent, what was
//! last applied) -> [`decide`] (pure: create, manage, adopt or refuse, from the [`desired`]
//! agent, the field [`plan`] and due [`rotation`]s) -> [`intent`] (the one writer before a
//! call: finalizer, create marker, announcement) -> [`execute`] (Pipecat Cloud calls only) ->
//! [`assess`] (pure: what the answers mean, with [`readiness`]) -> [`status`] and [`events`]
//! (report). A resource being deleted goes to [`cleanup`] instead, with the [`finalizer`].
//!
//! Around the pass: [`pass`] holds the types several steps share; [`context`] the shared
//! state; [`objects`] all per-object memory; [`backoff`] when to come back; [`lanes`] which
//! priority a pass runs in and [`pacer`] the background refreshes; [`watch`] turns the
//! cluster's changes into passes; [`set_index`] knows which PipecatSecretSets manage the sets
//! agents use.

pub mod assess;
pub mod backoff;
pub mod cleanup;
pub mod compare;
pub mod context;
pub mod credentials;
pub mod decide;
pub mod desired;
pub mod error;
pub mod events;
pub mod execute;
pub mod finalizer;
pub mod gate;
pub mod intent;
pub mod lanes;
pub mod names;
pub mod objects;
pub mod observe;
pub mod ownership;
pub mod pacer;
pub mod pass;
pub mod plan;
pub mod readiness;
pub mod reconcile;
pub mod rotation;
pub mod set_index;
pub mod status;
pub mod watch;

pub use context::Context;
pub use error::Error;
pub use watch::{check_crd, run};
