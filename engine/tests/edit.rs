//! The pure edit operations.

use skeleguide_engine::pose::edit::{self, default_person, Edit};
use skeleguide_engine::pose::proportions::{drag_joint, DragOptions};
use skeleguide_engine::pose::{skeleton::joint, Keypoint, PoseSet};

fn set() -> PoseSet {
    let mut s = PoseSet::new(512, 512);
    s.people.push(default_person((200.0, 256.0), 300.0));
    s.people.push(default_person((400.0, 300.0), 150.0));
    // make person 0 asymmetric: raise the left wrist, hide the right ear, add a hand
    s.people[0].joints[joint::L_WRIST] = Some(Keypoint::new(260.0, 60.0));
    s.people[0].joints[joint::R_EAR] = None;
    s.people[0].hand_left = Some(
        (0..21)
            .map(|i| Some(Keypoint::new(260.0 + i as f64, 50.0)))
            .collect(),
    );
    s
}

fn close(a: &PoseSet, b: &PoseSet) -> bool {
    a.people.len() == b.people.len()
        && a.people.iter().zip(&b.people).all(|(p, q)| {
            let pts = |p: &skeleguide_engine::pose::Pose| {
                p.all_points().map(|k| (k.x, k.y)).collect::<Vec<_>>()
            };
            p.present_indices() == q.present_indices()
                && p.hand_left.is_some() == q.hand_left.is_some()
                && pts(p)
                    .iter()
                    .zip(pts(q))
                    .all(|(a, b)| (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9)
        })
}

#[test]
fn mirror_twice_is_identity_and_anatomically_right() {
    let s = set();
    let m = edit::mirror_person(&s, 0).unwrap();
    assert_ne!(m, s);
    let p = &m.people[0];
    let q = &s.people[0];
    // The raised wrist was the left one on the image's right; mirrored, it is the right wrist on
    // the image's left, at the same height.
    let (x0, _, x1, _) = q.body_bbox().unwrap();
    let w = p.joints[joint::R_WRIST].unwrap();
    assert!((w.x - (x0 + x1 - 260.0)).abs() < 1e-9 && w.y == 60.0);
    assert!(p.joints[joint::L_EAR].is_none() && p.joints[joint::R_EAR].is_some());
    assert!(p.hand_right.is_some() && p.hand_left.is_none());
    // the subject's right is still on the viewer's left (frontal body stays frontal)
    assert!(p.joints[joint::R_SHOULDER].unwrap().x < p.joints[joint::L_SHOULDER].unwrap().x);
    assert_eq!(m.people[1], s.people[1]);
    let mm = edit::mirror_person(&m, 0).unwrap();
    assert!(close(&mm, &s));
}

#[test]
fn swap_left_right_keeps_positions() {
    let s = set();
    let w = edit::swap_left_right(&s, 0).unwrap();
    let (p, q) = (&w.people[0], &s.people[0]);
    assert_eq!(p.joints[joint::R_WRIST], q.joints[joint::L_WRIST]);
    assert_eq!(p.joints[joint::NOSE], q.joints[joint::NOSE]);
    assert_eq!(edit::swap_left_right(&w, 0).unwrap(), s);
}

#[test]
fn joint_and_person_edits() {
    let s = set();
    let m = drag_joint(&s, 1, joint::NOSE, (10.0, 20.0), DragOptions::default()).unwrap();
    assert_eq!(
        m.people[1].joints[0].map(|k| (k.x, k.y)),
        Some((10.0, 20.0))
    );
    let h = edit::hide_joint(&s, 1, joint::NOSE).unwrap();
    assert!(h.people[1].joints[0].is_none());
    // show without a position: placed where the default body puts it, near the original
    let back = edit::show_joint(&h, 1, joint::NOSE, None).unwrap();
    let (a, b) = (
        back.people[1].joints[0].unwrap(),
        s.people[1].joints[0].unwrap(),
    );
    assert!(
        (a.x - b.x).abs() < 1.0 && (a.y - b.y).abs() < 1.0,
        "{a:?} vs {b:?}"
    );
    let d = edit::duplicate_person(&s, 0, (5.0, 0.0)).unwrap();
    assert_eq!(d.people.len(), 3);
    assert_eq!(
        d.people[2].joints[0].unwrap().x,
        s.people[0].joints[0].unwrap().x + 5.0
    );
    let del = edit::delete_person(&d, 0).unwrap();
    assert_eq!(del.people[0], s.people[1]);
    let t = edit::translate_person(&s, 0, 3.0, -4.0).unwrap();
    assert_eq!(t.people[0].hand_left.as_ref().unwrap()[0].unwrap().y, 46.0);
    let sc = edit::scale_person(&s, 1, 2.0, 2.0, (400.0, 300.0)).unwrap();
    let (_, y0, _, y1) = sc.people[1].body_bbox().unwrap();
    let (_, z0, _, z1) = s.people[1].body_bbox().unwrap();
    assert!(((y1 - y0) - 2.0 * (z1 - z0)).abs() < 1e-9);
    let a = edit::add_person(&s, (100.0, 100.0), 80.0).unwrap();
    let (_, y0, _, y1) = a.people[2].body_bbox().unwrap();
    assert!((y1 - y0) > 0.8 * 80.0 && (y1 - y0) <= 80.0);
    // replay through the Edit enum gives the same result
    assert_eq!(
        Edit::Mirror { person: 0 }.apply(&s).unwrap(),
        edit::mirror_person(&s, 0).unwrap()
    );
    // the input is never changed, and bad indices are errors, not panics
    assert_eq!(s, set());
    assert!(edit::delete_person(&s, 9).is_err());
    assert!(drag_joint(&s, 0, 18, (0.0, 0.0), DragOptions::default()).is_err());
    assert!(drag_joint(&s, 0, 1, (f64::NAN, 0.0), DragOptions::default()).is_err());
    assert!(edit::scale_person(&s, 0, 0.0, 1.0, (0.0, 0.0)).is_err());
}

#[test]
fn insert_and_fit_a_person() {
    let s = set();
    let src = default_person((50.0, 60.0), 100.0);
    // fitted: 300 px tall, box centre on (400, 300), proportions kept
    let fitted = edit::fit_person(&src, (400.0, 300.0), 300.0);
    let ys: Vec<f64> = fitted.joints.iter().flatten().map(|k| k.y).collect();
    let (y0, y1) = ys
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));
    assert!((y1 - y0 - 300.0).abs() < 1e-9);
    assert!(((y0 + y1) / 2.0 - 300.0).abs() < 1e-9);
    let w_src = src.joints[5].unwrap().x - src.joints[2].unwrap().x;
    let w_fit = fitted.joints[5].unwrap().x - fitted.joints[2].unwrap().x;
    assert!((w_fit / w_src - 300.0 / (0.95 - 0.055) / 100.0).abs() < 1e-9);
    let out = Edit::InsertPerson {
        pose: Box::new(fitted.clone()),
    }
    .apply(&s)
    .unwrap();
    assert_eq!(out.people.len(), s.people.len() + 1);
    assert_eq!(out.people.last(), Some(&fitted));
    // unusable coordinates are refused and the input is untouched
    let mut bad = fitted;
    bad.joints[0] = Some(Keypoint::new(f64::NAN, 1.0));
    assert!(Edit::InsertPerson {
        pose: Box::new(bad)
    }
    .apply(&s)
    .is_err());
}
