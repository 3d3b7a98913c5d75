//! A reusable articulated body model: limb-length ratios plus joint angles give the 18 OpenPose
//! keypoints of a person.
//!
//! The body is built in 3-D, in units of the standing height (soles to the top of the head is
//! 1.0), in a frame with x to the viewer's right, y up and z towards the camera. A person facing
//! the camera (`facing = 0`) has the subject's right side at negative x, as in OpenPose images.
//! [`BodyModel::articulate`] gives a [`Skeleton3`] whose origin is the action's support point
//! (see [`Action`]); the scene generator places it in the world and projects it with its pinhole
//! camera, and [`pose_for`] projects it obliquely straight into image pixels.
//!
//! The same model serves the PoseInverter's training data and the limb-ratio plausibility metric
//! ([`LimbRatios::limb_lengths`]).

use super::rng::Rng;
use skeleguide_engine::pose::skeleton::joint::*;
use skeleguide_engine::pose::{Keypoint, Pose, LIMBS, NUM_JOINTS};
use std::f64::consts::{FRAC_PI_2, PI};

/// Segment lengths as fractions of the standing height (soles to the top of the head).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimbRatios {
    /// Floor to ankle joint.
    pub ankle_height: f64,
    /// Knee to ankle.
    pub shin: f64,
    /// Hip to knee.
    pub thigh: f64,
    /// Half the distance between the hip joints.
    pub hip_half_width: f64,
    /// Pelvis centre (mid-hip) to neck.
    pub torso: f64,
    /// Half the distance between the shoulder joints.
    pub shoulder_half_width: f64,
    /// How far the shoulder joints sit below the neck point.
    pub shoulder_drop: f64,
    /// Shoulder to elbow.
    pub upper_arm: f64,
    /// Elbow to wrist.
    pub forearm: f64,
    /// Wrist to finger tips.
    pub hand: f64,
    /// Neck to the centre of the head.
    pub neck_to_head: f64,
    /// Radius of the head.
    pub head_radius: f64,
    /// Ankle to toe tip.
    pub foot: f64,
}

/// Adult proportions (close to the engine's default person). They sum to a standing height of 1.
pub const LIMB_RATIOS: LimbRatios = LimbRatios {
    ankle_height: 0.045,
    shin: 0.245,
    thigh: 0.24,
    hip_half_width: 0.055,
    torso: 0.305,
    shoulder_half_width: 0.1,
    shoulder_drop: 0.012,
    upper_arm: 0.165,
    forearm: 0.145,
    hand: 0.055,
    neck_to_head: 0.095,
    head_radius: 0.07,
    foot: 0.075,
};

/// Height of the hip joints above the seat surface when sitting, in body heights.
pub const HIP_ABOVE_SEAT: f64 = 0.05;
/// Height of the spine above the lying surface (half the body's thickness), in body heights.
pub const SPINE_ABOVE_SURFACE: f64 = 0.055;

impl LimbRatios {
    /// Standing height implied by the vertical chain (1.0 for [`LIMB_RATIOS`]).
    pub fn standing_height(&self) -> f64 {
        self.ankle_height
            + self.shin
            + self.thigh
            + self.torso
            + self.neck_to_head
            + self.head_radius
    }

    /// Seat height (floor to seat surface) at which the thighs are horizontal and the shins
    /// vertical.
    pub fn knee_seat_height(&self) -> f64 {
        self.ankle_height + self.shin - HIP_ABOVE_SEAT
    }

    /// The length of each of the 17 OpenPose limbs (`pose::LIMBS` order) of a person standing
    /// straight and facing the camera, in body heights: the reference for limb-ratio metrics.
    pub fn limb_lengths(&self) -> [f64; 17] {
        let model = BodyModel { ratios: *self };
        let sk = model.build(&Angles::neutral(), 0.0);
        let mut out = [0.0; 17];
        for (o, &(a, b)) in out.iter_mut().zip(LIMBS.iter()) {
            *o = dist3(sk.joints[a], sk.joints[b]);
        }
        out
    }
}

/// What a person does. The anchor (the skeleton's origin) depends on it:
/// - `Stand`, `Walk`, `Wave`, `RaiseArms`, `Point`: the floor point under the pelvis; the lower
///   ankle is exactly `ankle_height` above the floor;
/// - `Sit`: the seat-surface point under the pelvis; the hips are `HIP_ABOVE_SEAT` above it and
///   the feet reach the floor `seat_height` below it;
/// - `Lie`: the point of the lying surface (bed, sofa, grass) under the pelvis; the body lies on
///   its back along x, the spine `SPINE_ABOVE_SURFACE` above the surface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Stand,
    Walk,
    Sit,
    Lie,
    Wave,
    RaiseArms,
    Point,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::Stand,
        Action::Walk,
        Action::Sit,
        Action::Lie,
        Action::Wave,
        Action::RaiseArms,
        Action::Point,
    ];

    /// The name used in manifests' facts.
    pub fn name(self) -> &'static str {
        match self {
            Action::Stand => "stand",
            Action::Walk => "walk",
            Action::Sit => "sit",
            Action::Lie => "lie",
            Action::Wave => "wave",
            Action::RaiseArms => "raise_arms",
            Action::Point => "point",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether the feet carry the body (the anchor is on the floor).
    pub fn is_upright(self) -> bool {
        !matches!(self, Action::Sit | Action::Lie)
    }
}

/// Angles of one limb chain, in radians. A segment's direction is given by its elevation from
/// straight down (0 = hanging, π/2 = horizontal, π = straight up) and its azimuth around the
/// vertical (0 = outward to its own side, π/2 = forward, -π/2 = backward).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Limb {
    pub upper_elev: f64,
    pub upper_azim: f64,
    pub lower_elev: f64,
    pub lower_azim: f64,
}

impl Limb {
    fn new(upper_elev: f64, upper_azim: f64, lower_elev: f64, lower_azim: f64) -> Self {
        Limb {
            upper_elev,
            upper_azim,
            lower_elev,
            lower_azim,
        }
    }
}

/// The joint angles of a whole body (before it is turned to face a direction).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Angles {
    /// Forward lean of the torso from vertical.
    pub lean: f64,
    /// Head turn to the subject's left (positive) or right, around the vertical.
    pub head_turn: f64,
    /// Head nod down (positive).
    pub head_nod: f64,
    /// Right and left arm.
    pub arms: [Limb; 2],
    /// Right and left leg.
    pub legs: [Limb; 2],
}

impl Angles {
    /// Standing straight, arms slightly away from the body.
    pub fn neutral() -> Self {
        Angles {
            lean: 0.0,
            head_turn: 0.0,
            head_nod: 0.0,
            arms: [Limb::new(0.12, 0.0, 0.12, 0.3); 2],
            legs: [Limb::new(0.04, 0.0, 0.02, 0.0); 2],
        }
    }
}

/// A posed body in 3-D (body heights; x right, y up, z towards the camera), origin at the anchor.
#[derive(Clone, Debug, PartialEq)]
pub struct Skeleton3 {
    /// The 18 OpenPose joints.
    pub joints: [[f64; 3]; NUM_JOINTS],
    /// Whether each joint faces the camera enough to be annotated (face points turned away are
    /// missing, as OpenPose reports them).
    pub visible: [bool; NUM_JOINTS],
    /// Centre of the head.
    pub head: [f64; 3],
    /// Unit vector the face looks along.
    pub face_dir: [f64; 3],
    /// Unit vector from the neck to the top of the head.
    pub head_up: [f64; 3],
    /// Finger tips, right then left.
    pub hands: [[f64; 3]; 2],
    /// Toe tips, right then left.
    pub toes: [[f64; 3]; 2],
    /// Centre of the pelvis.
    pub pelvis: [f64; 3],
    /// The proportions it was built with.
    pub ratios: LimbRatios,
}

impl Skeleton3 {
    /// Marks the face joints visible or not for a camera in direction `view` (a vector from the
    /// person towards the camera, in the skeleton's frame).
    pub fn set_view(&mut self, view: [f64; 3]) {
        let v = norm3(view);
        for (j, thr) in [
            (NOSE, -0.05),
            (R_EYE, -0.05),
            (L_EYE, -0.05),
            (R_EAR, -0.35),
            (L_EAR, -0.35),
        ] {
            let n = norm3(sub3(self.joints[j], self.head));
            self.visible[j] = dot3(n, v) > thr;
        }
    }

    /// Applies `map` (3-D point to image pixels) to every visible joint.
    pub fn project(&self, map: impl Fn([f64; 3]) -> (f64, f64)) -> Pose {
        let joints = std::array::from_fn(|j| {
            self.visible[j].then(|| {
                let (x, y) = map(self.joints[j]);
                Keypoint::new(x, y)
            })
        });
        Pose::from_joints(joints)
    }

    /// Lowest ankle height (y) of the skeleton.
    pub fn lowest_ankle(&self) -> f64 {
        self.joints[R_ANKLE][1].min(self.joints[L_ANKLE][1])
    }

    fn map_points(&mut self, f: impl Fn([f64; 3]) -> [f64; 3]) {
        for p in self.joints.iter_mut() {
            *p = f(*p);
        }
        for p in self
            .hands
            .iter_mut()
            .chain(self.toes.iter_mut())
            .chain([&mut self.head, &mut self.pelvis])
        {
            *p = f(*p);
        }
    }

    fn map_dirs(&mut self, f: impl Fn([f64; 3]) -> [f64; 3]) {
        self.face_dir = f(self.face_dir);
        self.head_up = f(self.head_up);
    }
}

/// Limb proportions plus the pose grammar of each action.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BodyModel {
    pub ratios: LimbRatios,
}

impl Default for BodyModel {
    fn default() -> Self {
        BodyModel {
            ratios: LIMB_RATIOS,
        }
    }
}

/// Options of [`BodyModel::articulate`] beyond the action.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoseOptions {
    /// Yaw in radians: 0 faces the camera, π/2 faces the viewer's right, ±π faces away.
    pub facing: f64,
    /// Sitting: the seat height above the floor, in body heights.
    pub seat_height: f64,
    /// Lying: +1 puts the head towards +x (the viewer's right), -1 towards -x.
    pub head_towards: f64,
}

impl Default for PoseOptions {
    fn default() -> Self {
        PoseOptions {
            facing: 0.0,
            seat_height: LIMB_RATIOS.knee_seat_height(),
            head_towards: -1.0,
        }
    }
}

impl BodyModel {
    /// The model with slightly varied proportions (each ratio within ±4 %, limbs symmetric).
    pub fn sampled(rng: &mut Rng) -> Self {
        let mut r = LIMB_RATIOS;
        let mut j = |x: &mut f64| *x *= 1.0 + rng.jitter(0.04);
        j(&mut r.shin);
        j(&mut r.thigh);
        j(&mut r.torso);
        j(&mut r.shoulder_half_width);
        j(&mut r.hip_half_width);
        j(&mut r.upper_arm);
        j(&mut r.forearm);
        j(&mut r.head_radius);
        // Keep the standing height at 1 by absorbing the difference in the neck.
        r.neck_to_head += 1.0 - r.standing_height();
        BodyModel { ratios: r }
    }

    /// The joint angles of `action`, randomised by `rng`.
    pub fn angles(&self, action: Action, opts: &PoseOptions, rng: &mut Rng) -> Angles {
        let mut a = Angles::neutral();
        a.head_nod = rng.jitter(0.1);
        a.head_turn = rng.jitter(0.25);
        a.lean = rng.jitter(0.04);
        for arm in a.arms.iter_mut() {
            *arm = Limb::new(
                rng.range(0.06, 0.3),
                rng.jitter(0.5),
                rng.range(0.05, 0.5),
                rng.range(0.2, 1.4),
            );
        }
        for leg in a.legs.iter_mut() {
            *leg = Limb::new(
                rng.range(0.02, 0.1),
                rng.jitter(0.3),
                rng.range(0.0, 0.05),
                0.0,
            );
        }
        let side = rng.below(2); // the active arm for one-armed actions
        match action {
            Action::Stand => {
                if rng.chance(0.3) {
                    // hand on hip
                    a.arms[side] = Limb::new(
                        rng.range(0.5, 0.8),
                        rng.range(-0.4, -0.1),
                        rng.range(1.0, 1.3),
                        rng.range(2.8, 3.3),
                    );
                }
            }
            Action::Walk => {
                let stride = rng.range(0.3, 0.45);
                let front = rng.below(2);
                let back = 1 - front;
                a.legs[front] = Limb::new(stride, FRAC_PI_2, stride * 0.3, FRAC_PI_2);
                a.legs[back] = Limb::new(
                    stride * 0.8,
                    -FRAC_PI_2,
                    stride * 0.8 + rng.range(0.3, 0.6),
                    -FRAC_PI_2,
                );
                let swing = rng.range(0.25, 0.5);
                // arms swing opposite to the legs
                a.arms[back] = Limb::new(swing, FRAC_PI_2, swing + 0.4, FRAC_PI_2);
                a.arms[front] = Limb::new(swing, -FRAC_PI_2, swing * 0.6, -FRAC_PI_2);
                a.lean = rng.range(0.0, 0.08);
            }
            Action::Sit => {
                let splay = rng.range(0.05, 0.3);
                for leg in a.legs.iter_mut() {
                    *leg = Limb::new(FRAC_PI_2, FRAC_PI_2 - splay, 0.0, FRAC_PI_2);
                }
                self.fit_sitting_legs(&mut a, opts.seat_height, rng);
                a.lean = rng.range(-0.12, 0.12);
                for arm in a.arms.iter_mut() {
                    // hands resting on the thighs or the lap
                    *arm = Limb::new(
                        rng.range(0.15, 0.45),
                        rng.range(0.9, 1.5),
                        rng.range(1.1, 1.6),
                        rng.range(1.6, 2.4),
                    );
                }
                if rng.chance(0.3) {
                    a.arms[side] = Limb::new(rng.range(0.05, 0.3), 0.0, rng.range(0.1, 0.3), 0.5);
                }
            }
            Action::Lie => {
                a.head_turn = rng.jitter(0.3);
                for leg in a.legs.iter_mut() {
                    *leg = Limb::new(
                        rng.range(0.03, 0.15),
                        rng.jitter(0.2),
                        rng.range(0.0, 0.1),
                        0.0,
                    );
                }
                if rng.chance(0.4) {
                    // one knee raised
                    let k = rng.below(2);
                    let e = rng.range(0.6, 1.0);
                    a.legs[k] = Limb::new(e, FRAC_PI_2, e * 0.2, -FRAC_PI_2);
                }
                for arm in a.arms.iter_mut() {
                    *arm = Limb::new(
                        rng.range(0.1, 0.7),
                        rng.range(0.0, 0.4),
                        rng.range(0.1, 0.9),
                        rng.range(0.0, 0.6),
                    );
                }
                if rng.chance(0.35) {
                    // a hand behind the head
                    a.arms[side] = Limb::new(rng.range(2.4, 2.8), 0.2, rng.range(3.6, 4.0), 0.1);
                }
            }
            Action::Wave => {
                a.arms[side] = Limb::new(
                    rng.range(1.3, 1.8),
                    rng.range(0.0, 0.5),
                    rng.range(2.6, 3.05),
                    rng.range(0.0, 0.5),
                );
            }
            Action::RaiseArms => {
                for arm in a.arms.iter_mut() {
                    let e = rng.range(2.4, 2.85);
                    *arm = Limb::new(
                        e,
                        rng.range(0.0, 0.4),
                        e + rng.range(0.0, 0.25),
                        rng.range(0.0, 0.4),
                    );
                }
            }
            Action::Point => {
                let e = rng.range(1.35, 1.75);
                let az = rng.range(0.0, 1.0);
                a.arms[side] = Limb::new(e, az, e + rng.jitter(0.08), az);
                a.head_turn = if side == 1 { az * 0.6 } else { -az * 0.6 };
            }
        }
        a
    }

    /// Chooses the sitting leg angles so that the feet reach the floor.
    fn fit_sitting_legs(&self, a: &mut Angles, seat_height: f64, rng: &mut Rng) {
        let r = &self.ratios;
        // vertical distance from the hip joint down to the ankle joint
        let drop = (seat_height + HIP_ABOVE_SEAT - r.ankle_height).max(0.0);
        let forward = rng.chance(0.5);
        for leg in a.legs.iter_mut() {
            let mut thigh_elev = FRAC_PI_2 + rng.jitter(0.08);
            let mut shin_drop = drop - r.thigh * thigh_elev.cos();
            if shin_drop > r.shin {
                // too high for horizontal thighs: slope them down, shins vertical
                let c = ((drop - r.shin) / r.thigh).clamp(-1.0, 1.0);
                thigh_elev = c.acos();
                shin_drop = r.shin;
            }
            leg.upper_elev = thigh_elev;
            let s = (shin_drop.max(0.0) / r.shin).clamp(-1.0, 1.0);
            leg.lower_elev = s.acos();
            leg.lower_azim = if forward { FRAC_PI_2 } else { -FRAC_PI_2 };
            // (the fitted angles are exact; only the forward/back choice is random)
        }
    }

    /// Builds the body for given angles, pelvis at the origin, upright, facing the camera.
    fn build(&self, a: &Angles, _seat: f64) -> Skeleton3 {
        let r = &self.ratios;
        let torso_dir = [0.0, a.lean.cos(), a.lean.sin()];
        let pelvis = [0.0, 0.0, 0.0];
        let neck = scale3(torso_dir, r.torso);
        let mut joints = [[0.0; 3]; NUM_JOINTS];
        joints[NECK] = neck;
        // head
        let head_axis = norm3(add3(torso_dir, [0.0, 0.0, a.head_nod * 0.3]));
        let head = add3(neck, scale3(head_axis, r.neck_to_head));
        let (ts, tc) = a.head_turn.sin_cos();
        // The head's own frame: forward (face), right (+x when facing the camera), up.
        let nod = a.head_nod;
        let face_dir = norm3([ts * nod.cos(), -nod.sin(), tc * nod.cos()]);
        let side_dir = [tc, 0.0, -ts];
        let head_up = norm3(cross3(face_dir, side_dir));
        let head_up = if head_up[1] < 0.0 {
            scale3(head_up, -1.0)
        } else {
            head_up
        };
        let hp = |f: f64, u: f64, s: f64| {
            add3(
                head,
                scale3(
                    norm3(add3(
                        add3(scale3(face_dir, f), scale3(head_up, u)),
                        scale3(side_dir, s),
                    )),
                    r.head_radius,
                ),
            )
        };
        joints[NOSE] = hp(1.0, -0.25, 0.0);
        joints[R_EYE] = hp(0.85, 0.2, -0.42);
        joints[L_EYE] = hp(0.85, 0.2, 0.42);
        joints[R_EAR] = hp(-0.1, 0.0, -1.0);
        joints[L_EAR] = hp(-0.1, 0.0, 1.0);
        // arms and legs: index 0 is the subject's right (x < 0), 1 the left
        let dir = |elev: f64, azim: f64, side: f64| {
            [
                side * elev.sin() * azim.cos(),
                -elev.cos(),
                elev.sin() * azim.sin(),
            ]
        };
        let mut hands = [[0.0; 3]; 2];
        let mut toes = [[0.0; 3]; 2];
        let arm_j = [
            (R_SHOULDER, R_ELBOW, R_WRIST),
            (L_SHOULDER, L_ELBOW, L_WRIST),
        ];
        let leg_j = [(R_HIP, R_KNEE, R_ANKLE), (L_HIP, L_KNEE, L_ANKLE)];
        for k in 0..2 {
            let side = if k == 0 { -1.0 } else { 1.0 };
            let (s, e, w) = arm_j[k];
            let arm = &a.arms[k];
            joints[s] = add3(neck, [side * r.shoulder_half_width, -r.shoulder_drop, 0.0]);
            joints[e] = add3(
                joints[s],
                scale3(dir(arm.upper_elev, arm.upper_azim, side), r.upper_arm),
            );
            let fd = dir(arm.lower_elev, arm.lower_azim, side);
            joints[w] = add3(joints[e], scale3(fd, r.forearm));
            hands[k] = add3(joints[w], scale3(fd, r.hand));
            let (h, kn, an) = leg_j[k];
            let leg = &a.legs[k];
            joints[h] = add3(pelvis, [side * r.hip_half_width, 0.0, 0.0]);
            joints[kn] = add3(
                joints[h],
                scale3(dir(leg.upper_elev, leg.upper_azim, side), r.thigh),
            );
            joints[an] = add3(
                joints[kn],
                scale3(dir(leg.lower_elev, leg.lower_azim, side), r.shin),
            );
            toes[k] = add3(
                joints[an],
                [side * 0.15 * r.foot, -0.7 * r.ankle_height, r.foot],
            );
        }
        Skeleton3 {
            joints,
            visible: [true; NUM_JOINTS],
            head,
            face_dir,
            head_up,
            hands,
            toes,
            pelvis,
            ratios: *r,
        }
    }

    /// The posed body for `action`: angles from the action's grammar, turned to `opts.facing`
    /// (or laid down), with its origin at the action's anchor (see [`Action`]). Face points are
    /// marked visible for a camera straight in front (+z); call `Skeleton3::set_view` for
    /// another camera.
    pub fn articulate(&self, action: Action, opts: &PoseOptions, rng: &mut Rng) -> Skeleton3 {
        let angles = self.angles(action, opts, rng);
        self.articulate_with(action, &angles, opts)
    }

    /// As [`articulate`](Self::articulate), with given angles.
    pub fn articulate_with(
        &self,
        action: Action,
        angles: &Angles,
        opts: &PoseOptions,
    ) -> Skeleton3 {
        let mut sk = self.build(angles, opts.seat_height);
        match action {
            Action::Lie => {
                // On the back: body up (y) -> ±x, front (z) -> up (y), left (x) -> ±z.
                let h = if opts.head_towards < 0.0 { -1.0 } else { 1.0 };
                let rot = move |p: [f64; 3]| [h * p[1], p[2], h * p[0]];
                sk.map_points(|p| {
                    let q = rot(p);
                    [q[0], q[1] + SPINE_ABOVE_SURFACE, q[2]]
                });
                sk.map_dirs(rot);
                // keep every point on or above the surface
                let low = sk
                    .joints
                    .iter()
                    .chain(sk.hands.iter())
                    .chain(sk.toes.iter())
                    .map(|p| p[1])
                    .fold(f64::INFINITY, f64::min);
                if low < 0.01 {
                    let lift = 0.01 - low;
                    sk.map_points(|p| [p[0], p[1] + lift, p[2]]);
                }
            }
            _ => {
                let (s, c) = opts.facing.sin_cos();
                let yaw = move |p: [f64; 3]| [p[0] * c + p[2] * s, p[1], -p[0] * s + p[2] * c];
                sk.map_points(yaw);
                sk.map_dirs(yaw);
                let lift = if action == Action::Sit {
                    HIP_ABOVE_SEAT
                } else {
                    self.ratios.ankle_height - sk.lowest_ankle()
                };
                sk.map_points(|p| [p[0], p[1] + lift, p[2]]);
            }
        }
        sk.set_view([0.0, 0.0, 1.0]);
        sk
    }
}

/// Oblique depth factor of [`pose_for`]: a point `z` towards the camera drops by `k·z` in the
/// image, as seen from a camera somewhat above the person.
pub const OBLIQUE_K: f64 = 0.25;

/// A person doing `action`, `height` pixels tall when standing, with its anchor (see [`Action`])
/// at image point `anchor`, facing `facing` radians (0 = the camera). The skeleton is projected
/// obliquely, as seen from slightly above; sitting uses a knee-height seat, lying puts the head to
/// the left.
pub fn pose_for(
    action: Action,
    anchor: (f64, f64),
    height: f64,
    facing: f64,
    rng: &mut Rng,
) -> Pose {
    let model = BodyModel::default();
    let opts = PoseOptions {
        facing,
        ..Default::default()
    };
    let mut sk = model.articulate(action, &opts, rng);
    sk.set_view([0.0, OBLIQUE_K, 1.0]);
    sk.project(|p| oblique(p, anchor, height))
}

/// A random person for scene-free data (e.g. PoseInverter training): a random action, facing,
/// proportions, size (30-90 % of the shorter side) and place, drawn with the oblique projection
/// of [`pose_for`], every joint inside the `width`×`height` canvas.
pub fn random_pose(width: u32, height: u32, rng: &mut Rng) -> (Action, Pose) {
    let (w, h) = (width.max(1) as f64, height.max(1) as f64);
    let side = w.min(h);
    let inside = |p: &Pose| {
        p.joints
            .iter()
            .flatten()
            .all(|k| k.x >= 0.0 && k.y >= 0.0 && k.x < w && k.y < h)
    };
    for _ in 0..64 {
        let action = Action::ALL[rng.below(Action::ALL.len())];
        let size = side * rng.range(0.3, 0.9);
        let facing = if rng.chance(0.15) {
            PI + rng.jitter(0.8)
        } else {
            rng.jitter(1.6)
        };
        let model = BodyModel::sampled(rng);
        let opts = PoseOptions {
            facing,
            seat_height: rng.range(0.2, 0.32),
            head_towards: if rng.chance(0.5) { 1.0 } else { -1.0 },
        };
        let mut sk = model.articulate(action, &opts, rng);
        sk.set_view([0.0, OBLIQUE_K, 1.0]);
        let anchor = (rng.range(0.15, 0.85) * w, rng.range(0.5, 0.98) * h);
        let pose = sk.project(|p| oblique(p, anchor, size));
        if inside(&pose) {
            return (action, pose);
        }
    }
    // always fits: a small standing person in the middle
    let pose = pose_for(Action::Stand, (w / 2.0, h * 0.9), h * 0.6, 0.0, rng);
    (Action::Stand, pose)
}

/// The oblique projection of [`pose_for`].
pub fn oblique(p: [f64; 3], anchor: (f64, f64), height: f64) -> (f64, f64) {
    (
        anchor.0 + height * p[0],
        anchor.1 - height * (p[1] - OBLIQUE_K * p[2]),
    )
}

// --- small vector helpers -------------------------------------------------------------------

pub(crate) fn add3(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
pub(crate) fn sub3(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
pub(crate) fn scale3(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}
pub(crate) fn dot3(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross3(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
pub(crate) fn norm3(a: [f64; 3]) -> [f64; 3] {
    let l = dot3(a, a).sqrt();
    if l > 0.0 {
        scale3(a, 1.0 / l)
    } else {
        a
    }
}
pub(crate) fn dist3(a: [f64; 3], b: [f64; 3]) -> f64 {
    let d = sub3(a, b);
    dot3(d, d).sqrt()
}

/// Wraps an angle to (-π, π].
pub fn wrap_angle(a: f64) -> f64 {
    let mut x = a % (2.0 * PI);
    if x > PI {
        x -= 2.0 * PI;
    } else if x <= -PI {
        x += 2.0 * PI;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_make_a_unit_standing_height() {
        assert!((LIMB_RATIOS.standing_height() - 1.0).abs() < 1e-9);
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let m = BodyModel::sampled(&mut rng);
            assert!((m.ratios.standing_height() - 1.0).abs() < 1e-9);
        }
        let l = LIMB_RATIOS.limb_lengths();
        assert!((l[2] - LIMB_RATIOS.upper_arm).abs() < 1e-9);
        assert!((l[8] - LIMB_RATIOS.shin).abs() < 1e-9);
    }

    #[test]
    fn upright_actions_stand_on_the_floor_and_sitting_reaches_it() {
        let mut rng = Rng::new(11);
        for i in 0..400 {
            let action = Action::ALL[i % Action::ALL.len()];
            let model = BodyModel::sampled(&mut rng);
            let opts = PoseOptions {
                facing: rng.range(-PI, PI),
                seat_height: rng.range(0.2, 0.32),
                head_towards: if rng.chance(0.5) { 1.0 } else { -1.0 },
            };
            let sk = model.articulate(action, &opts, &mut rng);
            let r = model.ratios;
            match action {
                Action::Sit => {
                    let hip_y = (sk.joints[R_HIP][1] + sk.joints[L_HIP][1]) / 2.0;
                    assert!((hip_y - HIP_ABOVE_SEAT).abs() < 1e-9);
                    for a in [R_ANKLE, L_ANKLE] {
                        let floor = -opts.seat_height;
                        assert!(
                            (sk.joints[a][1] - (floor + r.ankle_height)).abs() < 1e-6,
                            "{i}: ankle {} vs floor {floor}",
                            sk.joints[a][1]
                        );
                    }
                }
                Action::Lie => {
                    let hip_y = (sk.joints[R_HIP][1] + sk.joints[L_HIP][1]) / 2.0;
                    assert!(hip_y > 0.0 && hip_y < 0.12, "{hip_y}");
                    // lying along x: the body is long in x, short in y
                    let dx = (sk.joints[NECK][0] - sk.pelvis[0]).abs();
                    assert!(dx > 0.25);
                }
                _ => {
                    assert!((sk.lowest_ankle() - r.ankle_height).abs() < 1e-9);
                    let top = sk.head[1] + r.head_radius;
                    assert!(top > 0.85 && top < 1.02, "{action:?} top {top}");
                }
            }
        }
    }

    #[test]
    fn face_points_turn_away() {
        let mut rng = Rng::new(1);
        let front = pose_for(Action::Stand, (100.0, 200.0), 150.0, 0.0, &mut rng);
        assert_eq!(front.present_count(), 18);
        let back = pose_for(Action::Stand, (100.0, 200.0), 150.0, PI, &mut rng);
        assert!(back.joints[NOSE].is_none());
        assert!(back.joints[R_EYE].is_none());
        let side = pose_for(Action::Stand, (100.0, 200.0), 150.0, 1.2, &mut rng);
        assert!(side.joints[NOSE].is_some());
        // turned to the viewer's right: the subject's right ear faces the camera, the left away
        assert!(side.joints[R_EAR].is_some());
        let profile = pose_for(Action::Stand, (100.0, 200.0), 150.0, FRAC_PI_2, &mut rng);
        assert!(profile.joints[L_EAR].is_none() && profile.joints[R_EAR].is_some());
    }

    #[test]
    fn random_poses_fit_their_canvas() {
        let mut rng = Rng::new(9);
        let mut seen = std::collections::HashSet::new();
        for i in 0..300 {
            let (w, h) = (64 + (i % 5) * 100, 64 + (i % 3) * 150);
            let (action, p) = random_pose(w, h, &mut rng);
            seen.insert(action);
            let set = skeleguide_engine::pose::PoseSet {
                width: w,
                height: h,
                people: vec![p],
            };
            assert!(set.points_outside().is_empty());
            assert!(set.people[0].present_count() >= 13);
        }
        assert_eq!(seen.len(), Action::ALL.len());
    }

    #[test]
    fn pose_for_scales_and_anchors() {
        let mut rng = Rng::new(5);
        let p = pose_for(Action::Stand, (64.0, 120.0), 100.0, 0.0, &mut rng);
        let (_, y0, _, y1) = p.body_bbox().unwrap();
        assert!(y1 < 120.0 && y1 > 110.0, "ankles at {y1}");
        assert!(y0 > 20.0 && y0 < 35.0, "eyes at {y0}");
        // the subject's right shoulder is on the image left when facing the camera
        assert!(p.joints[R_SHOULDER].unwrap().x < p.joints[L_SHOULDER].unwrap().x);
    }
}
