//! Errors of a secret set reconcile, and what each means for the user and for retries.

use std::time::Duration;

use crate::cloud::{self, ErrorKind};
use crate::runtime;

/// A failed pass.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API key could not be read (the runtime's error).
    #[error("{0}")]
    Credentials(#[source] runtime::Error),
    /// A Pipecat Cloud call failed.
    #[error("failed to {action} secret set {set}: {source}")]
    Cloud {
        /// What we tried.
        action: &'static str,
        /// Remote set name.
        set: String,
        /// The classified error (values already redacted by the client).
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
    /// The resource or its Secret asks for something that cannot be done until it changes.
    #[error("{message}")]
    Invalid {
        /// CamelCase reason.
        reason: &'static str,
        /// What to do.
        message: String,
    },
}

impl Error {
    /// A failed Pipecat Cloud call.
    pub fn cloud(action: &'static str, set: &str, source: cloud::Error) -> Self {
        Error::Cloud {
            action,
            set: set.to_string(),
            source,
        }
    }

    /// A condition the user must change.
    pub fn invalid(reason: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            reason,
            message: message.into(),
        }
    }

    /// The `Synced=False` reason (a bounded CamelCase word, also a metrics label).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Credentials(e) => e.reason(),
            Error::Cloud { source, .. } => match source.kind() {
                ErrorKind::NotFound => "RemoteNotFound",
                ErrorKind::AlreadyExists => "AlreadyExists",
                ErrorKind::InvalidRequest => "InvalidRequest",
                ErrorKind::Unauthorized => "Unauthorized",
                ErrorKind::Conflict => "Provisioning",
                ErrorKind::RateLimited => "RateLimited",
                ErrorKind::Transient => "PipecatUnavailable",
                ErrorKind::Malformed => "MalformedResponse",
                ErrorKind::Config => "ClientMisconfigured",
            },
            Error::Kube { .. } => "KubernetesError",
            Error::Invalid { reason, .. } => reason,
        }
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Cloud { source, .. } => source.retry_after(),
            _ => None,
        }
    }

    /// Errors that wait for the user rather than for time (retried on the slow end).
    pub fn needs_user_action(&self) -> bool {
        match self {
            Error::Credentials(e) => e.needs_user_action(),
            Error::Invalid { .. } => true,
            Error::Cloud { source, .. } => !source.kind().is_retryable(),
            Error::Kube { .. } => false,
        }
    }
}
