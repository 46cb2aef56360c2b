//! JSON tensor data: the `data` field of a V2 input (flat or nested, row-major) into typed elements, and typed
//! elements back out as a flat JSON array. Strict on types: a float where an integer is expected is a 400, not a cast.
//!
//! A JSON image tensor holds about 150 000 numbers, so the text is read straight into the typed vector; building a
//! `serde_json::Value` per number first took several times as long. That tree is built only when the fast read
//! fails, to name the element at fault.

use half::{bf16, f16};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::Value;

use super::{DataType, TensorData};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JsonDataError {
    #[error("element {index} is {found}, expected {expected}")]
    WrongType { index: usize, found: String, expected: DataType },
    #[error("holds {found} elements but the shape needs {expected}")]
    WrongLength { found: usize, expected: usize },
    #[error("is not valid JSON: {0}")]
    Invalid(String),
}

/// Parses the JSON text of `data` for a tensor of `datatype` that must hold exactly `expected` elements.
pub fn decode_text(datatype: DataType, text: &str, expected: usize) -> Result<TensorData, JsonDataError> {
    if let Some(data) = fast(datatype, text, expected) {
        return Ok(data);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| JsonDataError::Invalid(e.to_string()))?;
    decode(datatype, &value, expected)
}

/// The typed read; `None` on anything unexpected (wrong type, out of range, wrong count, strings), which the
/// caller then reports through the slow path.
fn fast(datatype: DataType, text: &str, expected: usize) -> Option<TensorData> {
    Some(match datatype {
        DataType::Bool => TensorData::Bool(typed(text, expected)?),
        DataType::Uint8 => TensorData::Uint8(typed(text, expected)?),
        DataType::Uint16 => TensorData::Uint16(typed(text, expected)?),
        DataType::Uint32 => TensorData::Uint32(typed(text, expected)?),
        DataType::Uint64 => TensorData::Uint64(typed(text, expected)?),
        DataType::Int8 => TensorData::Int8(typed(text, expected)?),
        DataType::Int16 => TensorData::Int16(typed(text, expected)?),
        DataType::Int32 => TensorData::Int32(typed(text, expected)?),
        DataType::Int64 => TensorData::Int64(typed(text, expected)?),
        DataType::Fp16 => TensorData::Fp16(typed(text, expected)?),
        DataType::Bf16 => TensorData::Bf16(typed(text, expected)?),
        DataType::Fp32 => TensorData::Fp32(typed(text, expected)?),
        DataType::Fp64 => TensorData::Fp64(typed(text, expected)?),
        DataType::Bytes => return None,
    })
}

fn typed<T: Element>(text: &str, expected: usize) -> Option<Vec<T>> {
    // Every element takes at least two characters ("1,"), so a shape the text cannot fill reserves nothing big.
    let mut out = Vec::with_capacity(expected.min(text.len() / 2 + 1));
    let bytes = text.as_bytes();
    let mut i = 0;
    // The text is valid JSON (the request parser checked it), so outside the scalars there are only brackets,
    // commas and whitespace; nesting is flattened as `decode` does. A string, an object or a null fails to parse
    // as an element and sends the caller to the slow path.
    while i < bytes.len() {
        match bytes[i] {
            b'[' | b']' | b',' | b' ' | b'\n' | b'\r' | b'\t' => i += 1,
            _ => {
                let (v, used) = T::parse(&bytes[i..])?;
                if used == 0 || out.len() == expected {
                    return None;
                }
                out.push(v);
                i += used;
            }
        }
    }
    (out.len() == expected).then_some(out)
}

/// One JSON element type, read from the front of the remaining text with the same rules as [`decode`]: integers
/// must be written as integers and fit, floats must stay finite. Returns the value and the bytes it took.
trait Element: Sized {
    fn parse(text: &[u8]) -> Option<(Self, usize)>;
}

impl Element for bool {
    fn parse(text: &[u8]) -> Option<(Self, usize)> {
        if text.starts_with(b"true") {
            Some((true, 4))
        } else if text.starts_with(b"false") {
            Some((false, 5))
        } else {
            None
        }
    }
}

/// JSON writes negative zero as "-0", which `decode` reads as a float; an integer tensor refuses it.
macro_rules! int_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn parse(text: &[u8]) -> Option<(Self, usize)> {
                let (v, used) = lexical_core::parse_partial::<$t>(text).ok()?;
                let after = text.get(used).copied().unwrap_or(b']');
                (!matches!(after, b'.' | b'e' | b'E') && !text.starts_with(b"-0")).then_some((v, used))
            }
        }
    )*};
}
int_element!(u8, u16, u32, u64, i8, i16, i32, i64);

macro_rules! float_element {
    ($($t:ty => $conv:expr),*) => {$(
        impl Element for $t {
            fn parse(text: &[u8]) -> Option<(Self, usize)> {
                let (x, used) = lexical_core::parse_partial::<f64>(text).ok()?;
                let conv: fn(f64) -> $t = $conv;
                Some((conv(x), used)).filter(|(v, _)| v.is_finite())
            }
        }
    )*};
}
float_element!(f16 => f16::from_f64, bf16 => bf16::from_f64, f32 => |x| x as f32, f64 => |x| x);

/// Parses `data` for a tensor of `datatype` that must hold exactly `expected` elements.
pub fn decode(datatype: DataType, data: &Value, expected: usize) -> Result<TensorData, JsonDataError> {
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    if flat.len() != expected {
        return Err(JsonDataError::WrongLength { found: flat.len(), expected });
    }
    let bad = |index: usize, v: &Value| JsonDataError::WrongType { index, found: describe(v), expected: datatype };

    macro_rules! ints {
        ($variant:ident, $t:ty, $get:ident) => {
            TensorData::$variant(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| v.$get().and_then(|x| <$t>::try_from(x).ok()).ok_or_else(|| bad(i, v)))
                    .collect::<Result<_, _>>()?,
            )
        };
    }
    macro_rules! floats {
        // A number beyond the type's range is refused rather than turned into infinity (JSON numbers are finite).
        ($variant:ident, $conv:expr) => {
            TensorData::$variant(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| v.as_f64().map($conv).filter(|x| x.is_finite()).ok_or_else(|| bad(i, v)))
                    .collect::<Result<_, _>>()?,
            )
        };
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(
            flat.iter().enumerate().map(|(i, v)| v.as_bool().ok_or_else(|| bad(i, v))).collect::<Result<_, _>>()?,
        ),
        DataType::Uint8 => ints!(Uint8, u8, as_u64),
        DataType::Uint16 => ints!(Uint16, u16, as_u64),
        DataType::Uint32 => ints!(Uint32, u32, as_u64),
        DataType::Uint64 => ints!(Uint64, u64, as_u64),
        DataType::Int8 => ints!(Int8, i8, as_i64),
        DataType::Int16 => ints!(Int16, i16, as_i64),
        DataType::Int32 => ints!(Int32, i32, as_i64),
        DataType::Int64 => ints!(Int64, i64, as_i64),
        DataType::Fp16 => floats!(Fp16, f16::from_f64),
        DataType::Bf16 => floats!(Bf16, bf16::from_f64),
        DataType::Fp32 => floats!(Fp32, |x| x as f32),
        DataType::Fp64 => floats!(Fp64, |x| x),
        DataType::Bytes => TensorData::Bytes(
            flat.iter()
                .enumerate()
                .map(|(i, v)| v.as_str().map(|s| s.as_bytes().to_vec()).ok_or_else(|| bad(i, v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) | Value::Object(_) => "an object".into(),
    }
}

/// Serializes elements as a flat JSON array without building a `serde_json::Value` per element.
pub struct JsonData<'a>(pub &'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        match self.0 {
            TensorData::Fp16(v) => v.iter().try_for_each(|x| seq.serialize_element(&x.to_f32()))?,
            TensorData::Bf16(v) => v.iter().try_for_each(|x| seq.serialize_element(&x.to_f32()))?,
            TensorData::Bytes(v) => v.iter().try_for_each(|x| seq.serialize_element(&String::from_utf8_lossy(x)))?,
            TensorData::Bool(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Uint8(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Uint16(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Uint32(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Uint64(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Int8(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Int16(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Int32(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Int64(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Fp32(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Fp64(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_and_flat_are_the_same() {
        let nested = decode(DataType::Int32, &json!([[1, 2], [3, 4]]), 4).unwrap();
        let flat = decode(DataType::Int32, &json!([1, 2, 3, 4]), 4).unwrap();
        assert_eq!(nested, flat);
        assert_eq!(nested, TensorData::Int32(vec![1, 2, 3, 4]));
    }

    #[test]
    fn wrong_length_and_type_are_named() {
        assert_eq!(
            decode(DataType::Fp32, &json!([1.0, 2.0]), 3),
            Err(JsonDataError::WrongLength { found: 2, expected: 3 })
        );
        let err = decode(DataType::Uint8, &json!([1, 256]), 2).unwrap_err();
        assert_eq!(err.to_string(), "element 1 is the number 256, expected UINT8");
        let err = decode(DataType::Int64, &json!([1.5]), 1).unwrap_err();
        assert!(err.to_string().contains("1.5"));
        assert!(decode(DataType::Bool, &json!([1]), 1).is_err());
        assert!(decode(DataType::Bytes, &json!([3]), 1).is_err());
        assert!(decode(DataType::Fp32, &json!([1e39]), 1).unwrap_err().to_string().contains("expected FP32"));
        assert!(decode(DataType::Fp16, &json!([70000.0]), 1).is_err());
        assert!(decode(DataType::Fp64, &json!([1e300]), 1).is_ok());
        assert!(decode(DataType::Fp32, &json!([-3.402823466385289e38]), 1).is_ok(), "f32::MAX as Python prints it");
    }

    #[test]
    fn every_type_decodes_and_encodes() {
        for dt in DataType::ALL {
            let value = match dt {
                DataType::Bool => json!([true, false]),
                DataType::Bytes => json!(["a", "bc"]),
                DataType::Fp16 | DataType::Bf16 | DataType::Fp32 | DataType::Fp64 => json!([1.5, -2.0]),
                _ => json!([1, 2]),
            };
            let data = decode(dt, &value, 2).unwrap();
            assert_eq!(data.datatype(), dt);
            let back = serde_json::to_value(JsonData(&data)).unwrap();
            assert_eq!(back, value, "{dt}");
        }
    }

    /// The typed read and the `Value` read agree on every value and every error.
    #[test]
    fn text_and_value_paths_agree() {
        let cases = [
            "[[1, 2], [3, 4]]", "[1, 2, 3, 4]", "[1, 2, 3]", "[[1, 2], [3, 4, 5]]", "[1, -2, 3, 4]", "[1, 2.5, 3, 4]",
            "[256, 0, 0, 0]", "[-129, 0, 0, 0]", "[1e39, 0, 0, 0]", "[70000.0, 1, 2, 3]", "[true, false, true, true]",
            "[1, \"a\", 2, 3]", "[null, 1, 2, 3]", "[{}, 1, 2, 3]", "[18446744073709551615, 1, 2, 3]",
            "[-9223372036854775808, 1, 2, 3]", "[[[1]], [[2]], [[3]], [[4]]]", "[]", "[[], [1, 2, 3, 4]]",
            "[\"a\", \"b\", \"c\", \"d\"]", "[-3.402823466385289e38, 0, 0, 1]", "[-0, 0, 1, 2]", "[-0.0, 0, 1, 2]",
            "[1E2, 1e-2, 2, 3]", "[ 1 ,\n2,\t3\r, 4 ]", "[true, 1, 0, false]", "[1, 2, 3, 4, 5]", "[0.1, 0.2, 0.3, 1e-45]",
            "[65504, 65520, 3.3895313892515355e38, 3.4e38]", "[[1, 2, 3, 4]]", "[1, [2, [3, [4]]]]",
        ];
        for dt in DataType::ALL {
            for text in cases {
                let value: Value = serde_json::from_str(text).unwrap();
                assert_eq!(decode_text(dt, text, 4), decode(dt, &value, 4), "{dt} {text}");
            }
        }
    }

    /// Decimal text of many magnitudes rounds to the same floats on both paths.
    #[test]
    fn floats_round_the_same_on_both_paths() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut values = Vec::new();
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mantissa = (seed % 2_000_000_001) as f64 / 1e6 - 1000.0;
            let exponent = (seed >> 40) % 60;
            values.push(format!("{mantissa}e{}", exponent as i64 - 30));
            values.push(format!("{}", f64::from_bits(seed) % 1e6));
        }
        let values: Vec<String> = values.into_iter().filter(|v| !v.contains("NaN") && !v.contains("inf")).collect();
        let text = format!("[{}]", values.join(","));
        let value: Value = serde_json::from_str(&text).unwrap();
        for dt in [DataType::Fp16, DataType::Bf16, DataType::Fp32, DataType::Fp64] {
            assert_eq!(decode_text(dt, &text, values.len()), decode(dt, &value, values.len()), "{dt}");
        }
    }

    #[test]
    fn a_shape_larger_than_the_text_reserves_little() {
        let err = decode_text(DataType::Fp32, "[1.0, 2.0]", usize::MAX / 8).unwrap_err();
        assert_eq!(err, JsonDataError::WrongLength { found: 2, expected: usize::MAX / 8 });
    }
}
