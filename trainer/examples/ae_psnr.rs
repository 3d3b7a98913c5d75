//! Held-out PSNR of a model directory's tiny autoencoder on a manifest data set (normally a
//! synthetic test split at the model's resolution): encode -> decode of every image (layouts,
//! scenes with people and backgrounds), mean PSNR in dB, the mean over the scenes alone, the PSNR
//! on the skeleton pixels of the layouts alone, and encode/decode time.
//!
//! `cargo run --release -p skeleguide-trainer --example ae_psnr -- MODEL_DIR DATA_DIR [COUNT]`

use anyhow::{bail, Context};
use candle_core::Device;
use skeleguide_engine::model::TinyAe;
use skeleguide_engine::modeldir::{self, AeSpec, ModelConfig};
use skeleguide_trainer::ae::{held_out, load_images, AeImage};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(model), Some(data)) = (args.next(), args.next()) else {
        bail!("usage: ae_psnr MODEL_DIR DATA_DIR [COUNT]");
    };
    let count: usize = match args.next() {
        Some(c) => c.to_string_lossy().parse().context("COUNT")?,
        None => 64,
    };
    let model = PathBuf::from(model);
    let cfg = ModelConfig::load(&model)?;
    let AeSpec::Tiny { config } = &cfg.ae else {
        bail!("{}: not a tiny autoencoder", model.display());
    };
    let ae = TinyAe::load(&model.join(modeldir::AE_FILE), config, &Device::Cpu)?;
    let images = load_images(&PathBuf::from(&data), count)?;
    let images: Vec<_> = images
        .into_iter()
        .map(|a| {
            let (w, h) = (a.image.width() / 8 * 8, a.image.height() / 8 * 8);
            AeImage {
                image: image::imageops::crop_imm(&a.image, 0, 0, w, h).to_image(),
                drawn: a
                    .drawn
                    .map(|m| image::imageops::crop_imm(&m, 0, 0, w, h).to_image()),
            }
        })
        .collect();
    let t = Instant::now();
    let held = held_out(&ae, &images)?;
    let ms = t.elapsed().as_secs_f64() * 1000.0 / images.len() as f64;
    let (db, skeleton) = (held.psnr, held.skeleton_psnr);
    println!(
        "{} images ({}x{}): held-out PSNR {db:.2} dB ({}; {}), {ms:.1} ms per encode+decode",
        images.len(),
        images[0].image.width(),
        images[0].image.height(),
        held.scene_psnr.map_or("no scenes".into(), |s| format!(
            "{s:.2} dB on the scenes alone"
        )),
        skeleton.map_or("no layouts".into(), |s| format!(
            "{s:.2} dB on the layouts' skeleton pixels"
        )),
    );
    Ok(())
}
