//! Results (right panel, below the people): the variants with their seeds, and the selected one
//! with a before/after wipe against the scene.

use super::SkeleGuideApp;
use egui::{Color32, Pos2, Rect, Sense, Ui, Vec2};

pub(super) fn show(app: &mut SkeleGuideApp, ui: &mut Ui) {
    ui.heading("Results");
    if app.results.is_empty() {
        ui.label("Rendered variants appear here.");
        return;
    }
    let mut chosen = None;
    ui.horizontal_wrapped(|ui| {
        for (i, r) in app.results.iter().enumerate() {
            let selected = app.selected_result == Some(i);
            let resp = ui.add(
                egui::Button::image_and_text(
                    egui::Image::new((r.texture.id(), Vec2::new(64.0, 64.0 * r.aspect()))),
                    format!("seed {}", r.label.seed),
                )
                .selected(selected),
            );
            if resp.on_hover_text(&r.label.prompt).clicked() {
                chosen = Some(i);
            }
        }
    });
    if let Some(i) = chosen {
        app.selected_result = Some(i);
    }
    let Some(i) = app.selected_result.filter(|&i| i < app.results.len()) else {
        return;
    };
    ui.separator();
    ui.add(egui::Slider::new(&mut app.wipe, 0.0..=1.0).text("Before / after"));
    let r = &app.results[i];
    let w = ui.available_width().min(400.0);
    let size = Vec2::new(w, w * r.aspect());
    let (rect, _) = ui.allocate_exact_size(size, Sense::hover());
    let painter = ui.painter_at(rect);
    let split = rect.left() + rect.width() * app.wipe;
    // after (result) on the left of the split, before (scene) on the right
    let uv_l = Rect::from_min_max(Pos2::ZERO, Pos2::new(app.wipe, 1.0));
    painter.image(
        r.texture.id(),
        Rect::from_min_max(rect.min, Pos2::new(split, rect.bottom())),
        uv_l,
        Color32::WHITE,
    );
    if let Some(scene) = &app.scene_texture {
        let uv_r = Rect::from_min_max(Pos2::new(app.wipe, 0.0), Pos2::new(1.0, 1.0));
        painter.image(
            scene.id(),
            Rect::from_min_max(Pos2::new(split, rect.top()), rect.max),
            uv_r,
            Color32::WHITE,
        );
    }
    painter.line_segment(
        [
            Pos2::new(split, rect.top()),
            Pos2::new(split, rect.bottom()),
        ],
        (1.5, Color32::WHITE),
    );
    ui.small(format!(
        "seed {} · {} steps · {}",
        r.label.seed, r.label.steps, r.label.model
    ));
    if ui
        .button("Export PNG…")
        .on_hover_text("PNG with the parameters in text chunks, and the pose JSON beside it")
        .clicked()
    {
        if let Some(p) = app.pick(true, ("PNG", &["png"])) {
            app.export_result(&p);
        }
    }
}
