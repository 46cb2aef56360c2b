//! Image decoding. The pixel limit is checked from the header before any pixel is decoded, so a small file that
//! claims a huge canvas costs nothing; EXIF orientation is applied because phones store photos sideways.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use super::DecodeError;

/// Decodes any supported image (first frame of a GIF) into 8-bit RGB, upright.
pub fn decode_rgb(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    match reader.format() {
        None => return Err(DecodeError::UnknownFormat),
        Some(ImageFormat::Jpeg) if !super::jpeg::is_complete(bytes) => {
            return Err(DecodeError::Corrupt("JPEG data is truncated (it ends before its end-of-image marker)".into()))
        }
        Some(_) => {}
    }
    let mut decoder = reader.into_decoder().map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(DecodeError::TooManyPixels { width, height, pixels, limit: max_pixels });
    }
    if pixels == 0 {
        return Err(DecodeError::Empty);
    }
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    // Grey, grey+alpha, palette (expanded by the PNG decoder), RGBA and 16-bit all land in 8-bit RGB here;
    // alpha is dropped, as PIL's convert("RGB") does.
    Ok(img.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_formats_and_modes() {
        let rgb = RgbImage::from_pixel(4, 3, Rgb([10, 20, 30]));
        for format in [ImageFormat::Png, ImageFormat::Tiff, ImageFormat::Gif, ImageFormat::WebP] {
            let out = decode_rgb(&encode(DynamicImage::ImageRgb8(rgb.clone()), format), 100).unwrap();
            assert_eq!(out.dimensions(), (4, 3), "{format:?}");
        }
        let gray16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(2, 2, image::Luma([65535u16])));
        assert_eq!(decode_rgb(&encode(gray16, ImageFormat::Png), 100).unwrap().get_pixel(0, 0), &Rgb([255, 255, 255]));
        let rgba = DynamicImage::ImageRgba8(image::ImageBuffer::from_pixel(2, 2, image::Rgba([1, 2, 3, 0])));
        assert_eq!(decode_rgb(&encode(rgba, ImageFormat::Png), 100).unwrap().get_pixel(1, 1), &Rgb([1, 2, 3]));
    }

    #[test]
    fn limits_and_garbage() {
        let png = encode(DynamicImage::ImageRgb8(RgbImage::new(20, 10)), ImageFormat::Png);
        assert!(matches!(decode_rgb(&png, 199), Err(DecodeError::TooManyPixels { pixels: 200, .. })));
        assert!(matches!(decode_rgb(b"hello world", 100), Err(DecodeError::UnknownFormat)));
        assert!(matches!(decode_rgb(&png[..png.len() / 2], 1000), Err(DecodeError::Corrupt(_))));
        let jpeg = encode(DynamicImage::ImageRgb8(RgbImage::new(64, 64)), ImageFormat::Jpeg);
        assert!(decode_rgb(&jpeg, 10_000).is_ok());
        assert!(matches!(decode_rgb(&jpeg[..jpeg.len() - 10], 10_000), Err(DecodeError::Corrupt(_))));
    }
}
