//! The face pipeline end to end: real ONNX Runtime, real models, real photos
//! from `../shared/faces`; bad inputs synthesised here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::io::Cursor;
use std::sync::Arc;

use arclock_face::{
    Embedding, Error, FaceModels, Manifest, Pipeline, Policy, Threads, Timings, Workspace,
    photo::Limits,
};
use arclock_secmem::LockedBytes;
use common::{faces, manifest_path, runtime, state};
use image::{ImageFormat, RgbImage};
use sha2::{Digest, Sha256};

const TWO: Threads = Threads {
    workers: 2,
    intra: 1,
};

fn manifest_text() -> String {
    std::fs::read_to_string(manifest_path()).unwrap()
}

/// The default pipeline (SCRFD + the 128-d recognizer), loaded once per process.
fn pipeline() -> Arc<Pipeline> {
    common::default_pipeline(TWO.workers)
}

fn photo(name: &str, n: u32) -> Vec<u8> {
    std::fs::read(faces().join(format!("lfw-dev/{name}/{name}_{n:04}.jpg"))).unwrap()
}

fn embed(bytes: &[u8]) -> Result<Embedding, Error> {
    let mut ws = Workspace::new().unwrap();
    let out = pipeline().run(&mut ws, bytes, None).map(|f| f.embedding);
    assert!(ws.is_wiped(), "workspace must be wiped after every run");
    out
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

fn decode(bytes: &[u8]) -> RgbImage {
    image::load_from_memory(bytes).unwrap().to_rgb8()
}

#[test]
fn a_real_photo_gives_a_unit_vector_of_the_manifest_dimension() {
    let bytes = photo("Aaron_Peirsol", 1);
    let a = embed(&bytes).unwrap();
    let b = embed(&bytes).unwrap();
    let dim = pipeline().models().recognizer.spec.embedding_dim.unwrap();
    assert_eq!(a.dim(), dim);
    assert_eq!(a.model_id(), "arcface_mobileface_128");
    let norm: f32 = a.values().iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    let same = a.cosine(&b).unwrap();
    assert!((same - 1.0).abs() < 1e-5, "{same}");
    // The vector never shows in Debug output.
    let dbg = format!("{a:?}");
    assert!(dbg.contains("redacted"));
    assert!(!dbg.contains(&format!("{}", a.values()[0])), "{dbg}");
}

#[test]
fn same_person_matches_and_different_people_do_not() {
    let threshold = pipeline().threshold().expect("manifest threshold");
    let same = [
        (("Aaron_Peirsol", 1), ("Aaron_Peirsol", 2)),
        (("Adam_Sandler", 1), ("Adam_Sandler", 2)),
        (("Al_Pacino", 1), ("Al_Pacino", 2)),
    ];
    for ((p1, n1), (p2, n2)) in same {
        let s = embed(&photo(p1, n1))
            .unwrap()
            .cosine(&embed(&photo(p2, n2)).unwrap())
            .unwrap();
        assert!(s >= threshold, "{p1} {n1} vs {n2}: {s} < {threshold}");
    }
    let different = [
        (("Aaron_Peirsol", 1), ("Adam_Sandler", 1)),
        (("Al_Pacino", 1), ("Aaron_Peirsol", 2)),
        (("Adam_Sandler", 2), ("Al_Pacino", 2)),
    ];
    for ((p1, n1), (p2, n2)) in different {
        let s = embed(&photo(p1, n1))
            .unwrap()
            .cosine(&embed(&photo(p2, n2)).unwrap())
            .unwrap();
        assert!(s < threshold, "{p1} vs {p2}: {s} >= {threshold}");
    }
}

#[test]
fn no_face_two_faces_and_a_tiny_face_are_typed_errors() {
    // A smooth gradient: no face.
    let blank = RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([(x / 2) as u8, (y / 2) as u8, 90])
    });
    assert!(matches!(
        embed(&encode(&blank, ImageFormat::Png)),
        Err(Error::NoFace)
    ));

    // A panel of three people side by side: similar-sized faces, none the
    // obvious subject.
    let mut panel = RgbImage::new(450, 150);
    for (i, name) in ["Aaron_Peirsol", "Zinedine_Zidane", "Abdullah"]
        .iter()
        .enumerate()
    {
        let face = decode(&photo(name, 1));
        image::imageops::overlay(&mut panel, &face, 150 * i as i64, 0);
    }
    match embed(&encode(&panel, ImageFormat::Png)) {
        Err(Error::MultipleFaces { count }) => assert!(count >= 2),
        other => panic!("three faces gave {other:?}"),
    }

    // A real face shrunk to ~25 px in the middle of a larger photo (the
    // 150x150 photo's face is ~54 px).
    let face = image::imageops::resize(
        &decode(&photo("Aaron_Peirsol", 1)),
        70,
        70,
        image::imageops::FilterType::Triangle,
    );
    let mut canvas = RgbImage::from_pixel(400, 400, image::Rgb([120, 120, 120]));
    image::imageops::overlay(&mut canvas, &face, 145, 145);
    match embed(&encode(&canvas, ImageFormat::Png)) {
        Err(Error::FaceTooSmall { pixels, minimum }) => assert!(pixels < minimum),
        other => panic!("tiny face gave {other:?}"),
    }
}

#[test]
fn broken_and_hostile_files_are_typed_errors() {
    let real = photo("Aaron_Peirsol", 1);

    let truncated = &real[..real.len() / 2];
    assert!(
        matches!(embed(truncated), Err(Error::CorruptImage(_))),
        "{:?}",
        embed(truncated)
    );

    let mut corrupt = real[..20].to_vec();
    corrupt.extend((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    corrupt.extend([0xFF, 0xD9]);
    assert!(matches!(embed(&corrupt), Err(Error::CorruptImage(_))));

    let png = encode(&RgbImage::new(64, 64), ImageFormat::Png);
    let mut bad_png = png.clone();
    let n = bad_png.len();
    bad_png[n / 2..n - 12].fill(0x5A);
    assert!(matches!(embed(&bad_png), Err(Error::CorruptImage(_))));

    // A 30000x30000 PNG: only the header exists; refused before any allocation.
    assert!(matches!(
        embed(&png_header(30_000, 30_000)),
        Err(Error::ImageTooLarge(_))
    ));

    assert!(matches!(
        embed(b"this is not an image, it is a sentence"),
        Err(Error::UnsupportedImage(_))
    ));
    assert!(matches!(
        embed(&[b"BM".as_slice(), &[0u8; 62]].concat()),
        Err(Error::UnsupportedImage(_))
    ));

    let mut huge = real.clone();
    huge.resize(Limits::default().max_bytes + 1, 0);
    assert!(matches!(embed(&huge), Err(Error::ImageTooLarge(_))));

    // Every one of these is a client error, not a service failure.
    for e in [
        embed(truncated).unwrap_err(),
        embed(&png_header(30_000, 30_000)).unwrap_err(),
        embed(b"GIF89a").unwrap_err(),
    ] {
        assert!(e.is_photo_problem(), "{e}");
    }
}

#[test]
fn exif_orientation_is_honoured() {
    let upright = photo("Al_Pacino", 1);
    let img = decode(&upright);
    // Store the pixels rotated 90 degrees clockwise, with EXIF orientation 8
    // ("rotate 270 clockwise to display"), as a phone held sideways does.
    let rotated = image::imageops::rotate90(&img);
    let jpeg = encode(&rotated, ImageFormat::Jpeg);
    let with_exif = insert_exif_orientation(&jpeg, 8);

    let reference = embed(&encode(&img, ImageFormat::Jpeg)).unwrap();
    let oriented = embed(&with_exif).unwrap();
    let s = reference.cosine(&oriented).unwrap();
    assert!(s > 0.95, "EXIF-oriented photo scored {s} against upright");
}

#[test]
fn a_large_photo_gives_the_same_face_as_the_small_one() {
    // The LFW photo enlarged 6x inside a 12 MP frame: exercises the detector's
    // area resampling and the alignment's pre-shrink of large faces.
    let img = decode(&photo("Adam_Sandler", 1));
    let big = image::imageops::resize(&img, 1500, 1500, image::imageops::FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(4032, 3024, image::Rgb([128, 128, 128]));
    image::imageops::overlay(&mut canvas, &big, 1266, 762);
    let large = embed(&encode(&canvas, ImageFormat::Jpeg)).unwrap();
    let small = embed(&encode(&img, ImageFormat::Jpeg)).unwrap();
    let s = large.cosine(&small).unwrap();
    assert!(s > 0.9, "same photo at 6x scored {s}");
}

#[test]
fn a_phone_photo_is_decoded_at_an_eighth_and_embeds_like_the_original() {
    // 12 MP, textured, JPEG 4:2:0 as phones write it. Decoding it whole would
    // take 36 MiB of RGB; the DCT-scaled decode (504x378) takes 0.6 MiB, the
    // entropy-coded data's unstuffed copy ~0.9 MiB and, with a second worker
    // idle, the second half's coefficients up to 5.1 MiB, so the workspace's
    // size proves the full-size pixels never existed.
    let original = photo("Adam_Sandler", 1);
    let phone = arclock_face::eval::phone_variant(&original).unwrap();
    let mut ws = Workspace::new().unwrap();
    let face = pipeline().run(&mut ws, &phone, None).unwrap();
    assert!(ws.is_wiped());
    let mib = ws.locked_bytes() as f64 / (1024.0 * 1024.0);
    assert!(
        mib < 8.0,
        "the workspace grew to {mib:.1} MiB for a 12 MP JPEG"
    );
    // Geometry comes back in the photo's own pixels.
    assert!(face.measures.face_px > 600.0, "{:?}", face.measures);
    let s = face.embedding.cosine(&embed(&original).unwrap()).unwrap();
    assert!(s > 0.9, "the phone photo scored {s} against the original");
}

#[test]
fn a_phone_photo_decoded_in_two_halves_embeds_exactly_as_decoded_whole() {
    // The speculative second half (models/src/jpeg.rs) gives libjpeg-turbo's
    // pixels bit for bit, so the embedding is the very same. A one-worker
    // pipeline never splits (no worker is idle); the shared two-worker one
    // does whenever the other tests leave its second worker idle.
    let phone = arclock_face::eval::phone_variant(&photo("Aaron_Peirsol", 1)).unwrap();
    let alone = common::new_pipeline(1);
    let mut ws = Workspace::new().unwrap();
    let mut t = Timings::default();
    let whole = alone.run(&mut ws, &phone, Some(&mut t)).unwrap();
    assert!(!t.decode_halves, "a one-worker pipeline split the decode");

    let shared = pipeline();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let halves = loop {
        let mut t = Timings::default();
        let face = shared.run(&mut ws, &phone, Some(&mut t)).unwrap();
        assert!(ws.is_wiped());
        if t.decode_halves {
            break face;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no run split its decode in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let s = halves.embedding.cosine(&whole.embedding).unwrap();
    assert!(
        s > 0.999_999,
        "decoded in halves, the embedding moved: cosine {s}"
    );
    assert_eq!(halves.detection.bbox, whole.detection.bbox);
}

#[test]
fn a_small_face_in_a_large_photo_is_found_by_a_larger_second_pass() {
    // A ~220 px face in a 12 MP frame: ~10 px in the first pass (too small to
    // trust or to find), found in the second, aligned from a finer decode.
    let img = decode(&photo("Adam_Sandler", 1));
    let big = image::imageops::resize(&img, 600, 600, image::imageops::FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(4032, 3024, image::Rgb([128, 128, 128]));
    image::imageops::overlay(&mut canvas, &big, 1700, 1200);
    let mut ws = Workspace::new().unwrap();
    let face = pipeline()
        .run(&mut ws, &encode(&canvas, ImageFormat::Jpeg), None)
        .unwrap();
    assert!(ws.is_wiped());
    let [x1, y1, x2, y2] = face.detection.bbox;
    assert!(
        x1 > 1700.0 && y1 > 1200.0 && x2 < 2300.0 && y2 < 1800.0,
        "the box {:?} is not where the face was put",
        face.detection.bbox
    );
    let s = face
        .embedding
        .cosine(&embed(&encode(&img, ImageFormat::Jpeg)).unwrap())
        .unwrap();
    assert!(s > 0.9, "the small face scored {s} against the original");
}

#[test]
fn locked_buffers_read_back_as_zeros_after_a_run() {
    let mut ws = Workspace::new().unwrap();
    let p = pipeline();
    p.run(&mut ws, &photo("Adam_Sandler", 1), None).unwrap();
    assert!(ws.is_wiped());
    assert!(
        ws.locked_bytes() > 0,
        "the workspace held the photo in locked memory"
    );
    let _ = p.run(&mut ws, &photo("Adam_Sandler", 1)[..1000], None);
    assert!(ws.is_wiped(), "wiped after an error too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_pool_embeds_concurrently_and_wipes_its_workspaces() {
    let p = pipeline();
    let mut tasks = Vec::new();
    for n in [1, 2, 1, 2, 1, 2] {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let bytes = LockedBytes::from_slice(&photo("Aaron_Peirsol", n)).unwrap();
            p.embed(bytes).await
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap().unwrap().embedding);
    }
    assert!((got[0].cosine(&got[2]).unwrap() - 1.0).abs() < 1e-5);
    assert!(p.workspaces_wiped());
}

/// A 512-d recognizer (the InsightFace w600k size) works by a manifest edit
/// alone: a synthetic ONNX graph with the w600k input contract
/// (input.1, 1x3x112x112, (x-127.5)/127.5) and a 512-d output.
#[test]
fn a_512_d_recognizer_needs_only_a_manifest_entry() {
    let dir = tempfile::tempdir().unwrap();
    let model = synthetic_512_model();
    std::fs::write(dir.path().join("synthetic_w600k_512.onnx"), &model).unwrap();
    std::fs::copy(
        state().join("models/scrfd_2.5g_bnkps.onnx"),
        dir.path().join("scrfd_2.5g_bnkps.onnx"),
    )
    .unwrap();
    let text = format!(
        "{}\n[[model]]\nid = \"synthetic_w600k_512\"\nrole = \"recognizer\"\nkind = \"arcface\"\n\
         file = \"synthetic_w600k_512.onnx\"\nsha256 = \"{}\"\nbytes = {}\ninput = \"input.1\"\n\
         input_size = [112, 112]\nchannel_order = \"rgb\"\nmean = 127.5\nstd = 127.5\n\
         embedding_dim = 512\nthreshold = 0.3\n",
        manifest_text(),
        hex::encode(Sha256::digest(&model)),
        model.len()
    );
    let manifest = Manifest::parse(&text).unwrap();
    let models = FaceModels::load(
        &runtime(),
        &manifest,
        dir.path(),
        "scrfd_2.5g_bnkps",
        "synthetic_w600k_512",
        TWO,
    )
    .unwrap();
    assert_eq!(models.status().embedding_dim, 512);
    let p = Pipeline::new(models, Policy::default(), Limits::default(), 1);
    let mut ws = Workspace::new().unwrap();
    let a = p
        .run(&mut ws, &photo("Aaron_Peirsol", 1), None)
        .unwrap()
        .embedding;
    let b = p
        .run(&mut ws, &photo("Adam_Sandler", 1), None)
        .unwrap()
        .embedding;
    assert_eq!((a.dim(), a.model_id()), (512, "synthetic_w600k_512"));
    let norm: f32 = a.values().iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    assert!(
        a.cosine(&b).unwrap() < 0.9999,
        "different faces, different vectors"
    );
    // A 512-d probe is never compared with a 128-d template.
    let old = embed(&photo("Aaron_Peirsol", 1)).unwrap();
    assert!(matches!(old.cosine(&a), Err(Error::ModelMismatch { .. })));
}

#[test]
fn vectorised_prelu_gives_the_shipped_graphs_answers_bit_for_bit() {
    // The same models, once as shipped (`fast_prelu = false`) and once
    // rewritten, on real photos: every embedding value and PAD score equal.
    let text = manifest_text();
    let mut shipped = Manifest::parse(&text).unwrap();
    for m in &mut shipped.models {
        m.fast_prelu = false;
    }
    let load = |manifest: &Manifest| {
        FaceModels::load(
            &runtime(),
            manifest,
            &state().join("models"),
            "scrfd_2.5g_bnkps",
            "arcface_mobileface_128",
            Threads {
                workers: 1,
                intra: 1,
            },
        )
        .unwrap()
    };
    let fast = load(&Manifest::parse(&text).unwrap());
    let graphs: Vec<(String, arclock_face::GraphForm)> = fast
        .graphs()
        .into_iter()
        .map(|(id, g)| (id.to_string(), g.clone()))
        .collect();
    assert!(
        graphs.iter().any(|(id, g)| id == "arcface_mobileface_128"
            && *g == arclock_face::GraphForm::FastPrelu(33)),
        "{graphs:?}"
    );
    assert!(
        load(&shipped)
            .graphs()
            .iter()
            .all(|(_, g)| **g == arclock_face::GraphForm::AsShipped)
    );
    assert!(fast.pad_status().is_ready(), "the PAD models are installed");
    let fast = Pipeline::new(fast, Policy::default(), Limits::default(), 1).with_pad(true);
    let shipped =
        Pipeline::new(load(&shipped), Policy::default(), Limits::default(), 1).with_pad(true);
    let mut ws = Workspace::new().unwrap();
    let mut people: Vec<_> = std::fs::read_dir(faces().join("lfw-dev"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    people.sort();
    let mut compared = 0;
    for name in people.iter().take(24) {
        let bytes = photo(name, 1);
        let (Ok(a), Ok(b)) = (
            fast.run(&mut ws, &bytes, None),
            shipped.run(&mut ws, &bytes, None),
        ) else {
            continue;
        };
        let bits = |e: &Embedding| e.values().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.embedding), bits(&b.embedding), "{name}");
        assert_eq!(a.pad.map(f32::to_bits), b.pad.map(f32::to_bits), "{name}");
        assert!(a.pad.is_some(), "{name}: PAD ran");
        compared += 1;
    }
    assert!(compared >= 20, "only {compared} photos had a face");
}

// ---- synthetic inputs -------------------------------------------------------

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// PNG signature + a valid IHDR claiming `w` x `h` RGB8, and nothing else.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    out.extend(13u32.to_be_bytes());
    out.extend(&ihdr);
    out.extend(crc32(&ihdr).to_be_bytes());
    out
}

/// Inserts an APP1 Exif segment holding only an Orientation tag after SOI.
fn insert_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec(); // big-endian, IFD at 8
    tiff.extend(1u16.to_be_bytes()); // one entry
    tiff.extend(0x0112u16.to_be_bytes()); // Orientation
    tiff.extend(3u16.to_be_bytes()); // SHORT
    tiff.extend(1u32.to_be_bytes()); // count
    tiff.extend(orientation.to_be_bytes());
    tiff.extend([0, 0]); // value padding
    tiff.extend(0u32.to_be_bytes()); // no next IFD
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(((payload.len() + 2) as u16).to_be_bytes());
    out.extend(payload);
    out.extend(&jpeg[2..]);
    out
}

/// Protocol-buffer writer for the few ONNX messages the synthetic model needs.
mod pb {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    pub fn int(out: &mut Vec<u8>, field: u64, v: i64) {
        varint(out, field << 3);
        varint(out, v as u64);
    }
    pub fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        varint(out, (field << 3) | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

/// input.1 [1,3,112,112] -> AveragePool 14x14 -> Flatten -> MatMul [192, 512].
fn synthetic_512_model() -> Vec<u8> {
    use pb::{bytes, int};
    let attr_ints = |name: &str, v: &[i64]| {
        let mut a = Vec::new();
        bytes(&mut a, 1, name.as_bytes());
        for x in v {
            int(&mut a, 8, *x);
        }
        int(&mut a, 20, 7); // INTS
        a
    };
    let attr_int = |name: &str, v: i64| {
        let mut a = Vec::new();
        bytes(&mut a, 1, name.as_bytes());
        int(&mut a, 3, v);
        int(&mut a, 20, 2); // INT
        a
    };
    let node = |inputs: &[&str], output: &str, op: &str, attrs: &[Vec<u8>]| {
        let mut n = Vec::new();
        for i in inputs {
            bytes(&mut n, 1, i.as_bytes());
        }
        bytes(&mut n, 2, output.as_bytes());
        bytes(&mut n, 3, output.as_bytes());
        bytes(&mut n, 4, op.as_bytes());
        for a in attrs {
            bytes(&mut n, 5, a);
        }
        n
    };
    let value_info = |name: &str, dims: &[i64]| {
        let mut shape = Vec::new();
        for d in dims {
            let mut dim = Vec::new();
            int(&mut dim, 1, *d);
            bytes(&mut shape, 1, &dim);
        }
        let mut tensor = Vec::new();
        int(&mut tensor, 1, 1); // FLOAT
        bytes(&mut tensor, 2, &shape);
        let mut ty = Vec::new();
        bytes(&mut ty, 1, &tensor);
        let mut v = Vec::new();
        bytes(&mut v, 1, name.as_bytes());
        bytes(&mut v, 2, &ty);
        v
    };
    let mut weights = Vec::with_capacity(192 * 512 * 4);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..192 * 512 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v = ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
        weights.extend(v.to_le_bytes());
    }
    let mut init = Vec::new();
    int(&mut init, 1, 192);
    int(&mut init, 1, 512);
    int(&mut init, 2, 1); // FLOAT
    bytes(&mut init, 8, b"W");
    bytes(&mut init, 9, &weights);

    let mut graph = Vec::new();
    bytes(
        &mut graph,
        1,
        &node(
            &["input.1"],
            "pooled",
            "AveragePool",
            &[
                attr_ints("kernel_shape", &[14, 14]),
                attr_ints("strides", &[14, 14]),
            ],
        ),
    );
    bytes(
        &mut graph,
        1,
        &node(&["pooled"], "flat", "Flatten", &[attr_int("axis", 1)]),
    );
    bytes(
        &mut graph,
        1,
        &node(&["flat", "W"], "embedding", "MatMul", &[]),
    );
    bytes(&mut graph, 2, b"synthetic_w600k_512");
    bytes(&mut graph, 5, &init);
    bytes(&mut graph, 11, &value_info("input.1", &[1, 3, 112, 112]));
    bytes(&mut graph, 12, &value_info("embedding", &[1, 512]));

    let mut opset = Vec::new();
    bytes(&mut opset, 1, b"");
    int(&mut opset, 2, 13);
    let mut model = Vec::new();
    int(&mut model, 1, 8); // IR version
    bytes(&mut model, 2, b"arclock-test");
    bytes(&mut model, 7, &graph);
    bytes(&mut model, 8, &opset);
    model
}
