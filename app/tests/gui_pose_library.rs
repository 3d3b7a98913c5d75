//! The user's pose library driven by real pointer and key events, with `SKELEGUIDE_POSE_LIBRARY`
//! pointed at a temporary folder: saving the selected person (pose JSON and thumbnail, a
//! sanitised name, refusal without Overwrite), the preset menu listing and filtering the saved
//! presets, picking one (placed like a built-in preset, one undo step), deleting one, and bad
//! files in the folder skipped with one message.

mod common;

use common::*;
use egui::accesskit::Role;
use egui::{Event, Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use skeleguide::gui::SkeleGuideApp;
use skeleguide::pose_library::{self as store, LIBRARY_ENV, THUMB_SIDE};
use skeleguide_engine::pose::{self, Edit, Pose, PoseSet, LIMBS};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The app reads the variable when it starts; tests run in parallel, so each sets it and builds
/// its app under this lock.
static ENV: Mutex<()> = Mutex::new(());

/// `n` people on the sample scene, and a library folder inside a fresh temporary folder (not
/// created: the first save makes it).
fn app_with_library(n: usize) -> (Harness<'static, SkeleGuideApp>, tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("library");
    let app = {
        let _guard = ENV.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var(LIBRARY_ENV, &lib);
        app_with_people(n)
    };
    (harness(app), tmp, lib)
}

fn key(h: &mut Harness<SkeleGuideApp>, key: Key, pressed: bool) {
    send(
        h,
        Event::Key {
            key,
            physical_key: None,
            pressed,
            repeat: false,
            modifiers: Modifiers::NONE,
        },
    );
}

/// Clicks the text field labelled `label` and types `text` as a keyboard does: per character a
/// key press, the text, and the key release.
fn type_into(h: &mut Harness<SkeleGuideApp>, label: &str, text: &str) {
    h.get_by_role_and_label(Role::TextInput, label).click();
    h.run();
    for c in text.chars() {
        let k = Key::from_name(&c.to_string());
        if let Some(k) = k {
            key(h, k, true);
        }
        send(h, Event::Text(c.to_string()));
        if let Some(k) = k {
            key(h, k, false);
        }
    }
}

fn field_value(h: &Harness<SkeleGuideApp>, label: &str) -> String {
    h.get_by_role_and_label(Role::TextInput, label)
        .value()
        .unwrap_or_default()
}

fn click(h: &mut Harness<SkeleGuideApp>, label: &str) {
    h.get_by_label(label).click();
    h.run();
}

fn assert_ok(h: &Harness<SkeleGuideApp>) {
    assert!(!h.state().status.error, "{}", h.state().status.text);
}

fn read_set(path: &Path) -> PoseSet {
    pose::read_pose_file(path, &Default::default())
        .unwrap()
        .frames
        .remove(0)
}

/// Saves person `i` of the app's poses (or all of them) through the library's own code.
fn save_direct(h: &Harness<SkeleGuideApp>, lib: &Path, name: &str, who: Option<usize>) {
    let poses = h.state().doc.poses();
    let mut set = PoseSet::new(poses.width, poses.height);
    set.people = match who {
        Some(i) => vec![poses.people[i].clone()],
        None => poses.people.clone(),
    };
    store::save(lib, name, &set, false).unwrap();
}

#[test]
fn saving_the_selected_person_writes_its_pose_and_a_thumbnail() {
    let (mut h, _tmp, lib) = app_with_library(2);
    assert_eq!(h.state().pose_library(), Some(lib.as_path()));
    click(&mut h, "Person 2 (18/18 joints)");
    assert_eq!(h.state().doc.selected, Some(1));
    type_into(&mut h, "Preset name", "Arm up");
    click(&mut h, "Save to library");
    assert_ok(&h);
    let json = lib.join("Arm up.json");
    let saved = read_set(&json);
    let person = h.state().doc.poses().people[1].clone();
    assert_eq!(saved.people, vec![person.clone()]);
    assert_eq!((saved.width, saved.height), h.state().doc.canvas());
    // the thumbnail: the skeleton drawn on black, fitted to the square
    let png = image::open(lib.join("Arm up.png")).unwrap().into_rgb8();
    assert_eq!(png.dimensions(), (THUMB_SIDE, THUMB_SIDE));
    let drawn: Vec<(u32, u32)> = png
        .enumerate_pixels()
        .filter(|(_, _, p)| p.0 != [0, 0, 0])
        .map(|(x, y, _)| (x, y))
        .collect();
    assert!(drawn.len() > 200, "{} drawn pixels", drawn.len());
    let (y0, y1) = drawn
        .iter()
        .fold((u32::MAX, 0), |(a, b), &(_, y)| (a.min(y), b.max(y)));
    assert!(
        y1 - y0 >= THUMB_SIDE * 3 / 4,
        "the pose fills the height: rows {y0}..{y1}"
    );

    // the same name again: refused, the file kept, until Overwrite is ticked
    h.state_mut().apply(Edit::Mirror { person: 1 });
    let mirrored = h.state().doc.poses().people[1].clone();
    assert_ne!(mirrored, person);
    click(&mut h, "Save to library");
    assert!(h.state().status.error);
    assert!(
        h.state().status.text.contains("Overwrite"),
        "{}",
        h.state().status.text
    );
    assert_eq!(read_set(&json).people, vec![person]);
    click(&mut h, "Overwrite");
    click(&mut h, "Save to library");
    assert_ok(&h);
    assert_eq!(read_set(&json).people, vec![mirrored]);
    // Overwrite holds for one save only
    click(&mut h, "Save to library");
    assert!(h.state().status.error, "{}", h.state().status.text);
}

#[test]
fn a_name_with_dot_dot_slash_is_sanitised_and_typing_it_edits_nothing() {
    let (mut h, tmp, lib) = app_with_library(1);
    click(&mut h, "Person 1 (18/18 joints)");
    let before = h.state().doc.poses().clone();
    // l, m and x are editor shortcuts: typed into the field they must stay text
    type_into(&mut h, "Preset name", "../../climax");
    assert_eq!(field_value(&h, "Preset name"), "../../climax");
    assert_eq!(h.state().doc.poses(), &before);
    assert!(!h.state().canvas.drag_options.lock_lengths);
    click(&mut h, "Save to library");
    assert_ok(&h);
    assert!(lib.join("climax.json").is_file());
    assert!(lib.join("climax.png").is_file());
    assert!(!tmp.path().join("climax.json").exists());
    assert!(!tmp.path().parent().unwrap().join("climax.json").exists());
    // the field shows the name that was used
    assert_eq!(field_value(&h, "Preset name"), "climax");
}

#[test]
fn saving_without_a_selection_or_a_name_is_refused() {
    let (mut h, _tmp, lib) = app_with_library(1);
    type_into(&mut h, "Preset name", "nobody");
    click(&mut h, "Save to library");
    assert!(h.state().status.error);
    assert!(h.state().status.text.contains("Select a person"));
    assert!(!lib.exists());
    // All people needs no selection
    click(&mut h, "All people");
    click(&mut h, "Save to library");
    assert_ok(&h);
    assert_eq!(
        &read_set(&lib.join("nobody.json")).people,
        &h.state().doc.poses().people
    );
}

/// The textured rectangles of the thumbnail's size painted last frame.
fn thumbnails_painted(h: &Harness<SkeleGuideApp>) -> usize {
    h.output()
        .shapes
        .iter()
        .filter(|s| match &s.shape {
            egui::Shape::Rect(r) => {
                r.brush.is_some()
                    && (r.rect.width() - 40.0).abs() < 0.5
                    && (r.rect.height() - 40.0).abs() < 0.5
            }
            _ => false,
        })
        .count()
}

#[test]
fn the_menu_lists_saved_presets_and_the_search_field_filters_them() {
    let (mut h, _tmp, lib) = app_with_library(2);
    save_direct(&h, &lib, "Jumping Jack", Some(0));
    save_direct(&h, &lib, "Sitting Left", Some(1));
    click(&mut h, "Add preset");
    assert_ok(&h);
    for name in ["Standing", "Sitting", "Jumping Jack", "Sitting Left"] {
        assert!(h.query_by_label(name).is_some(), "{name} is listed");
    }
    assert_eq!(thumbnails_painted(&h), 6 + 2, "a thumbnail per entry");
    type_into(&mut h, "Search", "JACK");
    assert!(h.query_by_label("Jumping Jack").is_some());
    for name in ["Sitting Left", "Standing", "Sitting"] {
        assert!(h.query_by_label(name).is_none(), "{name} is filtered out");
    }
    for _ in 0..4 {
        key(&mut h, Key::Backspace, true);
        key(&mut h, Key::Backspace, false);
    }
    assert_eq!(field_value(&h, "Search"), "");
    type_into(&mut h, "Search", "sit");
    for name in ["Sitting", "Sitting Left"] {
        assert!(h.query_by_label(name).is_some(), "{name} matches");
    }
    for name in ["Jumping Jack", "Standing"] {
        assert!(h.query_by_label(name).is_none(), "{name} is filtered out");
    }
}

fn centre(p: &Pose) -> (f64, f64) {
    let (x0, y0, x1, y1) = p.body_bbox().unwrap();
    ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
}

/// Asserts that `placed` is `saved` scaled by `s` and moved: every bone length is `s` times the
/// saved one, and every joint keeps its place relative to the reference point.
fn assert_similar(saved: &[Pose], placed: &[Pose], s: f64, origin: ((f64, f64), (f64, f64))) {
    let ((ax, ay), (bx, by)) = origin;
    for (a, b) in saved.iter().zip(placed) {
        for k in 0..LIMBS.len() {
            let ratio = b.limb_length(k).unwrap() / a.limb_length(k).unwrap();
            assert!(
                (ratio - s).abs() < 1e-9,
                "limb {k}: ratio {ratio}, scale {s}"
            );
        }
        for (ja, jb) in a.joints.iter().zip(&b.joints) {
            let (ja, jb) = (ja.unwrap(), jb.unwrap());
            assert!((jb.x - bx - s * (ja.x - ax)).abs() < 1e-6);
            assert!((jb.y - by - s * (ja.y - ay)).abs() < 1e-6);
        }
    }
}

#[test]
fn picking_a_user_preset_adds_its_people_placed_like_a_built_in() {
    let (mut h, _tmp, lib) = app_with_library(2);
    save_direct(&h, &lib, "Raised wrist", Some(0));
    save_direct(&h, &lib, "Pair", None);
    let before = h.state().doc.poses().clone();
    let (w, hh) = h.state().doc.canvas();
    // as a built-in preset: 55 % of the scene height times the share of its own canvas it fills,
    // centred; the saved canvas is this scene's, so the factor is 0.55
    let s = 0.55 * hh as f64 / before.height as f64;

    click(&mut h, "Add preset");
    click(&mut h, "Raised wrist");
    assert_ok(&h);
    assert!(
        h.query_by_label("Raised wrist").is_none(),
        "the menu closed"
    );
    let after = h.state().doc.poses().clone();
    assert_eq!(after.people.len(), 3);
    assert_eq!(h.state().doc.selected, Some(2));
    let (saved, placed) = (&before.people[0], &after.people[2]);
    let c = centre(placed);
    assert!((c.0 - w as f64 / 2.0).abs() < 1e-6 && (c.1 - hh as f64 / 2.0).abs() < 1e-6);
    assert_similar(
        std::slice::from_ref(saved),
        std::slice::from_ref(placed),
        s,
        (centre(saved), c),
    );

    // two people come in together, keeping their layout, as one undo step
    click(&mut h, "Add preset");
    click(&mut h, "Pair");
    assert_ok(&h);
    let pair = h.state().doc.poses().people[3..].to_vec();
    assert_eq!(pair.len(), 2);
    let n0 = before.people[0].joints[1].unwrap();
    let p0 = pair[0].joints[1].unwrap();
    assert_similar(&before.people, &pair, s, ((n0.x, n0.y), (p0.x, p0.y)));
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc.poses(), &after);
}

#[test]
fn a_preset_is_deleted_from_the_menu_after_a_confirmation() {
    let (mut h, _tmp, lib) = app_with_library(1);
    save_direct(&h, &lib, "Old pose", Some(0));
    click(&mut h, "Add preset");
    click(&mut h, "Delete…");
    assert!(lib.join("Old pose.json").exists(), "only asked so far");
    click(&mut h, "Keep it");
    assert!(lib.join("Old pose.json").exists());
    click(&mut h, "Delete…");
    click(&mut h, "Delete it");
    assert_ok(&h);
    assert!(!lib.join("Old pose.json").exists());
    assert!(!lib.join("Old pose.png").exists());
    assert!(h.query_by_label("Old pose").is_none());
    assert!(
        h.query_by_label("Standing").is_some(),
        "the menu stays open"
    );
}

#[test]
fn bad_files_in_the_library_are_skipped_with_one_message() {
    let (mut h, _tmp, lib) = app_with_library(1);
    save_direct(&h, &lib, "Good", Some(0));
    std::fs::write(lib.join("broken.json"), "{\"people\": [").unwrap();
    std::fs::write(lib.join("notes.json"), "{\"title\": \"not a pose\"}").unwrap();
    // an unreadable thumbnail is drawn afresh, not reported
    std::fs::write(lib.join("Good.png"), "not a png either").unwrap();
    std::fs::create_dir(lib.join("folder.json")).unwrap();
    click(&mut h, "Add preset");
    assert!(h.query_by_label("Good").is_some());
    assert!(h.query_by_label("broken").is_none());
    assert!(h.query_by_label("notes").is_none());
    let status = &h.state().status;
    assert!(status.error);
    for file in ["broken.json", "notes.json", "folder.json"] {
        assert_eq!(
            status.text.matches(file).count(),
            1,
            "{file} named once in: {}",
            status.text
        );
    }
    // the good preset still works
    click(&mut h, "Good");
    assert_eq!(h.state().doc.poses().people.len(), 2);
}
