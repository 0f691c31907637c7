//! The model manifest (`models/manifest.toml`): file, sha256, tensor names,
//! input size and normalisation of each model, so that a different model is a
//! manifest edit, not a code change.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// What a model does in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Detector,
    Recognizer,
    /// Passive presentation-attack detection (a face crop in, live/attack out).
    Pad,
}

/// Channel order the model was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// One model file and how to feed it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Stable id recorded with every template.
    pub id: String,
    pub role: Role,
    /// Output decoder family: `scrfd`, `yunet` or `arcface`.
    pub kind: String,
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    /// Upstream location for installs without the local mirror ("" = none).
    #[serde(default)]
    pub url: String,
    pub input: String,
    /// `[width, height]`.
    pub input_size: [u32; 2],
    pub channel_order: ChannelOrder,
    pub mean: f32,
    pub std: f32,
    /// Recognizers only.
    #[serde(default)]
    pub embedding_dim: Option<usize>,
    /// Detectors only: candidate score cut-off (default per family).
    #[serde(default)]
    pub score_threshold: Option<f32>,
    /// Recognizers only: cosine similarity at or above which two faces match,
    /// calibrated for this model by `arclock-face eval` (see models/README.md).
    #[serde(default)]
    pub threshold: Option<f32>,
    /// PAD models only: the face box is enlarged by this factor (clamped to
    /// the photo) before the crop is resized to `input_size`.
    #[serde(default)]
    pub crop_scale: Option<f32>,
    /// The installer may skip this file when neither the mirror nor an
    /// upstream URL has it; the pipeline then reports the model unavailable.
    #[serde(default)]
    pub optional: bool,
    /// Run the model's constant-slope `PRelu`s in vectorised form
    /// (`graph::fast_prelu`, same outputs bit for bit, checked at load);
    /// `false` hands ONNX Runtime the file exactly as shipped.
    #[serde(default = "yes")]
    pub fast_prelu: bool,
}

fn yes() -> bool {
    true
}

/// All models known to this installation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "model")]
    pub models: Vec<ModelSpec>,
}

impl Manifest {
    /// Reads and checks a manifest file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| Error::Manifest {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses manifest text and checks each entry's invariants.
    pub fn parse(text: &str) -> Result<Self, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        for (i, spec) in m.models.iter().enumerate() {
            let at = |key: &str| format!("model[{i}] ({}).{key}", spec.id);
            if m.models.iter().filter(|o| o.id == spec.id).count() > 1 {
                return Err(format!("{}: duplicate id", at("id")));
            }
            if spec.sha256.len() != 64 || !spec.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("{}: not a hex sha256", at("sha256")));
            }
            if spec.input_size.contains(&0) {
                return Err(format!("{}: zero dimension", at("input_size")));
            }
            if !(spec.std.is_finite() && spec.std > 0.0 && spec.mean.is_finite()) {
                return Err(format!("{}: needs finite mean and std > 0", at("std")));
            }
            if spec.file.contains('/') || spec.file.starts_with('.') {
                return Err(format!("{}: must be a plain file name", at("file")));
            }
            let unit =
                |v: Option<f32>| v.is_none_or(|t| t.is_finite() && (-1.0..=1.0).contains(&t));
            if !unit(spec.threshold) || !unit(spec.score_threshold) {
                return Err(format!("{}: must be within [-1, 1]", at("threshold")));
            }
            if (spec.role == Role::Detector && spec.threshold.is_some())
                || (spec.role == Role::Recognizer && spec.score_threshold.is_some())
            {
                return Err(format!(
                    "{}: `threshold` is for recognizers, `score_threshold` for detectors",
                    at("threshold")
                ));
            }
            match (spec.role, spec.crop_scale) {
                (Role::Pad, Some(s)) if s.is_finite() && s >= 1.0 => {}
                (Role::Pad, _) => {
                    return Err(format!("{}: PAD models need one >= 1", at("crop_scale")));
                }
                (_, Some(_)) => {
                    return Err(format!("{}: only for PAD models", at("crop_scale")));
                }
                (_, None) => {}
            }
            match (spec.role, spec.kind.as_str(), spec.embedding_dim) {
                (Role::Detector, "scrfd" | "yunet", None) => {}
                (Role::Pad, "minifasnet", None) => {}
                (Role::Recognizer, "arcface", Some(d)) if d > 0 => {}
                (Role::Detector, _, Some(_)) => {
                    return Err(format!("{}: only for recognizers", at("embedding_dim")));
                }
                (Role::Recognizer, "arcface", _) => {
                    return Err(format!("{}: required for recognizers", at("embedding_dim")));
                }
                _ => {
                    return Err(format!(
                        "{}: {:?} cannot be a {:?}",
                        at("kind"),
                        spec.kind,
                        spec.role
                    ));
                }
            }
        }
        Ok(m)
    }

    /// The model with `id` in `role`, or a clear error listing what exists.
    pub fn get(&self, id: &str, role: Role) -> Result<&ModelSpec, String> {
        self.models
            .iter()
            .find(|m| m.id == id && m.role == role)
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .models
                    .iter()
                    .filter(|m| m.role == role)
                    .map(|m| m.id.as_str())
                    .collect();
                format!(
                    "no {role:?} named {id:?} in the manifest (known: {})",
                    known.join(", ")
                )
            })
    }
}

impl ModelSpec {
    /// Where the file lives under a model directory.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(&self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Manifest {
        Manifest::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("manifest.toml")).unwrap()
    }

    #[test]
    fn shipped_manifest_is_valid() {
        let m = shipped();
        assert_eq!(
            m.get("arcface_mobileface_128", Role::Recognizer)
                .unwrap()
                .embedding_dim,
            Some(128)
        );
        assert!(m.get("scrfd_2.5g_bnkps", Role::Detector).is_ok());
        let e = m.get("scrfd_2.5g_bnkps", Role::Recognizer).unwrap_err();
        assert!(e.contains("known: arcface_mobileface_128"), "{e}");
    }

    #[test]
    fn rejects_bad_entries_naming_the_key() {
        let good =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifest.toml"))
                .unwrap();
        let cases = [
            ("embedding_dim = 128", "embedding_dim = 0", "embedding_dim"),
            ("std = 128.0", "std = 0.0", "std"),
            (
                "file = \"scrfd_2.5g_bnkps.onnx\"",
                "file = \"../x.onnx\"",
                "file",
            ),
            ("input = \"x\"", "input = \"x\"\nbogus = 1", "bogus"),
            (
                "bc24bb349491481c3ca793cf89306723162c280cb284c5a5e49df3760bf5c2ce",
                "nothex",
                "sha256",
            ),
        ];
        for (from, to, key) in cases {
            let text = good.replacen(from, to, 1);
            let e = Manifest::parse(&text).unwrap_err();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
