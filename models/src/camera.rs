//! Frames from a local camera (a kiosk or door appliance), into the same
//! pipeline as uploaded photos.
//!
//! A [`Camera`] hands out [`Frame`]s: raw YUYV or MJPEG bytes copied out of
//! the driver's buffer into locked memory at once. Frames never touch disk;
//! conversion to RGB happens in the pipeline's locked workspace; a burst is
//! embedded frame by frame and the sharpest well-detected face wins
//! ([`crate::Pipeline::best_of`]). [`V4l2Camera`] is the real device; the
//! trait keeps it swappable (tests build frames themselves: these machines
//! have no camera).
//!
//! Not controlled: the driver's mmap'd capture buffers belong to the kernel
//! and hold the last few frames until the stream closes.

use std::path::Path;

use arclock_secmem::LockedBytes;

use crate::Error;
use crate::workspace::sized;

/// How a frame's bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 4:2:2, `Y0 U Y1 V` per two pixels (BT.601, limited range).
    Yuyv,
    /// One JPEG per frame, often without Huffman tables (UVC cameras).
    Mjpeg,
}

/// One captured frame, in locked memory.
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub data: LockedBytes,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Frame({}x{} {:?}, {} bytes, [redacted])",
            self.width,
            self.height,
            self.format,
            self.data.len()
        )
    }
}

/// A source of frames. Blocking: call it from a blocking thread.
pub trait Camera: Send {
    /// The next frame.
    fn capture(&mut self) -> Result<Frame, Error>;
    /// What it is, for logs and the console (`/dev/video0 640x480 MJPEG`).
    fn describe(&self) -> String;
}

/// Skips `warmup` frames (auto-exposure settling), then takes `count`.
pub fn burst(camera: &mut dyn Camera, warmup: usize, count: usize) -> Result<Vec<Frame>, Error> {
    for _ in 0..warmup {
        drop(camera.capture()?);
    }
    (0..count.max(1)).map(|_| camera.capture()).collect()
}

/// A V4L2 capture device (`/dev/videoN`), MJPEG preferred, YUYV otherwise.
pub struct V4l2Camera {
    path: String,
    // Field order matters: the stream unmaps its buffers before the device closes.
    stream: v4l::io::mmap::Stream<'static>,
    _device: v4l::Device,
    width: u32,
    height: u32,
    format: PixelFormat,
}

impl V4l2Camera {
    /// Opens `path` asking for `width` x `height`; the driver may pick the
    /// nearest size it has, which is what frames then carry.
    pub fn open(path: &Path, width: u32, height: u32) -> Result<Self, Error> {
        use v4l::video::Capture;
        let unavailable = |e: &dyn std::fmt::Display| {
            Error::Unavailable(format!("camera {}: {e}", path.display()))
        };
        let device = v4l::Device::with_path(path).map_err(|e| unavailable(&e))?;
        let offered = device.enum_formats().map_err(|e| unavailable(&e))?;
        let has = |code: &[u8; 4]| offered.iter().any(|f| f.fourcc == v4l::FourCC::new(code));
        let (fourcc, format) = if has(b"MJPG") {
            (*b"MJPG", PixelFormat::Mjpeg)
        } else if has(b"YUYV") {
            (*b"YUYV", PixelFormat::Yuyv)
        } else {
            return Err(unavailable(&"offers neither MJPEG nor YUYV"));
        };
        let mut fmt = device.format().map_err(|e| unavailable(&e))?;
        fmt.width = width;
        fmt.height = height;
        fmt.fourcc = v4l::FourCC::new(&fourcc);
        let fmt = device.set_format(&fmt).map_err(|e| unavailable(&e))?;
        if fmt.fourcc != v4l::FourCC::new(&fourcc) {
            return Err(unavailable(&"the driver refused the pixel format"));
        }
        let mut stream =
            v4l::io::mmap::Stream::with_buffers(&device, v4l::buffer::Type::VideoCapture, 4)
                .map_err(|e| unavailable(&e))?;
        stream.set_timeout(std::time::Duration::from_secs(2));
        Ok(V4l2Camera {
            path: path.display().to_string(),
            stream,
            _device: device,
            width: fmt.width,
            height: fmt.height,
            format,
        })
    }
}

impl Camera for V4l2Camera {
    fn capture(&mut self) -> Result<Frame, Error> {
        use v4l::io::traits::CaptureStream;
        let (buf, meta) = self
            .stream
            .next()
            .map_err(|e| Error::Unavailable(format!("camera {}: {e}", self.path)))?;
        let used = (meta.bytesused as usize).min(buf.len());
        Ok(Frame {
            width: self.width,
            height: self.height,
            format: self.format,
            data: LockedBytes::from_slice(&buf[..used])?,
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} {}x{} {:?}",
            self.path, self.width, self.height, self.format
        )
    }
}

/// BT.601 limited-range YUV to RGB, in 16.16 fixed point.
#[inline]
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (i32::from(y) - 16).max(0) * 76_309;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| ((x + 32_768) >> 16).clamp(0, 255) as u8;
    [
        clamp(c + 104_597 * e),
        clamp(c - 25_675 * d - 53_279 * e),
        clamp(c + 132_201 * d),
    ]
}

/// YUYV into `rgb` (locked, from the workspace).
fn yuyv(frame: &Frame, rgb: &mut LockedBytes) -> Result<(), Error> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    if w == 0 || h == 0 {
        return Err(Error::CorruptImage("zero-sized YUYV frame".into()));
    }
    if w % 2 != 0 {
        return Err(Error::CorruptImage("YUYV frame with an odd width".into()));
    }
    let need = w * h * 2;
    if frame.data.len() < need {
        return Err(Error::CorruptImage(format!(
            "YUYV frame of {} bytes, {w}x{h} needs {need}",
            frame.data.len()
        )));
    }
    let out = sized(rgb, w * h * 3)?;
    for (src, dst) in frame.data[..need]
        .chunks_exact(4)
        .zip(out.chunks_exact_mut(6))
    {
        let (y0, u, y1, v) = (src[0], src[1], src[2], src[3]);
        dst[..3].copy_from_slice(&yuv_to_rgb(y0, u, v));
        dst[3..].copy_from_slice(&yuv_to_rgb(y1, u, v));
    }
    Ok(())
}

/// Whether a JPEG carries its own Huffman tables (a DHT segment before the
/// first scan) or announces itself as AVI1 MJPEG (the decoder then uses the
/// standard tables).
fn has_huffman_tables(jpeg: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return false;
        }
        let marker = jpeg[i + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        match marker {
            0xC4 => return true,
            0xE0 if jpeg.get(i + 4..i + 8) == Some(b"AVI1") => return true,
            0xDA => return false,
            _ => i += 2 + len,
        }
    }
    false
}

/// An MJPEG frame as a JPEG the decoder takes: frames without Huffman tables
/// get an `AVI1` APP0 segment after SOI, which makes the decoder use the
/// standard tables of JPEG Annex K, as UVC cameras do.
pub(crate) fn mjpeg_as_jpeg(frame: &Frame) -> Result<Option<LockedBytes>, Error> {
    let data = &frame.data[..];
    if data.len() < 4 || data[..2] != [0xFF, 0xD8] {
        return Err(Error::CorruptImage("MJPEG frame without SOI".into()));
    }
    if has_huffman_tables(data) {
        return Ok(None);
    }
    const APP0_AVI1: [u8; 9] = [0xFF, 0xE0, 0x00, 0x07, b'A', b'V', b'I', b'1', 0x00];
    let mut out = LockedBytes::with_capacity(data.len() + APP0_AVI1.len())?;
    let buf = sized(&mut out, data.len() + APP0_AVI1.len())?;
    buf[..2].copy_from_slice(&data[..2]);
    buf[2..11].copy_from_slice(&APP0_AVI1);
    buf[11..].copy_from_slice(&data[2..]);
    Ok(Some(out))
}

/// A YUYV frame into `rgb`; returns the size. (MJPEG goes through the photo
/// decoder, see `Pipeline::run_frame`.)
pub(crate) fn yuyv_to_rgb(frame: &Frame, rgb: &mut LockedBytes) -> Result<(u32, u32), Error> {
    yuyv(frame, rgb)?;
    Ok((frame.width, frame.height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv_reference_colours() {
        // Black, white and mid grey in limited range; saturated red and blue.
        assert_eq!(yuv_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(235, 128, 128), [255, 255, 255]);
        let g = yuv_to_rgb(126, 128, 128);
        assert!(g.iter().all(|c| (127..=129).contains(c)), "{g:?}");
        let red = yuv_to_rgb(81, 90, 240);
        assert!(red[0] > 250 && red[1] < 5 && red[2] < 5, "{red:?}");
        let blue = yuv_to_rgb(41, 240, 110);
        assert!(blue[2] > 250 && blue[0] < 5 && blue[1] < 5, "{blue:?}");
    }

    #[test]
    fn bad_frames_are_refused() {
        let frame = |w, h, n| Frame {
            width: w,
            height: h,
            format: PixelFormat::Yuyv,
            data: LockedBytes::from_slice(&vec![0u8; n]).unwrap(),
        };
        let mut rgb = LockedBytes::with_capacity(0).unwrap();
        assert!(yuyv(&frame(4, 2, 15), &mut rgb).is_err());
        assert!(yuyv(&frame(3, 2, 12), &mut rgb).is_err());
        assert!(yuyv(&frame(4, 2, 16), &mut rgb).is_ok());
        // Found by the photo fuzz target: a zero-width frame passed every
        // check and reached the detector's resampler, which indexed
        // `width - 1`.
        assert!(yuyv(&frame(0, 24, 0), &mut rgb).is_err());
        assert!(yuyv(&frame(4, 0, 0), &mut rgb).is_err());
        let limits = crate::photo::Limits::default();
        assert!(limits.admit(0, 24).is_err());
        assert!(limits.admit(10_000, 2).is_err());
        assert!(limits.admit(640, 480).is_ok());
        let not_jpeg = Frame {
            format: PixelFormat::Mjpeg,
            ..frame(4, 2, 16)
        };
        assert!(mjpeg_as_jpeg(&not_jpeg).is_err());
    }
}
