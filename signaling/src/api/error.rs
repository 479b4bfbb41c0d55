//! The REST API's error type: one variant per HTTP status, rendered as
//! `{"error": code, "message": text}` (plus `reason` for auth failures).

use crate::auth::AuthError;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// A failed API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad_request`: malformed body or invalid field.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `unauthorized` (no valid token) or 403 `forbidden` (valid token, no admin grant).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 409 `room_exists`.
    #[error("{0}")]
    Conflict(String),
    /// 503 `draining`: the node takes no new rooms.
    #[error("{0}")]
    Draining(String),
    /// 503 `unavailable`: a service the request needs (the fleet directory) does not answer.
    #[error("{0}")]
    Unavailable(String),
    /// 500 `internal`: details go to the log, not to the client.
    #[error("{0}")]
    Internal(String),
}

/// The JSON body of an error response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: String,
    /// Human-readable text.
    pub message: String,
    /// Auth failures: why the token was refused (`missing`, `expired`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ApiError {
    /// HTTP status and error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Auth(e) if e.is_forbidden() => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Auth(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "room_exists"),
            ApiError::Draining(_) => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "api request failed");
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        let reason = match &self {
            ApiError::Auth(e) => Some(e.reason().to_string()),
            _ => None,
        };
        let mut res = (status, Json(ErrorBody { error: code.into(), message, reason })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// A JSON request body whose rejections are [`ApiError::BadRequest`] in the API's error format.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(|e: JsonRejection| ApiError::BadRequest(e.body_text()))
    }
}
