//! Exports: result PNGs with their parameters in text chunks, pose sidecars, and batches
//! (seeds × prompts × pose) with a `manifest.jsonl`. Every file is written atomically, and a
//! batch skips the items whose outputs exist, so a killed batch resumes where it stopped.

use image::RgbImage;
use serde::Serialize;
use skeleguide_engine::pipeline::{Layout, Pipeline, PipelineError, RunOptions};
use skeleguide_engine::pose::{self, ExportOptions, PoseSet};
use skeleguide_engine::{fsutil, imageio};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// The parameters written into a result PNG's text chunks.
pub fn metadata(
    prompt: &str,
    seed: u64,
    steps: usize,
    model: &str,
    pose: Option<&PoseSet>,
) -> Vec<(&'static str, String)> {
    let mut m = vec![
        (
            "Software",
            format!("SkeleGuide {}", env!("CARGO_PKG_VERSION")),
        ),
        ("prompt", prompt.to_string()),
        ("seed", seed.to_string()),
        ("steps", steps.to_string()),
        ("model", model.to_string()),
    ];
    if let Some(p) = pose {
        m.push((
            "pose",
            pose::to_json(std::slice::from_ref(p), ExportOptions::default()),
        ));
    }
    m
}

/// Writes a result PNG (with metadata) and, when the pose is known, its JSON beside it
/// (same name, `.json`). Returns the sidecar path when one was written.
pub fn write_result(
    path: &Path,
    image: &RgbImage,
    meta: &[(&str, String)],
    pose: Option<&PoseSet>,
) -> Result<Option<PathBuf>, String> {
    imageio::write_png_with_text(path, image, meta).map_err(|e| e.to_string())?;
    match pose {
        Some(p) => {
            let side = path.with_extension("json");
            pose::write_pose_file(&side, std::slice::from_ref(p), ExportOptions::default())
                .map_err(|e| e.to_string())?;
            Ok(Some(side))
        }
        None => Ok(None),
    }
}

/// Parses `A..B` (inclusive) or a single seed.
pub fn parse_seeds(s: &str) -> Result<(u64, u64), String> {
    let num = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| format!("`{v}` in `{s}` is not a seed (a whole number)"))
    };
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (num(a)?, num(b.trim_start_matches('='))?),
        None => {
            let n = num(s)?;
            (n, n)
        }
    };
    if b < a {
        return Err(format!(
            "`{s}`: the range is empty (write A..B with A <= B)"
        ));
    }
    if b - a >= 100_000 {
        return Err(format!("`{s}`: more than 100000 seeds"));
    }
    Ok((a, b))
}

/// Reads a prompts file: one prompt per line; blank lines and lines starting with `#` are skipped.
pub fn read_prompts(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let prompts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if prompts.is_empty() {
        return Err(format!(
            "{}: no prompts (one per line; # starts a comment)",
            path.display()
        ));
    }
    Ok(prompts)
}

/// What a batch does.
#[derive(Clone, Debug)]
pub struct BatchSpec {
    pub prompts: Vec<String>,
    pub seeds: (u64, u64),
    /// Render this pose for every item; without it (or with `reason`) each seed reasons its own.
    pub pose: Option<PoseSet>,
    pub reason: bool,
    pub steps: usize,
    pub keep_background: bool,
}

impl BatchSpec {
    pub fn len(&self) -> usize {
        self.prompts.len() * (self.seeds.1 - self.seeds.0 + 1) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (prompt index, seed, file stem) of every item, in order.
    pub fn items(&self) -> Vec<(usize, u64, String)> {
        let mut v = Vec::with_capacity(self.len());
        for (pi, _) in self.prompts.iter().enumerate() {
            for seed in self.seeds.0..=self.seeds.1 {
                v.push((pi, seed, format!("p{pi:03}-s{seed}")));
            }
        }
        v
    }
}

/// One line of `manifest.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct ManifestLine {
    pub image: String,
    pub pose: Option<String>,
    pub layout: Option<String>,
    pub prompt: String,
    pub seed: u64,
    pub steps: usize,
    pub model: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchReport {
    pub written: usize,
    pub skipped: usize,
}

/// Runs a batch into `out`. `progress(done, total)` is called after every item (skipped ones
/// included); `cancel` stops between steps and leaves only whole items behind.
pub fn run_batch(
    p: &mut Pipeline,
    scene: &RgbImage,
    spec: &BatchSpec,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<BatchReport, PipelineError> {
    std::fs::create_dir_all(out)
        .map_err(|e| PipelineError::Input(format!("{}: cannot create: {e}", out.display())))?;
    let items = spec.items();
    let total = items.len();
    let mut report = BatchReport::default();
    let mut lines = Vec::with_capacity(total);
    let given: Option<Layout> = match (&spec.pose, spec.reason) {
        (Some(pose), false) => Some(p.relayout(scene, pose)?),
        _ => None,
    };
    let model = p.config().id();
    for (i, (pi, seed, stem)) in items.iter().enumerate() {
        let prompt = &spec.prompts[*pi];
        let png = out.join(format!("{stem}.png"));
        let json = out.join(format!("{stem}.json"));
        let layout_png = out.join(format!("{stem}-layout.png"));
        let opts = RunOptions {
            steps: spec.steps,
            seed: *seed,
            keep_background: spec.keep_background,
        };
        let done_before = png.is_file() && (json.is_file() || layout_png.is_file());
        if done_before {
            report.skipped += 1;
        } else {
            let mut no_progress = |_, _, _| {};
            let (layout, poses) = match &given {
                Some(l) => (l.clone(), spec.pose.clone()),
                None => {
                    let l = p.reason(scene, prompt, &opts, &mut no_progress, cancel)?;
                    let poses = if p.has_inverter() {
                        Some(p.invert(&l)?)
                    } else {
                        None
                    };
                    (l, poses)
                }
            };
            let image = p.render(scene, &layout, prompt, &opts, &mut no_progress, cancel)?;
            // the layout first, the image last: an item counts as done once its PNG exists
            match &poses {
                Some(ps) => {
                    pose::write_pose_file(&json, std::slice::from_ref(ps), ExportOptions::default())
                        .map_err(|e| PipelineError::Input(e.to_string()))?
                }
                None => imageio::write_png_rgb(&layout_png, &layout.image)
                    .map_err(|e| PipelineError::Input(e.to_string()))?,
            }
            let meta = metadata(prompt, *seed, spec.steps, &model, poses.as_ref());
            imageio::write_png_with_text(&png, &image, &meta)
                .map_err(|e| PipelineError::Input(e.to_string()))?;
            report.written += 1;
        }
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().to_string());
        lines.push(ManifestLine {
            image: name(&png).unwrap_or_default(),
            pose: json.is_file().then(|| name(&json)).flatten(),
            layout: layout_png.is_file().then(|| name(&layout_png)).flatten(),
            prompt: prompt.clone(),
            seed: *seed,
            steps: spec.steps,
            model: model.clone(),
        });
        write_manifest(out, &lines)?;
        progress(i + 1, total);
    }
    Ok(report)
}

fn write_manifest(out: &Path, lines: &[ManifestLine]) -> Result<(), PipelineError> {
    let mut text = String::new();
    for l in lines {
        text.push_str(&serde_json::to_string(l).map_err(|e| PipelineError::Input(e.to_string()))?);
        text.push('\n');
    }
    fsutil::write_atomic(&out.join("manifest.jsonl"), text.as_bytes())
        .map_err(|e| PipelineError::Input(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_and_prompts_parse() {
        assert_eq!(parse_seeds("3..5"), Ok((3, 5)));
        assert_eq!(parse_seeds("7"), Ok((7, 7)));
        assert_eq!(parse_seeds("0..=2"), Ok((0, 2)));
        assert!(parse_seeds("5..3").unwrap_err().contains("empty"));
        assert!(parse_seeds("a..3").unwrap_err().contains("not a seed"));
        let spec = BatchSpec {
            prompts: vec!["a".into(), "b".into()],
            seeds: (4, 6),
            pose: None,
            reason: true,
            steps: 1,
            keep_background: false,
        };
        assert_eq!(spec.len(), 6);
        assert_eq!(spec.items()[4], (1, 5, "p001-s5".to_string()));
    }
}
