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

use crate::checkpoint::{self, Position};
use crate::config::{Phase0Config, TrainConfig};
use crate::data::manifest::Manifest;
use crate::log::{self, RunLog, StepRecord};
use crate::optim::{AdamW, AdamWParams, TrainRng};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use image::{imageops, GrayImage, RgbImage};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use skeleguide_engine::model::{
    image_ids, joint_ids, pack_latents, random_weights, save_weights, text_ids, Autoencoder,
    Condition, DitInputs, FluxAe, FluxText, LoraSets, LoraSpec, LoraTarget, MmDit, Mode,
    ModelError, TextEncoder, TinyAe, TinyAeConfig, TinyText, TinyTextConfig,
};
use skeleguide_engine::modeldir::{
    self, AeSpec, LoraConfig, Method, ModelConfig, TextSpec, APPEARANCE, SKELETAL,
};
use skeleguide_engine::sampling;
use std::collections::HashMap;
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
}

/// What one phase measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhaseSummary {
    pub phase: String,
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

const AE_CONFIG_FILE: &str = "ae-config.json";

/// The phases a method runs, in order.
pub fn phases_of(method: Method, with_phase0: bool) -> Vec<&'static str> {
    let mut v = Vec::new();
    if with_phase0 {
        v.extend(["0-ae", "0-dit"]);
    }
    match method {
        Method::Skeleguide => v.extend(["1", "2", "3"]),
        Method::Stage1Only => v.extend(["1", "3"]),
        Method::SingleStage | Method::Implicit => v.push("3"),
    }
    v
}

/// The configured steps of LoRA phase `phase` (`"1"`, `"2"` or `"3"`).
pub fn lora_steps(cfg: &TrainConfig, phase: &str) -> usize {
    match phase {
        "1" => cfg.phase1.steps,
        "2" => cfg.phase2.steps,
        _ => cfg.phase3.steps,
    }
}

/// A config's LoRA step budget: the steps of every LoRA phase its method runs (what the
/// ablation holds equal across methods).
pub fn lora_budget(cfg: &TrainConfig) -> usize {
    phases_of(cfg.method, false)
        .iter()
        .map(|p| lora_steps(cfg, p))
        .sum()
}

// ------------------------------------------------------------------ data

/// One example at the model's working size.
struct Example {
    prompt: String,
    scene: RgbImage,
    layout: RgbImage,
    image: RgbImage,
}

/// The working size for a `w`×`h` image (as `Pipeline::working_size`).
fn working_size(w: u32, h: u32, resolution: u32, unit: u32) -> (u32, u32) {
    let s = resolution as f64 / w.max(h) as f64;
    let side = |v: u32| (((v as f64 * s) / unit as f64).round() as u32).max(1) * unit;
    (side(w), side(h))
}

fn fit(img: &RgbImage, (w, h): (u32, u32)) -> RgbImage {
    if img.dimensions() == (w, h) {
        img.clone()
    } else {
        imageops::resize(img, w, h, imageops::FilterType::Triangle)
    }
}

fn load_examples(dir: &Path, limit: usize, resolution: u32, unit: u32) -> Result<Vec<Example>> {
    let m = Manifest::open(dir).map_err(|e| TrainError::Data(e.to_string()))?;
    if m.records.is_empty() {
        return Err(TrainError::Data(format!(
            "{}: the manifest has no records",
            m.path.display()
        )));
    }
    let n = if limit == 0 {
        m.records.len()
    } else {
        limit.min(m.records.len())
    };
    let mut out: Vec<Example> = Vec::with_capacity(n);
    let mut size = None;
    for r in m.records.iter().take(n) {
        let s = r.load().map_err(|e| TrainError::Data(e.to_string()))?;
        let ws = working_size(s.image.width(), s.image.height(), resolution, unit);
        match size {
            None => size = Some(ws),
            Some(prev) if prev != ws => {
                return Err(TrainError::Data(format!(
                    "{}:{}: image: works at {}x{} but earlier records work at {}x{}; a training set needs one aspect ratio",
                    m.path.display(),
                    r.line,
                    ws.0,
                    ws.1,
                    prev.0,
                    prev.1
                )))
            }
            _ => {}
        }
        let layout = skeleguide_engine::pose::draw_layout(Some(&s.background), &s.poses);
        out.push(Example {
            prompt: s.prompt,
            scene: fit(&s.background, ws),
            layout: fit(&layout, ws),
            image: fit(&s.image, ws),
        });
    }
    Ok(out)
}

fn images_tensor(imgs: &[&RgbImage], device: &Device) -> Result<Tensor> {
    Ok(crate::ae::to_tensor(imgs)?.to_device(device)?)
}

/// Latents of images, encoded in chunks, packed into tokens: `(N, tokens, 4C)`.
fn encode_all(
    ae: &dyn Autoencoder,
    imgs: &[&RgbImage],
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    // Small chunks keep the CPU's working set in cache; on a GPU each chunk is a round of
    // kernel launches, so larger chunks cut the launch overhead.
    let chunk = if device.is_cpu() { 16 } else { 256 };
    let mut parts = Vec::new();
    for chunk in imgs.chunks(chunk) {
        let lat = ae.encode(&images_tensor(chunk, device)?.to_dtype(dtype)?)?;
        parts.push(pack_latents(&lat.to_dtype(dtype)?)?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// The cached latents of a phase (frozen autoencoder).
struct Latents {
    scene: Tensor,
    layout: Tensor,
    image: Tensor,
    /// Token grid of the latents.
    th: usize,
    tw: usize,
}

fn cache_latents(
    ae: &dyn Autoencoder,
    ex: &[Example],
    device: &Device,
    dtype: DType,
) -> Result<Latents> {
    let scene = encode_all(
        ae,
        &ex.iter().map(|e| &e.scene).collect::<Vec<_>>(),
        device,
        dtype,
    )?;
    let layout = encode_all(
        ae,
        &ex.iter().map(|e| &e.layout).collect::<Vec<_>>(),
        device,
        dtype,
    )?;
    let image = encode_all(
        ae,
        &ex.iter().map(|e| &e.image).collect::<Vec<_>>(),
        device,
        dtype,
    )?;
    let f = ae.downsample() * 2;
    let (w, h) = ex[0].image.dimensions();
    Ok(Latents {
        scene,
        layout,
        image,
        th: h as usize / f,
        tw: w as usize / f,
    })
}

/// Text features per prompt (frozen encoder), plus the empty prompt, each also in its
/// stage-1 form (the model's `reason_prefix` before it); both maps are keyed by the plain prompt.
struct TextCache {
    plain: HashMap<String, (Tensor, Tensor)>,
    reason: HashMap<String, (Tensor, Tensor)>,
}

impl TextCache {
    fn new(text: &dyn TextEncoder, ex: &[Example], dtype: DType, mc: &ModelConfig) -> Result<Self> {
        let encode = |p: &str| -> Result<(Tensor, Tensor)> {
            let f = text.encode(&[p])?;
            Ok((f.tokens.to_dtype(dtype)?, f.pooled.to_dtype(dtype)?))
        };
        let (mut plain, mut reason) = (HashMap::new(), HashMap::new());
        for p in ex
            .iter()
            .map(|e| e.prompt.as_str())
            .chain(std::iter::once(""))
        {
            if plain.contains_key(p) {
                continue;
            }
            let f = encode(p)?;
            let r = if mc.reason_prefix.is_empty() {
                f.clone()
            } else {
                encode(&mc.reason_prompt(p))?
            };
            plain.insert(p.to_string(), f);
            reason.insert(p.to_string(), r);
        }
        Ok(Self { plain, reason })
    }

    /// The features of `prompts`, in their stage-1 form with `reason`.
    fn batch(&self, prompts: &[&str], reason: bool) -> Result<(Tensor, Tensor)> {
        let feats = if reason { &self.reason } else { &self.plain };
        let mut t = Vec::with_capacity(prompts.len());
        let mut y = Vec::with_capacity(prompts.len());
        for p in prompts {
            let (a, b) = feats
                .get(*p)
                .ok_or_else(|| TrainError::Data(format!("prompt {p:?} is not cached")))?;
            t.push(a.clone());
            y.push(b.clone());
        }
        Ok((Tensor::cat(&t, 0)?, Tensor::cat(&y, 0)?))
    }
}

// ------------------------------------------------------------------ per-step randomness

/// The random choices of one example in one step, drawn in a fixed order.
struct Draw {
    index: usize,
    drop_prompt: bool,
    drop_cond: bool,
    sigma: f64,
}

fn sample_sigma(rng: &mut TrainRng, cfg: &TrainConfig, shift_tokens: Option<usize>) -> f64 {
    let u = rng.normal();
    let s = 1.0 / (1.0 + (-(cfg.optim.sigma_logit_mean + cfg.optim.sigma_logit_std * u)).exp());
    match shift_tokens {
        Some(l) => sampling::time_shift(sampling::shift_mu(l), s),
        None => s,
    }
}

fn draws(
    rng: &mut TrainRng,
    cfg: &TrainConfig,
    n_examples: usize,
    shift_tokens: Option<usize>,
) -> Vec<Draw> {
    (0..cfg.batch)
        .map(|_| {
            let index = rng.below(n_examples);
            let drop_prompt = rng.f64() < cfg.optim.prompt_dropout;
            let drop_cond = rng.f64() < cfg.optim.cond_dropout;
            let sigma = sample_sigma(rng, cfg, shift_tokens);
            Draw {
                index,
                drop_prompt,
                drop_cond,
                sigma,
            }
        })
        .collect()
}

/// The fixed evaluation batch: the first examples, σ spread over (0, 1), no dropout.
fn eval_draws(cfg: &TrainConfig, n_examples: usize) -> Vec<Draw> {
    let b = cfg.batch.min(n_examples).max(1);
    (0..b)
        .map(|i| Draw {
            index: i,
            drop_prompt: false,
            drop_cond: false,
            sigma: (i as f64 + 0.5) / b as f64,
        })
        .collect()
}

fn noise_like(rng: &mut TrainRng, t: &Tensor) -> Result<Tensor> {
    let v = rng.normals(t.elem_count());
    Ok(Tensor::from_vec(v, t.dims(), &Device::Cpu)?
        .to_dtype(t.dtype())?
        .to_device(t.device())?)
}

fn gather(t: &Tensor, d: &[Draw]) -> Result<Tensor> {
    let idx: Vec<u32> = d.iter().map(|d| d.index as u32).collect();
    let idx = Tensor::new(idx.as_slice(), t.device())?;
    Ok(t.index_select(&idx, 0)?)
}

fn col(v: Vec<f32>, device: &Device, dtype: DType) -> Result<Tensor> {
    let n = v.len();
    Ok(Tensor::from_vec(v, (n, 1, 1), device)?.to_dtype(dtype)?)
}

/// `(B, 1, 1)` keep mask of the condition.
fn cond_keep(d: &[Draw], device: &Device, dtype: DType) -> Result<Tensor> {
    col(
        d.iter()
            .map(|d| if d.drop_cond { 0.0 } else { 1.0 })
            .collect(),
        device,
        dtype,
    )
}

// ------------------------------------------------------------------ the flow-matching loss

/// Everything a DiT call needs besides the noisy tokens and the condition.
#[derive(Clone)]
struct StepCtx {
    txt: Tensor,
    y: Tensor,
    txt_ids: Tensor,
    img_ids: Tensor,
    guidance: Option<Tensor>,
    sigma: Tensor,
}

impl StepCtx {
    fn inputs<'a>(&'a self, img: &'a Tensor, img_ids: &'a Tensor) -> DitInputs<'a> {
        DitInputs {
            img,
            img_ids,
            txt: &self.txt,
            txt_ids: &self.txt_ids,
            timesteps: &self.sigma,
            y: &self.y,
            guidance: self.guidance.as_ref(),
        }
    }
}

/// FM loss of `dit` on clean tokens `x` with `noise`: MSE between `v̂(x_σ)` and `noise − x`.
fn fm_loss(
    dit: &MmDit,
    ctx: &StepCtx,
    x: &Tensor,
    noise: &Tensor,
    img_ids: &Tensor,
    cond: Condition,
) -> Result<Tensor> {
    let s = ctx.sigma.unsqueeze(1)?.unsqueeze(2)?;
    let xs = (x.broadcast_mul(&(1.0 - &s)?)? + noise.broadcast_mul(&s)?)?;
    let v = dit.forward(&ctx.inputs(&xs, img_ids), cond, Mode::Train)?;
    let target = (noise - x)?;
    Ok((v - target)?.sqr()?.mean_all()?)
}

/// Reconstruction MSE of `ae` on `x` (phase 0-ae's fixed-batch loss).
fn ae_eval_mse(ae: &TinyAe, x: &Tensor) -> Result<f64> {
    scalar(&(ae.forward_train(x)?.detach() - x)?.sqr()?.mean_all()?)
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()? as f64)
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
    std::fs::create_dir_all(&args.out).map_err(|e| io_err(&args.out, e))?;
    let mdir = model_dir(&args.out);
    std::fs::create_dir_all(&mdir).map_err(|e| io_err(&mdir, e))?;
    // CUDA when the engine is built with it (FLUX), else the CPU; the tiny preset runs in f32,
    // FLUX in the engine's default dtype for the device (bf16 on CUDA).
    let device = skeleguide_engine::model::default_device()?;
    let dtype = if cfg.preset == "tiny" {
        DType::F32
    } else {
        skeleguide_engine::model::default_dtype(&device)
    };
    let with0 = cfg.phase0.is_some() && cfg.base_model.is_none();
    let all = phases_of(cfg.method, with0);
    let selected: Vec<&str> = match args.phase {
        PhaseSel::All => all.clone(),
        PhaseSel::One(0) => {
            if !with0 {
                return Err(TrainError::Config(
                    "--phase 0: this config has no phase 0 (only the tiny preset without base_model trains its base)".into(),
                ));
            }
            vec!["0-ae", "0-dit"]
        }
        PhaseSel::One(p) => {
            let name = match p {
                1 => "1",
                2 => "2",
                3 => "3",
                _ => {
                    return Err(TrainError::Config(format!(
                        "--phase {p}: must be 0, 1, 2, 3 or all"
                    )))
                }
            };
            if !all.contains(&name) {
                return Err(TrainError::Config(format!(
                    "--phase {p}: method `{}` has no phase {p} (its phases: {})",
                    method_name(cfg.method),
                    all.join(", ")
                )));
            }
            vec![name]
        }
    };
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
    let log = match &ckpt {
        Some(c) => RunLog::resume(&args.out, &c.pos.phase, c.pos.step),
        None => RunLog::starting_at(&args.out, selected.first().copied().unwrap_or("0-ae")),
    }
    .map_err(|e| io_err(&args.out.join(log::LOG_FILE), e))?;

    let data_dir = match args.data.clone().or_else(|| cfg.data.dir.clone()) {
        Some(d) => d,
        None => synth_data(&args.out, cfg)?,
    };
    let (resolution, unit) = match &cfg.base_model {
        Some(b) => {
            let mc = ModelConfig::load(b)?;
            (mc.resolution, 16)
        }
        None => (ModelConfig::tiny().resolution, 16),
    };
    let examples = load_examples(&data_dir, cfg.data.limit, resolution, unit)?;
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
    };
    let mut summaries = Vec::new();
    for phase in selected {
        let resume_here = match &ckpt {
            Some(c) => {
                let (cr, pr) = (log::phase_rank(&c.pos.phase), log::phase_rank(phase));
                if pr < cr {
                    continue;
                }
                if pr == cr {
                    Some(c)
                } else {
                    None
                }
            }
            None => None,
        };
        let s = match phase {
            "0-ae" => ctx.phase0_ae(resume_here)?,
            "0-dit" => ctx.phase0_dit(resume_here)?,
            p => ctx.lora_phase(p, resume_here)?,
        };
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
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    crate::data::write_dataset(&dir, &opts, &|| {}).map_err(|e| TrainError::Data(e.to_string()))?;
    Ok(dir)
}

fn bar(show: bool, phase: &str, steps: usize, done: usize) -> ProgressBar {
    let b = ProgressBar::new(steps as u64);
    if !show {
        b.set_draw_target(ProgressDrawTarget::hidden());
    }
    b.set_style(
        ProgressStyle::with_template(&format!(
            "phase {phase:>5} [{{bar:30}}] {{pos}}/{{len}} {{elapsed_precise}} eta {{eta}} {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
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

fn phase_seed(seed: u64, phase: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in phase.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
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

    /// The bookkeeping after every optimiser step of every phase: the JSONL record (a
    /// non-finite loss stops the run), the progress bar and the periodic checkpoint.
    fn end_step(
        &mut self,
        phase: &str,
        done: StepDone,
        pb: &ProgressBar,
        rng: &TrainRng,
        opt: &AdamW,
    ) -> Result<()> {
        let StepDone {
            step,
            steps,
            losses,
            grad_norm,
            secs,
            batch,
        } = done;
        let r = StepRecord {
            phase: phase.to_string(),
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
        let p = self.out.join(log::LOG_FILE);
        self.log.push(r).map_err(|e| io_err(&p, e))?;
        pb.set_position(step as u64);
        pb.set_message(format!("loss {:.5}", losses.0));
        if step % self.cfg.checkpoint_every == 0 && step < steps {
            self.checkpoint(phase, step, rng, opt)?;
        }
        Ok(())
    }

    fn checkpoint(&self, phase: &str, step: usize, rng: &TrainRng, opt: &AdamW) -> Result<()> {
        checkpoint::save(
            &self.out,
            &Position {
                phase: phase.to_string(),
                step,
            },
            rng,
            opt,
            &checkpoint::shaping_fields(self.cfg),
        )?;
        self.log
            .plot(&self.out)
            .map_err(|e| io_err(&self.out.join(log::CURVE_FILE), e))
    }

    // -------------------------------------------------------------- phase 0: autoencoder

    /// Autoencoder crops from the examples' images, scenes and layouts (a third each), and
    /// their loss weights when `skeleton_weight > 0`: a layout's skeleton pixels (where it
    /// differs from its scene) count `1 + skeleton_weight` times.
    fn ae_crops(
        &self,
        rng: &mut TrainRng,
        batch: usize,
        crop: u32,
        skeleton_weight: f32,
    ) -> Result<crate::ae::AeBatch> {
        let n = self.examples.len();
        let mut picked = Vec::with_capacity(batch);
        let mut drawn = Vec::with_capacity(batch);
        for _ in 0..batch {
            let i = rng.below(3 * n);
            let e = &self.examples[i / 3];
            let img = match i % 3 {
                0 => &e.image,
                1 => &e.scene,
                _ => &e.layout,
            };
            let (w, h) = img.dimensions();
            let (cw, ch) = (crop.min(w) / 8 * 8, crop.min(h) / 8 * 8);
            let x = rng.below((w - cw + 1) as usize) as u32 / 8 * 8;
            let y = rng.below((h - ch + 1) as usize) as u32 / 8 * 8;
            let cut = |im: &RgbImage| imageops::crop_imm(im, x, y, cw, ch).to_image();
            let crop = cut(img);
            // A layout crop: its drawn pixels against the same crop of its scene.
            drawn.push((i % 3 == 2).then(|| crate::ae::drawn_pixels(&crop, &cut(&e.scene))));
            picked.push(crop);
        }
        let x = images_tensor(&picked.iter().collect::<Vec<_>>(), &self.device)?;
        if skeleton_weight <= 0.0 {
            return Ok((x, None));
        }
        let (w, h) = picked[0].dimensions();
        let refs: Vec<Option<&GrayImage>> = drawn.iter().map(|d| d.as_ref()).collect();
        let weights =
            crate::ae::loss_weights(&refs, w, h, skeleton_weight)?.to_device(&self.device)?;
        Ok((x, Some(weights)))
    }

    fn phase0_ae(&mut self, resume: Option<&checkpoint::Checkpoint>) -> Result<PhaseSummary> {
        let p0 = self.p0()?.clone();
        if let Some(src) = &p0.ae_from {
            return self.adopt_ae(src);
        }
        let phase = "0-ae";
        let ae_cfg = p0.ae.clone().unwrap_or_default();
        let vm = TinyAe::seeded_varmap(&ae_cfg, self.cfg.seed, &self.device)?;
        let model = TinyAe::new(
            VarBuilder::from_varmap(&vm, DType::F32, &self.device),
            &ae_cfg,
        )?;
        let mut vars: Vec<(String, Var)> = vm
            .data()
            .lock()
            .map_err(|_| TrainError::Config("poisoned var map".into()))?
            .iter()
            .map(|(k, v)| (format!("ae.{k}"), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut opt = AdamW::new(
            vars,
            AdamWParams {
                weight_decay: 0.0,
                ..adam_params(self.cfg, p0.ae_lr)
            },
        )?;
        let mut rng = TrainRng(phase_seed(self.cfg.seed, phase));
        let mut start = 0;
        if let Some(c) = resume {
            c.restore(&mut opt, &self.out)?;
            rng = c.rng.clone();
            start = c.pos.step;
        }
        let eval_x = self.ae_eval_images()?;
        let eval = |m: &TinyAe| ae_eval_mse(m, &eval_x);
        let eval_before = eval(&model)?;
        let steps = p0.ae_steps;
        let pb = bar(self.progress, phase, steps, start);
        let t_phase = Instant::now();
        for step in start..steps {
            let t0 = Instant::now();
            // The schedule of `train_tiny_ae`: 5% linear warm-up, cosine decay to lr/10.
            let frac = step as f64 / steps.max(1) as f64;
            opt.params.lr =
                p0.ae_lr * skeleguide_engine::model::tiny_ae::lr_factor(step, steps, frac);
            let (x, weights) =
                self.ae_crops(&mut rng, p0.ae_batch, p0.ae_crop, p0.ae_skeleton_weight)?;
            let loss = skeleguide_engine::model::tiny_ae::weighted_mse(
                &model.forward_train(&x)?,
                &x,
                weights.as_ref(),
            )?;
            let grads = loss.backward()?;
            // Clipped like the other phases. Clipping does not stop Adam from diverging at a
            // high lr (phase0.ae_lr ≤ 1.5e-3 does); it tempers single outlier batches.
            let gn = opt.step(&grads, self.cfg.optim.grad_clip)?;
            let l = scalar(&loss)?;
            let secs = t0.elapsed().as_secs_f64();
            let done = StepDone {
                step: step + 1,
                steps,
                losses: (l, None, None),
                grad_norm: gn,
                secs,
                batch: p0.ae_batch,
            };
            self.end_step(phase, done, &pb, &rng, &opt)?;
        }
        pb.finish_and_clear();
        let eval_after = eval(&model)?;
        // Freeze: plain tensors, latent statistics for the DiT (zero mean, unit variance).
        let params: HashMap<String, Tensor> = model
            .parameters()
            .iter()
            .map(|(k, t)| Ok((k.clone(), t.copy()?.detach())))
            .collect::<Result<_>>()?;
        let frozen = TinyAe::from_tensors(params.clone(), &ae_cfg, &self.device)?;
        let stat_imgs: Vec<&RgbImage> = self
            .examples
            .iter()
            .take(32)
            .flat_map(|e| [&e.image, &e.scene])
            .collect();
        let (mean, std) = skeleguide_engine::model::tiny_ae::latent_stats(
            &frozen,
            &images_tensor(&stat_imgs, &self.device)?,
        )?;
        let mut final_cfg = ae_cfg.clone();
        final_cfg.shift_factor = mean;
        final_cfg.scale_factor = 1.0 / std.max(1e-6);
        let mdir = model_dir(&self.out);
        let ae_path = mdir.join(modeldir::AE_FILE);
        let tmp = ae_path.with_extension("safetensors.tmp");
        frozen.save(&tmp)?;
        std::fs::rename(&tmp, &ae_path).map_err(|e| io_err(&ae_path, e))?;
        let cfg_path = self.out.join(AE_CONFIG_FILE);
        let text = serde_json::to_string_pretty(&final_cfg).map_err(|e| io_err(&cfg_path, e))?;
        skeleguide_engine::fsutil::write_atomic(&cfg_path, text.as_bytes())
            .map_err(|e| io_err(&cfg_path, e))?;
        self.checkpoint(phase, steps, &rng, &opt)?;
        let secs = t_phase.elapsed().as_secs_f64();
        Ok(PhaseSummary {
            phase: phase.into(),
            steps,
            steps_run: steps - start.min(steps),
            seconds: secs,
            samples_per_s: ((steps - start.min(steps)) * p0.ae_batch) as f64 / secs.max(1e-9),
            eval_before,
            eval_after,
        })
    }

    /// Phase 0-ae's fixed evaluation images: the first examples' whole images.
    fn ae_eval_images(&self) -> Result<Tensor> {
        let imgs: Vec<&RgbImage> = self.examples.iter().take(4).map(|e| &e.image).collect();
        images_tensor(&imgs, &self.device)
    }

    /// Phase 0-ae with `phase0.ae_from`: the model directory `src`'s tiny autoencoder, weights
    /// and latent statistics, copied unchanged into the run.
    fn adopt_ae(&mut self, src: &Path) -> Result<PhaseSummary> {
        let t0 = Instant::now();
        let mc = ModelConfig::load(src)?;
        let AeSpec::Tiny { config: ae_cfg } = &mc.ae else {
            return Err(TrainError::Config(format!(
                "phase0.ae_from = {}: its autoencoder is not the tiny one",
                src.display()
            )));
        };
        let from = src.join(modeldir::AE_FILE);
        let ae = TinyAe::load(&from, ae_cfg, &self.device)?;
        let mse = ae_eval_mse(&ae, &self.ae_eval_images()?)?;
        let ae_path = model_dir(&self.out).join(modeldir::AE_FILE);
        let tmp = ae_path.with_extension("safetensors.tmp");
        std::fs::copy(&from, &tmp).map_err(|e| io_err(&from, e))?;
        std::fs::rename(&tmp, &ae_path).map_err(|e| io_err(&ae_path, e))?;
        let cfg_path = self.out.join(AE_CONFIG_FILE);
        let text = serde_json::to_string_pretty(ae_cfg).map_err(|e| io_err(&cfg_path, e))?;
        skeleguide_engine::fsutil::write_atomic(&cfg_path, text.as_bytes())
            .map_err(|e| io_err(&cfg_path, e))?;
        Ok(PhaseSummary {
            phase: "0-ae".into(),
            steps: 0,
            steps_run: 0,
            seconds: t0.elapsed().as_secs_f64(),
            samples_per_s: 0.0,
            eval_before: mse,
            eval_after: mse,
        })
    }

    // -------------------------------------------------------------- phase 0: base DiT

    /// The model config of a tiny run: its data's vocabulary, the trained AE's latent
    /// statistics, the configured LoRA rank and the method.
    fn tiny_model_config(&self) -> Result<ModelConfig> {
        let mut mc = ModelConfig::tiny();
        let cfg_path = self.out.join(AE_CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| io_err(&cfg_path, format!("cannot read (run phase 0 first): {e}")))?;
        let ae_cfg: TinyAeConfig = serde_json::from_str(&text).map_err(|e| io_err(&cfg_path, e))?;
        // The DiT packs 2×2 latent patches into one token.
        mc.dit.in_channels = 4 * ae_cfg.latent_channels;
        mc.ae = AeSpec::Tiny { config: ae_cfg };
        let mut texts: Vec<String> = self.examples.iter().map(|e| e.prompt.clone()).collect();
        texts.push(modeldir::default_vocabulary().join(" "));
        if self.p0()?.layout_share > 0.0 {
            mc.reason_prefix = modeldir::TINY_REASON_PREFIX.to_string();
            texts.push(mc.reason_prefix.clone());
        }
        let mut tc = TinyTextConfig::with_vocab(TinyText::build_vocab(&texts, 1));
        tc.token_dim = mc.dit.context_in_dim;
        tc.pooled_dim = mc.dit.vec_in_dim;
        mc.text = TextSpec::Tiny { config: tc };
        self.apply_run_settings(&mut mc);
        Ok(mc)
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

    fn phase0_dit(&mut self, resume: Option<&checkpoint::Checkpoint>) -> Result<PhaseSummary> {
        let p0 = self.p0()?.clone();
        let phase = "0-dit";
        let (device, dtype, cfg) = (self.device.clone(), self.dtype, self.cfg);
        let mc = self.tiny_model_config()?;
        let (AeSpec::Tiny { config: ae_cfg }, TextSpec::Tiny { config: text_cfg }) =
            (&mc.ae, &mc.text)
        else {
            return Err(TrainError::Config(
                "phase 0 needs the tiny autoencoder and text encoder".into(),
            ));
        };
        let mdir = model_dir(&self.out);
        let ae = TinyAe::load(&mdir.join(modeldir::AE_FILE), ae_cfg, &self.device)?;
        let lat = self.latents(&ae)?;
        let dit_cfg = mc.dit.clone();
        let dit_vars: Vec<(String, Var)> = {
            let w = random_weights(&dit_cfg, self.cfg.seed, &self.device, self.dtype)?;
            let mut v = w
                .into_iter()
                .map(|(k, t)| Ok((k, Var::from_tensor(&t)?)))
                .collect::<Result<Vec<_>>>()?;
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let text_vm =
            TinyText::seeded_varmap(text_cfg, self.cfg.seed.wrapping_add(202), &self.device)?;
        let text = TinyText::new(
            VarBuilder::from_varmap(&text_vm, DType::F32, &self.device),
            text_cfg,
        )?;
        let mut text_vars: Vec<(String, Var)> = text_vm
            .data()
            .lock()
            .map_err(|_| TrainError::Config("poisoned var map".into()))?
            .iter()
            .map(|(k, v)| (format!("text.{k}"), v.clone()))
            .collect();
        text_vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut all: Vec<(String, Var)> = dit_vars
            .iter()
            .map(|(k, v)| (format!("dit.{k}"), v.clone()))
            .collect();
        all.extend(text_vars);
        let mut opt = AdamW::new(all, adam_params(self.cfg, p0.dit_lr))?;
        let mut rng = TrainRng(phase_seed(self.cfg.seed, phase));
        let mut start = 0;
        if let Some(c) = resume {
            c.restore(&mut opt, &self.out)?;
            rng = c.rng.clone();
            start = c.pos.step;
        }
        let build = || -> Result<MmDit> {
            let map: HashMap<String, Tensor> = dit_vars
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                .collect();
            Ok(MmDit::new_trainable(
                &dit_cfg,
                VarBuilder::from_tensors(map, dtype, &device),
            )?)
        };
        let shift = mc.time_shift.then_some(lat.th * lat.tw);
        let n = self.examples.len();
        let examples = Arc::clone(&self.examples);
        // Photos, then layouts: row `i` or `n + i` of one tensor.
        let layout_share = p0.layout_share;
        let photos_and_layouts = if layout_share > 0.0 {
            Tensor::cat(&[&lat.image, &lat.layout], 0)?
        } else {
            lat.image.clone()
        };
        let loss_of =
            |dit: &MmDit, d: &[Draw], rng: &mut TrainRng, ex: &[Example]| -> Result<Tensor> {
                // Which examples are layouts: drawn after the step's other choices.
                let is_layout: Vec<bool> = d
                    .iter()
                    .map(|_| layout_share > 0.0 && rng.f64() < layout_share)
                    .collect();
                let prompts: Vec<String> = d
                    .iter()
                    .zip(&is_layout)
                    .map(|(d, &lay)| {
                        let p = if d.drop_prompt {
                            ""
                        } else {
                            ex[d.index].prompt.as_str()
                        };
                        if lay {
                            mc.reason_prompt(p)
                        } else {
                            p.to_string()
                        }
                    })
                    .collect();
                let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
                let f = text.encode(&prompts)?;
                let b = d.len();
                let rows: Vec<u32> = d
                    .iter()
                    .zip(&is_layout)
                    .map(|(d, &lay)| (d.index + if lay { n } else { 0 }) as u32)
                    .collect();
                let x =
                    photos_and_layouts.index_select(&Tensor::new(rows.as_slice(), &device)?, 0)?;
                let noise = noise_like(rng, &x)?;
                let ctx = StepCtx {
                    txt_ids: text_ids(b, f.tokens.dim(1)?, &device, dtype)?,
                    img_ids: image_ids(b, lat.th, lat.tw, &device, dtype)?,
                    txt: f.tokens,
                    y: f.pooled,
                    guidance: guidance(&dit_cfg, b, &device, dtype)?,
                    sigma: Tensor::from_vec(
                        d.iter().map(|d| d.sigma as f32).collect::<Vec<_>>(),
                        b,
                        &device,
                    )?,
                };
                fm_loss(dit, &ctx, &x, &noise, &ctx.img_ids, Condition::None)
            };
        let eval = |rng_seed: u64| -> Result<f64> {
            let dit = build()?;
            let mut r = TrainRng(rng_seed);
            scalar(&loss_of(&dit, &eval_draws(cfg, n), &mut r, &examples)?.detach())
        };
        let eval_seed = phase_seed(cfg.seed ^ 0xE7A1, phase);
        let eval_before = eval(eval_seed)?;
        let steps = p0.dit_steps;
        let pb = bar(self.progress, phase, steps, start);
        let t_phase = Instant::now();
        for step in start..steps {
            let t0 = Instant::now();
            let dit = build()?;
            let d = draws(&mut rng, cfg, n, shift);
            let loss = loss_of(&dit, &d, &mut rng, &examples)?;
            let grads = loss.backward()?;
            let gn = opt.step(&grads, self.cfg.optim.grad_clip)?;
            let l = scalar(&loss)?;
            let secs = t0.elapsed().as_secs_f64();
            let done = StepDone {
                step: step + 1,
                steps,
                losses: (l, None, None),
                grad_norm: gn,
                secs,
                batch: self.cfg.batch,
            };
            self.end_step(phase, done, &pb, &rng, &opt)?;
        }
        pb.finish_and_clear();
        let eval_after = eval(eval_seed)?;
        // Freeze and write the complete model directory (fresh LoRA sets).
        let weights: HashMap<String, Tensor> = dit_vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        let base = mdir.join(modeldir::BASE_FILE);
        let tmp = base.with_extension("safetensors.tmp");
        save_weights(&weights, &tmp)?;
        std::fs::rename(&tmp, &base).map_err(|e| io_err(&base, e))?;
        let tpath = mdir.join(modeldir::TEXT_FILE);
        let tmp = tpath.with_extension("safetensors.tmp");
        let frozen_text = TinyText::from_tensors(
            text.parameters()
                .iter()
                .map(|(k, t)| (k.clone(), t.detach()))
                .collect(),
            text_cfg,
            &self.device,
        )?;
        frozen_text.save(&tmp)?;
        std::fs::rename(&tmp, &tpath).map_err(|e| io_err(&tpath, e))?;
        let mut sets = LoraSets::new(&dit_cfg, &self.device, self.dtype);
        for set in [SKELETAL, APPEARANCE] {
            self.add_fresh(&mut sets, set)?;
            sets.save(set, mdir.join(modeldir::lora_file(set)))?;
        }
        self.finish_model_dir(
            &mc,
            &format!("phase 0 (base DiT + text encoder, {steps} steps)"),
        )?;
        self.checkpoint(phase, steps, &rng, &opt)?;
        let secs = t_phase.elapsed().as_secs_f64();
        let run = steps - start.min(steps);
        Ok(PhaseSummary {
            phase: phase.into(),
            steps,
            steps_run: run,
            seconds: secs,
            samples_per_s: (run * self.cfg.batch) as f64 / secs.max(1e-9),
            eval_before,
            eval_after,
        })
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

    /// Writes `config.json` and `MODEL_CARD.md` of the output model directory.
    fn finish_model_dir(&self, mc: &ModelConfig, done: &str) -> Result<()> {
        let mdir = model_dir(&self.out);
        mc.save(&mdir)?;
        let mut card = format!(
            "# SkeleGuide model `{}` (method `{}`)\n\nTrained by `skeleguide-train train` on {} examples.\n\n\
             Last completed: {done}. Wall time so far in this process: {:.0} s.\n\n| phase | steps | mean loss (last 20 steps) |\n|---|---|---|\n",
            mc.id(),
            method_name(self.cfg.method),
            self.examples.len(),
            self.started.elapsed().as_secs_f64()
        );
        let mut phases: Vec<&str> = Vec::new();
        for r in &self.log.records {
            if !phases.contains(&r.phase.as_str()) {
                phases.push(&r.phase);
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
        card.push_str(&format!(
            "\nTraining config: lr {} (AdamW, constant), batch {}, grad clip {}, prompt dropout {}, condition dropout {}, LoRA rank {} alpha {}.\n",
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

    // -------------------------------------------------------------- phases 1-3

    /// The frozen parts for phases 1-3: from `base_model`, or the run's own model directory.
    fn load_frozen(
        &self,
    ) -> Result<(
        ModelConfig,
        MmDit,
        Box<dyn Autoencoder>,
        Box<dyn TextEncoder>,
    )> {
        let mdir = model_dir(&self.out);
        let src = match &self.cfg.base_model {
            Some(b) => {
                link_base(b, &mdir)?;
                b.clone()
            }
            None => mdir.clone(),
        };
        let mut mc = ModelConfig::load(&src)?;
        if src != mdir && !mdir.join(modeldir::CONFIG_FILE).is_file() {
            // first phase from a base model: the LoRA files start from the base's
            for set in [SKELETAL, APPEARANCE] {
                let from = src.join(modeldir::lora_file(set));
                let to = mdir.join(modeldir::lora_file(set));
                if from.is_file() && !to.is_file() {
                    std::fs::copy(&from, &to).map_err(|e| io_err(&to, e))?;
                }
            }
        }
        self.apply_run_settings(&mut mc);
        let dit = MmDit::load(
            src.join(modeldir::BASE_FILE),
            &mc.dit,
            &self.device,
            self.dtype,
        )?;
        let ae: Box<dyn Autoencoder> = match &mc.ae {
            AeSpec::Tiny { config } => Box::new(TinyAe::load(
                &src.join(modeldir::AE_FILE),
                config,
                &self.device,
            )?),
            AeSpec::Flux => Box::new(FluxAe::load(
                &src.join(modeldir::AE_FILE),
                &self.device,
                self.dtype,
            )?),
        };
        let text: Box<dyn TextEncoder> = match &mc.text {
            TextSpec::Tiny { config } => Box::new(TinyText::load(
                &src.join(modeldir::TEXT_FILE),
                config,
                &self.device,
            )?),
            TextSpec::Flux => Box::new(FluxText::load(&src, &self.device, self.dtype)?),
        };
        Ok((mc, dit, ae, text))
    }

    /// The examples' latents under the run's frozen autoencoder, encoded on first use.
    fn latents(&mut self, ae: &dyn Autoencoder) -> Result<Arc<Latents>> {
        if let Some(l) = &self.latents {
            return Ok(Arc::clone(l));
        }
        let l = Arc::new(cache_latents(ae, &self.examples, &self.device, self.dtype)?);
        self.latents = Some(Arc::clone(&l));
        Ok(l)
    }

    /// The prompts' features under the frozen text encoder of phases 1-3, encoded on first use.
    fn text_features(
        &mut self,
        text: &dyn TextEncoder,
        mc: &ModelConfig,
    ) -> Result<Arc<TextCache>> {
        if let Some(t) = &self.text_cache {
            return Ok(Arc::clone(t));
        }
        let t = Arc::new(TextCache::new(text, &self.examples, self.dtype, mc)?);
        self.text_cache = Some(Arc::clone(&t));
        Ok(t)
    }

    fn lora_phase(
        &mut self,
        phase: &str,
        resume: Option<&checkpoint::Checkpoint>,
    ) -> Result<PhaseSummary> {
        let method = self.cfg.method;
        let steps = lora_steps(self.cfg, phase);
        let (mc, mut dit, ae, text) = self.load_frozen()?;
        let mdir = model_dir(&self.out);
        // LoRA sets: trained ones from earlier phases are loaded; the ones this phase starts
        // are fresh.
        for set in [SKELETAL, APPEARANCE] {
            let p = mdir.join(modeldir::lora_file(set));
            if p.is_file() {
                dit.loras_mut().load(&p)?;
            }
        }
        let fresh: &[&str] = match (phase, method) {
            ("1", _) => &[SKELETAL, APPEARANCE],
            ("2", _) => &[APPEARANCE],
            ("3", Method::Skeleguide) => &[],
            ("3", Method::Stage1Only) => &[APPEARANCE],
            _ => &[SKELETAL, APPEARANCE],
        };
        for set in fresh {
            self.add_fresh(dit.loras_mut(), set)?;
        }
        for set in [SKELETAL, APPEARANCE] {
            if !dit.loras().contains(set) {
                self.add_fresh(dit.loras_mut(), set)?;
            }
        }
        let trained: &[&str] = match phase {
            "1" => &[SKELETAL],
            "2" => &[SKELETAL, APPEARANCE],
            _ => &[APPEARANCE],
        };
        let mut vars = Vec::new();
        for set in trained {
            for (i, v) in dit.loras_mut().make_trainable(set)?.into_iter().enumerate() {
                vars.push((format!("lora.{set}.{i}"), v));
            }
        }
        let mut opt = AdamW::new(vars, adam_params(self.cfg, self.cfg.optim.lr))?;
        let mut rng = TrainRng(phase_seed(self.cfg.seed, phase));
        let mut start = 0;
        if let Some(c) = resume {
            c.restore(&mut opt, &self.out)?;
            rng = c.rng.clone();
            start = c.pos.step;
        }
        let lat = self.latents(ae.as_ref())?;
        let tc = self.text_features(text.as_ref(), &mc)?;
        let shift = mc.time_shift.then_some(lat.th * lat.tw);
        let n = self.examples.len();
        let kind = match (phase, method) {
            ("1", _) => Kind::Reason,
            ("2", _) => Kind::Joint,
            (_, Method::SingleStage) => Kind::SceneRender,
            (_, Method::Implicit) => Kind::Implicit,
            _ => Kind::Render,
        };
        let examples = Arc::clone(&self.examples);
        let device = self.device.clone();
        let cfg = self.cfg;
        let lossctx = LossCtx {
            lat: &lat,
            tc: &tc,
            examples: &examples,
            cfg,
            device: &device,
            dtype: self.dtype,
        };
        let eval_seed = phase_seed(cfg.seed ^ 0xE7A1, phase);
        let eval = |dit: &mut MmDit| -> Result<f64> {
            let mut r = TrainRng(eval_seed);
            let (l, _, _) = lossctx.loss(dit, kind, &eval_draws(cfg, n), &mut r)?;
            scalar(&l.detach())
        };
        let eval_before = eval(&mut dit)?;
        let pb = bar(self.progress, phase, steps, start);
        let t_phase = Instant::now();
        for step in start..steps {
            let t0 = Instant::now();
            let d = draws(&mut rng, cfg, n, shift);
            let (loss, lr_, lrd) = lossctx.loss(&mut dit, kind, &d, &mut rng)?;
            let grads = loss.backward()?;
            let gn = opt.step(&grads, self.cfg.optim.grad_clip)?;
            let l = scalar(&loss)?;
            let secs = t0.elapsed().as_secs_f64();
            let s1 = step + 1;
            let done = StepDone {
                step: s1,
                steps,
                losses: (l, lr_, lrd),
                grad_norm: gn,
                secs,
                batch: self.cfg.batch,
            };
            self.end_step(phase, done, &pb, &rng, &opt)?;
            if self.cfg.sample_every > 0 && s1 % self.cfg.sample_every == 0 && s1 < steps {
                self.write_loras_and_config(&dit, &mc)?;
                self.sample_grid(phase, s1)?;
            }
        }
        pb.finish_and_clear();
        let eval_after = eval(&mut dit)?;
        for set in trained {
            dit.loras_mut().freeze(set)?;
        }
        self.write_loras_and_config(&dit, &mc)?;
        self.finish_model_dir(&mc, &format!("phase {phase} ({steps} steps)"))?;
        self.checkpoint(phase, steps, &rng, &opt)?;
        if self.cfg.sample_every > 0 {
            self.sample_grid(phase, steps)?;
        }
        let secs = t_phase.elapsed().as_secs_f64();
        let run = steps - start.min(steps);
        Ok(PhaseSummary {
            phase: phase.into(),
            steps,
            steps_run: run,
            seconds: secs,
            samples_per_s: (run * self.cfg.batch) as f64 / secs.max(1e-9),
            eval_before,
            eval_after,
        })
    }

    fn write_loras_and_config(&self, dit: &MmDit, mc: &ModelConfig) -> Result<()> {
        let mdir = model_dir(&self.out);
        for set in [SKELETAL, APPEARANCE] {
            dit.loras().save(set, mdir.join(modeldir::lora_file(set)))?;
        }
        mc.save(&mdir)?;
        Ok(())
    }

    /// scene | layout | render | ground truth for the first examples, through the real
    /// pipeline on the current model directory.
    fn sample_grid(&self, phase: &str, step: usize) -> Result<()> {
        use skeleguide_engine::pipeline::{Pipeline, RunOptions};
        let mdir = model_dir(&self.out);
        let mut pl =
            Pipeline::load(&mdir, &self.device).map_err(|e| TrainError::Pipeline(e.to_string()))?;
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let opts = RunOptions {
            steps: self.cfg.sample_steps,
            seed: self.cfg.seed,
            keep_background: false,
            guidance: None,
        };
        let mut rows = Vec::new();
        for e in self.examples.iter().take(self.cfg.sample_count) {
            let (layout, img) = pl
                .generate(&e.scene, &e.prompt, &opts, &mut |_, _, _| {}, &cancel)
                .map_err(|e| TrainError::Pipeline(e.to_string()))?;
            rows.push(vec![e.scene.clone(), layout.image, img, e.image.clone()]);
        }
        let dir = self.out.join("samples");
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let p = dir.join(format!("phase{phase}-step{step:06}.png"));
        log::write_png(&log::grid(&rows), &p).map_err(|e| io_err(&p, e))
    }
}

/// Symlinks the base model's frozen files into the output model directory.
fn link_base(base: &Path, mdir: &Path) -> Result<()> {
    let base = base.canonicalize().map_err(|e| io_err(base, e))?;
    for name in [
        modeldir::BASE_FILE,
        modeldir::AE_FILE,
        modeldir::TEXT_FILE,
        // reads layouts decoded by this autoencoder, which phases 1-3 keep
        modeldir::INVERTER_FILE,
        "t5",
        "clip",
    ] {
        let from = base.join(name);
        let to = mdir.join(name);
        if from.exists() && std::fs::symlink_metadata(&to).is_err() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(&from, &to).map_err(|e| io_err(&to, e))?;
            #[cfg(not(unix))]
            std::fs::copy(&from, &to).map_err(|e| io_err(&to, e))?;
        }
    }
    Ok(())
}

fn guidance(
    cfg: &skeleguide_engine::model::DitConfig,
    b: usize,
    device: &Device,
    dtype: DType,
) -> Result<Option<Tensor>> {
    Ok(if cfg.guidance_embed {
        Some(Tensor::ones(b, dtype, device)?)
    } else {
        None
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Phase 1: `L_reason` (layout given the scene, skeletal LoRA).
    Reason,
    /// Phase 2: `λ_reason·L_reason + λ_render·L_render(M̂)`.
    Joint,
    /// Phase 3: `L_render` on the ground-truth layout (appearance LoRA).
    Render,
    /// Single-stage baseline: image given the scene (appearance LoRA).
    SceneRender,
    /// Implicit baseline: image and layout jointly given the scene (appearance LoRA).
    Implicit,
}

struct LossCtx<'a> {
    lat: &'a Latents,
    tc: &'a TextCache,
    examples: &'a [Example],
    cfg: &'a TrainConfig,
    device: &'a Device,
    dtype: DType,
}

/// The fixed pure noise `M0` of example `index` (phase 2): the same every step.
pub fn fixed_m0_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x4D30_4D30
}

impl LossCtx<'_> {
    /// The batch's prompts (empty where dropped) as text features; with `reason`, in their
    /// stage-1 form.
    fn text(&self, d: &[Draw], reason: bool) -> Result<(Tensor, Tensor)> {
        let prompts: Vec<&str> = d
            .iter()
            .map(|d| {
                if d.drop_prompt {
                    ""
                } else {
                    self.examples[d.index].prompt.as_str()
                }
            })
            .collect();
        self.tc.batch(&prompts, reason)
    }

    /// The text, ids and σ of a batch; with `reason`, the prompts in their stage-1 form.
    fn step_ctx(&self, d: &[Draw], reason: bool) -> Result<StepCtx> {
        let b = d.len();
        let (txt, y) = self.text(d, reason)?;
        Ok(StepCtx {
            txt_ids: text_ids(b, txt.dim(1)?, self.device, self.dtype)?,
            img_ids: image_ids(b, self.lat.th, self.lat.tw, self.device, self.dtype)?,
            txt,
            y,
            guidance: None,
            sigma: Tensor::from_vec(
                d.iter().map(|d| d.sigma as f32).collect::<Vec<_>>(),
                b,
                self.device,
            )?
            .to_dtype(self.dtype)?,
        })
    }

    /// The loss of one batch, with `(L_reason, L_render)` when both exist.
    fn loss(
        &self,
        dit: &mut MmDit,
        kind: Kind,
        d: &[Draw],
        rng: &mut TrainRng,
    ) -> Result<(Tensor, Option<f64>, Option<f64>)> {
        let mut ctx = self.step_ctx(d, kind == Kind::Reason)?;
        ctx.guidance = guidance(dit.config(), d.len(), self.device, self.dtype)?;
        let keep = cond_keep(d, self.device, self.dtype)?;
        let scene = gather(&self.lat.scene, d)?.broadcast_mul(&keep)?;
        let layout = gather(&self.lat.layout, d)?;
        let image = gather(&self.lat.image, d)?;
        let ids = ctx.img_ids.clone();
        let scene_cond = Condition::Tokens {
            tokens: &scene,
            ids: &ids,
        };
        match kind {
            Kind::Reason => {
                dit.loras_mut().set_active(Some(SKELETAL))?;
                let noise = noise_like(rng, &layout)?;
                Ok((
                    fm_loss(dit, &ctx, &layout, &noise, &ids, scene_cond)?,
                    None,
                    None,
                ))
            }
            Kind::Render | Kind::SceneRender => {
                dit.loras_mut().set_active(Some(APPEARANCE))?;
                let cond_lat = if kind == Kind::Render {
                    layout.broadcast_mul(&keep)?
                } else {
                    scene.clone()
                };
                let noise = noise_like(rng, &image)?;
                let cond = Condition::Tokens {
                    tokens: &cond_lat,
                    ids: &ids,
                };
                Ok((fm_loss(dit, &ctx, &image, &noise, &ids, cond)?, None, None))
            }
            Kind::Implicit => {
                dit.loras_mut().set_active(Some(APPEARANCE))?;
                let x = Tensor::cat(&[&image, &layout], 1)?;
                let noise = noise_like(rng, &x)?;
                let jids = joint_ids(d.len(), self.lat.th, self.lat.tw, self.device, self.dtype)?;
                Ok((
                    fm_loss(dit, &ctx, &x, &noise, &jids, scene_cond)?,
                    None,
                    None,
                ))
            }
            Kind::Joint => {
                dit.loras_mut().set_active(Some(SKELETAL))?;
                // Stage 1 sees its prompts; the render loss below the plain ones in `ctx`.
                let (txt, y) = self.text(d, true)?;
                let rctx = StepCtx {
                    txt,
                    y,
                    ..ctx.clone()
                };
                let rctx = &rctx;
                let noise_m = noise_like(rng, &layout)?;
                let l_reason = fm_loss(dit, rctx, &layout, &noise_m, &ids, scene_cond)?;
                // M̂ = M0 − v̂(M0, σ = 1): one differentiable step from a fixed noise per example.
                let (c, h, w) = (layout.dim(2)? / 4, self.lat.th * 2, self.lat.tw * 2);
                let m0: Vec<Tensor> = d
                    .iter()
                    .map(|d| {
                        let n = sampling::seeded_noise(
                            &[1, c, h, w],
                            fixed_m0_seed(self.cfg.seed, d.index),
                            self.device,
                            self.dtype,
                        )
                        .map_err(|e| TrainError::Data(e.to_string()))?;
                        Ok(pack_latents(&n)?)
                    })
                    .collect::<Result<_>>()?;
                let m0 = Tensor::cat(&m0, 0)?;
                let ones = Tensor::ones(d.len(), self.dtype, self.device)?;
                let one_ctx = DitInputs {
                    img: &m0,
                    img_ids: &ids,
                    txt: &rctx.txt,
                    txt_ids: &rctx.txt_ids,
                    timesteps: &ones,
                    y: &rctx.y,
                    guidance: rctx.guidance.as_ref(),
                };
                let v0 = dit.forward(&one_ctx, scene_cond, Mode::Train)?;
                let m_hat = (&m0 - v0)?.broadcast_mul(&keep)?;
                dit.loras_mut().set_active(Some(APPEARANCE))?;
                let noise_x = noise_like(rng, &image)?;
                let l_render = fm_loss(
                    dit,
                    &ctx,
                    &image,
                    &noise_x,
                    &ids,
                    Condition::Tokens {
                        tokens: &m_hat,
                        ids: &ids,
                    },
                )?;
                let total = ((&l_reason * self.cfg.optim.lambda_reason)?
                    + (&l_render * self.cfg.optim.lambda_render)?)?;
                let (a, b) = (scalar(&l_reason)?, scalar(&l_render)?);
                Ok((total, Some(a), Some(b)))
            }
        }
    }
}

/// Phase 2's render loss alone (`L_render` through `M̂`) on the first `batch` examples of a
/// model directory, with both LoRA sets trainable: returns the loss, and the skeletal and
/// appearance `Var`s. Used to check that the skeletal LoRA learns from the render loss.
pub fn phase2_render_loss(
    model: &Path,
    data: &Path,
    batch: usize,
    seed: u64,
) -> Result<(Tensor, Vec<Var>, Vec<Var>)> {
    let mc = ModelConfig::load(model)?;
    let device = Device::Cpu;
    let dtype = DType::F32;
    let mut dit = MmDit::load(model.join(modeldir::BASE_FILE), &mc.dit, &device, dtype)?;
    for set in [SKELETAL, APPEARANCE] {
        dit.loras_mut().load(model.join(modeldir::lora_file(set)))?;
    }
    let AeSpec::Tiny { config: ae_cfg } = &mc.ae else {
        return Err(TrainError::Config("the tiny autoencoder is needed".into()));
    };
    let TextSpec::Tiny { config: text_cfg } = &mc.text else {
        return Err(TrainError::Config("the tiny text encoder is needed".into()));
    };
    let ae = TinyAe::load(&model.join(modeldir::AE_FILE), ae_cfg, &device)?;
    let text = TinyText::load(&model.join(modeldir::TEXT_FILE), text_cfg, &device)?;
    let examples = load_examples(data, batch, mc.resolution, 16)?;
    let lat = cache_latents(&ae, &examples, &device, dtype)?;
    let tc = TextCache::new(&text, &examples, dtype, &mc)?;
    let skel = dit.loras_mut().make_trainable(SKELETAL)?;
    let app = dit.loras_mut().make_trainable(APPEARANCE)?;
    let cfg = TrainConfig::parse(
        &format!(
            "preset = \"tiny\"\nbase_model = \".\"\nseed = {seed}\nbatch = {batch}\ncheckpoint_every = 1\n\
             [optim]\nlr = 1e-4\ngrad_clip = 1.0\nprompt_dropout = 0.0\ncond_dropout = 0.0\nlambda_reason = 0.0\nlambda_render = 1.0\n\
             [data]\n[lora]\nrank = 4\nalpha = 4.0\n[phase1]\nsteps = 0\n[phase2]\nsteps = 0\n[phase3]\nsteps = 0\n"
        ),
        Path::new("<phase2 gradient check>"),
    )
    .map_err(|e| TrainError::Config(e.to_string()))?;
    let lc = LossCtx {
        lat: &lat,
        tc: &tc,
        examples: &examples,
        cfg: &cfg,
        device: &device,
        dtype,
    };
    let d = eval_draws(&cfg, examples.len());
    let mut rng = TrainRng(seed);
    let (total, _, _) = lc.loss(&mut dit, Kind::Joint, &d, &mut rng)?;
    Ok((total, skel, app))
}
