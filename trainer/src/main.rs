//! `skeleguide-train`: the SkeleGuide trainer's command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use skeleguide_trainer::data::synth::{self, Split, SynthOptions};
use std::path::PathBuf;

mod inverter_cmd;

#[derive(Parser)]
#[command(
    name = "skeleguide-train",
    version,
    about = "SkeleGuide trainer: data, curriculum, evaluation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Test,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic human-in-scene data set (manifest.jsonl plus PNGs), deterministic for a seed.
    Synth {
        /// Output directory (created if needed).
        #[arg(long)]
        out: PathBuf,
        /// Number of examples.
        #[arg(long)]
        count: usize,
        /// Data set seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Split: train and test examples come from disjoint seeds.
        #[arg(long, value_enum, default_value = "train")]
        split: SplitArg,
        /// Image side in pixels (64-1024).
        #[arg(long, default_value_t = 128)]
        size: u32,
        /// Worker threads (default: all cores); the output does not depend on it.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Phase 0 (part): train the tiny autoencoder on a manifest dataset (random 64 px crops,
    /// AdamW with warm-up and cosine decay) and report held-out PSNR.
    Ae {
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
    },
    /// Run the training curriculum (phase 0 for the tiny preset, then phases 1-3, or an ablation
    /// baseline's phases) from a TOML config; writes OUT/model, checkpoints, train.jsonl,
    /// loss.png and sample grids.
    Train {
        /// TOML config (e.g. trainer/configs/tiny.toml).
        #[arg(long)]
        config: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// `0`, `1`, `2`, `3` or `all`.
        #[arg(long, default_value = "all")]
        phase: String,
        /// Continue from OUT/checkpoint.safetensors.
        #[arg(long)]
        resume: bool,
        /// Training manifest directory (overrides the config's data.dir).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Build a manifest data set from COCO keypoint annotations. Person removal is not done
    /// here: person-free backgrounds with the images' file names must be supplied.
    ImportCoco {
        /// COCO keypoint annotation file (person_keypoints_*.json).
        #[arg(long)]
        annotations: PathBuf,
        /// Directory of the images named in the annotations.
        #[arg(long)]
        images: PathBuf,
        /// Directory of the person-free backgrounds (same file names as the images).
        #[arg(long)]
        backgrounds: Option<PathBuf>,
        /// COCO captions file (captions_*.json); without it prompts name the person count.
        #[arg(long)]
        captions: Option<PathBuf>,
        /// Output data set directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Evaluate a model directory on a manifest data set (normally a test split): layout PCKh,
    /// person count, background PSNR/SSIM outside the person, clothing colours, limb ratios, speed.
    Eval {
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
        /// Score the base DiT alone drawing each prompt's layout from text (no scene, no LoRA)
        /// instead of the whole pipeline: count and aligned pose PCKh.
        #[arg(long)]
        base_only: bool,
        /// Also write a sample sheet of the first 16 examples (scene | layout | output) to PNG.
        #[arg(long)]
        samples: Option<PathBuf>,
        /// Print the report as JSON (otherwise a table).
        #[arg(long)]
        json: bool,
    },
    /// Evaluate SkeleGuide and the ablation baselines on the same test scenes; write
    /// ablation.md (with image grids) and ablation.json into --out.
    Ablate {
        /// NAME=DIR,... with NAME one of skeleguide, single-stage, implicit, stage1-only.
        #[arg(long)]
        models: String,
        /// Manifest data set directory (test split).
        #[arg(long)]
        data: PathBuf,
        /// Output directory (e.g. docs/).
        #[arg(long)]
        out: PathBuf,
        /// Evaluate the first N records (default: all).
        #[arg(long)]
        count: Option<usize>,
        /// Sampling steps per stage (default: each model's).
        #[arg(long)]
        steps: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A Markdown file on how the models were trained, put into ablation.md under its own
        /// heading.
        #[arg(long)]
        notes: Option<PathBuf>,
    },
    /// Train the PoseInverter (layout image -> keypoints) on layouts drawn by the engine's
    /// rasteriser; writes DIR/inverter.safetensors.
    Inverter(inverter_cmd::TrainArgs),
    /// Evaluate a PoseInverter and the colour-segmentation baseline on held-out layouts.
    EvalInverter(inverter_cmd::EvalArgs),
    /// Write a randomly initialised model directory (the start of training; used by tests).
    Init {
        /// Preset (only `tiny` can start from random weights).
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// Output model directory.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the initial weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    skeleguide_engine::model::device::configure_cpu_threads();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let shown = matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if shown {
                let _ = e.print();
                std::process::exit(e.exit_code());
            }
            let text = e.to_string();
            eprintln!(
                "{} (see --help)",
                text.lines().next().unwrap_or("invalid arguments").trim()
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = run(cli) {
        let chain = e.chain().map(|c| c.to_string());
        eprintln!("error: {}", skeleguide_engine::error::one_line(chain));
        std::process::exit(2);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            config,
            out,
            phase,
            resume,
            data,
        } => {
            use skeleguide_trainer::phases::{self, PhaseSel, TrainArgs};
            let cfg = skeleguide_trainer::config::TrainConfig::load(&config)?;
            let phase = match phase.as_str() {
                "all" => PhaseSel::All,
                p => match p.parse::<u8>() {
                    Ok(n) if n <= 3 => PhaseSel::One(n),
                    _ => bail!("--phase {p}: must be 0, 1, 2, 3 or all"),
                },
            };
            let args = TrainArgs {
                config: cfg,
                out: out.clone(),
                phase,
                resume,
                data,
                progress: true,
            };
            let start = std::time::Instant::now();
            let summaries = phases::train(&args)?;
            for s in &summaries {
                eprintln!(
                    "phase {:>5}: {} steps ({} run now) in {:.1} s, {:.2} samples/s; fixed-batch loss {:.4} -> {:.4}",
                    s.phase, s.steps, s.steps_run, s.seconds, s.samples_per_s, s.eval_before, s.eval_after
                );
            }
            eprintln!(
                "done in {:.1} s; model directory {}",
                start.elapsed().as_secs_f64(),
                phases::model_dir(&out).display()
            );
            Ok(())
        }
        Command::Inverter(a) => inverter_cmd::train(a),
        Command::EvalInverter(a) => inverter_cmd::eval(a),
        Command::Ae {
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
        } => {
            let decoder_of = decoder_of
                .map(|dir| load_tiny_ae(&dir).map(std::sync::Arc::new))
                .transpose()?;
            let config = match &config {
                Some(p) => {
                    let limit = skeleguide_engine::limits::MAX_CONFIG_BYTES;
                    let text = skeleguide_engine::fsutil::read_text_limited(p, limit)
                        .with_context(|| format!("{}: cannot read", p.display()))?;
                    let c: skeleguide_engine::model::TinyAeConfig = serde_json::from_str(&text)
                        .with_context(|| {
                            format!("{}: not a tiny autoencoder config", p.display())
                        })?;
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
        Command::ImportCoco {
            annotations,
            images,
            backgrounds,
            captions,
            out,
        } => {
            let opts = skeleguide_trainer::data::coco::CocoImport {
                annotations,
                images,
                backgrounds,
                captions,
                out: out.clone(),
            };
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos} records written")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            let s = skeleguide_trainer::data::coco::import_coco(&opts, &|| bar.inc(1))?;
            bar.finish_and_clear();
            eprintln!(
                "wrote {} records ({} with COCO captions) to {}; skipped {} images without a labelled person",
                s.written,
                s.captioned,
                out.join("manifest.jsonl").display(),
                s.skipped_no_people
            );
            Ok(())
        }
        Command::Eval {
            model,
            data,
            count,
            steps,
            seed,
            keep_background,
            guidance,
            guidance_reason,
            guidance_render,
            base_only,
            samples,
            json,
        } => {
            let scales = skeleguide_engine::modeldir::ModelConfig::load(&model)?
                .text_guidance
                .overridden(guidance, guidance_reason, guidance_render);
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
            if base_only {
                if samples.is_some() {
                    bail!("--samples: the base-only evaluation makes no renders; drop --base-only");
                }
                let report =
                    skeleguide_trainer::eval::base::evaluate_base(&model, &data, &opts, &mut tick)?;
                bar.finish_and_clear();
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", skeleguide_trainer::eval::base::format_base(&report));
                }
                return Ok(());
            }
            if let Some(dir) = samples.as_ref().and_then(|p| p.parent()) {
                if !dir.as_os_str().is_empty() && !dir.is_dir() {
                    bail!("--samples: {} is not a folder", dir.display());
                }
            }
            let (report, images) =
                skeleguide_trainer::eval::evaluate(&model, &data, &opts, &mut tick)?;
            bar.finish_and_clear();
            if let Some(path) = &samples {
                let sheet = skeleguide_trainer::eval::sample_sheet(&images, 4)
                    .context("--samples: no example to show")?;
                skeleguide_engine::imageio::write_png_rgb(path, &sheet)?;
                eprintln!("wrote {}", path.display());
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", skeleguide_trainer::eval::format_report(&report));
            }
            Ok(())
        }
        Command::Ablate {
            models,
            data,
            out,
            count,
            steps,
            seed,
            notes,
        } => {
            use skeleguide_trainer::eval::{ablate, EvalOptions};
            let models = ablate::parse_models(&models)?;
            let notes = match &notes {
                Some(p) => Some(
                    skeleguide_engine::fsutil::read_text_limited(
                        p,
                        skeleguide_engine::limits::MAX_CONFIG_BYTES,
                    )
                    .with_context(|| format!("--notes {}: cannot read", p.display()))?,
                ),
                None => None,
            };
            let opts = EvalOptions {
                count,
                steps,
                seed,
                ..Default::default()
            };
            let command = std::env::args()
                .enumerate()
                .map(|(i, a)| {
                    if i == 0 {
                        "skeleguide-train".to_string()
                    } else {
                        a
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "ablate {msg} [{bar:30}] {pos}/{len} examples {elapsed_precise}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let reports = ablate::ablate(
                &models,
                &data,
                &out,
                &opts,
                &command,
                notes.as_deref(),
                &mut |m, i, n| {
                    bar.set_message(m.to_string());
                    bar.set_length(n as u64);
                    bar.set_position(i as u64);
                },
            )?;
            bar.finish_and_clear();
            for r in &reports {
                eprint!("{}", skeleguide_trainer::eval::format_report(r));
            }
            eprintln!("wrote {}", out.join("ablation.md").display());
            Ok(())
        }
        Command::Init { preset, out, seed } => {
            let cfg = skeleguide_engine::modeldir::init_random(&out, &preset, seed)?;
            eprintln!(
                "wrote a randomly initialised `{}` model ({}) to {}",
                cfg.preset,
                cfg.id(),
                out.display()
            );
            Ok(())
        }
        Command::Synth {
            out,
            count,
            seed,
            split,
            size,
            threads,
        } => {
            if !(synth::MIN_SIZE..=synth::MAX_SIZE).contains(&size) {
                bail!(
                    "--size {size}: must be between {} and {}",
                    synth::MIN_SIZE,
                    synth::MAX_SIZE
                );
            }
            if count == 0 {
                bail!("--count must be at least 1");
            }
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let opts = SynthOptions {
                count,
                seed,
                split: match split {
                    SplitArg::Train => Split::Train,
                    SplitArg::Test => Split::Test,
                },
                size,
                threads,
            };
            let bar = ProgressBar::new(count as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} examples ({per_sec}, ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let start = std::time::Instant::now();
            // the library's errors name the file or option at fault
            let n = synth::write_dataset(&out, &opts, &|| bar.inc(1))?;
            bar.finish_and_clear();
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "wrote {n} {} examples ({size}x{size}) to {} in {secs:.2} s ({:.1} examples/s)",
                opts.split.name(),
                out.join("manifest.jsonl").display(),
                n as f64 / secs.max(1e-9)
            );
            Ok(())
        }
    }
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
