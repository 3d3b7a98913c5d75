//! Edit operations on a `PoseSet`, as pure functions: each takes a set and returns a new one,
//! so the GUI's undo history can store and replay them (`Edit::apply`).

use super::io::MAX_PEOPLE;
use super::proportions::{drag_joint, DragOptions};
use super::skeleton::{mirror_face_point, mirror_joint, NUM_JOINTS};
use super::types::{Keypoint, Pose, PoseSet};

/// Why an edit could not be applied; the input set is left unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EditError {
    /// The person index (first) is not below the number of people in the set (second).
    #[error("there is no person {0} (the set has {1})")]
    NoPerson(usize, usize),
    /// The joint index is not one of the 18 body joints.
    #[error("there is no joint {0} (joints are 0..=17)")]
    NoJoint(usize),
    /// The edit would add a person to a set that already holds the maximum number of people.
    #[error("a pose set holds at most {MAX_PEOPLE} people")]
    TooManyPeople,
    /// The person (first) has no present joints to perform the action (second) against.
    #[error("person {0} has no present joints to {1}")]
    EmptyPerson(usize, &'static str),
    /// A coordinate, size or scale is non-finite, out of range or not positive (text says which).
    #[error("invalid value: {0}")]
    BadValue(String),
}

/// One edit, replayable. `apply` never mutates its input.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// Moves one joint of a person to a new position; see [`move_joint`].
    MoveJoint {
        /// Index of the person in the set.
        person: usize,
        /// Index of the body joint (0..18).
        joint: usize,
        /// New x position, in pixels.
        x: f64,
        /// New y position, in pixels.
        y: f64,
    },
    /// Drags one joint with the editor's options (bone lengths locked, symmetric); see
    /// [`drag_joint`].
    DragJoint {
        /// Index of the person in the set.
        person: usize,
        /// Index of the body joint (0..18).
        joint: usize,
        /// Where the joint is dragged to, in pixels.
        to: (f64, f64),
        /// How the rest of the body follows.
        options: DragOptions,
    },
    /// Makes one joint of a person missing; see [`hide_joint`].
    HideJoint {
        /// Index of the person in the set.
        person: usize,
        /// Index of the body joint (0..18).
        joint: usize,
    },
    /// Makes a missing joint present again; see [`show_joint`].
    ShowJoint {
        /// Index of the person in the set.
        person: usize,
        /// Index of the body joint (0..18).
        joint: usize,
        /// Where to put the joint, in pixels; `None`: where the default body would have it.
        at: Option<(f64, f64)>,
    },
    /// Adds the default standing person; see [`add_person`].
    AddPerson {
        /// Centre of the new person's body box, in pixels.
        center: (f64, f64),
        /// Height of the new person from the top of the head to the soles, in pixels.
        height: f64,
    },
    /// Appends a given person (e.g. from the preset library); boxed, so that every edit in an
    /// undo history is not the size of a whole person.
    InsertPerson {
        /// The person to append.
        pose: Box<Pose>,
    },
    /// Appends a shifted copy of a person; see [`duplicate_person`].
    Duplicate {
        /// Index of the person to copy.
        person: usize,
        /// Shift of the copy relative to the original, in pixels.
        offset: (f64, f64),
    },
    /// Removes a person; see [`delete_person`].
    Delete {
        /// Index of the person to remove.
        person: usize,
    },
    /// Mirrors a person horizontally and swaps its left/right labels; see [`mirror_person`].
    Mirror {
        /// Index of the person to mirror.
        person: usize,
    },
    /// Swaps a person's left/right labels without moving points; see [`swap_left_right`].
    SwapLeftRight {
        /// Index of the person whose labels are swapped.
        person: usize,
    },
    /// Moves a whole person; see [`translate_person`].
    Translate {
        /// Index of the person to move.
        person: usize,
        /// Horizontal shift, in pixels.
        dx: f64,
        /// Vertical shift, in pixels.
        dy: f64,
    },
    /// Scales a whole person about an anchor point; see [`scale_person`].
    Scale {
        /// Index of the person to scale.
        person: usize,
        /// Horizontal scale factor (must be positive).
        sx: f64,
        /// Vertical scale factor (must be positive).
        sy: f64,
        /// The fixed point of the scaling, in pixels.
        anchor: (f64, f64),
    },
}

impl Edit {
    /// Returns the set with this edit applied, or why it cannot be applied; `set` is not changed.
    pub fn apply(&self, set: &PoseSet) -> Result<PoseSet, EditError> {
        match *self {
            Edit::MoveJoint {
                person,
                joint,
                x,
                y,
            } => move_joint(set, person, joint, x, y),
            Edit::DragJoint {
                person,
                joint,
                to,
                options,
            } => drag_joint(set, person, joint, to, options),
            Edit::HideJoint { person, joint } => hide_joint(set, person, joint),
            Edit::ShowJoint { person, joint, at } => show_joint(set, person, joint, at),
            Edit::AddPerson { center, height } => add_person(set, center, height),
            Edit::InsertPerson { ref pose } => insert_person(set, pose),
            Edit::Duplicate { person, offset } => duplicate_person(set, person, offset),
            Edit::Delete { person } => delete_person(set, person),
            Edit::Mirror { person } => mirror_person(set, person),
            Edit::SwapLeftRight { person } => swap_left_right(set, person),
            Edit::Translate { person, dx, dy } => translate_person(set, person, dx, dy),
            Edit::Scale {
                person,
                sx,
                sy,
                anchor,
            } => scale_person(set, person, sx, sy, anchor),
        }
    }
}

/// The default standing person, frontal, in units of its height: x relative to the centre line,
/// y from the top of the head (0) to the soles (1). The subject's right is on the viewer's left.
pub const DEFAULT_PERSON: [(f64, f64); NUM_JOINTS] = [
    (0.0, 0.075),    // nose
    (0.0, 0.175),    // neck
    (-0.105, 0.18),  // right shoulder
    (-0.135, 0.325), // right elbow
    (-0.145, 0.46),  // right wrist
    (0.105, 0.18),   // left shoulder
    (0.135, 0.325),  // left elbow
    (0.145, 0.46),   // left wrist
    (-0.06, 0.5),    // right hip
    (-0.065, 0.725), // right knee
    (-0.07, 0.95),   // right ankle
    (0.06, 0.5),     // left hip
    (0.065, 0.725),  // left knee
    (0.07, 0.95),    // left ankle
    (-0.022, 0.055), // right eye
    (0.022, 0.055),  // left eye
    (-0.048, 0.065), // right ear
    (0.048, 0.065),  // left ear
];

fn check_person(set: &PoseSet, person: usize) -> Result<(), EditError> {
    if person < set.people.len() {
        Ok(())
    } else {
        Err(EditError::NoPerson(person, set.people.len()))
    }
}

pub(super) fn check_joint(joint: usize) -> Result<(), EditError> {
    if joint < NUM_JOINTS {
        Ok(())
    } else {
        Err(EditError::NoJoint(joint))
    }
}

pub(super) fn finite(vals: &[f64]) -> Result<(), EditError> {
    match vals
        .iter()
        .find(|v| !v.is_finite() || v.abs() > super::io::MAX_COORD)
    {
        Some(v) => Err(EditError::BadValue(format!(
            "{v} is not a usable coordinate"
        ))),
        None => Ok(()),
    }
}

pub(super) fn with_person(
    set: &PoseSet,
    person: usize,
    f: impl FnOnce(&mut Pose) -> Result<(), EditError>,
) -> Result<PoseSet, EditError> {
    check_person(set, person)?;
    let mut out = set.clone();
    f(&mut out.people[person])?;
    Ok(out)
}

/// Moves one joint to (x, y); a missing joint becomes present there.
pub fn move_joint(
    set: &PoseSet,
    person: usize,
    joint: usize,
    x: f64,
    y: f64,
) -> Result<PoseSet, EditError> {
    check_joint(joint)?;
    finite(&[x, y])?;
    with_person(set, person, |p| {
        let confidence = p.joints[joint].map_or(1.0, |k| k.confidence);
        p.joints[joint] = Some(Keypoint { x, y, confidence });
        Ok(())
    })
}

/// Hides a joint: it becomes missing (exported as `0,0,0`, its limbs are not drawn).
pub fn hide_joint(set: &PoseSet, person: usize, joint: usize) -> Result<PoseSet, EditError> {
    check_joint(joint)?;
    with_person(set, person, |p| {
        p.joints[joint] = None;
        Ok(())
    })
}

/// Shows a hidden joint at `at`, or, without a position, where the default body would put it
/// relative to the person's present joints (at the person's scale).
pub fn show_joint(
    set: &PoseSet,
    person: usize,
    joint: usize,
    at: Option<(f64, f64)>,
) -> Result<PoseSet, EditError> {
    check_joint(joint)?;
    if let Some((x, y)) = at {
        finite(&[x, y])?;
    }
    with_person(set, person, |p| {
        if p.joints[joint].is_some() {
            return Ok(());
        }
        let (x, y) = match at {
            Some(v) => v,
            None => default_position(p, joint)
                .ok_or(EditError::EmptyPerson(person, "place a joint against"))?,
        };
        p.joints[joint] = Some(Keypoint::new(x, y));
        Ok(())
    })
}

/// Where `joint` sits if the person follows the default body: a least-squares fit of scale and
/// offset of the default person to the present joints (scale from the body box when only one
/// joint is present).
fn default_position(p: &Pose, joint: usize) -> Option<(f64, f64)> {
    let present: Vec<(usize, Keypoint)> = (0..NUM_JOINTS)
        .filter_map(|j| p.joints[j].map(|k| (j, k)))
        .collect();
    if present.is_empty() {
        return None;
    }
    let n = present.len() as f64;
    let (mut tx, mut ty, mut kx, mut ky) = (0.0, 0.0, 0.0, 0.0);
    for (j, k) in &present {
        tx += DEFAULT_PERSON[*j].0;
        ty += DEFAULT_PERSON[*j].1;
        kx += k.x;
        ky += k.y;
    }
    let (tx, ty, kx, ky) = (tx / n, ty / n, kx / n, ky / n);
    let (mut num, mut den) = (0.0, 0.0);
    for (j, k) in &present {
        let (dx, dy) = (DEFAULT_PERSON[*j].0 - tx, DEFAULT_PERSON[*j].1 - ty);
        num += dx * (k.x - kx) + dy * (k.y - ky);
        den += dx * dx + dy * dy;
    }
    // With one joint (or a degenerate fit) fall back to a 100 px tall person.
    let s = if den > 0.0 && num > 0.0 {
        num / den
    } else {
        100.0
    };
    let (dx, dy) = DEFAULT_PERSON[joint];
    Some((kx + (dx - tx) * s, ky + (dy - ty) * s))
}

/// The default person, `height` pixels tall from the top of the head to the soles, centred on
/// `center`.
pub fn default_person(center: (f64, f64), height: f64) -> Pose {
    let mut joints = [None; NUM_JOINTS];
    for (j, (dx, dy)) in DEFAULT_PERSON.iter().enumerate() {
        joints[j] = Some(Keypoint::new(
            center.0 + dx * height,
            center.1 + (dy - 0.5) * height,
        ));
    }
    Pose::from_joints(joints)
}

/// Adds the default person at `center` with the given height in pixels.
pub fn add_person(set: &PoseSet, center: (f64, f64), height: f64) -> Result<PoseSet, EditError> {
    finite(&[center.0, center.1, height])?;
    if height <= 0.0 {
        return Err(EditError::BadValue(format!(
            "height {height} must be positive"
        )));
    }
    if set.people.len() >= MAX_PEOPLE {
        return Err(EditError::TooManyPeople);
    }
    let mut out = set.clone();
    out.people.push(default_person(center, height));
    Ok(out)
}

/// Appends `pose` as a new person. Its coordinates must be usable numbers.
pub fn insert_person(set: &PoseSet, pose: &Pose) -> Result<PoseSet, EditError> {
    if set.people.len() >= MAX_PEOPLE {
        return Err(EditError::TooManyPeople);
    }
    let coords: Vec<f64> = pose
        .joints
        .iter()
        .flatten()
        .flat_map(|k| [k.x, k.y])
        .collect();
    finite(&coords)?;
    let mut out = set.clone();
    out.people.push(pose.clone());
    Ok(out)
}

/// `pose` scaled about its bounding box so that its height is `height` pixels and translated so
/// that the box centre lands on `center` (used to place presets drawn on another canvas).
pub fn fit_person(pose: &Pose, center: (f64, f64), height: f64) -> Pose {
    let pts: Vec<(f64, f64)> = pose.joints.iter().flatten().map(|k| (k.x, k.y)).collect();
    if pts.is_empty() {
        return pose.clone();
    }
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for &(x, y) in &pts {
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    let s = if y1 - y0 > 1e-9 {
        height / (y1 - y0)
    } else {
        1.0
    };
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let map = |x: f64, y: f64| (center.0 + (x - cx) * s, center.1 + (y - cy) * s);
    let mut out = pose.clone();
    for k in out.joints.iter_mut().flatten() {
        (k.x, k.y) = map(k.x, k.y);
    }
    for list in [&mut out.hand_left, &mut out.hand_right, &mut out.face]
        .into_iter()
        .flatten()
    {
        for k in list.iter_mut().flatten() {
            (k.x, k.y) = map(k.x, k.y);
        }
    }
    out
}

/// Appends a copy of a person shifted by `offset`.
pub fn duplicate_person(
    set: &PoseSet,
    person: usize,
    offset: (f64, f64),
) -> Result<PoseSet, EditError> {
    check_person(set, person)?;
    finite(&[offset.0, offset.1])?;
    if set.people.len() >= MAX_PEOPLE {
        return Err(EditError::TooManyPeople);
    }
    let mut copy = set.people[person].clone();
    copy.map_points(|k| {
        k.x += offset.0;
        k.y += offset.1;
    });
    let mut out = set.clone();
    out.people.push(copy);
    Ok(out)
}

/// Removes a person.
pub fn delete_person(set: &PoseSet, person: usize) -> Result<PoseSet, EditError> {
    check_person(set, person)?;
    let mut out = set.clone();
    out.people.remove(person);
    Ok(out)
}

fn swap_labels(p: &mut Pose) {
    let old = p.joints;
    for (j, slot) in p.joints.iter_mut().enumerate() {
        *slot = old[mirror_joint(j)];
    }
    std::mem::swap(&mut p.hand_left, &mut p.hand_right);
    if let Some(face) = &mut p.face {
        if face.len() >= 68 {
            let old = face.clone();
            for (i, slot) in face.iter_mut().enumerate() {
                let m = mirror_face_point(i);
                if m < old.len() {
                    *slot = old[m];
                }
            }
        }
    }
}

/// Mirrors a person about the vertical axis through the centre of its body box: positions are
/// mirrored and left/right labels swapped, so the result is anatomically right (a left arm on
/// the image's left becomes a left arm on the image's right). Applied twice it is the identity.
pub fn mirror_person(set: &PoseSet, person: usize) -> Result<PoseSet, EditError> {
    with_person(set, person, |p| {
        let (x0, _, x1, _) = p
            .body_bbox()
            .or_else(|| p.bbox())
            .ok_or(EditError::EmptyPerson(person, "mirror"))?;
        let s = x0 + x1;
        p.map_points(|k| k.x = s - k.x);
        swap_labels(p);
        Ok(())
    })
}

/// Swaps the left/right labels only (positions stay): fixes a front/back mix-up.
pub fn swap_left_right(set: &PoseSet, person: usize) -> Result<PoseSet, EditError> {
    with_person(set, person, |p| {
        swap_labels(p);
        Ok(())
    })
}

/// Moves a whole person.
pub fn translate_person(
    set: &PoseSet,
    person: usize,
    dx: f64,
    dy: f64,
) -> Result<PoseSet, EditError> {
    finite(&[dx, dy])?;
    with_person(set, person, |p| {
        p.map_points(|k| {
            k.x += dx;
            k.y += dy;
        });
        Ok(())
    })
}

/// Scales a whole person about `anchor` (the editor passes the point between the feet, see
/// [`super::proportions::feet_point`]).
pub fn scale_person(
    set: &PoseSet,
    person: usize,
    sx: f64,
    sy: f64,
    anchor: (f64, f64),
) -> Result<PoseSet, EditError> {
    finite(&[sx, sy, anchor.0, anchor.1])?;
    if sx <= 0.0 || sy <= 0.0 {
        return Err(EditError::BadValue(format!(
            "scale ({sx}, {sy}) must be positive"
        )));
    }
    with_person(set, person, |p| {
        p.map_points(|k| {
            k.x = anchor.0 + (k.x - anchor.0) * sx;
            k.y = anchor.1 + (k.y - anchor.1) * sy;
        });
        Ok(())
    })
}
