//! `skeleguide-train train`: the training curriculum.

use anyhow::{bail, Result};
use clap::Args;
use skeleguide_trainer::phases::{self, PhaseSel};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct TrainArgs {
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
}

pub(crate) fn run(a: TrainArgs) -> Result<()> {
    let TrainArgs {
        config,
        out,
        phase,
        resume,
        data,
    } = a;
    let cfg = skeleguide_trainer::config::TrainConfig::load(&config)?;
    let phase = match phase.as_str() {
        "all" => PhaseSel::All,
        p => match p.parse::<u8>() {
            Ok(n) if n <= 3 => PhaseSel::One(n),
            _ => bail!("--phase {p}: must be 0, 1, 2, 3 or all"),
        },
    };
    let args = phases::TrainArgs {
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
