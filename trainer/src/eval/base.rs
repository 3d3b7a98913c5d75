//! `skeleguide-train eval --base-only`: the base DiT alone drawing each test prompt's layout
//! from text (no scene, no LoRA; [`Pipeline::base_layout`]), read back by the PoseInverter.
//!
//! This gates the base before any LoRA: a base that cannot draw the right number of
//! well-formed skeletons cannot be taught placement by the skeletal LoRA. Placement is not
//! asked of it (it never sees the scene), so only the count and the aligned pose are scored:
//! - `count_acc`: the inverted layout has as many people as the ground truth;
//! - `pose_pckh`: PCKh@0.5 with each matched person moved onto its ground truth;
//! - `limb_ratio_err`: the inverted people's limbs against the body model's ratios.

use super::{appearance, CountConfusion, EvalError, EvalOptions, ExampleImages, Mean, PCKH_ALPHA};
use crate::data::body::LIMB_RATIOS;
use crate::data::manifest::Manifest;
use serde::Serialize;
use skeleguide_engine::metrics::pose::{count_exact, pckh_aligned, PckCount};
use skeleguide_engine::modeldir::TextGuidance;
use skeleguide_engine::pipeline::{self, Pipeline, RunOptions};
use skeleguide_engine::pose::layout::draw_layout;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The numbers `eval --base-only --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct BaseReport {
    pub model: String,
    pub data: String,
    pub examples: usize,
    pub steps: usize,
    pub guidance: TextGuidance,
    pub count_acc: f64,
    /// People asked for → people read back, examples per cell.
    pub count_confusion: CountConfusion,
    /// `None` when no drawn person could be matched to the ground truth.
    pub pose_pckh: Option<f64>,
    pub limb_ratio_err: Option<f64>,
    pub ms_per_image: f64,
}

/// The base of `model` drawing the layouts of `data`'s first examples (see the module doc).
/// Example `i` is sampled with seed `seed + i`; the stage-1 guidance applies. The first
/// `opts.keep_images` examples come back as (ground-truth layout | the base's drawing | the
/// people read back from it), each on black.
pub fn evaluate_base(
    model: &Path,
    data: &Path,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(BaseReport, Vec<ExampleImages>), EvalError> {
    let manifest = Manifest::open(data)?;
    let device = pipeline::default_device()?;
    let mut pipe = Pipeline::load(model, &device)?;
    let steps = opts.steps.unwrap_or(pipe.config().steps);
    if steps == 0 {
        return Err(EvalError::Invalid("--steps must be at least 1".into()));
    }
    let n = opts.count.unwrap_or(manifest.len()).min(manifest.len());
    if n == 0 {
        return Err(EvalError::Invalid("--count must be at least 1".into()));
    }
    let guidance = opts.guidance.unwrap_or(pipe.config().text_guidance);
    let cancel = AtomicBool::new(false);
    let (mut count_ok, mut limb, mut ms) = (Mean::default(), Mean::default(), Mean::default());
    let mut pose_pck = PckCount::default();
    let mut confusion = CountConfusion::default();
    let mut images = Vec::new();
    for (i, rec) in manifest.records.iter().take(n).enumerate() {
        let sample = rec.load()?;
        let (w, h) = sample.background.dimensions();
        let run = RunOptions {
            steps,
            seed: opts.seed.wrapping_add(i as u64),
            keep_background: false,
            guidance: Some(guidance),
            candidates: None,
            contrast: None,
        };
        let t = Instant::now();
        let record = |e: &dyn std::fmt::Display| {
            EvalError::Invalid(format!(
                "{} (record {}): {e}",
                manifest.path.display(),
                rec.id
            ))
        };
        let drawn = pipe
            .base_layout(w, h, &sample.prompt, &run, &cancel)
            .map_err(|e| record(&e))?;
        ms.add(t.elapsed().as_secs_f64() * 1e3);
        let pred = pipe.invert_image(&drawn).map_err(|e| record(&e))?;
        let pred = if (pred.width, pred.height) == (w, h) {
            pred
        } else {
            pred.resized(w, h)
        };
        count_ok.add(count_exact(&pred, &sample.poses) as u8 as f64);
        confusion.add(sample.poses.people.len(), pred.people.len());
        if images.len() < opts.keep_images {
            images.push(ExampleImages {
                id: rec.id.clone(),
                scene: draw_layout(None, &sample.poses),
                layout: Some(drawn.clone()),
                output: draw_layout(None, &pred),
            });
        }
        pose_pck.add(pckh_aligned(&pred, &sample.poses, PCKH_ALPHA));
        for p in &pred.people {
            if let Some(e) = appearance::limb_ratio_error(p, &LIMB_RATIOS) {
                limb.add(e);
            }
        }
        progress(i + 1, n);
    }
    let report = BaseReport {
        model: model.display().to_string(),
        data: manifest.path.display().to_string(),
        examples: n,
        steps,
        guidance,
        count_acc: count_ok.get().unwrap_or(0.0),
        count_confusion: confusion,
        pose_pckh: (pose_pck.total > 0).then(|| pose_pck.value()),
        limb_ratio_err: limb.get(),
        ms_per_image: ms.get().unwrap_or(0.0),
    };
    Ok((report, images))
}

/// The report as a short table.
pub fn format_base(r: &BaseReport) -> String {
    let f = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
    let mut s = format!(
        "{} on {} ({} examples, {} steps, guidance {}), the base alone drawing layouts from text:\n  \
         count accuracy           {:.3}\n  pose PCKh@0.5 (aligned)  {}\n  limb ratio error         {}\n  \
         ms per image             {:.0}\n",
        r.model,
        r.data,
        r.examples,
        r.steps,
        r.guidance.reason,
        r.count_acc,
        f(r.pose_pckh),
        f(r.limb_ratio_err),
        r.ms_per_image
    );
    for line in r.count_confusion.lines() {
        s.push_str(&format!("  people {line}\n"));
    }
    s
}
