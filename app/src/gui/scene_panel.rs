//! Left panel: scene and pose files (dialog, path field, recent files), view and overlay.

use super::SkeleGuideApp;
use egui::Ui;
use std::path::PathBuf;

const IMAGES: (&str, &[&str]) = ("Images", &["png", "jpg", "jpeg"]);
const POSES: (&str, &[&str]) = ("Pose JSON", &["json"]);

pub(super) fn show(app: &mut SkeleGuideApp, ui: &mut Ui) {
    ui.heading("Scene");
    ui.label("Path of a scene image or pose JSON:");
    let field = ui.add(
        egui::TextEdit::singleline(&mut app.path_field)
            .hint_text("/path/to/scene.png or pose.json"),
    );
    let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    ui.horizontal(|ui| {
        if ui
            .button("Open")
            .on_hover_text("Open the scene image or pose file named in the field")
            .clicked()
            || enter
        {
            let p = PathBuf::from(app.path_field.trim());
            if app.path_field.trim().is_empty() {
                app.error("Type a path first.");
            } else {
                app.open_path(&p);
            }
        }
        if ui.button("Browse scene…").clicked() {
            if let Some(p) = app.pick(false, IMAGES) {
                app.open_path(&p);
            }
        }
    });
    if !app.recent.is_empty() {
        ui.label("Recent:");
        let mut chosen = None;
        for p in &app.recent {
            let name = super::document::file_name(p);
            if ui
                .link(name)
                .on_hover_text(p.display().to_string())
                .clicked()
            {
                chosen = Some(p.clone());
            }
        }
        if let Some(p) = chosen {
            app.open_path(&p);
        }
    }
    ui.small("You can also drop files onto the window.");
    ui.horizontal_wrapped(|ui| {
        ui.label("Samples:");
        for (i, (name, _)) in super::samples::SAMPLES.iter().enumerate() {
            if ui.small_button(*name).clicked() {
                app.open_sample(i);
            }
        }
    });

    ui.separator();
    ui.heading("Pose");
    ui.horizontal_wrapped(|ui| {
        if ui.button("Load pose…").on_hover_text("Ctrl+O").clicked() {
            if let Some(p) = app.pick(false, POSES) {
                app.open_path(&p);
            }
        }
        if ui.button("Save pose").on_hover_text("Ctrl+S").clicked() {
            let target = app.doc.pose_path.clone().or_else(|| app.pick(true, POSES));
            if let Some(p) = target {
                app.save_pose(&p);
            }
        }
        if ui
            .button("Save to field path")
            .on_hover_text("Save the pose JSON to the path typed above")
            .clicked()
        {
            let p = PathBuf::from(app.path_field.trim());
            app.save_pose(&p);
        }
        if ui.button("Export layout PNG…").clicked() {
            if let Some(p) = app.pick(true, ("PNG", &["png"])) {
                match app.doc.export_layout(&p) {
                    Ok(()) => app.ok(format!("Wrote {}", p.display())),
                    Err(e) => app.error(e),
                }
            }
        }
    });
    if let Some(p) = &app.doc.pose_path {
        ui.small(format!("Pose file: {}", p.display()));
    }

    ui.separator();
    ui.heading("View");
    ui.add(egui::Slider::new(&mut app.canvas.opacity, 0.0..=1.0).text("Layout overlay"));
    ui.horizontal(|ui| {
        if ui
            .button("Fit")
            .on_hover_text("Fit the scene to the window")
            .clicked()
        {
            app.canvas.fit_requested = true;
        }
        ui.label(format!("Zoom {:.0}%", app.canvas.zoom * 100.0));
    });
    ui.horizontal(|ui| {
        if ui
            .add_enabled(app.doc.history.can_undo(), egui::Button::new("Undo"))
            .on_hover_text("Ctrl+Z")
            .clicked()
        {
            app.undo();
        }
        if ui
            .add_enabled(app.doc.history.can_redo(), egui::Button::new("Redo"))
            .on_hover_text("Ctrl+Shift+Z / Ctrl+Y")
            .clicked()
        {
            app.redo();
        }
    });
}
