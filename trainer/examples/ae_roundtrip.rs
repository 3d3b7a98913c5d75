//! An image through a model directory's autoencoder as the pipeline sees it: fitted to the
//! working size, encoded, decoded, scaled back; written beside the original (original | round
//! trip) for inspection, with the PSNR.
//!
//! `cargo run --release -p skeleguide-trainer --example ae_roundtrip -- MODEL_DIR IN.png OUT.png`

use anyhow::{bail, Context};
use image::{imageops, RgbImage};
use skeleguide_engine::pipeline::AeRoundTrip;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let a: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [model, input, output] = a.as_slice() else {
        bail!("usage: ae_roundtrip MODEL_DIR IN.png OUT.png");
    };
    let ae = AeRoundTrip::load(model, &candle_core::Device::Cpu)?;
    let img = image::open(input)
        .with_context(|| input.display().to_string())?
        .into_rgb8();
    let (w, h) = img.dimensions();
    let round = ae.round_trip(&img)?;
    let mse: f64 = img
        .as_raw()
        .iter()
        .zip(round.as_raw())
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / img.as_raw().len() as f64;
    let mut out = RgbImage::new(2 * w, h);
    imageops::replace(&mut out, &img, 0, 0);
    imageops::replace(&mut out, &round, w as i64, 0);
    let tmp = output.with_extension("tmp.png");
    out.save(&tmp)?;
    std::fs::rename(&tmp, output)?;
    println!(
        "{}x{}: round-trip PSNR {:.2} dB; wrote {}",
        w,
        h,
        10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10(),
        output.display()
    );
    Ok(())
}
