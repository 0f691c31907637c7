//! The local camera of a kiosk or door appliance: enrol and verify through
//! the same face pipeline, template sealing and lockouts as the mobile API,
//! driven from the admin socket (console keys `e` and `v`).
//!
//! The device is opened on first use and reopened after any capture error, so
//! a camera unplugged and plugged back in recovers without a restart; while it
//! is missing, camera requests answer 503 naming the device.

use std::sync::{Arc, Mutex};

use arclock_face::Face;
use arclock_face::camera::{self, Camera, V4l2Camera};

use crate::config;

/// The configured camera, opened lazily.
pub struct Kiosk {
    config: config::Camera,
    device: Mutex<Option<Box<dyn Camera>>>,
}

impl std::fmt::Debug for Kiosk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kiosk")
            .field("device", &self.config.device)
            .finish_non_exhaustive()
    }
}

impl Kiosk {
    pub fn new(config: config::Camera) -> Self {
        Kiosk {
            config,
            device: Mutex::new(None),
        }
    }

    /// Captures a burst (after the warm-up frames) on a blocking thread and
    /// keeps the best face of it.
    pub async fn best_face(
        self: &Arc<Self>,
        pipeline: &Arc<arclock_face::Pipeline>,
    ) -> Result<Face, arclock_face::Error> {
        let me = Arc::clone(self);
        let frames = tokio::task::spawn_blocking(move || me.burst())
            .await
            .map_err(|e| {
                arclock_face::Error::Unavailable(format!("camera worker failed: {e}"))
            })??;
        pipeline.best_of(frames).await
    }

    fn burst(&self) -> Result<Vec<camera::Frame>, arclock_face::Error> {
        let mut slot = self
            .device
            .lock()
            .map_err(|_| arclock_face::Error::Unavailable("camera state poisoned".into()))?;
        if slot.is_none() {
            let cam = V4l2Camera::open(&self.config.device, self.config.width, self.config.height)?;
            tracing::info!(camera = %cam.describe(), "camera opened");
            *slot = Some(Box::new(cam));
        }
        let Some(cam) = slot.as_mut() else {
            return Err(arclock_face::Error::Unavailable("camera not open".into()));
        };
        let out = camera::burst(cam.as_mut(), self.config.warmup, self.config.burst);
        if out.is_err() {
            // Unplugged, or the driver wedged: reopen next time.
            *slot = None;
        }
        out
    }

    /// The device path, for answers and the audit log.
    pub fn device(&self) -> String {
        self.config.device.display().to_string()
    }
}
