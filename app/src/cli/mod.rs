//! Command-line interface (clap). Every failure is one line on stderr and exit code 2.

mod pose;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Pose files: convert between OpenPose JSON variants, draw layouts, inspect.
    #[command(subcommand)]
    Pose(pose::PoseCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Pose(cmd)) => pose::run(cmd),
        None => {
            Cli::command().print_help()?;
            println!();
            Ok(())
        }
    }
}
