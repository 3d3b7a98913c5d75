//! Generation controls (left panel, below the scene): model directory, prompt, seed with a
//! dice button, steps, live preview, and the Reason pose / Render / Generate buttons.

use super::SkeleGuideApp;
use crate::worker::JobKind;
use egui::Ui;

pub fn show(app: &mut SkeleGuideApp, ui: &mut Ui) {
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
    });
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
