//! NaN and the infinities in JSON tensors, as Triton reads and writes them (`NaN`, `Infinity`, `-Infinity`; RapidJSON's
//! NaN-and-Inf flags). tritonclient serializes with RapidJSON too, so a JSON input holding a NaN arrives with these
//! bare tokens, and a JSON output written as `null` would turn an infinity into NaN on the client. Strict JSON stays the
//! fast path for requests: they are rewritten only when they fail to parse.

use std::io;
use std::sync::LazyLock;

use half::{bf16, f16};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::ser::Formatter;

use crate::tensor::json::{self, JsonData, JsonDataError};
use crate::tensor::{DataType, TensorData};

/// What a bare token becomes inside the rewritten request: a string no float tensor accepts otherwise.
const NAN: &str = "\u{0}NaN";
const INF: &str = "\u{0}Infinity";
const NEG_INF: &str = "\u{0}-Infinity";

/// The markers as they are written into the rewritten request (JSON strings), with the values they stand for.
static MARKER_TEXT: LazyLock<[(String, f64); 3]> = LazyLock::new(|| {
    [(NAN, f64::NAN), (INF, f64::INFINITY), (NEG_INF, f64::NEG_INFINITY)].map(|(m, x)| (serde_json::Value::from(m).to_string(), x))
});

/// Rewrites the bare tokens `NaN`, `Inf`, `Infinity` (each optionally signed) outside strings into marker strings
/// and counts them, or `None` when there is none, so that the caller reports the original parse error. A body that
/// already holds an escaped NUL is not rewritten: one of its strings could pass for a marker.
pub fn rewrite_tokens(json: &[u8]) -> Option<(Vec<u8>, usize)> {
    if json.windows(6).any(|w| w == b"\\u0000") {
        return None;
    }
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut found = 0;
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
                    (true, _) => 0,
                    (false, false) => 1,
                    (false, true) => 2,
                };
                out.extend_from_slice(MARKER_TEXT[marker].0.as_bytes());
                found += 1;
                i = start + t.len();
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    (found > 0).then_some((out, found))
}

/// Decodes a tensor's `data` text that may hold markers, with the number of markers it held. Markers count only as
/// elements of float tensors; numbers follow `tensor::json`'s rules, and so do its errors.
pub fn decode_with_markers(datatype: DataType, text: &str, expected: usize) -> Result<(TensorData, usize), JsonDataError> {
    let special = |leaf: &str| MARKER_TEXT.iter().find(|(m, _)| m == leaf).map(|&(_, x)| x);
    json::decode_text_with(datatype, text, expected, &special)
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
    use serde_json::{json, Value};

    #[test]
    fn tokens_outside_strings_become_markers() {
        let src = br#"{"data":[NaN,-Infinity,Infinity,1.5,-Inf,Inf],"s":"NaN \" Infinity","NaNo":[-1]}"#;
        let (fixed, count) = rewrite_tokens(src).unwrap();
        assert_eq!(count, 5);
        let v: Value = serde_json::from_slice(&fixed).unwrap();
        assert_eq!(v["s"], "NaN \" Infinity");
        assert_eq!(v["NaNo"], json!([-1]));
        let data = v["data"].to_string();
        let (d, markers) = decode_with_markers(DataType::Fp32, &data, 6).unwrap();
        assert_eq!(markers, 5);
        let TensorData::Fp32(d) = d else { panic!() };
        assert!(d[0].is_nan());
        assert_eq!(&d[1..], &[f32::NEG_INFINITY, f32::INFINITY, 1.5, f32::NEG_INFINITY, f32::INFINITY]);
        assert!(rewrite_tokens(br#"{"a":"NaN","b":[1,2]}"#).is_none());
        assert!(rewrite_tokens(b"[Nonsense]").is_none());
        assert!(decode_with_markers(DataType::Int32, &data, 6).is_err(), "markers are not integers");
        assert!(decode_with_markers(DataType::Fp64, &data, 5).is_err());
    }

    #[test]
    fn numbers_beside_tokens_keep_the_usual_rules() {
        let (fixed, _) = rewrite_tokens(b"[NaN, 1e39]").unwrap();
        let text = String::from_utf8(fixed).unwrap();
        let err = decode_with_markers(DataType::Fp32, &text, 2).unwrap_err().to_string();
        assert!(err.starts_with("element 1 is the number 1e") && err.ends_with("expected FP32"), "{err}");
        assert!(decode_with_markers(DataType::Fp64, &text, 2).is_ok());
        assert!(rewrite_tokens(br#"{"data": [NaN, "\u0000NaN"]}"#).is_none(), "a string could pass for a marker");
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
