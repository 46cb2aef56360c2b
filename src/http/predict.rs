//! `POST /v1/models/{m}:predict`: the friendly image endpoint. Accepts one raw image (`image/*`), a multipart form
//! of images, or JSON `{"instances": [{"b64": ...}]}`; decodes and preprocesses the images in parallel on blocking
//! threads, then sends them through the same scheduler as V2 tensors, so images batch with everything else.

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::{body, AppState, Accounting};
use crate::decode::{image::decode_rgb, preprocess};
use crate::observe::metrics as m;
use crate::repository::ModelVersion;
use crate::tensor::{Tensor, TensorData};
use crate::v2::classify::{softmax_rows, top_k, Class};

#[derive(Deserialize)]
pub struct Query {
    top_k: Option<String>,
}

pub async fn predict(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    target: web::Path<String>,
    query: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    let Some(model) = target.strip_suffix(":predict") else {
        return Err(ApiError::NotFound(format!("unknown path; use /v1/models/{}:predict", target.as_str())));
    };
    let mut acct = Accounting::start(model, "predict");
    let result = async {
        let mv = state.registry.resolve(model, None)?;
        acct.version(mv.version);
        let result = run(&req, payload, &state, &mv, &query).await;
        let stat = if result.is_ok() { &mv.stats.success } else { &mv.stats.fail };
        stat.add(1, acct.elapsed());
        result
    }
    .await;
    acct.finish(&result);
    result
}

async fn run(req: &HttpRequest, payload: web::Payload, state: &AppState, mv: &ModelVersion, query: &Query) -> Result<HttpResponse, ApiError> {
    let recipe = mv
        .config
        .preprocess
        .clone()
        .ok_or_else(|| ApiError::BadRequest(format!("model '{}' has no [preprocess] recipe; use the V2 infer endpoint", mv.name)))?;
    let classes = mv.signature.outputs.first().map(|o| o.dims.iter().product::<i64>().max(1) as usize).unwrap_or(1);
    let k = match &query.top_k {
        None => 5.min(classes),
        Some(s) => s.parse::<usize>().ok().filter(|&k| k >= 1 && k <= classes).ok_or_else(|| {
            ApiError::BadRequest(format!("top_k must be an integer from 1 to {classes}, got '{s}'"))
        })?,
    };
    let mut arrival = Some(mv.scheduler.arriving());
    let images = read_images(req, payload, state).await?;
    let n = images.len();
    // Held until the answer is ready: decoded tensors are ~0.6 MB per image, so their total is bounded here.
    let _permits = state.image_permits.clone().try_acquire_many_owned(n as u32).map_err(|_| {
        ApiError::Unavailable(format!("too many images in flight (limit {}); retry later", state.settings.max_inflight_images))
    })?;

    let started = std::time::Instant::now();
    let max_pixels = state.settings.max_image_pixels;
    let tasks = images.into_iter().map(|bytes| {
        let recipe = recipe.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<f32>, ApiError> {
            let img = decode_rgb(&bytes, max_pixels)?;
            let mut out = Vec::with_capacity(preprocess::tensor_len(&recipe));
            preprocess::preprocess_into(img, &recipe, &mut out)?;
            Ok(out)
        })
    });
    let decoded = futures_util::future::join_all(tasks).await;
    let mut tensors: Vec<Vec<f32>> = Vec::with_capacity(n);
    for (i, d) in decoded.into_iter().enumerate() {
        tensors.push(
            d.map_err(|e| ApiError::Internal(format!("decoding task failed: {e}")))?
                .map_err(|e| ApiError::BadRequest(if n > 1 { format!("image {i}: {e}") } else { e.to_string() }))?,
        );
    }
    metrics::histogram!(m::PREPROCESS_DURATION, "model" => mv.name.clone(), "version" => mv.version.to_string())
        .record(started.elapsed().as_secs_f64());

    // Images are split into batches of at most max_batch_size rows; the scheduler may merge them with others.
    let dims = preprocess::tensor_dims(&recipe);
    let chunk_rows = mv.config.max_batch_size.max(1);
    let mut futures = Vec::with_capacity(n.div_ceil(chunk_rows));
    let mut rows_per_job = Vec::with_capacity(futures.capacity());
    let mut pending = tensors.into_iter().peekable();
    while pending.peek().is_some() {
        let group: Vec<Vec<f32>> = pending.by_ref().take(chunk_rows).collect();
        let rows = group.len();
        // A single image's tensor is moved, not copied.
        let data = if rows == 1 { group.into_iter().next().unwrap_or_default() } else { group.concat() };
        let mut shape = dims.to_vec();
        if mv.config.max_batch_size > 0 {
            shape.insert(0, rows as i64);
        }
        let input = Tensor { name: recipe.input.clone(), shape, data: TensorData::Fp32(data) };
        rows_per_job.push(rows);
        futures.push(mv.scheduler.infer_announced(arrival.take(), vec![input], rows));
    }
    let results = futures_util::future::join_all(futures).await;
    let mut predictions: Vec<Vec<Class>> = Vec::with_capacity(n);
    for (rows, r) in rows_per_job.into_iter().zip(results) {
        let (outputs, _) = r?;
        let scores = outputs.into_iter().next().ok_or_else(|| ApiError::Internal("model produced no output".into()))?;
        predictions.extend(rank(scores, rows, k, &mv.labels)?);
    }
    Ok(HttpResponse::Ok().json(json!({
        "model_name": mv.name,
        "model_version": mv.version.to_string(),
        "predictions": predictions,
    })))
}

/// Scores as probabilities: logits (anything that is not already a distribution per row) go through softmax.
fn rank(mut scores: Tensor, rows: usize, k: usize, labels: &[String]) -> Result<Vec<Vec<Class>>, ApiError> {
    let mut values = scores.data.to_f64().ok_or_else(|| ApiError::Internal("model output is not numeric".into()))?;
    let per_row = values.len() / rows.max(1);
    let is_distribution = values.chunks(per_row.max(1)).all(|r| {
        r.iter().all(|v| (0.0..=1.0).contains(v)) && (r.iter().sum::<f64>() - 1.0).abs() < 1e-3
    });
    if !is_distribution {
        softmax_rows(&mut values, per_row);
    }
    scores.data = TensorData::Fp64(values);
    top_k(&scores, rows, k, labels).ok_or_else(|| ApiError::Internal("ranking failed".into()))
}

#[derive(Deserialize)]
struct Instances {
    instances: Vec<Instance>,
}

#[derive(Deserialize)]
struct Instance {
    b64: String,
}

async fn read_images(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<Vec<web::Bytes>, ApiError> {
    let max_images = state.settings.max_images_per_request;
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let too_many = |n: usize| ApiError::BadRequest(format!("{n} images is more than the limit of {max_images} per request"));
    let images = if content_type.starts_with("image/") {
        vec![body::read(req, payload, &state.body_limits).await?]
    } else if content_type.starts_with("multipart/form-data") {
        read_multipart(req, payload, state, max_images).await?
    } else if content_type.starts_with("application/json") {
        let bytes = body::read(req, payload, &state.body_limits).await?;
        let parsed: Instances = serde_json::from_str(crate::v2::json_text(&bytes)?)
            .map_err(|e| ApiError::BadRequest(format!("expected {{\"instances\": [{{\"b64\": \"...\"}}]}}: {e}")))?;
        if parsed.instances.len() > max_images {
            return Err(too_many(parsed.instances.len()));
        }
        parsed
            .instances
            .into_iter()
            .enumerate()
            .map(|(i, inst)| {
                base64::engine::general_purpose::STANDARD
                    .decode(inst.b64.trim())
                    .map(web::Bytes::from)
                    .map_err(|e| ApiError::BadRequest(format!("instance {i}: b64 is not valid base64: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type '{content_type}' is not supported; send image/*, multipart/form-data or application/json"
        )));
    };
    if images.is_empty() {
        return Err(ApiError::BadRequest("no image in the request".into()));
    }
    if images.len() > max_images {
        return Err(too_many(images.len()));
    }
    Ok(images)
}

async fn read_multipart(req: &HttpRequest, payload: web::Payload, state: &AppState, max_images: usize) -> Result<Vec<web::Bytes>, ApiError> {
    let bytes = body::read(req, payload, &state.body_limits).await?;
    let stream = futures_util::stream::once(async move { Ok::<_, actix_web::error::PayloadError>(bytes) });
    let mut form = Multipart::new(req.headers(), stream);
    let mut images = Vec::new();
    let bad = |e: actix_multipart::MultipartError| ApiError::BadRequest(format!("multipart body is invalid: {e}"));
    while let Some(mut field) = form.try_next().await.map_err(bad)? {
        let mut data = bytes::BytesMut::new();
        while let Some(chunk) = field.next().await {
            data.extend_from_slice(&chunk.map_err(bad)?);
        }
        if !data.is_empty() {
            images.push(data.freeze());
        }
        if images.len() > max_images {
            return Err(ApiError::BadRequest(format!("more than {max_images} images per request")));
        }
    }
    Ok(images)
}
