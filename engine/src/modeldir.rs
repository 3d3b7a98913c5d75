//! The model directory: `config.json` plus the weight files of one SkeleGuide model.
//!
//! ```text
//! config.json                  preset, DiT dimensions, resolution, LoRA ranks, AE and text kinds
//! base.safetensors             the MM-DiT (BFL tensor names)
//! lora-skeletal.safetensors    stage-1 LoRA set (one set per file, with its metadata)
//! lora-appearance.safetensors  stage-2 LoRA set
//! ae.safetensors               the autoencoder (TinyAe, or BFL's ae.safetensors)
//! text.safetensors             TinyText (or t5/ and clip/ directories for FluxText)
//! inverter.safetensors         the PoseInverter, when present
//! MODEL_CARD.md                data, steps, metrics
//! ```
//!
//! `check` verifies every file and every base tensor's shape up front, so a broken directory
//! fails at load with a message naming the file or tensor, not in the middle of a generation.

use crate::model::{
    bfl_tensor_shapes, random_weights, save_weights, DitConfig, LoraSets, LoraSpec, LoraTarget,
    ModelError, TinyAe, TinyAeConfig, TinyText, TinyTextConfig,
};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Name of the model configuration file in a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// Name of the base MM-DiT weights file (BFL tensor names).
pub const BASE_FILE: &str = "base.safetensors";
/// Name of the autoencoder weights file.
pub const AE_FILE: &str = "ae.safetensors";
/// Name of the TinyText text-encoder weights file.
pub const TEXT_FILE: &str = "text.safetensors";
/// The PoseInverter's weights (named by the inverter, which reads them from a model directory).
pub const INVERTER_FILE: &str = crate::inverter::WEIGHTS_FILE;
/// Name of the model card (training data, steps, metrics), in Markdown.
pub const CARD_FILE: &str = "MODEL_CARD.md";
/// The two LoRA sets of the method.
pub const SKELETAL: &str = "skeletal";
/// Name of the stage-2 (appearance) LoRA set.
pub const APPEARANCE: &str = "appearance";

/// The file name of the LoRA set named `set`: `lora-{set}.safetensors`.
pub fn lora_file(set: &str) -> String {
    format!("lora-{set}.safetensors")
}

/// Why a model directory cannot be loaded, checked or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    /// A file of the directory cannot be read, written or parsed, or its contents are invalid.
    #[error("{path}: {msg}")]
    File {
        /// The file the error is about, as shown to the user.
        path: String,
        /// What is wrong with the file.
        msg: String,
    },
    /// A tensor of a weights file has a different shape than the configuration implies.
    #[error("{path}: tensor `{name}`: expected shape {expected:?}, found {found:?}")]
    Shape {
        /// The weights file, as shown to the user.
        path: String,
        /// The tensor's name in the file.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape stored in the file.
        found: Vec<usize>,
    },
    /// A tensor the configuration requires is absent from a weights file.
    #[error("{path}: tensor `{name}` is missing (expected shape {expected:?})")]
    Missing {
        /// The weights file, as shown to the user.
        path: String,
        /// The name of the missing tensor.
        name: String,
        /// The shape the configuration implies for it.
        expected: Vec<usize>,
    },
    /// Building, loading or saving the model's weights failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl ModelDirError {
    fn file(path: &Path, msg: impl Into<String>) -> Self {
        ModelDirError::File {
            path: path.display().to_string(),
            msg: msg.into(),
        }
    }
}

/// Rank and alpha of one LoRA set, as given in `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank of the low-rank adapters (at least 1).
    pub rank: usize,
    /// Alpha; the adapter output is scaled by `alpha / rank`.
    pub alpha: f64,
}

/// Which autoencoder the model uses (`ae.kind` in `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AeSpec {
    /// The small TinyAe autoencoder, stored in `ae.safetensors`.
    Tiny {
        /// The TinyAe dimensions.
        config: TinyAeConfig,
    },
    /// BFL's FLUX autoencoder (its `ae.safetensors`).
    Flux,
}

/// Which text encoder the model uses (`text.kind` in `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TextSpec {
    /// The small TinyText encoder, stored in `text.safetensors`.
    Tiny {
        /// The TinyText dimensions.
        config: TinyTextConfig,
    },
    /// FLUX's text encoders, read from the `t5/` and `clip/` directories.
    Flux,
}

/// `config.json`. Unknown keys are refused (a misspelt field would otherwise be ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Version of the `config.json` format; only 1 is accepted.
    pub format: u32,
    /// Name of the preset the model was built from (e.g. `tiny`).
    pub preset: String,
    /// Dimensions of the MM-DiT.
    pub dit: DitConfig,
    /// Longest side of the working resolution in pixels; scenes are fitted to it.
    pub resolution: u32,
    /// Default sampling steps.
    pub steps: usize,
    /// Guidance for models with a guidance embedding.
    pub guidance: f64,
    /// Whether sampling uses the resolution-dependent time shift.
    pub time_shift: bool,
    /// The LoRA sets by name; `skeletal` and `appearance` must both be present.
    pub lora: BTreeMap<String, LoraConfig>,
    /// The autoencoder.
    pub ae: AeSpec,
    /// The text encoder.
    pub text: TextSpec,
    /// How the model generates: the two-stage method or one of the ablation baselines.
    #[serde(default)]
    pub method: Method,
    /// Words put before the prompt in stage 1 (`""`: none). The tiny base DiT is pretrained on
    /// layout images as well as photos, the layouts' prompts starting with these words, so
    /// that its frozen image stream can draw skeletons; stage 1 then prompts it the same way.
    /// FLUX needs none (its base draws pose renderings without a cue).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason_prefix: String,
    /// Default classifier-free guidance on the prompt, per stage (see [`TextGuidance`]).
    #[serde(default)]
    pub text_guidance: TextGuidance,
    /// Default number of stage-1 layouts sampled per call, of which the one read back with the
    /// prompt's person count and the best-shaped skeletons is kept (see
    /// [`crate::select`]); 1: one sample, no choice.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub reason_candidates: usize,
    /// Default scene contrast of stage 1 (see [`SceneContrast`]; absent: off).
    #[serde(default, skip_serializing_if = "SceneContrast::is_off")]
    pub reason_contrast: SceneContrast,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// Stage 1's scene contrast: while the noise level is above `until`, each step moves the
/// layout the model predicts, `x̂0`, to `x̂0 + scale·(x̂0 − S)`, `S` being the scene's latent
/// (the condition), so that what the layout adds to the scene (the skeletons) is drawn firmer
/// than the model alone would commit to; the steps below `until` are the model's own and clean
/// the strokes up. A scale of 0 is off: the plain sampler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneContrast {
    /// How far past the model's prediction, away from the scene (0: off).
    pub scale: f64,
    /// The noise level (σ, 1 at the start, 0 at the end) below which the steps are plain.
    pub until: f64,
}

impl SceneContrast {
    /// The largest scale accepted: beyond it the layout is mostly amplified noise.
    pub const MAX: f64 = 4.0;

    /// Off: the plain sampler.
    pub fn is_off(&self) -> bool {
        self.scale == 0.0
    }

    /// An error naming the field when the scale is outside `[0, MAX]` or `until` outside
    /// `[0, 1)`.
    pub fn check(&self) -> Result<(), String> {
        if !self.scale.is_finite() || !(0.0..=Self::MAX).contains(&self.scale) {
            return Err(format!(
                "reason_contrast.scale = {}: use 0 to {} (0: off)",
                self.scale,
                Self::MAX
            ));
        }
        if !self.until.is_finite() || !(0.0..1.0).contains(&self.until) {
            return Err(format!(
                "reason_contrast.until = {}: use a noise level from 0 up to, not including, 1",
                self.until
            ));
        }
        Ok(())
    }
}

/// Classifier-free guidance on the prompt, per stage: each step predicts the velocity with the
/// prompt and with the empty prompt (the same condition latent) and moves to
/// `uncond + scale × (cond − uncond)`. Training drops the prompt for this. A scale of 1 is one
/// forward per step, exactly the unguided sampler.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextGuidance {
    /// Stage 1 (the layout, skeletal LoRA).
    pub reason: f64,
    /// Stage 2 (the render, appearance LoRA).
    pub render: f64,
}

impl TextGuidance {
    /// The largest scale accepted: beyond it the guided velocity is mostly extrapolation.
    pub const MAX: f64 = 30.0;

    /// The same scale for both stages.
    pub fn both(scale: f64) -> Self {
        TextGuidance {
            reason: scale,
            render: scale,
        }
    }

    /// These scales with command-line overrides: `both` for the two stages, then `reason` and
    /// `render` for one stage each.
    pub fn overridden(self, both: Option<f64>, reason: Option<f64>, render: Option<f64>) -> Self {
        let base = both.map_or(self, Self::both);
        TextGuidance {
            reason: reason.unwrap_or(base.reason),
            render: render.unwrap_or(base.render),
        }
    }

    /// An error naming the stage when a scale is not finite or outside `[0, MAX]`.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [("reason", self.reason), ("render", self.render)] {
            if !v.is_finite() || !(0.0..=Self::MAX).contains(&v) {
                return Err(format!(
                    "text_guidance.{name} = {v}: use 0 to {} (1: no guidance)",
                    Self::MAX
                ));
            }
        }
        Ok(())
    }
}

impl Default for TextGuidance {
    fn default() -> Self {
        Self::both(1.0)
    }
}

/// The stage-1 prompt cue of tiny models whose base was pretrained on layouts too.
pub const TINY_REASON_PREFIX: &str = "pose layout";

/// `prompt` with the stage-1 cue `prefix` before it (the cue alone for an empty prompt).
pub fn reason_prompt(prefix: &str, prompt: &str) -> String {
    match (prefix.is_empty(), prompt.is_empty()) {
        (true, _) => prompt.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix} {prompt}"),
    }
}

/// The generation method of a model directory (`config.json` field `method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// SkeleGuide: stage 1 reasons a layout (skeletal LoRA), stage 2 renders on it
    /// (appearance LoRA), trained with the three-phase curriculum.
    #[default]
    Skeleguide,
    /// Ablation: scene -> image in one stage with one LoRA, no layout.
    SingleStage,
    /// Ablation: image and layout latents predicted jointly in one pass.
    Implicit,
    /// Ablation: the two stages trained without the joint phase 2.
    Stage1Only,
}

impl ModelConfig {
    /// The `tiny` preset: the CPU model trained by our trainer.
    pub fn tiny() -> Self {
        let dit = DitConfig::tiny();
        let lora = [SKELETAL, APPEARANCE]
            .into_iter()
            .map(|n| {
                (
                    n.to_string(),
                    LoraConfig {
                        rank: 16,
                        alpha: 16.0,
                    },
                )
            })
            .collect();
        let mut text =
            TinyTextConfig::with_vocab(TinyText::build_vocab(&[default_vocabulary().join(" ")], 1));
        text.token_dim = dit.context_in_dim;
        text.pooled_dim = dit.vec_in_dim;
        ModelConfig {
            format: 1,
            preset: "tiny".into(),
            dit,
            resolution: 128,
            steps: crate::sampling::DEFAULT_STEPS,
            guidance: 1.0,
            time_shift: true,
            lora,
            ae: AeSpec::Tiny {
                config: TinyAeConfig::default(),
            },
            text: TextSpec::Tiny { config: text },
            method: Method::Skeleguide,
            reason_prefix: String::new(),
            text_guidance: TextGuidance::default(),
            reason_candidates: 1,
            reason_contrast: SceneContrast::default(),
        }
    }

    /// The prompt stage 1 is given for `prompt`: [`ModelConfig::reason_prefix`] before it.
    pub fn reason_prompt(&self, prompt: &str) -> String {
        reason_prompt(&self.reason_prefix, prompt)
    }

    /// Reads and validates `config.json` in `dir` (format, dimensions, resolution, LoRA sets).
    pub fn load(dir: &Path) -> Result<Self, ModelDirError> {
        let path = dir.join(CONFIG_FILE);
        let text = crate::fsutil::read_text_limited(&path, crate::limits::MAX_CONFIG_BYTES)
            .map_err(|e| ModelDirError::file(&path, format!("cannot read: {e}")))?;
        Self::parse(&text, &path)
    }

    /// Parses and validates the text of a `config.json`; `path` names it in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ModelDirError> {
        let cfg: ModelConfig = serde_json::from_str(text)
            .map_err(|e| ModelDirError::file(path, format!("invalid: {e}")))?;
        if cfg.format != 1 {
            return Err(ModelDirError::file(
                path,
                format!("format {} is not supported (expected 1)", cfg.format),
            ));
        }
        cfg.dit
            .validate()
            .map_err(|e| ModelDirError::file(path, format!("dit: {e}")))?;
        if cfg.resolution < 16 || cfg.resolution % 16 != 0 {
            return Err(ModelDirError::file(
                path,
                format!(
                    "resolution {} must be a positive multiple of 16",
                    cfg.resolution
                ),
            ));
        }
        crate::limits::at_most("resolution", cfg.resolution, crate::limits::MAX_RESOLUTION)
            .map_err(|e| ModelDirError::file(path, e))?;
        let nested = |field: &str, e: crate::model::ModelError| {
            let msg = match e {
                crate::model::ModelError::InvalidConfig(m) => m,
                other => other.to_string(),
            };
            ModelDirError::file(path, format!("{field}: {msg}"))
        };
        if let AeSpec::Tiny { config } = &cfg.ae {
            config.validate().map_err(|e| nested("ae.config", e))?;
        }
        if let TextSpec::Tiny { config } = &cfg.text {
            config.validate().map_err(|e| nested("text.config", e))?;
        }
        cfg.text_guidance
            .check()
            .map_err(|e| ModelDirError::file(path, e))?;
        crate::select::check_candidates("reason_candidates", cfg.reason_candidates)
            .map_err(|e| ModelDirError::file(path, e))?;
        cfg.reason_contrast
            .check()
            .map_err(|e| ModelDirError::file(path, e))?;
        for (name, l) in &cfg.lora {
            if l.rank == 0 || !l.alpha.is_finite() {
                return Err(ModelDirError::file(
                    path,
                    format!("lora.{name}: rank must be at least 1 and alpha finite"),
                ));
            }
            let field = format!("lora.{name}.rank");
            crate::limits::at_most(&field, l.rank, crate::limits::MAX_LORA_RANK)
                .map_err(|e| ModelDirError::file(path, e))?;
        }
        for set in [SKELETAL, APPEARANCE] {
            if !cfg.lora.contains_key(set) {
                return Err(ModelDirError::file(
                    path,
                    format!("lora: the `{set}` set is missing"),
                ));
            }
        }
        Ok(cfg)
    }

    /// Writes this configuration to `config.json` in `dir`, atomically.
    pub fn save(&self, dir: &Path) -> Result<(), ModelDirError> {
        let path = dir.join(CONFIG_FILE);
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| ModelDirError::file(&path, e.to_string()))?;
        crate::fsutil::write_atomic(&path, text.as_bytes())
            .map_err(|e| ModelDirError::file(&path, e.to_string()))
    }

    /// A short id for metadata: preset and config hash.
    pub fn id(&self) -> String {
        format!(
            "{}-{}",
            self.preset,
            &self.dit.hash()[..12.min(self.dit.hash().len())]
        )
    }
}

/// Words of the synthetic scenes' prompts: the starting vocabulary of TinyText (the trainer
/// rebuilds it from its data).
pub fn default_vocabulary() -> Vec<String> {
    const WORDS: &str = "a an the one two three people person persons man woman boy girl child kid \
        men women children in on at by near next to of with and wearing shirt shirts trousers pants jeans \
        red blue green yellow black white orange purple pink grey gray brown \
        standing stands stand walking walks walk sitting sits sit lying lies lie waving waves wave \
        raising raises raise arms arm pointing points point hand hands up \
        chair bench sofa couch bed table floor grass lawn park street plaza room living bedroom \
        road sidewalk square garden inside outside front behind left right";
    WORDS.split_whitespace().map(str::to_string).collect()
}

/// The cheap part of [`check`]: `config.json`, the base's tensor shapes (from its header) and
/// every file the configuration needs present, without reading any weights.
pub fn check_layout(dir: &Path) -> Result<ModelConfig, ModelDirError> {
    if !dir.is_dir() {
        return Err(ModelDirError::file(dir, "model directory not found"));
    }
    let cfg = ModelConfig::load(dir)?;
    let base = dir.join(BASE_FILE);
    check_shapes(&base, &bfl_tensor_shapes(&cfg.dit))?;
    for set in [SKELETAL, APPEARANCE] {
        let p = dir.join(lora_file(set));
        if !p.is_file() {
            return Err(ModelDirError::file(
                &p,
                format!("missing (the `{set}` LoRA set)"),
            ));
        }
    }
    let ae = dir.join(AE_FILE);
    if !ae.is_file() {
        return Err(ModelDirError::file(&ae, "missing (the autoencoder)"));
    }
    match &cfg.text {
        TextSpec::Tiny { .. } => {
            let p = dir.join(TEXT_FILE);
            if !p.is_file() {
                return Err(ModelDirError::file(&p, "missing (the text encoder)"));
            }
        }
        TextSpec::Flux => {
            for sub in ["t5", "clip"] {
                let p = dir.join(sub);
                if !p.is_dir() {
                    return Err(ModelDirError::file(
                        &p,
                        "missing (FluxText needs t5/ and clip/ directories)",
                    ));
                }
            }
        }
    }
    Ok(cfg)
}

/// Checks a model directory: config, every file present and every base tensor's shape.
/// Returns the config.
pub fn check(dir: &Path) -> Result<ModelConfig, ModelDirError> {
    let cfg = check_layout(dir)?;
    // NaN or infinite weights would give a flat image and exit 0: refuse them, once, here.
    let mut weights = vec![dir.join(BASE_FILE), dir.join(AE_FILE)];
    weights.extend([SKELETAL, APPEARANCE].map(|s| dir.join(lora_file(s))));
    if matches!(cfg.text, TextSpec::Tiny { .. }) {
        weights.push(dir.join(TEXT_FILE));
    }
    for p in &weights {
        check_finite(p)?;
    }
    // The PoseInverter is optional, but a broken one is reported now, not at the first inversion.
    let inv = dir.join(INVERTER_FILE);
    if inv.is_file() {
        if let Err(e) = crate::inverter::PoseInverter::load(&inv, &candle_core::Device::Cpu) {
            let msg = match e {
                crate::inverter::InverterError::Weights { msg, .. } => msg,
                e => e.to_string(),
            };
            return Err(ModelDirError::file(&inv, msg));
        }
    }
    Ok(cfg)
}

/// Refuses a safetensors file holding a NaN or an infinity in any float tensor (one pass over
/// its bytes: an exponent of all ones marks them in every IEEE format), naming the tensor.
pub fn check_finite(path: &Path) -> Result<(), ModelDirError> {
    check_finite_in(&map_file(path)?, path)
}

/// A read-only map of a weights file.
fn map_file(path: &Path) -> Result<memmap2::Mmap, ModelDirError> {
    let file = std::fs::File::open(path)
        .map_err(|e| ModelDirError::file(path, format!("cannot open: {e}")))?;
    // SAFETY: read-only map of a file we do not modify while checking it.
    unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| ModelDirError::file(path, format!("cannot map: {e}")))
}

fn deserialize<'a>(
    bytes: &'a [u8],
    path: &Path,
) -> Result<safetensors::SafeTensors<'a>, ModelDirError> {
    safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| ModelDirError::file(path, format!("not a safetensors file: {e}")))
}

/// [`check_finite`] on a safetensors file's bytes; `path` names it in messages.
pub fn check_finite_in(bytes: &[u8], path: &Path) -> Result<(), ModelDirError> {
    use safetensors::Dtype;
    let st = deserialize(bytes, path)?;
    for (name, view) in st.tensors() {
        let data = view.data();
        let bad = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .any(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7f80_0000 == 0x7f80_0000),
            Dtype::F64 => data.chunks_exact(8).any(|b| {
                let v = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                v & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000
            }),
            Dtype::BF16 => data
                .chunks_exact(2)
                .any(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7f80 == 0x7f80),
            Dtype::F16 => data
                .chunks_exact(2)
                .any(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7c00 == 0x7c00),
            _ => false,
        };
        if bad {
            return Err(ModelDirError::file(
                path,
                format!("tensor `{name}` holds NaN or infinite values"),
            ));
        }
    }
    Ok(())
}

/// Compares a safetensors file's header with the expected names and shapes, reading only the
/// header.
pub fn check_shapes(path: &Path, expected: &[(String, Vec<usize>)]) -> Result<(), ModelDirError> {
    check_shapes_in(&map_file(path)?, path, expected)
}

/// [`check_shapes`] on a safetensors file's bytes; `path` names it in messages.
pub fn check_shapes_in(
    bytes: &[u8],
    path: &Path,
    expected: &[(String, Vec<usize>)],
) -> Result<(), ModelDirError> {
    let st = deserialize(bytes, path)?;
    for (name, shape) in expected {
        match st.tensor(name) {
            Ok(t) if t.shape() == shape.as_slice() => {}
            Ok(t) => {
                return Err(ModelDirError::Shape {
                    path: path.display().to_string(),
                    name: name.clone(),
                    expected: shape.clone(),
                    found: t.shape().to_vec(),
                })
            }
            Err(_) => {
                return Err(ModelDirError::Missing {
                    path: path.display().to_string(),
                    name: name.clone(),
                    expected: shape.clone(),
                })
            }
        }
    }
    Ok(())
}

/// Writes a randomly initialised model directory for `preset` (only `tiny` can be initialised
/// from scratch: FLUX weights come from BFL). Used by tests and as the start of training.
pub fn init_random(dir: &Path, preset: &str, seed: u64) -> Result<ModelConfig, ModelDirError> {
    if preset != "tiny" {
        return Err(ModelDirError::file(
            dir,
            format!("preset `{preset}` cannot be initialised randomly; only `tiny` can"),
        ));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| ModelDirError::file(dir, format!("cannot create: {e}")))?;
    let cfg = ModelConfig::tiny();
    let dev = Device::Cpu;
    let weights = random_weights(&cfg.dit, seed, &dev, DType::F32)?;
    save_atomic(&dir.join(BASE_FILE), |tmp| save_weights(&weights, tmp))?;
    let mut sets = LoraSets::new(&cfg.dit, &dev, DType::F32);
    for (i, (name, l)) in cfg.lora.iter().enumerate() {
        let spec = LoraSpec {
            rank: l.rank,
            alpha: l.alpha,
            targets: LoraTarget::ALL.to_vec(),
            seed: seed.wrapping_add(1 + i as u64),
        };
        sets.add(name, &spec)?;
        sets.save(name, dir.join(lora_file(name)))?;
    }
    if let AeSpec::Tiny { config } = &cfg.ae {
        let ae = TinyAe::random(config, seed.wrapping_add(101), &dev)?;
        save_atomic(&dir.join(AE_FILE), |tmp| ae.save(tmp))?;
    }
    if let TextSpec::Tiny { config } = &cfg.text {
        let text = TinyText::random(config, seed.wrapping_add(202), &dev)?;
        save_atomic(&dir.join(TEXT_FILE), |tmp| text.save(tmp))?;
    }
    cfg.save(dir)?;
    let card = format!(
        "# SkeleGuide model `{}` (randomly initialised)\n\nWritten by `skeleguide-train init --preset {preset} --seed {seed}`.\n\
         Untrained: its outputs are noise. Train it with `skeleguide-train` (phase 0, then phases 1-3).\n",
        cfg.id()
    );
    crate::fsutil::write_atomic(&dir.join(CARD_FILE), card.as_bytes())
        .map_err(|e| ModelDirError::file(&dir.join(CARD_FILE), e.to_string()))?;
    Ok(cfg)
}

/// Runs `save` into a temporary sibling, then renames it over `path`.
fn save_atomic(
    path: &Path,
    save: impl FnOnce(&Path) -> Result<(), ModelError>,
) -> Result<(), ModelDirError> {
    let tmp: PathBuf = path.with_extension("safetensors.tmp");
    if let Err(e) = save(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, path)
        .map_err(|e| ModelDirError::file(path, format!("cannot rename into place: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage1_cue_goes_before_the_prompt_and_old_configs_have_none() {
        assert_eq!(reason_prompt("", "a man"), "a man");
        assert_eq!(reason_prompt("pose layout", "a man"), "pose layout a man");
        assert_eq!(reason_prompt("pose layout", ""), "pose layout");
        let mut mc = ModelConfig::tiny();
        let old = serde_json::to_string(&mc).unwrap();
        assert!(
            !old.contains("reason_prefix"),
            "an empty cue is not written"
        );
        assert_eq!(serde_json::from_str::<ModelConfig>(&old).unwrap(), mc);
        mc.reason_prefix = TINY_REASON_PREFIX.into();
        let new = serde_json::to_string(&mc).unwrap();
        assert_eq!(serde_json::from_str::<ModelConfig>(&new).unwrap(), mc);
    }

    #[test]
    fn stage1_candidates_default_to_one_and_are_range_checked_by_name() {
        let mut mc = ModelConfig::tiny();
        let one = serde_json::to_string(&mc).unwrap();
        assert!(
            !one.contains("reason_candidates"),
            "the default is not written"
        );
        assert_eq!(
            ModelConfig::parse(&one, Path::new("c.json"))
                .unwrap()
                .reason_candidates,
            1
        );
        mc.reason_candidates = 4;
        let four = serde_json::to_string(&mc).unwrap();
        assert_eq!(ModelConfig::parse(&four, Path::new("c.json")).unwrap(), mc);
        for bad in [0, crate::select::MAX_CANDIDATES + 1] {
            mc.reason_candidates = bad;
            let text = serde_json::to_string(&mc).unwrap();
            let err = ModelConfig::parse(&text, Path::new("c.json"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("c.json: reason_candidates = {bad}")),
                "{err}"
            );
        }
    }
    #[test]
    fn scene_contrast_defaults_to_off_and_is_range_checked_by_name() {
        let mut mc = ModelConfig::tiny();
        let off = serde_json::to_string(&mc).unwrap();
        assert!(
            !off.contains("reason_contrast"),
            "the default is not written"
        );
        let parsed = ModelConfig::parse(&off, Path::new("c.json")).unwrap();
        assert!(parsed.reason_contrast.is_off());
        mc.reason_contrast = SceneContrast {
            scale: 0.25,
            until: 0.3,
        };
        let on = serde_json::to_string(&mc).unwrap();
        assert_eq!(ModelConfig::parse(&on, Path::new("c.json")).unwrap(), mc);
        for (scale, until, field) in [
            (-0.1, 0.0, "scale = -0.1"),
            (5.0, 0.0, "scale = 5"),
            (0.2, 1.0, "until = 1"),
            (0.2, -0.5, "until = -0.5"),
        ] {
            mc.reason_contrast = SceneContrast { scale, until };
            let text = serde_json::to_string(&mc).unwrap();
            let err = ModelConfig::parse(&text, Path::new("c.json"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("c.json: reason_contrast.{field}")),
                "{err}"
            );
        }
    }
}
