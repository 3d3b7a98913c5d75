//! Generation controls (left panel, below the scene): model directory, prompt, seed with a
//! dice button, steps, live preview, and the Reason pose / Render / Generate buttons.

use super::SkeleGuideApp;
use crate::worker::JobKind;
use egui::Ui;
use skeleguide_engine::modeldir::{ModelConfig, TextGuidance};
use std::path::Path;

pub(super) fn show(app: &mut SkeleGuideApp, ui: &mut Ui) {
    ui.heading("Generate");
    ui.label("Model directory:");
    ui.add(egui::TextEdit::singleline(&mut app.gen.model_dir).hint_text("assets/models/tiny"));
    ui.label("Prompt:");
    ui.add(
        egui::TextEdit::multiline(&mut app.gen.prompt)
            .desired_rows(2)
            .hint_text("a man in a blue shirt sitting on the bench"),
    );
    ui.horizontal(|ui| {
        let label = ui.label("Seed");
        ui.add(egui::DragValue::new(&mut app.gen.seed))
            .labelled_by(label.id);
        if ui.button("Random seed").clicked() {
            app.gen.seed = random_seed();
        }
    });
    ui.add(egui::Slider::new(&mut app.gen.steps, 1..=50).text("Steps"));
    ui.checkbox(
        &mut app.gen.live_preview,
        "Live preview (re-render after each edit)",
    );
    ui.checkbox(&mut app.gen.keep_background, "Keep the scene")
        .on_hover_text("The photo's own pixels at full resolution outside the person; off: the whole image is the model's");
    guidance_controls(ui, &mut app.gen.guidance, app.gen.model_dir.trim());
    candidate_controls(ui, &mut app.gen.candidates, app.gen.model_dir.trim());
    let busy = app.running.is_some();
    ui.horizontal_wrapped(|ui| {
        if ui
            .add_enabled(!busy, egui::Button::new("Reason pose"))
            .on_hover_text("Stage 1: propose a skeleton for the prompt")
            .clicked()
        {
            app.submit(JobKind::Reason, None);
        }
        if ui
            .add_enabled(!busy, egui::Button::new("Render"))
            .on_hover_text("Stage 2: render the person on the current skeleton")
            .clicked()
        {
            let poses = app.doc.poses().clone();
            app.submit(JobKind::Render { poses }, None);
        }
        if ui
            .add_enabled(!busy, egui::Button::new("Generate"))
            .on_hover_text("Reason, then render")
            .clicked()
        {
            app.submit(JobKind::Generate, None);
        }
        if ui.button("Batch export…").clicked() {
            if app.gen.batch_prompts.is_empty() {
                app.gen.batch_prompts = app.gen.prompt.clone();
            }
            app.gen.batch_open = true;
        }
    });
}

/// The batch dialog: prompts × seeds × (current pose or a reasoned pose per seed).
pub(super) fn batch_window(app: &mut SkeleGuideApp, ctx: &egui::Context) {
    let mut open = app.gen.batch_open;
    let mut start = false;
    egui::Window::new("Batch export")
        .open(&mut open)
        .show(ctx, |ui| {
            let l = ui.label("Prompts, one per line:");
            ui.add(egui::TextEdit::multiline(&mut app.gen.batch_prompts).desired_rows(4))
                .labelled_by(l.id);
            ui.horizontal(|ui| {
                let l = ui.label("Seeds from");
                ui.add(egui::DragValue::new(&mut app.gen.batch_seeds.0))
                    .labelled_by(l.id);
                let l = ui.label("to");
                ui.add(egui::DragValue::new(&mut app.gen.batch_seeds.1))
                    .labelled_by(l.id);
            });
            ui.checkbox(
                &mut app.gen.batch_use_pose,
                "Use the current pose (otherwise reason one per seed)",
            );
            let l = ui.label("Output directory:");
            ui.add(egui::TextEdit::singleline(&mut app.gen.batch_out).hint_text("/path/to/batch"))
                .labelled_by(l.id);
            let prompts = batch_prompts(&app.gen.batch_prompts);
            let (a, b) = app.gen.batch_seeds;
            let n = if b < a {
                0
            } else {
                prompts.len() * (b - a + 1) as usize
            };
            ui.label(format!(
                "{n} images; existing outputs are skipped, so a stopped batch resumes."
            ));
            start = ui
                .add_enabled(
                    app.running.is_none() && n > 0,
                    egui::Button::new("Start batch"),
                )
                .clicked();
        });
    app.gen.batch_open = open;
    if !start {
        return;
    }
    if app.gen.batch_out.trim().is_empty() {
        app.error("Batch: set an output directory.");
        return;
    }
    let spec = crate::export::BatchSpec {
        prompts: batch_prompts(&app.gen.batch_prompts),
        seeds: app.gen.batch_seeds,
        pose: app.gen.batch_use_pose.then(|| app.doc.poses().clone()),
        reason: !app.gen.batch_use_pose,
        steps: app.gen.steps,
        keep_background: app.gen.keep_background,
        guidance: app.gen.guidance,
        candidates: app.gen.candidates,
    };
    let out = std::path::PathBuf::from(app.gen.batch_out.trim());
    app.submit(JobKind::Batch { spec, out }, None);
}

/// The sampling defaults of the model directory `dir` (its `config.json`), where it has one: a
/// custom setting starts from them.
fn model_defaults(dir: &str) -> Option<ModelConfig> {
    ModelConfig::load(Path::new(dir)).ok()
}

/// "Custom guidance" and, when on, one slider per stage (off: the model's `text_guidance`).
fn guidance_controls(ui: &mut Ui, guidance: &mut Option<TextGuidance>, model_dir: &str) {
    let mut custom = guidance.is_some();
    ui.checkbox(&mut custom, "Custom guidance")
        .on_hover_text("Classifier-free guidance on the prompt; off: the model's defaults");
    match (custom, guidance.as_mut()) {
        (false, _) => *guidance = None,
        (true, None) => {
            *guidance = Some(
                model_defaults(model_dir).map_or_else(TextGuidance::default, |c| c.text_guidance),
            )
        }
        (true, Some(g)) => {
            ui.add(egui::Slider::new(&mut g.reason, 1.0..=8.0).text("Pose guidance"));
            ui.add(egui::Slider::new(&mut g.render, 1.0..=8.0).text("Render guidance"));
        }
    }
}

/// "Custom pose candidates" and, when on, how many stage-1 layouts to sample (off: the model's
/// `reason_candidates`).
fn candidate_controls(ui: &mut Ui, candidates: &mut Option<usize>, model_dir: &str) {
    let mut custom = candidates.is_some();
    ui.checkbox(&mut custom, "Custom pose candidates").on_hover_text(
        "Sample several skeleton layouts and keep the one with the prompt's person count and the best-shaped skeletons; off: the model's default",
    );
    match (custom, candidates.as_mut()) {
        (false, _) => *candidates = None,
        (true, None) => {
            *candidates = Some(model_defaults(model_dir).map_or(1, |c| c.reason_candidates))
        }
        (true, Some(k)) => {
            let most = skeleguide_engine::select::MAX_CANDIDATES;
            ui.add(egui::Slider::new(k, 1..=most).text("Pose candidates"));
        }
    }
}

fn batch_prompts(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut z = (t as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (z ^ (z >> 27)) % 1_000_000_000
}
