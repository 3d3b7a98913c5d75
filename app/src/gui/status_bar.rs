//! Bottom bar: the last message or error, and what undo/redo would do.

use super::SkeleGuideApp;
use egui::{Color32, RichText, Ui};

pub fn show(app: &mut SkeleGuideApp, ui: &mut Ui) {
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
