//! Between our `TensorData` and ort values. Kept apart from session handling because it is the one place that
//! knows both type systems.

use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, ValueType};

use super::{GraphTensor, RuntimeError};
use crate::tensor::{DataType, Tensor, TensorData};

pub fn datatype_of(ty: TensorElementType) -> Result<DataType, RuntimeError> {
    Ok(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Bfloat16 => DataType::Bf16,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::String => DataType::Bytes,
        other => return Err(RuntimeError::UnsupportedType(format!("{other:?}"))),
    })
}

pub fn graph_tensor(name: &str, ty: &ValueType) -> Result<GraphTensor, RuntimeError> {
    match ty {
        ValueType::Tensor { ty, shape, .. } => {
            Ok(GraphTensor { name: name.to_string(), datatype: datatype_of(*ty)?, shape: shape.iter().copied().collect() })
        }
        other => Err(RuntimeError::UnsupportedType(format!("{other:?}"))),
    }
}

/// Moves a tensor into an ort value (no copy for numeric types: the vector becomes the buffer).
pub fn to_value(t: Tensor) -> Result<DynValue, RuntimeError> {
    let shape: Vec<i64> = t.shape;
    let input_err = |e: ort::Error| RuntimeError::Input { name: t.name.clone(), reason: e.to_string() };
    macro_rules! num {
        ($v:expr) => {
            OrtTensor::from_array((shape.clone(), $v)).map(|x| x.into_dyn()).map_err(input_err)
        };
    }
    match t.data {
        TensorData::Bool(v) => num!(v),
        TensorData::Uint8(v) => num!(v),
        TensorData::Uint16(v) => num!(v),
        TensorData::Uint32(v) => num!(v),
        TensorData::Uint64(v) => num!(v),
        TensorData::Int8(v) => num!(v),
        TensorData::Int16(v) => num!(v),
        TensorData::Int32(v) => num!(v),
        TensorData::Int64(v) => num!(v),
        TensorData::Fp16(v) => num!(v),
        TensorData::Bf16(v) => num!(v),
        TensorData::Fp32(v) => num!(v),
        TensorData::Fp64(v) => num!(v),
        TensorData::Bytes(v) => {
            let strings = v
                .into_iter()
                .map(String::from_utf8)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| RuntimeError::Input { name: t.name.clone(), reason: "BYTES elements must be UTF-8 for ONNX string tensors".into() })?;
            let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            OrtTensor::from_string_array((dims, strings.as_slice())).map(|x| x.into_dyn()).map_err(input_err)
        }
    }
}

/// Copies an ort output out of the session's memory.
pub fn from_value(name: &str, v: &DynValue) -> Result<Tensor, RuntimeError> {
    let ValueType::Tensor { ty, .. } = v.dtype() else {
        return Err(RuntimeError::UnsupportedType(format!("output '{name}' is not a tensor")));
    };
    let run_err = |e: ort::Error| RuntimeError::Run(format!("output '{name}': {e}"));
    macro_rules! num {
        ($variant:ident, $t:ty) => {{
            let (shape, data) = v.try_extract_tensor::<$t>().map_err(run_err)?;
            (shape.iter().copied().collect::<Vec<i64>>(), TensorData::$variant(data.to_vec()))
        }};
    }
    let (shape, data) = match datatype_of(*ty)? {
        DataType::Bool => num!(Bool, bool),
        DataType::Uint8 => num!(Uint8, u8),
        DataType::Uint16 => num!(Uint16, u16),
        DataType::Uint32 => num!(Uint32, u32),
        DataType::Uint64 => num!(Uint64, u64),
        DataType::Int8 => num!(Int8, i8),
        DataType::Int16 => num!(Int16, i16),
        DataType::Int32 => num!(Int32, i32),
        DataType::Int64 => num!(Int64, i64),
        DataType::Fp16 => num!(Fp16, half::f16),
        DataType::Bf16 => num!(Bf16, half::bf16),
        DataType::Fp32 => num!(Fp32, f32),
        DataType::Fp64 => num!(Fp64, f64),
        DataType::Bytes => {
            let (shape, strings) = v.try_extract_strings().map_err(run_err)?;
            (shape.iter().copied().collect(), TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()))
        }
    };
    Ok(Tensor { name: name.to_string(), shape, data })
}
