//! The Pipecat Cloud management API client. No Kubernetes in here.
//!
//! [`Client`] sends typed requests ([`types`]) with a per-call [`ApiKey`] and returns typed
//! agents or an [`Error`] classified by kind (not found, already exists, invalid request,
//! unauthorized, conflict, rate limited, transient, malformed).

mod client;
mod error;
mod ratelimit;
pub mod secret_sets;
pub mod types;

pub use client::{ApiKey, Client, ClientConfig, DEFAULT_BASE_URL, Observer, Operation, classify};
pub use error::{ERROR_CODES_PAGE, Error, ErrorKind, error_codes_link, is_pcc_code};
pub use ratelimit::{Lane, Occupied, Promotion, RateLimiter, background, current_lane, in_lane};
