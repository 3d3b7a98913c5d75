//! `skeleguide-train eval`: a model directory measured on a manifest data set (normally a test
//! split), through `engine::pipeline::Pipeline` and the engine's metrics only.
//!
//! Per example: `generate` (reason, then render) on the background with the record's prompt,
//! timed; then
//! - `layout_pckh` and `count_acc`: the stage-1 layout is inverted to poses, people are matched
//!   to the ground truth one-to-one, PCKh@0.5 (`engine::metrics::pose`:
//!   head size 2 × nose–neck); the count is right when the
//!   inverted layout has as many people as the ground truth;
//! - `pose_pckh`: the same after moving each matched person onto its ground truth
//!   (`pckh_aligned`): the pose, whatever the placement;
//! - `layout_pckh_redrawn` / `pose_pckh_redrawn` (synthetic data only, no model involved): the
//!   generator draws each example's people again for the same scene until the prompt would
//!   describe them the same way ([`redraw_people`]), and that draw is scored like a layout. A
//!   prompt never says where on the street or on the bench a person is, so this is what a model
//!   that samples the data's own distribution exactly would score: the reference that the
//!   model's `layout_pckh` should be read against;
//! - `bg_psnr` / `bg_ssim`: the output against the input scene, only outside the ground-truth
//!   person region (the record's mask, or the skeleton, united with the drawn skeleton and
//!   dilated by a sixteenth of the longest side). Both modes are reported: the raw output
//!   (`*_plain`) and with the scene pasted back outside the pipeline's person region
//!   (`*_keep_background`, what `RunOptions::keep_background` does); `bg_psnr`/`bg_ssim` are the
//!   mode chosen with `--keep-background`. PSNR is capped at [`PSNR_CAP`] dB (identical pixels);
//! - `color_acc`: shirt and trouser colours read in the torso and thigh regions of the inverted
//!   people on the output, classified to the nearest named colour, against the matched ground
//!   truth person's colours (synthetic `facts.people[].shirt/trousers`); an unreadable region or
//!   an unmatched person counts as wrong;
//! - `limb_ratio_err`: the inverted people's limb lengths against the body model's ratios
//!   ([`appearance::limb_ratio_error`]); `limb_ratio_err_gt` is the same on the ground truth, the
//!   floor that projection alone gives;
//! - `ms_per_image`: mean wall time of `generate`;
//! - `prompts_truncated`: the share of examples whose stage-1 prompt the text encoder cuts.
//!
//! A metric that a method or model cannot produce is `null`, with the reason in `null_reasons`
//! (no PoseInverter in the model directory, no layout in the single-stage baseline, no colour
//! facts in real data).

pub mod ablate;
pub mod appearance;
pub mod base;

use crate::data::body::LIMB_RATIOS;
use crate::data::manifest::{Manifest, ManifestError, Record, Sample};
use crate::data::synth::{redraw_people, DEFAULT_MIN_PERSON_HEIGHT};
use image::{GrayImage, RgbImage};
use serde::Serialize;
use serde_json::Value;
use skeleguide_engine::metrics::image as im;
use skeleguide_engine::metrics::pose::{count_exact, pckh, pckh_aligned, PckCount};
use skeleguide_engine::modeldir::{Method, SceneContrast, TextGuidance};
use skeleguide_engine::pipeline::{self, Pipeline, PipelineError, RunOptions};
use skeleguide_engine::pose::{layout::dilate_mask, person_mask, PoseSet};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// PSNR of identical pixels is infinite; eval reports at most this.
pub const PSNR_CAP: f64 = 100.0;
/// The ground-truth person region is dilated by the longest side divided by this.
pub const GT_MARGIN_DIV: u32 = 16;
/// PCKh threshold (fraction of the head size).
pub const PCKH_ALPHA: f64 = 0.5;
/// The metrics read from the inverted stage-1 layout (null together when there is none).
const POSE_METRICS: [&str; 5] = [
    "layout_pckh",
    "pose_pckh",
    "count_acc",
    "color_acc",
    "limb_ratio_err",
];
/// Fresh draws of an example's people tried for `layout_pckh_redrawn`.
pub const REDRAW_TRIES: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Dir(#[from] skeleguide_engine::modeldir::ModelDirError),
    #[error("{0}")]
    Invalid(String),
}

/// What to evaluate.
#[derive(Clone, Debug, Default)]
pub struct EvalOptions {
    /// Evaluate the first `count` records (all when `None`).
    pub count: Option<usize>,
    /// Sampling steps per stage (the model's default when `None`).
    pub steps: Option<usize>,
    /// Example `i` is generated with seed `seed + i`.
    pub seed: u64,
    /// Which background mode `bg_psnr`/`bg_ssim` report.
    pub keep_background: bool,
    /// Keep the images of the first this many examples (for grids).
    pub keep_images: usize,
    /// Classifier-free guidance per stage (the model's default when `None`).
    pub guidance: Option<TextGuidance>,
    /// Stage-1 candidates per example (the model's `reason_candidates` when `None`).
    pub candidates: Option<usize>,
    /// Stage 1's scene contrast (the model's `reason_contrast` when `None`).
    pub contrast: Option<SceneContrast>,
}

/// The numbers `eval --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub method: String,
    pub data: String,
    pub examples: usize,
    pub steps: usize,
    /// The classifier-free guidance each stage sampled with.
    pub guidance: TextGuidance,
    /// Stage-1 layouts sampled per example, the best read back kept.
    pub candidates: usize,
    /// Stage 1's scene contrast.
    pub contrast: SceneContrast,
    pub keep_background: bool,
    pub layout_pckh: Option<f64>,
    /// PCKh@0.5 with each matched person moved onto its ground truth: the pose alone.
    pub pose_pckh: Option<f64>,
    pub count_acc: Option<f64>,
    /// People asked for → people read back from the stage-1 layout, examples per cell.
    pub count_confusion: CountConfusion,
    /// The generator's own second draw for the same scene and prompt, scored as a layout.
    pub layout_pckh_redrawn: Option<f64>,
    pub pose_pckh_redrawn: Option<f64>,
    /// Examples whose people were drawn again (of `examples`).
    pub redrawn_examples: usize,
    pub bg_psnr: Option<f64>,
    pub bg_ssim: Option<f64>,
    pub bg_psnr_plain: Option<f64>,
    pub bg_ssim_plain: Option<f64>,
    pub bg_psnr_keep_background: Option<f64>,
    pub bg_ssim_keep_background: Option<f64>,
    pub color_acc: Option<f64>,
    pub limb_ratio_err: Option<f64>,
    pub limb_ratio_err_gt: Option<f64>,
    pub ms_per_image: f64,
    /// Share of the examples whose stage-1 prompt is longer than the text encoder reads.
    pub prompts_truncated: f64,
    /// Why a metric is null, by metric name.
    pub null_reasons: BTreeMap<String, String>,
}

/// The images of one evaluated example (for the ablation grids).
#[derive(Clone, Debug)]
pub struct ExampleImages {
    pub id: String,
    pub scene: RgbImage,
    /// The stage-1 layout image, for methods that have one.
    pub layout: Option<RgbImage>,
    pub output: RgbImage,
}

/// Scenes on the sample sheet `eval --samples` writes.
pub const SAMPLE_SHEET_SCENES: usize = 16;

/// The examples as a sheet of (scene | stage-1 layout | output) triplets, `per_row` triplets
/// to a row, every tile at the first scene's size; `None` without examples.
pub fn sample_sheet(examples: &[ExampleImages], per_row: usize) -> Option<RgbImage> {
    let first = examples.first()?;
    let (tw, th) = first.scene.dimensions();
    let (gap, inner) = (6u32, 1u32);
    let per_row = per_row.clamp(1, examples.len()) as u32;
    let rows = (examples.len() as u32).div_ceil(per_row);
    let cell_w = 3 * tw + 2 * inner;
    let mut sheet = RgbImage::from_pixel(
        per_row * cell_w + (per_row + 1) * gap,
        rows * th + (rows + 1) * gap,
        image::Rgb([255, 255, 255]),
    );
    let blank = RgbImage::from_pixel(tw, th, image::Rgb([96, 96, 96]));
    for (i, ex) in examples.iter().enumerate() {
        let (col, row) = (i as u32 % per_row, i as u32 / per_row);
        let tiles = [&ex.scene, ex.layout.as_ref().unwrap_or(&blank), &ex.output];
        for (k, t) in tiles.into_iter().enumerate() {
            let tile = if t.dimensions() == (tw, th) {
                t.clone()
            } else {
                image::imageops::resize(t, tw, th, image::imageops::FilterType::Triangle)
            };
            let x = gap + col * (cell_w + gap) + k as u32 * (tw + inner);
            let y = gap + row * (th + gap);
            image::imageops::replace(&mut sheet, &tile, x as i64, y as i64);
        }
    }
    Some(sheet)
}

/// A running mean that remembers whether anything was added.
#[derive(Default)]
pub(crate) struct Mean {
    sum: f64,
    n: usize,
}

impl Mean {
    pub(crate) fn add(&mut self, v: f64) {
        self.sum += v;
        self.n += 1;
    }
    pub(crate) fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// How many people each layout was asked for against how many the PoseInverter read back:
/// whether the model follows the prompt's count at all, beyond `count_acc`.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(transparent)]
pub struct CountConfusion(BTreeMap<usize, BTreeMap<usize, usize>>);

impl CountConfusion {
    pub(crate) fn add(&mut self, asked: usize, drawn: usize) {
        *self.0.entry(asked).or_default().entry(drawn).or_default() += 1;
    }

    /// One line per asked count: "asked 2: drawn 0×3, 1×9, 2×20".
    pub fn lines(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(asked, drawn)| {
                let cells: Vec<String> = drawn.iter().map(|(d, n)| format!("{d}×{n}")).collect();
                format!("asked {asked}: drawn {}", cells.join(", "))
            })
            .collect()
    }
}

/// The ground-truth person region: the record's mask (when present) united with the drawn
/// skeleton, dilated by the longest side / [`GT_MARGIN_DIV`].
pub fn gt_region(sample: &Sample) -> GrayImage {
    let (w, h) = sample.image.dimensions();
    let mut m = person_mask(&sample.poses, 0);
    if let Some(mask) = &sample.mask {
        for (d, s) in m.pixels_mut().zip(mask.pixels()) {
            if s.0[0] > 0 {
                d.0[0] = 255;
            }
        }
    }
    dilate_mask(&mut m, (w.max(h) / GT_MARGIN_DIV).max(1));
    m
}

/// (shirt, trousers) colour names of each ground-truth person, from synthetic `facts`.
fn colour_facts(fields: &serde_json::Map<String, Value>) -> Option<Vec<(String, String)>> {
    let people = fields.get("facts")?.get("people")?.as_array()?;
    people
        .iter()
        .map(|p| {
            Some((
                p.get("shirt")?.as_str()?.to_string(),
                p.get("trousers")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Whether the method produces a stage-1 layout that can be inverted.
pub fn has_layout(method: Method) -> bool {
    !matches!(method, Method::SingleStage)
}

pub fn method_name(method: Method) -> String {
    serde_json::to_value(method)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{method:?}"))
}

/// Evaluates the model directory `model` on the manifest `data`. `progress(done, total)` is
/// called after each example.
pub fn evaluate(
    model: &Path,
    data: &Path,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(EvalReport, Vec<ExampleImages>), EvalError> {
    let manifest = Manifest::open(data)?;
    let device = pipeline::default_device()?;
    let mut pipe = Pipeline::load(model, &device)?;
    let method = pipe.config().method;
    let steps = opts.steps.unwrap_or(pipe.config().steps);
    if steps == 0 {
        return Err(EvalError::Invalid("--steps must be at least 1".into()));
    }
    let n = opts.count.unwrap_or(manifest.len()).min(manifest.len());
    if n == 0 {
        return Err(EvalError::Invalid("--count must be at least 1".into()));
    }
    let cancel = AtomicBool::new(false);
    let mut reasons = BTreeMap::new();
    let layout_ok = has_layout(method);
    if !layout_ok {
        for k in POSE_METRICS {
            reasons.insert(
                k.to_string(),
                "the single-stage baseline makes no layout, so there are no poses to score".into(),
            );
        }
        reasons.insert(
            "bg_psnr_keep_background".into(),
            "keep-background needs the layout's person region; single-stage has none".into(),
        );
        reasons.insert(
            "bg_ssim_keep_background".into(),
            "keep-background needs the layout's person region; single-stage has none".into(),
        );
    }
    let mut inverter_error: Option<String> = None;
    let mut layout_pck = PckCount::default();
    let mut pose_pck = PckCount::default();
    let mut redrawn_pck = PckCount::default();
    let mut redrawn_pose_pck = PckCount::default();
    let mut redrawn_examples = 0usize;
    let mut redraw_missing: Option<String> = None;
    let mut count_ok = Mean::default();
    let mut confusion = CountConfusion::default();
    let mut psnr_plain = Mean::default();
    let mut ssim_plain = Mean::default();
    let mut psnr_keep = Mean::default();
    let mut ssim_keep = Mean::default();
    let mut colour = Mean::default();
    let mut colour_facts_seen = false;
    let mut limb = Mean::default();
    let mut limb_gt = Mean::default();
    let mut ms = Mean::default();
    let mut truncated = Mean::default();
    let mut images = Vec::new();
    for (i, rec) in manifest.records.iter().take(n).enumerate() {
        let sample = rec.load()?;
        let scene = &sample.background;
        let run = RunOptions {
            steps,
            seed: opts.seed.wrapping_add(i as u64),
            keep_background: false,
            guidance: opts.guidance,
            candidates: opts.candidates,
            contrast: opts.contrast,
        };
        let t = Instant::now();
        let (layout, out) = pipe
            .generate(scene, &sample.prompt, &run, &mut |_, _, _| {}, &cancel)
            .map_err(|e| {
                EvalError::Invalid(format!(
                    "{} (record {}): {e}",
                    manifest.path.display(),
                    rec.id
                ))
            })?;
        ms.add(t.elapsed().as_secs_f64() * 1e3);
        truncated.add(pipe.prompt_truncated(&sample.prompt)? as u8 as f64);

        let region = gt_region(&sample);
        let cap = |v: f64| v.min(PSNR_CAP);
        let bg = |img: &RgbImage| -> Result<(Option<f64>, Option<f64>), EvalError> {
            let p = im::psnr_masked(img, scene, &region)
                .map_err(|e| EvalError::Invalid(format!("record {}: {e}", rec.id)))?;
            let s = im::ssim_masked(img, scene, &region).ok().flatten();
            Ok((p.map(cap), s))
        };
        let (p, s) = bg(&out)?;
        if let Some(v) = p {
            psnr_plain.add(v);
        }
        if let Some(v) = s {
            ssim_plain.add(v);
        }
        if layout_ok {
            let kept = pipe.keep_scene(scene, &out, &layout)?;
            let (p, s) = bg(&kept)?;
            if let Some(v) = p {
                psnr_keep.add(v);
            }
            if let Some(v) = s {
                ssim_keep.add(v);
            }
        }
        for person in &sample.poses.people {
            if let Some(e) = appearance::limb_ratio_error(person, &LIMB_RATIOS) {
                limb_gt.add(e);
            }
        }
        match redrawn(rec, &sample) {
            Ok(again) => {
                redrawn_examples += 1;
                redrawn_pck.add(pckh(&again, &sample.poses, PCKH_ALPHA));
                redrawn_pose_pck.add(pckh_aligned(&again, &sample.poses, PCKH_ALPHA));
            }
            Err(why) => {
                redraw_missing.get_or_insert(why);
            }
        }

        if layout_ok && inverter_error.is_none() {
            match pipe.invert(&layout) {
                Ok(pred) => {
                    let pred = if (pred.width, pred.height) == scene.dimensions() {
                        pred
                    } else {
                        pred.resized(scene.width(), scene.height())
                    };
                    layout_pck.add(pckh(&pred, &sample.poses, PCKH_ALPHA));
                    pose_pck.add(pckh_aligned(&pred, &sample.poses, PCKH_ALPHA));
                    count_ok.add(count_exact(&pred, &sample.poses) as u8 as f64);
                    confusion.add(sample.poses.people.len(), pred.people.len());
                    for p in &pred.people {
                        if let Some(e) = appearance::limb_ratio_error(p, &LIMB_RATIOS) {
                            limb.add(e);
                        }
                    }
                    if let Some(facts) = colour_facts(&rec.fields) {
                        colour_facts_seen = true;
                        score_colours(&out, &pred, &sample.poses, &facts, &mut colour);
                    }
                }
                Err(e @ PipelineError::NoInverter(_)) => inverter_error = Some(e.to_string()),
                Err(e) => {
                    return Err(EvalError::Invalid(format!(
                        "record {}: invert: {e}",
                        rec.id
                    )))
                }
            }
        }
        if images.len() < opts.keep_images {
            images.push(ExampleImages {
                id: rec.id.clone(),
                scene: scene.clone(),
                layout: layout_ok.then(|| layout.image.clone()),
                output: if opts.keep_background && layout_ok {
                    pipe.keep_scene(scene, &out, &layout)?
                } else {
                    out
                },
            });
        }
        progress(i + 1, n);
    }
    if let Some(e) = &inverter_error {
        for k in POSE_METRICS {
            reasons.insert(k.to_string(), e.clone());
        }
    } else if layout_ok && !colour_facts_seen {
        reasons.insert(
            "color_acc".into(),
            "the data has no colour facts (synthetic facts.people[].shirt/trousers)".into(),
        );
    }
    if layout_ok && inverter_error.is_none() && limb.get().is_none() {
        reasons
            .entry("limb_ratio_err".into())
            .or_insert_with(|| "no inverted person had enough limbs".into());
    }
    let scored =
        |c: &PckCount| (layout_ok && inverter_error.is_none() && c.total > 0).then(|| c.value());
    let (layout_pckh, pose_pckh) = (scored(&layout_pck), scored(&pose_pck));
    if redrawn_examples == 0 || redrawn_pck.total == 0 {
        let why = redraw_missing
            .unwrap_or_else(|| "no redrawn person had a head size to score against".into());
        reasons.insert("layout_pckh_redrawn".into(), why.clone());
        reasons.insert("pose_pckh_redrawn".into(), why);
    }
    let redrawn_value = |c: &PckCount| (redrawn_examples > 0 && c.total > 0).then(|| c.value());
    let (bg_psnr, bg_ssim) = if opts.keep_background {
        (psnr_keep.get(), ssim_keep.get())
    } else {
        (psnr_plain.get(), ssim_plain.get())
    };
    let mut report = EvalReport {
        model: model.display().to_string(),
        method: method_name(method),
        data: manifest.path.display().to_string(),
        examples: n,
        steps,
        guidance: opts.guidance.unwrap_or(pipe.config().text_guidance),
        candidates: pipe.candidates(opts.candidates),
        contrast: pipe.contrast(opts.contrast),
        keep_background: opts.keep_background,
        layout_pckh,
        pose_pckh,
        count_acc: if inverter_error.is_none() {
            count_ok.get()
        } else {
            None
        },
        count_confusion: confusion,
        bg_psnr,
        bg_ssim,
        bg_psnr_plain: psnr_plain.get(),
        bg_ssim_plain: ssim_plain.get(),
        bg_psnr_keep_background: psnr_keep.get(),
        bg_ssim_keep_background: ssim_keep.get(),
        color_acc: colour.get(),
        limb_ratio_err: limb.get(),
        limb_ratio_err_gt: limb_gt.get(),
        layout_pckh_redrawn: redrawn_value(&redrawn_pck),
        pose_pckh_redrawn: redrawn_value(&redrawn_pose_pck),
        redrawn_examples,
        ms_per_image: ms.get().unwrap_or(0.0),
        prompts_truncated: truncated.get().unwrap_or(0.0),
        null_reasons: BTreeMap::new(),
    };
    // every null metric gets a reason
    let fallback = "no example had a region to measure (the person mask covers the image, or the image is smaller than the SSIM window)";
    let values: [(&str, bool); 15] = [
        ("layout_pckh", report.layout_pckh.is_none()),
        ("pose_pckh", report.pose_pckh.is_none()),
        ("count_acc", report.count_acc.is_none()),
        ("layout_pckh_redrawn", report.layout_pckh_redrawn.is_none()),
        ("pose_pckh_redrawn", report.pose_pckh_redrawn.is_none()),
        ("bg_psnr", report.bg_psnr.is_none()),
        ("bg_ssim", report.bg_ssim.is_none()),
        ("bg_psnr_plain", report.bg_psnr_plain.is_none()),
        ("bg_ssim_plain", report.bg_ssim_plain.is_none()),
        (
            "bg_psnr_keep_background",
            report.bg_psnr_keep_background.is_none(),
        ),
        (
            "bg_ssim_keep_background",
            report.bg_ssim_keep_background.is_none(),
        ),
        ("color_acc", report.color_acc.is_none()),
        ("limb_ratio_err", report.limb_ratio_err.is_none()),
        ("limb_ratio_err_gt", report.limb_ratio_err_gt.is_none()),
        ("ms_per_image", false),
    ];
    for (k, null) in values {
        if null {
            let r = reasons
                .get(k)
                .cloned()
                .or_else(|| {
                    (k == "bg_psnr" || k == "bg_ssim")
                        .then(|| {
                            let m = if opts.keep_background {
                                "keep_background"
                            } else {
                                "plain"
                            };
                            reasons.get(&format!("{k}_{m}")).cloned()
                        })
                        .flatten()
                })
                .unwrap_or_else(|| match k {
                    "limb_ratio_err_gt" => "no ground-truth person had enough limbs".into(),
                    _ => fallback.into(),
                });
            report.null_reasons.insert(k.to_string(), r);
        }
    }
    Ok((report, images))
}

/// The generator's second draw of a synthetic record's people ([`redraw_people`]), or why
/// there is none: not synthetic, not square, no accepted draw, or the generator no longer
/// reproduces the record's own people (data written by another version).
fn redrawn(rec: &Record, sample: &Sample) -> Result<PoseSet, String> {
    let seed = rec
        .fields
        .get("seed")
        .and_then(Value::as_u64)
        .filter(|_| rec.fields.get("facts").is_some());
    let Some(seed) = seed else {
        return Err("the data is not synthetic (records have no generator seed and facts)".into());
    };
    let gt = &sample.poses;
    if gt.width != gt.height {
        return Err(format!(
            "record {}: the generator makes square images only",
            rec.id
        ));
    }
    let min_height = rec
        .fields
        .get("min_person_height")
        .and_then(Value::as_f64)
        .unwrap_or(DEFAULT_MIN_PERSON_HEIGHT);
    let r = redraw_people(gt.width, min_height, seed, REDRAW_TRIES)
        .map_err(|e| format!("record {}: {e}", rec.id))?;
    if !same_people(&r.original, gt) {
        return Err(format!(
            "record {}: this generator draws other people for seed {seed} than the data holds (written by another version)",
            rec.id
        ));
    }
    r.redrawn.ok_or_else(|| {
        format!(
            "record {}: no draw out of {} got people the prompt describes the same way",
            rec.id, r.draws
        )
    })
}

/// Whether two pose sets hold the same people in the same order (to 0.05 px, as pose files
/// round coordinates).
fn same_people(a: &PoseSet, b: &PoseSet) -> bool {
    a.people.len() == b.people.len()
        && a.people.iter().zip(&b.people).all(|(p, q)| {
            p.joints.iter().zip(&q.joints).all(|(u, v)| match (u, v) {
                (Some(u), Some(v)) => (u.x - v.x).abs() < 0.05 && (u.y - v.y).abs() < 0.05,
                (None, None) => true,
                _ => false,
            })
        })
}

/// Adds one 0/1 score per garment of each ground-truth person.
fn score_colours(
    out: &RgbImage,
    pred: &PoseSet,
    gt: &PoseSet,
    facts: &[(String, String)],
    colour: &mut Mean,
) {
    let matches = skeleguide_engine::metrics::pose::match_people(pred, gt);
    for (gi, m) in matches.iter().enumerate() {
        let Some((shirt, trousers)) = facts.get(gi) else {
            continue;
        };
        let (s, t) = match m {
            Some(pi) => appearance::read_clothes(out, &pred.people[*pi]),
            None => (None, None),
        };
        colour.add((s == Some(shirt.as_str())) as u8 as f64);
        colour.add((t == Some(trousers.as_str())) as u8 as f64);
    }
}

/// The report as a readable table.
pub fn format_report(r: &EvalReport) -> String {
    let f = |v: Option<f64>, digits: usize| match v {
        Some(v) => format!("{v:.digits$}"),
        None => "n/a".to_string(),
    };
    let mut s = format!(
        "model {} ({}) on {} examples of {}, {} steps per stage\n",
        r.model, r.method, r.examples, r.data, r.steps
    );
    let rows = [
        ("layout PCKh@0.5", f(r.layout_pckh, 3)),
        ("pose PCKh@0.5 (aligned)", f(r.pose_pckh, 3)),
        ("count accuracy", f(r.count_acc, 3)),
        ("bg PSNR (plain)", f(r.bg_psnr_plain, 2)),
        ("bg SSIM (plain)", f(r.bg_ssim_plain, 4)),
        ("bg PSNR (keep bg)", f(r.bg_psnr_keep_background, 2)),
        ("bg SSIM (keep bg)", f(r.bg_ssim_keep_background, 4)),
        ("colour accuracy", f(r.color_acc, 3)),
        ("limb ratio error", f(r.limb_ratio_err, 3)),
        ("limb ratio error (GT)", f(r.limb_ratio_err_gt, 3)),
        ("ms per image", format!("{:.0}", r.ms_per_image)),
        ("prompts truncated", format!("{:.3}", r.prompts_truncated)),
        (
            "guidance",
            format!("reason {} render {}", r.guidance.reason, r.guidance.render),
        ),
        ("stage-1 candidates", r.candidates.to_string()),
        (
            "stage-1 scene contrast",
            format!("{} until σ {}", r.contrast.scale, r.contrast.until),
        ),
    ];
    for (k, v) in rows {
        s.push_str(&format!("  {k:<24} {v}\n"));
    }
    if r.redrawn_examples > 0 {
        s.push_str(&format!(
            "  the data's own second draw ({} examples): layout PCKh {}, pose PCKh {}\n",
            r.redrawn_examples,
            f(r.layout_pckh_redrawn, 3),
            f(r.pose_pckh_redrawn, 3)
        ));
    }
    for line in r.count_confusion.lines() {
        s.push_str(&format!("  people {line}\n"));
    }
    for (k, v) in &r.null_reasons {
        s.push_str(&format!("  {k} is n/a: {v}\n"));
    }
    s
}
