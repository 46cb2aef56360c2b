//! Parsing `POST .../infer` bodies. Every count, length and offset is checked against the model's signature and the
//! body before use, so a malformed request is a 400 naming the tensor at fault, never a panic or an allocation
//! the body did not pay for.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{nonfinite, ProtocolError};
use crate::repository::config::TensorSpec;
use crate::repository::loader::Signature;
use crate::shm::Regions;
use crate::tensor::{binary, element_count, json, DataType, Tensor, TensorData};

#[derive(Debug, Deserialize)]
struct Header<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow)]
    inputs: Vec<InputHeader<'a>>,
    #[serde(default)]
    outputs: Option<Vec<OutputHeader>>,
}

#[derive(Debug, Deserialize)]
struct InputHeader<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    /// Kept as text and read once the datatype and element count are known (`tensor::json::decode_text`).
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
struct OutputHeader {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// How one requested output is to be returned.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputRequest {
    pub name: String,
    pub binary: bool,
    /// Top-N as "score:index:label" strings (classification extension).
    pub classification: Option<usize>,
    /// Written into this shared memory range instead of the response body.
    pub shm: Option<ShmRange>,
}

/// A range of a registered shared memory region, as a tensor's `shared_memory_*` parameters name it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShmRange {
    pub region: String,
    pub offset: usize,
    pub byte_size: usize,
}

#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Rows along the batch axis (1 for models that do not batch).
    pub rows: usize,
    pub outputs: Vec<OutputRequest>,
}

/// What a request is parsed against: the serving version's signature and batch limit, and the shared memory
/// regions its tensors may name.
pub struct Target<'a> {
    pub sig: &'a Signature,
    pub max_batch: usize,
    pub shm: &'a Regions,
}

/// Parses a body whose JSON part is `json_len` bytes (`None`: the whole body is JSON).
pub fn parse(body: &[u8], json_len: Option<usize>, target: &Target) -> Result<InferRequest, ProtocolError> {
    let (sig, max_batch) = (target.sig, target.max_batch);
    match json_len {
        Some(0) => parse_raw(body, sig, max_batch),
        Some(n) if n > body.len() => Err(ProtocolError::new(format!(
            "Inference-Header-Content-Length is {n} but the body has only {} bytes",
            body.len()
        ))),
        Some(n) => parse_with_binary(&body[..n], &body[n..], target),
        None => parse_with_binary(body, &[], target),
    }
}

fn parse_with_binary(json_part: &[u8], mut binary_part: &[u8], target: &Target) -> Result<InferRequest, ProtocolError> {
    let (sig, max_batch) = (target.sig, target.max_batch);
    let fixed: Vec<u8>;
    let text = super::json_text(json_part)?;
    // `tokens`: how many bare NaN/Infinity tokens the body held; each must turn out to be an element of float data.
    let (header, tokens): (Header, usize) = match serde_json::from_str(text) {
        Ok(h) => (h, 0),
        // tritonclient writes NaN and the infinities as RapidJSON does; only then is the body read a second time.
        Err(e) => {
            let count;
            (fixed, count) = nonfinite::rewrite_tokens(json_part)
                .ok_or_else(|| ProtocolError::new(format!("request JSON is invalid: {e}")))?;
            match serde_json::from_slice(&fixed) {
                Ok(h) => (h, count),
                Err(_) => return Err(ProtocolError::new(format!("request JSON is invalid: {e}"))),
            }
        }
    };
    let mut tokens_used = 0;
    let mut inputs = Vec::with_capacity(header.inputs.len());
    let mut rows: Option<usize> = None;
    for (i, input) in header.inputs.iter().enumerate() {
        if header.inputs[..i].iter().any(|p| p.name == input.name) {
            return Err(ProtocolError::new(format!("input '{}' is given twice", input.name)));
        }
        let spec = sig.inputs.iter().find(|s| s.name == input.name).ok_or_else(|| {
            ProtocolError::new(format!("unexpected input '{}'; the model takes {}", input.name, names(&sig.inputs)))
        })?;
        let datatype = DataType::parse(&input.datatype)
            .ok_or_else(|| ProtocolError::new(format!("input '{}': unknown datatype '{}'", input.name, input.datatype)))?;
        if datatype != spec.datatype {
            return Err(ProtocolError::new(format!(
                "input '{}': datatype {} does not match the model's {}",
                input.name, datatype, spec.datatype
            )));
        }
        let r = check_shape(&input.name, &input.shape, spec, max_batch)?;
        if *rows.get_or_insert(r) != r {
            return Err(ProtocolError::new(format!("input '{}': batch size {r} differs from the other inputs'", input.name)));
        }
        let count = element_count(&input.shape)
            .ok_or_else(|| ProtocolError::new(format!("input '{}': shape {:?} is too large", input.name, input.shape)))?;
        let binary_size = binary_data_size(input)?;
        let shm = shm_range(input.parameters.as_ref(), || format!("input '{}'", input.name))?;
        let data = match (shm, binary_size, &input.data) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(ProtocolError::new(format!(
                    "input '{}' has shared_memory_region together with data or binary_data_size",
                    input.name
                )))
            }
            (None, Some(_), Some(_)) => {
                return Err(ProtocolError::new(format!("input '{}' has both data and binary_data_size", input.name)))
            }
            (None, None, None) => {
                return Err(ProtocolError::new(format!(
                    "input '{}' has none of data, binary_data_size and shared_memory_region",
                    input.name
                )))
            }
            (None, None, Some(raw)) => {
                let (data, used) = json_data(input, datatype, raw, count, tokens > 0)?;
                tokens_used += used;
                data
            }
            (None, Some(size), None) => {
                if size > binary_part.len() {
                    return Err(ProtocolError::new(format!(
                        "input '{}': binary_data_size {size} exceeds the {} bytes left in the body",
                        input.name,
                        binary_part.len()
                    )));
                }
                let (bytes, rest) = binary_part.split_at(size);
                binary_part = rest;
                raw_data(&input.name, "binary data", datatype, bytes, count)?
            }
            (Some(r), None, None) => shm_data(target.shm, &r, &input.name, datatype, count)?,
        };
        inputs.push(Tensor { name: input.name.clone(), shape: input.shape.clone(), data });
    }
    if tokens_used != tokens {
        return Err(ProtocolError::new(
            "request JSON is invalid: NaN and Infinity are accepted only as elements of FP16, BF16, FP32 or FP64 input data",
        ));
    }
    if !binary_part.is_empty() {
        return Err(ProtocolError::new(format!(
            "{} bytes after the last binary input are not claimed by any binary_data_size",
            binary_part.len()
        )));
    }
    if let Some(missing) = sig.inputs.iter().find(|s| !header.inputs.iter().any(|i| i.name == s.name)) {
        return Err(ProtocolError::new(format!("input '{}' is missing", missing.name)));
    }
    let outputs = output_requests(&header, sig)?;
    Ok(InferRequest { id: header.id.filter(|s| !s.is_empty()), inputs, rows: rows.unwrap_or(1), outputs })
}

/// Decodes raw little-endian bytes (from the body or from shared memory) as an input's data.
fn raw_data(name: &str, source: &str, datatype: DataType, bytes: &[u8], count: usize) -> Result<TensorData, ProtocolError> {
    let data = binary::decode(datatype, bytes, count).map_err(|e| ProtocolError::new(format!("input '{name}': {source} {e}")))?;
    check_utf8(name, &data)?;
    Ok(data)
}

/// Reads an input's data from shared memory: straight into the tensor's buffer when its elements are plain
/// little-endian numbers, otherwise through the binary decoder.
fn shm_data(shm: &Regions, r: &ShmRange, name: &str, datatype: DataType, count: usize) -> Result<TensorData, ProtocolError> {
    let shm_err = |e: crate::shm::ShmError| ProtocolError::new(format!("input '{name}': {e}"));
    let region = shm.get(&r.region).map_err(shm_err)?;
    // Before anything is allocated: the range must lie in the region, and the region in the object.
    region.check(r.offset, r.byte_size).map_err(shm_err)?;
    if let Some(size) = datatype.size() {
        let needed = count.saturating_mul(size);
        if needed != r.byte_size {
            let e = binary::BinaryDataError::WrongSize { found: r.byte_size, expected: count, datatype, needed };
            return Err(ProtocolError::new(format!("input '{name}': shared memory data {e}")));
        }
        // `count` is now bounded by bytes the object really holds.
        let mut data = TensorData::zeros(datatype, count);
        if let Some(buf) = data.le_bytes_mut() {
            region.read_into(r.offset, buf).map_err(shm_err)?;
            return Ok(data);
        }
    }
    let mut bytes = vec![0u8; r.byte_size];
    region.read_into(r.offset, &mut bytes).map_err(shm_err)?;
    raw_data(name, "shared memory data", datatype, &bytes, count)
}

/// Reads an input's JSON `data`, with the number of NaN/Infinity markers it held; `tokens`: the body held such
/// tokens, now marker strings.
fn json_data(input: &InputHeader, datatype: DataType, raw: &RawValue, count: usize, tokens: bool) -> Result<(TensorData, usize), ProtocolError> {
    let decoded = if tokens {
        nonfinite::decode_with_markers(datatype, raw.get(), count)
    } else {
        json::decode_text(datatype, raw.get(), count).map(|d| (d, 0))
    };
    decoded.map_err(|e| ProtocolError::new(format!("input '{}': data {e}", input.name)))
}

/// `Inference-Header-Content-Length: 0`: the body is one input's raw bytes; all outputs come back binary.
fn parse_raw(body: &[u8], sig: &Signature, max_batch: usize) -> Result<InferRequest, ProtocolError> {
    let [spec] = sig.inputs.as_slice() else {
        return Err(ProtocolError::new("a raw binary body (Inference-Header-Content-Length: 0) needs a model with exactly one input"));
    };
    let row_elems = element_count(&spec.dims)
        .filter(|_| spec.dims.iter().all(|&d| d > 0))
        .ok_or_else(|| ProtocolError::new("a raw binary body needs an input with fixed dimensions"))?;
    let size = spec.datatype.size().ok_or_else(|| ProtocolError::new("a raw binary body cannot carry BYTES"))?;
    let row_bytes = row_elems * size;
    let rows = if max_batch > 0 { body.len() / row_bytes.max(1) } else { 1 };
    if body.is_empty() || rows * row_bytes != body.len() || (max_batch > 0 && rows > max_batch) {
        return Err(ProtocolError::new(format!(
            "raw body of {} bytes is not a whole number (1..={}) of {row_bytes}-byte rows of input '{}'",
            body.len(),
            max_batch.max(1),
            spec.name
        )));
    }
    let mut shape = spec.dims.clone();
    if max_batch > 0 {
        shape.insert(0, rows as i64);
    }
    let data = binary::decode(spec.datatype, body, rows * row_elems).map_err(|e| ProtocolError::new(e.to_string()))?;
    let outputs = sig.outputs.iter().map(|o| OutputRequest { name: o.name.clone(), binary: true, classification: None, shm: None }).collect();
    Ok(InferRequest { id: None, inputs: vec![Tensor { name: spec.name.clone(), shape, data }], rows, outputs })
}

/// ONNX string tensors hold UTF-8 text, so other bytes are the request's fault, not a runtime failure.
/// (JSON strings are UTF-8 already; only binary BYTES need the check.)
fn check_utf8(name: &str, data: &TensorData) -> Result<(), ProtocolError> {
    let TensorData::Bytes(elements) = data else { return Ok(()) };
    match elements.iter().position(|e| std::str::from_utf8(e).is_err()) {
        None => Ok(()),
        Some(i) => Err(ProtocolError::new(format!("input '{name}': BYTES element {i} is not valid UTF-8, which ONNX string tensors require"))),
    }
}

/// Returns the batch rows the shape carries.
fn check_shape(name: &str, shape: &[i64], spec: &TensorSpec, max_batch: usize) -> Result<usize, ProtocolError> {
    let (rows, rest) = if max_batch > 0 {
        match shape.split_first() {
            Some((&r, rest)) if r >= 1 && r as usize <= max_batch => (r as usize, rest),
            Some((&r, _)) => {
                return Err(ProtocolError::new(format!("input '{name}': batch size {r} is outside 1..={max_batch}")))
            }
            None => return Err(ProtocolError::new(format!("input '{name}': shape is empty but the model batches"))),
        }
    } else {
        (1, shape)
    };
    let fits = rest.len() == spec.dims.len() && rest.iter().zip(&spec.dims).all(|(&got, &want)| got >= 0 && (want < 0 || got == want));
    if !fits {
        let mut expected: Vec<i64> = spec.dims.clone();
        if max_batch > 0 {
            expected.insert(0, -1);
        }
        return Err(ProtocolError::new(format!("input '{name}': shape {shape:?} does not match the model's {expected:?}")));
    }
    Ok(rows)
}

fn binary_data_size(input: &InputHeader) -> Result<Option<usize>, ProtocolError> {
    match input.parameters.as_ref().and_then(|p| p.get("binary_data_size")) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| ProtocolError::new(format!("input '{}': binary_data_size must be a non-negative integer", input.name))),
    }
}

/// A tensor's `shared_memory_region`, `shared_memory_byte_size` and `shared_memory_offset` parameters, if it has
/// the first; the size is then required, as in Triton.
fn shm_range(params: Option<&Map<String, Value>>, what: impl Fn() -> String) -> Result<Option<ShmRange>, ProtocolError> {
    let Some(params) = params else { return Ok(None) };
    let Some(region) = params.get("shared_memory_region") else { return Ok(None) };
    let region = region
        .as_str()
        .ok_or_else(|| ProtocolError::new(format!("{}: shared_memory_region must be a string", what())))?;
    let size = |key: &str, required: bool| -> Result<usize, ProtocolError> {
        match params.get(key) {
            None if !required => Ok(0),
            None => Err(ProtocolError::new(format!("{}: shared_memory_region needs {key}", what()))),
            Some(v) => super::whole_number(v)
                .ok_or_else(|| ProtocolError::new(format!("{}: {key} must be a non-negative integer", what()))),
        }
    };
    Ok(Some(ShmRange {
        region: region.to_string(),
        byte_size: size("shared_memory_byte_size", true)?,
        offset: size("shared_memory_offset", false)?,
    }))
}

fn output_requests(header: &Header, sig: &Signature) -> Result<Vec<OutputRequest>, ProtocolError> {
    let default_binary = match header.parameters.as_ref().and_then(|p| p.get("binary_data_output")) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ProtocolError::new("parameters.binary_data_output must be a boolean")),
    };
    // No outputs, or an empty list, asks for all of them.
    let Some(requested) = header.outputs.as_ref().filter(|o| !o.is_empty()) else {
        return Ok(sig.outputs.iter().map(|o| OutputRequest { name: o.name.clone(), binary: default_binary, classification: None, shm: None }).collect());
    };
    requested
        .iter()
        .map(|o| {
            if !sig.outputs.iter().any(|s| s.name == o.name) {
                return Err(ProtocolError::new(format!("unexpected output '{}'; the model has {}", o.name, names(&sig.outputs))));
            }
            let params = o.parameters.as_ref();
            let binary = match params.and_then(|p| p.get("binary_data")) {
                None => default_binary,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(ProtocolError::new(format!("output '{}': binary_data must be a boolean", o.name))),
            };
            let classification = match params.and_then(|p| p.get("classification")) {
                None => None,
                Some(v) => Some(v.as_u64().filter(|&n| n >= 1).map(|n| n as usize).ok_or_else(|| {
                    ProtocolError::new(format!("output '{}': classification must be a positive integer", o.name))
                })?),
            };
            let shm = shm_range(params, || format!("output '{}'", o.name))?;
            Ok(OutputRequest { name: o.name.clone(), binary, classification, shm })
        })
        .collect()
}

fn names(specs: &[TensorSpec]) -> String {
    specs.iter().map(|s| format!("'{}'", s.name)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
