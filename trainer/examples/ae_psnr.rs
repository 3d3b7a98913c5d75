//! Held-out PSNR of a model directory's tiny autoencoder on a manifest data set (normally a
//! synthetic test split at the model's resolution): encode -> decode of every image (layouts,
//! scenes with people and backgrounds), mean PSNR in dB, plus encode/decode time.
//!
//! `cargo run --release -p skeleguide-trainer --example ae_psnr -- MODEL_DIR DATA_DIR [COUNT]`

use anyhow::{bail, Context};
use candle_core::Device;
use skeleguide_engine::model::TinyAe;
use skeleguide_engine::modeldir::{self, AeSpec, ModelConfig};
use skeleguide_trainer::ae::{held_out_psnr, load_images};
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
        .map(|i| {
            let (w, h) = (i.width() / 8 * 8, i.height() / 8 * 8);
            image::imageops::crop_imm(&i, 0, 0, w, h).to_image()
        })
        .collect();
    let t = Instant::now();
    let db = held_out_psnr(&ae, &images)?;
    println!(
        "{} images ({}x{}): held-out PSNR {db:.2} dB, {:.1} ms per encode+decode",
        images.len(),
        images[0].width(),
        images[0].height(),
        t.elapsed().as_secs_f64() * 1000.0 / images.len() as f64
    );
    Ok(())
}
