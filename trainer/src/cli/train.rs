//! `skeleguide-train train`: the training curriculum.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use skeleguide_trainer::config::TrainConfig;
use skeleguide_trainer::parallel::{Group, ENV_RANK, ENV_RENDEZVOUS, ENV_WORLD_SIZE, WAIT};
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
    /// Stop after this many minutes from the start, with a checkpoint, and exit 0 (the run
    /// goes on with --resume, on this machine or another): a run cut to a time slot.
    #[arg(long)]
    minutes: Option<f64>,
    /// Data-parallel LoRA phases: the number of processes (`launch` sets it; a cluster
    /// scheduler may set it per process instead). The batch is split over them.
    #[arg(long, env = ENV_WORLD_SIZE, default_value_t = 1)]
    world_size: usize,
    /// This process's rank, 0 to world size - 1; rank 0 writes every file.
    #[arg(long, env = ENV_RANK, default_value_t = 0)]
    rank: usize,
    /// `host:port` where rank 0 listens for the other ranks.
    #[arg(long, env = ENV_RENDEZVOUS, default_value = "127.0.0.1:29517")]
    rendezvous: String,
    /// Seconds a rank waits for the others (to join, and at each step) before it stops.
    #[arg(long, default_value_t = WAIT.as_secs())]
    group_timeout: u64,
    /// How the ranks average their gradients: `nccl` on the GPUs (a build with the
    /// `skeleguide-engine/nccl` feature), `tcp` through rank 0's host memory, `auto` NCCL when
    /// the build has it.
    #[arg(long, value_enum, default_value = "auto")]
    reduce: Reduce,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Reduce {
    Auto,
    Tcp,
    Nccl,
}

/// The most processes of one data-parallel run.
pub(crate) const MAX_WORLD: usize = 1024;
/// The longest `--group-timeout`: a week.
const MAX_GROUP_TIMEOUT_S: u64 = 7 * 24 * 3600;
/// Why a data-parallel run refuses `--minutes`.
pub(crate) const MINUTES_ALONE: &str =
    "a data-parallel run cannot stop its ranks together; run it alone";
/// The longest `--minutes`: a week.
const MAX_MINUTES: f64 = 7.0 * 24.0 * 60.0;

/// The config and phase selection of `a`, checked (what `launch` checks before it starts any
/// process).
pub(crate) fn check(a: &TrainArgs) -> Result<(TrainConfig, PhaseSel)> {
    if a.world_size == 0 || a.world_size > MAX_WORLD {
        bail!("--world-size {}: must be 1 to {MAX_WORLD}", a.world_size);
    }
    if a.rank >= a.world_size {
        bail!(
            "--rank {}: must be below --world-size {}",
            a.rank,
            a.world_size
        );
    }
    if a.group_timeout > MAX_GROUP_TIMEOUT_S {
        bail!(
            "--group-timeout {}: at most {MAX_GROUP_TIMEOUT_S} s",
            a.group_timeout
        );
    }
    if let Some(m) = a.minutes {
        if !(m.is_finite() && m > 0.0 && m <= MAX_MINUTES) {
            bail!("--minutes {m}: must be above 0 and at most {MAX_MINUTES}");
        }
        if a.world_size > 1 {
            bail!("--minutes: {MINUTES_ALONE}");
        }
    }
    let cfg = TrainConfig::load(&a.config)?;
    let phase = match a.phase.as_str() {
        "all" => PhaseSel::All,
        p => match p.parse::<u8>() {
            Ok(n) if n <= 3 => PhaseSel::One(n),
            _ => bail!("--phase {p}: must be 0, 1, 2, 3 or all"),
        },
    };
    Ok((cfg, phase))
}

/// What every rank of one run must agree on: the parsed config (its file was read once, by
/// [`check`]), the phase, `--resume` and the reduction backend.
fn fingerprint(cfg: &TrainConfig, a: &TrainArgs, nccl: bool) -> u64 {
    use skeleguide_engine::hash::{fnv1a, fnv1a_from};
    let settings = serde_json::to_string(cfg).unwrap_or_default();
    let h = fnv1a_from(fnv1a(settings.as_bytes()), a.phase.as_bytes());
    fnv1a_from(h, &[a.resume as u8, nccl as u8])
}

impl TrainArgs {
    pub(crate) fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    pub(crate) fn minutes(&self) -> Option<f64> {
        self.minutes
    }
}

pub(crate) fn run(a: TrainArgs) -> Result<()> {
    let (cfg, phase) = check(&a)?;
    let group = if a.world_size > 1 {
        let wait = std::time::Duration::from_secs(a.group_timeout.max(1));
        let nccl = match a.reduce {
            Reduce::Auto => skeleguide_engine::model::allreduce::nccl_compiled(),
            Reduce::Tcp => false,
            Reduce::Nccl => true,
        };
        Some(Group::join(
            &a.rendezvous,
            a.world_size,
            a.rank,
            wait,
            fingerprint(&cfg, &a, nccl),
            nccl,
        )?)
    } else {
        None
    };
    let start = std::time::Instant::now();
    let TrainArgs {
        out,
        resume,
        data,
        rank,
        minutes,
        ..
    } = a;
    let args = phases::TrainArgs {
        config: cfg,
        out: out.clone(),
        phase,
        resume,
        data,
        progress: rank == 0,
        group,
        stop_at: minutes.map(|m| start + std::time::Duration::from_secs_f64(m * 60.0)),
    };
    let summaries = match phases::train(&args) {
        Ok(s) => s,
        Err(e @ phases::TrainError::Paused { .. }) => {
            eprintln!("{e}");
            return Ok(());
        }
        Err(e) => {
            // The other ranks stop at their next reduction instead of waiting for this one.
            if let Some(g) = &args.group {
                g.0.abort(&e.to_string());
            }
            return Err(e.into());
        }
    };
    if rank != 0 {
        return Ok(());
    }
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
