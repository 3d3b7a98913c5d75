//! `skeleguide-train ablate`: SkeleGuide against the ablation baselines on the same scenes.

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use skeleguide_trainer::eval::{ablate, EvalOptions};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct AblateArgs {
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
}

pub(crate) fn run(a: AblateArgs) -> Result<()> {
    let AblateArgs {
        models,
        data,
        out,
        count,
        steps,
        seed,
        notes,
    } = a;
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
