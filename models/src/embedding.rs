//! `Embedding`: an L2-normalised face vector in locked memory, tagged with the
//! model that made it so that vectors from different models are never compared.

use arclock_secmem::{LockedBytes, LockedVec};

use crate::Error;

/// A unit-length embedding. Zeroized on drop, never printed, compared only with
/// embeddings of the same model.
pub struct Embedding {
    model_id: String,
    values: LockedVec<f32>,
}

impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedding")
            .field("model_id", &self.model_id)
            .field("dim", &self.values.len())
            .field("values", &"[redacted]")
            .finish()
    }
}

impl Embedding {
    /// Normalises a raw model output. Refuses an all-zero or non-finite vector
    /// (a broken model must not produce a "match everything" template).
    pub fn from_raw(model_id: &str, raw: &[f32]) -> Result<Self, Error> {
        let norm = raw
            .iter()
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt();
        if raw.is_empty() || !norm.is_finite() || norm < 1e-6 {
            return Err(Error::Model {
                id: model_id.to_string(),
                reason: "produced a zero or non-finite embedding".into(),
            });
        }
        let mut values = LockedVec::<f32>::zeroed(raw.len())?;
        for (d, s) in values.iter_mut().zip(raw) {
            *d = (f64::from(*s) / norm) as f32;
        }
        Ok(Embedding {
            model_id: model_id.to_string(),
            values,
        })
    }

    /// Parses the bytes of [`Embedding::to_bytes`] (little-endian f32), e.g. after
    /// decrypting a template. The vector must already be unit length.
    pub fn from_bytes(model_id: &str, bytes: &[u8]) -> Result<Self, Error> {
        let bad = |why: &str| Error::Template(why.to_string());
        if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
            return Err(bad("length is not a whole number of f32 values"));
        }
        let mut values = LockedVec::<f32>::zeroed(bytes.len() / 4)?;
        for (d, c) in values.iter_mut().zip(bytes.chunks_exact(4)) {
            *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        let norm2: f64 = values.iter().map(|v| f64::from(*v) * f64::from(*v)).sum();
        if !norm2.is_finite() || (norm2 - 1.0).abs() > 1e-3 {
            return Err(bad("not a unit vector"));
        }
        Ok(Embedding {
            model_id: model_id.to_string(),
            values,
        })
    }

    /// Little-endian f32 bytes in locked memory, for encryption into a template.
    pub fn to_bytes(&self) -> Result<LockedBytes, Error> {
        let mut out = LockedBytes::zeroed(self.values.len() * 4)?;
        for (c, v) in out.chunks_exact_mut(4).zip(self.values.iter()) {
            c.copy_from_slice(&v.to_le_bytes());
        }
        Ok(out)
    }

    /// The manifest id of the recognizer that produced this vector.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn dim(&self) -> usize {
        self.values.len()
    }

    /// The values, for callers that must combine embeddings (multi-sample enrolment).
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Cosine similarity (the dot product of unit vectors), in [-1, 1].
    pub fn cosine(&self, other: &Embedding) -> Result<f32, Error> {
        if self.model_id != other.model_id || self.dim() != other.dim() {
            return Err(Error::ModelMismatch {
                expected: format!("{} ({}-d)", self.model_id, self.dim()),
                found: format!("{} ({}-d)", other.model_id, other.dim()),
            });
        }
        let dot: f64 = self
            .values
            .iter()
            .zip(other.values.iter())
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        Ok(dot.clamp(-1.0, 1.0) as f32)
    }

    /// The normalised mean of several embeddings of one person (multi-sample
    /// enrolment).
    pub fn mean(samples: &[Embedding]) -> Result<Self, Error> {
        Self::mean_of(&samples.iter().collect::<Vec<_>>())
    }

    /// [`Embedding::mean`] over borrowed embeddings (the frames of a
    /// liveness answer are fused this way).
    pub fn mean_of(samples: &[&Embedding]) -> Result<Self, Error> {
        let first = samples
            .first()
            .ok_or_else(|| Error::Template("no samples".into()))?;
        let mut acc = LockedVec::<f32>::zeroed(first.dim())?;
        for s in samples {
            first.cosine(s)?; // same model and dimension
            for (a, v) in acc.iter_mut().zip(s.values.iter()) {
                *a += v;
            }
        }
        Embedding::from_raw(&first.model_id, &acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_round_trip_and_redacted_debug() {
        let e = Embedding::from_raw("m", &[3.0, 4.0]).unwrap();
        assert_eq!(e.values(), &[0.6, 0.8]);
        let back = Embedding::from_bytes("m", &e.to_bytes().unwrap()).unwrap();
        assert!((e.cosine(&back).unwrap() - 1.0).abs() < 1e-6);
        let dbg = format!("{e:?}");
        assert!(!dbg.contains("0.6") && !dbg.contains("0.8"), "{dbg}");
        assert!(Embedding::from_raw("m", &[0.0, 0.0]).is_err());
        assert!(Embedding::from_bytes("m", &[0, 0, 128]).is_err());
        assert!(Embedding::from_bytes("m", &2.0f32.to_le_bytes()).is_err());
        let other = Embedding::from_raw("n", &[1.0, 0.0]).unwrap();
        assert!(matches!(e.cosine(&other), Err(Error::ModelMismatch { .. })));
    }
}
