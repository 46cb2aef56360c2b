//! The Open Inference Protocol's inference messages: parsing a request body (JSON, or JSON header plus binary
//! tensors) against a model's signature, and encoding the response the same two ways. Independent of HTTP so that
//! the parser can be property-tested on raw bytes.

pub mod classify;
pub mod nonfinite;
pub mod request;
pub mod response;

/// Everything wrong with an inference request is the client's to fix: a 400 with this message.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// A JSON body as text. Checked whole, because serde skips the fields it does not know without looking inside them,
/// so invalid UTF-8 there would otherwise pass.
pub fn json_text(body: &[u8]) -> Result<&str, ProtocolError> {
    std::str::from_utf8(body).map_err(|e| ProtocolError::new(format!("request JSON is not valid UTF-8 (at byte {})", e.valid_up_to())))
}

/// A non-negative integer, also when written `779.0`: JSON does not tell the two apart (JSON Schema's `integer`
/// accepts both), and a client that computes sizes in floating point sends the second.
pub fn whole_number(v: &serde_json::Value) -> Option<usize> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && (0.0..u64::MAX as f64).contains(f)).map(|f| f as u64))
        .and_then(|n| usize::try_from(n).ok())
}

/// The header that splits a body into its JSON part and the binary tensors after it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";
