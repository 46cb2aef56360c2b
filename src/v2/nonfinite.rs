//! NaN and the infinities in JSON tensors, as Triton reads and writes them (`NaN`, `Infinity`, `-Infinity`; RapidJSON's
//! NaN-and-Inf flags). tritonclient serializes with RapidJSON too, so a JSON input holding a NaN arrives with these
//! bare tokens, and a JSON output written as `null` would turn an infinity into NaN on the client. Strict JSON stays the
//! fast path for requests: they are rewritten only when they fail to parse.

use std::io;

use half::{bf16, f16};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::ser::Formatter;
use serde_json::Value;

use crate::tensor::json::JsonData;
use crate::tensor::{DataType, TensorData};

/// What a bare token becomes inside the rewritten request: a string no float tensor accepts otherwise.
const NAN: &str = "\u{0}NaN";
const INF: &str = "\u{0}Infinity";
const NEG_INF: &str = "\u{0}-Infinity";

/// Rewrites the bare tokens `NaN`, `Inf`, `Infinity` (each optionally signed) outside strings into marker strings,
/// or `None` when there is none, so that the caller reports the original parse error.
pub fn rewrite_tokens(json: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut found = false;
    let mut in_string = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            out.push(b);
            match b {
                b'\\' if i + 1 < json.len() => {
                    out.push(json[i + 1]);
                    i += 1;
                }
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            out.push(b);
            i += 1;
            continue;
        }
        let negative = b == b'-';
        let start = if negative { i + 1 } else { i };
        let rest = &json[start..];
        let token = [(&b"Infinity"[..], false), (&b"Inf"[..], false), (&b"NaN"[..], true)]
            .into_iter()
            .find(|(t, _)| rest.starts_with(t) && !rest.get(t.len()).is_some_and(|c| c.is_ascii_alphanumeric()));
        match token {
            Some((t, is_nan)) => {
                let marker = match (is_nan, negative) {
                    (true, _) => NAN,
                    (false, false) => INF,
                    (false, true) => NEG_INF,
                };
                out.extend_from_slice(serde_json::to_string(marker).ok()?.as_bytes());
                found = true;
                i = start + t.len();
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    found.then_some(out)
}

/// Decodes a float tensor's `data` that may hold markers; `None` for any other datatype, which the caller decodes
/// as usual. Errors read like `tensor::json`'s.
pub fn decode_floats(datatype: DataType, data: &Value, expected: usize) -> Option<Result<TensorData, String>> {
    if !matches!(datatype, DataType::Fp16 | DataType::Bf16 | DataType::Fp32 | DataType::Fp64) {
        return None;
    }
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    if flat.len() != expected {
        return Some(Err(format!("holds {} elements but the shape needs {expected}", flat.len())));
    }
    let values: Result<Vec<f64>, String> = flat
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) if s == NAN => Ok(f64::NAN),
            Value::String(s) if s == INF => Ok(f64::INFINITY),
            Value::String(s) if s == NEG_INF => Ok(f64::NEG_INFINITY),
            Value::Number(n) => n.as_f64().ok_or_else(|| format!("element {i} is the number {n}, expected {datatype}")),
            _ => Err(format!("element {i} is not a number, expected {datatype}")),
        })
        .collect();
    let values = match values {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    Some(Ok(match datatype {
        DataType::Fp16 => TensorData::Fp16(values.into_iter().map(f16::from_f64).collect()),
        DataType::Bf16 => TensorData::Bf16(values.into_iter().map(bf16::from_f64).collect()),
        DataType::Fp32 => TensorData::Fp32(values.into_iter().map(|x| x as f32).collect()),
        _ => TensorData::Fp64(values),
    }))
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other),
    }
}

/// A tensor's elements as a flat JSON array whose non-finite floats pass to [`TritonFormatter`] as byte markers.
pub struct TokenData<'a>(pub &'a TensorData);

struct Element(f64);

impl Serialize for Element {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if x.is_nan() {
            serializer.serialize_bytes(NAN.as_bytes())
        } else if x == f64::INFINITY {
            serializer.serialize_bytes(INF.as_bytes())
        } else if x == f64::NEG_INFINITY {
            serializer.serialize_bytes(NEG_INF.as_bytes())
        } else {
            serializer.serialize_f64(x)
        }
    }
}

impl Serialize for TokenData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        macro_rules! floats {
            ($v:expr, $finite:expr) => {{
                let mut seq = serializer.serialize_seq(Some($v.len()))?;
                for x in $v.iter() {
                    if x.is_finite() {
                        seq.serialize_element(&$finite(*x))?;
                    } else {
                        seq.serialize_element(&Element(f64::from(*x)))?;
                    }
                }
                seq.end()
            }};
        }
        match self.0 {
            // Finite values are written exactly as `tensor::json` writes them (shortest round-trip form).
            TensorData::Fp16(v) => floats!(v, |x: f16| x.to_f32()),
            TensorData::Bf16(v) => floats!(v, |x: bf16| x.to_f32()),
            TensorData::Fp32(v) => floats!(v, |x: f32| x),
            TensorData::Fp64(v) => floats!(v, |x: f64| x),
            other => JsonData(other).serialize(serializer),
        }
    }
}

/// Compact JSON that writes the byte markers of [`TokenData`] as the bare tokens Triton and tritonclient use.
/// Nothing else in a response serializes bytes, so no other value can take this path.
pub struct TritonFormatter;

impl Formatter for TritonFormatter {
    fn write_byte_array<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: &[u8]) -> io::Result<()> {
        let token: &[u8] = match value {
            v if v == NAN.as_bytes() => b"NaN",
            v if v == INF.as_bytes() => b"Infinity",
            v if v == NEG_INF.as_bytes() => b"-Infinity",
            _ => return Err(io::Error::other("unexpected byte array in a response")),
        };
        writer.write_all(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_outside_strings_become_markers() {
        let src = br#"{"data":[NaN,-Infinity,Infinity,1.5,-Inf,Inf],"s":"NaN \" Infinity","NaNo":[-1]}"#;
        let fixed = rewrite_tokens(src).unwrap();
        let v: Value = serde_json::from_slice(&fixed).unwrap();
        assert_eq!(v["s"], "NaN \" Infinity");
        assert_eq!(v["NaNo"], json!([-1]));
        let d = decode_floats(DataType::Fp32, &v["data"], 6).unwrap().unwrap();
        let TensorData::Fp32(d) = d else { panic!() };
        assert!(d[0].is_nan());
        assert_eq!(&d[1..], &[f32::NEG_INFINITY, f32::INFINITY, 1.5, f32::NEG_INFINITY, f32::INFINITY]);
        assert!(rewrite_tokens(br#"{"a":"NaN","b":[1,2]}"#).is_none());
        assert!(rewrite_tokens(b"[Nonsense]").is_none());
        assert!(decode_floats(DataType::Int32, &v["data"], 6).is_none());
        assert!(decode_floats(DataType::Fp64, &v["data"], 5).unwrap().is_err());
    }

    #[test]
    fn non_finite_floats_are_written_as_tokens() {
        let t = TensorData::Fp32(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.1]);
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, TritonFormatter);
        json!({"x": 1}).serialize(&mut ser).unwrap();
        TokenData(&t).serialize(&mut ser).unwrap();
        TokenData(&TensorData::Fp16(vec![f16::NEG_INFINITY, f16::from_f32(0.5)])).serialize(&mut ser).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"x":1}[NaN,Infinity,-Infinity,0.1][-Infinity,0.5]"#);
    }
}
