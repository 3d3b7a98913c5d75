//! Edits that keep a person's proportions: a joint dragged with the bone lengths locked turns
//! about its parent and carries the joints below it; a symmetric drag moves the other side's
//! joint to the mirror image about the body's axis; scaling keeps the feet where they stand.
//!
//! The skeleton is a tree of the drawn limbs rooted at the neck: neck → shoulders → elbows →
//! wrists, neck → hips → knees → ankles, neck → nose → eyes → ears. A hand hangs from its wrist
//! and the face from the nose: they move with them, rigidly, in every drag.

use super::edit::{check_joint, finite, with_person, EditError, Part};
use super::skeleton::{joint, mirror_joint, LIMBS, NUM_JOINTS};
use super::types::{Keypoint, Pose, PoseSet};

/// Each joint's parent in the limb tree rooted at the neck; `None` for the neck.
pub const PARENT: [Option<usize>; NUM_JOINTS] = parents_from_limbs();

const fn parents_from_limbs() -> [Option<usize>; NUM_JOINTS] {
    let mut parent = [None; NUM_JOINTS];
    let mut reached = [false; NUM_JOINTS];
    reached[joint::NECK] = true;
    // grow the tree from the neck until no limb reaches a new joint (the limbs are not ordered)
    let mut grew = true;
    while grew {
        grew = false;
        let mut i = 0;
        while i < LIMBS.len() {
            let (a, b) = LIMBS[i];
            if reached[a] && !reached[b] {
                parent[b] = Some(a);
                reached[b] = true;
                grew = true;
            } else if reached[b] && !reached[a] {
                parent[a] = Some(b);
                reached[a] = true;
                grew = true;
            }
            i += 1;
        }
    }
    parent
}

/// Which joints lie in the subtree of `root` (`root` included).
pub fn subtree(root: usize) -> [bool; NUM_JOINTS] {
    std::array::from_fn(|j| {
        let mut at = Some(j);
        while let Some(k) = at {
            if k == root {
                return true;
            }
            at = PARENT[k];
        }
        false
    })
}

/// How a joint drag moves the rest of the body (the editor's options).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DragOptions {
    /// The joint turns about its nearest present ancestor, keeping its distance to it, and
    /// carries the joints below it; the neck (the root) moves the whole person.
    pub lock_lengths: bool,
    /// The other side's joint moves to the mirror image of the dragged one about the body axis.
    pub symmetric: bool,
}

/// A rotation about `pivot` followed by a shift: how a limb moves as one piece.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RigidMotion {
    pivot: (f64, f64),
    cos: f64,
    sin: f64,
    shift: (f64, f64),
}

impl RigidMotion {
    fn shift(dx: f64, dy: f64) -> Self {
        RigidMotion {
            pivot: (0.0, 0.0),
            cos: 1.0,
            sin: 0.0,
            shift: (dx, dy),
        }
    }

    fn apply(&self, k: &mut Keypoint) {
        let (dx, dy) = (k.x - self.pivot.0, k.y - self.pivot.1);
        k.x = self.pivot.0 + self.cos * dx - self.sin * dy + self.shift.0;
        k.y = self.pivot.1 + self.sin * dx + self.cos * dy + self.shift.1;
    }
}

/// The line through the neck and the midpoint of the hips: the body's axis of symmetry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BodyAxis {
    /// A point on the axis, in pixels.
    pub origin: (f64, f64),
    /// The axis' direction, of unit length.
    pub direction: (f64, f64),
}

impl BodyAxis {
    /// The mirror image of `p` about the axis.
    pub fn reflect(&self, p: (f64, f64)) -> (f64, f64) {
        let (vx, vy) = (p.0 - self.origin.0, p.1 - self.origin.1);
        let (dx, dy) = self.direction;
        let along = vx * dx + vy * dy;
        (
            self.origin.0 + 2.0 * along * dx - vx,
            self.origin.1 + 2.0 * along * dy - vy,
        )
    }
}

/// The person's axis of symmetry: through the neck and the midpoint of the hips; vertical
/// through the neck when a hip is missing; without a neck, vertical through the middle of the
/// body box (where Mirror puts it). `None` for a person with no joints.
pub fn body_axis(pose: &Pose) -> Option<BodyAxis> {
    let vertical = (0.0, 1.0);
    let Some(neck) = pose.joints[joint::NECK] else {
        let (x0, y0, x1, y1) = pose.body_bbox()?;
        return Some(BodyAxis {
            origin: ((x0 + x1) / 2.0, (y0 + y1) / 2.0),
            direction: vertical,
        });
    };
    let direction = match (pose.joints[joint::R_HIP], pose.joints[joint::L_HIP]) {
        (Some(r), Some(l)) => {
            let (dx, dy) = ((r.x + l.x) / 2.0 - neck.x, (r.y + l.y) / 2.0 - neck.y);
            let len = dx.hypot(dy);
            // hips folded onto the neck give no direction
            if len > 1e-9 {
                (dx / len, dy / len)
            } else {
                vertical
            }
        }
        _ => vertical,
    };
    Some(BodyAxis {
        origin: (neck.x, neck.y),
        direction,
    })
}

/// The nearest present ancestor of `joint`: the point a locked drag turns it about.
fn pivot(pose: &Pose, joint: usize) -> Option<Keypoint> {
    let mut at = PARENT[joint];
    while let Some(j) = at {
        if let Some(k) = pose.joints[j] {
            return Some(k);
        }
        at = PARENT[j];
    }
    None
}

/// The motion that turns `joint` (at `from`) about its pivot towards `to`, or shifts it there
/// when nothing above it is present.
fn limb_motion(pose: &Pose, joint: usize, from: Keypoint, to: (f64, f64)) -> RigidMotion {
    let Some(p) = pivot(pose, joint) else {
        return RigidMotion::shift(to.0 - from.x, to.1 - from.y);
    };
    let (ux, uy) = (from.x - p.x, from.y - p.y);
    let (wx, wy) = (to.0 - p.x, to.1 - p.y);
    let (lu, lw) = (ux.hypot(uy), wx.hypot(wy));
    // a bone of no length, or the pointer on the pivot, has no direction to turn to
    if lu < 1e-9 || lw < 1e-9 {
        return RigidMotion::shift(0.0, 0.0);
    }
    RigidMotion {
        pivot: (p.x, p.y),
        cos: (ux * wx + uy * wy) / (lu * lw),
        sin: (ux * wy - uy * wx) / (lu * lw),
        shift: (0.0, 0.0),
    }
}

/// Moves the present joints in the subtree of `root` by `motion`, with the hands of the wrists
/// and the face of the nose it holds.
fn carry(pose: &mut Pose, root: usize, motion: &RigidMotion) {
    let moved = subtree(root);
    for (j, k) in pose.joints.iter_mut().enumerate() {
        if let (true, Some(k)) = (moved[j], k) {
            motion.apply(k);
        }
    }
    for part in Part::ALL {
        if moved[part.joint()] {
            part.slot(pose)
                .iter_mut()
                .flatten()
                .flatten()
                .for_each(|k| motion.apply(k));
        }
    }
}

/// Puts `joint` at `to` alone (a missing joint becomes present there) and shifts the part that
/// hangs from it by the same offset, so a wrist moved freely keeps its hand and the nose its face.
fn place_joint(pose: &mut Pose, joint: usize, to: (f64, f64)) {
    let from = pose.joints[joint];
    pose.joints[joint] = Some(Keypoint {
        x: to.0,
        y: to.1,
        confidence: from.map_or(1.0, |k| k.confidence),
    });
    let Some(from) = from else { return };
    let shift = RigidMotion::shift(to.0 - from.x, to.1 - from.y);
    for part in Part::ALL.into_iter().filter(|p| p.joint() == joint) {
        part.slot(pose)
            .iter_mut()
            .flatten()
            .flatten()
            .for_each(|k| shift.apply(k));
    }
}

/// Moves `joint` of `pose` towards `to` as `before` stood; returns where it ends up.
fn move_one(
    pose: &mut Pose,
    before: &Pose,
    joint: usize,
    to: (f64, f64),
    lock: bool,
) -> (f64, f64) {
    match (lock, before.joints[joint]) {
        (true, Some(from)) => {
            carry(pose, joint, &limb_motion(before, joint, from, to));
            pose.joints[joint].map_or(to, |k| (k.x, k.y))
        }
        // free, or a missing joint (nothing to turn): it is placed where asked
        _ => {
            place_joint(pose, joint, to);
            to
        }
    }
}

/// Drags one joint to `to` with the editor's `options`. Without options it is a plain move (a
/// missing joint becomes present there; a wrist shifts its hand along, the nose the face). Locked, the joint turns about its nearest present
/// ancestor and carries the joints below it (the neck shifts the whole person). Symmetric, the
/// other side's joint, when present, then goes to the mirror image of where the dragged one
/// ended, about the body axis of the pose before the drag, moved the same way (locked: turned
/// towards it, so in a symmetric pose the rotation is mirrored).
pub fn drag_joint(
    set: &PoseSet,
    person: usize,
    joint: usize,
    to: (f64, f64),
    options: DragOptions,
) -> Result<PoseSet, EditError> {
    check_joint(joint)?;
    finite(&[to.0, to.1])?;
    with_person(set, person, |p| {
        let before = p.clone();
        let landed = move_one(p, &before, joint, to, options.lock_lengths);
        let twin = mirror_joint(joint);
        if options.symmetric && twin != joint && before.joints[twin].is_some() {
            if let Some(axis) = body_axis(&before) {
                move_one(p, &before, twin, axis.reflect(landed), options.lock_lengths);
            }
        }
        Ok(())
    })
}

/// The point between the feet: the midpoint of the ankles, the one ankle present, or else the
/// lowest present joint. `None` for a person with no joints.
pub fn feet_point(pose: &Pose) -> Option<(f64, f64)> {
    match (pose.joints[joint::R_ANKLE], pose.joints[joint::L_ANKLE]) {
        (Some(r), Some(l)) => Some(((r.x + l.x) / 2.0, (r.y + l.y) / 2.0)),
        (Some(k), None) | (None, Some(k)) => Some((k.x, k.y)),
        (None, None) => pose
            .joints
            .iter()
            .flatten()
            .max_by(|a, b| a.y.total_cmp(&b.y))
            .map(|k| (k.x, k.y)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::edit::{default_person, scale_person, Edit};
    use super::*;
    use joint::*;

    fn set_with(p: Pose) -> PoseSet {
        let mut s = PoseSet::new(800, 600);
        s.people.push(p);
        s
    }

    /// The default person turned by `angle` radians about its neck, so no axis is vertical.
    fn tilted(angle: f64) -> Pose {
        let mut p = default_person((300.0, 300.0), 240.0);
        let n = p.joints[NECK].unwrap();
        let (c, s) = (angle.cos(), angle.sin());
        p.map_points(|k| {
            let (dx, dy) = (k.x - n.x, k.y - n.y);
            (k.x, k.y) = (n.x + c * dx - s * dy, n.y + s * dx + c * dy);
        });
        p
    }

    fn at(p: &Pose, j: usize) -> (f64, f64) {
        let k = p.joints[j].unwrap();
        (k.x, k.y)
    }

    fn near(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9
    }

    fn lengths(p: &Pose) -> Vec<Option<f64>> {
        (0..LIMBS.len()).map(|k| p.limb_length(k)).collect()
    }

    const LOCKED: DragOptions = DragOptions {
        lock_lengths: true,
        symmetric: false,
    };

    #[test]
    fn the_tree_hangs_from_the_neck_along_the_limbs() {
        assert_eq!(PARENT[NECK], None);
        let chains = [
            [NECK, R_SHOULDER, R_ELBOW, R_WRIST],
            [NECK, L_SHOULDER, L_ELBOW, L_WRIST],
            [NECK, R_HIP, R_KNEE, R_ANKLE],
            [NECK, L_HIP, L_KNEE, L_ANKLE],
            [NECK, NOSE, R_EYE, R_EAR],
            [NECK, NOSE, L_EYE, L_EAR],
        ];
        for chain in chains {
            for w in chain.windows(2) {
                assert_eq!(PARENT[w[1]], Some(w[0]), "{chain:?}");
            }
        }
        // every limb joins a joint and its parent
        for &(a, b) in &LIMBS {
            assert!(PARENT[b] == Some(a) || PARENT[a] == Some(b), "limb {a}-{b}");
        }
        assert!(subtree(NECK).iter().all(|&s| s));
        let arm = subtree(L_ELBOW);
        assert_eq!(
            (0..NUM_JOINTS).filter(|&j| arm[j]).collect::<Vec<_>>(),
            [L_ELBOW, L_WRIST]
        );
    }

    #[test]
    fn a_locked_drag_turns_the_limb_and_keeps_every_length() {
        let mut p = tilted(0.3);
        p.hand_left = Some(vec![Some(Keypoint::new(0.0, 0.0)); 21]);
        let w = at(&p, L_WRIST);
        p.hand_left.as_mut().unwrap()[0] = Some(Keypoint::new(w.0 + 5.0, w.1 + 3.0));
        let s = set_with(p.clone());
        for j in [L_ELBOW, R_SHOULDER, L_HIP, R_KNEE, NOSE, L_EYE] {
            let target = (at(&p, j).0 + 37.0, at(&p, j).1 - 52.0);
            let out = drag_joint(&s, 0, j, target, LOCKED).unwrap();
            let q = &out.people[0];
            for (a, b) in lengths(q).iter().zip(lengths(&p)) {
                assert!((a.unwrap() - b.unwrap()).abs() < 1e-9, "joint {j}");
            }
            // the joint lies on the ray from its parent towards the pointer
            let parent = at(&p, PARENT[j].unwrap());
            let (got, want) = (at(q, j), target);
            let cross =
                (got.0 - parent.0) * (want.1 - parent.1) - (got.1 - parent.1) * (want.0 - parent.0);
            let dot =
                (got.0 - parent.0) * (want.0 - parent.0) + (got.1 - parent.1) * (want.1 - parent.1);
            assert!(cross.abs() < 1e-6 && dot > 0.0, "joint {j}");
            // joints outside the subtree stay
            let below = subtree(j);
            for k in (0..NUM_JOINTS).filter(|&k| !below[k]) {
                assert_eq!(q.joints[k], p.joints[k], "joint {k} moved with {j}");
            }
        }
        // the hand turns with its elbow: its offset from the wrist keeps its length
        let out = drag_joint(&s, 0, L_ELBOW, (100.0, 100.0), LOCKED).unwrap();
        let q = &out.people[0];
        let (w, h) = (at(q, L_WRIST), q.hand_left.as_ref().unwrap()[0].unwrap());
        assert!(((h.x - w.0).hypot(h.y - w.1) - 34f64.sqrt()).abs() < 1e-9);
        assert_ne!(q.hand_left, p.hand_left);
    }

    #[test]
    fn a_locked_drag_of_the_neck_moves_the_whole_person() {
        let mut p = tilted(-0.2);
        p.face = Some(vec![Some(Keypoint::new(290.0, 180.0)); 70]);
        let s = set_with(p.clone());
        let n = at(&p, NECK);
        let out = drag_joint(&s, 0, NECK, (n.0 + 12.5, n.1 - 7.0), LOCKED).unwrap();
        let want = Edit::Translate {
            person: 0,
            dx: 12.5,
            dy: -7.0,
        }
        .apply(&s)
        .unwrap();
        let pts = |s: &PoseSet| -> Vec<(f64, f64)> {
            s.people[0].all_points().map(|k| (k.x, k.y)).collect()
        };
        assert!(pts(&out).iter().zip(pts(&want)).all(|(a, b)| near(*a, b)));
    }

    #[test]
    fn missing_joints_are_skipped_and_the_pivot_is_the_nearest_present_ancestor() {
        let mut p = default_person((300.0, 300.0), 240.0);
        p.joints[L_ELBOW] = None;
        let s = set_with(p.clone());
        let shoulder = at(&p, L_SHOULDER);
        let out = drag_joint(&s, 0, L_WRIST, (500.0, 100.0), LOCKED).unwrap();
        let q = &out.people[0];
        assert_eq!(q.joints[L_ELBOW], None, "a hidden joint stays hidden");
        let d = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).hypot(a.1 - b.1);
        assert!((d(at(q, L_WRIST), shoulder) - d(at(&p, L_WRIST), shoulder)).abs() < 1e-9);
        // a hidden knee does not stop the ankle from being carried by the hip
        let mut p = default_person((300.0, 300.0), 240.0);
        p.joints[R_KNEE] = None;
        let s = set_with(p.clone());
        let hip = at(&p, R_HIP);
        let out = drag_joint(&s, 0, R_HIP, (hip.0 - 30.0, hip.1), LOCKED).unwrap();
        assert_ne!(out.people[0].joints[R_ANKLE], p.joints[R_ANKLE]);
        assert_eq!(out.people[0].joints[R_KNEE], None);
        // nothing present above: the joint and its subtree shift to the pointer
        let mut p = default_person((300.0, 300.0), 240.0);
        p.joints[NECK] = None;
        let s = set_with(p.clone());
        let e = at(&p, R_ELBOW);
        let out = drag_joint(&s, 0, R_SHOULDER, (10.0, 20.0), LOCKED).unwrap();
        let sh = at(&p, R_SHOULDER);
        let want = (e.0 + 10.0 - sh.0, e.1 + 20.0 - sh.1);
        assert!(near(at(&out.people[0], R_ELBOW), want));
    }

    #[test]
    fn a_symmetric_drag_mirrors_about_the_tilted_axis() {
        let p = tilted(0.4);
        let s = set_with(p.clone());
        let axis = body_axis(&p).unwrap();
        // the axis of the turned person is the turned vertical
        assert!(near(axis.direction, (-0.4f64.sin(), 0.4f64.cos())));
        let to = (410.0, 250.0);
        let free = DragOptions {
            lock_lengths: false,
            symmetric: true,
        };
        let out = drag_joint(&s, 0, L_ELBOW, to, free).unwrap();
        let q = &out.people[0];
        assert!(near(at(q, L_ELBOW), to));
        assert!(near(at(q, R_ELBOW), axis.reflect(to)));
        assert_eq!(
            q.joints[R_WRIST], p.joints[R_WRIST],
            "free: only the twin moves"
        );
        // locked: both arms turn by mirrored angles and stay mirror images
        let both = DragOptions {
            lock_lengths: true,
            symmetric: true,
        };
        let out = drag_joint(&s, 0, L_ELBOW, to, both).unwrap();
        let q = &out.people[0];
        for (a, b) in lengths(q).iter().zip(lengths(&p)) {
            assert!((a.unwrap() - b.unwrap()).abs() < 1e-9);
        }
        for (l, r) in [(L_ELBOW, R_ELBOW), (L_WRIST, R_WRIST)] {
            let m = axis.reflect(at(q, l));
            assert!((m.0 - at(q, r).0).abs() < 1e-6 && (m.1 - at(q, r).1).abs() < 1e-6);
        }
        // a centre joint has no twin; a missing twin stays missing
        let out = drag_joint(&s, 0, NOSE, to, free).unwrap();
        assert_eq!(out.people[0].joints[R_EYE], p.joints[R_EYE]);
        let mut gone = p.clone();
        gone.joints[R_ELBOW] = None;
        let out = drag_joint(&set_with(gone), 0, L_ELBOW, to, free).unwrap();
        assert_eq!(out.people[0].joints[R_ELBOW], None);
    }

    #[test]
    fn the_axis_is_vertical_through_the_neck_without_hips() {
        let mut p = tilted(0.4);
        p.joints[L_HIP] = None;
        let axis = body_axis(&p).unwrap();
        assert_eq!(axis.origin, at(&p, NECK));
        assert_eq!(axis.direction, (0.0, 1.0));
        assert!(near(
            axis.reflect((310.0, 50.0)),
            (2.0 * axis.origin.0 - 310.0, 50.0)
        ));
        assert_eq!(body_axis(&Pose::default()), None);
    }

    #[test]
    fn scaling_keeps_the_feet_where_they_stand() {
        let p = tilted(0.1);
        let feet = feet_point(&p).unwrap();
        let mid = |q: &Pose| {
            let (r, l) = (at(q, R_ANKLE), at(q, L_ANKLE));
            ((r.0 + l.0) / 2.0, (r.1 + l.1) / 2.0)
        };
        assert!(near(feet, mid(&p)));
        // the editor's scale handle scales about this point
        let out = scale_person(&set_with(p.clone()), 0, 0.6, 0.6, feet).unwrap();
        let q = &out.people[0];
        assert!(near(mid(q), feet));
        for (a, b) in lengths(q).iter().zip(lengths(&p)) {
            assert!((a.unwrap() - 0.6 * b.unwrap()).abs() < 1e-9);
        }
        // one ankle: it stays; no ankles: the lowest joint stays
        let mut one = p.clone();
        one.joints[L_ANKLE] = None;
        assert_eq!(feet_point(&one), Some(at(&p, R_ANKLE)));
        let mut none = one.clone();
        none.joints[R_ANKLE] = None;
        let lowest = [L_KNEE, R_KNEE]
            .map(|j| at(&p, j))
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert_eq!(feet_point(&none), Some(lowest));
        assert_eq!(feet_point(&Pose::default()), None);
    }

    #[test]
    fn bad_input_is_refused() {
        let s = set_with(default_person((300.0, 300.0), 240.0));
        assert_eq!(
            drag_joint(&s, 0, 18, (0.0, 0.0), LOCKED),
            Err(EditError::NoJoint(18))
        );
        assert_eq!(
            drag_joint(&s, 1, 0, (0.0, 0.0), LOCKED),
            Err(EditError::NoPerson(1, 1))
        );
        assert!(drag_joint(&s, 0, 0, (f64::NAN, 0.0), LOCKED).is_err());
    }
}
