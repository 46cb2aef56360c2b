//! `POST /v2/models/{m}[/versions/{v}]/infer`: the raw body is read whatever its Content-Type (clients send
//! octet-stream for binary tensors), split by `Inference-Header-Content-Length`, parsed against the serving
//! version's signature, queued, and encoded back in the form each output was asked for.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::{body, AppState, Accounting, ModelPath};
use crate::repository::ModelVersion;
use crate::v2::{request, response, HEADER_LENGTH};

pub async fn infer(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<ModelPath>,
) -> Result<HttpResponse, ApiError> {
    let mut acct = Accounting::start(&path.model, "v2_infer");
    let mv = state.registry.resolve(&path.model, path.version.as_deref());
    let result = match &mv {
        Ok(mv) => {
            acct.version(mv.version);
            run(&req, payload, &state, mv).await
        }
        Err(e) => Err(e.clone().into()),
    };
    if let Ok(mv) = &mv {
        let stat = if result.is_ok() { &mv.stats.success } else { &mv.stats.fail };
        stat.add(1, acct.elapsed());
    }
    acct.finish(&result);
    result
}

async fn run(req: &HttpRequest, payload: web::Payload, state: &AppState, mv: &ModelVersion) -> Result<HttpResponse, ApiError> {
    let json_len = match req.headers().get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| ApiError::BadRequest("Inference-Header-Content-Length must be a non-negative integer".into()))?,
        ),
    };
    let arrival = mv.scheduler.arriving();
    let bytes = body::read(req, payload, &state.body_limits).await?;
    let max_batch = mv.config.max_batch_size;
    let target = request::Target { sig: &mv.signature, max_batch, shm: &state.shm };
    let parsed = request::parse(&bytes, json_len, &target)?;
    drop(bytes);
    let (outputs, _timings) = mv.scheduler.infer_announced(Some(arrival), parsed.inputs, parsed.rows).await?;
    let ctx = response::Context {
        model: &mv.name,
        version: mv.version,
        id: parsed.id.as_deref(),
        rows: parsed.rows,
        batched: max_batch > 0,
        labels: &mv.labels,
        shm: &state.shm,
    };
    let encoded = response::encode(&ctx, outputs, &parsed.outputs)?;
    let mut res = HttpResponse::Ok();
    match encoded.json_len {
        Some(n) => {
            res.insert_header((HEADER_LENGTH, n.to_string())).insert_header((header::CONTENT_TYPE, "application/octet-stream"));
        }
        None => {
            res.insert_header((header::CONTENT_TYPE, "application/json"));
        }
    }
    Ok(res.body(encoded.body))
}
