//! Triton's model repository extension: index, load and unload. Load and unload act only in explicit mode, as in
//! Triton; the index answers in every mode.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::{body, AppState};

#[derive(serde::Deserialize)]
pub struct ModelName {
    model: String,
}

pub async fn index(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(&req, payload, &state.body_limits).await?;
    let ready_only = match object_body(&bytes, "index")?.as_ref().and_then(|o| o.get("ready")) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::BadRequest("'ready' must be a boolean".into())),
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

/// An optional JSON object body: empty is allowed (clients send none), anything else must be an object (a body of
/// whitespace alone is not JSON, and Triton refuses it too).
fn object_body(bytes: &[u8], what: &str) -> Result<Option<Map<String, Value>>, ApiError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(Some(o)),
        Ok(_) => Err(ApiError::BadRequest(format!("{what} body must be a JSON object"))),
        Err(e) => Err(ApiError::BadRequest(format!("{what} body is invalid JSON: {e}"))),
    }
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
    let bytes = body::read(&req, payload, &state.body_limits).await?;
    match object_body(&bytes, "load")?.as_ref().and_then(|o| o.get("parameters")) {
        None => {}
        Some(Value::Object(p)) if p.is_empty() => {}
        Some(Value::Object(_)) => {
            return Err(ApiError::BadRequest("load parameters (config or file overrides) are not supported; update the repository instead".into()))
        }
        Some(_) => return Err(ApiError::BadRequest("load 'parameters' must be an object".into())),
    }
    state.registry.load(&path.model).await?;
    Ok(HttpResponse::Ok().content_type("application/json").finish())
}

pub async fn unload(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>, path: web::Path<ModelName>) -> Result<HttpResponse, ApiError> {
    explicit_only(&state)?;
    let bytes = body::read(&req, payload, &state.body_limits).await?;
    // Accepted for Triton clients; a model here has no dependents to unload with it.
    match object_body(&bytes, "unload")?.as_ref().and_then(|o| o.get("parameters")) {
        None => {}
        Some(Value::Object(p)) => {
            if p.get("unload_dependents").is_some_and(|v| !v.is_boolean()) {
                return Err(ApiError::BadRequest("'unload_dependents' must be a boolean".into()));
            }
        }
        Some(_) => return Err(ApiError::BadRequest("unload 'parameters' must be an object".into())),
    }
    state.registry.unload(&path.model).await;
    Ok(HttpResponse::Ok().content_type("application/json").finish())
}
