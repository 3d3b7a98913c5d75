//! The OpenPose-18 skeleton (COCO-18 joint order), its limbs and the ControlNet palette,
//! plus the index maps from the other keypoint layouts we import.

/// Number of body joints in the internal format.
pub const NUM_JOINTS: usize = 18;
/// Number of limbs that ControlNet draws (its `limbSeq` lists 19; only the first 17 are drawn).
pub const NUM_LIMBS: usize = 17;
/// Points in one OpenPose hand.
pub const HAND_POINTS: usize = 21;
/// Points in the OpenPose face (68 landmarks + 2 pupils).
pub const FACE_POINTS: usize = 70;

/// Joint names in COCO-18 / OpenPose-18 order. "Right" is the subject's right.
pub const JOINT_NAMES: [&str; NUM_JOINTS] = [
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
];

/// Joint indices by name, for readable code.
pub mod joint {
    /// Index of the nose.
    pub const NOSE: usize = 0;
    /// Index of the neck (between the shoulders).
    pub const NECK: usize = 1;
    /// Index of the subject's right shoulder.
    pub const R_SHOULDER: usize = 2;
    /// Index of the subject's right elbow.
    pub const R_ELBOW: usize = 3;
    /// Index of the subject's right wrist.
    pub const R_WRIST: usize = 4;
    /// Index of the subject's left shoulder.
    pub const L_SHOULDER: usize = 5;
    /// Index of the subject's left elbow.
    pub const L_ELBOW: usize = 6;
    /// Index of the subject's left wrist.
    pub const L_WRIST: usize = 7;
    /// Index of the subject's right hip.
    pub const R_HIP: usize = 8;
    /// Index of the subject's right knee.
    pub const R_KNEE: usize = 9;
    /// Index of the subject's right ankle.
    pub const R_ANKLE: usize = 10;
    /// Index of the subject's left hip.
    pub const L_HIP: usize = 11;
    /// Index of the subject's left knee.
    pub const L_KNEE: usize = 12;
    /// Index of the subject's left ankle.
    pub const L_ANKLE: usize = 13;
    /// Index of the subject's right eye.
    pub const R_EYE: usize = 14;
    /// Index of the subject's left eye.
    pub const L_EYE: usize = 15;
    /// Index of the subject's right ear.
    pub const R_EAR: usize = 16;
    /// Index of the subject's left ear.
    pub const L_EAR: usize = 17;
}

/// The 17 drawn limbs, 0-based, in ControlNet's order. Limb `i` is drawn in `COLORS[i]`.
pub const LIMBS: [(usize, usize); NUM_LIMBS] = [
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
];

/// The 18 ControlNet colours (RGB). Joint `j` uses `COLORS[j]`, limb `i` uses `COLORS[i]`.
pub const COLORS: [[u8; 3]; NUM_JOINTS] = [
    [255, 0, 0],
    [255, 85, 0],
    [255, 170, 0],
    [255, 255, 0],
    [170, 255, 0],
    [85, 255, 0],
    [0, 255, 0],
    [0, 255, 85],
    [0, 255, 170],
    [0, 255, 255],
    [0, 170, 255],
    [0, 85, 255],
    [0, 0, 255],
    [85, 0, 255],
    [170, 0, 255],
    [255, 0, 255],
    [255, 0, 170],
    [255, 0, 85],
];

/// The limb colour: the palette colour scaled by 0.6 and truncated, as ControlNet 1.1 does.
pub fn limb_color(limb: usize) -> [u8; 3] {
    let c = COLORS[limb];
    // int(c * 0.6) in Python; 0.6 is not exact in binary, so compute it the same way.
    [
        (c[0] as f64 * 0.6) as u8,
        (c[1] as f64 * 0.6) as u8,
        (c[2] as f64 * 0.6) as u8,
    ]
}

/// The joint that plays the same role on the other side of the body (identity for centre joints).
pub const fn mirror_joint(j: usize) -> usize {
    match j {
        2 => 5,
        3 => 6,
        4 => 7,
        5 => 2,
        6 => 3,
        7 => 4,
        8 => 11,
        9 => 12,
        10 => 13,
        11 => 8,
        12 => 9,
        13 => 10,
        14 => 15,
        15 => 14,
        16 => 17,
        17 => 16,
        other => other,
    }
}

/// The left/right counterpart of each of the 70 face points (iBUG-68 order plus the two pupils).
pub fn mirror_face_point(i: usize) -> usize {
    match i {
        0..=16 => 16 - i,  // jaw line
        17..=26 => 43 - i, // eyebrows: 17<->26 ... 21<->22
        27..=30 => i,      // nose bridge
        31..=35 => 66 - i, // nostrils: 31<->35, 33 centre
        36..=39 => 81 - i, // upper eye: 36<->45, 37<->44, 38<->43, 39<->42
        40 | 41 => 87 - i, // lower eye: 40<->47, 41<->46
        42..=45 => 81 - i,
        46 | 47 => 87 - i,
        48..=54 => 102 - i, // outer lip top: 48<->54 ... 51 centre
        55..=59 => 114 - i, // outer lip bottom: 55<->59, 57 centre
        60..=64 => 124 - i, // inner lip top: 60<->64, 62 centre
        65..=67 => 132 - i, // inner lip bottom: 65<->67, 66 centre
        68 => 69,           // pupils
        69 => 68,
        other => other,
    }
}

/// For each OpenPose-18 joint, its index in COCO-17; `None` for the neck, which is derived.
pub const COCO17_TO_OP18: [Option<usize>; NUM_JOINTS] = [
    Some(0),
    None,
    Some(6),
    Some(8),
    Some(10),
    Some(5),
    Some(7),
    Some(9),
    Some(12),
    Some(14),
    Some(16),
    Some(11),
    Some(13),
    Some(15),
    Some(2),
    Some(1),
    Some(4),
    Some(3),
];

/// COCO-17 shoulders, used to derive the neck.
pub const COCO17_LEFT_SHOULDER: usize = 5;
/// COCO-17 index of the right shoulder (see [`COCO17_LEFT_SHOULDER`]).
pub const COCO17_RIGHT_SHOULDER: usize = 6;

/// For each OpenPose-18 joint, its index in BODY_25 (MidHip 8 and the feet 19-24 are dropped).
pub const BODY25_TO_OP18: [usize; NUM_JOINTS] = [
    0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_maps_are_involutions() {
        for j in 0..NUM_JOINTS {
            assert_eq!(mirror_joint(mirror_joint(j)), j);
            // a left joint maps to the right one of the same name
            let n = JOINT_NAMES[j];
            let m = JOINT_NAMES[mirror_joint(j)];
            assert_eq!(
                n.replace("left", "X").replace("right", "X"),
                m.replace("left", "X").replace("right", "X")
            );
        }
        for i in 0..FACE_POINTS {
            let m = mirror_face_point(i);
            assert!(m < FACE_POINTS);
            assert_eq!(mirror_face_point(m), i, "face point {i}");
        }
    }

    #[test]
    fn limb_colors_are_sixty_percent() {
        assert_eq!(limb_color(0), [153, 0, 0]);
        assert_eq!(limb_color(1), [153, 51, 0]);
        assert_eq!(limb_color(2), [153, 102, 0]);
    }
}
