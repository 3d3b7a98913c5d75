//! Proportions that hold, driven by real pointer and key events: the length lock (a dragged
//! joint turns about its parent and carries the joints below it), symmetric editing (the other
//! side follows as a mirror image about the body's axis), and scaling about the feet. Each edit
//! is one undo step.

mod common;

use common::*;
use egui::{Key, Modifiers, PointerButton, Pos2, Vec2};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use skeleguide::gui::SkeleGuideApp;
use skeleguide_engine::pose::skeleton::joint::*;
use skeleguide_engine::pose::{Pose, PoseSet, LIMBS};

/// Pixels of disagreement allowed after a drag through screen points.
const TOL: f64 = 0.5;

fn at(p: &Pose, j: usize) -> (f64, f64) {
    let k = p.joints[j].unwrap();
    (k.x, k.y)
}

fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - b.0).hypot(a.1 - b.1)
}

fn bone_lengths(p: &Pose) -> Vec<f64> {
    (0..LIMBS.len())
        .map(|k| p.limb_length(k).unwrap())
        .collect()
}

/// The mirror image of `q` about the line through the neck and the midpoint of the hips.
fn mirrored(p: &Pose, q: (f64, f64)) -> (f64, f64) {
    let (n, r, l) = (at(p, NECK), at(p, R_HIP), at(p, L_HIP));
    let (dx, dy) = ((r.0 + l.0) / 2.0 - n.0, (r.1 + l.1) / 2.0 - n.1);
    let len = dx.hypot(dy);
    let (dx, dy) = (dx / len, dy / len);
    let (vx, vy) = (q.0 - n.0, q.1 - n.1);
    let along = vx * dx + vy * dy;
    (n.0 + 2.0 * along * dx - vx, n.1 + 2.0 * along * dy - vy)
}

/// Drags `joint` of person 0 by `delta` screen points, in ten moves as a mouse reports them.
fn drag_joint(h: &mut Harness<SkeleGuideApp>, joint: usize, delta: Vec2) -> Pos2 {
    let from = joint_screen(h, 0, joint);
    drag_with(h, PointerButton::Primary, from, from + delta, 10);
    from + delta
}

/// Ctrl+Z once: the state before the edit comes back exactly.
fn undo_restores(h: &mut Harness<SkeleGuideApp>, before: &PoseSet) {
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc.poses(), before, "one Ctrl+Z undoes the drag");
}

#[test]
fn a_locked_drag_turns_the_limb_and_keeps_every_bone_length() {
    let mut h = harness(app_with_people(1));
    h.get_by_label("Lock bone lengths (L)").click();
    h.run();
    assert!(h.state().canvas.drag_options.lock_lengths);
    let before = h.state().doc.poses().clone();
    let p0 = &before.people[0];
    let to = drag_joint(&mut h, L_ELBOW, Vec2::new(35.0, -40.0));
    let p1 = h.state().doc.poses().people[0].clone();
    for (k, (a, b)) in bone_lengths(&p1).iter().zip(bone_lengths(p0)).enumerate() {
        assert!((a - b).abs() <= TOL, "limb {k}: {b} -> {a}");
    }
    // the elbow turned towards the pointer, the wrist went with it, the rest stayed
    let pointer = h.state().canvas.to_image(to);
    let shoulder = at(p0, L_SHOULDER);
    let upper_arm = distance(at(p0, L_ELBOW), shoulder);
    let want = (
        shoulder.0 + (pointer.0 - shoulder.0) * upper_arm / distance(pointer, shoulder),
        shoulder.1 + (pointer.1 - shoulder.1) * upper_arm / distance(pointer, shoulder),
    );
    assert!(
        distance(at(&p1, L_ELBOW), want) <= TOL,
        "{:?}",
        at(&p1, L_ELBOW)
    );
    assert!(distance(at(&p1, L_WRIST), at(p0, L_WRIST)) > 10.0);
    for j in [NECK, L_SHOULDER, R_ELBOW, R_WRIST, L_HIP, NOSE] {
        assert_eq!(p1.joints[j], p0.joints[j], "joint {j} stays");
    }
    undo_restores(&mut h, &before);

    // the neck is the root: the whole person moves as one
    let zoom = h.state().canvas.zoom as f64;
    let d = Vec2::new(-22.0, 17.0);
    drag_joint(&mut h, NECK, d);
    let p1 = h.state().doc.poses().people[0].clone();
    for (a, b) in p1.joints.iter().zip(&p0.joints) {
        let (a, b) = (a.unwrap(), b.unwrap());
        let moved = (a.x - b.x, a.y - b.y);
        assert!(
            distance(moved, (d.x as f64 / zoom, d.y as f64 / zoom)) <= 1e-3,
            "{moved:?}"
        );
    }
    undo_restores(&mut h, &before);
}

#[test]
fn with_the_lock_off_a_drag_stretches_the_bone() {
    let mut h = harness(app_with_people(1));
    assert!(
        !h.state().canvas.drag_options.lock_lengths,
        "off by default"
    );
    let before = h.state().doc.poses().clone();
    let p0 = &before.people[0];
    // outwards along the upper arm
    let (s, e) = (
        joint_screen(&h, 0, L_SHOULDER),
        joint_screen(&h, 0, L_ELBOW),
    );
    drag_joint(&mut h, L_ELBOW, (e - s).normalized() * 30.0);
    let p1 = h.state().doc.poses().people[0].clone();
    let (a, b) = (
        distance(at(&p1, L_ELBOW), at(&p1, L_SHOULDER)),
        distance(at(p0, L_ELBOW), at(p0, L_SHOULDER)),
    );
    assert!(a - b > 10.0, "upper arm {b} -> {a}");
    assert_eq!(p1.joints[L_WRIST], p0.joints[L_WRIST], "the wrist stays");
    undo_restores(&mut h, &before);
}

#[test]
fn a_symmetric_drag_moves_the_other_side_to_the_mirror_image() {
    let mut h = harness(app_with_people(1));
    h.key_press(Key::X);
    h.run();
    assert!(h.state().canvas.drag_options.symmetric);
    let before = h.state().doc.poses().clone();
    let p0 = &before.people[0];
    drag_joint(&mut h, L_ELBOW, Vec2::new(28.0, -33.0));
    let p1 = h.state().doc.poses().people[0].clone();
    assert!(distance(at(&p1, L_ELBOW), at(p0, L_ELBOW)) > 10.0);
    let want = mirrored(p0, at(&p1, L_ELBOW));
    assert!(
        distance(at(&p1, R_ELBOW), want) <= TOL,
        "right elbow {:?}, mirror image {want:?}",
        at(&p1, R_ELBOW)
    );
    undo_restores(&mut h, &before);

    // with the length lock too: both arms turn, mirrored, and keep their lengths
    h.key_press(Key::L);
    h.run();
    assert!(h.state().canvas.drag_options.lock_lengths);
    drag_joint(&mut h, L_ELBOW, Vec2::new(-30.0, 25.0));
    let p1 = h.state().doc.poses().people[0].clone();
    for (k, (a, b)) in bone_lengths(&p1).iter().zip(bone_lengths(p0)).enumerate() {
        assert!((a - b).abs() <= TOL, "limb {k}: {b} -> {a}");
    }
    assert!(distance(at(&p1, R_ELBOW), at(p0, R_ELBOW)) > 10.0);
    let want = mirrored(p0, at(&p1, L_ELBOW));
    assert!(
        distance(at(&p1, R_ELBOW), want) <= TOL,
        "right elbow {:?}, mirror image {want:?}",
        at(&p1, R_ELBOW)
    );
    undo_restores(&mut h, &before);
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
fn scaling_a_person_keeps_its_feet_where_they_stand() {
    let mut h = harness(app_with_people(2));
    let neck = joint_screen(&h, 1, NECK);
    send(&mut h, egui::Event::PointerMoved(neck));
    button(&mut h, neck, PointerButton::Primary, true);
    button(&mut h, neck, PointerButton::Primary, false);
    assert_eq!(h.state().doc.selected, Some(1));
    let before = h.state().doc.poses().clone();
    let feet = |p: &Pose| {
        let (r, l) = (at(p, R_ANKLE), at(p, L_ANKLE));
        ((r.0 + l.0) / 2.0, (r.1 + l.1) / 2.0)
    };
    let height = |p: &Pose| {
        let (_, y0, _, y1) = p.body_bbox().unwrap();
        y1 - y0
    };
    // down: a child beside an adult
    let from = scale_handle(&h, 1);
    drag_with(
        &mut h,
        PointerButton::Primary,
        from,
        from + Vec2::new(-6.0, 70.0),
        8,
    );
    let after = h.state().doc.poses().clone();
    let (p0, p1) = (&before.people[1], &after.people[1]);
    assert!(
        height(p1) < 0.85 * height(p0),
        "{} -> {}",
        height(p0),
        height(p1)
    );
    assert!(
        distance(feet(p1), feet(p0)) <= TOL,
        "{:?} -> {:?}",
        feet(p0),
        feet(p1)
    );
    assert_eq!(after.people[0], before.people[0], "the other person stays");
    undo_restores(&mut h, &before);
}
