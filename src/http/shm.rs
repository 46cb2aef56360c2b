//! `/v2/systemsharedmemory/...`: registering, listing and dropping shared memory regions (Triton's extension), and
//! `/v2/cudasharedmemory/...` answered as a server without CUDA memory would, so that clients that clear both
//! kinds at start-up (perf_analyzer) carry on.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::error::ApiError;
use super::{body, AppState};

#[derive(Deserialize)]
struct RegisterBody {
    key: String,
    #[serde(default)]
    offset: Option<serde_json::Value>,
    byte_size: serde_json::Value,
}

#[derive(Deserialize)]
pub struct RegionPath {
    name: Option<String>,
}

pub async fn register(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>, path: web::Path<RegionPath>) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(&req, payload, &state.body_limits).await?;
    let reg: RegisterBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("register body must be {{\"key\": string, \"offset\": integer, \"byte_size\": integer}}: {e}")))?;
    let whole = |v: &serde_json::Value, field: &str| {
        crate::v2::whole_number(v).ok_or_else(|| ApiError::BadRequest(format!("{field} must be a non-negative integer, not {v}")))
    };
    let offset = reg.offset.as_ref().filter(|v| !v.is_null()).map_or(Ok(0), |v| whole(v, "offset"))?;
    let byte_size = whole(&reg.byte_size, "byte_size")?;
    let name = path.name.as_deref().unwrap_or_default();
    state.shm.register(name, &reg.key, offset, byte_size)?;
    tracing::info!(region = name, key = reg.key, offset, byte_size, "shared memory region registered");
    Ok(HttpResponse::Ok().finish())
}

pub async fn unregister(state: web::Data<AppState>, path: web::Path<RegionPath>) -> Result<HttpResponse, ApiError> {
    state.shm.unregister(path.name.as_deref())?;
    Ok(HttpResponse::Ok().finish())
}

pub async fn status(state: web::Data<AppState>, path: web::Path<RegionPath>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.shm.status(path.name.as_deref())?))
}

/// CUDA shared memory: nothing can be registered, so there is never anything to list or drop.
pub async fn cuda_register() -> Result<HttpResponse, ApiError> {
    Err(ApiError::BadRequest("CUDA shared memory is not supported by this server; use system shared memory".into()))
}

pub async fn cuda_status(path: web::Path<RegionPath>) -> Result<HttpResponse, ApiError> {
    match &path.name {
        Some(name) => Err(ApiError::NotFound(format!("unable to find cuda shared memory region: '{name}'"))),
        None => Ok(HttpResponse::Ok().json(serde_json::json!([]))),
    }
}

pub async fn cuda_unregister() -> HttpResponse {
    HttpResponse::Ok().finish()
}
