//! Exports: result PNGs with their parameters in text chunks, pose sidecars, and batches
//! (seeds × prompts × pose) with a `manifest.jsonl`. Every file is written atomically, and a
//! batch skips the items whose outputs exist, so a killed batch resumes where it stopped.

use image::RgbImage;
use serde::Serialize;
use skeleguide_engine::modeldir::TextGuidance;
use skeleguide_engine::pipeline::{Layout, Pipeline, PipelineError, RunOptions};
use skeleguide_engine::pose::{self, ExportOptions, PoseSet};
use skeleguide_engine::{fsutil, imageio};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// What made a result: written into its PNG's text chunks and its batch manifest line, and
/// read back from the PNG to tell whether an existing output matches a batch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunLabel {
    pub prompt: String,
    pub seed: u64,
    pub steps: usize,
    pub model: String,
    pub guidance: TextGuidance,
    /// Stage-1 candidates sampled (1: one layout, no choice).
    pub candidates: usize,
    pub keep_background: bool,
}

impl RunLabel {
    /// The label of a run of `p` with `opts` (the model's guidance when `opts` has none);
    /// `reasoned`: stage 1 ran (else no candidate was sampled, and it records one).
    pub fn of(p: &Pipeline, prompt: &str, opts: &RunOptions, reasoned: bool) -> Self {
        RunLabel {
            prompt: prompt.to_string(),
            seed: opts.seed,
            steps: opts.steps,
            model: p.config().id(),
            guidance: opts.guidance.unwrap_or(p.config().text_guidance),
            candidates: if reasoned {
                p.candidates(opts.candidates)
            } else {
                1
            },
            keep_background: opts.keep_background,
        }
    }

    /// The label in a PNG's text chunks, when it has one (written by [`metadata`]).
    pub fn from_png(path: &Path) -> Option<Self> {
        let text = imageio::read_png_text(path).ok()?;
        let get = |k: &str| text.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let mut g = get("guidance")?.split_whitespace();
        let (reason, render) = match (g.next(), g.next(), g.next(), g.next()) {
            (Some("reason"), Some(a), Some("render"), Some(b)) => {
                (a.parse().ok()?, b.parse().ok()?)
            }
            _ => return None,
        };
        Some(RunLabel {
            prompt: get("prompt")?.to_string(),
            seed: get("seed")?.parse().ok()?,
            steps: get("steps")?.parse().ok()?,
            model: get("model")?.to_string(),
            guidance: TextGuidance { reason, render },
            // Files from before candidates were recorded sampled one.
            candidates: get("candidates").map_or(Some(1), |v| v.parse().ok())?,
            keep_background: match get("background")? {
                BACKGROUND_KEPT => true,
                BACKGROUND_GENERATED => false,
                _ => return None,
            },
        })
    }

    /// How this label differs from `other`, in words (empty when they are the same).
    fn differences(&self, other: &RunLabel) -> String {
        let mut d = Vec::new();
        if self.prompt != other.prompt {
            d.push(format!("prompt {:?}", self.prompt));
        }
        if self.seed != other.seed {
            d.push(format!("seed {}", self.seed));
        }
        if self.steps != other.steps {
            d.push(format!("steps {}", self.steps));
        }
        if self.model != other.model {
            d.push(format!("model {}", self.model));
        }
        if self.guidance != other.guidance {
            d.push(format!(
                "guidance {}/{}",
                self.guidance.reason, self.guidance.render
            ));
        }
        if self.candidates != other.candidates {
            d.push(format!("candidates {}", self.candidates));
        }
        if self.keep_background != other.keep_background {
            d.push(format!("keep_background {}", self.keep_background));
        }
        d.join(", ")
    }
}

const BACKGROUND_KEPT: &str = "kept";
const BACKGROUND_GENERATED: &str = "generated";

/// The parameters written into a result PNG's text chunks.
pub fn metadata(label: &RunLabel, pose: Option<&PoseSet>) -> Vec<(&'static str, String)> {
    let mut m = vec![
        (
            "Software",
            format!("SkeleGuide {}", env!("CARGO_PKG_VERSION")),
        ),
        ("prompt", label.prompt.clone()),
        ("seed", label.seed.to_string()),
        ("steps", label.steps.to_string()),
        ("model", label.model.clone()),
        (
            "guidance",
            format!(
                "reason {} render {}",
                label.guidance.reason, label.guidance.render
            ),
        ),
        ("candidates", label.candidates.to_string()),
        (
            "background",
            if label.keep_background {
                BACKGROUND_KEPT
            } else {
                BACKGROUND_GENERATED
            }
            .to_string(),
        ),
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
    let text = fsutil::read_text_limited(path, skeleguide_engine::limits::MAX_PROMPTS_FILE_BYTES)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        check_prompt(line).map_err(|e| format!("{}: line {}: {e}", path.display(), i + 1))?;
        prompts.push(line.to_string());
    }
    if prompts.is_empty() {
        return Err(format!(
            "{}: no prompts (one per line; # starts a comment)",
            path.display()
        ));
    }
    Ok(prompts)
}

/// Refuses a prompt holding control characters (NUL, ESC, BEL, …): they would go into the
/// PNG text chunks and the manifest. A tab is allowed.
pub fn check_prompt(prompt: &str) -> Result<(), String> {
    match prompt.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => Err(format!(
            "the prompt contains the control character U+{:04X}",
            c as u32
        )),
        None => Ok(()),
    }
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
    /// Classifier-free guidance per stage; `None`: the model's default.
    pub guidance: Option<TextGuidance>,
    /// Stage-1 candidates when reasoning; `None`: the model's default.
    pub candidates: Option<usize>,
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

/// One line of `manifest.jsonl`: a result PNG of the folder, its sidecars and its label.
#[derive(Clone, Debug, Serialize)]
pub struct ManifestLine {
    pub image: String,
    pub pose: Option<String>,
    pub layout: Option<String>,
    #[serde(flatten)]
    pub label: RunLabel,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchReport {
    pub written: usize,
    pub skipped: usize,
}

/// Runs a batch into `out`. `progress(done, total)` is called after every item (skipped ones
/// included); `cancel` stops between steps and leaves only whole items behind.
///
/// An item whose PNG already exists is skipped when the PNG was made with the same settings
/// (its text chunks say so); made with other settings, the batch is refused before anything is
/// generated, so an output is never relabelled. `manifest.jsonl` describes every result PNG in
/// the folder, earlier batches' included.
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
    let model = p.config().id();
    let guidance = spec.guidance.unwrap_or(p.config().text_guidance);
    let options = |seed: u64| RunOptions {
        steps: spec.steps,
        seed,
        keep_background: spec.keep_background,
        guidance: Some(guidance),
        candidates: spec.candidates,
        contrast: None,
    };
    // A batch that renders a given pose samples no stage-1 layout: its labels record one.
    let candidates = match spec.pose.is_none() || spec.reason {
        true => p.candidates(spec.candidates),
        false => 1,
    };
    let label = |pi: usize, seed: u64| RunLabel {
        prompt: spec.prompts[pi].clone(),
        seed,
        steps: spec.steps,
        model: model.clone(),
        guidance,
        candidates,
        keep_background: spec.keep_background,
    };
    let mut lines = folder_manifest(out)?;
    // refuse before generating anything: an existing output made otherwise is never relabelled
    for (pi, seed, stem) in &items {
        let png = out.join(format!("{stem}.png"));
        if !png.exists() {
            continue;
        }
        let wanted = label(*pi, *seed);
        match lines.get(&format!("{stem}.png")) {
            Some(line) if line.label == wanted => {}
            Some(line) => {
                return Err(PipelineError::Input(format!(
                    "{}: made with other settings ({}); this batch asks for {}: use another --out or remove it",
                    png.display(),
                    line.label.differences(&wanted),
                    wanted.differences(&line.label)
                )))
            }
            None => {
                return Err(PipelineError::Input(format!(
                    "{}: exists but was not made by a SkeleGuide batch (no settings in its text chunks): use another --out or remove it",
                    png.display()
                )))
            }
        }
    }
    let given: Option<Layout> = match (&spec.pose, spec.reason) {
        (Some(pose), false) => Some(p.relayout(scene, pose)?),
        _ => None,
    };
    for (i, (pi, seed, stem)) in items.iter().enumerate() {
        let prompt = &spec.prompts[*pi];
        let png = out.join(format!("{stem}.png"));
        let json = out.join(format!("{stem}.json"));
        let layout_png = out.join(format!("{stem}-layout.png"));
        let opts = options(*seed);
        if lines.contains_key(&format!("{stem}.png")) {
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
            let meta = metadata(&label(*pi, *seed), poses.as_ref());
            let png_bytes =
                imageio::encode_png_with_text(&image, &meta).map_err(PipelineError::Input)?;
            let side: (&Path, Vec<u8>) = match &poses {
                Some(ps) => (
                    &json,
                    pose::to_json(std::slice::from_ref(ps), ExportOptions::default()).into_bytes(),
                ),
                None => (
                    &layout_png,
                    imageio::encode_png_with_text(&layout.image, &[])
                        .map_err(PipelineError::Input)?,
                ),
            };
            fsutil::write_all_or_none(&[(side.0, &side.1), (&png, &png_bytes)])
                .map_err(|e| PipelineError::Input(e.to_string()))?;
            report.written += 1;
            if let Some(line) = manifest_line(out, &png) {
                lines.insert(line.image.clone(), line);
            }
        }
        write_manifest(out, &lines)?;
        progress(i + 1, total);
    }
    Ok(report)
}

/// The manifest line of result PNG `png` in `out`, read from its own text chunks.
fn manifest_line(out: &Path, png: &Path) -> Option<ManifestLine> {
    let label = RunLabel::from_png(png)?;
    let name = png.file_name()?.to_string_lossy().to_string();
    let stem = name.strip_suffix(".png")?;
    let sidecar = |file: String| out.join(&file).is_file().then_some(file);
    Some(ManifestLine {
        pose: sidecar(format!("{stem}.json")),
        layout: sidecar(format!("{stem}-layout.png")),
        image: name,
        label,
    })
}

/// Every result PNG already in `out` (by file name), with the settings its text chunks carry.
fn folder_manifest(
    out: &Path,
) -> Result<std::collections::BTreeMap<String, ManifestLine>, PipelineError> {
    let entries = std::fs::read_dir(out)
        .map_err(|e| PipelineError::Input(format!("{}: cannot read: {e}", out.display())))?;
    let mut lines = std::collections::BTreeMap::new();
    for e in entries.flatten() {
        let path = e.path();
        let is_png = path.extension().is_some_and(|x| x == "png");
        if is_png && e.file_type().is_ok_and(|t| t.is_file()) {
            if let Some(line) = manifest_line(out, &path) {
                lines.insert(line.image.clone(), line);
            }
        }
    }
    Ok(lines)
}

fn write_manifest(
    out: &Path,
    lines: &std::collections::BTreeMap<String, ManifestLine>,
) -> Result<(), PipelineError> {
    let mut text = String::new();
    for l in lines.values() {
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
            guidance: None,
            candidates: None,
        };
        assert_eq!(spec.len(), 6);
        assert_eq!(spec.items()[4], (1, 5, "p001-s5".to_string()));
    }

    #[test]
    fn a_label_reads_back_from_its_png_and_an_older_png_sampled_one_candidate() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::new(4, 4);
        let label = RunLabel {
            prompt: "two people on the street".into(),
            seed: 3,
            steps: 25,
            model: "tiny".into(),
            guidance: TextGuidance::both(2.0),
            candidates: 3,
            keep_background: true,
        };
        let png = dir.path().join("a.png");
        imageio::write_png_with_text(&png, &img, &metadata(&label, None)).unwrap();
        assert_eq!(RunLabel::from_png(&png), Some(label.clone()));
        let older: Vec<(&str, String)> = metadata(&label, None)
            .into_iter()
            .filter(|(k, _)| *k != "candidates")
            .collect();
        imageio::write_png_with_text(&png, &img, &older).unwrap();
        let read = RunLabel::from_png(&png).unwrap();
        assert_eq!(read.candidates, 1);
        assert_eq!(read.differences(&label), "candidates 1");
    }
}
