//! Whether a JPEG file is complete. The JPEG decoder fills a cut-off scan with grey and reports success, so a photo
//! cut short in transfer would get a confident wrong answer instead of a 400. Walking the marker segments finds the
//! image's own end-of-image marker: segment payloads (an EXIF thumbnail with its own markers lives inside APP1) are
//! skipped by their lengths, and inside entropy-coded data a 0xFF is only a marker when not followed by 0x00 or a
//! restart code. Bytes after the end-of-image marker (motion photos append a video) are ignored, as decoders do.

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;

/// True when the markers run from start-of-image through at least one scan to an end-of-image marker.
pub fn is_complete(b: &[u8]) -> bool {
    if b.len() < 4 || b[0] != 0xFF || b[1] != SOI {
        return false;
    }
    let mut i = 2;
    let mut seen_scan = false;
    while i + 1 < b.len() {
        if b[i] != 0xFF {
            return false;
        }
        let marker = b[i + 1];
        match marker {
            0xFF => i += 1, // fill byte before a marker
            EOI => return seen_scan,
            0x01 | 0xD0..=0xD7 => i += 2, // markers without a length
            _ => {
                if i + 3 >= b.len() {
                    return false;
                }
                let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
                if len < 2 {
                    return false;
                }
                i += 2 + len;
                if marker == SOS {
                    seen_scan = true;
                    i = match skip_entropy_data(b, i) {
                        Some(next) => next,
                        None => return false,
                    };
                }
            }
        }
    }
    false
}

/// Index of the next marker after entropy-coded data starting at `i`, or `None` when the data runs to the end.
fn skip_entropy_data(b: &[u8], mut i: usize) -> Option<usize> {
    while i + 1 < b.len() {
        if b[i] == 0xFF && b[i + 1] != 0x00 && !(0xD0..=0xD7).contains(&b[i + 1]) {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg() -> Vec<u8> {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(48, 32, |x, y| image::Rgb([x as u8 * 5, y as u8 * 7, 99])));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn complete_truncated_and_trailing() {
        let j = jpeg();
        assert!(is_complete(&j));
        for cut in [j.len() - 2, j.len() - 10, j.len() / 2, 3] {
            assert!(!is_complete(&j[..cut]), "cut at {cut}");
        }
        let mut trailing = j.clone();
        trailing.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x10, 1, 2, 3]);
        assert!(is_complete(&trailing), "data after the end-of-image marker is ignored");
        assert!(!is_complete(b"\xFF\xD8\xFF\xD9"), "no scan");
    }
}
