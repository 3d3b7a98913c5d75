//! The training curriculum (DESIGN.md): phase 0 (tiny preset: the autoencoder, then the
//! text-to-image base DiT with the text encoder), phase 1 (skeletal LoRA, `L_reason`), phase 2
//! (both LoRAs, `λ_reason·L_reason + λ_render·L_render` through the differentiable one-step
//! layout `M̂ = M0 − v̂(M0, σ=1)`), phase 3 (appearance LoRA on the ground-truth layout), and the
//! ablation baselines.
//!
//! Conventions shared with `engine::pipeline` (inference): images are fitted to the model's
//! working size the same way, latents are packed into 2×2 tokens with the image's position ids,
//! text features come from the model's encoder one prompt at a time, condition tokens are the
//! packed condition latent, and `timesteps` is σ itself. Flow matching: `x_σ = (1−σ)·x + σ·n`,
//! target `v = n − x`, MSE over every latent value.
//!
//! **σ sampling.** Per example `σ = shift(sigmoid(m + s·u))`, `u ~ N(0, 1)` (logit-normal, SD3 /
//! FLUX training; `m = optim.sigma_logit_mean`, `s = optim.sigma_logit_std`), then the
//! resolution time shift of DESIGN.md (`mu = m·L + b` over the `L` noisy-image tokens) when the
//! model samples with it, so training sees the noise levels sampling visits.
//!
//! **Dropout.** With probability `prompt_dropout` an example's prompt becomes the empty prompt;
//! with probability `cond_dropout` its condition latent becomes zeros (the batch shares one
//! condition stream, so "no condition" per example is the zero latent). Guidance is 1 during
//! training (models with a guidance embedding get a guidance of 1).
//!
//! **Baselines** (`method`): `stage1-only` runs phases 0, 1 and 3 (no joint phase 2);
//! `single-stage` trains the appearance LoRA to render from the scene latent directly (phase 3's
//! slot and steps, no layout); `implicit` trains the appearance LoRA to predict the image and the
//! layout latents jointly: both are noisy token sequences in one pass, with the same spatial
//! position ids and the first id axis set to 1 for the layout tokens
//! ([`skeleguide_engine::model::joint_ids`]), same σ, independent noise, conditioned on the scene.
//!
//! This module runs the curriculum (phase selection, resume, logs, checkpoints, the model
//! directory); `data` holds the examples, their cached latents and prompt features and the
//! per-step draws, `phase0` the two parts of phase 0, `lora` phases 1-3 and `loss` the losses.

// Phases are matched exhaustively: a new phase must be handled everywhere, never by a `_` arm.
#![warn(clippy::wildcard_enum_match_arm)]

mod data;
mod lora;
mod loss;
mod phase0;

pub use loss::{fixed_m0_seed, phase2_render_loss};

use crate::checkpoint::{self, Position};
use crate::config::{Phase0Config, TrainConfig};
use crate::log::{self, RunLog, StepRecord};
use crate::optim::{AdamW, AdamWParams, TrainRng};
use crate::parallel::Group;
use crate::phase::Phase;
use candle_core::{DType, Device};
use data::{cache_latents, load_examples, Example, Latents, TextCache};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use skeleguide_engine::model::{Autoencoder, LoraSets, LoraSpec, LoraTarget, ModelError};
use skeleguide_engine::modeldir::{self, LoraConfig, Method, ModelConfig, APPEARANCE, SKELETAL};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Dir(#[from] modeldir::ModelDirError),
    #[error("{0}")]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("{0}")]
    Pipeline(String),
    #[error("data-parallel group: {0}")]
    Group(#[from] skeleguide_engine::model::allreduce::ReduceError),
    /// Not a failure: the time given ran out and the checkpoint holds the run.
    #[error("stopped at step {step} of {steps} of phase {phase}, the time given being spent; the checkpoint holds it: continue with --resume")]
    Paused {
        phase: Phase,
        step: usize,
        steps: usize,
    },
}

type Result<T> = std::result::Result<T, TrainError>;

fn io_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

/// Which phases to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseSel {
    All,
    /// `--phase N`: `0` is both parts of phase 0 ([`Phase::Ae`], [`Phase::Dit`]), `1`-`3` the
    /// LoRA phase of that number.
    One(u8),
}

/// A training run's inputs.
#[derive(Clone, Debug)]
pub struct TrainArgs {
    pub config: TrainConfig,
    pub out: PathBuf,
    pub phase: PhaseSel,
    pub resume: bool,
    /// Overrides `data.dir`.
    pub data: Option<PathBuf>,
    /// Show progress bars.
    pub progress: bool,
    /// This process's rank in a data-parallel group (LoRA phases only); `None`: alone.
    pub group: Option<Group>,
    /// Stop at this instant, after the step under way, with a checkpoint
    /// (`TrainError::Paused`): a run cut to fit a machine's time slot.
    pub stop_at: Option<Instant>,
}

/// What one phase measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhaseSummary {
    pub phase: Phase,
    pub steps: usize,
    /// Steps run in this process (fewer than `steps` after a resume).
    pub steps_run: usize,
    pub seconds: f64,
    pub samples_per_s: f64,
    /// The loss of the phase's fixed evaluation batch (fixed examples, σ and noise, no dropout)
    /// before its first and after its last step.
    pub eval_before: f64,
    pub eval_after: f64,
}

/// The model directory inside the output directory.
pub fn model_dir(out: &Path) -> PathBuf {
    out.join("model")
}

/// A complete model directory of the base as it was at phase 0's latest checkpoint (rewritten at
/// each one), for a gate while the phase runs; `model_dir` holds finished phases only.
pub fn checkpoint_model_dir(out: &Path) -> PathBuf {
    out.join("model-at-checkpoint")
}

const AE_CONFIG_FILE: &str = "ae-config.json";

/// The phases a method runs, in order.
pub fn phases_of(method: Method, with_phase0: bool) -> Vec<Phase> {
    let mut v = Vec::new();
    if with_phase0 {
        v.extend([Phase::Ae, Phase::Dit]);
    }
    match method {
        Method::Skeleguide => v.extend([Phase::Skeletal, Phase::Joint, Phase::Appearance]),
        Method::Stage1Only => v.extend([Phase::Skeletal, Phase::Appearance]),
        Method::SingleStage | Method::Implicit => v.push(Phase::Appearance),
    }
    v
}

/// The configured steps of LoRA phase `phase` (0 for the parts of phase 0, which train no
/// LoRA).
pub fn lora_steps(cfg: &TrainConfig, phase: Phase) -> usize {
    cfg.lora_phase(phase).map_or(0, |p| p.steps)
}

/// The constant learning rate of a LoRA phase: its own `lr`, else `optim.lr`.
pub fn lora_lr(cfg: &TrainConfig, phase: Phase) -> f64 {
    cfg.lora_phase(phase)
        .and_then(|p| p.lr)
        .unwrap_or(cfg.optim.lr)
}

/// A config's LoRA step budget: the steps of every LoRA phase its method runs (what the
/// ablation holds equal across methods).
pub fn lora_budget(cfg: &TrainConfig) -> usize {
    phases_of(cfg.method, false)
        .iter()
        .map(|&p| lora_steps(cfg, p))
        .sum()
}

// ------------------------------------------------------------------ the run

struct Ctx<'a> {
    cfg: &'a TrainConfig,
    out: PathBuf,
    device: Device,
    dtype: DType,
    examples: Arc<Vec<Example>>,
    log: RunLog,
    progress: bool,
    started: Instant,
    /// The examples' latents, encoded once by the frozen autoencoder (it does not change after
    /// phase 0-ae) and shared by phase 0-dit and phases 1-3.
    latents: Option<Arc<Latents>>,
    /// The prompts' features from the frozen text encoder of phases 1-3.
    text_cache: Option<Arc<TextCache>>,
    group: Option<Group>,
    stop_at: Option<Instant>,
    /// Set by the step after which the time given ran out (its checkpoint written).
    paused: Option<Position>,
}

/// Whether a process writes the run's files: alone, or rank 0 of a group.
fn writes(group: &Option<Group>) -> bool {
    group.as_ref().is_none_or(|g| g.rank() == 0)
}

/// Why a data-parallel run refuses phase 0.
pub const PHASE0_ALONE: &str =
    "phase 0 trains on one process; run it alone, then the LoRA phases (--phase 1, 2, 3) data-parallel";

/// Why a data-parallel run refuses the focus weights.
pub const FOCUS_ALONE: &str = "optim.reason_focus, optim.render_focus: the token weights are divided by the whole batch's mean, which a data-parallel rank does not see; set them to 0 or train on one process";

/// Whether `cfg` weights the strokes' or the person's tokens (`optim.*_focus`).
pub fn uses_focus(cfg: &TrainConfig) -> bool {
    cfg.optim.reason_focus != 0.0 || cfg.optim.render_focus != 0.0
}

/// Whether a run of `cfg` with `phase` trains phase 0 (the tiny preset's own base).
pub fn runs_phase0(cfg: &TrainConfig, phase: PhaseSel) -> bool {
    let has0 = cfg.phase0.is_some() && cfg.base_model.is_none();
    match phase {
        PhaseSel::All => has0,
        PhaseSel::One(p) => p == 0,
    }
}

/// Runs the curriculum (or one phase); returns what each phase run measured.
pub fn train(args: &TrainArgs) -> Result<Vec<PhaseSummary>> {
    let cfg = &args.config;
    if args.resume && !checkpoint::path(&args.out).is_file() {
        return Err(TrainError::Config(format!(
            "--resume: {} does not exist",
            checkpoint::path(&args.out).display()
        )));
    }
    let rank0 = writes(&args.group);
    if let Some(g) = &args.group {
        if cfg.batch % g.world_size() != 0 {
            return Err(TrainError::Config(format!(
                "batch = {}: a data-parallel run of {} ranks needs a batch divisible by {}",
                cfg.batch,
                g.world_size(),
                g.world_size()
            )));
        }
    }
    if rank0 {
        std::fs::create_dir_all(&args.out).map_err(|e| io_err(&args.out, e))?;
        let mdir = model_dir(&args.out);
        std::fs::create_dir_all(&mdir).map_err(|e| io_err(&mdir, e))?;
    }
    // CUDA when the engine is built with it (FLUX; a data-parallel rank takes its own GPU),
    // else the CPU; the tiny preset runs in f32, FLUX in the engine's default dtype for the
    // device (bf16 on CUDA).
    let device = match (
        &args.group,
        skeleguide_engine::model::device::cuda_compiled(),
    ) {
        (Some(_), true) => {
            skeleguide_engine::model::device::cuda_device(crate::parallel::local_rank())?
        }
        _ => skeleguide_engine::model::default_device()?,
    };
    let dtype = if cfg.preset == "tiny" {
        DType::F32
    } else {
        skeleguide_engine::model::default_dtype(&device)
    };
    let with0 = cfg.phase0.is_some() && cfg.base_model.is_none();
    let all = phases_of(cfg.method, with0);
    let selected: Vec<Phase> = match args.phase {
        PhaseSel::All => all.clone(),
        PhaseSel::One(0) => {
            if !with0 {
                return Err(TrainError::Config(
                    "--phase 0: this config has no phase 0 (only the tiny preset without base_model trains its base)".into(),
                ));
            }
            vec![Phase::Ae, Phase::Dit]
        }
        PhaseSel::One(p) => {
            let Some(phase) = Phase::lora(p) else {
                return Err(TrainError::Config(format!(
                    "--phase {p}: must be 0, 1, 2, 3 or all"
                )));
            };
            if !all.contains(&phase) {
                let names: Vec<&str> = all.iter().map(|p| p.as_str()).collect();
                return Err(TrainError::Config(format!(
                    "--phase {p}: method `{}` has no phase {p} (its phases: {})",
                    method_name(cfg.method),
                    names.join(", ")
                )));
            }
            vec![phase]
        }
    };
    if args.group.is_some() && runs_phase0(cfg, args.phase) {
        return Err(TrainError::Config(PHASE0_ALONE.into()));
    }
    if args.group.is_some() && uses_focus(cfg) {
        return Err(TrainError::Config(FOCUS_ALONE.into()));
    }
    // Resume: skip the phases finished before the checkpoint.
    let ckpt = if args.resume {
        let c = checkpoint::load(&args.out)?;
        match &c {
            None => {
                return Err(TrainError::Config(format!(
                    "--resume: {} does not exist",
                    checkpoint::path(&args.out).display()
                )))
            }
            Some(c) => c.check_config(cfg, &args.out)?,
        }
        c
    } else {
        None
    };
    let log = match (&ckpt, rank0) {
        (_, false) => Ok(RunLog::unwritten(&args.out)),
        (Some(c), true) => RunLog::resume(&args.out, c.pos.phase, c.pos.step),
        (None, true) => {
            RunLog::starting_at(&args.out, selected.first().copied().unwrap_or(Phase::Ae))
        }
    }
    .map_err(|e| io_err(&args.out.join(log::LOG_FILE), e))?;

    // Rank 0 writes the synthetic data set (once); the others wait for it.
    let data_dir = match args.data.clone().or_else(|| cfg.data.dir.clone()) {
        Some(d) => d,
        None if rank0 => synth_data(&args.out, cfg)?,
        None => args.out.join("data"),
    };
    if let Some(g) = &args.group {
        g.barrier()?;
    }
    // The working size of the model the run starts from: its base, or the base phase 0 continues.
    let from = cfg
        .base_model
        .as_ref()
        .or(cfg.phase0.as_ref().and_then(|p| p.dit_from.as_ref()));
    let (resolution, unit) = match from {
        Some(b) => (ModelConfig::load(b)?.resolution, 16),
        None => (ModelConfig::tiny().resolution, 16),
    };
    let pb = prep_bar(args.progress, "loading the data", 0);
    let examples = load_examples(&data_dir, cfg.data.limit, resolution, unit, &pb)?;
    let mut ctx = Ctx {
        cfg,
        out: args.out.clone(),
        device,
        dtype,
        examples: Arc::new(examples),
        log,
        progress: args.progress,
        started: Instant::now(),
        latents: None,
        text_cache: None,
        group: args.group.clone(),
        stop_at: args.stop_at,
        paused: None,
    };
    let mut summaries = Vec::new();
    let last = selected.last().copied();
    for phase in selected {
        let resume_here = match &ckpt {
            Some(c) => {
                if phase < c.pos.phase {
                    continue;
                }
                if phase == c.pos.phase {
                    Some(c)
                } else {
                    None
                }
            }
            None => None,
        };
        let s = match phase {
            Phase::Ae => ctx.phase0_ae(resume_here)?,
            Phase::Dit => ctx.phase0_dit(resume_here)?,
            Phase::Skeletal | Phase::Joint | Phase::Appearance => {
                ctx.lora_phase(phase, resume_here)?
            }
        };
        // Time spent at the end of a phase that stepped here: the next phase's set-up would
        // overrun the slot (one that only finished a phase goes on, so every slot steps).
        if Some(phase) != last && s.steps_run > 0 && ctx.time_spent() {
            return Err(TrainError::Paused {
                phase,
                step: s.steps,
                steps: s.steps,
            });
        }
        summaries.push(s);
    }
    Ok(summaries)
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Skeleguide => "skeleguide",
        Method::SingleStage => "single-stage",
        Method::Implicit => "implicit",
        Method::Stage1Only => "stage1-only",
    }
}

/// Generates the synthetic training set into `OUT/data` (once).
fn synth_data(out: &Path, cfg: &TrainConfig) -> Result<PathBuf> {
    let dir = out.join("data");
    if dir.join("manifest.jsonl").is_file() {
        return Ok(dir);
    }
    let opts = crate::data::SynthOptions {
        count: cfg.data.synth_count,
        seed: cfg.seed,
        split: crate::data::Split::Train,
        size: cfg.data.synth_size,
        min_person_height: cfg.data.min_person_height,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    crate::data::write_dataset(&dir, &opts, &|| {}).map_err(|e| TrainError::Data(e.to_string()))?;
    Ok(dir)
}

/// A progress bar of `len` items headed `what` (hidden unless `show`).
fn prep_bar(show: bool, what: &str, len: usize) -> ProgressBar {
    let b = ProgressBar::new(len as u64);
    if !show {
        b.set_draw_target(ProgressDrawTarget::hidden());
    }
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:30}}] {{pos}}/{{len}} {{elapsed_precise}} eta {{eta}} {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

fn bar(show: bool, phase: Phase, steps: usize, done: usize) -> ProgressBar {
    let b = prep_bar(show, &format!("phase {phase:>5}"), steps);
    b.set_position(done as u64);
    b
}

fn adam_params(cfg: &TrainConfig, lr: f64) -> AdamWParams {
    AdamWParams {
        lr,
        beta1: cfg.optim.beta1,
        beta2: cfg.optim.beta2,
        eps: cfg.optim.eps,
        weight_decay: cfg.optim.weight_decay,
    }
}

/// The seed of a random stream named `name` (a phase's string form, or a LoRA set's name):
/// FNV-1a over the name's bytes, from the run's seed.
fn phase_seed(seed: u64, name: &str) -> u64 {
    use skeleguide_engine::hash::{fnv1a_from, FNV_OFFSET};
    fnv1a_from(FNV_OFFSET ^ seed, name.as_bytes())
}

/// What one optimiser step measured (for [`Ctx::end_step`]).
struct StepDone {
    /// Steps done in the phase, this one included.
    step: usize,
    /// The phase's total.
    steps: usize,
    /// Loss, and `L_reason` / `L_render` where the phase has both.
    losses: (f64, Option<f64>, Option<f64>),
    grad_norm: f64,
    secs: f64,
    batch: usize,
}

impl Ctx<'_> {
    fn p0(&self) -> Result<&Phase0Config> {
        self.cfg
            .phase0
            .as_ref()
            .ok_or_else(|| TrainError::Config("phase0: missing".into()))
    }

    /// Whether this process writes the run's files: alone, or rank 0 of a group.
    fn writes(&self) -> bool {
        writes(&self.group)
    }

    /// Runs `f` on rank 0 before the other ranks (at once when alone): for work that writes
    /// files the other ranks then read.
    fn after_rank0<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let Some(g) = self.group.clone() else {
            return f(self);
        };
        if g.rank() == 0 {
            // On an error the CLI stops the group.
            let r = f(self)?;
            g.barrier()?;
            Ok(r)
        } else {
            g.barrier()?;
            f(self)
        }
    }

    /// The bookkeeping after every optimiser step of every phase: the JSONL record (a
    /// non-finite loss stops the run), the progress bar and the periodic checkpoint (rank 0
    /// alone in a data-parallel group). Returns whether it wrote a checkpoint.
    fn end_step(
        &mut self,
        phase: Phase,
        done: StepDone,
        pb: &ProgressBar,
        rng: &TrainRng,
        opt: &AdamW,
    ) -> Result<bool> {
        let StepDone {
            step,
            steps,
            losses,
            grad_norm,
            secs,
            batch,
        } = done;
        let r = StepRecord {
            phase,
            step,
            loss: losses.0,
            loss_reason: losses.1,
            loss_render: losses.2,
            lr: opt.params.lr,
            grad_norm,
            step_time_s: secs,
            samples_per_s: batch as f64 / secs.max(1e-9),
        };
        if !r.loss.is_finite() {
            return Err(TrainError::Data(format!(
                "phase {phase} step {step}: the loss is {} (diverged); lower the learning rate",
                r.loss
            )));
        }
        if !self.writes() {
            return Ok(false);
        }
        let p = self.out.join(log::LOG_FILE);
        self.log.push(r).map_err(|e| io_err(&p, e))?;
        pb.set_position(step as u64);
        pb.set_message(format!("loss {:.5}", losses.0));
        let out_of_time = step < steps && self.time_spent();
        let due = (step % self.cfg.checkpoint_every == 0 || out_of_time) && step < steps;
        if due {
            self.checkpoint(phase, step, rng, opt)?;
        }
        if out_of_time {
            self.paused = Some(Position { phase, step });
        }
        Ok(due)
    }

    /// Whether the run's time (`--minutes`) is spent.
    fn time_spent(&self) -> bool {
        self.stop_at.is_some_and(|t| Instant::now() >= t)
    }

    /// Ends the run with [`TrainError::Paused`] once a step has found the time given spent
    /// (called at the end of each step, after what the step writes).
    fn stop_if_paused(&self, steps: usize) -> Result<()> {
        match &self.paused {
            Some(p) => Err(TrainError::Paused {
                phase: p.phase,
                step: p.step,
                steps,
            }),
            None => Ok(()),
        }
    }

    fn checkpoint(&self, phase: Phase, step: usize, rng: &TrainRng, opt: &AdamW) -> Result<()> {
        checkpoint::save(
            &self.out,
            &Position { phase, step },
            rng,
            opt,
            &checkpoint::shaping_fields(self.cfg),
            self.cfg.compact_checkpoint,
        )?;
        self.log
            .plot(&self.out)
            .map_err(|e| io_err(&self.out.join(log::CURVE_FILE), e))
    }

    fn apply_run_settings(&self, mc: &mut ModelConfig) {
        mc.method = self.cfg.method;
        for set in [SKELETAL, APPEARANCE] {
            mc.lora.insert(
                set.to_string(),
                LoraConfig {
                    rank: self.cfg.lora.rank,
                    alpha: self.cfg.lora.alpha,
                },
            );
        }
    }

    fn add_fresh(&self, sets: &mut LoraSets, set: &str) -> Result<()> {
        if sets.contains(set) {
            sets.remove(set)?;
        }
        sets.add(
            set,
            &LoraSpec {
                rank: self.cfg.lora.rank,
                alpha: self.cfg.lora.alpha,
                targets: LoraTarget::ALL.to_vec(),
                seed: phase_seed(self.cfg.seed, set),
            },
        )?;
        Ok(())
    }

    /// Writes `config.json` and `MODEL_CARD.md` of the model directory `mdir`.
    fn finish_model_dir(&self, mdir: &Path, mc: &ModelConfig, done: &str) -> Result<()> {
        mc.save(mdir)?;
        let mut card = format!(
            "# SkeleGuide model `{}` (method `{}`)\n\nTrained by `skeleguide-train train` on {} examples.\n\n\
             Last completed: {done}. Wall time so far in this process: {:.0} s.\n\n| phase | steps | mean loss (last 20 steps) |\n|---|---|---|\n",
            mc.id(),
            method_name(self.cfg.method),
            self.examples.len(),
            self.started.elapsed().as_secs_f64()
        );
        let mut phases: Vec<Phase> = Vec::new();
        for r in &self.log.records {
            if !phases.contains(&r.phase) {
                phases.push(r.phase);
            }
        }
        for ph in phases {
            let ls: Vec<f64> = self
                .log
                .records
                .iter()
                .filter(|r| r.phase == ph)
                .map(|r| r.loss)
                .collect();
            let tail = &ls[ls.len().saturating_sub(20)..];
            let mean = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
            card.push_str(&format!("| {ph} | {} | {mean:.4} |\n", ls.len()));
        }
        let own_lrs: String = self
            .cfg
            .own_phase_lrs()
            .map(|(p, lr)| format!(", phase {p} {lr}"))
            .collect();
        card.push_str(&format!(
            "\nTraining config: lr {}{own_lrs} (AdamW, constant), batch {}, grad clip {}, prompt dropout {}, condition dropout {}, LoRA rank {} alpha {}.\n",
            self.cfg.optim.lr,
            self.cfg.batch,
            self.cfg.optim.grad_clip,
            self.cfg.optim.prompt_dropout,
            self.cfg.optim.cond_dropout,
            self.cfg.lora.rank,
            self.cfg.lora.alpha
        ));
        let p = mdir.join(modeldir::CARD_FILE);
        skeleguide_engine::fsutil::write_atomic(&p, card.as_bytes()).map_err(|e| io_err(&p, e))
    }

    /// The examples' latents under the run's frozen autoencoder, encoded on first use.
    fn latents(&mut self, ae: &dyn Autoencoder) -> Result<Arc<Latents>> {
        if let Some(l) = &self.latents {
            return Ok(Arc::clone(l));
        }
        let pb = prep_bar(self.progress, "encoding latents", 3 * self.examples.len());
        let l = Arc::new(cache_latents(
            ae,
            &self.examples,
            &self.device,
            self.dtype,
            &pb,
        )?);
        pb.finish_and_clear();
        self.latents = Some(Arc::clone(&l));
        Ok(l)
    }
}
