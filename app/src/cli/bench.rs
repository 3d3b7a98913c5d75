//! `skeleguide bench`: speed figures, each measured side by side in one run.

use anyhow::Result;
use clap::Subcommand;
use skeleguide_engine::model::bench::{bench_dit, BenchOptions};

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
    /// The editor: CPU time of one UI frame (5 people on a 1024x768 scene; idle and while
    /// editing), and the time from the end of a drag to the live-preview image (8 steps).
    Ui {
        #[arg(long)]
        json: bool,
        /// Model directory for the preview timing (default: a randomly initialised tiny model).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
    },
}

#[derive(serde::Serialize)]
struct UiBench {
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
                let _ = app.doc.apply(Edit::MoveJoint {
                    person: i % 5,
                    joint: 4,
                    x: 100.0 + (i * 7 % 800) as f64,
                    y: 300.0,
                });
                frame(&mut app)
            })
            .collect(),
    );
    // drag end -> preview: relayout through the rasteriser, then stage 2 at 8 steps
    let model_dir = match model {
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
        seed: 0,
        keep_background: false,
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let mut preview = Vec::new();
    for i in 0..4 {
        let moved = skeleguide_engine::pose::edit::move_joint(&set, 0, 4, 90.0 + i as f64, 300.0)?;
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
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "UI frame CPU time (5 people, {w}x{h} scene, layout + tessellation, median of 60)"
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
            "drag end -> live preview ({} steps, model {}): {:.0} ms",
            crate::gui::PREVIEW_STEPS,
            model_dir.display(),
            r.preview_ms_8_steps
        );
    }
    Ok(())
}

pub fn run(cmd: BenchCommand) -> Result<()> {
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
        BenchCommand::Ui { json, model } => bench_ui(json, model),
    }
}
