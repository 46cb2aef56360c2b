//! Typed tensors as they travel between the protocol, the scheduler and ONNX Runtime. One representation for
//! JSON and binary tensors alike, so that batching and the runtime never care how a client spelled its data.

pub mod binary;
pub mod json;

use std::fmt;

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

/// The protocol's datatypes (Open Inference Protocol names; BF16 is Triton's addition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Bf16,
    Fp32,
    Fp64,
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 14] = [
        Self::Bool, Self::Uint8, Self::Uint16, Self::Uint32, Self::Uint64, Self::Int8, Self::Int16, Self::Int32,
        Self::Int64, Self::Fp16, Self::Bf16, Self::Fp32, Self::Fp64, Self::Bytes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp16 => "FP16",
            Self::Bf16 => "BF16",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bytes => "BYTES",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Bytes per element; `None` for BYTES, whose elements carry their own length.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            Self::Bool | Self::Uint8 | Self::Int8 => 1,
            Self::Uint16 | Self::Int16 | Self::Fp16 | Self::Bf16 => 2,
            Self::Uint32 | Self::Int32 | Self::Fp32 => 4,
            Self::Uint64 | Self::Int64 | Self::Fp64 => 8,
            Self::Bytes => return None,
        })
    }

    /// Triton's model-configuration spelling (`TYPE_FP32`, `TYPE_STRING`, ...).
    pub fn triton_config_name(self) -> String {
        match self {
            Self::Bytes => "TYPE_STRING".into(),
            other => format!("TYPE_{}", other.as_str()),
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Element storage, one variant per datatype.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<f16>),
    Bf16(Vec<bf16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies one expression to the vector inside any variant.
#[macro_export]
macro_rules! for_each_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::TensorData::Bool($v) => $body,
            $crate::tensor::TensorData::Uint8($v) => $body,
            $crate::tensor::TensorData::Uint16($v) => $body,
            $crate::tensor::TensorData::Uint32($v) => $body,
            $crate::tensor::TensorData::Uint64($v) => $body,
            $crate::tensor::TensorData::Int8($v) => $body,
            $crate::tensor::TensorData::Int16($v) => $body,
            $crate::tensor::TensorData::Int32($v) => $body,
            $crate::tensor::TensorData::Int64($v) => $body,
            $crate::tensor::TensorData::Fp16($v) => $body,
            $crate::tensor::TensorData::Bf16($v) => $body,
            $crate::tensor::TensorData::Fp32($v) => $body,
            $crate::tensor::TensorData::Fp64($v) => $body,
            $crate::tensor::TensorData::Bytes($v) => $body,
        }
    };
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            Self::Bool(_) => DataType::Bool,
            Self::Uint8(_) => DataType::Uint8,
            Self::Uint16(_) => DataType::Uint16,
            Self::Uint32(_) => DataType::Uint32,
            Self::Uint64(_) => DataType::Uint64,
            Self::Int8(_) => DataType::Int8,
            Self::Int16(_) => DataType::Int16,
            Self::Int32(_) => DataType::Int32,
            Self::Int64(_) => DataType::Int64,
            Self::Fp16(_) => DataType::Fp16,
            Self::Bf16(_) => DataType::Bf16,
            Self::Fp32(_) => DataType::Fp32,
            Self::Fp64(_) => DataType::Fp64,
            Self::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        for_each_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for `additional` more elements.
    pub fn reserve(&mut self, additional: usize) {
        for_each_data!(self, v => v.reserve(additional))
    }

    /// An all-zero (or all-empty) buffer, used to warm a model up.
    pub fn zeros(datatype: DataType, len: usize) -> Self {
        match datatype {
            DataType::Bool => Self::Bool(vec![false; len]),
            DataType::Uint8 => Self::Uint8(vec![0; len]),
            DataType::Uint16 => Self::Uint16(vec![0; len]),
            DataType::Uint32 => Self::Uint32(vec![0; len]),
            DataType::Uint64 => Self::Uint64(vec![0; len]),
            DataType::Int8 => Self::Int8(vec![0; len]),
            DataType::Int16 => Self::Int16(vec![0; len]),
            DataType::Int32 => Self::Int32(vec![0; len]),
            DataType::Int64 => Self::Int64(vec![0; len]),
            DataType::Fp16 => Self::Fp16(vec![f16::ZERO; len]),
            DataType::Bf16 => Self::Bf16(vec![bf16::ZERO; len]),
            DataType::Fp32 => Self::Fp32(vec![0.0; len]),
            DataType::Fp64 => Self::Fp64(vec![0.0; len]),
            DataType::Bytes => Self::Bytes(vec![Vec::new(); len]),
        }
    }

    /// The elements as raw bytes, where every bit pattern is a valid element and the machine's byte order is the
    /// protocol's (little-endian): such a buffer can be filled straight from a file. `None` for BOOL and BYTES.
    pub fn le_bytes_mut(&mut self) -> Option<&mut [u8]> {
        if cfg!(target_endian = "big") {
            return None;
        }
        Some(match self {
            Self::Bool(_) | Self::Bytes(_) => return None,
            Self::Uint8(v) => v.as_mut_slice(),
            Self::Uint16(v) => bytemuck::cast_slice_mut(v),
            Self::Uint32(v) => bytemuck::cast_slice_mut(v),
            Self::Uint64(v) => bytemuck::cast_slice_mut(v),
            Self::Int8(v) => bytemuck::cast_slice_mut(v),
            Self::Int16(v) => bytemuck::cast_slice_mut(v),
            Self::Int32(v) => bytemuck::cast_slice_mut(v),
            Self::Int64(v) => bytemuck::cast_slice_mut(v),
            Self::Fp16(v) => bytemuck::cast_slice_mut(v),
            Self::Bf16(v) => bytemuck::cast_slice_mut(v),
            Self::Fp32(v) => bytemuck::cast_slice_mut(v),
            Self::Fp64(v) => bytemuck::cast_slice_mut(v),
        })
    }

    /// Appends `other` (same datatype) to `self`; used to stack requests along the batch axis.
    pub fn extend_from(&mut self, other: &TensorData) -> bool {
        macro_rules! ext {
            ($($var:ident),*) => {
                match (self, other) {
                    $( (Self::$var(a), Self::$var(b)) => { a.extend_from_slice(b); true } )*
                    _ => false,
                }
            };
        }
        ext!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Bf16, Fp32, Fp64, Bytes)
    }

    /// Elements `start..end`, same datatype; used to hand each request its rows of a batched output.
    pub fn slice(&self, start: usize, end: usize) -> TensorData {
        macro_rules! sl {
            ($($var:ident),*) => {
                match self { $( Self::$var(v) => Self::$var(v[start..end].to_vec()), )* }
            };
        }
        sl!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Bf16, Fp32, Fp64, Bytes)
    }

    /// Values as f64, for ranking classification outputs; `None` for BYTES.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        Some(match self {
            Self::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
            Self::Uint8(v) => v.iter().map(|&x| x as f64).collect(),
            Self::Uint16(v) => v.iter().map(|&x| x as f64).collect(),
            Self::Uint32(v) => v.iter().map(|&x| x as f64).collect(),
            Self::Uint64(v) => v.iter().map(|&x| x as f64).collect(),
            Self::Int8(v) => v.iter().map(|&x| x as f64).collect(),
            Self::Int16(v) => v.iter().map(|&x| x as f64).collect(),
            Self::Int32(v) => v.iter().map(|&x| x as f64).collect(),
            Self::Int64(v) => v.iter().map(|&x| x as f64).collect(),
            Self::Fp16(v) => v.iter().map(|x| x.to_f64()).collect(),
            Self::Bf16(v) => v.iter().map(|x| x.to_f64()).collect(),
            Self::Fp32(v) => v.iter().map(|&x| x as f64).collect(),
            Self::Fp64(v) => v.clone(),
            Self::Bytes(_) => return None,
        })
    }
}

/// A named tensor with its full shape (batch axis first when the model batches).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

impl Tensor {
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }
}

/// Number of elements a shape holds, or `None` on a negative dimension or overflow.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatype_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::parse(d.as_str()), Some(d));
        }
        assert_eq!(DataType::parse("FLOAT"), None);
        assert_eq!(DataType::Bytes.triton_config_name(), "TYPE_STRING");
        assert_eq!(DataType::Fp32.triton_config_name(), "TYPE_FP32");
    }

    #[test]
    fn element_count_rejects_negative_and_overflow() {
        assert_eq!(element_count(&[2, 3, 4]), Some(24));
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[-1, 3]), None);
        assert_eq!(element_count(&[i64::MAX, i64::MAX]), None);
    }

    #[test]
    fn extend_and_slice() {
        let mut a = TensorData::Int32(vec![1, 2]);
        assert!(a.extend_from(&TensorData::Int32(vec![3])));
        assert!(!a.extend_from(&TensorData::Fp32(vec![3.0])));
        assert_eq!(a.slice(1, 3), TensorData::Int32(vec![2, 3]));
    }
}
