//! `skeleguide generate | reason | render`: the two-stage pipeline from the command line, with
//! a progress bar per stage. Written PNGs carry their parameters in text chunks.

use crate::export;
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use skeleguide_engine::imageio;
use skeleguide_engine::pipeline::{Layout, Pipeline, RunOptions};
use skeleguide_engine::pose::{self, ExportOptions, ImportOptions, PoseSet};
use skeleguide_engine::sampling::Stage;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory (config.json + weights).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sampling steps per stage (default: the model's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance on the prompt for both stages, 1 = none (default: the model's
    /// text_guidance in config.json).
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Guidance for stage 1 alone (the pose).
    #[arg(long)]
    pub guidance_reason: Option<f64>,
    /// Guidance for stage 2 alone (the render).
    #[arg(long)]
    pub guidance_render: Option<f64>,
}

/// Whether the scene's own pixels are kept outside the person (the default).
#[derive(Args, Debug, Clone, Copy)]
pub struct BackgroundArgs {
    /// Return the model's whole image (scaled up from its working size) instead of keeping the
    /// scene's own pixels, at full resolution, outside the person.
    #[arg(long)]
    pub no_keep_background: bool,
    /// Keep the scene outside the person (the default; kept for older scripts).
    #[arg(long, hide = true, conflicts_with = "no_keep_background")]
    pub keep_background: bool,
}

impl BackgroundArgs {
    pub fn keep(&self) -> bool {
        !self.no_keep_background
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Scene image (PNG or JPEG), any size.
    #[arg(long)]
    pub scene: PathBuf,
    /// What to put in the scene, e.g. "a man in a blue shirt sitting on the bench".
    #[arg(long)]
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output image (PNG).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write the reasoned layout image.
    #[arg(long)]
    pub layout_out: Option<PathBuf>,
    /// Also write the reasoned pose (needs a model with a PoseInverter).
    #[arg(long)]
    pub pose_out: Option<PathBuf>,
    #[command(flatten)]
    pub background: BackgroundArgs,
    /// Stage-1 layouts to sample, keeping the one read back with the prompt's person count and
    /// the best-shaped skeletons (default: the model's reason_candidates; 1: no choice).
    #[arg(long)]
    pub candidates: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ReasonArgs {
    #[arg(long)]
    pub scene: PathBuf,
    #[arg(long)]
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output layout image (PNG).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write the pose (needs a model with a PoseInverter).
    #[arg(long)]
    pub pose_out: Option<PathBuf>,
    /// Stage-1 layouts to sample, keeping the one read back with the prompt's person count and
    /// the best-shaped skeletons (default: the model's reason_candidates; 1: no choice).
    #[arg(long)]
    pub candidates: Option<usize>,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    #[arg(long)]
    pub scene: PathBuf,
    /// Pose JSON to render (drawn over the scene by the layout rasteriser).
    #[arg(long, conflicts_with = "layout", required_unless_present = "layout")]
    pub pose: Option<PathBuf>,
    /// Layout image to render (e.g. from `skeleguide reason`).
    #[arg(long)]
    pub layout: Option<PathBuf>,
    #[arg(long)]
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub background: BackgroundArgs,
}

fn model_dir(args: &ModelArgs) -> Result<PathBuf> {
    match &args.model {
        Some(d) => Ok(d.clone()),
        None => match crate::default_model_dir() {
            Some(d) => Ok(d),
            None => bail!(
                "no model: pass --model DIR or set {} (the shipped model assets/models/tiny is missing from this checkout; make an untrained one with `skeleguide-train init --preset tiny --out DIR`)",
                crate::MODEL_ENV
            ),
        },
    }
}

/// `--candidates`, range-checked.
fn candidates(k: Option<usize>) -> Result<Option<usize>> {
    if let Some(k) = k {
        skeleguide_engine::select::check_candidates("--candidates", k)
            .map_err(anyhow::Error::msg)?;
    }
    Ok(k)
}

fn load(args: &ModelArgs) -> Result<(Pipeline, RunOptions)> {
    let dir = model_dir(args)?;
    let device = skeleguide_engine::pipeline::default_device()?;
    let p = Pipeline::load(&dir, &device)?;
    let steps = args.steps.unwrap_or(p.config().steps);
    if steps == 0 || steps > 1000 {
        bail!("--steps {steps}: use 1 to 1000");
    }
    let guidance = p.config().text_guidance.overridden(
        args.guidance,
        args.guidance_reason,
        args.guidance_render,
    );
    if let Err(e) = guidance.check() {
        bail!("--guidance: {}", e.trim_start_matches("text_guidance."));
    }
    Ok((
        p,
        RunOptions {
            steps,
            seed: args.seed,
            keep_background: true,
            guidance: Some(guidance),
            candidates: None,
            contrast: None,
        },
    ))
}

/// One progress bar per stage, created when the stage starts.
struct Bars {
    current: Option<(Stage, ProgressBar)>,
}

impl Bars {
    fn new() -> Self {
        Bars { current: None }
    }

    fn update(&mut self, stage: Stage, step: usize, total: usize) {
        if self.current.as_ref().is_none_or(|(s, _)| *s != stage) {
            if let Some((_, b)) = self.current.take() {
                b.finish();
            }
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>7} [{bar:30}] {pos}/{len} steps {elapsed_precise} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(stage.name());
            self.current = Some((stage, b));
        }
        if let Some((_, b)) = &self.current {
            b.set_position(step as u64);
        }
    }

    fn finish(&mut self) {
        if let Some((_, b)) = self.current.take() {
            b.finish();
        }
    }
}

fn check_outputs(paths: &[&Path]) -> Result<()> {
    paths
        .iter()
        .try_for_each(|p| super::pose::ensure_writable(p))
}

fn metadata(
    p: &Pipeline,
    prompt: &str,
    opts: &RunOptions,
    reasoned: bool,
    pose: Option<&PoseSet>,
) -> Vec<(&'static str, String)> {
    let label = crate::export::RunLabel::of(p, prompt, opts, reasoned);
    crate::export::metadata(&label, pose)
}

fn warn_truncated(p: &Pipeline, prompt: &str) {
    if p.prompt_truncated(prompt).unwrap_or(false) {
        eprintln!("warning: the prompt is longer than the text encoder reads; the end was dropped");
    }
}

pub fn generate(a: GenerateArgs) -> Result<()> {
    export::check_prompt(&a.prompt).map_err(|e| anyhow::anyhow!("--prompt: {e}"))?;
    let outs: Vec<&Path> = [
        Some(a.output.as_path()),
        a.layout_out.as_deref(),
        a.pose_out.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    check_outputs(&outs)?;
    let scene = imageio::read_rgb(&a.scene)?;
    let (mut p, mut opts) = load(&a.model)?;
    opts.keep_background = a.background.keep();
    opts.candidates = candidates(a.candidates)?;
    if a.pose_out.is_some() && !p.has_inverter() {
        bail!(
            "--pose-out: {} has no PoseInverter (inverter.safetensors)",
            p.model_dir().display()
        );
    }
    warn_truncated(&p, &a.prompt);
    let cancel = AtomicBool::new(false);
    let mut bars = Bars::new();
    let (layout, image) = p.generate(
        &scene,
        &a.prompt,
        &opts,
        &mut |s, i, n| bars.update(s, i, n),
        &cancel,
    )?;
    bars.finish();
    let poses = match &a.pose_out {
        Some(_) => Some(p.invert(&layout)?),
        None => None,
    };
    write_outputs(
        &p,
        &a.prompt,
        &opts,
        true,
        &a.output,
        &image,
        a.layout_out.as_deref(),
        &layout,
        a.pose_out.as_deref(),
        poses.as_ref(),
    )
}

#[allow(clippy::too_many_arguments)]
fn write_outputs(
    p: &Pipeline,
    prompt: &str,
    opts: &RunOptions,
    reasoned: bool,
    out: &Path,
    image: &image::RgbImage,
    layout_out: Option<&Path>,
    layout: &Layout,
    pose_out: Option<&Path>,
    poses: Option<&PoseSet>,
) -> Result<()> {
    let meta = metadata(p, prompt, opts, reasoned, poses.or(layout.poses.as_ref()));
    let png = |img: &image::RgbImage, path: &Path| {
        imageio::encode_png_with_text(img, &meta)
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))
    };
    let mut files = vec![(out, png(image, out)?)];
    if let Some(l) = layout_out {
        files.push((l, png(&layout.image, l)?));
    }
    if let (Some(path), Some(poses)) = (pose_out, poses) {
        let json = pose::to_json(std::slice::from_ref(poses), ExportOptions::default());
        files.push((path, json.into_bytes()));
    }
    // all of them or none: a failing --layout-out leaves no image behind
    let views: Vec<(&Path, &[u8])> = files.iter().map(|(p, b)| (*p, b.as_slice())).collect();
    skeleguide_engine::fsutil::write_all_or_none(&views)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

pub fn reason(a: ReasonArgs) -> Result<()> {
    export::check_prompt(&a.prompt).map_err(|e| anyhow::anyhow!("--prompt: {e}"))?;
    let outs: Vec<&Path> = [Some(a.output.as_path()), a.pose_out.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    check_outputs(&outs)?;
    let scene = imageio::read_rgb(&a.scene)?;
    let (mut p, mut opts) = load(&a.model)?;
    opts.candidates = candidates(a.candidates)?;
    if a.pose_out.is_some() && !p.has_inverter() {
        bail!(
            "--pose-out: {} has no PoseInverter (inverter.safetensors)",
            p.model_dir().display()
        );
    }
    warn_truncated(&p, &a.prompt);
    let cancel = AtomicBool::new(false);
    let mut bars = Bars::new();
    let layout = p.reason(
        &scene,
        &a.prompt,
        &opts,
        &mut |s, i, n| bars.update(s, i, n),
        &cancel,
    )?;
    bars.finish();
    let poses = match &a.pose_out {
        Some(_) => Some(p.invert(&layout)?),
        None => None,
    };
    write_outputs(
        &p,
        &a.prompt,
        &opts,
        true,
        &a.output,
        &layout.image,
        None,
        &layout,
        a.pose_out.as_deref(),
        poses.as_ref(),
    )
}

pub fn render(a: RenderArgs) -> Result<()> {
    export::check_prompt(&a.prompt).map_err(|e| anyhow::anyhow!("--prompt: {e}"))?;
    check_outputs(&[a.output.as_path()])?;
    let scene = imageio::read_rgb(&a.scene)?;
    let (mut p, mut opts) = load(&a.model)?;
    opts.keep_background = a.background.keep();
    let layout = match (&a.pose, &a.layout) {
        (Some(pp), _) => {
            let io = ImportOptions {
                canvas: Some(scene.dimensions()),
                normalized: None,
            };
            let doc = pose::read_pose_file(pp, &io)?;
            let set = doc
                .frames
                .into_iter()
                .next()
                .with_context(|| format!("{}: no frames", pp.display()))?;
            p.relayout(&scene, &set)?
        }
        (None, Some(lp)) => {
            let img = imageio::read_rgb(lp)?;
            p.layout_from_image(&scene, &img)?
        }
        (None, None) => bail!("give --pose P.json or --layout L.png"),
    };
    warn_truncated(&p, &a.prompt);
    let cancel = AtomicBool::new(false);
    let mut bars = Bars::new();
    let image = p.render(
        &scene,
        &layout,
        &a.prompt,
        &opts,
        &mut |s, i, n| bars.update(s, i, n),
        &cancel,
    )?;
    bars.finish();
    write_outputs(
        &p, &a.prompt, &opts, false, &a.output, &image, None, &layout, None, None,
    )
}

#[derive(Args, Debug)]
pub struct BatchArgs {
    /// Scene image.
    #[arg(long)]
    pub scene: PathBuf,
    /// Prompts file: one prompt per line (# starts a comment).
    #[arg(long)]
    pub prompts: PathBuf,
    /// Seeds, `A..B` inclusive (or one seed).
    #[arg(long, value_parser = export::parse_seeds)]
    pub seeds: (u64, u64),
    /// Render this pose for every item (otherwise each seed reasons its own).
    #[arg(long)]
    pub pose: Option<PathBuf>,
    /// Reason a pose per seed even when --pose is given.
    #[arg(long)]
    pub reason: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output directory: PNGs, pose JSONs and manifest.jsonl. Existing outputs are skipped.
    #[arg(long)]
    pub out: PathBuf,
    /// Stage-1 layouts per item when reasoning, the best read back kept (default: the model's
    /// reason_candidates).
    #[arg(long)]
    pub candidates: Option<usize>,
    #[command(flatten)]
    pub background: BackgroundArgs,
}

pub fn batch(a: BatchArgs) -> Result<()> {
    let scene = imageio::read_rgb(&a.scene)?;
    let prompts = export::read_prompts(&a.prompts).map_err(anyhow::Error::msg)?;
    let pose = match &a.pose {
        Some(pp) => {
            let io = ImportOptions {
                canvas: Some(scene.dimensions()),
                normalized: None,
            };
            let doc = pose::read_pose_file(pp, &io)?;
            Some(
                doc.frames
                    .into_iter()
                    .next()
                    .with_context(|| format!("{}: no frames", pp.display()))?,
            )
        }
        None => None,
    };
    let (mut p, opts) = load(&a.model)?;
    let spec = export::BatchSpec {
        prompts,
        seeds: a.seeds,
        pose,
        reason: a.reason,
        steps: opts.steps,
        keep_background: a.background.keep(),
        guidance: opts.guidance,
        candidates: candidates(a.candidates)?,
    };
    let bar = ProgressBar::new(spec.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "batch [{bar:30}] {pos}/{len} images {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let cancel = AtomicBool::new(false);
    let report = export::run_batch(
        &mut p,
        &scene,
        &spec,
        &a.out,
        &mut |done, _| bar.set_position(done as u64),
        &cancel,
    )?;
    bar.finish();
    eprintln!(
        "batch: {} written, {} already there, manifest {}",
        report.written,
        report.skipped,
        a.out.join("manifest.jsonl").display()
    );
    Ok(())
}
