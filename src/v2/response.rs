//! Encoding inference results: a JSON header, then the raw bytes of each output the client asked to have in binary,
//! in header order. When nothing is binary the body is plain JSON and no length header is sent.

use serde::Serialize;
use serde_json::{Map, Value};

use super::classify::classification_tensor;
use super::nonfinite::{TokenData, TritonFormatter};
use super::request::OutputRequest;
use super::ProtocolError;
use crate::tensor::binary::{encode_into, encoded_len};
use crate::tensor::Tensor;

#[derive(Serialize)]
struct Header<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputHeader<'a>>,
}

#[derive(Serialize)]
struct OutputHeader<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<TokenData<'a>>,
}

pub struct Encoded {
    pub body: Vec<u8>,
    /// Length of the JSON part when binary data follows it.
    pub json_len: Option<usize>,
}

pub struct Context<'a> {
    pub model: &'a str,
    pub version: u64,
    pub id: Option<&'a str>,
    pub rows: usize,
    pub batched: bool,
    pub labels: &'a [String],
}

/// Picks, transforms (classification) and encodes the requested outputs.
pub fn encode(ctx: &Context<'_>, outputs: Vec<Tensor>, requested: &[OutputRequest]) -> Result<Encoded, ProtocolError> {
    let mut chosen: Vec<(Tensor, bool)> = Vec::with_capacity(requested.len());
    for req in requested {
        let t = outputs
            .iter()
            .find(|t| t.name == req.name)
            .ok_or_else(|| ProtocolError::new(format!("output '{}' was not produced", req.name)))?;
        let t = match req.classification {
            Some(k) => classification_tensor(t, ctx.rows, ctx.batched, k, ctx.labels)
                .ok_or_else(|| ProtocolError::new(format!("output '{}' holds BYTES and cannot be classified", req.name)))?,
            None => t.clone(),
        };
        chosen.push((t, req.binary));
    }
    let header = Header {
        model_name: ctx.model,
        model_version: ctx.version.to_string(),
        id: ctx.id,
        outputs: chosen
            .iter()
            .map(|(t, binary)| OutputHeader {
                name: &t.name,
                datatype: t.datatype().as_str(),
                shape: &t.shape,
                parameters: binary.then(|| {
                    let mut p = Map::new();
                    p.insert("binary_data_size".into(), Value::from(encoded_len(&t.data)));
                    p
                }),
                data: (!binary).then_some(TokenData(&t.data)),
            })
            .collect(),
    };
    // Triton's JSON: NaN and the infinities as bare tokens, where serde_json alone would write null.
    let mut body = Vec::with_capacity(256);
    header
        .serialize(&mut serde_json::Serializer::with_formatter(&mut body, TritonFormatter))
        .map_err(|e| ProtocolError::new(format!("response encoding failed: {e}")))?;
    let json_len = body.len();
    let any_binary = chosen.iter().any(|(_, b)| *b);
    for (t, _) in chosen.iter().filter(|(_, b)| *b) {
        encode_into(&t.data, &mut body);
    }
    Ok(Encoded { body, json_len: any_binary.then_some(json_len) })
}
