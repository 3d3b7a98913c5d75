//! `skeleguide-train eval`: evaluate a model directory on a manifest data set.

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct EvalArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Manifest data set directory (or manifest.jsonl).
    #[arg(long)]
    data: PathBuf,
    /// Evaluate the first N records (default: all).
    #[arg(long)]
    count: Option<usize>,
    /// Sampling steps per stage (default: the model's).
    #[arg(long)]
    steps: Option<usize>,
    /// Example i uses seed S + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Report bg_psnr/bg_ssim with the scene pasted back outside the person region (both
    /// modes are always in the JSON).
    #[arg(long)]
    keep_background: bool,
    /// Classifier-free guidance scale for both stages (default: the model's text_guidance).
    #[arg(long)]
    guidance: Option<f64>,
    /// Guidance for stage 1 alone (the layout).
    #[arg(long)]
    guidance_reason: Option<f64>,
    /// Guidance for stage 2 alone (the render).
    #[arg(long)]
    guidance_render: Option<f64>,
    /// Stage-1 layouts sampled per example, keeping the one read back with the prompt's person
    /// count and the best-shaped skeletons (default: the model's reason_candidates).
    #[arg(long, conflicts_with = "base_only")]
    candidates: Option<usize>,
    /// Stage 1's scene contrast scale (default: the model's reason_contrast; 0: off).
    #[arg(long, conflicts_with = "base_only")]
    contrast: Option<f64>,
    /// The noise level below which stage 1's steps are plain (default: the model's).
    #[arg(long, conflicts_with = "base_only")]
    contrast_until: Option<f64>,
    /// Score the base DiT alone drawing each prompt's layout from text (no scene, no LoRA)
    /// instead of the whole pipeline: count and aligned pose PCKh.
    #[arg(long)]
    base_only: bool,
    /// Also write a sample sheet of the first 16 examples to PNG: scene | layout | output, or
    /// with --base-only ground-truth layout | the base's drawing | the people read back.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Print the report as JSON (otherwise a table).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: EvalArgs) -> Result<()> {
    let EvalArgs {
        model,
        data,
        count,
        steps,
        seed,
        keep_background,
        guidance,
        guidance_reason,
        guidance_render,
        candidates,
        contrast,
        contrast_until,
        base_only,
        samples,
        json,
    } = a;
    if let Some(k) = candidates {
        skeleguide_engine::select::check_candidates("--candidates", k)
            .map_err(anyhow::Error::msg)?;
    }
    let mc = skeleguide_engine::modeldir::ModelConfig::load(&model)?;
    let scales = mc
        .text_guidance
        .overridden(guidance, guidance_reason, guidance_render);
    let contrast = skeleguide_engine::modeldir::SceneContrast {
        scale: contrast.unwrap_or(mc.reason_contrast.scale),
        until: contrast_until.unwrap_or(mc.reason_contrast.until),
    };
    if let Err(e) = contrast.check() {
        let flag = match e.starts_with("reason_contrast.until") {
            true => "--contrast-until",
            false => "--contrast",
        };
        bail!("{flag}: {}", e.trim_start_matches("reason_contrast."));
    }
    let opts = skeleguide_trainer::eval::EvalOptions {
        count,
        steps,
        seed,
        keep_background,
        keep_images: if samples.is_some() {
            skeleguide_trainer::eval::SAMPLE_SHEET_SCENES
        } else {
            0
        },
        guidance: Some(scales),
        candidates,
        contrast: Some(contrast),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "eval [{bar:30}] {pos}/{len} examples {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut tick = |i: usize, n: usize| {
        bar.set_length(n as u64);
        bar.set_position(i as u64);
    };
    if let Some(dir) = samples.as_ref().and_then(|p| p.parent()) {
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            bail!("--samples: {} is not a folder", dir.display());
        }
    }
    let write_sheet = |images: &[skeleguide_trainer::eval::ExampleImages]| -> Result<()> {
        if let Some(path) = &samples {
            let sheet = skeleguide_trainer::eval::sample_sheet(images, 4)
                .context("--samples: no example to show")?;
            skeleguide_engine::imageio::write_png_rgb(path, &sheet)?;
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    };
    if base_only {
        let (report, images) =
            skeleguide_trainer::eval::base::evaluate_base(&model, &data, &opts, &mut tick)?;
        bar.finish_and_clear();
        write_sheet(&images)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", skeleguide_trainer::eval::base::format_base(&report));
        }
        return Ok(());
    }
    let (report, images) = skeleguide_trainer::eval::evaluate(&model, &data, &opts, &mut tick)?;
    bar.finish_and_clear();
    write_sheet(&images)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", skeleguide_trainer::eval::format_report(&report));
    }
    Ok(())
}
