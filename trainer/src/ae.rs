//! Phase 0, first part: training the tiny autoencoder on a manifest dataset (the synthetic
//! scenes), on random crops, and measuring held-out PSNR on whole images.

use crate::data::manifest::Manifest;
use crate::data::rng::Rng;
use candle_core::{Device, Tensor};
use image::{GrayImage, Luma, RgbImage};
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

/// One autoencoder image and, for a layout, the pixels the rasteriser drew on its scene (255),
/// which the training loss weights (see [`AeRun::skeleton_weight`]).
#[derive(Debug, Clone)]
pub struct AeImage {
    pub image: RgbImage,
    pub drawn: Option<GrayImage>,
}

/// The pixels where `layout` differs from the `scene` it was drawn on: the skeletons, with the
/// pixels that resizing blended into them. Both images have one size.
pub fn drawn_pixels(layout: &RgbImage, scene: &RgbImage) -> GrayImage {
    drawn_pixels_over(layout, scene, 2)
}

/// The pixels where `img` differs from `scene` by more than `threshold` in some channel (255
/// there, 0 elsewhere). Both images have one size.
pub fn drawn_pixels_over(img: &RgbImage, scene: &RgbImage, threshold: u8) -> GrayImage {
    GrayImage::from_fn(img.width(), img.height(), |x, y| {
        let (a, b) = (img.get_pixel(x, y).0, scene.get_pixel(x, y).0);
        let differs = a.iter().zip(b).any(|(&p, q)| p.abs_diff(q) > threshold);
        Luma([if differs { 255 } else { 0 }])
    })
}

/// Every image of a manifest, decoded: the scene with people, the background and the layout
/// (the background with the skeletons drawn by the engine's rasteriser, and which pixels were
/// drawn), since the autoencoder carries layouts too and must keep their limbs legible.
pub fn load_images(dir: &Path, limit: usize) -> Result<Vec<AeImage>, AeTrainError> {
    let m = Manifest::open(dir).map_err(|e| AeTrainError::Data(e.to_string()))?;
    let mut out = Vec::new();
    for r in m.records.iter().take(limit) {
        let s = r.load().map_err(|e| AeTrainError::Data(e.to_string()))?;
        let layout = skeleguide_engine::pose::draw_layout(Some(&s.background), &s.poses);
        let drawn = drawn_pixels(&layout, &s.background);
        out.push(AeImage {
            image: layout,
            drawn: Some(drawn),
        });
        out.push(AeImage {
            image: s.image,
            drawn: None,
        });
        out.push(AeImage {
            image: s.background,
            drawn: None,
        });
    }
    if out.is_empty() {
        return Err(AeTrainError::Data(format!(
            "{}: the manifest has no records",
            dir.display()
        )));
    }
    Ok(out)
}

/// Per-pixel loss weights `(B, 1, H, W)` on the CPU: 1, and `1 + skeleton_weight` on the drawn
/// pixels of the images that have them (all of one size).
pub fn loss_weights(
    drawn: &[Option<&GrayImage>],
    w: u32,
    h: u32,
    skeleton_weight: f32,
) -> candle_core::Result<Tensor> {
    let mut v = Vec::with_capacity(drawn.len() * (w * h) as usize);
    for d in drawn {
        match d {
            Some(m) => {
                v.extend(
                    m.as_raw()
                        .iter()
                        .map(|&b| if b > 0 { 1.0 + skeleton_weight } else { 1.0 }),
                )
            }
            None => v.extend(std::iter::repeat_n(1.0f32, (w * h) as usize)),
        }
    }
    Tensor::from_vec(v, (drawn.len(), 1, h as usize, w as usize), &Device::Cpu)
}

/// RGB8 images of one size as an NCHW f32 tensor in [-1, 1] on the CPU.
pub fn to_tensor(imgs: &[&RgbImage]) -> candle_core::Result<Tensor> {
    let (w, h) = imgs[0].dimensions();
    let mut v = Vec::with_capacity(imgs.len() * (w * h * 3) as usize);
    for img in imgs {
        v.extend(img.as_raw().iter().map(|&b| b as f32 / 127.5 - 1.0));
    }
    Tensor::from_vec(v, (imgs.len(), h as usize, w as usize, 3), &Device::Cpu)?
        .permute((0, 3, 1, 2))?
        .contiguous()
}

/// A training batch: crops `(B, 3, H, W)` in `[-1, 1]` and, when the skeleton weight is on,
/// their loss weights `(B, 1, H, W)`.
pub type AeBatch = (Tensor, Option<Tensor>);

/// Batches of `batch` random `crop`×`crop` crops (multiples of 8), forever; with loss weights
/// when `skeleton_weight > 0`.
pub fn crops(
    images: &[AeImage],
    batch: usize,
    crop: u32,
    seed: u64,
    skeleton_weight: f32,
) -> impl Iterator<Item = skeleguide_engine::model::Result<AeBatch>> + '_ {
    let mut rng = Rng::new(seed);
    std::iter::repeat_with(move || {
        let picked: Vec<(RgbImage, Option<GrayImage>)> = (0..batch)
            .map(|_| {
                let a = &images[rng.below(images.len())];
                let (w, h) = a.image.dimensions();
                let (cw, ch) = (crop.min(w), crop.min(h));
                let x = rng.below((w - cw + 1) as usize) as u32 / 8 * 8;
                let y = rng.below((h - ch + 1) as usize) as u32 / 8 * 8;
                let (cw, ch) = (cw / 8 * 8, ch / 8 * 8);
                (
                    image::imageops::crop_imm(&a.image, x, y, cw, ch).to_image(),
                    a.drawn
                        .as_ref()
                        .map(|m| image::imageops::crop_imm(m, x, y, cw, ch).to_image()),
                )
            })
            .collect();
        let model_err = |e: candle_core::Error| ModelError::InvalidConfig(e.to_string());
        let refs: Vec<&RgbImage> = picked.iter().map(|p| &p.0).collect();
        let x = to_tensor(&refs).map_err(model_err)?;
        let weights = if skeleton_weight > 0.0 {
            let (w, h) = picked[0].0.dimensions();
            let drawn: Vec<Option<&GrayImage>> = picked.iter().map(|p| p.1.as_ref()).collect();
            Some(loss_weights(&drawn, w, h, skeleton_weight).map_err(model_err)?)
        } else {
            None
        };
        Ok((x, weights))
    })
}

/// What [`held_out`] measures.
#[derive(Debug, Clone, Copy)]
pub struct HeldOut {
    /// How many images were measured.
    pub images: usize,
    /// Mean PSNR (dB) of encode→decode over the images.
    pub psnr: f64,
    /// Mean PSNR (dB) over the images that are not layouts (scenes with and without people):
    /// the autoencoder's quality on photographs of the world. `None` when all are layouts.
    pub scene_psnr: Option<f64>,
    /// PSNR (dB) over the drawn pixels of the layouts among them, pooled: how legibly the
    /// skeletons survive the round trip. `None` without layouts.
    pub skeleton_psnr: Option<f64>,
}

impl std::fmt::Display for HeldOut {
    /// "held-out PSNR 30.01 dB on 96 images, on the scenes alone …, on the skeleton pixels of
    /// their layouts …", as the `ae` command reports it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let db = |v: Option<f64>, none: &str| v.map_or(none.to_string(), |d| format!("{d:.2} dB"));
        write!(
            f,
            "held-out PSNR {:.2} dB on {} images, on the scenes alone {}, on the skeleton pixels of their layouts {}",
            self.psnr,
            self.images,
            db(self.scene_psnr, "no scenes"),
            db(self.skeleton_psnr, "no layouts"),
        )
    }
}

/// Encode→decode of every image (whole images, sides multiples of 8), once: the mean PSNR, the
/// mean over the scenes alone and the PSNR on the layouts' skeleton pixels.
pub fn held_out(ae: &TinyAe, images: &[AeImage]) -> Result<HeldOut, AeTrainError> {
    let mut total = 0.0;
    let (mut scene_total, mut scenes) = (0.0, 0usize);
    let (mut sq, mut n) = (0f64, 0usize);
    for a in images {
        let x = to_tensor(&[&a.image])?;
        let y = ae.decode(&ae.encode(&x)?)?;
        let db = psnr(&x, &y)?;
        total += db;
        let Some(drawn) = &a.drawn else {
            scene_total += db;
            scenes += 1;
            continue;
        };
        let y = skeleguide_engine::pipeline::tensor_to_image(&y)
            .map_err(|e| AeTrainError::Data(e.to_string()))?;
        for ((p, q), m) in a.image.pixels().zip(y.pixels()).zip(drawn.as_raw()) {
            if *m > 0 {
                for c in 0..3 {
                    sq += (p.0[c] as f64 - q.0[c] as f64).powi(2);
                }
                n += 3;
            }
        }
    }
    Ok(HeldOut {
        images: images.len(),
        psnr: total / images.len().max(1) as f64,
        scene_psnr: (scenes > 0).then(|| scene_total / scenes as f64),
        skeleton_psnr: (n > 0)
            .then(|| 10.0 * (255.0f64 * 255.0 / (sq / n as f64).max(1e-12)).log10()),
    })
}

/// Mean PSNR (dB) of encode→decode over `images` (see [`held_out`]).
pub fn held_out_psnr(ae: &TinyAe, images: &[AeImage]) -> Result<f64, AeTrainError> {
    Ok(held_out(ae, images)?.psnr)
}

/// The default [`AeRun::skeleton_weight`] (and `phase0.ae_skeleton_weight`).
pub const SKELETON_WEIGHT: f32 = 8.0;

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
    /// Extra loss weight of the pixels the rasteriser drew on layouts (a pixel counts
    /// `1 + skeleton_weight` times; 0: the plain MSE).
    pub skeleton_weight: f32,
    /// Fine-tune the decoder of this trained autoencoder, its encoder frozen (the latents, and
    /// the DiT trained on them, stay valid), instead of training a fresh one; `config` and
    /// `seed`'s weights are then unused.
    pub decoder_of: Option<std::sync::Arc<TinyAe>>,
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
            skeleton_weight: SKELETON_WEIGHT,
            decoder_of: None,
        }
    }
}

/// Trains a tiny AE; `progress(step, steps, loss)` returns `false` to stop early. Returns the
/// model and the number of steps taken.
pub fn train(
    train_images: &[AeImage],
    run: &AeRun,
    mut progress: impl FnMut(usize, usize, f32) -> bool,
) -> Result<(TinyAe, usize), AeTrainError> {
    let opts = TinyAeTrainOptions {
        lr: run.lr,
        seed: run.seed,
        ..Default::default()
    };
    let mut tr = match &run.decoder_of {
        Some(ae) => TinyAeTrainer::decoder_only(ae, &opts)?,
        None => TinyAeTrainer::new(&run.config, &opts, &Device::Cpu)?,
    };
    let start = std::time::Instant::now();
    let mut batches = crops(
        train_images,
        run.batch,
        run.crop,
        run.seed,
        run.skeleton_weight,
    );
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
        let (batch, weights) = batches
            .next()
            .ok_or_else(|| AeTrainError::Data("no training crops".into()))??;
        let loss = tr.step_weighted(&batch, weights.as_ref())?;
        taken = i + 1;
        if !progress(taken, run.steps, loss) {
            break;
        }
    }
    Ok((tr.snapshot()?, taken))
}
