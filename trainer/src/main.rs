//! `skeleguide-train`: the SkeleGuide trainer's command line.

use anyhow::{bail, Result};
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
        /// Peak learning rate.
        #[arg(long, default_value_t = 3e-3)]
        lr: f64,
        /// Held-out images to evaluate.
        #[arg(long, default_value_t = 32)]
        eval: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to write the weights (ae.safetensors).
        #[arg(long)]
        out: PathBuf,
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
    if let Err(e) = run() {
        eprintln!("error: {}", format!("{e:#}").replace('\n', "\n  "));
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Inverter(a) => inverter_cmd::train(a),
        Command::EvalInverter(a) => inverter_cmd::eval(a),
        Command::Ae {
            train,
            test,
            steps,
            lr,
            eval,
            seed,
            out,
        } => {
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
            let start = std::time::Instant::now();
            let ae = skeleguide_trainer::ae::train(&train_imgs, steps, lr, seed, |i, _, loss| {
                bar.set_position(i as u64);
                bar.set_message(format!("{loss:.5}"));
                true
            })?;
            bar.finish();
            let secs = start.elapsed().as_secs_f64();
            let psnr = skeleguide_trainer::ae::held_out_psnr(&ae, &test_imgs)?;
            let tmp = out.with_extension("safetensors.tmp");
            ae.save(&tmp)?;
            std::fs::rename(&tmp, &out)?;
            eprintln!(
                "trained {steps} steps in {secs:.0} s ({:.1} img/s); held-out PSNR {psnr:.2} dB on {} images; wrote {}",
                (steps * 8) as f64 / secs.max(1e-9),
                test_imgs.len(),
                out.display()
            );
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
