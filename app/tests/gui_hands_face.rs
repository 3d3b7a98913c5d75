//! Hands and face in the editor, driven by real pointer and key events: a pose file's hands and
//! face are draggable point by point, move with their wrist and nose (plain and length-locked
//! drags, moving the person), Mirror and Swap L/R exchange the hands, and a hidden hand leaves
//! the canvas and the saved file. Each edit is one undo step.

mod common;

use common::*;
use egui::{Event, Key, Modifiers, MouseWheelSource, MouseWheelUnit, PointerButton, Pos2, Vec2};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use skeleguide::gui::SkeleGuideApp;
use skeleguide_engine::pose::edit::{self, Part};
use skeleguide_engine::pose::skeleton::{joint::*, mirror_face_point};
use skeleguide_engine::pose::{self, Keypoint, Pose, PoseSet};
use std::path::{Path, PathBuf};

/// Pixels of disagreement allowed after a drag through screen points.
const TOL: f64 = 0.5;

/// One person with both hands and a face, loaded from a pose file (returned with the app).
fn app_with_hands_and_face(dir: &Path) -> (SkeleGuideApp, PathBuf) {
    let mut app = app_with_people(1);
    let mut set = app.doc.poses().clone();
    for part in Part::ALL {
        set = edit::show_part(&set, 0, part).unwrap();
    }
    let path = dir.join("whole.json");
    pose::write_pose_file(&path, std::slice::from_ref(&set), Default::default()).unwrap();
    app.open_path(&path);
    assert!(!app.status.error, "{}", app.status.text);
    assert_eq!(app.doc.poses(), &set, "hands and face read from the file");
    (app, path)
}

fn points(p: &Pose, part: Part) -> Vec<Keypoint> {
    part.points(p).unwrap().iter().map(|k| k.unwrap()).collect()
}

fn point_screen(h: &Harness<SkeleGuideApp>, part: Part, i: usize) -> Pos2 {
    let app = h.state();
    let k = points(&app.doc.poses().people[0], part)[i];
    app.canvas.to_screen(k.x, k.y)
}

fn at(p: &Pose, j: usize) -> (f64, f64) {
    let k = p.joints[j].unwrap();
    (k.x, k.y)
}

fn assert_shifted(after: &[Keypoint], before: &[Keypoint], by: (f64, f64), what: &str) {
    assert_eq!(after.len(), before.len());
    for (i, (a, b)) in after.iter().zip(before).enumerate() {
        let moved = (a.x - b.x, a.y - b.y);
        assert!(
            (moved.0 - by.0).abs() <= TOL && (moved.1 - by.1).abs() <= TOL,
            "{what} point {i} moved by {moved:?}, expected {by:?}"
        );
    }
}

/// The pointer's shift in image pixels for a shift `d` in screen points.
fn in_image(h: &Harness<SkeleGuideApp>, d: Vec2) -> (f64, f64) {
    let zoom = h.state().canvas.zoom as f64;
    (d.x as f64 / zoom, d.y as f64 / zoom)
}

fn drag_from(h: &mut Harness<SkeleGuideApp>, from: Pos2, d: Vec2) {
    drag_with(h, PointerButton::Primary, from, from + d, 10);
}

fn drag_joint(h: &mut Harness<SkeleGuideApp>, joint: usize, d: Vec2) {
    let from = joint_screen(h, 0, joint);
    drag_from(h, from, d);
}

/// Ctrl+Z once: the state before the edit comes back exactly.
fn undo_restores(h: &mut Harness<SkeleGuideApp>, before: &PoseSet) {
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc.poses(), before, "one Ctrl+Z undoes the edit");
}

fn undo_label(h: &Harness<SkeleGuideApp>) -> Option<String> {
    h.state().doc.history.undo_label()
}

/// Selects person 0 by clicking its neck.
fn select(h: &mut Harness<SkeleGuideApp>) {
    let p = joint_screen(h, 0, NECK);
    send(h, Event::PointerMoved(p));
    button(h, p, PointerButton::Primary, true);
    button(h, p, PointerButton::Primary, false);
    assert_eq!(h.state().doc.selected, Some(0));
}

/// The screen positions of every joint, hand and face point shown.
fn every_point(h: &Harness<SkeleGuideApp>) -> Vec<Pos2> {
    let app = h.state();
    let p = &app.doc.poses().people[0];
    p.all_points()
        .map(|k| app.canvas.to_screen(k.x, k.y))
        .collect()
}

/// Clicks the widget labelled `label` in the right panel, scrolling it into view with the wheel.
fn click_in_panel(h: &mut Harness<SkeleGuideApp>, label: &str) {
    for _ in 0..20 {
        let r = h.get_by_label(label).rect();
        // the status bar covers the bottom of the window
        if r.max.y < 800.0 - 48.0 {
            h.get_by_label(label).click();
            h.run();
            return;
        }
        let over = Pos2::new(r.center().x, 400.0);
        send(h, Event::PointerMoved(over));
        h.input_mut().events.push(Event::MouseWheel {
            unit: MouseWheelUnit::Point,
            delta: Vec2::new(0.0, -120.0),
            phase: egui::TouchPhase::Move,
            source: MouseWheelSource::Unknown,
            modifiers: Modifiers::NONE,
        });
        for _ in 0..30 {
            h.step();
        }
        h.run();
    }
    panic!("{label} never scrolled into view");
}

#[test]
fn dragging_a_hand_point_moves_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app_with_hands_and_face(dir.path());
    let mut h = harness(app);
    let before = h.state().doc.poses().clone();
    let from = point_screen(&h, Part::LeftHand, 8);
    for j in 0..18 {
        assert!(
            joint_screen(&h, 0, j).distance(from) > 12.0,
            "joint {j} covers it"
        );
    }
    let d = Vec2::new(14.0, -11.0);
    drag_from(&mut h, from, d);
    let (p0, p1) = (&before.people[0], &h.state().doc.poses().people[0].clone());
    let (l0, l1) = (points(p0, Part::LeftHand), points(p1, Part::LeftHand));
    assert_shifted(&l1[8..9], &l0[8..9], in_image(&h, d), "the dragged");
    for i in (0..21).filter(|&i| i != 8) {
        assert_eq!(l1[i], l0[i], "left hand point {i} stays");
    }
    assert_eq!(p1.joints, p0.joints);
    assert_eq!((&p1.hand_right, &p1.face), (&p0.hand_right, &p0.face));
    assert_eq!(undo_label(&h).as_deref(), Some("move left hand point"));
    undo_restores(&mut h, &before);
}

#[test]
fn the_wrist_carries_its_hand_in_every_kind_of_drag() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app_with_hands_and_face(dir.path());
    let mut h = harness(app);
    let before = h.state().doc.poses().clone();
    let p0 = &before.people[0];

    // a plain drag: the hand shifts with the wrist, the rest stays
    let d = Vec2::new(25.0, -15.0);
    drag_joint(&mut h, L_WRIST, d);
    let p1 = h.state().doc.poses().people[0].clone();
    let (w0, w1) = (at(p0, L_WRIST), at(&p1, L_WRIST));
    let moved = (w1.0 - w0.0, w1.1 - w0.1);
    let want = in_image(&h, d);
    assert!((moved.0 - want.0).abs() <= TOL && (moved.1 - want.1).abs() <= TOL);
    assert_shifted(
        &points(&p1, Part::LeftHand),
        &points(p0, Part::LeftHand),
        moved,
        "left hand",
    );
    assert_eq!((&p1.hand_right, &p1.face), (&p0.hand_right, &p0.face));
    undo_restores(&mut h, &before);

    // the length lock: the elbow turns the forearm and the hand turns with it, keeping its shape
    h.key_press(Key::L);
    h.run();
    assert!(h.state().canvas.drag_options.lock_lengths);
    drag_joint(&mut h, L_ELBOW, Vec2::new(30.0, 25.0));
    let p1 = h.state().doc.poses().people[0].clone();
    let (l0, l1) = (points(p0, Part::LeftHand), points(&p1, Part::LeftHand));
    let reach = |w: (f64, f64), k: &Keypoint| (k.x - w.0).hypot(k.y - w.1);
    for (i, (a, b)) in l1.iter().zip(&l0).enumerate() {
        let (ra, rb) = (reach(at(&p1, L_WRIST), a), reach(at(p0, L_WRIST), b));
        assert!(
            (ra - rb).abs() <= 1e-6,
            "point {i}: {rb} -> {ra} from the wrist"
        );
    }
    assert!(
        reach((l0[12].x, l0[12].y), &l1[12]) > 5.0,
        "the hand turned"
    );
    undo_restores(&mut h, &before);
    h.key_press(Key::L);
    h.run();

    // moving the whole person moves its hands and face by the same shift
    select(&mut h);
    let (x0, y0, x1, y1) = p0.body_bbox().unwrap();
    let c = h.state().canvas.to_screen((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let shown = every_point(&h);
    let from = (0..400)
        .map(|i| c + Vec2::new((i % 20) as f32 - 10.0, (i / 20) as f32 - 10.0) * 2.0)
        .find(|p| shown.iter().all(|q| q.distance(*p) >= 14.0))
        .expect("a point inside the person away from every handle");
    let d = Vec2::new(-31.0, 18.0);
    drag_from(&mut h, from, d);
    assert_eq!(undo_label(&h).as_deref(), Some("move person"));
    let p1 = h.state().doc.poses().people[0].clone();
    for part in Part::ALL {
        assert_shifted(
            &points(&p1, part),
            &points(p0, part),
            in_image(&h, d),
            part.name(),
        );
    }
    undo_restores(&mut h, &before);
}

#[test]
fn dragging_the_nose_carries_the_face() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app_with_hands_and_face(dir.path());
    let mut h = harness(app);
    let before = h.state().doc.poses().clone();
    let p0 = &before.people[0];
    // the nose handle lies over face points: the joint is the one grabbed
    let d = Vec2::new(-14.0, 10.0);
    drag_joint(&mut h, NOSE, d);
    assert_eq!(undo_label(&h).as_deref(), Some("move joint"));
    let p1 = h.state().doc.poses().people[0].clone();
    let (n0, n1) = (at(p0, NOSE), at(&p1, NOSE));
    let moved = (n1.0 - n0.0, n1.1 - n0.1);
    let want = in_image(&h, d);
    assert!((moved.0 - want.0).abs() <= TOL && (moved.1 - want.1).abs() <= TOL);
    assert_shifted(
        &points(&p1, Part::Face),
        &points(p0, Part::Face),
        moved,
        "face",
    );
    assert_eq!(
        (&p1.hand_left, &p1.hand_right),
        (&p0.hand_left, &p0.hand_right)
    );
    for j in (0..18).filter(|&j| j != NOSE) {
        assert_eq!(p1.joints[j], p0.joints[j], "joint {j} stays");
    }
    undo_restores(&mut h, &before);
}

#[test]
fn mirror_and_swap_exchange_the_hands() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app_with_hands_and_face(dir.path());
    let mut h = harness(app);
    select(&mut h);
    let before = h.state().doc.poses().clone();
    let p0 = &before.people[0];
    assert_ne!(p0.hand_left, p0.hand_right);
    h.key_press(Key::M);
    h.run();
    assert_eq!(undo_label(&h).as_deref(), Some("mirror person"));
    let p1 = h.state().doc.poses().people[0].clone();
    let (x0, _, x1, _) = p0.body_bbox().unwrap();
    let flip = |k: &Keypoint| (x0 + x1 - k.x, k.y);
    let same = |a: &Keypoint, b: (f64, f64)| (a.x - b.0).abs() < 1e-9 && a.y == b.1;
    for (from, to) in [
        (Part::LeftHand, Part::RightHand),
        (Part::RightHand, Part::LeftHand),
    ] {
        let (a, b) = (points(&p1, to), points(p0, from));
        for i in 0..21 {
            assert!(same(&a[i], flip(&b[i])), "{} point {i}", to.name());
        }
    }
    // the face: mirrored point-wise, each point taking its left/right counterpart's index
    let (f0, f1) = (points(p0, Part::Face), points(&p1, Part::Face));
    for i in 0..f1.len() {
        assert!(
            same(&f1[i], flip(&f0[mirror_face_point(i)])),
            "face point {i}"
        );
    }
    undo_restores(&mut h, &before);

    // Swap L/R: the hands change labels without moving
    click_in_panel(&mut h, "Swap L/R");
    assert_eq!(undo_label(&h).as_deref(), Some("swap left/right"));
    let p1 = h.state().doc.poses().people[0].clone();
    assert_eq!(
        (&p1.hand_left, &p1.hand_right),
        (&p0.hand_right, &p0.hand_left)
    );
    undo_restores(&mut h, &before);
}

#[test]
fn a_hidden_left_hand_leaves_the_canvas_and_the_saved_file() {
    let dir = tempfile::tempdir().unwrap();
    let (app, path) = app_with_hands_and_face(dir.path());
    let mut h = harness(app);
    select(&mut h);
    let before = h.state().doc.poses().clone();
    let tip = point_screen(&h, Part::LeftHand, 8);

    click_in_panel(&mut h, "left hand");
    assert_eq!(undo_label(&h).as_deref(), Some("hide left hand"));
    let hidden = h.state().doc.poses().clone();
    let (p0, p1) = (&before.people[0], &hidden.people[0]);
    assert_eq!(p1.hand_left, None);
    assert_eq!(
        (p1.joints, &p1.hand_right, &p1.face),
        (p0.joints, &p0.hand_right, &p0.face)
    );
    // nothing left to grab where the hand was
    drag_from(&mut h, tip, Vec2::new(15.0, 10.0));
    assert_eq!(h.state().doc.poses(), &hidden);
    assert_eq!(undo_label(&h).as_deref(), Some("hide left hand"));

    // saved without it; the other hand and the face stay in the file
    h.key_press_modifiers(Modifiers::COMMAND, Key::S);
    h.run();
    assert!(!h.state().status.error, "{}", h.state().status.text);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let person = &json["people"][0];
    assert!(person["hand_left_keypoints_2d"].is_null(), "{person}");
    let len = |k: &str| person[k].as_array().map(Vec::len);
    assert_eq!(len("hand_right_keypoints_2d"), Some(63));
    assert_eq!(len("face_keypoints_2d"), Some(210));
    undo_restores(&mut h, &before);

    // a right-click on one of its points hides the hand too
    send(&mut h, Event::PointerMoved(tip));
    button(&mut h, tip, PointerButton::Secondary, true);
    button(&mut h, tip, PointerButton::Secondary, false);
    assert_eq!(h.state().doc.poses(), &hidden);
    undo_restores(&mut h, &before);

    // the face is hidden and shown the same way; shown again, it is the default one at the nose
    click_in_panel(&mut h, "face");
    assert_eq!(h.state().doc.poses().people[0].face, None);
    click_in_panel(&mut h, "face");
    assert_eq!(undo_label(&h).as_deref(), Some("show face"));
    assert_eq!(h.state().doc.poses(), &before);
}
