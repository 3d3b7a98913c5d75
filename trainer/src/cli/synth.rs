//! `skeleguide-train synth`: a synthetic human-in-scene data set.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use skeleguide_trainer::data::synth::{self, Split, SynthOptions};
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Test,
}

#[derive(Args)]
pub(crate) struct SynthArgs {
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
    /// The least height of a standing person, a fraction of the image (0.05-0.6); sitting and
    /// lying people come out shorter.
    #[arg(long, default_value_t = synth::DEFAULT_MIN_PERSON_HEIGHT)]
    min_person_height: f64,
    /// Worker threads (default: all cores); the output does not depend on it.
    #[arg(long)]
    threads: Option<usize>,
}

pub(crate) fn run(a: SynthArgs) -> Result<()> {
    let SynthArgs {
        out,
        count,
        seed,
        split,
        size,
        min_person_height,
        threads,
    } = a;
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
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let opts = SynthOptions {
        count,
        seed,
        split: match split {
            SplitArg::Train => Split::Train,
            SplitArg::Test => Split::Test,
        },
        size,
        min_person_height,
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
