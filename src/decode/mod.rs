//! Turning request bodies that are not tensors (images) into tensors: decode with limits checked from the header,
//! then the model's preprocessing recipe. Pure CPU work, called off the async executor.

pub mod image;
pub mod jpeg;
pub mod preprocess;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("image format not recognised; supported: JPEG, PNG, WebP, TIFF, GIF")]
    UnknownFormat,
    #[error("image has {width}x{height} = {pixels} pixels, over the limit of {limit}")]
    TooManyPixels { width: u32, height: u32, pixels: u64, limit: u64 },
    #[error("image could not be decoded: {0}")]
    Corrupt(String),
    #[error("image is empty")]
    Empty,
}
