//! The GUI driven by raw input events through egui_kittest (no renderer): live preview, the
//! before/after wipe, zoom and pan, Ctrl+O / Ctrl+S, dropped files, and moving and scaling a
//! person on the canvas (the length lock and symmetric drags are in `gui_proportions`).

mod common;

use common::*;
use egui::{Event, Key, Modifiers, MouseWheelSource, MouseWheelUnit, PointerButton, Pos2, Vec2};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use skeleguide::gui::SkeleGuideApp;
use skeleguide_engine::pose::{self, PoseSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

fn assert_pos(at: (f64, f64), want: (f64, f64), tol: f64, what: &str) {
    assert!(
        close(at.0, want.0, tol) && close(at.1, want.1, tol),
        "{what}: {at:?}, expected {want:?}"
    );
}

/// A screen point inside the canvas at least `clear` points from every joint handle.
fn free_canvas_point(h: &Harness<SkeleGuideApp>, near: Pos2, clear: f32) -> Pos2 {
    let app = h.state();
    let joints: Vec<Pos2> = app
        .doc
        .poses()
        .people
        .iter()
        .flat_map(|p| p.joints.iter().flatten())
        .map(|k| app.canvas.to_screen(k.x, k.y))
        .collect();
    (0..400)
        .map(|i| near + Vec2::new((i % 20) as f32 - 10.0, (i / 20) as f32 - 10.0) * 2.0)
        .filter(|p| app.canvas.rect.shrink(4.0).contains(*p))
        .find(|p| joints.iter().all(|j| j.distance(*p) >= clear))
        .expect("a free point near the requested one")
}

// ---- live preview ----

/// One person on a 160×120 scene, the embedded tiny model, two steps a render.
fn app_for_preview() -> (SkeleGuideApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut app = app_with_people(1);
    app.open_path(&write_scene(dir.path()));
    app.gen.model_dir = embedded_model().display().to_string();
    app.gen.steps = 2;
    (app, dir)
}

fn wait_for_result(h: &mut Harness<SkeleGuideApp>, secs: u64) {
    let start = std::time::Instant::now();
    while h.state().results.is_empty() && start.elapsed().as_secs() < secs {
        std::thread::sleep(std::time::Duration::from_millis(20));
        h.run();
    }
}

/// The engine's own render of `poses` with the app's scene and settings (a live preview of
/// `app.gen.steps`, below `PREVIEW_STEPS`).
fn direct_render(app: &SkeleGuideApp, poses: &PoseSet) -> image::RgbImage {
    use skeleguide_engine::pipeline::{default_device, Pipeline, RunOptions};
    let device = default_device().unwrap();
    let mut p = Pipeline::load(Path::new(&app.gen.model_dir), &device).unwrap();
    let opts = RunOptions {
        steps: app.gen.steps,
        seed: app.gen.seed,
        keep_background: app.gen.keep_background,
        guidance: app.gen.guidance,
        candidates: None,
        contrast: None,
    };
    let scene = app.doc.scene.as_ref().unwrap();
    let layout = p.relayout(scene, poses).unwrap();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    p.render(
        scene,
        &layout,
        &app.gen.prompt,
        &opts,
        &mut |_, _, _| {},
        &cancel,
    )
    .unwrap()
}

#[test]
fn live_preview_renders_the_dragged_skeleton() {
    let (app, _dir) = app_for_preview();
    let mut h = harness(app);
    h.get_by_label("Live preview (re-render after each edit)")
        .click();
    h.run();
    assert!(h.state().gen.live_preview);
    let before = h.state().doc.poses().clone();
    let from = joint_screen(&h, 0, 4);
    drag_with(
        &mut h,
        PointerButton::Primary,
        from,
        from + Vec2::new(25.0, -15.0),
        5,
    );
    // the edit went to the worker at the release
    assert!(h.state().running.is_some(), "{}", h.state().status.text);
    let edited = h.state().doc.poses().clone();
    assert_ne!(edited, before);
    wait_for_result(&mut h, 120);
    let app = h.state();
    assert!(!app.status.error, "{}", app.status.text);
    assert_eq!(app.results.len(), 1);
    let r = &app.results[0];
    assert_eq!(r.image.dimensions(), (160, 120));
    assert_eq!(
        r.label.steps, 2,
        "preview steps: the setting when below PREVIEW_STEPS"
    );
    // the preview is the render of the skeleton after the drag, not before it
    assert!(r.image == direct_render(app, &edited));
    assert!(r.image != direct_render(app, &before));
}

#[test]
fn live_preview_follows_key_edits_and_undo() {
    let (mut app, _dir) = app_for_preview();
    app.gen.live_preview = true;
    app.doc.selected = Some(0);
    let mut h = harness(app);
    let before = h.state().doc.poses().clone();
    h.key_press(Key::M);
    h.run();
    assert!(h.state().running.is_some(), "M re-renders");
    wait_for_result(&mut h, 120);
    let mirrored = h.state().doc.poses().clone();
    assert_ne!(mirrored, before);
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc.poses(), &before);
    assert!(h.state().running.is_some(), "undo re-renders");
    run_until_idle(&mut h, 120);
    // one render per edit, nothing more
    for _ in 0..10 {
        h.run();
    }
    let app = h.state();
    assert!(!app.status.error, "{}", app.status.text);
    assert!(app.running.is_none());
    assert_eq!(app.results.len(), 2);
    assert!(app.results[0].image == direct_render(app, &mirrored));
    assert!(app.results[1].image == direct_render(app, &before));
}

#[test]
fn without_live_preview_an_edit_starts_no_render() {
    let (app, _dir) = app_for_preview();
    let mut h = harness(app);
    assert!(!h.state().gen.live_preview, "off by default");
    let before = h.state().doc.poses().clone();
    let from = joint_screen(&h, 0, 4);
    drag_with(
        &mut h,
        PointerButton::Primary,
        from,
        from + Vec2::new(25.0, -15.0),
        5,
    );
    assert_ne!(h.state().doc.poses(), &before);
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        h.run();
    }
    let app = h.state();
    assert!(app.running.is_none());
    assert!(app.events.is_empty(), "{:?}", app.events.len());
    assert!(app.results.is_empty());
}

// ---- before/after wipe ----

/// Adds a solid result of the scene's size, as a render would.
fn add_result(h: &mut Harness<SkeleGuideApp>, color: [u8; 3]) {
    let (w, hh) = h.state().doc.canvas();
    let image = image::RgbImage::from_pixel(w, hh, image::Rgb(color));
    let texture = h.ctx.load_texture(
        "test-result",
        egui::ColorImage::from_rgb([w as usize, hh as usize], image.as_raw()),
        egui::TextureOptions::LINEAR,
    );
    let app = h.state_mut();
    app.results.push(skeleguide::gui::ResultItem {
        image,
        texture,
        label: skeleguide::export::RunLabel {
            prompt: "test".into(),
            seed: 4,
            steps: 1,
            model: "none".into(),
            guidance: Default::default(),
            candidates: 1,
            keep_background: true,
        },
    });
    app.selected_result = Some(app.results.len() - 1);
    h.run();
}

/// The screen rectangle and the texture's uv range of each textured mesh painted last frame.
fn textured_meshes(h: &Harness<SkeleGuideApp>) -> Vec<(egui::TextureId, egui::Rect, egui::Rect)> {
    let mut out = Vec::new();
    for s in &h.output().shapes {
        if let egui::Shape::Mesh(m) = &s.shape {
            let rect =
                egui::Rect::from_points(&m.vertices.iter().map(|v| v.pos).collect::<Vec<_>>());
            let uv = egui::Rect::from_points(&m.vertices.iter().map(|v| v.uv).collect::<Vec<_>>());
            out.push((m.texture_id, rect, uv));
        }
    }
    out
}

#[test]
fn dragging_the_wipe_moves_the_split_between_result_and_scene() {
    let mut h = harness(app_with_people(1));
    add_result(&mut h, [255, 0, 0]);
    let result_tex = h.state().results[0].texture.id();
    let slider = h
        .get_by_role_and_label(egui::accesskit::Role::Slider, "Before / after")
        .rect();
    let mid = slider.center();
    // to the left end: the whole picture is the scene (before)
    drag_with(
        &mut h,
        PointerButton::Primary,
        mid,
        Pos2::new(slider.left() - 40.0, mid.y),
        4,
    );
    assert_eq!(h.state().wipe, 0.0);
    // to the right end: the whole picture is the result (after)
    drag_with(
        &mut h,
        PointerButton::Primary,
        Pos2::new(slider.left() + 2.0, mid.y),
        Pos2::new(slider.right() + 40.0, mid.y),
        4,
    );
    assert_eq!(h.state().wipe, 1.0);
    // back to about a quarter: result on the left of the split, scene on the right
    drag_with(
        &mut h,
        PointerButton::Primary,
        Pos2::new(slider.right() - 2.0, mid.y),
        slider.lerp_inside(Vec2::new(0.25, 0.5)),
        4,
    );
    let wipe = h.state().wipe;
    assert!(wipe > 0.1 && wipe < 0.4, "wipe {wipe}");
    let meshes = textured_meshes(&h);
    let (_, after, after_uv) = *meshes
        .iter()
        .find(|(t, _, _)| *t == result_tex)
        .expect("the result is painted");
    let (_, before, before_uv) = *meshes
        .iter()
        .filter(|(t, r, _)| *t != result_tex && r.height() == after.height())
        .find(|(_, r, _)| (r.min.y - after.min.y).abs() < 0.01)
        .expect("the scene is painted beside it");
    let width = before.right() - after.left();
    assert!((after.right() - (after.left() + width * wipe)).abs() < 0.01);
    assert!((before.left() - after.right()).abs() < 0.01);
    assert!((after_uv.min.x - 0.0).abs() < 1e-6 && (after_uv.max.x - wipe).abs() < 1e-6);
    assert!((before_uv.min.x - wipe).abs() < 1e-6 && (before_uv.max.x - 1.0).abs() < 1e-6);
}

// ---- zoom and pan ----

fn wheel(h: &mut Harness<SkeleGuideApp>, at: Pos2, dy: f32) {
    send(h, Event::PointerMoved(at));
    h.input_mut().events.push(Event::MouseWheel {
        unit: MouseWheelUnit::Point,
        delta: Vec2::new(0.0, dy),
        phase: egui::TouchPhase::Move,
        source: MouseWheelSource::Unknown,
        modifiers: Modifiers::NONE,
    });
    // the wheel is smoothed over frames; step until it has all been applied
    for _ in 0..100 {
        h.step();
    }
    h.run();
}

#[test]
fn the_wheel_zooms_about_the_pointer() {
    let mut h = harness(app_with_people(1));
    let rect = h.state().canvas.rect;
    let at = free_canvas_point(&h, rect.lerp_inside(Vec2::new(0.3, 0.7)), 20.0);
    let under = h.state().canvas.to_image(at);
    let z0 = h.state().canvas.zoom;
    wheel(&mut h, at, 200.0);
    let z1 = h.state().canvas.zoom;
    assert!(
        (z1 / z0 - (200.0f32 * 0.0015).exp()).abs() < 1e-3,
        "zoom {z0} -> {z1}"
    );
    assert_pos(
        h.state().canvas.to_image(at),
        under,
        1e-2,
        "image point under the pointer",
    );
    // and back out
    wheel(&mut h, at, -200.0);
    assert!((h.state().canvas.zoom - z0).abs() < 1e-3 * z0);
    assert_pos(
        h.state().canvas.to_image(at),
        under,
        1e-2,
        "after zooming out",
    );
}

#[test]
fn a_pinch_zooms_about_the_pointer_even_over_the_selected_person() {
    let mut h = harness(app_with_people(1));
    h.state_mut().doc.selected = Some(0);
    h.run();
    // inside the selected person's box, away from its joints
    let (x0, y0, x1, y1) = h.state().doc.poses().people[0].body_bbox().unwrap();
    let c = h.state().canvas.to_screen((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let at = free_canvas_point(&h, c, 14.0);
    let under = h.state().canvas.to_image(at);
    let z0 = h.state().canvas.zoom;
    send(&mut h, Event::PointerMoved(at));
    send(&mut h, Event::Zoom(2.0));
    assert!(
        (h.state().canvas.zoom - 2.0 * z0).abs() < 1e-4,
        "{}",
        h.state().canvas.zoom
    );
    assert_pos(
        h.state().canvas.to_image(at),
        under,
        1e-2,
        "image point under the pointer",
    );
}

#[test]
fn middle_drag_pans_the_view_and_leaves_the_pose() {
    let mut h = harness(app_with_people(1));
    let poses = h.state().doc.poses().clone();
    let (z0, o0) = (h.state().canvas.zoom, h.state().canvas.offset);
    let rect = h.state().canvas.rect;
    let from = free_canvas_point(&h, rect.lerp_inside(Vec2::new(0.8, 0.5)), 20.0);
    let d = Vec2::new(-60.0, 35.0);
    drag_with(&mut h, PointerButton::Middle, from, from + d, 6);
    let c = &h.state().canvas;
    assert_eq!(c.zoom, z0);
    assert!(
        (c.offset - (o0 + d)).length() < 1e-3,
        "offset {:?} -> {:?}",
        o0,
        c.offset
    );
    assert_eq!(h.state().doc.poses(), &poses);
}

#[test]
fn middle_drag_starting_on_a_joint_pans_too() {
    let mut h = harness(app_with_people(1));
    let poses = h.state().doc.poses().clone();
    let o0 = h.state().canvas.offset;
    let from = joint_screen(&h, 0, 1);
    let d = Vec2::new(40.0, -25.0);
    drag_with(&mut h, PointerButton::Middle, from, from + d, 6);
    assert!((h.state().canvas.offset - (o0 + d)).length() < 1e-3);
    assert_eq!(h.state().doc.poses(), &poses);
}

#[test]
fn space_drag_pans_instead_of_moving_a_joint() {
    let mut h = harness(app_with_people(1));
    let poses = h.state().doc.poses().clone();
    let o0 = h.state().canvas.offset;
    let from = joint_screen(&h, 0, 4);
    let space = |pressed| Event::Key {
        key: Key::Space,
        physical_key: None,
        pressed,
        repeat: false,
        modifiers: Modifiers::NONE,
    };
    send(&mut h, space(true));
    let d = Vec2::new(30.0, 20.0);
    drag_with(&mut h, PointerButton::Primary, from, from + d, 6);
    send(&mut h, space(false));
    assert_eq!(h.state().doc.poses(), &poses, "the joint stays");
    assert!((h.state().canvas.offset - (o0 + d)).length() < 1e-3);
}

#[test]
fn after_zooming_a_dragged_joint_lands_under_the_pointer() {
    let mut h = harness(app_with_people(1));
    let rect = h.state().canvas.rect;
    let at = free_canvas_point(&h, rect.lerp_inside(Vec2::new(0.25, 0.4)), 20.0);
    send(&mut h, Event::PointerMoved(at));
    send(&mut h, Event::Zoom(2.5));
    let from = joint_screen(&h, 0, 4);
    assert!(h.state().canvas.rect.contains(from));
    // small moves, as a mouse reports them: none of the motion may be lost
    let to = from + Vec2::new(23.0, -17.0);
    drag_with(&mut h, PointerButton::Primary, from, to, 12);
    let k = h.state().doc.poses().people[0].joints[4].unwrap();
    assert_pos(
        (k.x, k.y),
        h.state().canvas.to_image(to),
        1e-3,
        "joint vs the image point under the pointer",
    );
}

// ---- Ctrl+O and Ctrl+S ----

/// What the file dialog was asked: save or open, the filter's name and extensions.
type Asked = Arc<Mutex<Vec<(bool, &'static str, Vec<&'static str>)>>>;

/// Puts a dialog in place that answers `answer` and records what it was asked.
fn fake_dialog(h: &mut Harness<SkeleGuideApp>, answer: Option<PathBuf>) -> Asked {
    let asked = Asked::default();
    let log = asked.clone();
    h.state_mut().file_dialog = Box::new(move |save, (name, exts)| {
        log.lock().unwrap().push((save, name, exts.to_vec()));
        answer.clone()
    });
    asked
}

fn write_pose(path: &Path, set: &PoseSet) {
    pose::write_pose_file(path, std::slice::from_ref(set), Default::default()).unwrap();
}

fn read_pose(path: &Path) -> PoseSet {
    pose::read_pose_file(path, &Default::default())
        .unwrap()
        .frames
        .remove(0)
}

#[test]
fn ctrl_o_asks_for_a_pose_file_and_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_with_people(2));
    // a pose file on the same canvas with one person elsewhere
    let (w, hh) = h.state().doc.canvas();
    let mut other = PoseSet::new(w, hh);
    other
        .people
        .push(pose::edit::default_person((250.0, 200.0), 150.0));
    let path = dir.path().join("other.json");
    write_pose(&path, &other);
    let asked = fake_dialog(&mut h, Some(path.clone()));
    h.key_press_modifiers(Modifiers::COMMAND, Key::O);
    h.run();
    assert_eq!(
        *asked.lock().unwrap(),
        vec![(false, "Pose JSON", vec!["json"])]
    );
    assert_eq!(h.state().doc.poses(), &other);
    assert_eq!(h.state().doc.pose_path.as_deref(), Some(path.as_path()));
    assert!(!h.state().status.error, "{}", h.state().status.text);
    // a cancelled dialog changes nothing
    let asked = fake_dialog(&mut h, None);
    h.key_press_modifiers(Modifiers::COMMAND, Key::O);
    h.run();
    assert_eq!(asked.lock().unwrap().len(), 1);
    assert_eq!(h.state().doc.poses(), &other);
}

#[test]
fn ctrl_s_asks_where_to_save_once_then_saves_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("saved.json");
    let mut h = harness(app_with_people(1));
    let asked = fake_dialog(&mut h, Some(path.clone()));
    h.key_press_modifiers(Modifiers::COMMAND, Key::S);
    h.run();
    assert_eq!(
        *asked.lock().unwrap(),
        vec![(true, "Pose JSON", vec!["json"])]
    );
    assert!(!h.state().status.error, "{}", h.state().status.text);
    assert_eq!(&read_pose(&path), h.state().doc.poses());
    // edit, save again: the same file, no second question
    let from = joint_screen(&h, 0, 7);
    drag(&mut h, from, Vec2::new(-14.0, 9.0));
    let edited = h.state().doc.poses().clone();
    h.key_press_modifiers(Modifiers::COMMAND, Key::S);
    h.run();
    assert_eq!(asked.lock().unwrap().len(), 1);
    assert_eq!(read_pose(&path), edited);
}

#[test]
fn ctrl_s_with_the_dialog_cancelled_keeps_no_pose_file() {
    let mut h = harness(app_with_people(1));
    let asked = fake_dialog(&mut h, None);
    h.key_press_modifiers(Modifiers::COMMAND, Key::S);
    h.run();
    assert_eq!(asked.lock().unwrap().len(), 1);
    assert!(h.state().doc.pose_path.is_none());
    assert!(h.state().status.text.starts_with("No file chosen"));
}

// ---- dropped files ----

#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn drop_files(h: &mut Harness<SkeleGuideApp>, paths: &[&Path]) {
    for p in paths {
        h.input_mut()
            .dropped_files
            .push(Arc::new(Dropped(p.to_path_buf())));
    }
    h.run();
}

#[test]
fn dropping_an_image_opens_it_as_the_scene() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.png");
    image::RgbImage::from_pixel(300, 150, image::Rgb([10, 200, 30]))
        .save(&path)
        .unwrap();
    let mut h = harness(app_with_people(1));
    let (w0, h0) = h.state().doc.canvas();
    let person = h.state().doc.poses().people[0].joints[1].unwrap();
    drop_files(&mut h, &[&path]);
    let app = h.state();
    assert!(!app.status.error, "{}", app.status.text);
    assert_eq!(app.doc.scene_path.as_deref(), Some(path.as_path()));
    assert_eq!(
        app.doc.scene.as_ref().unwrap().get_pixel(5, 5).0,
        [10, 200, 30]
    );
    assert_eq!(app.doc.canvas(), (300, 150));
    // the people are scaled onto the new canvas
    let neck = app.doc.poses().people[0].joints[1].unwrap();
    assert!(close(neck.x, person.x * 300.0 / w0 as f64, 1e-6));
    assert!(close(neck.y, person.y * 150.0 / h0 as f64, 1e-6));
    // and the view fits the new scene, centred in the canvas
    let c = &app.canvas;
    let centre = c.to_screen(150.0, 75.0);
    assert!(
        (centre - c.rect.center()).length() < 0.5,
        "{centre:?} vs {:?}",
        c.rect.center()
    );
    assert_eq!(
        app.recent.first().map(PathBuf::as_path),
        Some(path.as_path())
    );
    // dropped once: later frames do not open it again
    let undo_label = app.doc.history.undo_label();
    h.run();
    assert_eq!(h.state().doc.history.undo_label(), undo_label);
    assert_eq!(h.state().recent.len(), 1);
}

#[test]
fn dropping_a_pose_json_loads_its_skeleton() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_with_people(1));
    let (w, hh) = h.state().doc.canvas();
    let mut set = PoseSet::new(w, hh);
    for c in [(100.0, 200.0), (280.0, 210.0)] {
        set.people.push(pose::edit::default_person(c, 160.0));
    }
    let path = dir.path().join("two.json");
    write_pose(&path, &set);
    drop_files(&mut h, &[&path]);
    let app = h.state();
    assert!(!app.status.error, "{}", app.status.text);
    assert_eq!(app.doc.poses(), &set);
    assert_eq!(app.doc.pose_path.as_deref(), Some(path.as_path()));
    assert!(app.status.text.contains("2 people"), "{}", app.status.text);
    // undo brings the previous people back
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc.poses().people.len(), 1);
}

#[test]
fn dropping_a_scene_and_a_pose_together_opens_both() {
    let dir = tempfile::tempdir().unwrap();
    let scene = write_scene(dir.path());
    let mut set = PoseSet::new(160, 120);
    set.people
        .push(pose::edit::default_person((80.0, 60.0), 90.0));
    let path = dir.path().join("pose.json");
    write_pose(&path, &set);
    let mut h = harness(app_with_people(0));
    drop_files(&mut h, &[&scene, &path]);
    let app = h.state();
    assert!(!app.status.error, "{}", app.status.text);
    assert_eq!(app.doc.canvas(), (160, 120));
    assert_eq!(app.doc.poses(), &set);
}

// ---- moving and scaling a person ----

/// Selects person `i` by clicking its neck.
fn select(h: &mut Harness<SkeleGuideApp>, i: usize) {
    let p = joint_screen(h, i, 1);
    send(h, Event::PointerMoved(p));
    button(h, p, PointerButton::Primary, true);
    button(h, p, PointerButton::Primary, false);
    assert_eq!(h.state().doc.selected, Some(i));
}

#[test]
fn dragging_inside_the_selected_person_moves_all_its_joints() {
    let mut h = harness(app_with_people(2));
    select(&mut h, 0);
    let before = h.state().doc.poses().clone();
    let zoom = h.state().canvas.zoom as f64;
    let (x0, y0, x1, y1) = before.people[0].body_bbox().unwrap();
    let c = h.state().canvas.to_screen((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let from = free_canvas_point(&h, c, 14.0);
    let d = Vec2::new(37.0, -21.0);
    drag_with(&mut h, PointerButton::Primary, from, from + d, 10);
    let after = h.state().doc.poses().clone();
    for (a, b) in after.people[0].joints.iter().zip(&before.people[0].joints) {
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_pos(
            (a.x, a.y),
            (b.x + d.x as f64 / zoom, b.y + d.y as f64 / zoom),
            1e-3,
            "moved joint",
        );
    }
    assert_eq!(after.people[1], before.people[1], "the other person stays");
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc.poses(), &before);
}

/// The scale handle: the top-right corner of the selected person's box as drawn.
fn scale_handle(h: &Harness<SkeleGuideApp>, person: usize) -> Pos2 {
    let app = h.state();
    let (x0, y0, x1, y1) = app.doc.poses().people[person].body_bbox().unwrap();
    egui::Rect::from_min_max(app.canvas.to_screen(x0, y0), app.canvas.to_screen(x1, y1))
        .expand(10.0)
        .right_top()
}

#[test]
fn dragging_the_scale_handle_scales_about_the_feet() {
    let mut h = harness(app_with_people(2));
    select(&mut h, 1);
    let before = h.state().doc.poses().clone();
    let feet = {
        let j = &before.people[1].joints;
        let (r, l) = (j[10].unwrap(), j[13].unwrap());
        ((r.x + l.x) / 2.0, (r.y + l.y) / 2.0)
    };
    let from = scale_handle(&h, 1);
    // mostly up: the handle follows the pointer along the line from the feet through it
    let d = Vec2::new(-4.0, -60.0);
    drag_with(&mut h, PointerButton::Primary, from, from + d, 8);
    let (grab, to) = (
        h.state().canvas.to_image(from),
        h.state().canvas.to_image(from + d),
    );
    let (gx, gy) = (grab.0 - feet.0, grab.1 - feet.1);
    let f = ((to.0 - feet.0) * gx + (to.1 - feet.1) * gy) / (gx * gx + gy * gy);
    assert!(f > 1.1, "scale {f}");
    let after = h.state().doc.poses().clone();
    for (a, b) in after.people[1].joints.iter().zip(&before.people[1].joints) {
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_pos(
            (a.x, a.y),
            (feet.0 + (b.x - feet.0) * f, feet.1 + (b.y - feet.1) * f),
            1e-3,
            "scaled joint",
        );
    }
    assert_eq!(after.people[0], before.people[0], "the other person stays");
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc.poses(), &before);
}

#[test]
fn grabbing_the_scale_handle_and_returning_it_changes_nothing() {
    let mut h = harness(app_with_people(1));
    select(&mut h, 0);
    let before = h.state().doc.poses().clone();
    let from = scale_handle(&h, 0);
    // one gesture: out, and back to where it was grabbed
    send(&mut h, Event::PointerMoved(from));
    button(&mut h, from, PointerButton::Primary, true);
    for dy in [8.0, 16.0, 24.0, 16.0, 8.0, 0.0] {
        send(&mut h, Event::PointerMoved(from + Vec2::new(0.0, dy)));
    }
    button(&mut h, from, PointerButton::Primary, false);
    for (a, b) in h.state().doc.poses().people[0]
        .joints
        .iter()
        .zip(&before.people[0].joints)
    {
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_pos(
            (a.x, a.y),
            (b.x, b.y),
            1e-3,
            "joint after a net-zero scale drag",
        );
    }
}
