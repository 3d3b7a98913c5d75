//! What the GUI test targets share: the app in a kittest harness, people placed on the sample
//! scene, pointer gestures, a scene with a model, and waiting for the engine thread.

// each test target uses its own subset of these helpers
#![allow(dead_code)]

use egui::{Event, Modifiers, PointerButton, Pos2, Vec2};
use egui_kittest::Harness;
use skeleguide::gui::{GuiOptions, SkeleGuideApp};
use skeleguide_engine::pose::{edit::default_person, PoseSet};
use std::path::{Path, PathBuf};

pub(crate) fn harness(app: SkeleGuideApp) -> Harness<'static, SkeleGuideApp> {
    let mut h = Harness::builder()
        .with_size(Vec2::new(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut SkeleGuideApp| app.frame(ui), app);
    h.run();
    h
}

pub(crate) const PERSON_HEIGHT: f64 = 240.0;

pub(crate) fn person_center(i: usize) -> (f64, f64) {
    (110.0 + 160.0 * i as f64, 192.0)
}

pub(crate) fn app_with_people(n: usize) -> SkeleGuideApp {
    let mut app = SkeleGuideApp::new(&GuiOptions::default());
    // the app opens a bundled sample scene at start; poses use its canvas
    let (w, h) = app.doc.canvas();
    let mut set = PoseSet::new(w, h);
    for i in 0..n {
        let mut p = default_person(person_center(i), PERSON_HEIGHT);
        // raise the left wrist so that mirroring changes the pose
        let w = p.joints[7].as_mut().unwrap();
        w.x += 20.0;
        w.y -= 90.0;
        set.people.push(p);
    }
    app.doc.history.replace("test poses", set);
    app
}

pub(crate) fn joint_screen(h: &Harness<SkeleGuideApp>, person: usize, joint: usize) -> Pos2 {
    let app = h.state();
    let k = app.doc.poses().people[person].joints[joint].unwrap();
    app.canvas.to_screen(k.x, k.y)
}

/// A primary-button drag through the harness' helpers, in four moves.
pub(crate) fn drag(h: &mut Harness<SkeleGuideApp>, from: Pos2, delta: Vec2) {
    h.hover_at(from);
    h.run();
    h.drag_at(from);
    h.run();
    for i in 1..=4 {
        h.hover_at(from + delta * (i as f32 / 4.0));
        h.run();
    }
    h.drop_at(from + delta);
    h.run();
}

/// Puts one raw event into the next frame and runs the frames it causes.
pub(crate) fn send(h: &mut Harness<SkeleGuideApp>, event: Event) {
    h.input_mut().events.push(event);
    h.run();
}

pub(crate) fn button(
    h: &mut Harness<SkeleGuideApp>,
    at: Pos2,
    button: PointerButton,
    pressed: bool,
) {
    send(
        h,
        Event::PointerButton {
            pos: at,
            button,
            pressed,
            modifiers: Modifiers::NONE,
        },
    );
}

/// A drag with `button` from `from` to `to` in `moves` equal pointer moves, one event a frame,
/// the way a mouse reports it.
pub(crate) fn drag_with(
    h: &mut Harness<SkeleGuideApp>,
    pressed: PointerButton,
    from: Pos2,
    to: Pos2,
    moves: usize,
) {
    send(h, Event::PointerMoved(from));
    button(h, from, pressed, true);
    for i in 1..=moves {
        send(
            h,
            Event::PointerMoved(from.lerp(to, i as f32 / moves as f32)),
        );
    }
    button(h, to, pressed, false);
}

/// A randomly initialised tiny model directory, shared by the generation tests.
pub(crate) fn tiny_model() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        skeleguide_engine::modeldir::init_random(d.path(), "tiny", 7).unwrap();
        d
    })
    .path()
}

/// The tiny model shipped in the repository.
pub(crate) fn embedded_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/models/tiny")
}

/// Writes a 160×120 gradient scene into `dir`.
pub(crate) fn write_scene(dir: &Path) -> PathBuf {
    let scene = dir.join("scene.png");
    image::RgbImage::from_fn(160, 120, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 2) as u8, 100])
    })
    .save(&scene)
    .unwrap();
    scene
}

/// One person on a 160×120 scene, with the random tiny model.
pub(crate) fn app_with_scene_and_model() -> (SkeleGuideApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let scene = write_scene(dir.path());
    let mut app = app_with_people(1);
    app.open_path(&scene);
    app.gen.model_dir = tiny_model().display().to_string();
    (app, dir)
}

/// Runs frames until no job is in flight, at most `secs` seconds.
pub(crate) fn run_until_idle(h: &mut Harness<SkeleGuideApp>, secs: u64) {
    let start = std::time::Instant::now();
    while h.state().running.is_some() && start.elapsed().as_secs() < secs {
        std::thread::sleep(std::time::Duration::from_millis(20));
        h.run();
    }
}
