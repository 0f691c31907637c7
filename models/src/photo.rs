//! Photo bytes to RGB pixels in locked memory, under explicit limits.
//!
//! The `image` crate decodes straight into a buffer we own (`ImageDecoder::
//! read_image`), so the decoded pixels land in locked, non-dumpable memory; colour
//! conversion and EXIF orientation are done here, in locked memory too. Decoders
//! keep small internal buffers of their own (Huffman tables, row buffers for PNG
//! filtering, the WebP bitstream); those are ordinary heap memory, freed but not
//! wiped, and covered only by the process-wide core-dump ban.

use std::io::Cursor;

use arclock_secmem::LockedBytes;
use image::metadata::Orientation;
use image::{ColorType, ImageDecoder, ImageError, ImageFormat, ImageReader};

use crate::Error;
use crate::workspace::sized;

/// What a photo may cost before decoding starts: a decompression bomb is refused
/// from its header, not after the allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Encoded size (after base64 decoding).
    pub max_bytes: usize,
    /// Width or height.
    pub max_side: u32,
    /// Width x height.
    pub max_pixels: u64,
}

impl Default for Limits {
    /// 10 MiB, 8192 px a side, 24 MP: a 24 MP phone photo fits, a bomb does not.
    fn default() -> Self {
        Limits {
            max_bytes: 10 * 1024 * 1024,
            max_side: 8192,
            max_pixels: 24_000_000,
        }
    }
}

impl Limits {
    /// Refuses an empty image, or one too large, from its declared size
    /// (photos and camera frames alike).
    pub fn admit(&self, w: u32, h: u32) -> Result<(), Error> {
        if w == 0 || h == 0 {
            return Err(Error::CorruptImage("zero-sized image".into()));
        }
        if w > self.max_side || h > self.max_side || u64::from(w) * u64::from(h) > self.max_pixels {
            return Err(Error::ImageTooLarge(format!(
                "{w}x{h} pixels, the limit is {} a side and {} in all",
                self.max_side, self.max_pixels
            )));
        }
        Ok(())
    }
}

/// RGB8 pixels, row-major, orientation applied. Borrowed from a workspace.
#[derive(Clone, Copy)]
pub struct Rgb<'a> {
    pub width: u32,
    pub height: u32,
    pub pixels: &'a [u8],
}

impl std::fmt::Debug for Rgb<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rgb({}x{}, [redacted])", self.width, self.height)
    }
}

impl Rgb<'_> {
    /// The pixel at (x, y), clamped to the image (for samplers).
    #[inline]
    pub fn at(&self, x: i64, y: i64) -> [u8; 3] {
        let x = x.clamp(0, i64::from(self.width) - 1) as usize;
        let y = y.clamp(0, i64::from(self.height) - 1) as usize;
        let i = (y * self.width as usize + x) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

/// Decodes `bytes` (JPEG, PNG or WebP) into `raw` and `rgb`, two locked buffers
/// the caller reuses and wipes. Returns the final width and height (after EXIF
/// orientation); the pixels are in `rgb`.
pub(crate) fn decode(
    bytes: &[u8],
    limits: &Limits,
    raw: &mut LockedBytes,
    rgb: &mut LockedBytes,
) -> Result<(u32, u32), Error> {
    if bytes.len() > limits.max_bytes {
        return Err(Error::ImageTooLarge(format!(
            "{} bytes, the limit is {}",
            bytes.len(),
            limits.max_bytes
        )));
    }
    let format = image::guess_format(bytes)
        .map_err(|_| Error::UnsupportedImage("not a JPEG, PNG or WebP image".into()))?;
    match format {
        ImageFormat::Jpeg => check_jpeg_complete(bytes)?,
        ImageFormat::Png | ImageFormat::WebP => {}
        other => {
            return Err(Error::UnsupportedImage(format!(
                "{other:?} is not accepted (JPEG, PNG or WebP only)"
            )));
        }
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(limits.max_side);
    lim.max_image_height = Some(limits.max_side);
    // Output (at most 8 bytes a pixel) plus decoder scratch.
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(lim);
    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (w, h) = decoder.dimensions();
    limits.admit(w, h)?;
    // A broken EXIF block is not worth refusing a photo over: upright it is.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let color = decoder.color_type();
    let total = usize::try_from(decoder.total_bytes())
        .map_err(|_| Error::ImageTooLarge("does not fit in memory".into()))?;
    let buf = sized(raw, total)?;
    decoder.read_image(buf).map_err(classify)?;

    let n = w as usize * h as usize;
    let out = sized(rgb, n * 3)?;
    to_rgb8(color, buf, out)?;
    raw.clear();
    if orientation == Orientation::NoTransforms {
        return Ok((w, h));
    }
    // Re-orient through `raw` (now free) and copy back: both stay locked.
    let (ow, oh) = orient(orientation, w, h, rgb, raw)?;
    let dst = sized(rgb, n * 3)?;
    dst.copy_from_slice(&raw[..n * 3]);
    raw.clear();
    Ok((ow, oh))
}

/// `zune-jpeg` returns whatever it decoded from a truncated file, grey below
/// the cut. A complete JPEG ends its last scan with an EOI marker; entropy-coded
/// data cannot contain 0xFFD9 (0xFF is byte-stuffed), so "EOI after the last
/// SOS" is a reliable completeness check.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), Error> {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let eoi_after = last_sos.is_some_and(|sos| bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9]));
    if eoi_after {
        Ok(())
    } else {
        Err(Error::CorruptImage(
            "JPEG data is truncated (no end-of-image marker after the last scan)".into(),
        ))
    }
}

fn classify(e: ImageError) -> Error {
    match e {
        ImageError::Limits(l) => Error::ImageTooLarge(l.to_string()),
        ImageError::Unsupported(u) => Error::UnsupportedImage(u.to_string()),
        ImageError::Decoding(d) => Error::CorruptImage(d.to_string()),
        ImageError::IoError(io) => Error::CorruptImage(format!("truncated or unreadable: {io}")),
        other => Error::CorruptImage(other.to_string()),
    }
}

/// Any decoded colour type to RGB8 (alpha dropped, 16-bit and float scaled).
fn to_rgb8(color: ColorType, src: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let n = out.len() / 3;
    let unsupported = || Error::UnsupportedImage(format!("colour type {color:?}"));
    let (channels, depth) = match color {
        ColorType::L8 => (1, 1),
        ColorType::La8 => (2, 1),
        ColorType::Rgb8 => (3, 1),
        ColorType::Rgba8 => (4, 1),
        ColorType::L16 => (1, 2),
        ColorType::La16 => (2, 2),
        ColorType::Rgb16 => (3, 2),
        ColorType::Rgba16 => (4, 2),
        ColorType::Rgb32F => (3, 4),
        ColorType::Rgba32F => (4, 4),
        _ => return Err(unsupported()),
    };
    if src.len() < n * channels * depth {
        return Err(Error::CorruptImage("decoder returned too few bytes".into()));
    }
    let sample = |i: usize| -> u8 {
        let at = i * depth;
        match depth {
            1 => src[at],
            2 => (u16::from_ne_bytes([src[at], src[at + 1]]) >> 8) as u8,
            _ => {
                let f = f32::from_ne_bytes([src[at], src[at + 1], src[at + 2], src[at + 3]]);
                (f.clamp(0.0, 1.0) * 255.0).round() as u8
            }
        }
    };
    if channels == 3 && depth == 1 {
        out.copy_from_slice(&src[..n * 3]);
        return Ok(());
    }
    for p in 0..n {
        let base = p * channels;
        let (r, g, b) = if channels < 3 {
            let l = sample(base);
            (l, l, l)
        } else {
            (sample(base), sample(base + 1), sample(base + 2))
        };
        out[p * 3] = r;
        out[p * 3 + 1] = g;
        out[p * 3 + 2] = b;
    }
    Ok(())
}

/// Applies an EXIF orientation from `src` into `dst`; returns the new size.
fn orient(
    o: Orientation,
    w: u32,
    h: u32,
    src: &LockedBytes,
    dst: &mut LockedBytes,
) -> Result<(u32, u32), Error> {
    let (w, h) = (w as usize, h as usize);
    let swaps = matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let (ow, oh) = if swaps { (h, w) } else { (w, h) };
    let out = sized(dst, ow * oh * 3)?;
    for y in 0..oh {
        for x in 0..ow {
            // Source pixel for output (x, y); see the EXIF orientation table.
            let (sx, sy) = match o {
                Orientation::NoTransforms => (x, y),
                Orientation::Rotate90 => (y, h - 1 - x),
                Orientation::Rotate180 => (w - 1 - x, h - 1 - y),
                Orientation::Rotate270 => (w - 1 - y, x),
                Orientation::FlipHorizontal => (w - 1 - x, y),
                Orientation::FlipVertical => (x, h - 1 - y),
                Orientation::Rotate90FlipH => (y, x),
                Orientation::Rotate270FlipH => (w - 1 - y, h - 1 - x),
            };
            let s = (sy * w + sx) * 3;
            let d = (y * ow + x) * 3;
            out[d..d + 3].copy_from_slice(&src[s..s + 3]);
        }
    }
    Ok((ow as u32, oh as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orientation_table_matches_the_image_crate() {
        // 3x2 image with distinct pixels, compared against image's own transform.
        let (w, h) = (3u32, 2u32);
        let data: Vec<u8> = (0..w * h * 3).map(|i| i as u8).collect();
        for o in [
            Orientation::Rotate90,
            Orientation::Rotate180,
            Orientation::Rotate270,
            Orientation::FlipHorizontal,
            Orientation::FlipVertical,
            Orientation::Rotate90FlipH,
            Orientation::Rotate270FlipH,
        ] {
            let mut img = image::DynamicImage::ImageRgb8(
                image::RgbImage::from_raw(w, h, data.clone()).unwrap(),
            );
            img.apply_orientation(o);
            let src = LockedBytes::from_slice(&data).unwrap();
            let mut dst = LockedBytes::with_capacity(64).unwrap();
            let (ow, oh) = orient(o, w, h, &src, &mut dst).unwrap();
            assert_eq!((ow, oh), (img.width(), img.height()), "{o:?}");
            assert_eq!(&dst[..], img.to_rgb8().as_raw().as_slice(), "{o:?}");
        }
    }

    #[test]
    fn truncated_jpeg_is_caught_by_marker_check() {
        let mut jpeg = Vec::new();
        image::RgbImage::from_pixel(16, 16, image::Rgb([200, 10, 10]))
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        assert!(check_jpeg_complete(&jpeg).is_ok());
        assert!(check_jpeg_complete(&jpeg[..jpeg.len() - 40]).is_err());
    }
}
