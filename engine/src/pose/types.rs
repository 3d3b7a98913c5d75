//! `Keypoint`, `Pose` and `PoseSet`: people in one image, in image pixels.

use super::skeleton::{LIMBS, NUM_JOINTS};

/// A present point in image pixels, with the detector's confidence (1.0 when drawn by hand).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Keypoint {
    /// Horizontal position, in pixels from the left edge.
    pub x: f64,
    /// Vertical position, in pixels from the top edge.
    pub y: f64,
    /// The detector's confidence in the point, 1.0 when drawn by hand.
    pub confidence: f64,
}

impl Keypoint {
    /// A hand-placed point at (x, y) with confidence 1.0.
    pub const fn new(x: f64, y: f64) -> Self {
        Keypoint {
            x,
            y,
            confidence: 1.0,
        }
    }
}

/// A list of optional points (a hand or a face); `None` is a missing point.
pub type PointList = Vec<Option<Keypoint>>;

/// One person: 18 body joints (OpenPose-18 order), each present or missing, plus optional
/// hands and face carried through from the file (never invented).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Pose {
    /// The 18 body joints in OpenPose-18 order; `None` is a missing joint.
    pub joints: [Option<Keypoint>; NUM_JOINTS],
    /// The subject's left hand (21 points), when the file has one.
    pub hand_left: Option<PointList>,
    /// The subject's right hand (21 points), when the file has one.
    pub hand_right: Option<PointList>,
    /// The face (70 points: 68 landmarks and 2 pupils), when the file has one.
    pub face: Option<PointList>,
}

impl Pose {
    /// A person with the given body joints and no hands or face.
    pub fn from_joints(joints: [Option<Keypoint>; NUM_JOINTS]) -> Self {
        Pose {
            joints,
            ..Default::default()
        }
    }

    /// Number of present body joints.
    pub fn present_count(&self) -> usize {
        self.joints.iter().filter(|j| j.is_some()).count()
    }

    /// The drawn length of limb `k` (an index into `LIMBS`), when both its joints are present.
    pub fn limb_length(&self, k: usize) -> Option<f64> {
        let (a, b) = LIMBS[k];
        let (u, v) = (self.joints[a]?, self.joints[b]?);
        Some((u.x - v.x).hypot(u.y - v.y))
    }

    /// Indices of present body joints.
    pub fn present_indices(&self) -> Vec<usize> {
        (0..NUM_JOINTS)
            .filter(|&j| self.joints[j].is_some())
            .collect()
    }

    /// Every present point of the person: body, hands and face.
    pub fn all_points(&self) -> impl Iterator<Item = &Keypoint> {
        let extras = [&self.hand_left, &self.hand_right, &self.face];
        self.joints.iter().flatten().chain(
            extras
                .into_iter()
                .flatten()
                .flat_map(|l| l.iter().flatten()),
        )
    }

    fn all_points_mut(&mut self) -> impl Iterator<Item = &mut Keypoint> {
        let Pose {
            joints,
            hand_left,
            hand_right,
            face,
        } = self;
        joints.iter_mut().flatten().chain(
            [hand_left, hand_right, face]
                .into_iter()
                .flatten()
                .flat_map(|l| l.iter_mut().flatten()),
        )
    }

    /// Applies `f` to every present point (body, hands, face).
    pub fn map_points(&mut self, f: impl FnMut(&mut Keypoint)) {
        self.all_points_mut().for_each(f);
    }

    /// Bounding box of the present body joints: (min_x, min_y, max_x, max_y).
    pub fn body_bbox(&self) -> Option<(f64, f64, f64, f64)> {
        bbox(self.joints.iter().flatten())
    }

    /// Bounding box of every present point, hands and face included.
    pub fn bbox(&self) -> Option<(f64, f64, f64, f64)> {
        bbox(self.all_points())
    }
}

fn bbox<'a>(points: impl Iterator<Item = &'a Keypoint>) -> Option<(f64, f64, f64, f64)> {
    points.fold(None, |acc, p| {
        Some(match acc {
            None => (p.x, p.y, p.x, p.y),
            Some((a, b, c, d)) => (a.min(p.x), b.min(p.y), c.max(p.x), d.max(p.y)),
        })
    })
}

/// Points of one person outside the canvas ([`PoseSet::points_outside`]).
#[derive(Clone, Debug, PartialEq)]
pub struct OutsidePoints {
    /// The person's index in the frame.
    pub person: usize,
    /// What lies outside, for people to read ("left wrist at (-3.0, 40.5)", "4 face point(s)").
    pub what: String,
    /// How many points the entry stands for.
    pub count: usize,
    /// Whether the entry is one body joint (else a hand or the face).
    pub body_joint: bool,
}

/// The people in one image, with the canvas size in pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct PoseSet {
    /// Canvas width, in pixels.
    pub width: u32,
    /// Canvas height, in pixels.
    pub height: u32,
    /// The people, in drawing order.
    pub people: Vec<Pose>,
}

impl PoseSet {
    /// An empty set (no people) on a canvas of the given size in pixels.
    pub fn new(width: u32, height: u32) -> Self {
        PoseSet {
            width,
            height,
            people: Vec::new(),
        }
    }

    /// Whether a point lies outside the canvas (inside: `0 <= x < width`, `0 <= y < height`).
    pub fn is_outside(&self, p: &Keypoint) -> bool {
        let (w, h) = (self.width as f64, self.height as f64);
        p.x < 0.0 || p.y < 0.0 || p.x >= w || p.y >= h
    }

    /// Per person, how many present body joints lie outside the canvas.
    pub fn joints_outside(&self) -> Vec<usize> {
        self.people
            .iter()
            .map(|p| {
                p.joints
                    .iter()
                    .flatten()
                    .filter(|k| self.is_outside(k))
                    .count()
            })
            .collect()
    }

    /// Present points (body, hands, face) that lie outside the canvas: each body joint on its
    /// own, each hand and the face as one entry with its count.
    pub fn points_outside(&self) -> Vec<OutsidePoints> {
        let outside = |p: &Keypoint| self.is_outside(p);
        let mut out = Vec::new();
        for (i, person) in self.people.iter().enumerate() {
            for (j, k) in person.joints.iter().enumerate() {
                if let Some(k) = k.filter(outside) {
                    let name = super::skeleton::JOINT_NAMES[j];
                    out.push(OutsidePoints {
                        person: i,
                        what: format!("{name} at ({:.1}, {:.1})", k.x, k.y),
                        count: 1,
                        body_joint: true,
                    });
                }
            }
            let parts = [
                ("left hand", &person.hand_left),
                ("right hand", &person.hand_right),
                ("face", &person.face),
            ];
            for (name, list) in parts {
                let n = list
                    .iter()
                    .flatten()
                    .flatten()
                    .filter(|k| outside(k))
                    .count();
                if n > 0 {
                    out.push(OutsidePoints {
                        person: i,
                        what: format!("{n} {name} point(s)"),
                        count: n,
                        body_joint: false,
                    });
                }
            }
        }
        out
    }

    /// Scales every point and the canvas to a new size (e.g. a pose made for another resolution).
    pub fn resized(&self, width: u32, height: u32) -> PoseSet {
        let sx = width as f64 / self.width as f64;
        let sy = height as f64 / self.height as f64;
        let mut people = self.people.clone();
        for p in &mut people {
            p.map_points(|k| {
                k.x *= sx;
                k.y *= sy;
            });
        }
        PoseSet {
            width,
            height,
            people,
        }
    }
}
