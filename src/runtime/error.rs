//! The runtime's failures, which each kind's error wraps with the same meaning.

/// A failed step of the runtime (a key lookup, a Kubernetes write).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The credentials Secret or its key is missing or empty.
    #[error("{0}")]
    CredentialsNotFound(String),
    /// A Kubernetes API call failed.
    #[error("failed to {action}: {source}")]
    Kube {
        /// What we tried.
        action: &'static str,
        /// The error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// The `Synced=False` reason (a CamelCase word, also a metrics label).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::CredentialsNotFound(_) => "CredentialsNotFound",
            Error::Kube { .. } => "KubernetesError",
        }
    }

    /// True when it waits for the user (a Secret or key to fix) rather than for time.
    pub fn needs_user_action(&self) -> bool {
        matches!(self, Error::CredentialsNotFound(_))
    }
}
