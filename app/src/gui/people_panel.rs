//! Right panel: the people in the pose set, actions on the selected one, saving to the pose
//! library, how dragged joints move the body (length lock, symmetric), and the selected person's
//! joints', hands' and face's visibility (a hidden joint can be shown again here; a hand or face
//! shown again is the default one).

use super::SkeleGuideApp;
use egui::Ui;
use skeleguide_engine::pose::edit::Part;
use skeleguide_engine::pose::{Edit, JOINT_NAMES};

pub(super) fn show(app: &mut SkeleGuideApp, ui: &mut Ui) {
    ui.heading("People");
    let n = app.doc.poses().people.len();
    if n == 0 {
        ui.label("No people yet. Right-click the canvas and choose “Add person here”.");
    }
    for i in 0..n {
        let present = app.doc.poses().people[i].present_count();
        let selected = app.doc.selected == Some(i);
        if ui
            .selectable_label(selected, format!("Person {} ({present}/18 joints)", i + 1))
            .clicked()
        {
            app.doc.selected = if selected { None } else { Some(i) };
        }
    }
    ui.horizontal_wrapped(|ui| {
        if ui.button("Add person").clicked() {
            let (w, h) = app.doc.canvas();
            app.apply(Edit::AddPerson {
                center: (w as f64 / 2.0, h as f64 / 2.0),
                height: h as f64 * 0.45,
            });
        }
        super::pose_library::preset_menu(app, ui);
        let Some(s) = app.doc.selected else { return };
        let h = app.doc.canvas().1 as f64;
        if ui.button("Duplicate").clicked() {
            app.apply(Edit::Duplicate {
                person: s,
                offset: (h * 0.05, 0.0),
            });
        }
        if ui.button("Delete").on_hover_text("Del").clicked() {
            app.apply(Edit::Delete { person: s });
        }
        if ui
            .button("Mirror")
            .on_hover_text("M: mirror the body about its own axis")
            .clicked()
        {
            app.apply(Edit::Mirror { person: s });
        }
        if ui
            .button("Swap L/R")
            .on_hover_text("Swap left/right labels only")
            .clicked()
        {
            app.apply(Edit::SwapLeftRight { person: s });
        }
    });
    ui.separator();
    super::pose_library::save_controls(app, ui);
    ui.separator();
    ui.label("Dragging joints");
    let options = &mut app.canvas.drag_options;
    ui.checkbox(&mut options.lock_lengths, "Lock bone lengths (L)")
        .on_hover_text("A dragged joint turns about its parent and carries the joints below it; the neck moves the whole person");
    ui.checkbox(&mut options.symmetric, "Symmetric (X)")
        .on_hover_text("The other side's joint follows as the mirror image about the body's axis (neck to mid-hips)");
    let Some(s) = app.doc.selected else { return };
    let Some(person) = app.doc.poses().people.get(s).cloned() else {
        return;
    };
    ui.separator();
    ui.label(format!("Joints of person {}", s + 1));
    for (j, name) in JOINT_NAMES.iter().enumerate() {
        let mut visible = person.joints[j].is_some();
        if ui.checkbox(&mut visible, name.replace('_', " ")).changed() {
            let edit = if visible {
                Edit::ShowJoint {
                    person: s,
                    joint: j,
                    at: None,
                }
            } else {
                Edit::HideJoint {
                    person: s,
                    joint: j,
                }
            };
            app.apply(edit);
        }
    }
    ui.label("Hands and face");
    for part in Part::ALL {
        let mut visible = part.points(&person).is_some();
        let hover = if visible {
            "Untick to remove it (Ctrl+Z brings it back)"
        } else {
            "Tick to give the person the default one, at its joint"
        };
        if ui
            .checkbox(&mut visible, part.name())
            .on_hover_text(hover)
            .changed()
        {
            app.apply(if visible {
                Edit::ShowPart { person: s, part }
            } else {
                Edit::HidePart { person: s, part }
            });
        }
    }
}
