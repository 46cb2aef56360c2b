//! The image recipe of a model's `[preprocess]` section, defined exactly as `convert/preprocess.py` defines it so
//! that the server feeds the model what the parity check verified: centre square crop of
//! `round_half_even(crop_fraction × short side)` at integer offsets, resize the crop alone with a PIL-compatible filter
//! (bicubic = Catmull-Rom with support scaled on downsampling, as PIL does), then `(x − mean) / std` per channel.

use fast_image_resize::{images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use crate::repository::config::Preprocess;

use super::DecodeError;

/// Number of f32 values one image becomes.
pub fn tensor_len(p: &Preprocess) -> usize {
    3 * p.size as usize * p.size as usize
}

/// Shape of one image's tensor without the batch axis.
pub fn tensor_dims(p: &Preprocess) -> [i64; 3] {
    let s = i64::from(p.size);
    if p.layout == "NHWC" { [s, s, 3] } else { [3, s, s] }
}

/// Crops, resizes and normalizes `img`, appending `tensor_len(p)` values to `out`.
pub fn preprocess_into(img: RgbImage, p: &Preprocess, out: &mut Vec<f32>) -> Result<(), DecodeError> {
    let (w, h) = img.dimensions();
    let short = w.min(h);
    let side = ((f64::from(short) * p.crop_fraction).round_ties_even() as u32).clamp(1, short);
    let (left, top) = ((w - side) / 2, (h - side) / 2);
    // Crop first, then resize the crop alone: resizing with a crop window lets the filter read pixels outside it,
    // which PIL's crop-then-resize (the reference) does not.
    let cropped = image::imageops::crop_imm(&img, left, top, side, side).to_image();
    drop(img);
    let src = Image::from_vec_u8(side, side, cropped.into_raw(), PixelType::U8x3).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let mut dst = Image::new(p.size, p.size, PixelType::U8x3);
    let filter = match p.interpolation.as_str() {
        "bilinear" => ResizeAlg::Convolution(FilterType::Bilinear),
        "nearest" => ResizeAlg::Nearest,
        _ => ResizeAlg::Convolution(FilterType::CatmullRom),
    };
    let options = ResizeOptions::new().resize_alg(filter);
    Resizer::new().resize(&src, &mut dst, &options).map_err(|e| DecodeError::Corrupt(e.to_string()))?;

    let pixels = dst.buffer();
    let order: [usize; 3] = if p.color == "BGR" { [2, 1, 0] } else { [0, 1, 2] };
    let scale = p.std.map(|s| 1.0 / s);
    let n = (p.size * p.size) as usize;
    let start = out.len();
    out.resize(start + 3 * n, 0.0);
    let dest = &mut out[start..];
    for (i, px) in pixels.chunks_exact(3).enumerate() {
        for (c, &src_c) in order.iter().enumerate() {
            let v = (f32::from(px[src_c]) - p.mean[c]) * scale[c];
            let at = if p.layout == "NHWC" { i * 3 + c } else { c * n + i };
            dest[at] = v;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn recipe(size: u32, crop: f64) -> Preprocess {
        Preprocess {
            input: "input".into(),
            color: "RGB".into(),
            crop_fraction: crop,
            size,
            interpolation: "bicubic".into(),
            mean: [127.0; 3],
            std: [128.0; 3],
            layout: "NCHW".into(),
        }
    }

    #[test]
    fn flat_colour_stays_flat_and_is_normalized() {
        let img = RgbImage::from_pixel(300, 200, Rgb([255, 127, 0]));
        let mut out = Vec::new();
        preprocess_into(img, &recipe(8, 0.875), &mut out).unwrap();
        assert_eq!(out.len(), 3 * 64);
        assert!(out[..64].iter().all(|&v| (v - 1.0).abs() < 1e-6));
        assert!(out[64..128].iter().all(|&v| v.abs() < 1e-6));
        assert!(out[128..].iter().all(|&v| (v + 127.0 / 128.0).abs() < 1e-6));
    }

    #[test]
    fn crop_takes_the_centre() {
        // Left and right thirds red, centre blue: a centre crop of the short side sees only blue.
        let img = RgbImage::from_fn(300, 100, |x, _| if (100..200).contains(&x) { Rgb([0, 0, 255]) } else { Rgb([255, 0, 0]) });
        let mut out = Vec::new();
        preprocess_into(img, &recipe(4, 0.5), &mut out).unwrap();
        assert!(out[..16].iter().all(|&v| (v + 127.0 / 128.0).abs() < 1e-6), "red channel should be 0");
    }

    #[test]
    fn nhwc_and_bgr() {
        let img = RgbImage::from_pixel(10, 10, Rgb([255, 127, 0]));
        let mut p = recipe(2, 1.0);
        p.layout = "NHWC".into();
        p.color = "BGR".into();
        let mut out = Vec::new();
        preprocess_into(img, &p, &mut out).unwrap();
        assert_eq!(tensor_dims(&p), [2, 2, 3]);
        assert!((out[0] + 127.0 / 128.0).abs() < 1e-6 && (out[2] - 1.0).abs() < 1e-6);
    }
}
