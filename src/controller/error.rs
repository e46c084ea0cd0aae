//! Errors of a reconcile, and what each means for the user and for retries.

use std::time::Duration;

use crate::cloud;

/// A failed reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The credentials Secret or its key is missing or empty.
    #[error("{0}")]
    CredentialsNotFound(String),
    /// A Pipecat Cloud call failed.
    #[error("failed to {action} agent {agent}: {source}")]
    Cloud {
        /// What we tried: get, create, update, delete.
        action: &'static str,
        /// Remote agent name.
        agent: String,
        /// The classified error.
        #[source]
        source: cloud::Error,
    },
    /// A Kubernetes API call failed.
    #[error("failed to {action}: {source}")]
    Kube {
        /// What we tried.
        action: &'static str,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// The resource asks for something that cannot be done until it changes.
    #[error("{message}")]
    InvalidSpec {
        /// CamelCase reason.
        reason: &'static str,
        /// What to do.
        message: String,
    },
}

impl Error {
    /// The `Synced=False` reason (a CamelCase word, bounded set; also a metrics label).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::CredentialsNotFound(_) => "CredentialsNotFound",
            Error::Cloud { source, .. } => match source {
                cloud::Error::NotFound { .. } => "RemoteNotFound",
                cloud::Error::AlreadyExists { .. } => "AlreadyExists",
                cloud::Error::InvalidRequest { .. } => "InvalidRequest",
                cloud::Error::Unauthorized { .. } => "Unauthorized",
                cloud::Error::Conflict { .. } => "SecretSetNotReady",
                cloud::Error::RateLimited { .. } => "RateLimited",
                cloud::Error::Transient { .. } => "PipecatUnavailable",
                cloud::Error::Malformed { .. } => "MalformedResponse",
                cloud::Error::Config(_) => "ClientMisconfigured",
            },
            Error::Kube { .. } => "KubernetesError",
            Error::InvalidSpec { reason, .. } => reason,
        }
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Cloud { source, .. } => source.retry_after(),
            _ => None,
        }
    }

    /// Errors that wait for the user (a spec, Secret or key change) rather than for time: they
    /// are still retried, but on the slow end of the backoff.
    pub fn needs_user_action(&self) -> bool {
        match self {
            Error::CredentialsNotFound(_) | Error::InvalidSpec { .. } => true,
            Error::Cloud { source, .. } => matches!(
                source,
                cloud::Error::InvalidRequest { .. }
                    | cloud::Error::Unauthorized { .. }
                    | cloud::Error::NotFound { .. }
                    | cloud::Error::AlreadyExists { .. }
            ),
            Error::Kube { .. } => false,
        }
    }
}
