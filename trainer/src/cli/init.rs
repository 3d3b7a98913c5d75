//! `skeleguide-train init`: a randomly initialised model directory.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct InitArgs {
    /// Preset (only `tiny` can start from random weights).
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the initial weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub(crate) fn run(a: InitArgs) -> Result<()> {
    let InitArgs { preset, out, seed } = a;
    let cfg = skeleguide_engine::modeldir::init_random(&out, &preset, seed)?;
    eprintln!(
        "wrote a randomly initialised `{}` model ({}) to {}",
        cfg.preset,
        cfg.id(),
        out.display()
    );
    Ok(())
}
