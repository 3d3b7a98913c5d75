//! `skeleguide`: the SkeleGuide desktop app and command line.

use clap::Parser;
use std::process::ExitCode;

// mimalloc: AdamW and the many temporaries of candle's CPU backend run 2-3x faster than with
// glibc malloc (research/candle_cpu_perf.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    skeleguide_engine::model::device::configure_cpu_threads();
    skeleguide_engine::model::device::keep_freed_memory();
    skeleguide_engine::fsutil::quiet_broken_pipe();
    let args = match skeleguide::cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    match skeleguide::cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the engine's errors already name the file and the field.
            let chain = e.chain().map(|c| c.to_string());
            eprintln!("error: {}", skeleguide_engine::error::one_line(chain));
            ExitCode::from(2)
        }
    }
}

/// `--help` and `--version` print as clap prints them; a usage error is one line, exit code 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(e.exit_code() as u8);
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    eprintln!("{} (see --help)", first.trim());
    ExitCode::from(2)
}
