//! What eval reads off a generated person once its pose is known: the clothing colours (for
//! `color_acc`) and the plausibility of its limb lengths (for `limb_ratio_err`).

use crate::data::body::LimbRatios;
use crate::data::people::COLOR_NAMES;
use image::RgbImage;
use skeleguide_engine::pose::skeleton::joint::*;
use skeleguide_engine::pose::{Keypoint, Pose, LIMBS};

/// The named colour nearest (Euclidean RGB) to `c`, from the generator's palette.
pub fn nearest_color(c: [f64; 3]) -> &'static str {
    COLOR_NAMES[nearest_index(c)].0
}

fn nearest_index(c: [f64; 3]) -> usize {
    COLOR_NAMES
        .iter()
        .enumerate()
        .map(|(i, (_, rgb))| {
            let d: f64 = rgb.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
            (d, i)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(0, |(_, i)| i)
}

fn lerp(a: Keypoint, b: Keypoint, t: f64) -> (f64, f64) {
    (a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t)
}

/// The named colour most pixels within `r` of the sample points are nearest to (a majority
/// vote, robust to an arm or hair crossing the region); `None` when no pixel is covered.
fn region_color(img: &RgbImage, points: &[(f64, f64)], r: f64) -> Option<&'static str> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut votes = [0usize; COLOR_NAMES.len()];
    let ri = r.ceil() as i64;
    for &(px, py) in points {
        let (cx, cy) = (px.round() as i64, py.round() as i64);
        for y in (cy - ri).max(0)..=(cy + ri).min(h - 1) {
            for x in (cx - ri).max(0)..=(cx + ri).min(w - 1) {
                let (dx, dy) = (x as f64 - px, y as f64 - py);
                if dx * dx + dy * dy <= r * r {
                    let p = img.get_pixel(x as u32, y as u32).0;
                    votes[nearest_index(p.map(f64::from))] += 1;
                }
            }
        }
    }
    let (best, n) = votes
        .iter()
        .enumerate()
        .max_by_key(|(i, n)| (**n, usize::MAX - i))?;
    (*n > 0).then(|| COLOR_NAMES[best].0)
}

/// The colour of the torso (shirt): points along the neck → mid-hip line and the two
/// shoulder → opposite-hip diagonals, inside the trunk. Needs the neck and at least one hip.
pub fn torso_color(img: &RgbImage, p: &Pose) -> Option<&'static str> {
    let j = &p.joints;
    let neck = j[NECK]?;
    let hip = match (j[R_HIP], j[L_HIP]) {
        (Some(a), Some(b)) => Keypoint::new((a.x + b.x) / 2.0, (a.y + b.y) / 2.0),
        (Some(a), None) | (None, Some(a)) => a,
        _ => return None,
    };
    let len = (neck.x - hip.x).hypot(neck.y - hip.y);
    let mut pts: Vec<(f64, f64)> = [0.3, 0.45, 0.6, 0.75]
        .iter()
        .map(|&t| lerp(neck, hip, t))
        .collect();
    for (s, hp) in [(R_SHOULDER, L_HIP), (L_SHOULDER, R_HIP)] {
        if let (Some(a), Some(b)) = (j[s], j[hp]) {
            pts.push(lerp(a, b, 0.4));
            pts.push(lerp(a, b, 0.6));
        }
    }
    region_color(img, &pts, (0.08 * len).max(1.0))
}

/// The colour of the thighs (trousers): points along hip → knee of each leg present.
pub fn legs_color(img: &RgbImage, p: &Pose) -> Option<&'static str> {
    let j = &p.joints;
    let mut pts = Vec::new();
    let mut len: f64 = 0.0;
    for (hp, kn) in [(R_HIP, R_KNEE), (L_HIP, L_KNEE)] {
        if let (Some(a), Some(b)) = (j[hp], j[kn]) {
            len = len.max((a.x - b.x).hypot(a.y - b.y));
            pts.extend([0.3, 0.5, 0.7].iter().map(|&t| lerp(a, b, t)));
        }
    }
    if pts.is_empty() {
        return None;
    }
    region_color(img, &pts, (0.12 * len).max(1.0))
}

/// The shirt and trouser colour names read from `img` in the regions of pose `p`.
pub fn read_clothes(img: &RgbImage, p: &Pose) -> (Option<&'static str>, Option<&'static str>) {
    (torso_color(img, p), legs_color(img, p))
}

/// The limbs used for the limb-ratio metric: the `LIMBS` between body joints (arms, legs,
/// shoulders, neck → hips), not the face links.
fn body_limbs() -> impl Iterator<Item = (usize, (usize, usize))> {
    let body = |j: usize| j <= L_ANKLE && j != NOSE;
    LIMBS
        .iter()
        .copied()
        .enumerate()
        .filter(move |(_, (a, b))| body(*a) && body(*b))
}

/// Fewest body limbs a person needs for a limb-ratio error.
pub const MIN_LIMBS: usize = 4;

/// How far a person's 2-D limb lengths are from the body model's proportions: with `l_i` the
/// image lengths of the body limbs present and `r_i` the model's (standing, facing the camera),
/// the scale `s = Σ l·r / Σ r²` is fitted by least squares and the error is the mean of
/// `|l_i / (s·r_i) − 1|`. Projection foreshortens limbs, so even ground-truth poses score above
/// zero; eval reports the ground truth's value beside the generated one. `None` with fewer
/// than [`MIN_LIMBS`] limbs.
pub fn limb_ratio_error(p: &Pose, ratios: &LimbRatios) -> Option<f64> {
    let reference = ratios.limb_lengths();
    let mut pairs = Vec::new();
    for (i, (a, b)) in body_limbs() {
        if let (Some(x), Some(y)) = (p.joints[a], p.joints[b]) {
            pairs.push(((x.x - y.x).hypot(x.y - y.y), reference[i]));
        }
    }
    if pairs.len() < MIN_LIMBS {
        return None;
    }
    let num: f64 = pairs.iter().map(|(l, r)| l * r).sum();
    let den: f64 = pairs.iter().map(|(_, r)| r * r).sum();
    let s = num / den;
    if s <= 1e-9 {
        return Some(1.0);
    }
    Some(
        pairs
            .iter()
            .map(|(l, r)| (l / (s * r) - 1.0).abs())
            .sum::<f64>()
            / pairs.len() as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::body::LIMB_RATIOS;

    #[test]
    fn nearest_color_names() {
        assert_eq!(nearest_color([190.0, 40.0, 30.0]), "red");
        assert_eq!(nearest_color([30.0, 30.0, 30.0]), "black");
        assert_eq!(nearest_color([120.0, 125.0, 130.0]), "grey");
    }

    #[test]
    fn limb_ratio_error_is_zero_for_the_model_and_grows_with_distortion() {
        // a person built from the model's own neutral limb lengths: scale 200 px
        let reference = LIMB_RATIOS.limb_lengths();
        let mut j = [None; 18];
        // hang each limb straight down from its parent joint: only lengths matter
        let mut placed = [false; 18];
        for (i, (a, b)) in body_limbs() {
            if !placed[a] {
                j[a] = Some(Keypoint::new(0.0, 0.0));
                placed[a] = true;
            }
            if !placed[b] {
                let pa = j[a].unwrap();
                j[b] = Some(Keypoint::new(pa.x, pa.y + 200.0 * reference[i]));
                placed[b] = true;
            }
        }
        let p = Pose::from_joints(j);
        let e = limb_ratio_error(&p, &LIMB_RATIOS).unwrap();
        assert!(e < 1e-9, "{e}");
        // stretch the forearms: the error rises
        let mut q = p.clone();
        for w in [R_WRIST, L_WRIST] {
            if let Some(k) = q.joints[w].as_mut() {
                k.y += 60.0;
            }
        }
        let e2 = limb_ratio_error(&q, &LIMB_RATIOS).unwrap();
        assert!(e2 > 0.05, "{e2}");
        assert_eq!(limb_ratio_error(&Pose::default(), &LIMB_RATIOS), None);
    }
}
