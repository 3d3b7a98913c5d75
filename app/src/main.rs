//! `skeleguide`: the SkeleGuide desktop app and command line.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
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
