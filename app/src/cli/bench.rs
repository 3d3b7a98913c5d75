//! `skeleguide bench`: speed figures, each measured side by side in one run.

use anyhow::Result;
use clap::Subcommand;
use skeleguide_engine::model::bench::{bench_dit, BenchOptions};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The MM-DiT: our forward vs candle-transformers' Flux, cached vs uncached sampling, a LoRA
    /// training step and peak memory (tiny preset, 128x128).
    Dit {
        /// Machine-readable JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Fewer iterations (a smoke run; noisier figures).
        #[arg(long)]
        quick: bool,
    },
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Dit { json, quick } => {
            let opts = if quick {
                BenchOptions::quick()
            } else {
                BenchOptions::default()
            };
            let r = bench_dit(&opts)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{r}");
            }
            Ok(())
        }
    }
}
