//! Statistics extension and the Prometheus endpoint: both read counters that the scheduler and handlers update.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::error::ApiError;
use super::{AppState, ModelPath};

pub async fn all(state: web::Data<AppState>) -> HttpResponse {
    let snap = state.registry.snapshot();
    let mut names: Vec<&String> = snap.keys().collect();
    names.sort();
    let stats: Vec<_> = names
        .into_iter()
        .flat_map(|n| snap[n].versions.values().map(|v| consistent(v.stats.to_json(&v.name, v.version))).collect::<Vec<_>>())
        .collect();
    HttpResponse::Ok().json(json!({ "model_stats": stats }))
}

pub async fn model(state: web::Data<AppState>, path: web::Path<ModelPath>) -> Result<HttpResponse, ApiError> {
    let snap = state.registry.snapshot();
    let serving = snap.get(&path.model).ok_or_else(|| ApiError::NotFound(format!("model '{}' is not found", path.model)))?;
    let stats: Vec<_> = match &path.version {
        Some(_) => {
            let mv = state.registry.resolve(&path.model, path.version.as_deref())?;
            vec![consistent(mv.stats.to_json(&mv.name, mv.version))]
        }
        None => serving.versions.values().map(|v| consistent(v.stats.to_json(&v.name, v.version))).collect(),
    };
    Ok(HttpResponse::Ok().json(json!({ "model_stats": stats })))
}

const COMPUTE: [&str; 3] = ["compute_input", "compute_infer", "compute_output"];

/// perf_analyzer aborts ("compute counts must be the same") unless the three compute counts agree. The three totals
/// are separate atomics bumped one after another, so a read can fall between them; the per-batch-size table is read
/// under one lock, so the totals are taken from it whenever it has entries.
fn consistent(mut stat: Value) -> Value {
    let mut totals = [(0u64, 0u64); 3];
    let Some(batches) = stat.get("batch_stats").and_then(Value::as_array).filter(|b| !b.is_empty()) else {
        return stat;
    };
    for batch in batches {
        for (total, key) in totals.iter_mut().zip(COMPUTE) {
            total.0 += batch[key]["count"].as_u64().unwrap_or(0);
            total.1 += batch[key]["ns"].as_u64().unwrap_or(0);
        }
    }
    for ((count, ns), key) in totals.into_iter().zip(COMPUTE) {
        stat["inference_stats"][key] = json!({"count": count, "ns": ns});
    }
    stat
}

pub async fn prometheus(state: web::Data<AppState>) -> HttpResponse {
    let mut text = state.metrics.render();
    crate::observe::process::render(&mut text);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_totals_follow_the_batch_table() {
        let torn = json!({"inference_stats": {"compute_input": {"count": 3, "ns": 30}, "compute_infer": {"count": 2, "ns": 20},
                                              "compute_output": {"count": 2, "ns": 20}, "queue": {"count": 9, "ns": 9}},
                          "batch_stats": [
                              {"batch_size": 1, "compute_input": {"count": 2, "ns": 5}, "compute_infer": {"count": 2, "ns": 50},
                               "compute_output": {"count": 2, "ns": 7}},
                              {"batch_size": 4, "compute_input": {"count": 1, "ns": 1}, "compute_infer": {"count": 1, "ns": 10},
                               "compute_output": {"count": 1, "ns": 2}}]});
        let fixed = consistent(torn);
        let s = &fixed["inference_stats"];
        assert_eq!(s["compute_input"], json!({"count": 3, "ns": 6}));
        assert_eq!(s["compute_infer"], json!({"count": 3, "ns": 60}));
        assert_eq!(s["compute_output"], json!({"count": 3, "ns": 9}));
        assert_eq!(s["queue"], json!({"count": 9, "ns": 9}));
        let empty = json!({"inference_stats": {"compute_input": {"count": 0, "ns": 0}}, "batch_stats": []});
        assert_eq!(consistent(empty.clone()), empty);
    }
}
