//! Reading request bodies within the configured limit. A declared `Content-Length` over the limit is refused before
//! a byte is read; a chunked or compressed body is counted as it is inflated, so a small gzip bomb stops at the
//! limit too. A body that trickles in slower than the timeout is refused with 408.

use actix_web::dev::Decompress;
use actix_web::http::header;
use actix_web::{web, HttpRequest};
use bytes::BytesMut;
use futures_util::StreamExt;

use super::error::ApiError;

pub async fn read(req: &HttpRequest, payload: web::Payload, limits: &Limits) -> Result<web::Bytes, ApiError> {
    let timeout = limits.timeout;
    tokio::time::timeout(timeout, read_within(req, payload, limits.max_bytes)).await.unwrap_or_else(|_| {
        Err(ApiError::RequestTimeout(format!("request body not received within {} s", timeout.as_secs())))
    })
}

/// The body limits of one server, from its settings.
pub struct Limits {
    pub max_bytes: usize,
    pub timeout: std::time::Duration,
}

async fn read_within(req: &HttpRequest, payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let too_large = |n: String| ApiError::PayloadTooLarge(format!("request body of {n} bytes exceeds the limit of {limit} bytes"));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        return Err(too_large(n.to_string()));
    }
    if let Some(enc) = req.headers().get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(enc.as_str(), "" | "identity" | "gzip" | "deflate") {
            return Err(ApiError::UnsupportedMediaType(format!("Content-Encoding '{enc}' is not supported; use gzip or deflate")));
        }
    }
    let mut stream = Decompress::from_headers(payload.into_inner(), req.headers());
    let mut body = BytesMut::with_capacity(declared.map_or(8192, |n| n as usize));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("request body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(format!("more than {limit}")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
