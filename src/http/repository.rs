//! Triton's model repository extension: index, load and unload. Load and unload act only in explicit mode, as in
//! Triton; the index answers in every mode.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::error::ApiError;
use super::{body, AppState};

#[derive(serde::Deserialize)]
pub struct ModelName {
    model: String,
}

pub async fn index(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(&req, payload, state.settings.max_body_bytes).await?;
    let ready_only = if bytes.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("index body is invalid JSON: {e}")))?;
        match v.get("ready") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::BadRequest("'ready' must be a boolean".into())),
        }
    };
    let entries: Vec<Value> = state
        .registry
        .index()
        .into_iter()
        .filter(|e| !ready_only || e.state == crate::repository::State::Ready)
        .map(|e| {
            let mut v = json!({"name": e.name, "state": e.state.as_str(), "reason": e.reason});
            if let Some(ver) = e.version {
                v["version"] = json!(ver.to_string());
            }
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(entries))
}

fn explicit_only(state: &AppState) -> Result<(), ApiError> {
    if state.explicit() {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "explicit model load / unload is not allowed in model control mode '{}'",
            serde_json::to_value(state.settings.model_control_mode).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
        )))
    }
}

pub async fn load(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>, path: web::Path<ModelName>) -> Result<HttpResponse, ApiError> {
    explicit_only(&state)?;
    let bytes = body::read(&req, payload, state.settings.max_body_bytes).await?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("load body is invalid JSON: {e}")))?;
        if v.get("parameters").and_then(|p| p.as_object()).is_some_and(|p| !p.is_empty()) {
            return Err(ApiError::BadRequest("load parameters (config or file overrides) are not supported; update the repository instead".into()));
        }
    }
    state.registry.load(&path.model).await?;
    Ok(HttpResponse::Ok().content_type("application/json").finish())
}

pub async fn unload(state: web::Data<AppState>, path: web::Path<ModelName>) -> Result<HttpResponse, ApiError> {
    explicit_only(&state)?;
    state.registry.unload(&path.model).await;
    Ok(HttpResponse::Ok().content_type("application/json").finish())
}
