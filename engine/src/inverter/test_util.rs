//! Test helpers shared by the inverter's files.

use crate::pose::{Keypoint, Pose};

/// A front-facing person, head at (x, y), height about 8s.
pub(super) fn standing(x: f64, y: f64, s: f64) -> Pose {
    let pts = [
        (0.0, 0.0),
        (0.0, 1.0),
        (-1.0, 1.0),
        (-1.3, 2.5),
        (-1.5, 4.0),
        (1.0, 1.0),
        (1.3, 2.5),
        (1.5, 4.0),
        (-0.6, 4.0),
        (-0.7, 6.0),
        (-0.7, 8.0),
        (0.6, 4.0),
        (0.7, 6.0),
        (0.7, 8.0),
        (-0.25, -0.25),
        (0.25, -0.25),
        (-0.5, -0.1),
        (0.5, -0.1),
    ];
    Pose::from_joints(std::array::from_fn(|j| {
        Some(Keypoint::new(x + s * pts[j].0, y + s * pts[j].1))
    }))
}
