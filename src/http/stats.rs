//! Statistics extension and the Prometheus endpoint: both read counters that the scheduler and handlers update.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::{AppState, ModelPath};

pub async fn all(state: web::Data<AppState>) -> HttpResponse {
    let snap = state.registry.snapshot();
    let mut names: Vec<&String> = snap.keys().collect();
    names.sort();
    let stats: Vec<_> = names
        .into_iter()
        .flat_map(|n| snap[n].versions.values().map(|v| v.stats.to_json(&v.name, v.version)).collect::<Vec<_>>())
        .collect();
    HttpResponse::Ok().json(json!({ "model_stats": stats }))
}

pub async fn model(state: web::Data<AppState>, path: web::Path<ModelPath>) -> Result<HttpResponse, ApiError> {
    let snap = state.registry.snapshot();
    let serving = snap.get(&path.model).ok_or_else(|| ApiError::NotFound(format!("model '{}' is not found", path.model)))?;
    let stats: Vec<_> = match &path.version {
        Some(_) => {
            let mv = state.registry.resolve(&path.model, path.version.as_deref())?;
            vec![mv.stats.to_json(&mv.name, mv.version)]
        }
        None => serving.versions.values().map(|v| v.stats.to_json(&v.name, v.version)).collect(),
    };
    Ok(HttpResponse::Ok().json(json!({ "model_stats": stats })))
}

pub async fn prometheus(state: web::Data<AppState>) -> HttpResponse {
    let mut text = state.metrics.render();
    crate::observe::process::render(&mut text);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text)
}
