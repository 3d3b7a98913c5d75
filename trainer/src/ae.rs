//! Phase 0, first part: training the tiny autoencoder on a manifest dataset (the synthetic
//! scenes), on random crops, and measuring held-out PSNR on whole images.

use crate::data::manifest::Manifest;
use crate::data::rng::Rng;
use candle_core::{Device, Tensor};
use image::RgbImage;
use skeleguide_engine::model::tiny_ae::{self, psnr};
use skeleguide_engine::model::{
    Autoencoder, ModelError, TinyAe, TinyAeConfig, TinyAeTrainOptions, TinyAeTrainer,
};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum AeTrainError {
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
}

/// Every image of a manifest, decoded: the scene with people, the background and the layout
/// (the background with the skeletons drawn by the engine's rasteriser), since the autoencoder
/// carries layouts too and must keep their limbs legible.
pub fn load_images(dir: &Path, limit: usize) -> Result<Vec<RgbImage>, AeTrainError> {
    let m = Manifest::open(dir).map_err(|e| AeTrainError::Data(e.to_string()))?;
    let mut out = Vec::new();
    for r in m.records.iter().take(limit) {
        let s = r.load().map_err(|e| AeTrainError::Data(e.to_string()))?;
        out.push(skeleguide_engine::pose::draw_layout(
            Some(&s.background),
            &s.poses,
        ));
        out.push(s.image);
        out.push(s.background);
    }
    if out.is_empty() {
        return Err(AeTrainError::Data(format!(
            "{}: the manifest has no records",
            dir.display()
        )));
    }
    Ok(out)
}

/// RGB8 images of one size as an NCHW f32 tensor in [-1, 1] on the CPU.
pub fn to_tensor(imgs: &[&RgbImage]) -> candle_core::Result<Tensor> {
    let (w, h) = imgs[0].dimensions();
    let mut v = Vec::with_capacity(imgs.len() * (w * h * 3) as usize);
    for img in imgs {
        v.extend(img.as_raw().iter().map(|&b| b as f32 / 127.5 - 1.0));
    }
    Ok(
        Tensor::from_vec(v, (imgs.len(), h as usize, w as usize, 3), &Device::Cpu)?
            .permute((0, 3, 1, 2))?
            .contiguous()?,
    )
}

/// Batches of `batch` random `crop`×`crop` crops (multiples of 8), forever.
pub fn crops(
    images: &[RgbImage],
    batch: usize,
    crop: u32,
    seed: u64,
) -> impl Iterator<Item = skeleguide_engine::model::Result<Tensor>> + '_ {
    let mut rng = Rng::new(seed);
    std::iter::repeat_with(move || {
        let picked: Vec<RgbImage> = (0..batch)
            .map(|_| {
                let img = &images[rng.below(images.len())];
                let (w, h) = img.dimensions();
                let (cw, ch) = (crop.min(w), crop.min(h));
                let x = rng.below((w - cw + 1) as usize) as u32 / 8 * 8;
                let y = rng.below((h - ch + 1) as usize) as u32 / 8 * 8;
                image::imageops::crop_imm(img, x, y, cw / 8 * 8, ch / 8 * 8).to_image()
            })
            .collect();
        let refs: Vec<&RgbImage> = picked.iter().collect();
        to_tensor(&refs).map_err(|e| ModelError::InvalidConfig(e.to_string()))
    })
}

/// Mean PSNR (dB) of encode→decode over `images` (whole images, sides multiples of 8).
pub fn held_out_psnr(ae: &TinyAe, images: &[RgbImage]) -> Result<f64, AeTrainError> {
    let mut total = 0.0;
    for img in images {
        let x = to_tensor(&[img])?;
        let y = ae.decode(&ae.encode(&x)?)?;
        total += psnr(&x, &y)?;
    }
    Ok(total / images.len().max(1) as f64)
}

/// What [`train`] runs: the architecture, the budget and the batches.
#[derive(Debug, Clone)]
pub struct AeRun {
    /// The architecture (`TinyAeConfig::default()` is the tiny preset's).
    pub config: TinyAeConfig,
    /// Optimiser steps at most.
    pub steps: usize,
    /// A wall-time budget in seconds: training stops when it is spent, and the learning-rate
    /// schedule runs on whichever of the step and time fractions is further along.
    pub budget_secs: Option<f64>,
    /// Peak learning rate (5% linear warm-up, cosine decay to a tenth).
    pub lr: f64,
    /// Seed of the initial weights and the crops.
    pub seed: u64,
    /// Crops per batch.
    pub batch: usize,
    /// Crop side in pixels (a multiple of 8).
    pub crop: u32,
}

impl Default for AeRun {
    fn default() -> Self {
        Self {
            config: TinyAeConfig::default(),
            steps: 2500,
            budget_secs: None,
            lr: 1.5e-3,
            seed: 0,
            batch: 8,
            crop: 64,
        }
    }
}

/// Trains a tiny AE; `progress(step, steps, loss)` returns `false` to stop early. Returns the
/// model and the number of steps taken.
pub fn train(
    train_images: &[RgbImage],
    run: &AeRun,
    mut progress: impl FnMut(usize, usize, f32) -> bool,
) -> Result<(TinyAe, usize), AeTrainError> {
    let opts = TinyAeTrainOptions {
        lr: run.lr,
        seed: run.seed,
        ..Default::default()
    };
    let mut tr = TinyAeTrainer::new(&run.config, &opts, &Device::Cpu)?;
    let start = std::time::Instant::now();
    let mut batches = crops(train_images, run.batch, run.crop, run.seed);
    let mut taken = 0;
    for i in 0..run.steps {
        let elapsed = start.elapsed().as_secs_f64();
        let time_frac = match run.budget_secs {
            Some(b) if elapsed >= b => break,
            Some(b) => elapsed / b.max(1e-9),
            None => 0.0,
        };
        let frac = (i as f64 / run.steps.max(1) as f64).max(time_frac);
        tr.set_learning_rate(run.lr * tiny_ae::lr_factor(i, run.steps, frac));
        let batch = batches
            .next()
            .ok_or_else(|| AeTrainError::Data("no training crops".into()))??;
        let loss = tr.step(&batch)?;
        taken = i + 1;
        if !progress(taken, run.steps, loss) {
            break;
        }
    }
    Ok((tr.snapshot()?, taken))
}
