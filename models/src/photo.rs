//! Photo bytes to RGB pixels in locked memory, under explicit limits.
//!
//! JPEG, the format phones send, is decoded by libjpeg-turbo (TurboJPEG API)
//! straight into a buffer we own, and at a reduced size when the caller asks
//! for less than the photo has: JPEG's DCT scaling (1/2, 1/4, 1/8) skips most
//! of the inverse transform and colour work, so a 12 MP photo costs little
//! more than its entropy decoding; at 1/8, what phones write goes through
//! `jpeg.rs` first, which can split that entropy decoding over two
//! threads. PNG, WebP and the JPEGs libjpeg-turbo does
//! not take to RGB (CMYK) go through the `image` crate, which also decodes
//! into our buffer (`ImageDecoder::read_image`). Either way the decoded
//! pixels land in locked, non-dumpable memory; colour conversion and EXIF
//! orientation are done here, in locked memory too. Decoders keep small
//! internal buffers of their own (Huffman tables, MCU rows, PNG filter rows,
//! the WebP bitstream); those are ordinary heap memory, freed but not wiped,
//! and covered only by the process-wide core-dump ban.

use std::io::Cursor;

use arclock_secmem::LockedBytes;
use image::metadata::Orientation;
use image::{ColorType, ImageDecoder, ImageError, ImageFormat, ImageReader};

use crate::workspace::{Workspace, sized};
use crate::{Error, jpeg};

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

/// A decoded photo: its upright size as decoded, and how many photo pixels
/// each decoded pixel stands for along a side (1, 2, 4 or 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) scale: u32,
    /// The entropy decoding ran in two halves that met (see [`jpeg`]).
    pub(crate) halves: bool,
}

impl Decoded {
    /// The photo's own (upright) size, up to the rounding of a scaled decode.
    pub(crate) fn photo_size(&self) -> (u32, u32) {
        (self.width * self.scale, self.height * self.scale)
    }

    /// These pixels, `rgb` being the buffer they were decoded into.
    pub(crate) fn pixels<'a>(&self, rgb: &'a [u8]) -> Rgb<'a> {
        Rgb {
            width: self.width,
            height: self.height,
            pixels: rgb,
        }
    }
}

/// JPEG's exact DCT scales, coarsest first.
const SCALES: [u32; 3] = [8, 4, 2];

/// Decodes `bytes` (JPEG, PNG or WebP) into `ws.rgb` (`ws.raw` and
/// `ws.records` are scratch), locked buffers the caller reuses and wipes. A
/// JPEG is decoded at the coarsest DCT scale whose long side is still at
/// least `long_side` (0: the full size); other formats always at full size.
/// `split`: a second thread of the current rayon pool is idle, and a JPEG
/// decoded at 1/8 may use it (see [`jpeg`]). The pixels are upright (EXIF
/// orientation applied).
pub(crate) fn decode(
    bytes: &[u8],
    limits: &Limits,
    long_side: u32,
    split: bool,
    ws: &mut Workspace,
) -> Result<Decoded, Error> {
    let Workspace {
        raw, rgb, records, ..
    } = ws;
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
        ImageFormat::Jpeg => {
            check_jpeg_complete(bytes)?;
            if let Some(done) = turbo(bytes, limits, long_side, split, raw, records, rgb)? {
                return Ok(done);
            }
        }
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

    let out = sized(rgb, w as usize * h as usize * 3)?;
    to_rgb8(color, buf, out)?;
    raw.clear();
    let (width, height) = upright(orientation, w, h, rgb, raw)?;
    Ok(Decoded {
        width,
        height,
        scale: 1,
        halves: false,
    })
}

/// A JPEG through libjpeg-turbo, at the coarsest scale that keeps the long
/// side at least `long_side`; at 1/8 first through [`jpeg::eighth`], which
/// takes what phones write and can split it over two threads. `None` hands
/// the photo to the `image` crate: a colour space libjpeg-turbo does not
/// convert to RGB (CMYK, YCCK), or a header it cannot read (the other
/// decoder then gives its own verdict).
fn turbo(
    bytes: &[u8],
    limits: &Limits,
    long_side: u32,
    split: bool,
    raw: &mut LockedBytes,
    records: &mut arclock_secmem::LockedVec<i16>,
    rgb: &mut LockedBytes,
) -> Result<Option<Decoded>, Error> {
    let mut tj = turbojpeg::Decompressor::new()
        .map_err(|e| Error::Unavailable(format!("libjpeg-turbo: {e}")))?;
    let Ok(header) = tj.read_header(bytes) else {
        return Ok(None);
    };
    if matches!(
        header.colorspace,
        turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
    ) {
        return Ok(None);
    }
    let (w, h) = admitted(limits, &header)?;
    let long = w.max(h);
    let scale = SCALES
        .into_iter()
        .find(|d| long.div_ceil(*d) >= long_side)
        .unwrap_or(1);
    // TurboJPEG rounds a scaled side up; asked for exactly that size, it
    // picks the factor 1/scale.
    let (sw, sh) = (w.div_ceil(scale) as usize, h.div_ceil(scale) as usize);
    let out = sized(rgb, sw * sh * 3)?;
    let mine = if scale == 8 && ours_may_take(&header) {
        jpeg::eighth(bytes, split, raw, records, out)
    } else {
        jpeg::Outcome::Refused
    };
    raw.clear();
    records.clear();
    if mine == jpeg::Outcome::Refused {
        let image = turbojpeg::Image {
            pixels: out,
            width: sw,
            pitch: sw * 3,
            height: sh,
            format: turbojpeg::PixelFormat::RGB,
        };
        // libjpeg-turbo's messages name markers and counts, never pixel values.
        tj.decompress(bytes, image)
            .map_err(|e| Error::CorruptImage(e.to_string()))?;
    }
    let (width, height) = upright(exif_orientation(bytes), sw as u32, sh as u32, rgb, raw)?;
    Ok(Some(Decoded {
        width,
        height,
        scale,
        halves: mine == jpeg::Outcome::Halves,
    }))
}

/// The JPEG's size from its header, if `limits` admit it.
pub(crate) fn admitted(
    limits: &Limits,
    header: &turbojpeg::DecompressHeader,
) -> Result<(u32, u32), Error> {
    let too_large = || Error::ImageTooLarge("does not fit in memory".into());
    let w = u32::try_from(header.width).map_err(|_| too_large())?;
    let h = u32::try_from(header.height).map_err(|_| too_large())?;
    limits.admit(w, h)?;
    Ok((w, h))
}

/// Whether [`jpeg::eighth`] may see this JPEG: libjpeg-turbo reads it as
/// YCbCr (not as RGB by its component IDs or an Adobe marker, which ours
/// does not look at).
pub(crate) fn ours_may_take(header: &turbojpeg::DecompressHeader) -> bool {
    matches!(header.colorspace, turbojpeg::Colorspace::YCbCr)
}

/// Applies `orientation` to the `w` x `h` RGB pixels in `rgb`, through `raw`
/// (free at this point; both stay locked); returns the upright size.
fn upright(
    orientation: Orientation,
    w: u32,
    h: u32,
    rgb: &mut LockedBytes,
    raw: &mut LockedBytes,
) -> Result<(u32, u32), Error> {
    if orientation == Orientation::NoTransforms {
        return Ok((w, h));
    }
    let n = w as usize * h as usize * 3;
    let (ow, oh) = orient(orientation, w, h, rgb, raw)?;
    let dst = sized(rgb, n)?;
    dst.copy_from_slice(&raw[..n]);
    raw.clear();
    Ok((ow, oh))
}

/// The EXIF orientation of a JPEG (its APP1 "Exif" segment before the first
/// scan), upright when absent or unreadable.
fn exif_orientation(bytes: &[u8]) -> Orientation {
    let mut at = 2; // after SOI
    while at + 4 <= bytes.len() && bytes[at] == 0xFF {
        let marker = bytes[at + 1];
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break; // start of scan, end of image: no EXIF before the pixels
        }
        let len = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        let Some(body) = bytes.get(at + 4..at + 2 + len) else {
            break;
        };
        if marker == 0xE1
            && let Some(tiff) = body.strip_prefix(b"Exif\0\0")
        {
            return Orientation::from_exif_chunk(tiff).unwrap_or(Orientation::NoTransforms);
        }
        at += 2 + len;
    }
    Orientation::NoTransforms
}

/// More scans than any camera or encoder writes (progressive JPEGs have
/// ~10; libjpeg-turbo's own opt-in limit is 500). Each scan of a progressive
/// JPEG walks the whole coefficient buffer again, so a 10 MiB file of tiny
/// scans over a 24 MP canvas would be minutes of CPU for one request.
const MAX_SCANS: usize = 100;

/// Checks a JPEG's scans before decoding: decoders return whatever they
/// decoded from a truncated file, grey below the cut, and a complete JPEG
/// ends its last scan with an EOI marker; entropy-coded data cannot contain
/// 0xFFDA or 0xFFD9 (0xFF is byte-stuffed), so "EOI after the last SOS" is a
/// reliable completeness check, and counting SOS counts the scans.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), Error> {
    let mut scans = 0usize;
    let mut last_sos = None;
    let mut eoi_after = false;
    for i in memchr::memchr_iter(0xFF, bytes) {
        match bytes.get(i + 1) {
            Some(0xDA) => {
                scans += 1;
                last_sos = Some(i);
                eoi_after = false;
            }
            Some(0xD9) if last_sos.is_some() => eoi_after = true,
            _ => {}
        }
    }
    if scans > MAX_SCANS {
        return Err(Error::UnsupportedImage(format!(
            "JPEG with {scans} scans (at most {MAX_SCANS} are accepted)"
        )));
    }
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
    fn a_jpeg_of_endless_scans_is_refused_before_decoding() {
        let mut jpeg = Vec::new();
        image::RgbImage::from_pixel(16, 16, image::Rgb([200, 10, 10]))
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        // 200 more (empty) scans before the end-of-image marker.
        let eoi = jpeg.len() - 2;
        let scans: Vec<u8> = [0xFF, 0xDA, 0x00, 0x02].repeat(200);
        jpeg.splice(eoi..eoi, scans);
        let err = check_jpeg_complete(&jpeg).unwrap_err();
        assert!(err.to_string().contains("scans"), "{err}");
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
