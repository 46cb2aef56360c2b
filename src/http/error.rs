//! The one place where errors of every layer become HTTP: status codes follow Triton's mapping, and every body is
//! the protocol's `{"error": "..."}` so that tritonclient and perf_analyzer can read it.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::decode::DecodeError;
use crate::repository::{ControlError, ResolveError};
use crate::scheduler::SchedulerError;
use crate::shm::ShmError;
use crate::v2::ProtocolError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The reason label for the failures metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "runtime",
            _ => "bad_request",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if matches!(self, Self::Unavailable(_)) {
            res.insert_header((header::RETRY_AFTER, "1"));
        }
        res.json(serde_json::json!({ "error": self.to_string() }))
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        Self::BadRequest(e.0)
    }
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::UnknownModel(_) | ResolveError::UnknownVersion { .. } => Self::NotFound(e.to_string()),
            ResolveError::NoReadyVersion(_) => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<SchedulerError> for ApiError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::QueueFull(_) | SchedulerError::Timeout(_) | SchedulerError::Closed => Self::Unavailable(e.to_string()),
            SchedulerError::Runtime(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl From<ShmError> for ApiError {
    fn from(e: ShmError) -> Self {
        match e {
            // A key that cannot name an object names none: 404 like a missing one, since no schema can tell them apart.
            ShmError::NotFound(_) | ShmError::NoObject(_) | ShmError::BadKey(_) => Self::NotFound(e.to_string()),
            _ => Self::BadRequest(e.to_string()),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotInRepository(_) => Self::NotFound(e.to_string()),
            ControlError::LoadFailed { .. } => Self::BadRequest(e.to_string()),
        }
    }
}
