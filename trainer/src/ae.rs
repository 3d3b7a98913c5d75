//! Phase 0, first part: training the tiny autoencoder on a manifest dataset (the synthetic
//! scenes), on random crops, and measuring held-out PSNR on whole images.

use crate::data::manifest::Manifest;
use crate::data::rng::Rng;
use candle_core::{Device, Tensor};
use image::RgbImage;
use skeleguide_engine::model::tiny_ae::psnr;
use skeleguide_engine::model::{train_tiny_ae, Autoencoder, ModelError, TinyAe, TinyAeConfig};
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

/// Every image of a manifest (backgrounds and scenes with people), decoded.
pub fn load_images(dir: &Path, limit: usize) -> Result<Vec<RgbImage>, AeTrainError> {
    let m = Manifest::open(dir).map_err(|e| AeTrainError::Data(e.to_string()))?;
    let mut out = Vec::new();
    for r in m.records.iter().take(limit) {
        let s = r.load().map_err(|e| AeTrainError::Data(e.to_string()))?;
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

/// Trains a tiny AE; `progress(step, steps, loss)`.
pub fn train(
    train_images: &[RgbImage],
    steps: usize,
    lr: f64,
    seed: u64,
    progress: impl FnMut(usize, usize, f32) -> bool,
) -> Result<TinyAe, AeTrainError> {
    let cfg = TinyAeConfig::default();
    let (ae, _) = train_tiny_ae(
        &cfg,
        &Device::Cpu,
        crops(train_images, 8, 64, seed),
        steps,
        lr,
        progress,
    )?;
    Ok(ae)
}
