//! `skeleguide bench`: speed figures, each measured side by side in one run.

use anyhow::Result;
use clap::Subcommand;
use skeleguide_engine::model::bench::{bench_dit, BenchOptions};

/// `skeleguide bench [--json] [--quick] [--model DIR]`: every figure side by side; or one
/// subcommand.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Machine-readable JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// A smoke run: few iterations and steps, no UI figures (noisy numbers).
    #[arg(long)]
    pub quick: bool,
    /// Model directory for generate / AE / inverter timings (default: the shipped tiny model,
    /// else a randomly initialised tiny model, which has the same speed).
    #[arg(long)]
    pub model: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The MM-DiT: our forward vs candle-transformers' Flux, cached vs uncached sampling, a LoRA
    /// training step and peak memory (tiny preset, 128x128).
    Dit {
        /// Machine-readable JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Fewer iterations (a smoke run; noisier figures).
        #[arg(long)]
        quick: bool,
    },
    /// The training step of each phase (0-dit: every base weight; 1, 2, 3: the LoRA phases),
    /// split into forward, backward and optimiser: batch 8 on the CPU, 32/128/512 on a GPU.
    Train {
        /// Machine-readable JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// A smoke run: batch 2, one step, 64 px (noisy figures).
        #[arg(long)]
        quick: bool,
        /// Batch sizes, comma-separated (default: 8 on the CPU; 32,128,512 on a GPU).
        #[arg(long, value_delimiter = ',')]
        batch: Vec<usize>,
        /// Phases, comma-separated, of 0-dit, 1, 2, 3 (default: all).
        #[arg(long, value_delimiter = ',', value_parser = ["0-dit", "1", "2", "3"])]
        phase: Vec<String>,
        /// Timed steps per row (the median is reported; --quick times one).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
        iters: u32,
    },
    /// FLUX.1-dev at its real size from random weights made on the device: DiT step (ours and
    /// candle-transformers'), condition stream cached and not, autoencoder, T5 + CLIP, LoRA
    /// training at two sizes. Needs a GPU; `--quick` runs a reduced configuration on the CPU.
    Flux {
        /// Machine-readable JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// A reduced configuration of the same architecture (for the CPU).
        #[arg(long)]
        quick: bool,
        /// Image side in pixels (a multiple of 16; default 1024, 64 with --quick).
        #[arg(long)]
        size: Option<usize>,
        /// Compute dtype: bf16 (default on a GPU) or f32.
        #[arg(long, value_parser = ["bf16", "f32"])]
        dtype: Option<String>,
    },
    /// The editor: CPU time of one UI frame (5 people on a 1024x768 scene; idle and while
    /// editing), and the time from the end of a drag to the live-preview image (8 steps).
    Ui {
        #[arg(long)]
        json: bool,
        /// Model directory for the preview timing (default: the shipped tiny model, else random).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
    },
}

#[derive(serde::Serialize)]
pub struct UiBench {
    frame_ms_idle: f64,
    frame_ms_editing: f64,
    frame_ms_during_render: f64,
    preview_ms_8_steps: f64,
    scene: String,
    people: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn bench_ui(json: bool, model: Option<std::path::PathBuf>) -> Result<()> {
    let (r, model_dir) = measure_ui(model)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_ui(&r, &model_dir);
    }
    Ok(())
}

fn print_ui(r: &UiBench, model_dir: &str) {
    println!(
        "UI frame CPU time (5 people, {} scene, layout + tessellation, median of 60)",
        r.scene
    );
    println!("  idle:     {:.2} ms", r.frame_ms_idle);
    println!(
        "  editing:  {:.2} ms (the layout overlay is redrawn every frame)",
        r.frame_ms_editing
    );
    println!(
        "  while the engine thread renders (25 steps): {:.2} ms",
        r.frame_ms_during_render
    );
    println!(
        "drag end -> live preview ({} steps, model {model_dir}): {:.0} ms",
        crate::gui::PREVIEW_STEPS,
        r.preview_ms_8_steps
    );
}

/// The UI figures, and the model directory used for the preview.
fn measure_ui(model: Option<std::path::PathBuf>) -> Result<(UiBench, String)> {
    use crate::gui::{GuiOptions, SkeleGuideApp};
    use skeleguide_engine::pose::{edit::default_person, Edit, PoseSet};
    use std::time::Instant;
    let (w, h) = (1024u32, 768u32);
    let scene =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x / 4) as u8, (y / 3) as u8, 120]));
    let tmp = tempfile::tempdir()?;
    let scene_path = tmp.path().join("scene.png");
    scene.save(&scene_path)?;
    let mut app = SkeleGuideApp::new(&GuiOptions {
        scene: Some(scene_path.clone()),
        ..Default::default()
    });
    let mut set = PoseSet::new(w, h);
    for i in 0..5 {
        set.people
            .push(default_person((120.0 + 190.0 * i as f64, 400.0), 500.0));
    }
    app.doc.history.replace("bench poses", set.clone());
    let ctx = egui::Context::default();
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1600.0, 1000.0),
        )),
        ..Default::default()
    };
    let frame = |app: &mut SkeleGuideApp| {
        let t = Instant::now();
        let out = ctx.run_ui(input(), |ui| app.frame(ui));
        let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
        t.elapsed().as_secs_f64() * 1e3
    };
    for _ in 0..5 {
        frame(&mut app);
    }
    let idle = median((0..60).map(|_| frame(&mut app)).collect());
    let editing = median(
        (0..60)
            .map(|i| {
                let _ = app.doc.apply(Edit::DragJoint {
                    person: i % 5,
                    joint: 4,
                    to: (100.0 + (i * 7 % 800) as f64, 300.0),
                    options: Default::default(),
                });
                frame(&mut app)
            })
            .collect(),
    );
    // drag end -> preview: relayout through the rasteriser, then stage 2 at 8 steps
    let model_dir = match model.or_else(crate::default_model_dir) {
        Some(m) => m,
        None => {
            let d = tmp.path().join("tiny");
            skeleguide_engine::modeldir::init_random(&d, "tiny", 0)?;
            d
        }
    };
    // frames while the engine thread renders (25 steps): the UI must not get slower
    let during = {
        app.gen.model_dir = model_dir.display().to_string();
        app.gen.steps = 25;
        let poses = app.doc.poses().clone();
        app.submit(crate::worker::JobKind::Render { poses }, None);
        let mut v = Vec::new();
        let t0 = Instant::now();
        while app.running.is_some() && t0.elapsed().as_secs() < 120 {
            v.push(frame(&mut app));
            std::thread::sleep(std::time::Duration::from_millis(16));
        }
        if v.is_empty() {
            f64::NAN
        } else {
            median(v)
        }
    };
    let device = skeleguide_engine::pipeline::default_device()?;
    let mut p = skeleguide_engine::pipeline::Pipeline::load(&model_dir, &device)?;
    let opts = skeleguide_engine::pipeline::RunOptions {
        steps: crate::gui::PREVIEW_STEPS,
        ..Default::default()
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let mut preview = Vec::new();
    for i in 0..4 {
        let moved = skeleguide_engine::pose::proportions::drag_joint(
            &set,
            0,
            4,
            (90.0 + i as f64, 300.0),
            Default::default(),
        )?;
        let t = Instant::now();
        let layout = p.relayout(&scene, &moved)?;
        p.render(
            &scene,
            &layout,
            "a person standing",
            &opts,
            &mut |_, _, _| {},
            &cancel,
        )?;
        preview.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let r = UiBench {
        frame_ms_idle: idle,
        frame_ms_editing: editing,
        frame_ms_during_render: during,
        preview_ms_8_steps: median(preview),
        scene: format!("{w}x{h}"),
        people: 5,
    };
    Ok((r, model_dir.display().to_string()))
}

/// The pipeline figures of `skeleguide bench`.
#[derive(serde::Serialize)]
pub struct PipelineBench {
    pub model: String,
    /// Scene size and the model's working size.
    pub scene: String,
    pub working_size: String,
    pub reason_steps: usize,
    pub render_steps: usize,
    /// Wall time of `generate` (reason + render), median.
    pub generate_ms: f64,
    /// Autoencoder encode and decode at the working size (median).
    pub ae_encode_ms: f64,
    pub ae_decode_ms: f64,
    /// `Pipeline::invert` on a layout (median); null when the model has no inverter.
    pub inverter_ms: Option<f64>,
    /// "ok", or why there is no inverter timing.
    pub inverter: String,
}

/// Everything side by side.
#[derive(serde::Serialize)]
pub struct AllBench {
    pub quick: bool,
    pub pipeline: PipelineBench,
    pub dit: skeleguide_engine::model::bench::DitBench,
    /// Null in --quick mode (see `skipped`).
    pub ui: Option<UiBench>,
    pub skipped: Vec<String>,
    /// Peak resident set size of the whole run (VmHWM), MiB.
    pub peak_rss_mib: Option<f64>,
}

fn time_ms<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let t = std::time::Instant::now();
    let v = f()?;
    Ok((t.elapsed().as_secs_f64() * 1e3, v))
}

fn measure_pipeline(model: Option<std::path::PathBuf>, quick: bool) -> Result<PipelineBench> {
    use skeleguide_engine::pipeline::{Pipeline, PipelineError, RunOptions};
    use skeleguide_engine::pose::{edit::default_person, PoseSet};
    let tmp = tempfile::tempdir()?;
    let dir = match model.or_else(crate::default_model_dir) {
        Some(m) => m,
        None => {
            let d = tmp.path().join("tiny");
            skeleguide_engine::modeldir::init_random(&d, "tiny", 0)?;
            d
        }
    };
    let device = skeleguide_engine::pipeline::default_device()?;
    let mut p = Pipeline::load(&dir, &device)?;
    let (w, h) = (256u32, 192u32);
    let scene =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x / 2) as u8, (y / 2) as u8, 140]));
    let (steps, reps, ae_reps) = if quick { (2, 1, 2) } else { (25, 3, 10) };
    let opts = RunOptions {
        steps,
        ..Default::default()
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let prompt = "a woman in a red shirt standing in the park";
    // warm-up (caches the text features; fills allocator pools)
    p.generate(&scene, prompt, &opts, &mut |_, _, _| {}, &cancel)?;
    let mut gen = Vec::new();
    for i in 0..reps {
        let o = RunOptions {
            seed: i as u64 + 1,
            ..opts.clone()
        };
        gen.push(time_ms(|| Ok(p.generate(&scene, prompt, &o, &mut |_, _, _| {}, &cancel)?))?.0);
    }
    let mut enc = Vec::new();
    let mut dec = Vec::new();
    for _ in 0..ae_reps {
        let (ms, latent) = time_ms(|| Ok(p.encode_uncached(&scene)?))?;
        enc.push(ms);
        dec.push(time_ms(|| Ok(p.decode_latent(&latent)?))?.0);
    }
    let mut set = PoseSet::new(w, h);
    set.people.push(default_person((90.0, 100.0), 140.0));
    set.people.push(default_person((180.0, 100.0), 120.0));
    let layout = p.relayout(&scene, &set)?;
    let (inverter_ms, inverter) = match p.invert(&layout) {
        Err(PipelineError::NoInverter(f)) => (None, format!("no inverter ({f} is missing)")),
        Err(e) => return Err(e.into()),
        Ok(_) => {
            let mut v = Vec::new();
            for _ in 0..ae_reps {
                v.push(time_ms(|| Ok(p.invert(&layout)?))?.0);
            }
            (Some(median(v)), "ok".to_string())
        }
    };
    let (ww, wh) = p.working_size(w, h);
    Ok(PipelineBench {
        model: dir.display().to_string(),
        scene: format!("{w}x{h}"),
        working_size: format!("{ww}x{wh}"),
        reason_steps: steps,
        render_steps: steps,
        generate_ms: median(gen),
        ae_encode_ms: median(enc),
        ae_decode_ms: median(dec),
        inverter_ms,
        inverter,
    })
}

fn bench_all(args: BenchArgs) -> Result<()> {
    let quick = args.quick;
    let pipeline = measure_pipeline(args.model.clone(), quick)?;
    let dit = bench_dit(&if quick {
        BenchOptions::quick()
    } else {
        BenchOptions::default()
    })?;
    let mut skipped = Vec::new();
    let ui = if quick {
        skipped.push("ui: not measured in --quick mode (it waits for a 25-step render)".into());
        None
    } else {
        Some(measure_ui(args.model.clone())?.0)
    };
    let r = AllBench {
        quick,
        pipeline,
        dit,
        ui,
        skipped,
        peak_rss_mib: skeleguide_engine::model::bench::peak_rss_mib(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let pb = &r.pipeline;
    println!(
        "pipeline (model {}, {} scene at working size {})",
        pb.model, pb.scene, pb.working_size
    );
    println!(
        "  generate ({} + {} steps): {:.0} ms",
        pb.reason_steps, pb.render_steps, pb.generate_ms
    );
    println!(
        "  AE encode: {:.1} ms, decode: {:.1} ms",
        pb.ae_encode_ms, pb.ae_decode_ms
    );
    match pb.inverter_ms {
        Some(ms) => println!("  PoseInverter: {ms:.1} ms"),
        None => println!("  PoseInverter: {}", pb.inverter),
    }
    println!();
    print!("{}", r.dit);
    if let Some(ui) = &r.ui {
        println!();
        print_ui(ui, &pb.model);
    }
    for s in &r.skipped {
        println!("skipped {s}");
    }
    match r.peak_rss_mib {
        Some(m) => println!("peak RSS of the whole run: {m:.1} MiB"),
        None => println!("peak RSS: n/a"),
    }
    Ok(())
}

fn bench_train(
    json: bool,
    quick: bool,
    batch: Vec<usize>,
    phase: Vec<String>,
    iters: usize,
) -> Result<()> {
    use skeleguide_engine::limits::MAX_BATCH;
    use skeleguide_engine::model::bench_train::{bench_train, TrainBenchOptions};
    let device = skeleguide_engine::model::default_device()?;
    let mut opts = if quick {
        TrainBenchOptions::quick()
    } else {
        TrainBenchOptions::for_device(&device)
    };
    if let Some(b) = batch.iter().find(|&&b| b == 0 || b > MAX_BATCH) {
        anyhow::bail!("--batch {b}: must be 1 to {MAX_BATCH}");
    }
    if !batch.is_empty() {
        opts.batches = batch;
    }
    if !phase.is_empty() {
        opts.phases = phase;
    }
    if !quick {
        opts.iters = iters;
    }
    let r = bench_train(&opts, &device)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{r}");
    }
    Ok(())
}

fn bench_flux(json: bool, quick: bool, size: Option<usize>, dtype: Option<String>) -> Result<()> {
    use skeleguide_engine::model::bench_flux::{bench_flux, FluxBenchOptions};
    let device = skeleguide_engine::model::default_device()?;
    let mut opts = FluxBenchOptions::for_device(&device, quick, dtype.as_deref())?;
    if let Some(s) = size {
        if s == 0 || s % 16 != 0 || s > skeleguide_engine::limits::MAX_RESOLUTION as usize {
            anyhow::bail!(
                "--size {s}: must be a multiple of 16 up to {}",
                skeleguide_engine::limits::MAX_RESOLUTION
            );
        }
        opts.size = s;
    }
    let r = bench_flux(&opts, &device)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{r}");
    }
    Ok(())
}

pub fn run(args: BenchArgs) -> Result<()> {
    let Some(cmd) = args.command else {
        return bench_all(args);
    };
    match cmd {
        BenchCommand::Dit { json, quick } => {
            let opts = if quick {
                BenchOptions::quick()
            } else {
                BenchOptions::default()
            };
            let r = bench_dit(&opts)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{r}");
            }
            Ok(())
        }
        BenchCommand::Train {
            json,
            quick,
            batch,
            phase,
            iters,
        } => bench_train(json, quick, batch, phase, iters as usize),
        BenchCommand::Flux {
            json,
            quick,
            size,
            dtype,
        } => bench_flux(json, quick, size, dtype),
        BenchCommand::Ui { json, model } => bench_ui(json, model),
    }
}
