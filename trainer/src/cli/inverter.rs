//! `skeleguide-train inverter` and `skeleguide-train eval-inverter`.

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use skeleguide_engine::inverter::{ColorDecoder, InverterConfig, PoseInverter};
use skeleguide_engine::pipeline::AeRoundTrip;
use skeleguide_engine::pose::{draw_layout, read_pose_file, ImportOptions, PoseSet};
use skeleguide_trainer::inverter::{self as inv, Backgrounds, Degrade, Score, TrainOptions};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub(crate) struct TrainArgs {
    /// Output directory (created if needed); the weights go to DIR/inverter.safetensors.
    #[arg(long)]
    out: PathBuf,
    /// Optimiser steps.
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    /// Crops per step.
    #[arg(long, default_value_t = 12)]
    batch: usize,
    /// Crop side at the working resolution (multiple of 4).
    #[arg(long, default_value_t = 128)]
    crop: usize,
    /// Peak learning rate (AdamW, warm-up then cosine).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Channels at stride 2 (the stem and the upsampling path).
    #[arg(long, default_value_t = InverterConfig::default().stem)]
    stem: usize,
    /// Channels at stride 4.
    #[arg(long, default_value_t = InverterConfig::default().width)]
    width: usize,
    /// Residual blocks at stride 4.
    #[arg(long, default_value_t = InverterConfig::default().blocks)]
    blocks: usize,
    /// Directory of real photographs (PNG/JPEG) used as backgrounds, e.g. scikit-image's
    /// public-domain/CC0 sample images extracted from its wheel. Optional.
    #[arg(long)]
    photos: Option<PathBuf>,
    /// Wall-clock budget in minutes (training stops at --steps or here, whichever comes
    /// first; the learning-rate schedule follows the further one).
    #[arg(long)]
    minutes: Option<f64>,
    /// Synthetic scene backdrops to pre-render.
    #[arg(long, default_value_t = 64)]
    scenes: usize,
    /// Model directory whose autoencoder round trip (as the pipeline does it) degrades a share
    /// of the training layouts: the layouts the pipeline inverts are decoded latents. Default:
    /// $SKELEGUIDE_MODEL, else the shipped assets/models/tiny; `none` to train without it.
    #[arg(long)]
    ae_model: Option<PathBuf>,
    /// Share of the training layouts sent through the autoencoder round trip.
    #[arg(long, default_value_t = 0.4)]
    ae_share: f64,
    /// Start from these weights (an inverter.safetensors, or a model directory holding one)
    /// instead of fresh ones, e.g. to adapt a trained inverter to a new autoencoder's round
    /// trip; their architecture replaces --stem/--width/--blocks.
    #[arg(long)]
    init: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct EvalArgs {
    /// Model directory (its inverter.safetensors) or the weights file; default: the embedded
    /// shipped inverter.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Held-out layouts per set (clean and degraded).
    #[arg(long, default_value_t = 500)]
    count: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Photo backgrounds (as for training); without it: black, scenes and textures only.
    #[arg(long)]
    photos: Option<PathBuf>,
    /// Real pose files to draw and invert (default: ../shared/fixtures/poses when present).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Model directory whose autoencoder gives `pck_after_ae`: each clean layout is fitted to
    /// the model's resolution, encoded, decoded and scaled back, as in the pipeline. Default:
    /// $SKELEGUIDE_MODEL, else the shipped assets/models/tiny.
    #[arg(long)]
    ae_model: Option<PathBuf>,
    /// The colour baseline's tolerance: the largest per-channel difference to a palette colour
    /// that still counts as that colour.
    #[arg(long, default_value_t = ColorDecoder::default().tolerance)]
    baseline_tolerance: u8,
    /// The network's decoding: people with fewer joints are dropped as fragments.
    #[arg(long)]
    min_joints: Option<usize>,
    /// The network's decoding: the logit bonus of a pixel's exactly matched palette colour
    /// (0: the network alone).
    #[arg(long)]
    colour_bonus: Option<f32>,
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:30}}] {{pos}}/{{len}} {{elapsed_precise}} eta {{eta}} {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

pub(crate) fn train(a: TrainArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("{}: cannot create", a.out.display()))?;
    let out = a.out.join(skeleguide_engine::modeldir::INVERTER_FILE);
    let config = InverterConfig {
        stem: a.stem,
        width: a.width,
        blocks: a.blocks,
        ..Default::default()
    };
    if let Err(m) = config.validate() {
        bail!("--stem/--width/--blocks: {m}");
    }
    let opts = TrainOptions {
        steps: a.steps,
        batch: a.batch,
        crop: a.crop,
        lr: a.lr,
        seed: a.seed,
        config,
        time_budget: a
            .minutes
            .map(|m| std::time::Duration::from_secs_f64((m * 60.0).max(1.0))),
        ae_model: match &a.ae_model {
            Some(p) if p.as_os_str() == "none" => None,
            other => Some(ae_model_dir(other)),
        },
        ae_share: a.ae_share,
        init: a.init.as_ref().map(|p| {
            if p.is_dir() {
                p.join(skeleguide_engine::modeldir::INVERTER_FILE)
            } else {
                p.clone()
            }
        }),
    };
    if !(0.0..=1.0).contains(&a.ae_share) {
        bail!("--ae-share must be between 0 and 1");
    }
    if a.minutes.is_some_and(|m| !(m > 0.0 && m.is_finite())) {
        bail!("--minutes must be a positive number");
    }
    let start = std::time::Instant::now();
    let mut bg = Backgrounds::with_scenes(a.scenes, a.seed ^ 0x5CE7E);
    if let Some(dir) = &a.photos {
        let n = bg.load_photos(dir)?;
        eprintln!("{n} photo backgrounds from {}", dir.display());
    }
    let b = bar(a.steps, "inverter");
    let mut ema = None::<f32>;
    let mut done = 0;
    let model = inv::train(&opts, &bg, |step, loss| {
        done = step;
        let e = ema.map_or(loss, |e| 0.98 * e + 0.02 * loss);
        ema = Some(e);
        b.set_position(step as u64);
        b.set_message(format!("loss {e:.4}"));
        if step % 100 == 0 {
            // plain stderr too: the bar is hidden when stderr is not a terminal (logs)
            eprintln!(
                "step {step} loss(ema) {e:.5} at {:.0} s",
                start.elapsed().as_secs_f64()
            );
        }
        true
    })?;
    b.finish();
    model.save(&out)?;
    eprintln!(
        "trained {done} steps (of at most {}) x {} crops of {} px in {:.0} s ({} parameters); final loss (ema) {:.5}; wrote {}",
        a.steps,
        a.batch,
        a.crop,
        start.elapsed().as_secs_f64(),
        model.num_params(),
        ema.unwrap_or(f32::NAN),
        out.display()
    );
    Ok(())
}

fn load_model(model: &Option<PathBuf>) -> Result<(PoseInverter, String)> {
    let dev = candle_core::Device::Cpu;
    Ok(match model {
        None => (
            PoseInverter::embedded(&dev)?,
            "embedded assets/models/tiny/inverter.safetensors".into(),
        ),
        Some(p) if p.is_dir() => {
            let f = p.join(skeleguide_engine::modeldir::INVERTER_FILE);
            (PoseInverter::load(&f, &dev)?, f.display().to_string())
        }
        Some(p) => (PoseInverter::load(p, &dev)?, p.display().to_string()),
    })
}

/// The real pose files: each frame drawn on black at its canvas size (CMU files without a
/// canvas use the 1280x720 of their source clip).
fn fixture_sets(dir: &Path) -> Result<Vec<(String, PoseSet)>> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let opts = ImportOptions {
            canvas: Some((1280, 720)),
            normalized: None,
        };
        let doc = read_pose_file(&p, &opts)?;
        for f in doc.frames {
            out.push((p.display().to_string(), f));
        }
    }
    Ok(out)
}

/// The model directory whose autoencoder gives the round trip: the one named, else
/// $SKELEGUIDE_MODEL, else the shipped assets/models/tiny.
fn ae_model_dir(named: &Option<PathBuf>) -> PathBuf {
    named
        .clone()
        .or_else(|| std::env::var_os("SKELEGUIDE_MODEL").map(PathBuf::from))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/models/tiny"))
}

fn ratio(s: &Score) -> f64 {
    s.pck.value()
}

pub(crate) fn eval(a: EvalArgs) -> Result<()> {
    if a.count == 0 {
        bail!("--count must be at least 1");
    }
    let (mut model, name) = load_model(&a.model)?;
    if let Some(n) = a.min_joints {
        model.min_joints = n;
    }
    if let Some(b) = a.colour_bonus {
        if !(b >= 0.0 && b.is_finite()) {
            bail!("--colour-bonus must be a finite number >= 0, got {b}");
        }
        model.exact_colour_bonus = b;
    }
    let mut bg = Backgrounds::with_scenes(32, a.seed ^ 0xE5CE7E);
    if let Some(dir) = &a.photos {
        bg.load_photos(dir)?;
    }
    let base = ColorDecoder {
        tolerance: a.baseline_tolerance,
        ..Default::default()
    };
    let mut results = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        results.insert(k.to_string(), v);
    };
    put("model", name.clone().into());
    put("count", a.count.into());
    put("seed", a.seed.into());
    put("params", model.num_params().into());
    put("min_joints", model.min_joints.into());
    put("colour_bonus", f64::from(model.exact_colour_bonus).into());
    put("baseline_min_joints", base.min_joints.into());
    let mut clean = Vec::new();
    for (tag, how) in [("", Degrade::Clean), ("_degraded", Degrade::Strong)] {
        let samples = inv::eval_samples(a.count, a.seed, &bg, how);
        let b = bar(
            samples.len(),
            if tag.is_empty() {
                "eval clean"
            } else {
                "eval degraded"
            },
        );
        let (mut net, mut col) = (Score::default(), Score::default());
        for s in &samples {
            let gt = inv::visible_truth(&s.poses);
            net.add(&model.invert(&s.image)?, &gt);
            col.add(&base.invert(&s.image)?, &gt);
            b.inc(1);
        }
        b.finish_and_clear();
        put(&format!("pck{tag}"), ratio(&net).into());
        put(&format!("count_acc{tag}"), net.count_acc().into());
        put(&format!("baseline_pck{tag}"), ratio(&col).into());
        put(&format!("baseline_count_acc{tag}"), col.count_acc().into());
        put(&format!("joints{tag}"), net.pck.total.into());
        if how == Degrade::Clean {
            clean = samples;
        }
    }
    let ae_dir = ae_model_dir(&a.ae_model);
    let ae = AeRoundTrip::load(&ae_dir, &candle_core::Device::Cpu)
        .with_context(|| format!("--ae-model {}", ae_dir.display()))?;
    let b = bar(clean.len(), "eval after AE");
    let (mut net, mut col) = (Score::default(), Score::default());
    for s in &clean {
        let round = ae.round_trip(&s.image)?;
        let gt = inv::visible_truth(&s.poses);
        net.add(&model.invert(&round)?, &gt);
        col.add(&base.invert(&round)?, &gt);
        b.inc(1);
    }
    b.finish_and_clear();
    put("ae_model", ae_dir.display().to_string().into());
    put("pck_after_ae", ratio(&net).into());
    put("count_acc_after_ae", net.count_acc().into());
    put("baseline_pck_after_ae", ratio(&col).into());
    put("baseline_count_acc_after_ae", col.count_acc().into());
    // speed: median of 15 runs (after 2 warm-up runs), resize included
    for side in [128u32, 512] {
        let mut rng = skeleguide_trainer::data::rng::Rng::new(a.seed ^ side as u64);
        let s = inv::sample_at(side, side, &mut rng, &bg, Degrade::Clean);
        for _ in 0..2 {
            model.invert(&s.image)?;
        }
        let mut err = None;
        let ms = inv::median_ms(15, || {
            if let Err(e) = model.invert(&s.image) {
                err = Some(e);
            }
        });
        if let Some(e) = err {
            return Err(e.into());
        }
        let bms = inv::median_ms(15, || {
            let _ = base.invert(&s.image);
        });
        put(&format!("ms_{side}"), ((ms * 100.0).round() / 100.0).into());
        put(
            &format!("baseline_ms_{side}"),
            ((bms * 100.0).round() / 100.0).into(),
        );
    }
    let fixtures = a.fixtures.clone().or_else(|| {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/poses");
        d.is_dir().then_some(d)
    });
    match fixtures {
        Some(dir) => {
            let sets = fixture_sets(&dir)?;
            let (mut net, mut col) = (Score::default(), Score::default());
            for (_, set) in &sets {
                let img = draw_layout(None, set);
                let gt = inv::visible_truth(set);
                net.add(&model.invert(&img)?, &gt);
                col.add(&base.invert(&img)?, &gt);
            }
            put("fixtures_dir", dir.display().to_string().into());
            put("fixtures_frames", sets.len().into());
            put("fixtures_pck", ratio(&net).into());
            put("fixtures_count_acc", net.count_acc().into());
            put("fixtures_baseline_pck", ratio(&col).into());
        }
        None => {
            put("fixtures_pck", serde_json::Value::Null);
            put(
                "fixtures_note",
                "../shared/fixtures/poses is absent; pass --fixtures DIR".into(),
            );
        }
    }
    if a.json {
        println!("{}", serde_json::Value::Object(results));
    } else {
        for (k, v) in &results {
            println!("{k:28} {v}");
        }
    }
    Ok(())
}
