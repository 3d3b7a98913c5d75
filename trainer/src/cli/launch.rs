//! `skeleguide-train launch --gpus N -- train …`: one process per GPU on this machine, joined
//! into one data-parallel group (each gets its rank, the world size, its GPU and the rendezvous
//! address in the environment). A rank that fails stops the others; the launch exits with the
//! first failure's code.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser};
use skeleguide_trainer::parallel::{ENV_LOCAL_RANK, ENV_RANK, ENV_RENDEZVOUS, ENV_WORLD_SIZE};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

#[derive(Args)]
pub(crate) struct LaunchArgs {
    /// Processes to start, one per GPU (a build without CUDA runs them all on the CPU, which
    /// only makes sense for testing).
    #[arg(long)]
    gpus: usize,
    /// `host:port` for rank 0 (default: a free local port).
    #[arg(long)]
    rendezvous: Option<String>,
    /// The trainer command every process runs, after `--` (e.g. `train --config C --out O
    /// --phase 1`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub(crate) fn run(a: LaunchArgs) -> Result<()> {
    if a.gpus == 0 || a.gpus > super::train::MAX_WORLD {
        bail!(
            "--gpus {}: must be 1 to {}",
            a.gpus,
            super::train::MAX_WORLD
        );
    }
    // The command is checked here, once: a bad config is one message, not one per process.
    let parsed = super::Cli::try_parse_from(
        std::iter::once("skeleguide-train".to_string()).chain(a.command.iter().cloned()),
    );
    let train = match parsed {
        Ok(super::Cli {
            command: super::Command::Train(t),
        }) => t,
        Ok(_) => bail!("launch runs `train`: give `-- train --config …`"),
        Err(e) => bail!(
            "the command after `--`: {}",
            e.to_string().lines().next().unwrap_or("")
        ),
    };
    if let Some(flag) = a.command.iter().find(|c| {
        ["--world-size", "--rank", "--rendezvous"]
            .iter()
            .any(|f| c.as_str() == *f || c.starts_with(&format!("{f}=")))
    }) {
        bail!("{flag}: launch sets it for each process; leave it out of the command");
    }
    let (cfg, phase) = super::train::check(&train)?;
    if train.minutes().is_some() && a.gpus > 1 {
        bail!("--minutes: {}", super::train::MINUTES_ALONE);
    }
    if skeleguide_trainer::phases::runs_phase0(&cfg, phase) {
        bail!("{}", skeleguide_trainer::phases::PHASE0_ALONE);
    }
    if skeleguide_trainer::phases::uses_focus(&cfg) {
        bail!(
            "{}: {}",
            train.config_path().display(),
            skeleguide_trainer::phases::FOCUS_ALONE
        );
    }
    if cfg.batch % a.gpus != 0 {
        bail!(
            "{}: batch = {} cannot be split over {} processes (it must divide by {})",
            train.config_path().display(),
            cfg.batch,
            a.gpus,
            a.gpus
        );
    }
    let rendezvous = match a.rendezvous {
        Some(r) => r,
        None => free_local_address()?,
    };
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut children: Vec<Child> = Vec::with_capacity(a.gpus);
    for rank in 0..a.gpus {
        let child = Command::new(&exe)
            .args(&a.command)
            .env(ENV_WORLD_SIZE, a.gpus.to_string())
            .env(ENV_RANK, rank.to_string())
            .env(ENV_LOCAL_RANK, rank.to_string())
            .env(ENV_RENDEZVOUS, &rendezvous)
            .spawn()
            .with_context(|| format!("cannot start rank {rank}"));
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                stop(&mut children);
                return Err(e);
            }
        }
    }
    let waited = wait_all(&mut children);
    if waited.is_err() {
        stop(&mut children);
    }
    match waited? {
        Some((rank, code)) => {
            eprintln!("skeleguide-train launch: rank {rank} failed first (exit {code})");
            std::process::exit(code)
        }
        None => Ok(()),
    }
}

/// Waits for every process; after the first failure the others get a grace period to stop on
/// their own (their next reduction fails), then are killed. Returns the first failure.
fn wait_all(children: &mut [Child]) -> Result<Option<(usize, i32)>> {
    let mut codes: Vec<Option<i32>> = vec![None; children.len()];
    let mut failed: Option<(usize, i32, Instant)> = None;
    loop {
        for (rank, c) in children.iter_mut().enumerate() {
            if codes[rank].is_some() {
                continue;
            }
            if let Some(status) = c.try_wait()? {
                let code = status.code().unwrap_or(1);
                codes[rank] = Some(code);
                if code != 0 && failed.is_none() {
                    failed = Some((rank, code, Instant::now()));
                }
            }
        }
        if codes.iter().all(Option::is_some) {
            return Ok(failed.map(|(rank, code, _)| (rank, code)));
        }
        if let Some((_, _, at)) = failed {
            if at.elapsed() > Duration::from_secs(30) {
                stop(children);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(children: &mut [Child]) {
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn free_local_address() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free local port")?;
    Ok(l.local_addr()?.to_string())
}
