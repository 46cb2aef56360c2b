//! Request parsing against a two-input signature, including property tests that throw random bodies and
//! header lengths at the binary parser.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::tensor::TensorData;

fn sig() -> Signature {
    Signature {
        inputs: vec![
            TensorSpec { name: "a".into(), datatype: DataType::Fp32, dims: vec![2] },
            TensorSpec { name: "b".into(), datatype: DataType::Bytes, dims: vec![-1] },
        ],
        outputs: vec![TensorSpec { name: "y".into(), datatype: DataType::Fp32, dims: vec![2] }],
    }
}

/// Parses against `sig()` with shared memory switched off.
fn parse_with(body: &[u8], json_len: Option<usize>, sig: &Signature, max_batch: usize) -> Result<InferRequest, ProtocolError> {
    parse(body, json_len, &Target { sig, max_batch, shm: &Regions::new(false, 0) })
}

fn binary_body(header: serde_json::Value, tail: &[u8]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(&header).unwrap();
    let n = body.len();
    body.extend_from_slice(tail);
    (body, n)
}

#[test]
fn json_request_parses() {
    let body = json!({"id": "7", "inputs": [
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [[1.0, 2.0]]},
        {"name": "b", "shape": [1, 1], "datatype": "BYTES", "data": ["hi"]}]});
    let r = parse_with(&serde_json::to_vec(&body).unwrap(), None, &sig(), 4).unwrap();
    assert_eq!(r.id.as_deref(), Some("7"));
    assert_eq!(r.rows, 1);
    assert_eq!(r.inputs[0].data, TensorData::Fp32(vec![1.0, 2.0]));
    assert_eq!(r.outputs, vec![OutputRequest { name: "y".into(), binary: false, classification: None, shm: None }]);
}

#[test]
fn binary_inputs_and_output_flags() {
    let mut tail = Vec::new();
    tail.extend_from_slice(bytemuck::cast_slice(&[1.0f32, 2.0, 3.0, 4.0]));
    tail.extend_from_slice(&[2, 0, 0, 0, b'o', b'k', 0, 0, 0, 0]);
    let (body, n) = binary_body(
        json!({"inputs": [
            {"name": "a", "shape": [2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 16}},
            {"name": "b", "shape": [2, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 10}}],
            "parameters": {"binary_data_output": true},
            "outputs": [{"name": "y", "parameters": {"classification": 1}}]}),
        &tail,
    );
    let r = parse_with(&body, Some(n), &sig(), 4).unwrap();
    assert_eq!(r.rows, 2);
    assert_eq!(r.inputs[1].data, TensorData::Bytes(vec![b"ok".to_vec(), vec![]]));
    assert_eq!(r.outputs[0], OutputRequest { name: "y".into(), binary: true, classification: Some(1), shm: None });
}

#[test]
fn shared_memory_inputs_and_outputs() {
    let values = [1.5f32, -2.0, 3.25, 4.0];
    let mut contents = vec![0u8; 8];
    contents.extend_from_slice(bytemuck::cast_slice(&values));
    let obj = crate::shm::testing::Object::new("request", &contents);
    let shm = Regions::new(true, 4);
    shm.register("in", &obj.0, 8, 16).unwrap();
    let target = Target { sig: &sig(), max_batch: 4, shm: &shm };
    let input = |params: serde_json::Value| {
        json!({"inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP32", "parameters": params},
                          {"name": "b", "shape": [2, 1], "datatype": "BYTES", "data": ["x", "y"]}],
               "outputs": [{"name": "y", "parameters": {"shared_memory_region": "in", "shared_memory_byte_size": 16}}]})
    };
    let body = serde_json::to_vec(&input(json!({"shared_memory_region": "in", "shared_memory_byte_size": 16}))).unwrap();
    let r = parse(&body, None, &target).unwrap();
    assert_eq!(r.inputs[0].data, TensorData::Fp32(values.to_vec()));
    assert_eq!(r.outputs[0].shm, Some(ShmRange { region: "in".into(), offset: 0, byte_size: 16 }));
    // With an offset into the region: the last two values as one row.
    let body = json!({"inputs": [
        {"name": "a", "shape": [1, 2], "datatype": "FP32",
         "parameters": {"shared_memory_region": "in", "shared_memory_byte_size": 8, "shared_memory_offset": 8}},
        {"name": "b", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]});
    let r = parse(&serde_json::to_vec(&body).unwrap(), None, &target).unwrap();
    assert_eq!(r.inputs[0].data, TensorData::Fp32(values[2..].to_vec()));

    let cases = [
        (json!({"shared_memory_region": "in"}), "shared_memory_region needs shared_memory_byte_size"),
        (json!({"shared_memory_region": 3, "shared_memory_byte_size": 16}), "shared_memory_region must be a string"),
        (json!({"shared_memory_region": "in", "shared_memory_byte_size": -1}), "shared_memory_byte_size must be a non-negative"),
        (json!({"shared_memory_region": "gone", "shared_memory_byte_size": 16}), "unable to find system shared memory region: 'gone'"),
        (json!({"shared_memory_region": "in", "shared_memory_byte_size": 12}), "shared memory data has 12 bytes but 4 elements"),
        (json!({"shared_memory_region": "in", "shared_memory_byte_size": 16, "shared_memory_offset": 4}), "is outside shared memory region 'in' of 16 bytes"),
        (json!({"shared_memory_region": "in", "shared_memory_byte_size": 16, "binary_data_size": 16}), "together with data or binary_data_size"),
    ];
    for (params, want) in cases {
        let e = parse(&serde_json::to_vec(&input(params)).unwrap(), None, &target).unwrap_err();
        assert!(e.0.contains(want) && e.0.starts_with("input 'a'"), "{e} lacks {want}");
    }
    let body = serde_json::to_vec(&input(json!({"shared_memory_region": "in", "shared_memory_byte_size": 16}))).unwrap();
    let off = parse_with(&body, None, &sig(), 4).unwrap_err();
    assert!(off.0.contains("system shared memory is disabled"), "{off}");
}

#[test]
fn errors_name_the_problem() {
    let cases = [
        (json!({"inputs": [{"name": "z", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}), "unexpected input 'z'"),
        (json!({"inputs": [{"name": "a", "shape": [1, 2], "datatype": "INT32", "data": [1, 2]}]}), "datatype INT32 does not match the model's FP32"),
        (json!({"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}), "shape [1, 3] does not match the model's [-1, 2]"),
        (json!({"inputs": [{"name": "a", "shape": [9, 2], "datatype": "FP32", "data": [1]}]}), "batch size 9 is outside 1..=4"),
        (json!({"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1]}]}), "holds 1 elements but the shape needs 2"),
        (json!({"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}), "input 'b' is missing"),
        (json!({"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32"}]}), "none of data, binary_data_size and shared_memory_region"),
        (json!({"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}), "exceeds the 0 bytes left"),
        (json!({"inputs": []}), "input 'a' is missing"),
        (json!({"inputs": [
            {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
            {"name": "b", "shape": [2, 1], "datatype": "BYTES", "data": ["x", "y"]}]}), "batch size 2 differs"),
        (json!({"inputs": [
            {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
            {"name": "b", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}],
            "outputs": [{"name": "q"}]}), "unexpected output 'q'"),
        (json!({"inputs": "nope"}), "request JSON is invalid"),
    ];
    for (body, expected) in cases {
        let e = parse_with(&serde_json::to_vec(&body).unwrap(), None, &sig(), 4).unwrap_err();
        assert!(e.0.contains(expected), "expected {expected:?} in {:?}", e.0);
    }
    let e = parse_with(b"{}", Some(99), &sig(), 4).unwrap_err();
    assert!(e.0.contains("Inference-Header-Content-Length is 99"), "{}", e.0);
}

#[test]
fn raw_body_needs_one_fixed_input() {
    let one = Signature { inputs: vec![TensorSpec { name: "x".into(), datatype: DataType::Int32, dims: vec![2] }], outputs: vec![] };
    let r = parse_with(&[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0], Some(0), &one, 8).unwrap();
    assert_eq!(r.rows, 2);
    assert_eq!(r.inputs[0].shape, vec![2, 2]);
    assert!(parse_with(&[1, 0, 0], Some(0), &one, 8).is_err());
    assert!(parse_with(&[0; 16], Some(0), &sig(), 8).unwrap_err().0.contains("exactly one input"));
}

proptest! {
    #[test]
    fn random_binary_bodies_never_panic(
        size_a in 0u64..64, size_b in 0u64..64, rows in -2i64..6, split in 0usize..200,
        tail in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let (mut body, n) = binary_body(json!({"inputs": [
            {"name": "a", "shape": [rows, 2], "datatype": "FP32", "parameters": {"binary_data_size": size_a}},
            {"name": "b", "shape": [rows, 1], "datatype": "BYTES", "parameters": {"binary_data_size": size_b}}]}), &tail);
        let _ = parse_with(&body, Some(n), &sig(), 4);
        let _ = parse_with(&body, Some(split), &sig(), 4);
        body.truncate(split.min(body.len()));
        let _ = parse_with(&body, Some(n), &sig(), 4);
        let _ = parse_with(&body, None, &sig(), 4);
        let _ = parse_with(&body, Some(0), &sig(), 4);
    }
}

#[test]
fn non_finite_tokens_and_bad_utf8() {
    let body = br#"{"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [NaN, -Infinity]},
        {"name": "b", "shape": [1, 1], "datatype": "BYTES", "data": ["NaN"]}]}"#;
    let r = parse_with(body, None, &sig(), 4).unwrap();
    let TensorData::Fp32(a) = &r.inputs[0].data else { panic!() };
    assert!(a[0].is_nan() && a[1] == f32::NEG_INFINITY);
    assert_eq!(r.inputs[1].data, TensorData::Bytes(vec![b"NaN".to_vec()]));
    let bad = br#"{"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [NaN, "x"]}]}"#;
    assert!(parse_with(bad, None, &sig(), 4).unwrap_err().0.contains("element 1 is a string, expected FP32"));
    // Tokens are numbers of float data only: not an id, not a key, not beside an out-of-range number.
    for bad in [
        &br#"{"id": NaN, "inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [NaN, 1]}]}"#[..],
        br#"{"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [NaN, 1]}], NaN: 1}"#,
        br#"{"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [NaN, 1e39]}]}"#,
    ] {
        assert!(parse_with(bad, None, &sig(), 4).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    // Invalid UTF-8 is refused wherever it is, also inside a field the server does not read.
    let hidden = b"{\"comment\": \"\xff\", \"inputs\": [{\"name\": \"a\", \"shape\": [1, 2], \"datatype\": \"FP32\", \"data\": [1, 2]}]}";
    assert!(parse_with(hidden, None, &sig(), 4).unwrap_err().0.contains("not valid UTF-8 (at byte 13)"));

    let mut tail = Vec::new();
    tail.extend_from_slice(bytemuck::cast_slice(&[1.0f32, 2.0]));
    tail.extend_from_slice(&[2, 0, 0, 0, 0xff, 0xfe]);
    let (body, n) = binary_body(
        json!({"inputs": [
            {"name": "a", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            {"name": "b", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]}),
        &tail,
    );
    let e = parse_with(&body, Some(n), &sig(), 4).unwrap_err();
    assert!(e.0.contains("input 'b': BYTES element 0 is not valid UTF-8"), "{}", e.0);
}
