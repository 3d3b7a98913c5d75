//! The pose library in the editor: the "Add preset" menu (the built-in presets and the user's,
//! with thumbnails and a search field; a user preset can be deleted there) and the controls that
//! save the selected person, or everybody, as a named preset. The folder logic is in
//! `crate::pose_library`.

use super::{presets, SkeleGuideApp};
use crate::pose_library as store;
use egui::containers::menu::{MenuButton, MenuConfig};
use egui::{PopupCloseBehavior, TextureHandle, Ui, Vec2};
use skeleguide_engine::pose::{Edit, PoseSet};
use std::path::{Path, PathBuf};

/// Side of a thumbnail in the menu, in points.
const THUMB_POINTS: f32 = 40.0;

/// The library's state in the editor.
pub(super) struct LibraryUi {
    /// The folder; `None` when no data folder could be found.
    dir: Option<PathBuf>,
    /// The save controls' name field.
    name: String,
    /// Save everybody rather than the selected person.
    all_people: bool,
    /// The next save may replace a preset of the same name.
    overwrite: bool,
    /// The menu's search field.
    search: String,
    /// The user's presets as last read, each with its thumbnail.
    presets: Vec<(store::UserPreset, TextureHandle)>,
    /// Thumbnails of the built-in presets, drawn once.
    builtin: Vec<Option<TextureHandle>>,
    /// The folder has been read since the menu opened (it is read once per opening, so files
    /// added outside the app show up without a restart).
    scanned: bool,
    /// The user preset whose delete button was clicked, waiting for the confirmation.
    confirm_delete: Option<String>,
}

impl LibraryUi {
    pub(super) fn new(dir: Option<PathBuf>) -> Self {
        LibraryUi {
            dir,
            name: String::new(),
            all_people: false,
            overwrite: false,
            search: String::new(),
            presets: Vec::new(),
            builtin: Vec::new(),
            scanned: false,
            confirm_delete: None,
        }
    }
}

impl SkeleGuideApp {
    /// The pose library's folder (`None`: no data folder was found).
    pub fn pose_library(&self) -> Option<&Path> {
        self.library.dir.as_deref()
    }

    /// Uses another folder as the pose library (read when the preset menu next opens).
    pub fn set_pose_library(&mut self, dir: Option<PathBuf>) {
        self.library = LibraryUi::new(dir);
    }
}

/// What the user chose in the menu this frame.
enum Pick {
    Builtin(usize),
    User(usize),
    AskDelete(String),
    Delete(String),
    KeepIt,
}

/// The "Add preset" menu button and its menu.
pub(super) fn preset_menu(app: &mut SkeleGuideApp, ui: &mut Ui) {
    // clicks inside must not close it: the search field and the delete confirmation live there
    let config = MenuConfig::new().close_behavior(PopupCloseBehavior::CloseOnClickOutside);
    let (_, open) = MenuButton::new("Add preset")
        .config(config)
        .ui(ui, |ui| menu_contents(app, ui));
    if open.is_none() {
        app.library.scanned = false;
        app.library.confirm_delete = None;
    }
}

fn texture(ctx: &egui::Context, name: &str, img: &image::RgbImage) -> TextureHandle {
    let size = [img.width() as usize, img.height() as usize];
    ctx.load_texture(
        format!("pose-library-{name}"),
        egui::ColorImage::from_rgb(size, img.as_raw()),
        egui::TextureOptions::LINEAR,
    )
}

/// Reads the folder again (and draws the built-in thumbnails the first time); files that are no
/// usable pose are named in one status message.
fn refresh(app: &mut SkeleGuideApp, ctx: &egui::Context) {
    let lib = &mut app.library;
    lib.scanned = true;
    if lib.builtin.is_empty() {
        lib.builtin = (0..presets::PRESETS.len())
            .map(|i| {
                let set = presets::preset_set(i).ok()?;
                let img = store::thumbnail(&set, store::THUMB_SIDE);
                Some(texture(ctx, presets::PRESETS[i].1, &img))
            })
            .collect();
    }
    let Some(dir) = &lib.dir else { return };
    match store::scan(dir) {
        Ok(scan) => {
            let message = scan.skipped_message(dir);
            let mut before = std::mem::take(&mut lib.presets);
            lib.presets = scan
                .presets
                .into_iter()
                .map(|p| {
                    // an unchanged preset keeps its texture: no upload each time the menu opens
                    let same = before
                        .iter()
                        .position(|(q, _)| q.name == p.name && q.thumbnail == p.thumbnail);
                    let t = match same {
                        Some(i) => before.swap_remove(i).1,
                        None => texture(ctx, &p.name, &p.thumbnail),
                    };
                    (p, t)
                })
                .collect();
            if let Some(m) = message {
                app.error(m);
            }
        }
        Err(e) => {
            lib.presets.clear();
            app.error(e);
        }
    }
}

/// A menu entry: the thumbnail (when there is one) and the name.
fn entry(ui: &mut Ui, thumb: Option<&TextureHandle>, label: &str) -> egui::Response {
    match thumb {
        Some(t) => ui.add(egui::Button::image_and_text(
            egui::Image::new((t.id(), Vec2::splat(THUMB_POINTS))),
            label,
        )),
        None => ui.button(label),
    }
}

fn menu_contents(app: &mut SkeleGuideApp, ui: &mut Ui) {
    if !app.library.scanned {
        refresh(app, ui.ctx());
    }
    let lib = &mut app.library;
    ui.horizontal(|ui| {
        let l = ui.label("Search");
        ui.add(
            egui::TextEdit::singleline(&mut lib.search)
                .hint_text("part of a name")
                .desired_width(150.0),
        )
        .labelled_by(l.id);
    });
    let mut pick = None;
    // a popup keeps the height of its first (sizing) frame, egui's default area size: ask for
    // the list's height outright, as much as the window leaves
    let height = (ui.ctx().content_rect().height() - 160.0).clamp(120.0, 560.0);
    egui::ScrollArea::vertical()
        .id_salt("preset_menu_scroll")
        .max_height(height)
        .min_scrolled_height(height)
        .show(ui, |ui| {
            ui.weak("Built-in");
            for (i, (label, _, _)) in presets::PRESETS.iter().enumerate() {
                if store::matches(label, &lib.search) {
                    let thumb = lib.builtin.get(i).and_then(Option::as_ref);
                    if entry(ui, thumb, label).clicked() {
                        pick = Some(Pick::Builtin(i));
                    }
                }
            }
            ui.separator();
            let Some(dir) = &lib.dir else {
                ui.weak(format!(
                    "No folder for your presets: set {}",
                    store::LIBRARY_ENV
                ));
                return;
            };
            ui.weak(format!("Your presets ({})", lib.presets.len()))
                .on_hover_text(dir.display().to_string());
            if lib.presets.is_empty() {
                ui.weak("None yet: save one with “Save to library”");
            }
            for (i, (p, thumb)) in lib.presets.iter().enumerate() {
                if !store::matches(&p.name, &lib.search) {
                    continue;
                }
                ui.horizontal(|ui| {
                    if entry(ui, Some(thumb), &p.name).clicked() {
                        pick = Some(Pick::User(i));
                    }
                    if lib.confirm_delete.as_deref() == Some(p.name.as_str()) {
                        if ui.button("Delete it").clicked() {
                            pick = Some(Pick::Delete(p.name.clone()));
                        }
                        if ui.button("Keep it").clicked() {
                            pick = Some(Pick::KeepIt);
                        }
                    } else if ui
                        .small_button("Delete…")
                        .on_hover_text(format!("Delete “{}” from the library (asks first)", p.name))
                        .clicked()
                    {
                        pick = Some(Pick::AskDelete(p.name.clone()));
                    }
                });
            }
        });
    match pick {
        Some(Pick::Builtin(i)) => {
            let (w, h) = app.doc.canvas();
            match presets::preset_person(i, w, h) {
                Ok(pose) => app.apply(Edit::InsertPerson {
                    pose: Box::new(pose),
                }),
                Err(e) => app.error(e),
            }
            ui.close();
        }
        Some(Pick::User(i)) => {
            add_user_preset(app, i);
            ui.close();
        }
        Some(Pick::AskDelete(name)) => app.library.confirm_delete = Some(name),
        Some(Pick::Delete(name)) => delete(app, &name),
        Some(Pick::KeepIt) => app.library.confirm_delete = None,
        None => {}
    }
}

/// Adds the people of user preset `i`, placed like a built-in preset, as one undoable step.
fn add_user_preset(app: &mut SkeleGuideApp, i: usize) {
    let Some((preset, _)) = app.library.presets.get(i) else {
        return;
    };
    let (w, h) = app.doc.canvas();
    let people = presets::place_people(&preset.poses, w, h);
    let name = preset.name.clone();
    let n = people.len();
    match app
        .doc
        .insert_people(format!("add preset “{name}”"), people)
    {
        Ok(()) => {
            app.edited = true;
            let who = if n == 1 {
                "1 person".into()
            } else {
                format!("{n} people")
            };
            app.ok(format!("Added the preset “{name}” ({who})"));
        }
        Err(e) => app.error(e),
    }
}

fn delete(app: &mut SkeleGuideApp, name: &str) {
    let lib = &mut app.library;
    lib.confirm_delete = None;
    lib.scanned = false;
    let Some(dir) = lib.dir.clone() else { return };
    match store::delete(&dir, name) {
        Ok(()) => app.ok(format!("Deleted “{name}” from the pose library")),
        Err(e) => app.error(e),
    }
}

/// The save controls: a name, who to save, Overwrite, and the save button.
pub(super) fn save_controls(app: &mut SkeleGuideApp, ui: &mut Ui) {
    ui.label("Pose library");
    let lib = &mut app.library;
    ui.horizontal(|ui| {
        let l = ui.label("Preset name");
        ui.add(egui::TextEdit::singleline(&mut lib.name).desired_width(130.0))
            .labelled_by(l.id);
    });
    ui.horizontal(|ui| {
        ui.radio_value(&mut lib.all_people, false, "Selected person");
        ui.radio_value(&mut lib.all_people, true, "All people");
    });
    let folder = lib.dir.as_ref().map_or_else(
        || format!("the folder named by {} (unset)", store::LIBRARY_ENV),
        |d| d.display().to_string(),
    );
    let mut save = false;
    ui.horizontal(|ui| {
        ui.checkbox(&mut lib.overwrite, "Overwrite")
            .on_hover_text("Lets the next save replace a preset of the same name");
        save = ui
            .button("Save to library")
            .on_hover_text(format!(
                "Writes NAME.json (the pose) and NAME.png (a {side}×{side} thumbnail) to \
                 {folder}, creating the folder when needed. In the name, path separators and \
                 the characters Windows forbids become _, leading and trailing dots, spaces and _ \
                 are dropped, and at most {max} characters are kept. A name already in the \
                 library is refused unless Overwrite is ticked (for that one save).",
                side = store::THUMB_SIDE,
                max = store::MAX_NAME_CHARS,
            ))
            .clicked();
    });
    if save {
        save_preset(app);
    }
}

fn save_preset(app: &mut SkeleGuideApp) {
    let Some(dir) = app.library.dir.clone() else {
        app.error(format!(
            "No folder for the pose library: set {}",
            store::LIBRARY_ENV
        ));
        return;
    };
    let poses = app.doc.poses();
    let mut set = PoseSet::new(poses.width, poses.height);
    if app.library.all_people {
        set.people = poses.people.clone();
    } else {
        match app.doc.selected.and_then(|s| poses.people.get(s)) {
            Some(p) => set.people.push(p.clone()),
            None => {
                app.error("Select a person to save, or choose All people.");
                return;
            }
        }
    }
    let lib = &mut app.library;
    match store::save(&dir, &lib.name, &set, lib.overwrite) {
        Ok(name) => {
            lib.overwrite = false;
            lib.scanned = false;
            let msg = format!("Saved “{name}” to the pose library ({})", dir.display());
            lib.name = name;
            app.ok(msg);
        }
        Err(e) => app.error(e),
    }
}
