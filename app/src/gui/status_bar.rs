//! Bottom bar: the last message or error, and what undo/redo would do.

use super::SkeleGuideApp;
use egui::{Color32, RichText, Ui};

pub(super) fn show(app: &mut SkeleGuideApp, ui: &mut Ui) {
    if let Some(r) = app.running {
        ui.horizontal(|ui| {
            let (text, frac) = match r.progress {
                Some((stage, step, total)) => (
                    format!("{} {step}/{total}", stage.name()),
                    step as f32 / total.max(1) as f32,
                ),
                None => ("loading the model…".to_string(), 0.0),
            };
            if ui.button("Cancel").clicked() {
                app.cancel();
            }
            ui.add(
                egui::ProgressBar::new(frac)
                    .text(text)
                    .desired_width(ui.available_width()),
            );
        });
    }
    ui.horizontal(|ui| {
        let text = RichText::new(&app.status.text);
        if app.status.error {
            ui.label(text.color(Color32::from_rgb(255, 110, 100)));
        } else {
            ui.label(text);
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let (w, h) = app.doc.canvas();
            ui.label(format!("{w}x{h} · {} people", app.doc.poses().people.len()));
            if let Some(l) = app.doc.history.undo_label() {
                ui.weak(format!("undo: {l}"));
            }
        });
    });
}
