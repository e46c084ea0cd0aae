//! The API's error answer: `{"error": "<message>", "code": "<code>"}` with a status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered by the emulated API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400 `GENERIC_BAD_REQUEST`: the request is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `UNAUTHORIZED`: missing or unknown API key.
    #[error("Unauthorized")]
    Unauthorized,
    /// 404 `NOT_FOUND`.
    #[error("{0}")]
    NotFound(String),
    /// 409 `CONFLICT`: a secret set is still provisioning.
    #[error("{0}")]
    Conflict(String),
    /// 429 (code `"429"`): the agent's session pool is full.
    #[error("{0}")]
    TooManyRequests(String),
    /// 500 `INTERNAL_SERVER_ERROR`.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The documented "Not found" answer.
    pub fn not_found() -> Self {
        Self::NotFound("Not found".to_owned())
    }

    /// Shorthand for a 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `code` field of the body.
    pub fn code(&self) -> String {
        code_for_status(self.status())
    }
}

/// The `code` the API uses for a status: a name for the common ones, the number otherwise.
pub fn code_for_status(status: StatusCode) -> String {
    match status.as_u16() {
        400 => "GENERIC_BAD_REQUEST".to_owned(),
        401 => "UNAUTHORIZED".to_owned(),
        404 => "NOT_FOUND".to_owned(),
        409 => "CONFLICT".to_owned(),
        500 => "INTERNAL_SERVER_ERROR".to_owned(),
        other => other.to_string(),
    }
}

/// The JSON error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// The message.
    pub error: &'a str,
    /// The code.
    pub code: &'a str,
}

/// Serialises an error body.
pub fn error_json(message: &str, code: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody {
        error: message,
        code,
    })
    .unwrap_or_default()
}

/// A JSON response with the given status and raw body.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        json_response(self.status(), error_json(&message, &self.code()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_api() {
        assert_eq!(ApiError::not_found().code(), "NOT_FOUND");
        assert_eq!(ApiError::bad_request("x").code(), "GENERIC_BAD_REQUEST");
        assert_eq!(ApiError::TooManyRequests("x".into()).code(), "429");
        assert_eq!(code_for_status(StatusCode::SERVICE_UNAVAILABLE), "503");
        let body: serde_json::Value =
            serde_json::from_slice(&error_json("Unauthorized", "UNAUTHORIZED")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "Unauthorized", "code": "UNAUTHORIZED"})
        );
    }
}
