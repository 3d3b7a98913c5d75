//! The layout rasteriser: draws a `PoseSet` in the ControlNet 1.1 OpenPose convention, on a
//! scene or on black, and the matching person mask. It is the only rasteriser in the project:
//! training layouts, inference, edits and the GUI overlay all come from here.
//!
//! The convention (pose_formats.md §3): for each of the 17 limbs, for each person, a filled
//! convex polygon of the ellipse with semi-major axis `int(length/2)` and semi-minor axis
//! `stickwidth`, centred at the truncated midpoint, rotated by the truncated angle, sampled every
//! degree and rounded like OpenCV's `ellipse2Poly`, in colour × 0.6; then, for each of the 18
//! joints, a filled circle of radius `stickwidth` in full colour. Stick width and radius are
//! 4 px at 512 px, scaled by max(W, H) / 512 (rounded half to even) and never below 1 px.
//! The output is byte-identical to OpenCV drawing the same rules (see tests/data).

use super::skeleton::{limb_color, COLORS, LIMBS, NUM_JOINTS};
use super::types::PoseSet;
use image::{GrayImage, Rgb, RgbImage};
use std::sync::OnceLock;

/// Stick width (the ellipse's semi-minor axis) and joint radius for a canvas.
pub fn stick_width(width: u32, height: u32) -> i64 {
    let side = width.max(height) as f64;
    // Half-to-even, like Python's round() and OpenCV's cvRound.
    ((4.0 * side / 512.0).round_ties_even() as i64).max(1)
}

/// Draws the layout of `set` over `scene` (or on black when there is none). When the scene's size
/// differs from the pose canvas, the poses are scaled to the scene first.
pub fn draw_layout(scene: Option<&RgbImage>, set: &PoseSet) -> RgbImage {
    match scene {
        Some(img) => {
            let mut out = img.clone();
            if (img.width(), img.height()) == (set.width, set.height) {
                draw_on(&mut out, set);
            } else {
                draw_on(&mut out, &set.resized(img.width(), img.height()));
            }
            out
        }
        None => {
            let mut out = RgbImage::new(set.width, set.height);
            draw_on(&mut out, set);
            out
        }
    }
}

/// Draws the skeletons of `set` onto `img` in place (coordinates in `img`'s pixels).
pub fn draw_on(img: &mut RgbImage, set: &PoseSet) {
    let sw = stick_width(img.width(), img.height());
    let mut poly = Vec::with_capacity(400);
    let mut spans = Spans::new();
    for (i, &(a, b)) in LIMBS.iter().enumerate() {
        let color = Rgb(limb_color(i));
        for person in &set.people {
            if let (Some(p), Some(q)) = (person.joints[a], person.joints[b]) {
                limb_polygon(p.x, p.y, q.x, q.y, sw, &mut poly);
                spans.fill_convex(&poly);
                spans.paint(|y, x0, x1| hline(img, y, x0, x1, color));
            }
        }
    }
    for (j, &rgb) in COLORS.iter().enumerate().take(NUM_JOINTS) {
        let color = Rgb(rgb);
        for person in &set.people {
            if let Some(p) = person.joints[j] {
                circle(p.x as i64, p.y as i64, sw, |y, x0, x1| {
                    hline(img, y, x0, x1, color)
                });
            }
        }
    }
}

/// The person mask: every limb and joint of the layout (as drawn), dilated by `margin` pixels
/// (Euclidean). 255 inside, 0 outside.
pub fn person_mask(set: &PoseSet, margin: u32) -> GrayImage {
    let (w, h) = (set.width, set.height);
    let mut mask = GrayImage::new(w, h);
    let sw = stick_width(w, h);
    let mut poly = Vec::with_capacity(400);
    let mut spans = Spans::new();
    let mut set_row = |y: i64, x0: i64, x1: i64| {
        let row = &mut mask.as_mut()[(y as usize * w as usize)..][..w as usize];
        row[x0 as usize..=x1 as usize].fill(255);
    };
    for person in &set.people {
        for &(a, b) in &LIMBS {
            if let (Some(p), Some(q)) = (person.joints[a], person.joints[b]) {
                limb_polygon(p.x, p.y, q.x, q.y, sw, &mut poly);
                spans.fill_convex(&poly);
                spans.paint(|y, x0, x1| {
                    clip_span(w, h, y, x0, x1).map_or((), |(y, a, b)| set_row(y, a, b))
                });
            }
        }
        for p in person.joints.iter().flatten() {
            circle(p.x as i64, p.y as i64, sw, |y, x0, x1| {
                if let Some((y, a, b)) = clip_span(w, h, y, x0, x1) {
                    set_row(y, a, b)
                }
            });
        }
    }
    if margin > 0 {
        dilate_mask(&mut mask, margin);
    }
    mask
}

fn clip_span(w: u32, h: u32, y: i64, x0: i64, x1: i64) -> Option<(i64, i64, i64)> {
    if y < 0 || y >= h as i64 || x1 < 0 || x0 >= w as i64 {
        return None;
    }
    Some((y, x0.max(0), x1.min(w as i64 - 1)))
}

fn hline(img: &mut RgbImage, y: i64, x0: i64, x1: i64, color: Rgb<u8>) {
    let (w, h) = img.dimensions();
    let Some((y, x0, x1)) = clip_span(w, h, y, x0, x1) else {
        return;
    };
    let row = &mut img.as_mut()[(y as usize * w as usize * 3)..][..w as usize * 3];
    for px in row[x0 as usize * 3..(x1 as usize + 1) * 3].chunks_exact_mut(3) {
        px.copy_from_slice(&color.0);
    }
}

/// sin of an integer number of degrees, as OpenCV's single-precision table holds it.
fn sin_deg(deg: i64) -> f64 {
    static TABLE: OnceLock<[f64; 360]> = OnceLock::new();
    let t = TABLE
        .get_or_init(|| std::array::from_fn(|d| ((d as f64).to_radians().sin() as f32) as f64));
    t[deg.rem_euclid(360) as usize]
}

fn cos_deg(deg: i64) -> f64 {
    sin_deg(90 - deg)
}

/// The limb ellipse polygon for joints (x1, y1) and (x2, y2), into `out`.
fn limb_polygon(x1: f64, y1: f64, x2: f64, y2: f64, stick: i64, out: &mut Vec<(i64, i64)>) {
    let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    let length = ((x1 - x2).powi(2) + (y1 - y2).powi(2)).sqrt();
    let angle = (y1 - y2).atan2(x1 - x2).to_degrees();
    // Python's int() truncates toward zero.
    ellipse_poly(
        mx as i64,
        my as i64,
        (length / 2.0) as i64,
        stick,
        angle as i64,
        out,
    );
}

/// An ellipse sampled every degree from 0 to 360 inclusive, rounded half-to-even, with
/// consecutive duplicates removed (the `ellipse2Poly` convention).
fn ellipse_poly(cx: i64, cy: i64, a: i64, b: i64, angle: i64, out: &mut Vec<(i64, i64)>) {
    out.clear();
    let angle = angle.rem_euclid(360);
    let (ca, sa) = (cos_deg(angle), sin_deg(angle));
    let (a, b) = (a as f64, b as f64);
    for i in 0..=360 {
        let x = a * cos_deg(i);
        let y = b * sin_deg(i);
        let px = (cx as f64 + x * ca - y * sa).round_ties_even() as i64;
        let py = (cy as f64 + x * sa + y * ca).round_ties_even() as i64;
        if out.last() != Some(&(px, py)) {
            out.push((px, py));
        }
    }
    if out.len() == 1 {
        out.push(out[0]);
    }
}

/// Calls `row(y, x0, x1)` for each row of a filled circle: the pixels with dx² + dy² ≤ r²
/// (the same set as OpenCV's filled `circle`).
fn circle(cx: i64, cy: i64, r: i64, mut row: impl FnMut(i64, i64, i64)) {
    let r2 = r * r;
    let mut hw = r;
    for dy in 0..=r {
        while hw * hw + dy * dy > r2 {
            hw -= 1;
        }
        row(cy - dy, cx - hw, cx + hw);
        if dy > 0 {
            row(cy + dy, cx - hw, cx + hw);
        }
    }
}

/// Scan-converts convex polygons into per-row spans.
struct Spans {
    ymin: i64,
    rows: Vec<(i64, i64)>,
}

impl Spans {
    fn new() -> Self {
        Spans {
            ymin: 0,
            rows: Vec::new(),
        }
    }

    fn touch(&mut self, x: i64, y: i64) {
        let i = (y - self.ymin) as usize;
        let r = &mut self.rows[i];
        r.0 = r.0.min(x);
        r.1 = r.1.max(x);
    }

    /// Fills the convex polygon: its outline as 8-connected lines plus every pixel centre inside.
    fn fill_convex(&mut self, poly: &[(i64, i64)]) {
        let ymin = poly.iter().map(|p| p.1).min().unwrap_or(0);
        let ymax = poly.iter().map(|p| p.1).max().unwrap_or(-1);
        self.ymin = ymin;
        self.rows.clear();
        let n = (ymax - ymin + 1).max(0) as usize;
        self.rows.resize(n, (i64::MAX, i64::MIN));
        let m = poly.len();
        for k in 0..m {
            let (x0, y0) = poly[k];
            let (x1, y1) = poly[(k + 1) % m];
            self.line(x0, y0, x1, y1);
            // interior: the edge's crossing of each row strictly between its ends
            if y0 != y1 {
                let (xa, ya, xb, yb) = if y0 < y1 {
                    (x0, y0, x1, y1)
                } else {
                    (x1, y1, x0, y0)
                };
                for y in ya..=yb {
                    let t = (y - ya) as f64 / (yb - ya) as f64;
                    let x = xa as f64 + t * (xb - xa) as f64;
                    let xr = x.round() as i64;
                    self.touch(xr, y);
                }
            }
        }
    }

    /// An 8-connected line between integer points, always walked from the left end (this fixes
    /// the tie-breaking, and matches OpenCV's 8-connected `line`).
    fn line(&mut self, x0: i64, y0: i64, x1: i64, y1: i64) {
        let (x0, y0, x1, y1) = if x1 < x0 {
            (x1, y1, x0, y0)
        } else {
            (x0, y0, x1, y1)
        };
        let (dx, dy) = ((x1 - x0).abs(), (y1 - y0).abs());
        let (sx, sy) = ((x1 - x0).signum(), (y1 - y0).signum());
        let (mut x, mut y) = (x0, y0);
        if dx >= dy {
            let mut err = dx / 2;
            for _ in 0..=dx {
                self.touch(x, y);
                x += sx;
                err -= dy;
                if err < 0 {
                    y += sy;
                    err += dx;
                }
            }
        } else {
            let mut err = dy / 2;
            for _ in 0..=dy {
                self.touch(x, y);
                y += sy;
                err -= dx;
                if err < 0 {
                    x += sx;
                    err += dy;
                }
            }
        }
    }

    fn paint(&self, mut f: impl FnMut(i64, i64, i64)) {
        for (i, &(x0, x1)) in self.rows.iter().enumerate() {
            if x0 <= x1 {
                f(self.ymin + i as i64, x0, x1);
            }
        }
    }
}

/// Dilates a binary mask by a Euclidean disk of radius `r`: a pixel is set when some set pixel
/// lies within distance `r` (pixel centres). Exact, in two row-major passes: the vertical
/// distance to the nearest set pixel of each column, then per row the union of the horizontal
/// spans that distance leaves (a difference array).
pub fn dilate_mask(mask: &mut GrayImage, r: u32) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    // A disk wider than the image's width plus height reaches every pixel already.
    let r = r.min((mask.width() as u64 + mask.height() as u64).min(u32::MAX as u64 / 2) as u32);
    let cap = r + 1;
    let mut g = vec![cap; w * h];
    let mut run = vec![cap; w];
    for (y, row) in mask.as_raw().chunks_exact(w).enumerate() {
        for x in 0..w {
            run[x] = if row[x] > 0 { 0 } else { (run[x] + 1).min(cap) };
            g[y * w + x] = run[x];
        }
    }
    run.fill(cap);
    for y in (0..h).rev() {
        for x in 0..w {
            let v = g[y * w + x];
            run[x] = if v == 0 { 0 } else { (run[x] + 1).min(cap) };
            g[y * w + x] = v.min(run[x]);
        }
    }
    // half-width of the disk at vertical offset d
    let hw: Vec<usize> = (0..=r)
        .map(|d| {
            let rem = (r as u64 * r as u64 - d as u64 * d as u64) as f64;
            let mut k = rem.sqrt() as usize;
            while ((k + 1) * (k + 1)) as f64 <= rem {
                k += 1;
            }
            k
        })
        .collect();
    let mut diff = vec![0i32; w + 1];
    for (y, out) in mask.as_mut().chunks_exact_mut(w).enumerate() {
        diff.fill(0);
        for x in 0..w {
            let d = g[y * w + x];
            if d <= r {
                let k = hw[d as usize];
                diff[x.saturating_sub(k)] += 1;
                diff[(x + k + 1).min(w)] -= 1;
            }
        }
        let mut acc = 0;
        for x in 0..w {
            acc += diff[x];
            out[x] = if acc > 0 { 255 } else { 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dilation_matches_brute_force() {
        let (w, h) = (37u32, 23u32);
        let mut seed = 12345u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        for r in [1u32, 2, 3, 5, 8] {
            let mut m = GrayImage::new(w, h);
            for _ in 0..6 {
                m.put_pixel(rnd() % w, rnd() % h, image::Luma([255]));
            }
            let src = m.clone();
            dilate_mask(&mut m, r);
            for y in 0..h as i64 {
                for x in 0..w as i64 {
                    let near = src.enumerate_pixels().any(|(sx, sy, p)| {
                        p.0[0] > 0
                            && (sx as i64 - x).pow(2) + (sy as i64 - y).pow(2) <= (r * r) as i64
                    });
                    assert_eq!(
                        m.get_pixel(x as u32, y as u32).0[0] > 0,
                        near,
                        "r={r} ({x},{y})"
                    );
                }
            }
        }
    }

    #[test]
    fn circles_are_the_opencv_pixel_set() {
        // OpenCV's filled circle of radius 4 (checked against cv2.circle): row half-widths.
        let mut rows = Vec::new();
        circle(0, 0, 4, |y, x0, x1| rows.push((y, x0, x1)));
        rows.sort();
        let hw: Vec<i64> = rows.iter().map(|r| r.2).collect();
        assert_eq!(hw, vec![0, 2, 3, 3, 4, 3, 3, 2, 0]);
    }
}
