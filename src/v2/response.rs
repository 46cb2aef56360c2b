//! Encoding inference results: a JSON header, then the raw bytes of each output the client asked to have in binary,
//! in header order. When nothing is binary the body is plain JSON and no length header is sent.

use serde::Serialize;
use serde_json::{Map, Value};

use super::classify::classification_tensor;
use super::nonfinite::{TokenData, TritonFormatter};
use super::request::OutputRequest;
use super::ProtocolError;
use crate::shm::Regions;
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
    /// Where outputs asked for in shared memory are written.
    pub shm: &'a Regions,
}

/// How one chosen output travels back.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    Json,
    Binary,
    /// Already written to shared memory. Its header has neither data nor parameters, as Triton's: the C++ client
    /// reads any `parameters` of an output as binary data in the body.
    Shm,
}

/// Picks, transforms (classification) and encodes the requested outputs.
pub fn encode(ctx: &Context<'_>, outputs: Vec<Tensor>, requested: &[OutputRequest]) -> Result<Encoded, ProtocolError> {
    let mut chosen: Vec<(Tensor, Form)> = Vec::with_capacity(requested.len());
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
        let form = match &req.shm {
            Some(r) => {
                let mut bytes = Vec::with_capacity(encoded_len(&t.data));
                encode_into(&t.data, &mut bytes);
                ctx.shm
                    .write(&r.region, r.offset, r.byte_size, &bytes)
                    .map_err(|e| ProtocolError::new(format!("output '{}': {e}", req.name)))?;
                Form::Shm
            }
            None if req.binary => Form::Binary,
            None => Form::Json,
        };
        chosen.push((t, form));
    }
    let header = Header {
        model_name: ctx.model,
        model_version: ctx.version.to_string(),
        id: ctx.id,
        outputs: chosen
            .iter()
            .map(|(t, form)| OutputHeader {
                name: &t.name,
                datatype: t.datatype().as_str(),
                shape: &t.shape,
                parameters: (*form == Form::Binary).then(|| {
                    let mut p = Map::new();
                    p.insert("binary_data_size".into(), Value::from(encoded_len(&t.data)));
                    p
                }),
                data: (*form == Form::Json).then_some(TokenData(&t.data)),
            })
            .collect(),
    };
    // Triton's JSON: NaN and the infinities as bare tokens, where serde_json alone would write null.
    let mut body = Vec::with_capacity(256);
    header
        .serialize(&mut serde_json::Serializer::with_formatter(&mut body, TritonFormatter))
        .map_err(|e| ProtocolError::new(format!("response encoding failed: {e}")))?;
    let json_len = body.len();
    let any_binary = chosen.iter().any(|(_, form)| *form == Form::Binary);
    for (t, _) in chosen.iter().filter(|(_, form)| *form == Form::Binary) {
        encode_into(&t.data, &mut body);
    }
    Ok(Encoded { body, json_len: any_binary.then_some(json_len) })
}
