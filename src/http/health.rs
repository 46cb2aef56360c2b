//! Liveness and readiness, as Kubernetes probes and Triton clients use them: empty 200s, and readiness refusing
//! (503) until every model is warmed and again from the moment a drain begins.

use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::AppState;

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().finish()
}

pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.registry.ready() {
        Ok(HttpResponse::Ok().finish())
    } else {
        Err(ApiError::Unavailable("server is not ready: models loading or draining".into()))
    }
}
