//! Camera frames through the real pipeline. No camera exists on these
//! machines, so the frames are built here from real LFW photos: YUYV by
//! BT.601 conversion, MJPEG by JPEG-encoding and dropping the Huffman tables
//! the way UVC cameras do; a scripted source plays a burst.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::sync::Arc;

use arclock_face::camera::{self, Camera, Frame, PixelFormat, V4l2Camera};
use arclock_face::{Embedding, Error, Pipeline, Workspace};
use arclock_secmem::LockedBytes;
use common::faces;
use image::RgbImage;

fn pipeline() -> Arc<Pipeline> {
    common::default_pipeline(1)
}

fn photo(name: &str, n: u32) -> Vec<u8> {
    std::fs::read(faces().join(format!("lfw-dev/{name}/{name}_{n:04}.jpg"))).unwrap()
}

fn rgb(name: &str, n: u32) -> RgbImage {
    image::load_from_memory(&photo(name, n)).unwrap().to_rgb8()
}

fn embed_photo(bytes: &[u8]) -> Embedding {
    let mut ws = Workspace::new().unwrap();
    pipeline().run(&mut ws, bytes, None).unwrap().embedding
}

fn embed_frame(frame: &Frame) -> Result<Embedding, Error> {
    let mut ws = Workspace::new().unwrap();
    let out = pipeline().run_frame(&mut ws, frame).map(|f| f.embedding);
    assert!(ws.is_wiped(), "workspace not wiped after a frame");
    out
}

/// BT.601 limited range, chroma averaged over each pixel pair.
fn to_yuyv(img: &RgbImage) -> Frame {
    let (w, h) = img.dimensions();
    let mut out = Vec::with_capacity((w * h * 2) as usize);
    let yuv = |p: &image::Rgb<u8>| {
        let [r, g, b] = p.0.map(f32::from);
        (
            16.0 + 0.257 * r + 0.504 * g + 0.098 * b,
            128.0 - 0.148 * r - 0.291 * g + 0.439 * b,
            128.0 + 0.439 * r - 0.368 * g - 0.071 * b,
        )
    };
    for y in 0..h {
        for x in (0..w).step_by(2) {
            let (y0, u0, v0) = yuv(img.get_pixel(x, y));
            let (y1, u1, v1) = yuv(img.get_pixel(x + 1, y));
            let q = |v: f32| v.round().clamp(0.0, 255.0) as u8;
            out.extend_from_slice(&[q(y0), q((u0 + u1) / 2.0), q(y1), q((v0 + v1) / 2.0)]);
        }
    }
    Frame {
        width: w,
        height: h,
        format: PixelFormat::Yuyv,
        data: LockedBytes::from_slice(&out).unwrap(),
    }
}

/// A JPEG with every DHT segment removed (what many UVC cameras send).
fn to_mjpeg_without_tables(img: &RgbImage) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92)
        .encode_image(img)
        .unwrap();
    let mut out = jpeg[..2].to_vec();
    let mut i = 2;
    loop {
        assert_eq!(jpeg[i], 0xFF);
        let marker = jpeg[i + 1];
        if marker == 0xDA {
            out.extend_from_slice(&jpeg[i..]);
            break;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if marker != 0xC4 {
            out.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    assert!(out.len() < jpeg.len(), "no Huffman table was removed");
    out
}

fn cosine(a: &Embedding, b: &Embedding) -> f32 {
    a.cosine(b).unwrap()
}

#[test]
fn yuyv_frames_embed_like_the_photo_they_show() {
    let reference = embed_photo(&photo("Aaron_Peirsol", 1));
    let frame = to_yuyv(&rgb("Aaron_Peirsol", 1));
    let e = embed_frame(&frame).unwrap();
    let same = cosine(&reference, &e);
    assert!(same > 0.95, "YUYV round trip moved the embedding: {same}");
    let other = embed_photo(&photo("Adam_Sandler", 1));
    assert!(
        cosine(&other, &e) < 0.39,
        "another person matches the frame"
    );
}

#[test]
fn mjpeg_frames_without_huffman_tables_decode() {
    let img = rgb("Aaron_Peirsol", 1);
    let bare = to_mjpeg_without_tables(&img);
    // What cameras send. As an upload it decodes too: libjpeg-turbo supplies
    // the standard tables a JPEG leaves out, as MJPEG decoders must.
    let mut ws = Workspace::new().unwrap();
    let upload = pipeline().run(&mut ws, &bare, None).unwrap().embedding;
    let frame = Frame {
        width: img.width(),
        height: img.height(),
        format: PixelFormat::Mjpeg,
        data: LockedBytes::from_slice(&bare).unwrap(),
    };
    let e = embed_frame(&frame).unwrap();
    assert!(
        cosine(&upload, &e) > 0.999,
        "the frame and the upload differ"
    );
    let reference = embed_photo(&photo("Aaron_Peirsol", 1));
    let same = cosine(&reference, &e);
    assert!(same > 0.95, "MJPEG frame embeds differently: {same}");
    // Frames that carry their own tables pass through unchanged.
    let mut full = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut full, 92)
        .encode_image(&img)
        .unwrap();
    let with_tables = Frame {
        data: LockedBytes::from_slice(&full).unwrap(),
        ..frame
    };
    assert!(cosine(&reference, &embed_frame(&with_tables).unwrap()) > 0.95);
}

/// Plays frames in order, like a camera would deliver them.
struct Scripted {
    frames: std::vec::IntoIter<Frame>,
}

impl Camera for Scripted {
    fn capture(&mut self) -> Result<Frame, Error> {
        self.frames
            .next()
            .ok_or_else(|| Error::Unavailable("script over".into()))
    }

    fn describe(&self) -> String {
        "scripted".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_keeps_the_sharpest_face() {
    let sharp = rgb("Aaron_Peirsol", 1);
    let blurred = image::imageops::blur(&sharp, 0.8);
    let smeared = image::imageops::blur(&sharp, 2.5);
    let grey = RgbImage::from_pixel(250, 250, image::Rgb([128, 128, 128]));
    let warmup = to_yuyv(&grey);
    let mut cam = Scripted {
        frames: vec![
            warmup,
            to_yuyv(&blurred),
            to_yuyv(&grey),
            to_yuyv(&sharp),
            to_yuyv(&blurred),
        ]
        .into_iter(),
    };
    let frames = camera::burst(&mut cam, 1, 4).unwrap();
    assert_eq!(frames.len(), 4);
    let best = pipeline().best_of(frames).await.unwrap();
    let sharp_face = pipeline().best_of(vec![to_yuyv(&sharp)]).await.unwrap();
    let blurred_face = pipeline().best_of(vec![to_yuyv(&blurred)]).await.unwrap();
    assert!(
        sharp_face.measures.sharpness > blurred_face.measures.sharpness,
        "the blur did not blur"
    );
    assert_eq!(best.measures.sharpness, sharp_face.measures.sharpness);
    assert!(cosine(&best.embedding, &sharp_face.embedding) > 0.9999);

    // Only frames too blurred to use: the gate's reason comes back.
    assert!(matches!(
        pipeline().best_of(vec![to_yuyv(&smeared)]).await,
        Err(Error::LowQuality { .. })
    ));
    // Nothing but empty frames: the reason is given, not a guess.
    let empty = vec![to_yuyv(&grey), to_yuyv(&grey)];
    assert!(matches!(
        pipeline().best_of(empty).await,
        Err(Error::NoFace)
    ));
    // A camera that runs out mid-burst is an outage, not a face problem.
    let mut short = Scripted {
        frames: vec![to_yuyv(&grey)].into_iter(),
    };
    assert!(matches!(
        camera::burst(&mut short, 0, 3),
        Err(Error::Unavailable(_))
    ));
}

#[test]
fn a_missing_device_is_named() {
    let err = V4l2Camera::open(std::path::Path::new("/dev/video-arclock-absent"), 640, 480)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/dev/video-arclock-absent"), "{err}");
}
