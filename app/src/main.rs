//! `skeleguide`: the SkeleGuide desktop app and command line.

use clap::Parser;
use std::process::ExitCode;

// mimalloc: AdamW and the many temporaries of candle's CPU backend run 2-3x faster than with
// glibc malloc (research/candle_cpu_perf.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    skeleguide_engine::model::device::configure_cpu_threads();
    let args = skeleguide::cli::Cli::parse();
    match skeleguide::cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the engine's errors already name the file and the field.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}
