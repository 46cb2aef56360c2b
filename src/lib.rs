//! oxinfer: an ONNX inference server speaking the KServe V2 / Open Inference Protocol over REST.
//!
//! Data flows through the modules in this order: `http` (transport) → `decode` (images) and `v2` (tensor
//! messages) → `scheduler` (queue, dynamic batching, instance pool) → `runtime` (ONNX Runtime) → `v2` (encoding).
//! `repository` owns which model versions serve, `shm` the shared memory regions clients on the same host register,
//! `observe` owns logs, metrics and statistics, and `startup` wires it all into a running server.

pub mod cgroup;
pub mod decode;
pub mod http;
pub mod observe;
pub mod repository;
pub mod runtime;
pub mod scheduler;
pub mod settings;
pub mod shm;
pub mod startup;
pub mod tensor;
pub mod v2;
