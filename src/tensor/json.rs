//! JSON tensor data: the `data` field of a V2 input (flat or nested, row-major) into typed elements, and typed
//! elements back out as a flat JSON array. Strict on types: a float where an integer is expected is a 400, not a cast.
//!
//! A JSON image tensor holds about 150 000 numbers, and a body may hold millions, so numeric `data` is read from its
//! text in one pass that allocates nothing but the result (at most what the shape asks for). Building a
//! `serde_json::Value` per number instead cost about 30 bytes each, which a 64 MiB body of bad data turned into
//! gigabytes.

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
    #[error("nests arrays more than {0} levels deep")]
    TooDeep(usize),
}

/// Arrays nested deeper than this are refused, as serde_json refuses them everywhere else in a request.
const MAX_DEPTH: usize = 128;

/// Parses the JSON text of `data` (valid JSON, as the request parser checked) for a tensor of `datatype` that must
/// hold exactly `expected` elements. Same rules and messages as [`decode`].
pub fn decode_text(datatype: DataType, text: &str, expected: usize) -> Result<TensorData, JsonDataError> {
    decode_text_with(datatype, text, expected, &|_| None).map(|(data, _)| data)
}

/// `decode_text` in which, for float tensors, `special` stands for values JSON cannot write (NaN and the infinities,
/// as markers); also returns how many leaves it recognised.
pub fn decode_text_with(
    datatype: DataType,
    text: &str,
    expected: usize,
    special: &dyn Fn(&str) -> Option<f64>,
) -> Result<(TensorData, usize), JsonDataError> {
    fn floats<T: Float>(dt: DataType, text: &str, n: usize, special: &dyn Fn(&str) -> Option<f64>) -> Result<(Vec<T>, usize), JsonDataError> {
        convert(dt, text, n, |leaf| match special(leaf) {
            Some(x) => Some((T::from_f64_unchecked(x), true)),
            None => T::parse(leaf).map(|v| (v, false)),
        })
    }
    let (dt, n) = (datatype, expected);
    Ok(match datatype {
        DataType::Bool => (TensorData::Bool(typed(dt, text, n)?), 0),
        DataType::Uint8 => (TensorData::Uint8(typed(dt, text, n)?), 0),
        DataType::Uint16 => (TensorData::Uint16(typed(dt, text, n)?), 0),
        DataType::Uint32 => (TensorData::Uint32(typed(dt, text, n)?), 0),
        DataType::Uint64 => (TensorData::Uint64(typed(dt, text, n)?), 0),
        DataType::Int8 => (TensorData::Int8(typed(dt, text, n)?), 0),
        DataType::Int16 => (TensorData::Int16(typed(dt, text, n)?), 0),
        DataType::Int32 => (TensorData::Int32(typed(dt, text, n)?), 0),
        DataType::Int64 => (TensorData::Int64(typed(dt, text, n)?), 0),
        DataType::Fp16 => floats(dt, text, n, special).map(|(v, k)| (TensorData::Fp16(v), k))?,
        DataType::Bf16 => floats(dt, text, n, special).map(|(v, k)| (TensorData::Bf16(v), k))?,
        DataType::Fp32 => floats(dt, text, n, special).map(|(v, k)| (TensorData::Fp32(v), k))?,
        DataType::Fp64 => floats(dt, text, n, special).map(|(v, k)| (TensorData::Fp64(v), k))?,
        DataType::Bytes => {
            // Strings need unescaping; string tensors are small next to numeric ones.
            let value: Value = serde_json::from_str(text).map_err(|e| JsonDataError::Invalid(e.to_string()))?;
            (decode(datatype, &value, expected)?, 0)
        }
    })
}

/// Every leaf converted in one pass. The count is checked before the first refused leaf is reported, as `decode`
/// does; leaves beyond the expected count are counted, not kept, so a wrong shape allocates no more than it asked.
fn typed<T: Element>(datatype: DataType, text: &str, expected: usize) -> Result<Vec<T>, JsonDataError> {
    convert(datatype, text, expected, |leaf| T::parse(leaf).map(|v| (v, false))).map(|(v, _)| v)
}

/// The reading loop behind both readers: `parse` returns the element and whether it was a special value.
///
/// A number is first read straight from the text where it starts ([`Element::parse_prefix`]); only when that does
/// not end exactly at the number's end is the leaf delimited and read again by `parse`, which decides. Either way
/// the element is the same, since both read the same characters with the same function; the fast path only saves
/// scanning each number twice.
fn convert<T: Element>(
    datatype: DataType,
    text: &str,
    expected: usize,
    parse: impl Fn(&str) -> Option<(T, bool)>,
) -> Result<(Vec<T>, usize), JsonDataError> {
    // Every element takes at least two characters ("1,"), so the reservation is bounded by the text as well.
    let mut out = Vec::with_capacity(expected.min(text.len() / 2 + 1));
    let (mut found, mut specials, mut refused) = (0, 0, None);
    let mut leaves = Leaves::new(text);
    while let Some(start) = leaves.next_start() {
        let start = start?;
        let wanted = found < expected && refused.is_none();
        if wanted {
            if let Some((v, end)) = T::parse_prefix(&text.as_bytes()[start..]).filter(|&(_, n)| leaves.ends_leaf(start + n)) {
                out.push(v);
                leaves.pos = start + end;
                found += 1;
                continue;
            }
        }
        let leaf = leaves.leaf_from(start);
        if wanted {
            match parse(leaf) {
                Some((v, special)) => {
                    out.push(v);
                    specials += usize::from(special);
                }
                None => refused = Some(JsonDataError::WrongType { index: found, found: describe_leaf(leaf), expected: datatype }),
            }
        }
        found += 1;
    }
    if found != expected {
        return Err(JsonDataError::WrongLength { found, expected });
    }
    refused.map_or(Ok((out, specials)), Err)
}

/// A reader over the leaves of a (possibly nested) JSON array, in order: numbers, literals, strings and objects.
struct Leaves<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Leaves<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0, depth: 0 }
    }

    /// Where the next leaf starts, past the brackets and separators before it.
    fn next_start(&mut self) -> Option<Result<usize, JsonDataError>> {
        let b = self.text.as_bytes();
        while self.pos < b.len() {
            match b[self.pos] {
                b'[' => {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        self.pos = b.len();
                        return Some(Err(JsonDataError::TooDeep(MAX_DEPTH)));
                    }
                    self.pos += 1;
                }
                b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.pos += 1;
                }
                b',' | b' ' | b'\n' | b'\r' | b'\t' => self.pos += 1,
                _ => return Some(Ok(self.pos)),
            }
        }
        None
    }

    /// The leaf starting at `start`, delimited by its text; reading goes on after it.
    fn leaf_from(&mut self, start: usize) -> &'a str {
        self.pos = leaf_end(self.text.as_bytes(), start);
        &self.text[start..self.pos]
    }

    /// Whether a leaf may end at `end`: the text ends there or a separator or closing bracket follows.
    fn ends_leaf(&self, end: usize) -> bool {
        self.text.as_bytes().get(end).is_none_or(|&c| ends_bare_leaf(c))
    }
}

/// The characters that end a number or literal: a separator or a closing bracket.
fn ends_bare_leaf(c: u8) -> bool {
    matches!(c, b',' | b']' | b' ' | b'\n' | b'\r' | b'\t')
}

/// Where the leaf starting at `start` ends: after its closing quote or brace, or at the next separator.
fn leaf_end(b: &[u8], start: usize) -> usize {
    match b[start] {
        b'"' => {
            let mut i = start + 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => return i + 1,
                    _ => i += 1,
                }
            }
            b.len()
        }
        b'{' => {
            let (mut depth, mut i) = (0usize, start);
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = leaf_end(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        _ => start + b[start..].iter().position(|&c| ends_bare_leaf(c)).unwrap_or(b.len() - start),
    }
}

/// Words a refused leaf as [`describe`] words the same value.
fn describe_leaf(leaf: &str) -> String {
    match leaf.as_bytes().first() {
        Some(b'"') => "a string".into(),
        Some(b'{') => "an object".into(),
        _ => match serde_json::from_str::<Value>(leaf) {
            Ok(v) => describe(&v),
            Err(_) => format!("'{leaf}'"),
        },
    }
}

/// One JSON element type, converted with the same rules as [`decode`]: integers must be written as integers and
/// fit, floats must stay finite.
trait Element: Sized {
    fn parse(leaf: &str) -> Option<Self>;

    /// The element a number at the start of `text` makes, and how many bytes it took; `None` leaves the decision to
    /// `parse` on the delimited leaf (which also words any refusal).
    fn parse_prefix(_text: &[u8]) -> Option<(Self, usize)> {
        None
    }
}

impl Element for bool {
    fn parse(leaf: &str) -> Option<Self> {
        match leaf {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
}

/// JSON's "-0" is read as a float by `decode`, so an integer tensor refuses it too.
macro_rules! int_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn parse(leaf: &str) -> Option<Self> {
                if leaf == "-0" {
                    return None;
                }
                lexical_core::parse::<$t>(leaf.as_bytes()).ok()
            }
            fn parse_prefix(text: &[u8]) -> Option<(Self, usize)> {
                // "-0" (and any negative zero) goes the slow way, to be refused there.
                lexical_core::parse_partial::<$t>(text).ok().filter(|&(v, _)| v != 0 || text.first() != Some(&b'-'))
            }
        }
    )*};
}
int_element!(u8, u16, u32, u64, i8, i16, i32, i64);

/// A float element, which may also hold what JSON cannot write.
trait Float: Element {
    fn from_f64_unchecked(x: f64) -> Self;
}

macro_rules! float_element {
    ($($t:ty => $conv:expr),*) => {$(
        impl Element for $t {
            fn parse(leaf: &str) -> Option<Self> {
                lexical_core::parse::<f64>(leaf.as_bytes()).ok().map(Self::from_f64_unchecked).filter(|v| v.is_finite())
            }
            fn parse_prefix(text: &[u8]) -> Option<(Self, usize)> {
                let (x, n) = lexical_core::parse_partial::<f64>(text).ok()?;
                Some((Self::from_f64_unchecked(x), n)).filter(|(v, _)| v.is_finite())
            }
        }
        impl Float for $t {
            fn from_f64_unchecked(x: f64) -> Self {
                let conv: fn(f64) -> $t = $conv;
                conv(x)
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
    fn a_shape_larger_than_the_text_is_refused_before_reserving() {
        let err = decode_text(DataType::Fp32, "[1.0, 2.0]", usize::MAX / 8).unwrap_err();
        assert_eq!(err, JsonDataError::WrongLength { found: 2, expected: usize::MAX / 8 });
    }

    #[test]
    fn strings_and_objects_with_separators_inside_are_one_leaf() {
        let text = r#"[1, "a,]\" b", {"k": [1, 2], "s": "}"}, 2]"#;
        let err = decode_text(DataType::Fp32, text, 4).unwrap_err();
        assert_eq!(err, JsonDataError::WrongType { index: 1, found: "a string".into(), expected: DataType::Fp32 });
        assert_eq!(decode_text(DataType::Fp32, text, 5), Err(JsonDataError::WrongLength { found: 4, expected: 5 }));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}1{}", "[".repeat(129), "]".repeat(129));
        assert_eq!(decode_text(DataType::Fp32, &deep, 1), Err(JsonDataError::TooDeep(128)));
        let ok = format!("{}1{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(decode_text(DataType::Fp32, &ok, 1), Ok(TensorData::Fp32(vec![1.0])));
    }
}
