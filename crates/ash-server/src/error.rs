//! JSON error responses: `{ "ok": false, "code": …, "error": … }` with the matching status.

use ash_core::{ContinueError, SendError, StoreError};
use ash_protocol::ApiError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error a route answers with.
#[derive(Debug)]
pub(crate) struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn run_not_found(run_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "run_not_found",
            format!("no run has the id `{run_id}`; use the `runId` that POST /message returned"),
        )
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = ApiError { ok: false, code: self.code.to_owned(), error: self.message };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Lost(_) = &e {
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string());
        }
        tracing::error!(error = %e, "store failure");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "store_error", e.to_string())
    }
}

impl From<ContinueError> for HttpError {
    fn from(e: ContinueError) -> Self {
        let (status, code) = match &e {
            ContinueError::UnknownRun => (StatusCode::NOT_FOUND, "run_not_found"),
            ContinueError::NotPaused(_) => (StatusCode::CONFLICT, "run_not_paused"),
            ContinueError::Stale(_) => (StatusCode::CONFLICT, "stale_answer"),
            ContinueError::StillSpent(_) => (StatusCode::CONFLICT, "budget_spent"),
            ContinueError::Forbidden(_) => (StatusCode::FORBIDDEN, "not_your_session"),
            ContinueError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            ContinueError::Store(StoreError::Lost(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            ContinueError::Store(store) => {
                tracing::error!(error = %store, "store failure");
                (StatusCode::INTERNAL_SERVER_ERROR, "store_error")
            }
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<SendError> for HttpError {
    fn from(e: SendError) -> Self {
        let (status, code) = match &e {
            SendError::EmptyMessage => (StatusCode::BAD_REQUEST, "empty_message"),
            SendError::MessageTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large")
            }
            SendError::UnknownToken => (StatusCode::NOT_FOUND, "unknown_continuation_token"),
            SendError::Busy(_) => (StatusCode::CONFLICT, "session_busy"),
            SendError::Paused(_) => (StatusCode::CONFLICT, "session_paused"),
            SendError::Ended(_) => (StatusCode::CONFLICT, "session_ended"),
            SendError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            SendError::UnknownSchedule(_) => (StatusCode::NOT_FOUND, "unknown_schedule"),
            SendError::Store(StoreError::Lost(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            SendError::Store(store) => {
                tracing::error!(error = %store, "store failure");
                (StatusCode::INTERNAL_SERVER_ERROR, "store_error")
            }
        };
        Self::new(status, code, e.to_string())
    }
}
