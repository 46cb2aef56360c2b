//! Raw tensor bytes of the binary tensor data extension: little-endian, row-major, unpadded; BOOL one byte;
//! BYTES as a 4-byte little-endian length before each element. Every length is checked before anything is copied,
//! so a hostile `binary_data_size` can only earn a 400.

use half::{bf16, f16};

use super::{DataType, TensorData};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BinaryDataError {
    #[error("has {found} bytes but {expected} elements of {datatype} need {needed}")]
    WrongSize { found: usize, expected: usize, datatype: DataType, needed: usize },
    #[error("BYTES element {index} is cut short: it declares {declared} bytes, {left} remain")]
    TruncatedElement { index: usize, declared: usize, left: usize },
    #[error("BYTES data holds {found} elements but the shape needs {expected}")]
    WrongCount { found: usize, expected: usize },
    #[error("BOOL element {index} is {value}, expected 0 or 1")]
    NotABool { index: usize, value: u8 },
}

/// Decodes `bytes` as exactly `expected` elements of `datatype`.
pub fn decode(datatype: DataType, bytes: &[u8], expected: usize) -> Result<TensorData, BinaryDataError> {
    let Some(size) = datatype.size() else { return decode_bytes(bytes, expected) };
    let needed = expected.checked_mul(size).unwrap_or(usize::MAX);
    if bytes.len() != needed {
        return Err(BinaryDataError::WrongSize { found: bytes.len(), expected, datatype, needed });
    }
    macro_rules! le {
        ($variant:ident, $t:ty, $n:literal) => {
            TensorData::$variant(bytes.chunks_exact($n).map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n]))).collect())
        };
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(
            bytes
                .iter()
                .enumerate()
                .map(|(index, &value)| match value {
                    0 => Ok(false),
                    1 => Ok(true),
                    _ => Err(BinaryDataError::NotABool { index, value }),
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
        DataType::Int8 => TensorData::Int8(bytes.iter().map(|&b| b as i8).collect()),
        DataType::Uint16 => le!(Uint16, u16, 2),
        DataType::Int16 => le!(Int16, i16, 2),
        DataType::Uint32 => le!(Uint32, u32, 4),
        DataType::Int32 => le!(Int32, i32, 4),
        DataType::Uint64 => le!(Uint64, u64, 8),
        DataType::Int64 => le!(Int64, i64, 8),
        DataType::Fp32 => le!(Fp32, f32, 4),
        DataType::Fp64 => le!(Fp64, f64, 8),
        DataType::Fp16 => TensorData::Fp16(
            bytes.chunks_exact(2).map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect(),
        ),
        DataType::Bf16 => TensorData::Bf16(
            bytes.chunks_exact(2).map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect(),
        ),
        DataType::Bytes => unreachable!("BYTES handled above"),
    })
}

fn decode_bytes(mut bytes: &[u8], expected: usize) -> Result<TensorData, BinaryDataError> {
    // Each element costs at least its 4-byte length, which bounds the allocation by the body size.
    let mut out = Vec::with_capacity(expected.min(bytes.len() / 4));
    while !bytes.is_empty() {
        let index = out.len();
        if bytes.len() < 4 {
            return Err(BinaryDataError::TruncatedElement { index, declared: 4, left: bytes.len() });
        }
        let declared = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let rest = &bytes[4..];
        if rest.len() < declared {
            return Err(BinaryDataError::TruncatedElement { index, declared, left: rest.len() });
        }
        out.push(rest[..declared].to_vec());
        bytes = &rest[declared..];
    }
    if out.len() != expected {
        return Err(BinaryDataError::WrongCount { found: out.len(), expected });
    }
    Ok(TensorData::Bytes(out))
}

/// Appends the raw bytes of `data` to `out`.
pub fn encode_into(data: &TensorData, out: &mut Vec<u8>) {
    macro_rules! le {
        ($v:expr) => {
            $v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
    }
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
        TensorData::Uint8(v) => out.extend_from_slice(v),
        TensorData::Int8(v) => out.extend(v.iter().map(|&b| b as u8)),
        TensorData::Uint16(v) => le!(v),
        TensorData::Int16(v) => le!(v),
        TensorData::Uint32(v) => le!(v),
        TensorData::Int32(v) => le!(v),
        TensorData::Uint64(v) => le!(v),
        TensorData::Int64(v) => le!(v),
        TensorData::Fp32(v) => out.extend_from_slice(bytemuck::cast_slice(v)),
        TensorData::Fp64(v) => le!(v),
        TensorData::Fp16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes())),
        TensorData::Bf16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes())),
        TensorData::Bytes(v) => v.iter().for_each(|x| {
            out.extend_from_slice(&(x.len() as u32).to_le_bytes());
            out.extend_from_slice(x);
        }),
    }
}

/// Size in bytes of `data` once encoded.
pub fn encoded_len(data: &TensorData) -> usize {
    match data {
        TensorData::Bytes(v) => v.iter().map(|x| 4 + x.len()).sum(),
        other => other.len() * other.datatype().size().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_every_type() {
        for dt in DataType::ALL {
            let data = match dt {
                DataType::Bytes => TensorData::Bytes(vec![b"ab".to_vec(), vec![], b"\xff".to_vec()]),
                DataType::Bool => TensorData::Bool(vec![true, false, true]),
                other => {
                    let mut d = TensorData::zeros(other, 3);
                    let one = crate::tensor::json::decode(other, &serde_json::json!([1, 2, 3]), 3);
                    if let Ok(v) = one {
                        d = v;
                    }
                    d
                }
            };
            let mut bytes = Vec::new();
            encode_into(&data, &mut bytes);
            assert_eq!(bytes.len(), encoded_len(&data));
            assert_eq!(decode(dt, &bytes, 3).unwrap(), data, "{dt}");
        }
    }

    #[test]
    fn sizes_are_checked() {
        assert_eq!(
            decode(DataType::Fp32, &[0; 7], 2),
            Err(BinaryDataError::WrongSize { found: 7, expected: 2, datatype: DataType::Fp32, needed: 8 })
        );
        assert!(matches!(decode(DataType::Bytes, &[5, 0, 0, 0, 1], 1), Err(BinaryDataError::TruncatedElement { .. })));
        assert!(matches!(decode(DataType::Bytes, &[0, 0, 0, 0], 2), Err(BinaryDataError::WrongCount { .. })));
        assert!(matches!(decode(DataType::Bool, &[2], 1), Err(BinaryDataError::NotABool { .. })));
        assert!(decode(DataType::Fp64, &[], usize::MAX).is_err());
    }

    proptest! {
        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256), n in 0usize..100, t in 0usize..14) {
            let _ = decode(DataType::ALL[t], &bytes, n);
        }
    }
}
