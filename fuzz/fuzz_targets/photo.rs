//! Photo bytes (and camera frames) through decode, EXIF orientation, colour
//! conversion and the detector's input tensor: what a client's upload
//! reaches before ONNX Runtime does.
//!
//! Input: `0x00 | photo bytes` (what `imageBase64` decodes to) or
//! `0x01 | width u16le | height u16le | mjpeg u8 | frame bytes` (a V4L2
//! frame as the driver hands it over).
#![no_main]

use std::sync::{Mutex, OnceLock};

use arclock_face::{Manifest, ModelSpec, Role, Workspace, fuzzing};
use libfuzzer_sys::fuzz_target;

fn detectors() -> &'static [ModelSpec] {
    static SPECS: OnceLock<Vec<ModelSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let m = Manifest::parse(include_str!("../../models/manifest.toml")).unwrap();
        m.models
            .iter()
            .filter(|s| s.role == Role::Detector)
            .cloned()
            .collect()
    })
}

fn workspace() -> &'static Mutex<Workspace> {
    static WS: OnceLock<Mutex<Workspace>> = OnceLock::new();
    WS.get_or_init(|| Mutex::new(Workspace::new().unwrap()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut ws = workspace().lock().unwrap();
    for spec in detectors() {
        let _ = match (which & 1, rest) {
            (0, bytes) => fuzzing::photo(spec, &mut ws, bytes),
            (_, [w0, w1, h0, h1, mjpeg, bytes @ ..]) => fuzzing::frame(
                spec,
                &mut ws,
                u32::from(u16::from_le_bytes([*w0, *w1])),
                u32::from(u16::from_le_bytes([*h0, *h1])),
                mjpeg & 1 == 1,
                bytes,
            ),
            _ => return,
        };
        assert!(ws.is_wiped(), "a run left pixels behind");
    }
});
