//! Command-line interface (clap). Every failure is one line on stderr and exit code 2.

pub mod bench;
pub mod generate;
pub mod invert;
pub mod pose;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "skeleguide",
    version,
    about = "Put a person into a scene photo from a text prompt: reason a skeleton, edit it, render it.",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open the desktop app (the default when no subcommand is given).
    Gui {
        /// Scene image to open.
        #[arg(long)]
        scene: Option<PathBuf>,
        /// Pose JSON to open.
        #[arg(long)]
        pose: Option<PathBuf>,
        /// Render one full window offscreen into this PNG and exit (docs and checks).
        #[arg(long)]
        screenshot: Option<PathBuf>,
        /// Model directory for generation.
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Put a person into a scene: reason a skeleton, then render it.
    Generate(generate::GenerateArgs),
    /// Stage 1 only: the scene-aware layout (skeleton over the scene).
    Reason(generate::ReasonArgs),
    /// Stage 2 only: render a person on a pose or layout.
    Render(generate::RenderArgs),
    /// Batch export: seeds x prompts x (a given pose, or a reasoned pose per seed).
    Batch(generate::BatchArgs),
    /// Speed figures, all side by side (table, or --json), or one group via a subcommand.
    Bench(bench::BenchArgs),
    /// Layout image -> editable pose JSON (the PoseInverter), at any image size.
    Invert(invert::InvertArgs),
    /// Pose files: convert between OpenPose JSON variants, draw layouts, inspect.
    #[command(subcommand)]
    Pose(pose::PoseCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Pose(cmd)) => pose::run(cmd),
        Some(Command::Invert(a)) => invert::run(a),
        Some(Command::Generate(a)) => generate::generate(a),
        Some(Command::Bench(c)) => bench::run(c),
        Some(Command::Batch(a)) => generate::batch(a),
        Some(Command::Reason(a)) => generate::reason(a),
        Some(Command::Render(a)) => generate::render(a),
        Some(Command::Gui {
            scene,
            pose,
            screenshot,
            model,
        }) => {
            if let Some(m) = &model {
                // the weights themselves are read once, by the app
                skeleguide_engine::modeldir::check_layout(m)?;
            }
            crate::gui::run(crate::gui::GuiOptions {
                scene,
                pose,
                screenshot,
                model,
            })
        }
        None => crate::gui::run(crate::gui::GuiOptions::default()),
    }
}
