//! `skeleguide-train`: the SkeleGuide trainer's command line (the subcommands are in `cli`).

use clap::Parser;

mod cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    skeleguide_engine::model::device::configure_cpu_threads();
    skeleguide_engine::model::device::keep_freed_memory();
    skeleguide_engine::fsutil::quiet_broken_pipe();
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let shown = matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if shown {
                let _ = e.print();
                std::process::exit(e.exit_code());
            }
            let text = e.to_string();
            eprintln!(
                "{} (see --help)",
                text.lines().next().unwrap_or("invalid arguments").trim()
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = cli::run(cli) {
        let chain = e.chain().map(|c| c.to_string());
        eprintln!("error: {}", skeleguide_engine::error::one_line(chain));
        std::process::exit(2);
    }
}
