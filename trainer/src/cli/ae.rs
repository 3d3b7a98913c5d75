//! `skeleguide-train ae`: train (or fine-tune the decoder of) the tiny autoencoder alone.

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct AeArgs {
    /// Training manifest directory (e.g. from `synth --split train`).
    #[arg(long)]
    train: PathBuf,
    /// Held-out manifest directory (e.g. from `synth --split test`).
    #[arg(long)]
    test: PathBuf,
    /// Optimiser steps (batch 8).
    #[arg(long, default_value_t = 2500)]
    steps: usize,
    /// Peak learning rate (3e-3 diverged for a while after warm-up in two of three runs
    /// and ended 2.5 dB lower).
    #[arg(long, default_value_t = 1.5e-3)]
    lr: f64,
    /// Held-out images to evaluate.
    #[arg(long, default_value_t = 32)]
    eval: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop after this many minutes of training (the schedule follows the clock).
    #[arg(long)]
    minutes: Option<f64>,
    /// Architecture as a JSON file (a `TinyAeConfig`; default: the tiny preset's).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Crops per batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Crop side in pixels (a multiple of 8).
    #[arg(long, default_value_t = 64)]
    crop: u32,
    /// Extra loss weight of the skeleton pixels of layouts (each counts 1 + this; 0: plain
    /// MSE): under the plain MSE their thin limbs blur into 8-pixel colour blocks.
    #[arg(long, default_value_t = skeleguide_trainer::ae::SKELETON_WEIGHT)]
    skeleton_weight: f32,
    /// Fine-tune the decoder of this model directory's tiny autoencoder, its encoder frozen,
    /// instead of training a fresh one: the latents stay bit-identical, so the model's DiT
    /// and LoRAs stay valid and the new weights can replace its ae.safetensors.
    #[arg(long, conflicts_with = "config")]
    decoder_of: Option<PathBuf>,
    /// Where to write the weights (ae.safetensors); the architecture goes beside it as
    /// `<name>.json`.
    #[arg(long)]
    out: PathBuf,
}

pub(crate) fn run(a: AeArgs) -> Result<()> {
    let AeArgs {
        train,
        test,
        steps,
        lr,
        eval,
        seed,
        minutes,
        config,
        batch,
        crop,
        skeleton_weight,
        decoder_of,
        out,
    } = a;
    let decoder_of = decoder_of
        .map(|dir| load_tiny_ae(&dir).map(std::sync::Arc::new))
        .transpose()?;
    let config = match &config {
        Some(p) => {
            let limit = skeleguide_engine::limits::MAX_CONFIG_BYTES;
            let text = skeleguide_engine::fsutil::read_text_limited(p, limit)
                .with_context(|| format!("{}: cannot read", p.display()))?;
            let c: skeleguide_engine::model::TinyAeConfig = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a tiny autoencoder config", p.display()))?;
            c.validate().with_context(|| p.display().to_string())?;
            c
        }
        None => Default::default(),
    };
    if batch == 0 || crop < 8 || crop % 8 != 0 {
        bail!("--batch must be at least 1 and --crop a positive multiple of 8");
    }
    if !(skeleton_weight >= 0.0 && skeleton_weight.is_finite()) {
        bail!("--skeleton-weight must be a finite number ≥ 0");
    }
    let train_imgs = skeleguide_trainer::ae::load_images(&train, usize::MAX)?;
    let test_imgs: Vec<_> = skeleguide_trainer::ae::load_images(&test, eval)?
        .into_iter()
        .take(eval)
        .collect();
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "ae [{bar:30}] {pos}/{len} steps {elapsed_precise} eta {eta} loss {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let run = skeleguide_trainer::ae::AeRun {
        config,
        steps,
        budget_secs: minutes.map(|m| m * 60.0),
        lr,
        seed,
        batch,
        crop,
        skeleton_weight,
        decoder_of: decoder_of.clone(),
    };
    if let Some(ae) = &decoder_of {
        eprintln!(
            "before: {}",
            skeleguide_trainer::ae::held_out(ae, &test_imgs)?
        );
    }
    let start = std::time::Instant::now();
    let (ae, taken) = skeleguide_trainer::ae::train(&train_imgs, &run, |i, _, loss| {
        bar.set_position(i as u64);
        bar.set_message(format!("{loss:.5}"));
        true
    })?;
    bar.finish();
    let secs = start.elapsed().as_secs_f64();
    let held = skeleguide_trainer::ae::held_out(&ae, &test_imgs)?;
    let tmp = out.with_extension("safetensors.tmp");
    ae.save(&tmp)?;
    std::fs::rename(&tmp, &out)?;
    let cfg_path = out.with_extension("json");
    skeleguide_engine::fsutil::write_atomic(
        &cfg_path,
        serde_json::to_string_pretty(ae.config())?.as_bytes(),
    )?;
    eprintln!(
        "trained {taken} steps in {secs:.0} s ({:.1} img/s, {} parameters); {held}; wrote {}",
        (taken * batch) as f64 / secs.max(1e-9),
        ae.num_params(),
        out.display()
    );
    Ok(())
}

/// The tiny autoencoder of a model directory (its config.json's `ae` entry and ae.safetensors),
/// on the CPU.
fn load_tiny_ae(dir: &std::path::Path) -> Result<skeleguide_engine::model::TinyAe> {
    use skeleguide_engine::modeldir::{self, AeSpec, ModelConfig};
    let cfg = ModelConfig::load(dir)?;
    let AeSpec::Tiny { config } = cfg.ae else {
        bail!(
            "{}: field `ae` is not a tiny autoencoder; only the tiny one's decoder can be fine-tuned here",
            dir.join(modeldir::CONFIG_FILE).display()
        );
    };
    Ok(skeleguide_engine::model::TinyAe::load(
        &dir.join(modeldir::AE_FILE),
        &config,
        &candle_core::Device::Cpu,
    )?)
}
