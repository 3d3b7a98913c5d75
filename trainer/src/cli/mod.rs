//! The command line (clap): one module per subcommand, each with its arguments and its `run`.
//! Every failure is one line on stderr and exit code 2 (see `main`).

pub(crate) mod ablate;
pub(crate) mod ae;
pub(crate) mod eval;
pub(crate) mod import_coco;
pub(crate) mod init;
pub(crate) mod inverter;
pub(crate) mod launch;
pub(crate) mod synth;
pub(crate) mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "skeleguide-train",
    version,
    about = "SkeleGuide trainer: data, curriculum, evaluation"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Write a synthetic human-in-scene data set (manifest.jsonl plus PNGs), deterministic for a seed.
    Synth(synth::SynthArgs),
    /// Phase 0 (part): train the tiny autoencoder on a manifest dataset (random 64 px crops,
    /// AdamW with warm-up and cosine decay) and report held-out PSNR.
    Ae(ae::AeArgs),
    /// Run the training curriculum (phase 0 for the tiny preset, then phases 1-3, or an ablation
    /// baseline's phases) from a TOML config; writes OUT/model, checkpoints, train.jsonl,
    /// loss.png and sample grids.
    Train(train::TrainArgs),
    /// Run `train` data-parallel: one process per GPU, the batch split over them, the gradients
    /// averaged every step (LoRA phases). `launch --gpus N -- train --config … --out …`.
    Launch(launch::LaunchArgs),
    /// Build a manifest data set from COCO keypoint annotations. Person removal is not done
    /// here: person-free backgrounds with the images' file names must be supplied.
    ImportCoco(import_coco::ImportCocoArgs),
    /// Evaluate a model directory on a manifest data set (normally a test split): layout PCKh,
    /// person count, background PSNR/SSIM outside the person, clothing colours, limb ratios, speed.
    Eval(eval::EvalArgs),
    /// Evaluate SkeleGuide and the ablation baselines on the same test scenes; write
    /// ablation.md (with image grids) and ablation.json into --out.
    Ablate(ablate::AblateArgs),
    /// Train the PoseInverter (layout image -> keypoints) on layouts drawn by the engine's
    /// rasteriser; writes DIR/inverter.safetensors.
    Inverter(inverter::TrainArgs),
    /// Evaluate a PoseInverter and the colour-segmentation baseline on held-out layouts.
    EvalInverter(inverter::EvalArgs),
    /// Write a randomly initialised model directory (the start of training; used by tests).
    Init(init::InitArgs),
}

/// Runs the parsed subcommand.
pub(crate) fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Synth(a) => synth::run(a),
        Command::Ae(a) => ae::run(a),
        Command::Train(a) => train::run(a),
        Command::Launch(a) => launch::run(a),
        Command::ImportCoco(a) => import_coco::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Ablate(a) => ablate::run(a),
        Command::Inverter(a) => inverter::train(a),
        Command::EvalInverter(a) => inverter::eval(a),
        Command::Init(a) => init::run(a),
    }
}
