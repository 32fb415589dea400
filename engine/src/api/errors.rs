//! How control-plane failures answer over HTTP.

use axum::http::StatusCode;

use super::ApiError;
use crate::control::{ControlError, ModuleError};

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        let message = error.to_string();
        match error {
            ControlError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, message),
            ControlError::BadRequest(_) => ApiError::new(StatusCode::BAD_REQUEST, message),
            ControlError::Invalid(diagnostics) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message).with("errors", diagnostics.0)
            }
            ControlError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, message),
            ControlError::Unusable(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message),
            ControlError::Module(error) => error.into(),
            ControlError::Internal(_) => {
                tracing::error!("control plane: {message}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
            }
        }
    }
}

impl From<ModuleError> for ApiError {
    fn from(error: ModuleError) -> Self {
        let status = match &error {
            ModuleError::BadName(_) => StatusCode::BAD_REQUEST,
            ModuleError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ModuleError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ModuleError::NotFound(_) | ModuleError::NoSuchVersion { .. } => StatusCode::NOT_FOUND,
            ModuleError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}
