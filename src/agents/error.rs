//! Errors of a reconcile, and what each means for the user and for retries.

use std::time::Duration;

use crate::cloud::{self, ErrorKind};

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
    /// A secret set the agent uses is managed by a PipecatSecretSet that is not ready: the
    /// agent waits for it (no create or update is sent).
    #[error("{message}")]
    SecretSetNotReady {
        /// Which set, and what it waits for.
        message: String,
        /// The set failed (waits for a person, not for time).
        failed: bool,
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
            // The client's classification, named for the user (a 409 is a secret set still
            // provisioning; a 5xx or a timeout means Pipecat Cloud is unavailable).
            Error::Cloud { source, .. } => match source.kind() {
                ErrorKind::NotFound => "RemoteNotFound",
                ErrorKind::AlreadyExists => "AlreadyExists",
                ErrorKind::InvalidRequest => "InvalidRequest",
                ErrorKind::Unauthorized => "Unauthorized",
                ErrorKind::Conflict => "SecretSetNotReady",
                ErrorKind::RateLimited => "RateLimited",
                ErrorKind::Transient => "PipecatUnavailable",
                ErrorKind::Malformed => "MalformedResponse",
                ErrorKind::Config => "ClientMisconfigured",
            },
            Error::Kube { .. } => "KubernetesError",
            Error::SecretSetNotReady { .. } => "SecretSetNotReady",
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
            Error::Cloud { source, .. } => !source.kind().is_retryable(),
            Error::Kube { .. } => false,
            Error::SecretSetNotReady { failed, .. } => *failed,
        }
    }
}

impl Error {
    /// A failed Pipecat Cloud call: `action` (read, create, update, delete) on `agent`.
    pub fn cloud(action: &'static str, agent: &str, source: cloud::Error) -> Self {
        Error::Cloud {
            action,
            agent: agent.to_string(),
            source,
        }
    }
}

impl From<crate::runtime::Error> for Error {
    fn from(e: crate::runtime::Error) -> Self {
        match e {
            crate::runtime::Error::CredentialsNotFound(message) => {
                Error::CredentialsNotFound(message)
            }
            crate::runtime::Error::Kube { action, source } => Error::Kube { action, source },
        }
    }
}
