//! Errors of the Pipecat Cloud client, classified so that callers decide by kind.
//!
//! No variant ever holds the API key: messages come from the API's error body or from the
//! transport, and request URLs carry only agent names.

use std::time::Duration;

/// A failed Pipecat Cloud call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: the agent (or a secret set it names) does not exist.
    #[error("not found: {message}")]
    NotFound {
        /// The API's message.
        message: String,
    },
    /// 400 "Service already exists".
    #[error("agent already exists: {message}")]
    AlreadyExists {
        /// The API's message.
        message: String,
    },
    /// Another 4xx: the request is wrong and retrying will not help until it changes.
    #[error(
        "invalid request (HTTP {status}, {code}): {message}{}",
        error_codes_link(code)
    )]
    InvalidRequest {
        /// HTTP status.
        status: u16,
        /// The API's code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// 401 or 403: the API key is wrong, revoked or lacks access.
    #[error("unauthorized (HTTP {status}): {message}")]
    Unauthorized {
        /// HTTP status.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// 409: e.g. a secret set is still provisioning.
    #[error("conflict: {message}")]
    Conflict {
        /// The API's message.
        message: String,
    },
    /// 429: slow down, possibly for `retry_after`.
    #[error("rate limited by Pipecat Cloud{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The server's Retry-After.
        retry_after: Option<Duration>,
    },
    /// 5xx, timeouts, connection failures: worth retrying with backoff.
    #[error("transient failure: {message}")]
    Transient {
        /// HTTP status when there was a response.
        status: Option<u16>,
        /// What happened.
        message: String,
        /// The server's Retry-After, if any.
        retry_after: Option<Duration>,
    },
    /// A 2xx response whose body could not be understood.
    #[error("malformed response from Pipecat Cloud: {message}")]
    Malformed {
        /// What was wrong.
        message: String,
    },
    /// The client could not be built (bad base URL, TLS setup).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

/// Pipecat Cloud's page that explains its error codes (`PCC-1004`, `PCC_IMAGE_NOT_FOUND`, ...).
pub const ERROR_CODES_PAGE: &str =
    "https://docs.pipecat.ai/deployment/pipecat-cloud/fundamentals/error-codes";

/// True for Pipecat Cloud's own error codes (`PCC-1004`, `PCC_IMAGE_NOT_FOUND`).
pub fn is_pcc_code(code: &str) -> bool {
    code.starts_with("PCC-") || code.starts_with("PCC_")
}

/// "; see <the error codes page>" after a message about a `PCC` code, else nothing.
pub fn error_codes_link(code: &str) -> String {
    if is_pcc_code(code) {
        format!(" (see {ERROR_CODES_PAGE})")
    } else {
        String::new()
    }
}

/// The class of a failure: the one classification that retries, metrics and condition reasons
/// are derived from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 404.
    NotFound,
    /// 400 "Service already exists".
    AlreadyExists,
    /// Another 4xx.
    InvalidRequest,
    /// 401 or 403.
    Unauthorized,
    /// 409.
    Conflict,
    /// 429.
    RateLimited,
    /// 5xx, timeouts, connection failures.
    Transient,
    /// A 2xx whose body could not be understood.
    Malformed,
    /// The client could not be built.
    Config,
}

impl ErrorKind {
    /// A short, bounded label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NotFound",
            ErrorKind::AlreadyExists => "AlreadyExists",
            ErrorKind::InvalidRequest => "InvalidRequest",
            ErrorKind::Unauthorized => "Unauthorized",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::RateLimited => "RateLimited",
            ErrorKind::Transient => "Transient",
            ErrorKind::Malformed => "MalformedResponse",
            ErrorKind::Config => "Config",
        }
    }

    /// True when retrying the same request later may succeed without any change; otherwise
    /// something must change first (the spec, the key, the client's configuration).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::Transient
                | ErrorKind::Malformed
                | ErrorKind::Conflict
        )
    }
}

impl Error {
    /// The class of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::InvalidRequest { .. } => ErrorKind::InvalidRequest,
            Error::Unauthorized { .. } => ErrorKind::Unauthorized,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Transient { .. } => ErrorKind::Transient,
            Error::Malformed { .. } => ErrorKind::Malformed,
            Error::Config(_) => ErrorKind::Config,
        }
    }

    /// Retry-After sent by the server, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } | Error::Transient { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Every text of the error that came from the remote side (to redact and bound it).
    pub(crate) fn texts_mut(&mut self) -> Vec<&mut String> {
        match self {
            Error::NotFound { message }
            | Error::AlreadyExists { message }
            | Error::Unauthorized { message, .. }
            | Error::Conflict { message }
            | Error::Transient { message, .. }
            | Error::Malformed { message } => vec![message],
            Error::InvalidRequest { code, message, .. } => vec![code, message],
            Error::RateLimited { .. } | Error::Config(_) => vec![],
        }
    }
}
