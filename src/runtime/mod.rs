//! What every kind's controller uses, and never a kind itself: the scope of a release and its
//! watches ([`scope`], each read once and shared: [`reflectors`]), re-lists handed on whole ([`relist`]), the settings ([`Config`]),
//! conditions and the status write ([`conditions`]), the event publisher ([`events`]),
//! finalizers ([`finalizer`]), API keys and the in-use mark on their Secrets ([`credentials`],
//! [`secret_marks`]), backoff ([`backoff`]), the priorities of passes ([`lanes`]), the
//! per-object memory ([`memory`]) and the background lane's pacer ([`pacer`]).
//!
//! Each kind (`crate::agents`, `crate::secret_sets`) is one straight pass over these.

pub mod backoff;
pub mod conditions;
mod config;
pub mod credentials;
mod error;
pub mod events;
pub mod finalizer;
pub mod key;
pub mod lanes;
pub mod memory;
pub mod pacer;
pub mod reflectors;
pub mod relist;
pub mod scope;
pub mod secret_marks;
pub mod secrets;

pub use config::Config;
pub use error::Error;

/// Name under which the operator publishes events and manages fields.
pub const MANAGER: &str = "pipecat-operator";
