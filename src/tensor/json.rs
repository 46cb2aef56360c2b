//! JSON tensor data: the `data` field of a V2 input (flat or nested, row-major) into typed elements, and typed
//! elements back out as a flat JSON array. Strict on types: a float where an integer is expected is a 400, not a cast.

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
}

/// Parses `data` for a tensor of `datatype` that must hold exactly `expected` elements.
pub fn decode(datatype: DataType, data: &Value, expected: usize) -> Result<TensorData, JsonDataError> {
    let mut flat = Vec::with_capacity(expected);
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
}
