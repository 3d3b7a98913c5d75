//! `skeleguide-train ablate`: SkeleGuide and the ablation baselines evaluated on the same test
//! scenes, written as `ablation.md` (our numbers beside the paper's where we have them),
//! `ablation.json` and one image grid per method.

use super::{evaluate, method_name, EvalError, EvalOptions, EvalReport, ExampleImages};
use image::{Rgb, RgbImage};
use skeleguide_engine::modeldir::{Method, ModelConfig};
use std::path::{Path, PathBuf};

/// Scenes in each method's grid.
pub const GRID_SCENES: usize = 8;

/// Methods in table order.
pub const METHODS: [Method; 4] = [
    Method::Skeleguide,
    Method::SingleStage,
    Method::Implicit,
    Method::Stage1Only,
];

/// Parses `name=DIR,name=DIR,...` (names: skeleguide, single-stage, implicit, stage1-only).
pub fn parse_models(arg: &str) -> Result<Vec<(Method, PathBuf)>, EvalError> {
    let mut out: Vec<(Method, PathBuf)> = Vec::new();
    for item in arg.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, dir) = item.split_once('=').ok_or_else(|| {
            EvalError::Invalid(format!(
                "--models: `{item}` is not NAME=DIR (names: {})",
                names()
            ))
        })?;
        let method: Method = serde_json::from_value(serde_json::Value::String(name.trim().into()))
            .map_err(|_| {
                EvalError::Invalid(format!(
                    "--models: unknown method `{name}` (expected one of {})",
                    names()
                ))
            })?;
        if out.iter().any(|(m, _)| *m == method) {
            return Err(EvalError::Invalid(format!(
                "--models: `{name}` is given twice"
            )));
        }
        out.push((method, PathBuf::from(dir.trim())));
    }
    if out.is_empty() {
        return Err(EvalError::Invalid(
            "--models: give at least one NAME=DIR".into(),
        ));
    }
    out.sort_by_key(|(m, _)| METHODS.iter().position(|x| x == m));
    Ok(out)
}

fn names() -> String {
    METHODS
        .iter()
        .map(|m| method_name(*m))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One method's grid: a column per scene; rows scene, layout (grey where the method has none),
/// output. Tiles are the scenes' size (scaled to the first scene's when they differ).
pub fn grid(examples: &[ExampleImages]) -> Option<RgbImage> {
    let first = examples.first()?;
    let (tw, th) = first.scene.dimensions();
    let gap = 2;
    let cols = examples.len() as u32;
    let mut img = RgbImage::from_pixel(
        cols * tw + (cols + 1) * gap,
        3 * th + 4 * gap,
        Rgb([255, 255, 255]),
    );
    let blank = RgbImage::from_pixel(tw, th, Rgb([96, 96, 96]));
    for (c, ex) in examples.iter().enumerate() {
        let tiles = [&ex.scene, ex.layout.as_ref().unwrap_or(&blank), &ex.output];
        for (r, t) in tiles.iter().enumerate() {
            let t = if t.dimensions() == (tw, th) {
                (*t).clone()
            } else {
                image::imageops::resize(*t, tw, th, image::imageops::FilterType::Triangle)
            };
            let x = gap + c as u32 * (tw + gap);
            let y = gap + r as u32 * (th + gap);
            image::imageops::replace(&mut img, &t, x as i64, y as i64);
        }
    }
    Some(img)
}

/// One of the paper's ablation claims, checked on our numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectionCheck {
    /// The claim, e.g. "skeleguide beats stage1-only on layout PCKh@0.5".
    pub claim: String,
    /// `Some(true)` when our numbers show it, `Some(false)` when they do not (a tie does not),
    /// `None` when a method or the metric is missing.
    pub holds: Option<bool>,
    /// The two numbers, or why there are none.
    pub detail: String,
}

/// The paper's direction: joint training beats stage-1-only on the layout, and the explicit
/// two-stage model beats the single-stage and implicit baselines on the background.
pub fn direction_checks(reports: &[EvalReport]) -> Vec<DirectionCheck> {
    let find = |m: &str| reports.iter().find(|r| r.method == m);
    let check = |other: &str, what: &str, get: fn(&EvalReport) -> Option<f64>, digits: usize| {
        let claim = format!("skeleguide beats {other} on {what}");
        let (sg, ot) = (find("skeleguide"), find(other));
        let (holds, detail) = match (sg.map(get), ot.map(get)) {
            (Some(Some(a)), Some(Some(b))) => (
                Some(a > b),
                format!("skeleguide {a:.digits$} vs {other} {b:.digits$}"),
            ),
            _ if sg.is_none() || ot.is_none() => (
                None,
                format!(
                    "{} not evaluated",
                    if sg.is_none() { "skeleguide" } else { other }
                ),
            ),
            _ => (None, "the metric is n/a".into()),
        };
        DirectionCheck {
            claim,
            holds,
            detail,
        }
    };
    vec![
        check("stage1-only", "layout PCKh@0.5", |r| r.layout_pckh, 3),
        check("single-stage", "background PSNR", |r| r.bg_psnr_plain, 2),
        check("implicit", "background PSNR", |r| r.bg_psnr_plain, 2),
    ]
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.digits$}"))
}

/// The Markdown page; `notes` (Markdown, e.g. how the models were trained) goes under its own
/// heading after the header.
pub fn markdown(
    reports: &[EvalReport],
    grids: &[(String, String)],
    command: &str,
    notes: Option<&str>,
) -> String {
    let mut s = String::from("# Ablation: SkeleGuide and its baselines\n\n");
    s.push_str(&format!(
        "Generated by `{command}`.\nData: `{}`, {} examples, {} sampling steps per stage, seeds 0..{} (example i uses seed i).\n\n",
        reports.first().map_or("", |r| r.data.as_str()),
        reports.first().map_or(0, |r| r.examples),
        reports.first().map_or(0, |r| r.steps),
        reports.first().map_or(0, |r| r.examples),
    ));
    if let Some(n) = notes.map(str::trim).filter(|n| !n.is_empty()) {
        s.push_str("## How the models were trained\n\n");
        s.push_str(n);
        s.push_str("\n\n");
    }
    s.push_str("## Our numbers\n\n");
    s.push_str("| method | layout PCKh@0.5 | pose PCKh@0.5 (aligned) | count acc | bg PSNR | bg SSIM | bg PSNR (keep bg) | bg SSIM (keep bg) | colour acc | limb-ratio err (GT) | ms/image |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in reports {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {:.0} |\n",
            r.method,
            cell(r.layout_pckh, 3),
            cell(r.pose_pckh, 3),
            cell(r.count_acc, 3),
            cell(r.bg_psnr_plain, 2),
            cell(r.bg_ssim_plain, 3),
            cell(r.bg_psnr_keep_background, 2),
            cell(r.bg_ssim_keep_background, 3),
            cell(r.color_acc, 3),
            cell(r.limb_ratio_err, 3),
            cell(r.limb_ratio_err_gt, 3),
            r.ms_per_image,
        ));
    }
    s.push_str(
        "\nDefinitions (trainer/src/eval): PCKh@0.5 after one-to-one Hungarian matching of the inverted \
         stage-1 layout's people (head size = 2 × the ground truth's nose–neck distance); pose PCKh = \
         the same after moving each matched person so that the centroid of its joints lands on the \
         ground truth's (the pose, whatever the placement); count acc = \
         share of scenes whose inverted layout has the right number of people; background PSNR (dB, \
         capped at 100) and SSIM (Wang et al. 2004, luma) only outside the dilated ground-truth person \
         region, on the raw output and with the scene pasted back outside the pipeline's person region; \
         colour acc = shirt and trouser colours read from the torso and thigh regions of the inverted \
         people, nearest named colour; limb-ratio err = mean |l/(s·r) − 1| of body-limb lengths against \
         the body model (in brackets: the same on the ground-truth poses, the floor projection alone gives).\n\n",
    );
    if let Some(r) = reports.iter().find(|r| r.layout_pckh_redrawn.is_some()) {
        s.push_str(&format!(
            "**The data's own spread.** A prompt names the action, the seat and the landmark but never the \
             exact spot, so the ground truth is one draw among many. The generator, asked again for each \
             test scene until the prompt would describe its people the same way ({} of {} examples), scores \
             layout PCKh@0.5 {} and pose PCKh@0.5 {} against the ground truth: what a model that samples \
             the data's distribution exactly would get.\n\n",
            r.redrawn_examples,
            r.examples,
            cell(r.layout_pckh_redrawn, 3),
            cell(r.pose_pckh_redrawn, 3),
        ));
    }
    let mut notes = Vec::new();
    for r in reports {
        for (k, why) in &r.null_reasons {
            notes.push(format!("- {}: `{k}` is n/a: {why}", r.method));
        }
    }
    if !notes.is_empty() {
        s.push_str("Why some cells are n/a:\n\n");
        s.push_str(&notes.join("\n"));
        s.push_str("\n\n");
    }
    s.push_str("## The paper's direction\n\n");
    for c in direction_checks(reports) {
        let verdict = match c.holds {
            Some(true) => "holds",
            Some(false) => "does not hold",
            None => "not measured",
        };
        s.push_str(&format!("- {}: **{verdict}** ({}).\n", c.claim, c.detail));
    }
    s.push_str("\n## The paper's Tables 2 and 3\n\n");
    s.push_str(
        "The paper's ablation tables (Tables 2 and 3 of Wu, Song, Fei 2026, arXiv 2603.01579) are not \
         available to this project: only third-party \
         summaries of its headline FID/KID on V-COCO (15.48 / 0.0014, unverified against the PDF) and \
         no per-ablation rows. We therefore show no paper columns rather than invent numbers; the \
         metrics above are ours (the paper's FID/KID/CLIP-score need Inception and CLIP weights and \
         real photographs, which this CPU evaluation does not use).\n\n",
    );
    s.push_str(&format!(
        "## Samples\n\nThe same first {GRID_SCENES} test scenes for every method: top row the scene, middle the stage-1 layout (grey where the method has none), bottom the output.\n\n"
    ));
    for (method, file) in grids {
        s.push_str(&format!("### {method}\n\n![{method}]({file})\n\n"));
    }
    s
}

/// Runs eval for every model and writes `ablation.md`, `ablation.json` and the grids into
/// `out`. `progress(method, done, total)` after each example.
pub fn ablate(
    models: &[(Method, PathBuf)],
    data: &Path,
    out: &Path,
    opts: &EvalOptions,
    command: &str,
    notes: Option<&str>,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<EvalReport>, EvalError> {
    for (method, dir) in models {
        let cfg = ModelConfig::load(dir)?;
        if cfg.method != *method {
            return Err(EvalError::Invalid(format!(
                "{}: method is `{}` but --models names it `{}`",
                dir.join(skeleguide_engine::modeldir::CONFIG_FILE).display(),
                method_name(cfg.method),
                method_name(*method)
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| {
        EvalError::Invalid(format!(
            "{}: cannot create the directory: {e}",
            out.display()
        ))
    })?;
    let mut reports = Vec::new();
    let mut grids = Vec::new();
    for (method, dir) in models {
        let name = method_name(*method);
        let o = EvalOptions {
            keep_images: GRID_SCENES,
            ..opts.clone()
        };
        let (report, images) = evaluate(dir, data, &o, &mut |i, n| progress(&name, i, n))?;
        if let Some(g) = grid(&images) {
            let file = format!("ablation-{name}.png");
            skeleguide_engine::imageio::write_png_rgb(&out.join(&file), &g)
                .map_err(|e| EvalError::Invalid(e.to_string()))?;
            grids.push((name.clone(), file));
        }
        reports.push(report);
    }
    let write = |file: &str, text: String| {
        skeleguide_engine::fsutil::write_atomic(&out.join(file), text.as_bytes())
            .map_err(|e| EvalError::Invalid(e.to_string()))
    };
    write(
        "ablation.json",
        serde_json::to_string_pretty(&reports).map_err(|e| EvalError::Invalid(e.to_string()))?
            + "\n",
    )?;
    write("ablation.md", markdown(&reports, &grids, command, notes))?;
    Ok(reports)
}
