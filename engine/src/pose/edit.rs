//! Edit operations on a `PoseSet`, as pure functions: each takes a set and returns a new one,
//! so the GUI's undo history can store and replay them (`Edit::apply`).

use super::io::MAX_PEOPLE;
use super::proportions::{drag_joint, DragOptions};
use super::skeleton::{joint, mirror_face_point, mirror_joint, FACE_POINTS, NUM_JOINTS};
use super::types::{Keypoint, PointList, Pose, PoseSet};

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
    /// The person (first) has no such part (second: its name) to edit.
    #[error("person {0} has no {1}")]
    NoPart(usize, &'static str),
    /// The point index (first) is not below the number of points of the part (third: its name).
    #[error("there is no point {0} in the {2} (it has {1})")]
    NoPoint(usize, usize, &'static str),
}

/// A part that hangs from a body joint and moves with it: a hand (21 points, from its wrist) or
/// the face (70 points, from the nose).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// The subject's left hand.
    LeftHand,
    /// The subject's right hand.
    RightHand,
    /// The face.
    Face,
}

impl Part {
    /// Every part, in the order the editor lists them.
    pub const ALL: [Part; 3] = [Part::LeftHand, Part::RightHand, Part::Face];

    /// The body joint the part hangs from.
    pub const fn joint(self) -> usize {
        match self {
            Part::LeftHand => joint::L_WRIST,
            Part::RightHand => joint::R_WRIST,
            Part::Face => joint::NOSE,
        }
    }

    /// Its name, for messages and the editor.
    pub const fn name(self) -> &'static str {
        match self {
            Part::LeftHand => "left hand",
            Part::RightHand => "right hand",
            Part::Face => "face",
        }
    }

    /// The part's points in `pose`, when it has the part.
    pub fn points(self, pose: &Pose) -> Option<&PointList> {
        match self {
            Part::LeftHand => pose.hand_left.as_ref(),
            Part::RightHand => pose.hand_right.as_ref(),
            Part::Face => pose.face.as_ref(),
        }
    }

    /// Where `pose` keeps the part (`None`: it has none).
    pub fn slot(self, pose: &mut Pose) -> &mut Option<PointList> {
        match self {
            Part::LeftHand => &mut pose.hand_left,
            Part::RightHand => &mut pose.hand_right,
            Part::Face => &mut pose.face,
        }
    }
}

/// One edit, replayable. `apply` never mutates its input.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// Moves one joint, the rest of the body following as the editor's options say (with the
    /// default options the joint moves alone, a wrist carrying its hand and the nose the face);
    /// see [`drag_joint`].
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
    /// Moves one point of a hand or the face; see [`move_point`].
    MovePoint {
        /// Index of the person in the set.
        person: usize,
        /// The hand or the face.
        part: Part,
        /// Index of the point in the part.
        index: usize,
        /// New x position, in pixels.
        x: f64,
        /// New y position, in pixels.
        y: f64,
    },
    /// Removes a hand or the face; see [`hide_part`].
    HidePart {
        /// Index of the person in the set.
        person: usize,
        /// The hand or the face.
        part: Part,
    },
    /// Gives a person the default hand or face; see [`show_part`].
    ShowPart {
        /// Index of the person in the set.
        person: usize,
        /// The hand or the face.
        part: Part,
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
            Edit::DragJoint {
                person,
                joint,
                to,
                options,
            } => drag_joint(set, person, joint, to, options),
            Edit::MovePoint {
                person,
                part,
                index,
                x,
                y,
            } => move_point(set, person, part, index, x, y),
            Edit::HidePart { person, part } => hide_part(set, person, part),
            Edit::ShowPart { person, part } => show_part(set, person, part),
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

/// Moves point `index` of a person's hand or face to (x, y); a missing point becomes present
/// there. Nothing else moves.
pub fn move_point(
    set: &PoseSet,
    person: usize,
    part: Part,
    index: usize,
    x: f64,
    y: f64,
) -> Result<PoseSet, EditError> {
    finite(&[x, y])?;
    with_person(set, person, |p| {
        let points = part
            .slot(p)
            .as_mut()
            .ok_or(EditError::NoPart(person, part.name()))?;
        let len = points.len();
        let slot = points
            .get_mut(index)
            .ok_or(EditError::NoPoint(index, len, part.name()))?;
        let confidence = slot.map_or(1.0, |k| k.confidence);
        *slot = Some(Keypoint { x, y, confidence });
        Ok(())
    })
}

/// Hides a hand or the face: the person no longer has it (exported as `null`, not drawn), as a
/// hidden joint becomes missing. Hiding a part the person lacks changes nothing.
pub fn hide_part(set: &PoseSet, person: usize, part: Part) -> Result<PoseSet, EditError> {
    with_person(set, person, |p| {
        *part.slot(p) = None;
        Ok(())
    })
}

/// Shows a hand or the face on a person who lacks it: the default one, placed at its joint (where
/// the default body would have the joint, when it is missing) at the person's scale, as a hidden
/// joint comes back where the default body puts it. A part already there stays as it is.
pub fn show_part(set: &PoseSet, person: usize, part: Part) -> Result<PoseSet, EditError> {
    with_person(set, person, |p| {
        if part.points(p).is_some() {
            return Ok(());
        }
        let placed = match part {
            Part::Face => default_face(p),
            hand => default_hand(p, hand),
        }
        .ok_or(EditError::EmptyPerson(
            person,
            "place a hand or face against",
        ))?;
        *part.slot(p) = Some(placed);
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

/// The default open hand, palm to the viewer of a frontal person, in units of the hand's length
/// (wrist to middle fingertip): (along the forearm from the wrist, towards the thumb). OpenPose
/// order: the wrist, then thumb, index, middle, ring and little finger, base to tip.
const DEFAULT_HAND: [(f64, f64); 21] = [
    (0.0, 0.0),
    (0.10, 0.14),
    (0.22, 0.27),
    (0.33, 0.35),
    (0.43, 0.42),
    (0.45, 0.15),
    (0.66, 0.17),
    (0.80, 0.18),
    (0.92, 0.19),
    (0.47, 0.03),
    (0.70, 0.03),
    (0.85, 0.03),
    (0.98, 0.03),
    (0.45, -0.08),
    (0.65, -0.10),
    (0.78, -0.11),
    (0.89, -0.12),
    (0.40, -0.18),
    (0.56, -0.21),
    (0.66, -0.23),
    (0.75, -0.25),
];

/// A hand's length per forearm length, as adults have it.
const HAND_PER_FOREARM: f64 = 0.75;

/// The default face's points on the viewer's left of a frontal face (the subject's right) and on
/// its centre line, as (index, x, y) in units of the face's width, from the nose tip (point 30),
/// y downwards; the other half is their mirror image (see `mirror_face_point`).
const DEFAULT_FACE_HALF: [(usize, f64, f64); 40] = [
    // jaw, from the right ear to the chin
    (0, -0.5, -0.22),
    (1, -0.495, -0.09),
    (2, -0.48, 0.05),
    (3, -0.45, 0.18),
    (4, -0.4, 0.3),
    (5, -0.32, 0.41),
    (6, -0.22, 0.5),
    (7, -0.12, 0.57),
    (8, 0.0, 0.59),
    // right eyebrow, outer to inner
    (17, -0.41, -0.32),
    (18, -0.35, -0.38),
    (19, -0.26, -0.4),
    (20, -0.17, -0.39),
    (21, -0.08, -0.36),
    // nose bridge and tip, nostrils to the centre
    (27, 0.0, -0.25),
    (28, 0.0, -0.17),
    (29, 0.0, -0.08),
    (30, 0.0, 0.0),
    (31, -0.1, 0.06),
    (32, -0.05, 0.08),
    (33, 0.0, 0.09),
    // right eye: outer corner, upper lid, inner corner, lower lid
    (36, -0.32, -0.24),
    (37, -0.27, -0.27),
    (38, -0.21, -0.27),
    (39, -0.16, -0.23),
    (40, -0.21, -0.22),
    (41, -0.27, -0.22),
    // lips: outer right corner and upper lip, then lower lip back to the corner
    (48, -0.19, 0.25),
    (49, -0.13, 0.21),
    (50, -0.06, 0.19),
    (51, 0.0, 0.2),
    (57, 0.0, 0.36),
    (58, -0.07, 0.35),
    (59, -0.13, 0.32),
    // inner lips: right corner, upper, lower; then the right pupil
    (60, -0.17, 0.255),
    (61, -0.06, 0.24),
    (62, 0.0, 0.245),
    (66, 0.0, 0.27),
    (67, -0.06, 0.27),
    (68, -0.24, -0.245),
];

/// Pupil distance per face width in the default face.
const PUPILS_PER_FACE: f64 = 0.48;
/// Face width per nose-to-neck distance in the default body.
const FACE_PER_NECK: f64 = 0.96;

/// The default face (70 points) in its own units: x to the subject's left, y downwards.
fn face_template() -> [(f64, f64); FACE_POINTS] {
    let mut out = [(f64::NAN, f64::NAN); FACE_POINTS];
    for &(i, x, y) in &DEFAULT_FACE_HALF {
        out[i] = (x, y);
        out[mirror_face_point(i)] = (-x, y);
    }
    out
}

fn unit(v: (f64, f64)) -> Option<(f64, f64)> {
    let len = v.0.hypot(v.1);
    (len > 1e-9).then(|| (v.0 / len, v.1 / len))
}

fn joint_at(p: &Pose, j: usize) -> Option<(f64, f64)> {
    p.joints[j].map(|k| (k.x, k.y))
}

fn sub(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0 - b.0, a.1 - b.1)
}

/// A joint, or where the default body puts it when it is missing.
fn anchor(p: &Pose, j: usize) -> Option<(f64, f64)> {
    joint_at(p, j).or_else(|| default_position(p, j))
}

/// A tenth of the body box's height (a hand's length, about a face's width), for a person
/// without the joints that size a hand or face better.
fn body_tenth(p: &Pose) -> f64 {
    let h = p.body_bbox().map_or(0.0, |(_, y0, _, y1)| y1 - y0);
    if h > 1e-9 {
        h / 10.0
    } else {
        20.0
    }
}

/// The default hand at the wrist, pointing along the forearm (down without an elbow), as long
/// as [`HAND_PER_FOREARM`] of it; the thumb on the viewer's outer side for a frontal person, so
/// that a mirrored person's hands are the other person's default hands.
fn default_hand(p: &Pose, hand: Part) -> Option<PointList> {
    let wrist = anchor(p, hand.joint())?;
    let elbow = match hand {
        Part::LeftHand => joint::L_ELBOW,
        _ => joint::R_ELBOW,
    };
    let forearm = joint_at(p, elbow).map(|e| sub(wrist, e));
    let along = forearm.and_then(unit).unwrap_or((0.0, 1.0));
    let length = match forearm.map(|f| f.0.hypot(f.1)) {
        Some(l) if l > 1e-9 => l * HAND_PER_FOREARM,
        _ => body_tenth(p),
    };
    let thumb = match hand {
        Part::LeftHand => (along.1, -along.0),
        _ => (-along.1, along.0),
    };
    let place = |&(a, t): &(f64, f64)| {
        Some(Keypoint::new(
            wrist.0 + length * (a * along.0 + t * thumb.0),
            wrist.1 + length * (a * along.1 + t * thumb.1),
        ))
    };
    Some(DEFAULT_HAND.iter().map(place).collect())
}

/// The default face with its nose tip on the nose, upright along the neck-to-nose line, its width
/// the largest the eyes, the ears and the neck suggest (a turned head shortens the first two);
/// seen from the back (the left eye on the viewer's left) it is mirrored.
fn default_face(p: &Pose) -> Option<PointList> {
    let nose = anchor(p, joint::NOSE)?;
    let down = joint_at(p, joint::NECK)
        .and_then(|n| unit(sub(n, nose)))
        .unwrap_or((0.0, 1.0));
    let mut across = (down.1, -down.0);
    let pair = |a, b| Some(sub(joint_at(p, a)?, joint_at(p, b)?));
    let eyes = pair(joint::L_EYE, joint::R_EYE);
    if eyes.is_some_and(|e| e.0 * across.0 + e.1 * across.1 < 0.0) {
        across = (-across.0, -across.1);
    }
    let widths = [
        eyes.map(|e| e.0.hypot(e.1) / PUPILS_PER_FACE),
        pair(joint::L_EAR, joint::R_EAR).map(|e| e.0.hypot(e.1)),
        pair(joint::NECK, joint::NOSE).map(|e| e.0.hypot(e.1) * FACE_PER_NECK),
    ];
    let width = widths.into_iter().flatten().fold(0.0, f64::max);
    let width = if width > 1e-9 { width } else { body_tenth(p) };
    let place = |&(x, y): &(f64, f64)| {
        Some(Keypoint::new(
            nose.0 + width * (x * across.0 + y * down.0),
            nose.1 + width * (x * across.1 + y * down.1),
        ))
    };
    Some(face_template().iter().map(place).collect())
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
    let Some(bbox) = pose.body_bbox() else {
        return pose.clone();
    };
    let s = if bbox.3 - bbox.1 > 1e-9 {
        height / (bbox.3 - bbox.1)
    } else {
        1.0
    };
    place_about(std::slice::from_ref(pose), bbox, s, center).remove(0)
}

/// `people` scaled by `s` about the centre of the box `(x0, y0, x1, y1)`, every point, hands
/// and face included, with that centre moved to `center`: how presets, groups and thumbnails
/// are placed.
pub fn place_about(
    people: &[Pose],
    (x0, y0, x1, y1): (f64, f64, f64, f64),
    s: f64,
    center: (f64, f64),
) -> Vec<Pose> {
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let mut out = people.to_vec();
    for p in &mut out {
        p.map_points(|k| {
            k.x = center.0 + (k.x - cx) * s;
            k.y = center.1 + (k.y - cy) * s;
        });
    }
    out
}

/// The box holding every box of `boxes`, `(x0, y0, x1, y1)`; `None` when there is none.
pub fn union_bbox(
    boxes: impl IntoIterator<Item = (f64, f64, f64, f64)>,
) -> Option<(f64, f64, f64, f64)> {
    boxes
        .into_iter()
        .reduce(|a, b| (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use joint::*;

    /// The default person with the default hands and face.
    fn whole_person() -> PoseSet {
        let mut s = PoseSet::new(800, 600);
        s.people.push(default_person((300.0, 300.0), 240.0));
        for part in Part::ALL {
            s = show_part(&s, 0, part).unwrap();
        }
        s
    }

    fn pts(p: &Pose, part: Part) -> Vec<(f64, f64)> {
        part.points(p)
            .unwrap()
            .iter()
            .map(|k| k.map_or((f64::NAN, f64::NAN), |k| (k.x, k.y)))
            .collect()
    }

    fn near(a: (f64, f64), b: (f64, f64), tol: f64) -> bool {
        (a.0 - b.0).abs() <= tol && (a.1 - b.1).abs() <= tol
    }

    #[test]
    fn a_moved_wrist_or_nose_shifts_its_part_and_nothing_else() {
        let s = whole_person();
        let p = &s.people[0];
        for (j, part) in [
            (L_WRIST, Part::LeftHand),
            (R_WRIST, Part::RightHand),
            (NOSE, Part::Face),
        ] {
            let k = p.joints[j].unwrap();
            let out =
                drag_joint(&s, 0, j, (k.x + 13.5, k.y - 4.25), DragOptions::default()).unwrap();
            let q = &out.people[0];
            for (a, b) in pts(q, part).iter().zip(pts(p, part)) {
                assert!(near(*a, (b.0 + 13.5, b.1 - 4.25), 1e-9), "{}", part.name());
            }
            for other in Part::ALL.into_iter().filter(|&o| o != part) {
                assert_eq!(other.points(q), other.points(p), "{}", other.name());
            }
        }
        // another joint moves alone; a missing wrist placed again has no offset to carry
        let e = p.joints[L_ELBOW].unwrap();
        let out = drag_joint(&s, 0, L_ELBOW, (e.x + 9.0, e.y), DragOptions::default()).unwrap();
        assert_eq!(out.people[0].hand_left, p.hand_left);
        let gone = hide_joint(&s, 0, L_WRIST).unwrap();
        let out = drag_joint(&gone, 0, L_WRIST, (10.0, 10.0), DragOptions::default()).unwrap();
        assert_eq!(out.people[0].hand_left, p.hand_left);
        // the free symmetric drag moves the twin's hand with the twin
        let options = DragOptions {
            lock_lengths: false,
            symmetric: true,
        };
        let w = p.joints[L_WRIST].unwrap();
        let out = drag_joint(&s, 0, L_WRIST, (w.x + 20.0, w.y - 30.0), options).unwrap();
        let q = &out.people[0];
        let (r0, r1) = (p.joints[R_WRIST].unwrap(), q.joints[R_WRIST].unwrap());
        assert!(!near((r0.x, r0.y), (r1.x, r1.y), 1.0));
        for (a, b) in pts(q, Part::RightHand).iter().zip(pts(p, Part::RightHand)) {
            assert!(near(*a, (b.0 + r1.x - r0.x, b.1 + r1.y - r0.y), 1e-9));
        }
    }

    #[test]
    fn a_hand_or_face_point_moves_alone() {
        let s = whole_person();
        let out = move_point(&s, 0, Part::LeftHand, 8, 12.0, 34.0).unwrap();
        let (p, q) = (&s.people[0], &out.people[0]);
        let moved = Part::LeftHand.points(q).unwrap();
        assert_eq!(moved[8], Some(Keypoint::new(12.0, 34.0)));
        for (i, (a, b)) in moved.iter().zip(p.hand_left.as_ref().unwrap()).enumerate() {
            assert!(i == 8 || a == b, "point {i}");
        }
        assert_eq!((q.joints, &q.face), (p.joints, &p.face));
        let out = move_point(&s, 0, Part::Face, 69, 1.0, 2.0).unwrap();
        assert_eq!(
            out.people[0].face.as_ref().unwrap()[69],
            Some(Keypoint::new(1.0, 2.0))
        );
        // a replayed edit gives the same set
        let edit = Edit::MovePoint {
            person: 0,
            part: Part::Face,
            index: 69,
            x: 1.0,
            y: 2.0,
        };
        assert_eq!(edit.apply(&s).unwrap(), out);
        assert_eq!(
            move_point(&s, 0, Part::RightHand, 21, 0.0, 0.0),
            Err(EditError::NoPoint(21, 21, "right hand"))
        );
        let bare = hide_part(&s, 0, Part::Face).unwrap();
        assert_eq!(
            move_point(&bare, 0, Part::Face, 0, 0.0, 0.0),
            Err(EditError::NoPart(0, "face"))
        );
        assert!(move_point(&s, 0, Part::Face, 0, f64::NAN, 0.0).is_err());
        assert!(move_point(&s, 1, Part::Face, 0, 0.0, 0.0).is_err());
    }

    #[test]
    fn hidden_parts_are_gone_and_shown_ones_sit_at_their_joint() {
        let s = whole_person();
        let p = &s.people[0];
        for part in Part::ALL {
            let hidden = hide_part(&s, 0, part).unwrap();
            assert_eq!(part.points(&hidden.people[0]), None);
            assert_eq!(hidden.people[0].joints, p.joints);
            assert_eq!(hide_part(&hidden, 0, part).unwrap(), hidden);
            assert_eq!(show_part(&s, 0, part).unwrap(), s, "a shown part stays");
        }
        // the default hand starts at the wrist and runs along the forearm, 0.75 of its length
        for (part, elbow) in [(Part::LeftHand, L_ELBOW), (Part::RightHand, R_ELBOW)] {
            let hand = pts(p, part);
            let w = p.joints[part.joint()].unwrap();
            let e = p.joints[elbow].unwrap();
            assert_eq!(hand.len(), 21);
            assert!(near(hand[0], (w.x, w.y), 1e-9));
            let forearm = (w.x - e.x).hypot(w.y - e.y);
            let (tx, ty) = (hand[12].0 - w.x, hand[12].1 - w.y);
            assert!((tx.hypot(ty) - 0.75 * forearm * 0.98f64.hypot(0.03)).abs() < 1e-9);
            assert!(
                tx * (w.x - e.x) + ty * (w.y - e.y) > 0.0,
                "away from the elbow"
            );
        }
        // the thumbs point away from the body of a frontal person
        let neck = p.joints[NECK].unwrap().x;
        assert!(pts(p, Part::LeftHand)[4].0 > neck && pts(p, Part::RightHand)[4].0 < neck);
        // the face: 70 points, the nose tip on the nose, the subject's right eye on the left
        let face = pts(p, Part::Face);
        assert_eq!(face.len(), FACE_POINTS);
        assert!(face.iter().all(|k| k.0.is_finite() && k.1.is_finite()));
        let n = p.joints[NOSE].unwrap();
        assert!(near(face[30], (n.x, n.y), 1e-9));
        assert!(face[68].0 < n.x && face[69].0 > n.x && face[8].1 > n.y);
        let ears = p.joints[L_EAR].unwrap().x - p.joints[R_EAR].unwrap().x;
        assert!(
            (face[16].0 - face[0].0 - ears).abs() < 1e-9,
            "as wide as the ears"
        );
        // without a nose the face goes where the default body puts it
        let no_nose = hide_joint(&hide_part(&s, 0, Part::Face).unwrap(), 0, NOSE).unwrap();
        let back = show_part(&no_nose, 0, Part::Face).unwrap();
        assert!(near(pts(&back.people[0], Part::Face)[30], (n.x, n.y), 1.0));
        let empty = {
            let mut e = PoseSet::new(10, 10);
            e.people.push(Pose::default());
            e
        };
        assert_eq!(
            show_part(&empty, 0, Part::Face),
            Err(EditError::EmptyPerson(0, "place a hand or face against"))
        );
    }

    #[test]
    fn mirroring_exchanges_the_hands_and_turns_the_face_about() {
        // the default person is symmetric, so its mirror image with default parts is itself
        let s = whole_person();
        let m = mirror_person(&s, 0).unwrap();
        let (p, q) = (&s.people[0], &m.people[0]);
        for part in Part::ALL {
            for (a, b) in pts(q, part).iter().zip(pts(p, part)) {
                assert!(near(*a, b, 1e-9), "{}", part.name());
            }
        }
        // an asymmetric hand: mirrored point-wise onto the other side, and back
        let raised = move_point(&s, 0, Part::LeftHand, 8, 420.0, 100.0).unwrap();
        let m = mirror_person(&raised, 0).unwrap();
        let (x0, _, x1, _) = raised.people[0].body_bbox().unwrap();
        let tip = m.people[0].hand_right.as_ref().unwrap()[8].unwrap();
        assert!(near((tip.x, tip.y), (x0 + x1 - 420.0, 100.0), 1e-9));
        assert_eq!(m.people[0].hand_left, s.people[0].hand_left);
        assert_eq!(mirror_person(&m, 0).unwrap(), raised);
        // swapping labels exchanges the hands and reindexes the face without moving points
        let w = swap_left_right(&raised, 0).unwrap();
        assert_eq!(w.people[0].hand_right, raised.people[0].hand_left);
        let (f0, f1) = (
            pts(&raised.people[0], Part::Face),
            pts(&w.people[0], Part::Face),
        );
        for i in 0..FACE_POINTS {
            assert_eq!(f1[i], f0[mirror_face_point(i)]);
        }
    }
}
