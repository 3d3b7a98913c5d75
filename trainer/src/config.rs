//! Training configurations (`trainer/configs/*.toml`).
//!
//! Every table rejects unknown keys: a typo is an error naming the file, the key and its
//! line, never a silently ignored setting.

use crate::phase::Phase;
use serde::{Deserialize, Serialize};
use skeleguide_engine::modeldir::Method;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {msg}")]
    Read { file: String, msg: String },
    #[error("{file}: {msg}")]
    Invalid { file: String, msg: String },
}

/// A whole training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model preset: `tiny` (trained from scratch, phase 0 included) or `flux-dev` (the base,
    /// autoencoder and text encoders come from `base_model`).
    pub preset: String,
    /// `skeleguide` or an ablation baseline: `single-stage`, `implicit`, `stage1-only`.
    #[serde(default)]
    pub method: Method,
    /// An existing model directory to start phases 1-3 from (required for `flux-dev`).
    #[serde(default)]
    pub base_model: Option<PathBuf>,
    /// Seed of everything random in the run (initial weights, batches, σ, noise, dropout).
    #[serde(default)]
    pub seed: u64,
    /// Examples per optimiser step.
    pub batch: usize,
    /// Write a checkpoint every this many steps (and at the end of each phase).
    pub checkpoint_every: usize,
    /// Checkpoints keep AdamW's second moment in bf16 and leave out the first, which restarts
    /// at zero on resume (its 0.9 decay refills it within tens of steps): about half the size,
    /// for carrying a run between machines whose transfers are capped.
    #[serde(default)]
    pub compact_checkpoint: bool,
    /// Write a sample grid every this many steps of phases 1-3 (0: never).
    #[serde(default)]
    pub sample_every: usize,
    /// Euler steps of the sample grids.
    #[serde(default = "default_sample_steps")]
    pub sample_steps: usize,
    /// Examples in a sample grid (the first ones of the data set).
    #[serde(default = "default_sample_count")]
    pub sample_count: usize,
    pub optim: OptimConfig,
    pub data: DataConfig,
    pub lora: LoraConfig,
    #[serde(default)]
    pub phase0: Option<Phase0Config>,
    pub phase1: PhaseConfig,
    pub phase2: PhaseConfig,
    pub phase3: PhaseConfig,
}

fn default_sample_steps() -> usize {
    12
}

fn default_sample_count() -> usize {
    4
}

/// AdamW and the training tricks shared by phases 1-3 (and the DiT part of phase 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Constant learning rate of the LoRA phases (a phase table's `lr` overrides it).
    pub lr: f64,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    /// Global gradient-norm clip (0: off).
    pub grad_clip: f64,
    /// Probability of replacing an example's prompt by the empty prompt.
    pub prompt_dropout: f64,
    /// Probability of zeroing an example's condition latent.
    pub cond_dropout: f64,
    /// Weight of `L_reason` in phase 2.
    pub lambda_reason: f64,
    /// Weight of `L_render` in phase 2.
    pub lambda_render: f64,
    /// Location `m` and scale `s` of the logit-normal σ distribution (`σ = sigmoid(m + s·u)`,
    /// `u ~ N(0, 1)`), before the resolution time shift.
    #[serde(default)]
    pub sigma_logit_mean: f64,
    #[serde(default = "default_one")]
    pub sigma_logit_std: f64,
    /// Extra weight of the skeleton strokes' tokens in `L_reason` (a token counts `1 +` this
    /// times the share of its pixels that are strokes; 0: the plain MSE). The strokes cover a
    /// few tokens of a layout whose rest is the scene given as the condition.
    #[serde(default)]
    pub reason_focus: f64,
    /// Extra weight of the person's tokens in `L_render` (as `reason_focus`, with the pixels
    /// where the image differs from its scene).
    #[serde(default)]
    pub render_focus: f64,
    /// LoRA phases: keep only each transformer block's inputs and outputs and recompute the
    /// block during the backward pass (needed to train FLUX.1-dev at 1024² on one GPU).
    #[serde(default)]
    pub activation_checkpointing: bool,
}

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}
fn default_wd() -> f64 {
    0.01
}
fn default_one() -> f64 {
    1.0
}

/// Where the examples come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A manifest directory; `--data` overrides it. Without either, a synthetic training set
    /// of `synth_count` examples is generated into `OUT/data`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_synth_count")]
    pub synth_count: usize,
    #[serde(default = "default_synth_size")]
    pub synth_size: u32,
    /// The generated set's least standing-person height, a fraction of the image.
    #[serde(default = "default_min_person_height")]
    pub min_person_height: f64,
    /// Use at most this many examples (0: all).
    #[serde(default)]
    pub limit: usize,
}

fn default_synth_count() -> usize {
    256
}
fn default_synth_size() -> u32 {
    128
}
fn default_min_person_height() -> f64 {
    crate::data::synth::DEFAULT_MIN_PERSON_HEIGHT
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
}

/// Phase 0 of the tiny preset: the autoencoder, then the base DiT with the text encoder.
///
/// The autoencoder keeps the schedule of `skeleguide-train ae` (5% warm-up, cosine decay to a
/// tenth of `ae_lr`), no weight decay, clipped at `optim.grad_clip`; its latents are then normalised (the
/// `shift_factor`/`scale_factor` of the model config come from the training images). The DiT
/// part uses `optim` (AdamW, clip, prompt dropout) with its own constant `dit_lr`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase0Config {
    /// Autoencoder steps (random crops, MSE).
    pub ae_steps: usize,
    #[serde(default = "default_ae_lr")]
    pub ae_lr: f64,
    #[serde(default = "default_ae_batch")]
    pub ae_batch: usize,
    /// Crop side in pixels (a multiple of 8).
    #[serde(default = "default_ae_crop")]
    pub ae_crop: u32,
    /// Extra loss weight of the skeleton pixels of layouts (each counts `1 +` this; 0: the
    /// plain MSE). The crops are a third each scenes with people, backgrounds and layouts.
    #[serde(default = "default_ae_skeleton_weight")]
    pub ae_skeleton_weight: f32,
    /// Text-to-image DiT steps (base DiT and TinyText, all parameters).
    pub dit_steps: usize,
    /// Learning rate of the DiT part (the LoRA phases use `optim.lr`).
    pub dit_lr: f64,
    /// The autoencoder's architecture (`[phase0.ae]`, a `TinyAeConfig`; missing keys take the
    /// tiny preset's values). The DiT's packed input follows its latent channels (×4).
    #[serde(default)]
    pub ae: Option<skeleguide_engine::model::TinyAeConfig>,
    /// A tiny model directory whose autoencoder (weights and latent statistics) phase 0-ae
    /// adopts instead of training one (`ae_steps` must then be 0). Keeps a PoseInverter and
    /// a decoder fine-tuned on that autoencoder valid for the new model.
    #[serde(default)]
    pub ae_from: Option<std::path::PathBuf>,
    /// A tiny model directory whose base DiT and text encoder phase 0-dit continues training
    /// instead of starting from random weights: its architecture, vocabulary and text length
    /// are kept, and `ae_from` must name the same directory (the base learnt its latents).
    #[serde(default)]
    pub dit_from: Option<std::path::PathBuf>,
    /// Share of the base DiT's text-to-image examples that are layouts (the scene with the
    /// skeletons drawn), prompted with [`skeleguide_engine::modeldir::TINY_REASON_PREFIX`]
    /// before the example's prompt; 0 trains on photos alone. A frozen base that never saw a
    /// skeleton cannot draw one in stage 1, whatever its condition-branch LoRA does.
    #[serde(default)]
    pub layout_share: f64,
    /// The DiT's learning-rate schedule: `constant` (`dit_lr` throughout) or `cosine` (the
    /// autoencoder's: 5 % linear warm-up, cosine decay to `dit_lr / 10`).
    #[serde(default)]
    pub dit_schedule: LrSchedule,
    /// adaLN-Zero (the DiT paper's best variant): every modulation layer and the final layer
    /// start at zero, so each block starts as the identity and the output at zero.
    #[serde(default)]
    pub adaln_zero: bool,
    /// The text encoder's sequence length in tokens, `<bos>` included (default 32). Prompts
    /// longer than this are cut; stage 1's `pose layout` cue adds two tokens. With `dit_from`
    /// it may exceed the source's (the new positions start as its last one), never undercut it.
    #[serde(default = "default_text_max_len")]
    pub text_max_len: usize,
    /// Decay of an exponential moving average of the DiT's and text encoder's weights, which
    /// is what the model directory then gets (e.g. 0.999; absent: the last weights).
    #[serde(default)]
    pub ema_decay: Option<f64>,
}

/// A learning-rate schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The same rate at every step.
    #[default]
    Constant,
    /// 5 % linear warm-up, then cosine decay to a tenth.
    Cosine,
}

impl LrSchedule {
    /// The factor of the peak rate at `step` of `steps`.
    pub fn factor(self, step: usize, steps: usize) -> f64 {
        match self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => skeleguide_engine::model::tiny_ae::lr_factor(
                step,
                steps,
                step as f64 / steps.max(1) as f64,
            ),
        }
    }
}

fn default_text_max_len() -> usize {
    32
}

fn default_ae_lr() -> f64 {
    1.5e-3
}

fn default_ae_batch() -> usize {
    32
}

fn default_ae_crop() -> u32 {
    64
}

fn default_ae_skeleton_weight() -> f32 {
    crate::ae::SKELETON_WEIGHT
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseConfig {
    pub steps: usize,
    /// This phase's constant learning rate, instead of `optim.lr`.
    #[serde(default)]
    pub lr: Option<f64>,
}

impl TrainConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let limit = skeleguide_engine::limits::MAX_CONFIG_BYTES;
        let text = skeleguide_engine::fsutil::read_text_limited(path, limit).map_err(|e| {
            ConfigError::Read {
                file: path.display().to_string(),
                msg: e.to_string(),
            }
        })?;
        Self::parse(&text, path)
    }

    /// Parses TOML text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            file: file.clone(),
            msg: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        cfg.validate()
            .map_err(|msg| ConfigError::Invalid { file, msg })?;
        Ok(cfg)
    }

    /// The settings of LoRA phase `phase` (`[phaseN]`); `None` for the parts of phase 0.
    pub fn lora_phase(&self, phase: Phase) -> Option<&PhaseConfig> {
        match phase {
            Phase::Ae | Phase::Dit => None,
            Phase::Skeletal => Some(&self.phase1),
            Phase::Joint => Some(&self.phase2),
            Phase::Appearance => Some(&self.phase3),
        }
    }

    /// The LoRA phases that set their own learning rate, with it.
    pub fn own_phase_lrs(&self) -> impl Iterator<Item = (Phase, f64)> + '_ {
        Phase::ALL
            .into_iter()
            .filter_map(|p| self.lora_phase(p)?.lr.map(|lr| (p, lr)))
    }

    fn validate(&self) -> Result<(), String> {
        let prob = |name: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!("{name} = {p}: must be in [0, 1]"))
            }
        };
        match self.preset.as_str() {
            "tiny" => {}
            "flux-dev" => {
                if self.base_model.is_none() {
                    return Err(
                        "base_model: required for preset `flux-dev` (a model directory with BFL's base, ae and text encoders)"
                            .into(),
                    );
                }
            }
            p => return Err(format!("preset = {p:?}: must be \"tiny\" or \"flux-dev\"")),
        }
        if self.preset != "tiny" && self.phase0.is_some() {
            return Err("phase0: only the tiny preset has a phase 0 (FLUX's base is BFL's)".into());
        }
        if self.phase0.is_some() && self.base_model.is_some() {
            return Err(
                "phase0: not used when base_model is given (phases 1-3 start from it); remove one"
                    .into(),
            );
        }
        if self.preset == "tiny" && self.phase0.is_none() && self.base_model.is_none() {
            return Err("phase0: missing (the tiny preset trains its base in phase 0 unless base_model is given)".into());
        }
        if self.batch == 0 {
            return Err("batch: must be at least 1".into());
        }
        use skeleguide_engine::limits::{at_most, MAX_BATCH, MAX_LORA_RANK};
        at_most("batch", self.batch, MAX_BATCH)?;
        at_most("lora.rank", self.lora.rank, MAX_LORA_RANK)?;
        if let Some(p0) = &self.phase0 {
            at_most("phase0.ae_batch", p0.ae_batch, MAX_BATCH)?;
            at_most("phase0.text_max_len", p0.text_max_len, 512)?;
            if let Some(d) = p0.ema_decay {
                if !(0.0..1.0).contains(&d) {
                    return Err(format!("phase0.ema_decay = {d}: must be in [0, 1)"));
                }
            }
            if p0.text_max_len < 4 {
                return Err(format!(
                    "phase0.text_max_len = {}: must be at least 4",
                    p0.text_max_len
                ));
            }
        }
        if self.checkpoint_every == 0 {
            return Err("checkpoint_every: must be at least 1".into());
        }
        if self.sample_steps == 0 {
            return Err("sample_steps: must be at least 1".into());
        }
        let o = &self.optim;
        let phase_lrs = self
            .own_phase_lrs()
            .map(|(p, v)| (format!("phase{p}.lr"), v));
        for (name, v) in [("optim.lr".into(), o.lr), ("optim.eps".into(), o.eps)]
            .into_iter()
            .chain(phase_lrs)
        {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} = {v}: must be > 0"));
            }
        }
        for (name, v) in [("optim.beta1", o.beta1), ("optim.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(format!("{name} = {v}: must be in [0, 1)"));
            }
        }
        for (name, v) in [
            ("optim.weight_decay", o.weight_decay),
            ("optim.grad_clip", o.grad_clip),
            ("optim.lambda_reason", o.lambda_reason),
            ("optim.lambda_render", o.lambda_render),
            ("optim.sigma_logit_std", o.sigma_logit_std),
            ("optim.reason_focus", o.reason_focus),
            ("optim.render_focus", o.render_focus),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} = {v}: must be >= 0"));
            }
        }
        if !o.sigma_logit_mean.is_finite() {
            return Err("optim.sigma_logit_mean: must be finite".into());
        }
        prob("optim.prompt_dropout", o.prompt_dropout)?;
        prob("optim.cond_dropout", o.cond_dropout)?;
        if self.lora.rank == 0 {
            return Err("lora.rank: must be at least 1".into());
        }
        if !(self.lora.alpha.is_finite() && self.lora.alpha > 0.0) {
            return Err(format!("lora.alpha = {}: must be > 0", self.lora.alpha));
        }
        if let Some(p0) = &self.phase0 {
            if p0.ae_batch == 0 {
                return Err("phase0.ae_batch: must be at least 1".into());
            }
            if !(p0.ae_skeleton_weight >= 0.0 && p0.ae_skeleton_weight.is_finite()) {
                return Err(format!(
                    "phase0.ae_skeleton_weight = {}: must be a finite number ≥ 0",
                    p0.ae_skeleton_weight
                ));
            }
            if p0.ae_crop < 8 || p0.ae_crop % 8 != 0 {
                return Err(format!(
                    "phase0.ae_crop = {}: must be a positive multiple of 8",
                    p0.ae_crop
                ));
            }
            if let Some(ae) = &p0.ae {
                ae.validate().map_err(|e| format!("phase0.ae: {e}"))?;
            }
            if p0.ae_from.is_some() && (p0.ae_steps > 0 || p0.ae.is_some()) {
                return Err(
                    "phase0.ae_from: the autoencoder is adopted from that model directory, so phase0.ae_steps must be 0 and [phase0.ae] absent".into(),
                );
            }
            if let Some(d) = &p0.dit_from {
                if p0.ae_from.as_ref() != Some(d) {
                    return Err(format!(
                        "phase0.dit_from = {}: phase0.ae_from must name the same model directory (the base was trained on its autoencoder's latents)",
                        d.display()
                    ));
                }
                if p0.adaln_zero {
                    return Err(
                        "phase0.adaln_zero: only shapes fresh weights; phase0.dit_from continues trained ones".into(),
                    );
                }
            }
            if !(0.0..=1.0).contains(&p0.layout_share) {
                return Err(format!(
                    "phase0.layout_share = {}: must be between 0 and 1",
                    p0.layout_share
                ));
            }
            for (name, v) in [("phase0.ae_lr", p0.ae_lr), ("phase0.dit_lr", p0.dit_lr)] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("{name} = {v}: must be > 0"));
                }
            }
        }
        use crate::data::synth::{MAX_COUNT, MAX_SIZE, MIN_SIZE};
        if !(MIN_SIZE..=MAX_SIZE).contains(&self.data.synth_size) {
            return Err(format!(
                "data.synth_size = {}: must be between {MIN_SIZE} and {MAX_SIZE}",
                self.data.synth_size
            ));
        }
        crate::data::synth::check_min_person_height(
            "data.min_person_height",
            self.data.min_person_height,
        )
        .map_err(|e| e.to_string())?;
        at_most("data.synth_count", self.data.synth_count, MAX_COUNT)?;
        if self.data.synth_count == 0 && self.data.dir.is_none() {
            return Err("data.synth_count: must be at least 1 when data.dir is not given".into());
        }
        Ok(())
    }
}
