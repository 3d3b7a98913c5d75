//! The two-stage pipeline, the only door the app and the CLI use to reach the models:
//! `reason` (scene + prompt → layout, skeletal LoRA), `invert` (layout → poses),
//! `relayout` (scene + poses → layout, through the one rasteriser), `render` (scene + layout +
//! prompt → image, appearance LoRA) and `generate` (reason then render).
//!
//! Any scene size works: the scene is fitted to the model's resolution keeping its aspect ratio
//! (sides multiples of 16), and outputs come back at the scene's size. Scene latents, text
//! features and the condition K/V are cached across calls with the same inputs.

use crate::composite;
use crate::model::{
    Autoencoder, CondCache, FluxAe, FluxText, LoraSets, MmDit, ModelError, TextEncoder,
    TextFeatures, TinyAe, TinyText,
};
use crate::modeldir::{
    self, AeSpec, Method, ModelConfig, ModelDirError, SceneContrast, TextGuidance, TextSpec,
    APPEARANCE, SKELETAL,
};
use crate::pose::{self, PoseSet};
use crate::sampling::{self, SampleError, Stage};
use crate::select;
use candle_core::{DType, Device, Tensor};
use image::{imageops, RgbImage};
use stage::StageInput;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

mod stage;

/// Why a pipeline call failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The caller's cancel flag was set while sampling.
    #[error("cancelled")]
    Cancelled,
    /// The model directory is missing files or invalid.
    #[error(transparent)]
    Dir(#[from] ModelDirError),
    /// A model failed to load or run.
    #[error("{0}")]
    Model(#[from] ModelError),
    /// Sampling failed for a reason other than cancellation; the text is its message.
    #[error("{0}")]
    Sampling(String),
    /// Poses were asked for but the model has no PoseInverter; holds the missing file's path.
    #[error("this model has no PoseInverter ({0} is missing): train one with `skeleguide-train inverter`")]
    NoInverter(String),
    /// The inputs do not fit the model or the call (mismatched sizes, a stage the method lacks).
    #[error("{0}")]
    Input(String),
}

impl From<SampleError> for PipelineError {
    fn from(e: SampleError) -> Self {
        match e {
            SampleError::Cancelled => PipelineError::Cancelled,
            other => PipelineError::Sampling(other.to_string()),
        }
    }
}

impl From<candle_core::Error> for PipelineError {
    fn from(e: candle_core::Error) -> Self {
        PipelineError::Model(ModelError::from(e))
    }
}

/// Result alias of the pipeline.
pub type Result<T> = std::result::Result<T, PipelineError>;

/// Per-call settings.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Number of sampling steps per stage.
    pub steps: usize,
    /// Seed of the initial noise; the same seed and inputs give the same output.
    pub seed: u64,
    /// Keep the scene: its own pixels at full resolution outside the person region, the
    /// generated person blended in with a feathered edge ([`Pipeline::keep_scene`]). Off: the
    /// whole image is the model's, scaled up from the working size.
    pub keep_background: bool,
    /// Classifier-free guidance per stage; `None`: the model's `text_guidance`.
    pub guidance: Option<TextGuidance>,
    /// Stage-1 layouts to sample, keeping the one read back with the prompt's person count and
    /// the best-shaped skeletons ([`crate::select`]); `None`: the model's `reason_candidates`.
    /// Candidate 0 is the call's own seed, so 1 is the plain sampler.
    pub candidates: Option<usize>,
    /// Stage 1's scene contrast ([`SceneContrast`]); `None`: the model's `reason_contrast`.
    pub contrast: Option<SceneContrast>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            steps: sampling::DEFAULT_STEPS,
            seed: 0,
            keep_background: true,
            guidance: None,
            candidates: None,
            contrast: None,
        }
    }
}

/// A layout: the latent the render stage is conditioned on, and its image at the scene's size.
#[derive(Clone, Debug)]
pub struct Layout {
    /// `(1, C, h, w)` at the model's working size.
    pub latent: Tensor,
    /// The layout image at the scene's size.
    pub image: RgbImage,
    /// The poses it was drawn from, when it came from `relayout`.
    pub poses: Option<PoseSet>,
}

/// One stage-1 candidate as sampled, before any is chosen: its latent and its decoding, both at
/// the model's working size (where [`Pipeline::reason`] reads it back).
#[derive(Clone, Debug)]
pub struct Candidate {
    /// `(1, C, h, w)`.
    pub latent: Tensor,
    /// The decoded layout image at the working size.
    pub image: RgbImage,
}

/// Progress: (stage, step, total steps).
pub type Progress<'a> = &'a mut dyn FnMut(Stage, usize, usize);

/// A loaded model (DiT with both LoRA sets, autoencoder, text encoder) with its caches.
pub struct Pipeline {
    cfg: ModelConfig,
    dir: PathBuf,
    dit: MmDit,
    ae: Box<dyn Autoencoder>,
    text: Box<dyn TextEncoder>,
    device: Device,
    dtype: DType,
    scene_cache: HashMap<u64, Tensor>,
    /// Scenes after the autoencoder's round trip, by the same key as `scene_cache`.
    round_trip_cache: HashMap<u64, RgbImage>,
    text_cache: HashMap<String, (Tensor, Tensor)>,
    /// The condition K/V of the last stage (a batch of two under guidance: prompt, empty prompt).
    cond_cache: Option<CondCache>,
    /// The PoseInverter network (the directory's own, else the embedded one), read on first use.
    network: OnceLock<crate::inverter::PoseInverter>,
}

impl Pipeline {
    /// Loads a model directory after checking every file and shape, in the device's default
    /// dtype (f32 on the CPU, bf16 on CUDA).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_as(dir, device, crate::model::default_dtype(device))
    }

    /// [`Pipeline::load`] in a given dtype (f32 on CUDA, say, to compare it with the CPU).
    pub fn load_as(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let cfg = modeldir::check(dir)?;
        let base = dir.join(modeldir::BASE_FILE);
        let mut dit = in_file(MmDit::load(&base, &cfg.dit, device, dtype), &base)?;
        for set in [SKELETAL, APPEARANCE] {
            let file = dir.join(modeldir::lora_file(set));
            in_file(dit.loras_mut().load(&file), &file)?;
        }
        let ae = load_autoencoder(dir, &cfg, device, dtype)?;
        let text: Box<dyn TextEncoder> = match &cfg.text {
            TextSpec::Tiny { config } => {
                let file = dir.join(modeldir::TEXT_FILE);
                Box::new(in_file(TinyText::load(&file, config, device), &file)?)
            }
            TextSpec::Flux => Box::new(in_file(FluxText::load(dir, device, dtype), dir)?),
        };
        Self::from_parts(dir, cfg, dit, ae, text, device, dtype)
    }

    /// A pipeline from models already built (a benchmark's random weights, say); `dir` is where
    /// a PoseInverter would be found (none there: the embedded one) and how messages name the
    /// model.
    pub fn from_parts(
        dir: &Path,
        cfg: ModelConfig,
        dit: MmDit,
        ae: Box<dyn Autoencoder>,
        text: Box<dyn TextEncoder>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let latent_ch = ae.latent_channels();
        if latent_ch * 4 != cfg.dit.in_channels {
            return Err(PipelineError::Input(format!(
                "{}: the autoencoder has {latent_ch} latent channels but the DiT expects {} (= 4 x channels)",
                dir.display(),
                cfg.dit.in_channels
            )));
        }
        if text.token_dim() != cfg.dit.context_in_dim || text.pooled_dim() != cfg.dit.vec_in_dim {
            return Err(PipelineError::Input(format!(
                "{}: the text encoder gives ({}, {}) features but the DiT expects ({}, {})",
                dir.display(),
                text.token_dim(),
                text.pooled_dim(),
                cfg.dit.context_in_dim,
                cfg.dit.vec_in_dim
            )));
        }
        Ok(Pipeline {
            cfg,
            dir: dir.to_path_buf(),
            dit,
            ae,
            text,
            device: device.clone(),
            dtype,
            scene_cache: HashMap::new(),
            round_trip_cache: HashMap::new(),
            text_cache: HashMap::new(),
            cond_cache: None,
            network: OnceLock::new(),
        })
    }

    /// Forgets every cached encoding (scenes, prompts, condition K/V): the next call computes
    /// them again, as the first call on a new scene and prompt does.
    pub fn clear_caches(&mut self) {
        self.scene_cache.clear();
        self.round_trip_cache.clear();
        self.text_cache.clear();
        self.cond_cache = None;
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// How many stage-1 layouts a call asking for `asked` (`RunOptions::candidates`) samples:
    /// that, else the model's `reason_candidates`; 1 for the baselines, whose reasoning (if
    /// any) is not stage 1's.
    pub fn candidates(&self, asked: Option<usize>) -> usize {
        match self.cfg.method {
            Method::Skeleguide | Method::Stage1Only => asked.unwrap_or(self.cfg.reason_candidates),
            Method::SingleStage | Method::Implicit => 1,
        }
    }

    /// The model directory it was loaded from.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// The LoRA sets loaded into the DiT.
    pub fn loras(&self) -> &LoraSets {
        self.dit.loras()
    }

    /// The working size for a scene: longest side = resolution, aspect kept, sides multiples of
    /// 16 (÷8 latent, 2x2 patches).
    pub fn working_size(&self, w: u32, h: u32) -> (u32, u32) {
        fit_working_size(self.cfg.resolution, self.ae.downsample(), w, h)
    }

    fn to_tensor(&self, img: &RgbImage) -> Result<Tensor> {
        image_to_tensor(img, &self.device, self.dtype)
    }

    fn to_image(&self, t: &Tensor) -> Result<RgbImage> {
        tensor_to_image(t)
    }

    /// Encodes an image fitted to the working size (cached by content).
    fn encode_fitted(&mut self, img: &RgbImage) -> Result<Tensor> {
        let key = self.fitted_key(img);
        if let Some(t) = self.scene_cache.get(&key) {
            return Ok(t.clone());
        }
        let (ww, wh) = self.working_size(img.width(), img.height());
        let fitted = imageops::resize(img, ww, wh, imageops::FilterType::Triangle);
        let latent = self.encode_image(&fitted)?;
        if self.scene_cache.len() > 16 {
            self.scene_cache.clear();
        }
        self.scene_cache.insert(key, latent.clone());
        Ok(latent)
    }

    /// The cache key of an image fitted to the working size: its content and that size.
    fn fitted_key(&self, img: &RgbImage) -> u64 {
        let (ww, wh) = self.working_size(img.width(), img.height());
        hash_image(img) ^ ((ww as u64) << 40) ^ ((wh as u64) << 20)
    }

    /// The scene through the autoencoder at the working size (cached like its latent): what a
    /// decoded layout is compared with to find the skeleton.
    fn scene_round_trip(&mut self, scene: &RgbImage) -> Result<RgbImage> {
        let key = self.fitted_key(scene);
        if let Some(img) = self.round_trip_cache.get(&key) {
            return Ok(img.clone());
        }
        let latent = self.encode_fitted(scene)?;
        let img = self.decode_latent(&latent)?;
        if self.round_trip_cache.len() > 16 {
            self.round_trip_cache.clear();
        }
        self.round_trip_cache.insert(key, img.clone());
        Ok(img)
    }

    fn text_features(&mut self, prompt: &str) -> Result<(Tensor, Tensor)> {
        if let Some(f) = self.text_cache.get(prompt) {
            return Ok(f.clone());
        }
        let TextFeatures { tokens, pooled, .. } = self.text.encode(&[prompt])?;
        // The tiny text encoder works in f32 whatever the DiT's dtype (bf16 on CUDA).
        let (tokens, pooled) = (tokens.to_dtype(self.dtype)?, pooled.to_dtype(self.dtype)?);
        if self.text_cache.len() > 64 {
            self.text_cache.clear();
        }
        self.text_cache
            .insert(prompt.to_string(), (tokens.clone(), pooled.clone()));
        Ok((tokens, pooled))
    }

    /// Whether the text encoder had to truncate `prompt` in either stage: stage 1's form
    /// (the model's `reason_prefix` before it) is the longer, so it alone is checked.
    pub fn prompt_truncated(&self, prompt: &str) -> Result<bool> {
        Ok(self
            .text
            .encode(&[&self.cfg.reason_prompt(prompt)])?
            .truncated)
    }

    /// The implicit baseline: image and layout sampled jointly from the scene (appearance LoRA).
    fn implicit(
        &mut self,
        scene: &RgbImage,
        prompt: &str,
        opts: &RunOptions,
        progress: Progress,
        cancel: &AtomicBool,
    ) -> Result<(Layout, RgbImage)> {
        let cond = self.encode_fitted(scene)?;
        let mut v = self.sample_latents(
            Stage::Render,
            StageInput::Latent {
                lora: APPEARANCE,
                cond: &cond,
            },
            prompt,
            opts,
            progress,
            cancel,
            true,
        )?;
        let layout_latent = v.remove(1);
        let image_latent = v.remove(0);
        let (sw, sh) = scene.dimensions();
        let lay = self.to_image(&self.ae.decode(&layout_latent)?)?;
        let img = self.to_image(&self.ae.decode(&image_latent)?)?;
        let layout = Layout {
            latent: layout_latent,
            image: imageops::resize(&lay, sw, sh, imageops::FilterType::Triangle),
            poses: None,
        };
        Ok((
            layout,
            imageops::resize(&img, sw, sh, imageops::FilterType::CatmullRom),
        ))
    }

    fn single_stage_error(&self, what: &str) -> PipelineError {
        PipelineError::Input(format!(
            "{}: this model is the single-stage baseline (method single-stage): it has no {what}; use generate or render",
            self.dir.display()
        ))
    }

    /// Refuses several stage-1 candidates asked of a baseline that samples no stage-1 layout.
    fn check_candidates_apply(&self, opts: &RunOptions) -> Result<()> {
        match (opts.candidates, self.cfg.method) {
            (Some(k), Method::SingleStage | Method::Implicit) if k > 1 => {
                Err(PipelineError::Input(format!(
                    "{}: candidates = {k}: this baseline samples no separate stage-1 layout to choose from; use 1",
                    self.dir.display()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Stage 1: the scene-aware layout for `prompt`.
    pub fn reason(
        &mut self,
        scene: &RgbImage,
        prompt: &str,
        opts: &RunOptions,
        progress: Progress,
        cancel: &AtomicBool,
    ) -> Result<Layout> {
        self.check_candidates_apply(opts)?;
        match self.cfg.method {
            Method::SingleStage => return Err(self.single_stage_error("reasoning stage")),
            Method::Implicit => return Ok(self.implicit(scene, prompt, opts, progress, cancel)?.0),
            Method::Skeleguide | Method::Stage1Only => {}
        }
        let mut candidates = self.reason_candidates(scene, prompt, opts, progress, cancel)?;
        let mut kept = 0;
        if candidates.len() > 1 {
            let asked = select::asked_count(prompt);
            let mut best = None;
            for (i, c) in candidates.iter().enumerate() {
                let score = select::score(&self.invert_image(&c.image)?, asked);
                if best.is_none_or(|b| score > b) {
                    (best, kept) = (Some(score), i);
                }
            }
        }
        let Candidate { latent, image } = candidates.swap_remove(kept);
        Ok(layout_at_scene_size(scene, latent, image))
    }

    /// Every stage-1 candidate [`Pipeline::reason`] chooses from (`opts.candidates`, else the
    /// model's `reason_candidates`), in candidate order, none read back yet. They stay at the
    /// working size, where [`Pipeline::reason`] reads them: the strokes the model drew, no more
    /// pixels (it scales only the kept one to the scene's size).
    pub fn reason_candidates(
        &mut self,
        scene: &RgbImage,
        prompt: &str,
        opts: &RunOptions,
        progress: Progress,
        cancel: &AtomicBool,
    ) -> Result<Vec<Candidate>> {
        self.check_candidates_apply(opts)?;
        self.check_separate_stage1()?;
        let k = self.candidates(opts.candidates);
        select::check_candidates("candidates", k).map_err(PipelineError::Input)?;
        // The candidates side by side in one batch: a step of all costs less than one each.
        let run = self.stage1_run(scene, prompt, opts, k)?;
        let noises = (0..k)
            .map(|i| self.stage_noise(&run, select::candidate_seed(opts.seed, i)))
            .collect::<Result<Vec<_>>>()?;
        let x = self.integrate(
            &run,
            Tensor::cat(&noises, 0)?,
            0,
            run.steps(),
            progress,
            cancel,
        )?;
        let latents = self.unpack_state(&run, &x)?.remove(0);
        // One decode for all of them, as for the sampling.
        let decoded = self.ae.decode(&latents)?;
        (0..k)
            .map(|i| {
                Ok(Candidate {
                    latent: latents.narrow(0, i, 1)?,
                    image: self.to_image(&decoded.narrow(0, i, 1)?)?,
                })
            })
            .collect()
    }

    /// Refuses a baseline that samples no separate stage-1 layout.
    fn check_separate_stage1(&self) -> Result<()> {
        match self.cfg.method {
            Method::Skeleguide | Method::Stage1Only => Ok(()),
            Method::SingleStage => Err(self.single_stage_error("stage-1 layout")),
            Method::Implicit => Err(PipelineError::Input(format!(
                "{}: this model is the implicit baseline (method implicit): it samples its layout with the image, not as a separate stage 1",
                self.dir.display()
            ))),
        }
    }

    /// The scene contrast a call asking for `asked` (`RunOptions::contrast`) gives stage 1:
    /// that, else the model's `reason_contrast`; off for the baselines, which sample no
    /// separate stage-1 layout.
    pub fn contrast(&self, asked: Option<SceneContrast>) -> SceneContrast {
        match self.cfg.method {
            Method::Skeleguide | Method::Stage1Only => asked.unwrap_or(self.cfg.reason_contrast),
            Method::SingleStage | Method::Implicit => SceneContrast::default(),
        }
    }

    /// Stage 1 set up for `prompt` on `scene`, `samples` layouts at a time: the skeletal LoRA on
    /// the scene's latent, the prompt in its stage-1 form.
    fn stage1_run(
        &mut self,
        scene: &RgbImage,
        prompt: &str,
        opts: &RunOptions,
        samples: usize,
    ) -> Result<stage::StageRun> {
        let cond = self.encode_fitted(scene)?;
        let input = StageInput::Latent {
            lora: SKELETAL,
            cond: &cond,
        };
        let reason_prompt = self.cfg.reason_prompt(prompt);
        self.stage_run(Stage::Reason, input, &reason_prompt, opts, false, samples)
    }

    /// A stage-1 state as a layout: its latent, decoded and scaled to the scene's size.
    fn layout_of(&self, run: &stage::StageRun, x: &Tensor, scene: &RgbImage) -> Result<Layout> {
        let latent = self.unpack_state(run, x)?.remove(0);
        let decoded = self.decode_latent(&latent)?;
        Ok(layout_at_scene_size(scene, latent, decoded))
    }

    /// Stage 1 of one seed (`opts.seed`, no candidates), with the layouts the model predicts
    /// along the way: at each step of `at` (ascending, below `opts.steps`) the clean layout
    /// predicted from that step's state (as the sampler moves, so with the scene contrast's
    /// push where it applies), then the finished layout: how early a sample settles its people.
    pub fn reason_trajectory(
        &mut self,
        scene: &RgbImage,
        prompt: &str,
        opts: &RunOptions,
        at: &[usize],
        cancel: &AtomicBool,
    ) -> Result<Vec<Layout>> {
        self.check_separate_stage1()?;
        let run = self.stage1_run(scene, prompt, opts, 1)?;
        let n = run.steps();
        if at.windows(2).any(|w| w[0] >= w[1]) || at.last().is_some_and(|&s| s >= n) {
            return Err(PipelineError::Input(format!(
                "trajectory steps {at:?}: they must rise and stay below the {n} steps"
            )));
        }
        let mut x = self.stage_noise(&run, opts.seed)?;
        let mut from = 0;
        let mut out = Vec::with_capacity(at.len() + 1);
        for &s in at.iter().chain(std::iter::once(&n)) {
            x = self.integrate(&run, x, from, s, &mut |_, _, _| {}, cancel)?;
            let predicted = self.predicted_clean(&run, &x, s)?;
            out.push(self.layout_of(&run, &predicted, scene)?);
            from = s;
        }
        Ok(out)
    }

    /// The base DiT alone drawing a `width`×`height` layout from the prompt's stage-1 form: no
    /// scene, no LoRA (what phase 0 pretrains on layouts). A base that cannot draw a counted,
    /// well-formed skeleton here cannot be rescued by the skeletal LoRA; `eval --base-only`
    /// reads these through the PoseInverter.
    pub fn base_layout(
        &mut self,
        width: u32,
        height: u32,
        prompt: &str,
        opts: &RunOptions,
        cancel: &AtomicBool,
    ) -> Result<RgbImage> {
        let (ww, wh) = self.working_size(width, height);
        let f = self.ae.downsample();
        let input = StageInput::BaseAlone {
            channels: self.ae.latent_channels(),
            h: wh as usize / f,
            w: ww as usize / f,
        };
        let prompt = self.cfg.reason_prompt(prompt);
        let mut v = self.sample_latents(
            Stage::Reason,
            input,
            &prompt,
            opts,
            &mut |_, _, _| {},
            cancel,
            false,
        )?;
        let decoded = self.decode_latent(&v.remove(0))?;
        Ok(imageops::resize(
            &decoded,
            width,
            height,
            imageops::FilterType::Triangle,
        ))
    }

    /// The poses of a layout (see [`InverterChoice::Auto`]): a decoded layout goes to the
    /// PoseInverter network (the model directory's own, else the embedded one); a clean one
    /// (relayout from poses) to the colour-segmentation decoder.
    pub fn invert(&self, layout: &Layout) -> Result<PoseSet> {
        self.invert_image(&layout.image)
    }

    /// The poses of a layout image, as [`Pipeline::invert`] reads a layout's.
    pub fn invert_image(&self, image: &RgbImage) -> Result<PoseSet> {
        invert_choosing(image, InverterChoice::Auto, |img| {
            let net = match self.network.get() {
                Some(n) => n,
                None => {
                    let n =
                        crate::inverter::PoseInverter::for_model_dir(Some(&self.dir), &Device::Cpu)
                            .map_err(inverter_input)?;
                    self.network.get_or_init(|| n)
                }
            };
            net.invert(img).map_err(inverter_input)
        })
    }

    /// A layout from edited poses: the one rasteriser over the scene, then the encoder.
    pub fn relayout(&mut self, scene: &RgbImage, poses: &PoseSet) -> Result<Layout> {
        let image = pose::draw_layout(Some(scene), poses);
        let latent = self.encode_fitted(&image)?;
        let poses = if (poses.width, poses.height) == scene.dimensions() {
            poses.clone()
        } else {
            poses.resized(scene.width(), scene.height())
        };
        Ok(Layout {
            latent,
            image,
            poses: Some(poses),
        })
    }

    /// A layout from a layout image (e.g. one saved by `reason` or drawn by another tool),
    /// resized to the scene.
    pub fn layout_from_image(&mut self, scene: &RgbImage, image: &RgbImage) -> Result<Layout> {
        let image = if image.dimensions() == scene.dimensions() {
            image.clone()
        } else {
            imageops::resize(
                image,
                scene.width(),
                scene.height(),
                imageops::FilterType::Triangle,
            )
        };
        let latent = self.encode_fitted(&image)?;
        Ok(Layout {
            latent,
            image,
            poses: None,
        })
    }

    /// The autoencoder's latent of `img` fitted to the working size, bypassing the scene cache
    /// (for benchmarks and evaluation).
    pub fn encode_uncached(&self, img: &RgbImage) -> Result<Tensor> {
        let (ww, wh) = self.working_size(img.width(), img.height());
        let fitted = imageops::resize(img, ww, wh, imageops::FilterType::Triangle);
        self.encode_image(&fitted)
    }

    /// The latent of an image already at the working size, in the DiT's dtype (the tiny
    /// autoencoder works in f32 whatever the DiT's dtype).
    fn encode_image(&self, img: &RgbImage) -> Result<Tensor> {
        Ok(self
            .ae
            .encode(&self.to_tensor(img)?)?
            .to_dtype(self.dtype)?)
    }

    /// The image of a latent at the working size.
    pub fn decode_latent(&self, latent: &Tensor) -> Result<RgbImage> {
        self.to_image(&self.ae.decode(latent)?)
    }

    /// Whether [`Pipeline::invert`] is available: always (the colour decoder needs no weights;
    /// a model directory's own `inverter.safetensors` takes precedence).
    pub fn has_inverter(&self) -> bool {
        true
    }

    /// Whether the model directory has its own PoseInverter (else the embedded one is used).
    pub fn has_own_inverter(&self) -> bool {
        self.dir.join(modeldir::INVERTER_FILE).is_file()
    }

    /// Stage 2: the person rendered on `layout`, at the scene's size.
    pub fn render(
        &mut self,
        scene: &RgbImage,
        layout: &Layout,
        prompt: &str,
        opts: &RunOptions,
        progress: Progress,
        cancel: &AtomicBool,
    ) -> Result<RgbImage> {
        let (ww, wh) = self.working_size(scene.width(), scene.height());
        let (_, _, lh, lw) = layout.latent.dims4()?;
        let f = self.ae.downsample();
        if (lw * f, lh * f) != (ww as usize, wh as usize) {
            return Err(PipelineError::Input(format!(
                "the layout was made for {}x{} but this scene works at {ww}x{wh}",
                lw * f,
                lh * f
            )));
        }
        // single-stage renders from the scene itself; the implicit baseline cannot take a layout
        let cond = match self.cfg.method {
            Method::SingleStage => self.encode_fitted(scene)?,
            Method::Implicit => {
                return Err(PipelineError::Input(format!(
                    "{}: this model is the implicit baseline (method implicit): it predicts the image and the layout together and cannot render on a given layout; use generate",
                    self.dir.display()
                )))
            }
            Method::Skeleguide | Method::Stage1Only => layout.latent.clone(),
        };
        let latent = self.sample_stage(
            Stage::Render,
            APPEARANCE,
            &cond,
            prompt,
            opts,
            progress,
            cancel,
        )?;
        let decoded = self.to_image(&self.ae.decode(&latent)?)?;
        let mut out = imageops::resize(
            &decoded,
            scene.width(),
            scene.height(),
            imageops::FilterType::CatmullRom,
        );
        if opts.keep_background {
            out = self.keep_scene(scene, &out, layout)?;
        }
        Ok(out)
    }

    /// `generated` (at the scene's size) blended into `scene` through [`Pipeline::person_alpha`]:
    /// the scene's own pixels outside the person region. A single-stage model's stand-in layout
    /// is the scene itself, with no person region: its output is returned as it is.
    pub fn keep_scene(
        &mut self,
        scene: &RgbImage,
        generated: &RgbImage,
        layout: &Layout,
    ) -> Result<RgbImage> {
        if self.cfg.method == Method::SingleStage && layout.poses.is_none() {
            return Ok(generated.clone());
        }
        let alpha = self.person_alpha(scene, layout)?;
        Ok(composite::blend(scene, generated, &alpha))
    }

    /// Where the person may be, at the scene's size (255: generated, 0: the scene's pixel). The
    /// skeleton is found at the working size: drawn from the poses when the layout has them,
    /// else where the decoded layout differs from the scene through the same autoencoder, and
    /// only near the people the PoseInverter reads from it when it reads any. It is grown by the
    /// body around the bones and feathered ([`composite`]).
    pub fn person_alpha(&mut self, scene: &RgbImage, layout: &Layout) -> Result<image::GrayImage> {
        let (ww, wh) = self.working_size(scene.width(), scene.height());
        let core = match &layout.poses {
            Some(poses) => pose::person_mask(&poses.resized(ww, wh), 0),
            None => {
                let drawn = self.decode_latent(&layout.latent)?;
                let scene_rt = self.scene_round_trip(scene)?;
                let mut core =
                    composite::layout_core(&drawn, &scene_rt, composite::LAYOUT_DIFF_THRESHOLD);
                // Where people are read, only the changes near them are a person; elsewhere
                // they are the sampler's strokes, and the scene stays.
                // (a layout the inverter cannot read keeps every change; with no change there
                // is nothing to read for)
                let changed = core.pixels().any(|p| p.0[0] > 0);
                let read = changed
                    .then(|| self.invert(layout).ok())
                    .flatten()
                    .filter(|r| !r.people.is_empty());
                if let Some(read) = read {
                    let margin = ww.max(wh) as f32 * composite::READ_MARGIN_FRACTION;
                    let near = pose::person_mask(&read.resized(ww, wh), margin.round() as u32);
                    composite::keep_within(&mut core, &near);
                }
                core
            }
        };
        let side = ww.max(wh) as f32;
        let alpha = composite::feathered_alpha(
            &core,
            side * composite::GROW_FRACTION,
            side * composite::FEATHER_FRACTION,
        );
        Ok(composite::upscale_alpha(
            &alpha,
            ww,
            wh,
            scene.width(),
            scene.height(),
        ))
    }

    /// Reason, then render. The implicit baseline samples both at once; the single-stage
    /// baseline renders from the scene and returns the scene as its layout.
    pub fn generate(
        &mut self,
        scene: &RgbImage,
        prompt: &str,
        opts: &RunOptions,
        progress: Progress,
        cancel: &AtomicBool,
    ) -> Result<(Layout, RgbImage)> {
        self.check_candidates_apply(opts)?;
        match self.cfg.method {
            Method::Implicit => return self.implicit(scene, prompt, opts, progress, cancel),
            Method::SingleStage => {
                // no layout: the returned one is the scene (latent and image)
                let layout = Layout {
                    latent: self.encode_fitted(scene)?,
                    image: scene.clone(),
                    poses: None,
                };
                let image = self.render(scene, &layout, prompt, opts, progress, cancel)?;
                return Ok((layout, image));
            }
            Method::Skeleguide | Method::Stage1Only => {}
        }
        let layout = self.reason(scene, prompt, opts, &mut *progress, cancel)?;
        let image = self.render(scene, &layout, prompt, opts, progress, cancel)?;
        Ok((layout, image))
    }
}

fn hash_image(img: &RgbImage) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ ((img.width() as u64) << 32 | img.height() as u64);
    for chunk in img.as_raw().chunks(8) {
        let mut v = 0u64;
        for (i, b) in chunk.iter().enumerate() {
            v |= (*b as u64) << (8 * i);
        }
        h = (h ^ v).wrapping_mul(0x100_0000_01b3).rotate_left(29);
    }
    h
}

/// Which decoder turns a layout image into poses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InverterChoice {
    /// The colour-segmentation decoder when the image carries the palette exactly (a clean
    /// layout file: there it is the more accurate), else the network (a decoded layout, a
    /// JPEG, a photo: there the colour decoder reads little). See
    /// [`crate::inverter::ColorDecoder::reads_cleanly`] and assets/models/tiny/INVERTER.md.
    #[default]
    Auto,
    /// The network: the model directory's, else the embedded shipped weights.
    Network,
    /// The training-free colour-segmentation decoder.
    Colour,
}

/// The poses of a layout image (see [`InverterChoice`]), on the CPU (the network is small).
/// Coordinates are in the image's own pixels.
pub fn invert_layout_image(
    model_dir: Option<&Path>,
    image: &RgbImage,
    choice: InverterChoice,
) -> Result<PoseSet> {
    invert_choosing(image, choice, |img| {
        crate::inverter::PoseInverter::for_model_dir(model_dir, &Device::Cpu)
            .map_err(inverter_input)?
            .invert(img)
            .map_err(inverter_input)
    })
}

fn inverter_input(e: crate::inverter::InverterError) -> PipelineError {
    PipelineError::Input(e.to_string())
}

/// The colour decoder or `network`, as `choice` says.
fn invert_choosing(
    image: &RgbImage,
    choice: InverterChoice,
    network: impl FnOnce(&RgbImage) -> Result<PoseSet>,
) -> Result<PoseSet> {
    let colour = crate::inverter::ColorDecoder::default();
    if choice == InverterChoice::Colour {
        return colour.invert(image).map_err(inverter_input);
    }
    if choice == InverterChoice::Auto {
        if let Some(set) = colour.invert_if_clean(image).map_err(inverter_input)? {
            return Ok(set);
        }
    }
    network(image)
}

/// The working size of a `w`×`h` image for a model of `resolution` whose autoencoder
/// downsamples by `downsample`: longest side = resolution, aspect kept, sides multiples of
/// 2 × `downsample` (the DiT packs 2×2 latent patches).
pub fn fit_working_size(resolution: u32, downsample: usize, w: u32, h: u32) -> (u32, u32) {
    let unit = (downsample * 2) as u32;
    let s = resolution as f64 / w.max(h) as f64;
    let side = |v: u32| (((v as f64 * s) / unit as f64).round() as u32).max(1) * unit;
    (side(w), side(h))
}

/// An image as autoencoder input `(1, 3, H, W)` in [-1, 1].
fn image_to_tensor(img: &RgbImage, device: &Device, dtype: DType) -> Result<Tensor> {
    let (w, h) = img.dimensions();
    let data: Vec<f32> = img
        .as_raw()
        .iter()
        .map(|&v| v as f32 / 127.5 - 1.0)
        .collect();
    let t = Tensor::from_vec(data, (1, h as usize, w as usize, 3), &Device::Cpu)?
        .permute((0, 3, 1, 2))?
        .contiguous()?;
    Ok(t.to_dtype(dtype)?.to_device(device)?)
}

/// A stage-1 layout from its latent and its decoding at the working size, scaled to the scene's
/// size.
fn layout_at_scene_size(scene: &RgbImage, latent: Tensor, decoded: RgbImage) -> Layout {
    let image = if decoded.dimensions() == scene.dimensions() {
        decoded
    } else {
        imageops::resize(
            &decoded,
            scene.width(),
            scene.height(),
            imageops::FilterType::Triangle,
        )
    };
    Layout {
        latent,
        image,
        poses: None,
    }
}

/// The first image of a decoded batch `(B, 3, H, W)` in about [-1, 1], as RGB8.
pub fn tensor_to_image(t: &Tensor) -> Result<RgbImage> {
    let (_, c, h, w) = t.dims4()?;
    if c != 3 {
        return Err(PipelineError::Input(format!(
            "decoded image has {c} channels"
        )));
    }
    let v: Vec<f32> = t
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .get(0)?
        .permute((1, 2, 0))?
        .flatten_all()?
        .to_vec1()?;
    let bytes = v
        .iter()
        .map(|x| ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8)
        .collect();
    RgbImage::from_raw(w as u32, h as u32, bytes)
        .ok_or_else(|| PipelineError::Input("decoded image has a bad size".into()))
}

/// The autoencoder of a model directory (its `ae.safetensors`, of the configured kind).
fn load_autoencoder(
    dir: &Path,
    cfg: &ModelConfig,
    device: &Device,
    dtype: DType,
) -> Result<Box<dyn Autoencoder>> {
    let file = dir.join(modeldir::AE_FILE);
    Ok(match &cfg.ae {
        AeSpec::Tiny { config } => Box::new(in_file(TinyAe::load(&file, config, device), &file)?),
        AeSpec::Flux => Box::new(in_file(FluxAe::load(&file, device, dtype), &file)?),
    })
}

/// A model file's load error naming the file (once: messages that name it already keep theirs).
fn in_file<T>(r: std::result::Result<T, ModelError>, file: &Path) -> Result<T> {
    r.map_err(|e| {
        let msg = e.to_string();
        let shown = file.display().to_string();
        if msg.contains(&shown) {
            PipelineError::Model(e)
        } else {
            PipelineError::Input(format!("{shown}: {msg}"))
        }
    })
}

/// A model directory's autoencoder alone, doing to an image what the pipeline does to a layout:
/// fit it to the working size, encode, decode, scale back. For measuring the round trip and
/// for training readers of round-tripped layouts (the PoseInverter) without loading the DiT.
pub struct AeRoundTrip {
    ae: Box<dyn Autoencoder>,
    resolution: u32,
    device: Device,
    dtype: DType,
}

impl AeRoundTrip {
    /// Loads `dir`'s `config.json` and autoencoder.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let cfg = ModelConfig::load(dir)?;
        let dtype = crate::model::default_dtype(device);
        Ok(AeRoundTrip {
            ae: load_autoencoder(dir, &cfg, device, dtype)?,
            resolution: cfg.resolution,
            device: device.clone(),
            dtype,
        })
    }

    /// The image after the round trip, at its own size.
    pub fn round_trip(&self, img: &RgbImage) -> Result<RgbImage> {
        let (w, h) = img.dimensions();
        let (ww, wh) = fit_working_size(self.resolution, self.ae.downsample(), w, h);
        let fitted = imageops::resize(img, ww, wh, imageops::FilterType::Triangle);
        let x = image_to_tensor(&fitted, &self.device, self.dtype)?;
        let out = tensor_to_image(&self.ae.decode(&self.ae.encode(&x)?)?)?;
        Ok(imageops::resize(&out, w, h, imageops::FilterType::Triangle))
    }
}

/// The default device: CUDA with the `cuda` feature when available, else the CPU.
pub fn default_device() -> Result<Device> {
    Ok(crate::model::default_device()?)
}
