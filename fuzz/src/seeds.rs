//! Writes the starting corpus of every target into `fuzz/corpus/<target>/`
//! (`seed-*` files): small synthetic images in every accepted format and
//! colour type, a rotated-EXIF JPEG, JPEGs as libjpeg-turbo writes them,
//! camera frames, well-formed request
//! bodies, tokens and blobs. No photo of a person is ever committed; the
//! fuzzer grows the rest (`make fuzz` merges what it finds).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder};

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(target: &str, name: &str, selector: u8, body: &[u8]) {
    let mut bytes = vec![selector];
    bytes.extend_from_slice(body);
    write_raw(target, name, &bytes);
}

fn write_raw(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(corpus(target).join(format!("seed-{name}")), bytes).unwrap();
}

/// A smooth gradient with a darker oval: enough structure for every encoder.
fn pixels(w: u32, h: u32, channels: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity((w * h) as usize * channels);
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 / w as f32 - 0.5, y as f32 / h as f32 - 0.5);
            let inside = dx * dx / 0.09 + dy * dy / 0.16 < 1.0;
            let base = (x * 255 / w.max(1)) as u8;
            let v = if inside { base / 2 + 40 } else { base };
            for c in 0..channels {
                out.push(v.wrapping_add((c as u8) * 37).wrapping_add((y * 3) as u8));
            }
        }
    }
    out
}

fn png(w: u32, h: u32, color: ExtendedColorType) -> Vec<u8> {
    let channels = match color {
        ExtendedColorType::L8 => 1,
        ExtendedColorType::La8 => 2,
        ExtendedColorType::Rgb8 => 3,
        ExtendedColorType::Rgba8 => 4,
        ExtendedColorType::L16 => 2,
        ExtendedColorType::Rgb16 => 6,
        other => panic!("{other:?}"),
    };
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(&pixels(w, h, channels), w, h, color)
        .unwrap();
    out
}

fn jpeg(w: u32, h: u32, color: ExtendedColorType, quality: u8) -> Vec<u8> {
    let channels = if color == ExtendedColorType::L8 { 1 } else { 3 };
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(Cursor::new(&mut out), quality)
        .write_image(&pixels(w, h, channels), w, h, color)
        .unwrap();
    out
}

/// `jpeg` with an EXIF APP1 segment saying `orientation` right after SOI.
fn jpeg_with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// `jpeg` without its DHT segments: what many UVC cameras send as MJPEG.
fn without_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
        let marker = jpeg[i + 1];
        if marker == 0xDA {
            break;
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if marker != 0xC4 {
            out.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    out.extend_from_slice(&jpeg[i..]);
    out
}

fn webp(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out)
        .write_image(&pixels(w, h, 3), w, h, ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn frame(w: u16, h: u16, mjpeg: bool, bytes: &[u8]) -> Vec<u8> {
    let mut out = w.to_le_bytes().to_vec();
    out.extend_from_slice(&h.to_le_bytes());
    out.push(u8::from(mjpeg));
    out.extend_from_slice(bytes);
    out
}

fn yuyv(w: u16, h: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w / 2 {
            out.extend_from_slice(&[16 + (x * 8) as u8, 128, 16 + (y * 8) as u8, 200]);
        }
    }
    out
}

fn photos() {
    use ExtendedColorType::*;
    let t = "photo";
    let rgb_jpeg = jpeg(24, 32, Rgb8, 85);
    write(t, "png-rgb", 0, &png(24, 32, Rgb8));
    write(t, "png-rgba", 0, &png(9, 7, Rgba8));
    write(t, "png-grey", 0, &png(16, 16, L8));
    write(t, "png-grey-alpha", 0, &png(5, 11, La8));
    write(t, "png-grey16", 0, &png(8, 8, L16));
    write(t, "png-rgb16", 0, &png(7, 3, Rgb16));
    write(t, "png-1x1", 0, &png(1, 1, Rgb8));
    write(t, "jpeg-rgb", 0, &rgb_jpeg);
    write(t, "jpeg-grey", 0, &jpeg(17, 9, L8, 60));
    for o in [3u16, 6, 8] {
        write(
            t,
            &format!("jpeg-exif-{o}"),
            0,
            &jpeg_with_orientation(&rgb_jpeg, o),
        );
    }
    write(t, "webp-lossless", 0, &webp(12, 20));
    write(t, "frame-yuyv", 1, &frame(8, 4, false, &yuyv(8, 4)));
    write(t, "frame-mjpeg", 1, &frame(24, 32, true, &rgb_jpeg));
    let bare = without_huffman_tables(&rgb_jpeg);
    write(t, "frame-mjpeg-no-dht", 1, &frame(24, 32, true, &bare));
}

/// What our own 1/8 decoder takes, as libjpeg-turbo writes it (phones'
/// encoders write the same structure): 4:2:0 and 4:4:4, large enough to be
/// split over two threads (2,048 MCUs or more), and odd sizes with partial
/// MCUs on both edges.
fn jpegs() {
    use turbojpeg::Subsamp::{None as S444, Sub2x2 as S420};
    let t = "jpeg";
    for (name, w, h, quality, samp) in [
        ("420-split", 800, 672, 40, S420),
        ("444-split", 400, 344, 40, S444),
        ("420-odd", 201, 143, 75, S420),
        ("444-odd", 65, 47, 95, S444),
    ] {
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(quality);
        c.set_subsamp(samp);
        let px = pixels(w as u32, h as u32, 3);
        let jpeg = c
            .compress_to_vec(turbojpeg::Image {
                pixels: px.as_slice(),
                width: w,
                pitch: w * 3,
                height: h,
                format: turbojpeg::PixelFormat::RGB,
            })
            .unwrap();
        write_raw(t, name, &jpeg);
    }
}

fn requests() {
    let t = "request";
    let photo = STANDARD.encode(jpeg(16, 16, ExtendedColorType::Rgb8, 70));
    let register = format!(
        r#"{{"name":"Aaron <b>Peirsol</b>","email":" Aaron@Example.org ","imageBase64":"{photo}"}}"#
    );
    write(t, "register-json", 0, register.as_bytes());
    let login = format!(
        r#"{{"email":"aaron@example.org","imageBase64":"data:image/jpeg;base64,{photo}","device":{{"os":"android"}}}}"#
    );
    write(t, "login-json", 1, login.as_bytes());
    let multipart = format!(
        "--ArcLockFuzz\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nAaron\r\n\
         --ArcLockFuzz\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\naaron@example.org\r\n\
         --ArcLockFuzz\r\nContent-Disposition: form-data; name=\"imageBase64\"\r\n\r\n{photo}\r\n\
         --ArcLockFuzz--\r\n"
    );
    write(t, "register-multipart", 2, multipart.as_bytes());
    write(
        t,
        "refresh",
        3,
        br#"{"refreshToken":"c2VjcmV0LXJlZnJlc2gtdG9rZW4"}"#,
    );
    write(t, "logout", 4, br#"{"refreshToken":"c2VjcmV0"}"#);
    write(t, "logout-empty", 4, b"  ");
    write(
        t,
        "profile",
        5,
        br#"{"name":"  Ada <i>Lovelace</i>\u0007 "}"#,
    );
    write(
        t,
        "query",
        6,
        b"limit=5&cursor=1795996800000.1a&since=2026-01-01T00:00:00%2B01:00&until=2026-12-01T00:00:00.5Z&action=login&status=success",
    );
    write(t, "identity", 7, "Zoë.O'Brien@Exämple.org".as_bytes());
}

fn tokens() {
    let t = "jwt";
    let header = br#"{"alg":"RS256","typ":"JWT","kid":"jwt-v1"}"#;
    let claims = br#"{"iss":"arclock","aud":"arclock-mobile","sub":"00112233445566778899aabbccddeeff","iat":1795996700,"nbf":1795996700,"exp":1795997600,"jti":"0123456789abcdef0123456789abcdef","sid":"fedcba9876543210fedcba9876543210"}"#;
    let mut signed = header.to_vec();
    signed.push(0xFF);
    signed.extend_from_slice(claims);
    write(t, "signed-valid", 1, &signed);
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    write(t, "alg-none", 0, none.as_bytes());
    let hs = format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT","kid":"jwt-v1"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    write(t, "hs256", 0, hs.as_bytes());
}

fn blobs() {
    let t = "blobs";
    let mut wrapped = b"AKW1".to_vec();
    wrapped.extend_from_slice(&1u32.to_be_bytes());
    wrapped.extend_from_slice(&[7u8; 12]);
    wrapped.extend_from_slice(&[0x5A; 48]);
    write(t, "wrapped-key", 0, &wrapped);
    write(t, "sealed", 1, &[0x04; 160]);
    let mut tamper = 77u16.to_le_bytes().to_vec();
    tamper.extend_from_slice(&[0x3C; 64]);
    write(t, "tampered", 2, &tamper);
    let v = (1.0f32 / 128f32.sqrt()).to_le_bytes();
    write(t, "embedding", 3, &v.repeat(128));
    write(t, "cursor-embedded", 4, b"1795996800000.42");
    write(
        t,
        "cursor-mongodb",
        4,
        b"1795996800000.0123456789abcdef01234567",
    );
}

fn main() {
    photos();
    jpegs();
    requests();
    tokens();
    blobs();
    println!("seeds written under {}", corpus("").display());
}
