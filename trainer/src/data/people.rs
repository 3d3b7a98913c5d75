//! How synthetic people look (skin, hair, clothes in named colours) and how they are drawn:
//! shaded limb volumes and a head with hair, painted far to near.

use super::body::{dot3, Skeleton3};
use super::raster::{mul, shade, Canvas, Rgbf};
use super::rng::Rng;
use skeleguide_engine::pose::skeleton::joint::*;
use skeleguide_engine::pose::NUM_JOINTS;

/// The named clothing colours prompts use.
pub const COLOR_NAMES: [(&str, Rgbf); 11] = [
    ("red", [200.0, 35.0, 35.0]),
    ("blue", [40.0, 80.0, 205.0]),
    ("green", [40.0, 150.0, 60.0]),
    ("yellow", [238.0, 205.0, 40.0]),
    ("black", [35.0, 35.0, 38.0]),
    ("white", [240.0, 240.0, 236.0]),
    ("orange", [242.0, 128.0, 30.0]),
    ("purple", [120.0, 55.0, 165.0]),
    ("pink", [242.0, 140.0, 185.0]),
    ("grey", [128.0, 128.0, 128.0]),
    ("brown", [115.0, 75.0, 42.0]),
];

const SKINS: [Rgbf; 6] = [
    [250.0, 220.0, 192.0],
    [238.0, 192.0, 158.0],
    [222.0, 170.0, 128.0],
    [196.0, 134.0, 90.0],
    [140.0, 88.0, 56.0],
    [92.0, 58.0, 38.0],
];

const HAIRS: [(&str, Rgbf); 6] = [
    ("black", [28.0, 24.0, 22.0]),
    ("dark brown", [62.0, 40.0, 26.0]),
    ("brown", [112.0, 74.0, 42.0]),
    ("blond", [214.0, 178.0, 108.0]),
    ("red", [158.0, 66.0, 32.0]),
    ("grey", [168.0, 168.0, 165.0]),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gender {
    Woman,
    Man,
}

impl Gender {
    pub fn noun(self) -> &'static str {
        match self {
            Gender::Woman => "woman",
            Gender::Man => "man",
        }
    }
}

/// A person's looks.
#[derive(Clone, Debug, PartialEq)]
pub struct Appearance {
    pub gender: Gender,
    pub skin: Rgbf,
    pub hair: Rgbf,
    pub hair_name: &'static str,
    pub long_hair: bool,
    /// Index into [`COLOR_NAMES`].
    pub shirt: usize,
    /// Index into [`COLOR_NAMES`].
    pub trousers: usize,
    pub long_sleeves: bool,
    pub shoes: Rgbf,
}

impl Appearance {
    pub fn random(rng: &mut Rng) -> Appearance {
        let gender = if rng.chance(0.5) {
            Gender::Woman
        } else {
            Gender::Man
        };
        let (hair_name, hair) = *rng.pick(&HAIRS).unwrap_or(&HAIRS[0]);
        let shirt = rng.below(COLOR_NAMES.len());
        // trousers lean to the usual colours, and differ from the shirt
        let mut trousers = shirt;
        while trousers == shirt {
            trousers = rng.weighted(&[0.6, 2.5, 0.6, 0.3, 2.5, 1.0, 0.3, 0.4, 0.3, 1.5, 1.5]);
        }
        Appearance {
            gender,
            skin: *rng.pick(&SKINS).unwrap_or(&SKINS[0]),
            hair,
            hair_name,
            long_hair: match gender {
                Gender::Woman => rng.chance(0.8),
                Gender::Man => rng.chance(0.08),
            },
            shirt,
            trousers,
            long_sleeves: rng.chance(0.45),
            shoes: *rng
                .pick(&[
                    [30.0, 28.0, 28.0],
                    [90.0, 60.0, 40.0],
                    [230.0, 230.0, 230.0],
                    [60.0, 60.0, 80.0],
                ])
                .unwrap_or(&[30.0; 3]),
        }
    }

    pub fn shirt_name(&self) -> &'static str {
        COLOR_NAMES[self.shirt].0
    }

    pub fn trousers_name(&self) -> &'static str {
        COLOR_NAMES[self.trousers].0
    }
}

/// A person ready to draw: the 3-D skeleton (for depth order and facing) and the image positions
/// of its points.
#[derive(Clone, Debug)]
pub struct Figure {
    pub skeleton: Skeleton3,
    /// Image positions of the 18 joints (also the ones not annotated).
    pub joints: [(f64, f64); NUM_JOINTS],
    pub head: (f64, f64),
    pub hands: [(f64, f64); 2],
    pub toes: [(f64, f64); 2],
    pub pelvis: (f64, f64),
    /// Image position of head + face_dir * head radius, and head + head_up * head radius.
    pub face_tip: (f64, f64),
    pub crown: (f64, f64),
    /// Pixels per body height.
    pub scale: f64,
    /// Unit vector towards the camera, in the skeleton's frame.
    pub view: [f64; 3],
    pub looks: Appearance,
}

impl Figure {
    /// Projects a skeleton with `map` (skeleton point to image pixels).
    pub fn new(
        skeleton: Skeleton3,
        map: impl Fn([f64; 3]) -> (f64, f64),
        scale: f64,
        view: [f64; 3],
        looks: Appearance,
    ) -> Figure {
        let r = skeleton.ratios.head_radius;
        let h = skeleton.head;
        let along = |d: [f64; 3]| [h[0] + d[0] * r, h[1] + d[1] * r, h[2] + d[2] * r];
        Figure {
            joints: skeleton.joints.map(&map),
            head: map(h),
            hands: skeleton.hands.map(&map),
            toes: skeleton.toes.map(&map),
            pelvis: map(skeleton.pelvis),
            face_tip: map(along(skeleton.face_dir)),
            crown: map(along(skeleton.head_up)),
            scale,
            view,
            looks,
            skeleton,
        }
    }

    /// The extent of the drawn figure in pixels: (min_x, min_y, max_x, max_y).
    pub fn extent(&self) -> (f64, f64, f64, f64) {
        let s = self.scale;
        let mut b = (
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        );
        let mut add = |p: (f64, f64), r: f64| {
            b.0 = b.0.min(p.0 - r);
            b.1 = b.1.min(p.1 - r);
            b.2 = b.2.max(p.0 + r);
            b.3 = b.3.max(p.1 + r);
        };
        for &p in &self.joints {
            add(p, 0.075 * s);
        }
        for &p in self.hands.iter().chain(self.toes.iter()) {
            add(p, 0.035 * s);
        }
        add(self.head, 1.1 * self.skeleton.ratios.head_radius * s);
        b
    }

    /// Paints the figure (with the canvas' current tag).
    pub fn draw(&self, c: &mut Canvas) {
        let s = self.scale;
        let sk = &self.skeleton;
        let z = |j: usize| sk.joints[j][2];
        let lk = &self.looks;
        let shirt = super::people::COLOR_NAMES[lk.shirt].1;
        let trousers = COLOR_NAMES[lk.trousers].1;
        let j = &self.joints;
        let mid = |a: (f64, f64), b: (f64, f64)| ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
        let torso_z = (z(R_SHOULDER) + z(L_SHOULDER) + z(R_HIP) + z(L_HIP)) / 4.0;
        let facing_camera = dot3(sk.face_dir, self.view) > -0.15;

        enum P {
            Cap((f64, f64), (f64, f64), f64, f64, Rgbf),
            Blob((f64, f64), f64, Rgbf),
            Trunk,
            Head,
            LongHair,
        }
        let mut parts: Vec<(f64, P)> = Vec::with_capacity(20);
        parts.push((
            torso_z - 0.002,
            P::Cap(j[R_HIP], j[L_HIP], 0.068 * s, 0.068 * s, trousers),
        ));
        parts.push((torso_z, P::Trunk));
        parts.push((
            torso_z + 0.001,
            P::Cap(j[NECK], self.head, 0.032 * s, 0.03 * s, lk.skin),
        ));
        parts.push((sk.head[2] + 0.3, P::Head));
        if lk.long_hair {
            let key = if facing_camera {
                torso_z - 0.05
            } else {
                torso_z + 0.0015
            };
            parts.push((key, P::LongHair));
        }
        let sleeve = if lk.long_sleeves { shirt } else { lk.skin };
        for (k, (sh, el, wr)) in [
            (R_SHOULDER, R_ELBOW, R_WRIST),
            (L_SHOULDER, L_ELBOW, L_WRIST),
        ]
        .into_iter()
        .enumerate()
        {
            parts.push((
                (z(sh) + z(el)) / 2.0,
                P::Cap(j[sh], j[el], 0.042 * s, 0.036 * s, shirt),
            ));
            parts.push((
                (z(el) + z(wr)) / 2.0 + 0.001,
                P::Cap(j[el], j[wr], 0.034 * s, 0.028 * s, sleeve),
            ));
            parts.push((
                sk.hands[k][2] + 0.002,
                P::Blob(mid(j[wr], self.hands[k]), 0.034 * s, lk.skin),
            ));
        }
        for (k, (hp, kn, an)) in [(R_HIP, R_KNEE, R_ANKLE), (L_HIP, L_KNEE, L_ANKLE)]
            .into_iter()
            .enumerate()
        {
            parts.push((
                (z(hp) + z(kn)) / 2.0,
                P::Cap(j[hp], j[kn], 0.062 * s, 0.048 * s, trousers),
            ));
            parts.push((
                (z(kn) + z(an)) / 2.0 + 0.001,
                P::Cap(j[kn], j[an], 0.047 * s, 0.036 * s, trousers),
            ));
            parts.push((
                (z(an) + sk.toes[k][2]) / 2.0 + 0.002,
                P::Cap(j[an], self.toes[k], 0.032 * s, 0.028 * s, lk.shoes),
            ));
        }
        parts.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, p) in parts {
            match p {
                P::Cap(a, b, ra, rb, col) => c.capsule(a, b, ra, rb, col),
                P::Blob(at, r, col) => c.ellipse_with(at, r, r, 0.0, |nx, ny| shade(col, nx, ny)),
                P::Trunk => self.draw_trunk(c, shirt),
                P::Head => self.draw_head(c, facing_camera),
                P::LongHair => {
                    let r = sk.ratios.head_radius * s;
                    let (h, up, fd) = (self.head, self.up2(), self.face2());
                    let a = (
                        h.0 - 0.25 * fd.0 + 0.1 * up.0,
                        h.1 - 0.25 * fd.1 + 0.1 * up.1,
                    );
                    let b = (
                        h.0 - 1.6 * up.0 - 0.35 * fd.0,
                        h.1 - 1.6 * up.1 - 0.35 * fd.1,
                    );
                    c.capsule(a, b, 0.95 * r, 0.7 * r, lk.hair);
                }
            }
        }
    }

    /// Image vector of the head's up direction, one head radius long.
    fn up2(&self) -> (f64, f64) {
        (self.crown.0 - self.head.0, self.crown.1 - self.head.1)
    }

    /// Image vector of the face direction, one head radius long.
    fn face2(&self) -> (f64, f64) {
        (self.face_tip.0 - self.head.0, self.face_tip.1 - self.head.1)
    }

    fn draw_trunk(&self, c: &mut Canvas, shirt: Rgbf) {
        let s = self.scale;
        let j = &self.joints;
        let top = (
            (j[R_SHOULDER].0 + j[L_SHOULDER].0) / 2.0,
            (j[R_SHOULDER].1 + j[L_SHOULDER].1) / 2.0,
        );
        let bot = self.pelvis;
        let (ax, ay) = (top.0 - bot.0, top.1 - bot.1);
        let len = (ax * ax + ay * ay).sqrt().max(1e-6);
        let (ux, uy) = (ax / len, ay / len); // up along the spine
        let (px, py) = (-uy, ux); // across
        let across =
            |a: (f64, f64), b: (f64, f64)| ((a.0 - b.0) * px + (a.1 - b.1) * py).abs() / 2.0;
        let wt = (across(j[R_SHOULDER], j[L_SHOULDER]) + 0.035 * s).max(0.075 * s);
        let wb = (across(j[R_HIP], j[L_HIP]) + 0.04 * s).max(0.07 * s);
        let t = (top.0 + ux * 0.01 * s, top.1 + uy * 0.01 * s);
        let b = (bot.0 + ux * 0.015 * s, bot.1 + uy * 0.015 * s);
        let poly = [
            (t.0 - px * wt, t.1 - py * wt),
            (t.0 + px * wt, t.1 + py * wt),
            (b.0 + px * wb, b.1 + py * wb),
            (b.0 - px * wb, b.1 - py * wb),
        ];
        c.fill_poly_with(&poly, |x, y| {
            // lateral position -> a cylinder normal
            let (dx, dy) = (x - b.0, y - b.1);
            let along = ((dx * ux + dy * uy) / len).clamp(0.0, 1.0);
            let w = wb + (wt - wb) * along;
            let u = ((dx * px + dy * py) / w).clamp(-1.0, 1.0);
            shade(shirt, u * px, u * py)
        });
        // rounded shoulders
        let rc = 0.045 * s;
        for sign in [-1.0, 1.0] {
            let at = (
                t.0 + sign * px * (wt - rc) - ux * rc * 0.6,
                t.1 + sign * py * (wt - rc) - uy * rc * 0.6,
            );
            c.ellipse_with(at, rc, rc, 0.0, |nx, ny| shade(shirt, nx, ny));
        }
    }

    fn draw_head(&self, c: &mut Canvas, facing_camera: bool) {
        let sk = &self.skeleton;
        let r = sk.ratios.head_radius * self.scale;
        let (h, up, fd) = (self.head, self.up2(), self.face2());
        let skin = self.looks.skin;
        let hair = self.looks.hair;
        let hair_at = (
            h.0 + 0.18 * up.0 - 0.2 * fd.0,
            h.1 + 0.18 * up.1 - 0.2 * fd.1,
        );
        let face_at = (
            h.0 + 0.12 * fd.0 - 0.08 * up.0,
            h.1 + 0.12 * fd.1 - 0.08 * up.1,
        );
        let hair_disk = |c: &mut Canvas, rr: f64| {
            c.ellipse_with(hair_at, rr, rr, 0.0, |nx, ny| mul(shade(hair, nx, ny), 1.0));
        };
        if facing_camera {
            hair_disk(c, 1.05 * r);
            c.ellipse_with(face_at, 0.93 * r, 0.97 * r, 0.0, |nx, ny| {
                shade(skin, nx, ny)
            });
            if r >= 3.0 {
                let er = (0.11 * r).max(0.45);
                for e in [R_EYE, L_EYE] {
                    if sk.visible[e] {
                        let p = self.joints[e];
                        c.ellipse_with(p, er, er, 0.0, |_, _| [30.0, 25.0, 25.0]);
                    }
                }
            }
        } else {
            c.ellipse_with(face_at, 0.93 * r, 0.97 * r, 0.0, |nx, ny| {
                shade(skin, nx, ny)
            });
            hair_disk(c, 1.0 * r);
        }
    }
}
