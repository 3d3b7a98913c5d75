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
//!
//! Hands and face, drawn only when asked for (`LayoutParts`), follow the full annotator's
//! `draw_handpose` / `draw_facepose`: after every body, each person's left then right hand as 20
//! `cv2.line`s of thickness 2 in the hues of `hand_edge_color`, then its 21 points as filled
//! circles of radius 4 in blue; then every face point as a filled white circle of radius 3.
//! A hand edge or point is skipped when a truncated coordinate is below 1 (the annotator's
//! `x > eps` test on integer pixels). Those sizes hold at 512 px and scale like the stick width.
//! Thick lines match OpenCV up to 4.12 (the annotator's); 4.13 and later first clip a thick line
//! to the image grown by its thickness, which moves border pixels of lines running far past the
//! right or bottom edge.

use super::skeleton::{limb_color, COLORS, LIMBS, NUM_JOINTS};
use super::types::{PointList, PoseSet};
use image::{GrayImage, Rgb, RgbImage};
use std::sync::OnceLock;

/// Which parts a layout draws besides the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayoutParts {
    /// The 21-point hands: coloured bones and blue points.
    pub hands: bool,
    /// The 70-point face: white dots.
    pub face: bool,
}

impl LayoutParts {
    /// The body only: what the model is trained on and given.
    pub const BODY: LayoutParts = LayoutParts {
        hands: false,
        face: false,
    };
    /// Body, hands and face: ControlNet 1.1's full OpenPose annotator.
    pub const FULL: LayoutParts = LayoutParts {
        hands: true,
        face: true,
    };
}

/// A drawing size that is `base` px at 512 px, scaled by max(W, H) / 512.
fn scaled_size(base: f64, width: u32, height: u32) -> i64 {
    let side = width.max(height) as f64;
    // Half-to-even, like Python's round() and OpenCV's cvRound.
    ((base * side / 512.0).round_ties_even() as i64).max(1)
}

/// Stick width (the ellipse's semi-minor axis) and joint radius for a canvas.
pub fn stick_width(width: u32, height: u32) -> i64 {
    scaled_size(4.0, width, height)
}

/// Hand bone thickness, hand point radius and face point radius for a canvas.
fn hand_face_sizes(width: u32, height: u32) -> (i64, i64, i64) {
    (
        scaled_size(2.0, width, height),
        scaled_size(4.0, width, height),
        scaled_size(3.0, width, height),
    )
}

/// Draws the layout of `set` over `scene` (or on black when there is none). When the scene's size
/// differs from the pose canvas, the poses are scaled to the scene first. Body only.
pub fn draw_layout(scene: Option<&RgbImage>, set: &PoseSet) -> RgbImage {
    draw_layout_parts(scene, set, LayoutParts::BODY)
}

/// `draw_layout` with hands and face as `parts` asks (each where the pose has it).
pub fn draw_layout_parts(scene: Option<&RgbImage>, set: &PoseSet, parts: LayoutParts) -> RgbImage {
    match scene {
        Some(img) => {
            let mut out = img.clone();
            if (img.width(), img.height()) == (set.width, set.height) {
                draw_on_parts(&mut out, set, parts);
            } else {
                draw_on_parts(&mut out, &set.resized(img.width(), img.height()), parts);
            }
            out
        }
        None => {
            let mut out = RgbImage::new(set.width, set.height);
            draw_on_parts(&mut out, set, parts);
            out
        }
    }
}

/// Draws the skeletons of `set` onto `img` in place (coordinates in `img`'s pixels). Body only.
pub fn draw_on(img: &mut RgbImage, set: &PoseSet) {
    draw_body(img, set);
}

/// `draw_on` with hands and face as `parts` asks: all bodies, then all hands, then all faces
/// (the annotator's order).
fn draw_on_parts(img: &mut RgbImage, set: &PoseSet, parts: LayoutParts) {
    draw_body(img, set);
    let (bone, hand_r, face_r) = hand_face_sizes(img.width(), img.height());
    if parts.hands {
        for person in &set.people {
            for hand in [&person.hand_left, &person.hand_right]
                .into_iter()
                .flatten()
            {
                draw_hand(img, hand, bone, hand_r);
            }
        }
    }
    if parts.face {
        let white = Rgb([255, 255, 255]);
        for face in set.people.iter().filter_map(|p| p.face.as_ref()) {
            for p in face.iter().filter_map(|k| annotator_pixel(k.as_ref())) {
                circle(p.0, p.1, face_r, |y, x0, x1| hline(img, y, x0, x1, white));
            }
        }
    }
}

fn draw_body(img: &mut RgbImage, set: &PoseSet) {
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

/// The 20 bones of the 21-point hand (wrist 0, then four points per finger, thumb first), in
/// the annotator's order; bone `i` is drawn in `hand_edge_color(i)`.
pub const HAND_EDGES: [(usize, usize); 20] = [
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 4),
    (0, 5),
    (5, 6),
    (6, 7),
    (7, 8),
    (0, 9),
    (9, 10),
    (10, 11),
    (11, 12),
    (0, 13),
    (13, 14),
    (14, 15),
    (15, 16),
    (0, 17),
    (17, 18),
    (18, 19),
    (19, 20),
];

/// The colour of hand points (RGB, like the whole layout).
const HAND_POINT_COLOR: [u8; 3] = [0, 0, 255];

/// The colour of hand bone `i`: hue i / 20 at full saturation and value through matplotlib's
/// `hsv_to_rgb`, times 255, rounded half to even as OpenCV converts a colour. The float steps
/// are matplotlib's so that values a hair off .5 round the same way.
pub fn hand_edge_color(i: usize) -> [u8; 3] {
    let h = i as f64 / HAND_EDGES.len() as f64;
    let sector = (h * 6.0) as i64;
    let f = h * 6.0 - sector as f64;
    let (p, q, t) = (0.0, 1.0 - f, 1.0 - (1.0 - f));
    let (r, g, b) = match sector % 6 {
        0 => (1.0, t, p),
        1 => (q, 1.0, p),
        2 => (p, 1.0, t),
        3 => (p, q, 1.0),
        4 => (t, p, 1.0),
        _ => (1.0, p, q),
    };
    let byte = |v: f64| (v * 255.0).round_ties_even().clamp(0.0, 255.0) as u8;
    [byte(r), byte(g), byte(b)]
}

/// Beyond this many pixels a coordinate is held (OpenCV takes 32-bit points; this keeps the
/// 16-bit fixed point far from overflow and the row loops short).
const COORD_LIMIT: i64 = 1 << 24;

/// A hand or face point where the annotator puts it: truncated to whole pixels, and absent
/// unless both are at least 1 (its `x > eps` test on the integers).
fn annotator_pixel(k: Option<&super::types::Keypoint>) -> Option<(i64, i64)> {
    let k = k?;
    // `as` truncates toward zero like Python's int() (NaN gives 0, so it is skipped)
    let (x, y) = (k.x as i64, k.y as i64);
    (x >= 1 && y >= 1).then_some((x.min(COORD_LIMIT), y.min(COORD_LIMIT)))
}

fn draw_hand(img: &mut RgbImage, hand: &PointList, bone: i64, radius: i64) {
    let at = |i: usize| annotator_pixel(hand.get(i).and_then(Option::as_ref));
    for (i, &(a, b)) in HAND_EDGES.iter().enumerate() {
        if let (Some(p), Some(q)) = (at(a), at(b)) {
            thick_line(img, p, q, bone, Rgb(hand_edge_color(i)));
        }
    }
    let blue = Rgb(HAND_POINT_COLOR);
    for p in hand.iter().filter_map(|k| annotator_pixel(k.as_ref())) {
        circle(p.0, p.1, radius, |y, x0, x1| hline(img, y, x0, x1, blue));
    }
}

/// OpenCV's sub-pixel fixed point: 16 fractional bits.
const XY_SHIFT: u32 = 16;
const XY_ONE: i64 = 1 << XY_SHIFT;
const XY_HALF: i64 = XY_ONE >> 1;

fn put(img: &mut RgbImage, x: i64, y: i64, color: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < img.width() as i64 && y < img.height() as i64 {
        img.put_pixel(x as u32, y as u32, color);
    }
}

/// `cv2.line` between integer points with LINE_8: an 8-connected line for thickness 1;
/// thicker, a filled quadrilateral offset by half the thickness in fixed point, with a filled
/// circle of that radius at each end.
fn thick_line(img: &mut RgbImage, p0: (i64, i64), p1: (i64, i64), thickness: i64, color: Rgb<u8>) {
    if thickness <= 1 {
        line8(img, p0, p1, color);
        return;
    }
    let a = (p0.0 << XY_SHIFT, p0.1 << XY_SHIFT);
    let b = (p1.0 << XY_SHIFT, p1.1 << XY_SHIFT);
    let dx = (a.0 - b.0) as f64 / XY_ONE as f64;
    let dy = (b.1 - a.1) as f64 / XY_ONE as f64;
    let len2 = dx * dx + dy * dy;
    let half = thickness << (XY_SHIFT - 1);
    if len2.abs() > f64::EPSILON {
        // an odd thickness reaches half a pixel further on each side
        let reach = half as f64 + (thickness & 1) as f64 * XY_ONE as f64 * 0.5;
        let r = reach / len2.sqrt();
        let (ox, oy) = (
            (dy * r).round_ties_even() as i64,
            (dx * r).round_ties_even() as i64,
        );
        let quad = [
            (a.0 + ox, a.1 + oy),
            (a.0 - ox, a.1 - oy),
            (b.0 - ox, b.1 - oy),
            (b.0 + ox, b.1 + oy),
        ];
        fill_convex_fixed(img, &quad, color);
    }
    let radius = (half + XY_HALF) >> XY_SHIFT;
    for c in [a, b] {
        let (cx, cy) = ((c.0 + XY_HALF) >> XY_SHIFT, (c.1 + XY_HALF) >> XY_SHIFT);
        circle(cx, cy, radius, |y, x0, x1| hline(img, y, x0, x1, color));
    }
}

/// Cohen-Sutherland clipping of a segment to [0, w) x [0, h) as OpenCV's `clipLine` does it
/// (the crossing computed in doubles and truncated, the second end from the moved first one).
/// False when the segment misses the rectangle.
fn clip_line(w: i64, h: i64, p1: &mut (i64, i64), p2: &mut (i64, i64)) -> bool {
    if w <= 0 || h <= 0 {
        return false;
    }
    let (right, bottom) = (w - 1, h - 1);
    let code = |p: (i64, i64)| {
        (p.0 < 0) as u8
            | ((p.0 > right) as u8) << 1
            | ((p.1 < 0) as u8) << 2
            | ((p.1 > bottom) as u8) << 3
    };
    let across = |n: i64, m: i64, d: i64| (n as f64 * m as f64 / d as f64) as i64;
    let (mut c1, mut c2) = (code(*p1), code(*p2));
    if c1 & c2 == 0 && c1 | c2 != 0 {
        if c1 & 12 != 0 {
            let a = if c1 < 8 { 0 } else { bottom };
            p1.0 += across(a - p1.1, p2.0 - p1.0, p2.1 - p1.1);
            p1.1 = a;
            c1 = code(*p1) & 3;
        }
        if c2 & 12 != 0 {
            let a = if c2 < 8 { 0 } else { bottom };
            p2.0 += across(a - p2.1, p2.0 - p1.0, p2.1 - p1.1);
            p2.1 = a;
            c2 = code(*p2) & 3;
        }
        if c1 & c2 == 0 && c1 | c2 != 0 {
            if c1 != 0 {
                let a = if c1 == 1 { 0 } else { right };
                p1.1 += across(a - p1.0, p2.1 - p1.1, p2.0 - p1.0);
                p1.0 = a;
                c1 = 0;
            }
            if c2 != 0 {
                let a = if c2 == 1 { 0 } else { right };
                p2.1 += across(a - p2.0, p2.1 - p1.1, p2.0 - p1.0);
                p2.0 = a;
                c2 = 0;
            }
        }
    }
    c1 | c2 == 0
}

/// OpenCV's 8-connected integer line (its `LineIterator`, walked from the left end), clipped.
fn line8(img: &mut RgbImage, mut a: (i64, i64), mut b: (i64, i64), color: Rgb<u8>) {
    if !clip_line(img.width() as i64, img.height() as i64, &mut a, &mut b) {
        return;
    }
    if b.0 < a.0 {
        std::mem::swap(&mut a, &mut b);
    }
    let (mut major, mut minor) = (b.0 - a.0, (b.1 - a.1).abs());
    let sy = if b.1 < a.1 { -1 } else { 1 };
    let x_major = major >= minor;
    if !x_major {
        std::mem::swap(&mut major, &mut minor);
    }
    let (mut x, mut y) = a;
    let mut err = major - 2 * minor;
    for _ in 0..=major {
        put(img, x, y, color);
        let step = err < 0;
        err += -2 * minor + if step { 2 * major } else { 0 };
        if x_major {
            x += 1;
            y += if step { sy } else { 0 };
        } else {
            y += sy;
            x += step as i64;
        }
    }
}

/// OpenCV's fixed-point line (the outline of a sub-pixel polygon): clipped to the image in
/// fixed point, walked along the major axis from the lower end in whole pixels while the minor
/// coordinate advances by the slope, plus the far end rounded.
fn line_fixed(img: &mut RgbImage, mut a: (i64, i64), mut b: (i64, i64), color: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    if !clip_line(w << XY_SHIFT, h << XY_SHIFT, &mut a, &mut b) {
        return;
    }
    let (ax, ay) = ((b.0 - a.0).abs(), (b.1 - a.1).abs());
    if ax > ay {
        if b.0 < a.0 {
            std::mem::swap(&mut a, &mut b);
        }
        // C division: truncates toward zero, as Rust's does
        let y_step = (b.1 - a.1) * XY_ONE / (ax | 1);
        let count = (b.0 - a.0) >> XY_SHIFT;
        put(
            img,
            (b.0 + XY_HALF) >> XY_SHIFT,
            (b.1 + XY_HALF) >> XY_SHIFT,
            color,
        );
        let (mut x, mut yf) = ((a.0 + XY_HALF) >> XY_SHIFT, a.1 + XY_HALF);
        for _ in 0..=count {
            put(img, x, yf >> XY_SHIFT, color);
            x += 1;
            yf += y_step;
        }
    } else {
        if b.1 < a.1 {
            std::mem::swap(&mut a, &mut b);
        }
        let x_step = (b.0 - a.0) * XY_ONE / (ay | 1);
        let count = (b.1 - a.1) >> XY_SHIFT;
        put(
            img,
            (b.0 + XY_HALF) >> XY_SHIFT,
            (b.1 + XY_HALF) >> XY_SHIFT,
            color,
        );
        let (mut xf, mut y) = (a.0 + XY_HALF, (a.1 + XY_HALF) >> XY_SHIFT);
        for _ in 0..=count {
            put(img, xf >> XY_SHIFT, y, color);
            xf += x_step;
            y += 1;
        }
    }
}

/// One side of the scanline fill: the vertex it left, its direction round the polygon, its x
/// (fixed point) and per-row step, and the row where it ends.
struct FillEdge {
    idx: usize,
    dir: usize,
    x: i64,
    dx: i64,
    end_row: i64,
}

/// OpenCV's `FillConvexPoly` for vertices in 16-bit fixed point with LINE_8: the outline as
/// fixed-point lines, then from the top vertex two edges walked down the two sides, each row
/// filled between their x rounded to the nearest pixel.
fn fill_convex_fixed(img: &mut RgbImage, v: &[(i64, i64)], color: Rgb<u8>) {
    let n = v.len();
    if n == 0 {
        return;
    }
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (v[0].0, v[0].0, v[0].1, v[0].1);
    let mut top = 0;
    let mut prev = v[n - 1];
    for (i, &p) in v.iter().enumerate() {
        if p.1 < ymin {
            ymin = p.1;
            top = i;
        }
        ymax = ymax.max(p.1);
        xmax = xmax.max(p.0);
        xmin = xmin.min(p.0);
        line_fixed(img, prev, p, color);
        prev = p;
    }
    let px = |f: i64| (f + XY_HALF) >> XY_SHIFT;
    let (xmin, xmax, ymin, ymax) = (px(xmin), px(xmax), px(ymin), px(ymax));
    if n < 3 || xmax < 0 || ymax < 0 || xmin >= w || ymin >= h {
        return;
    }
    let ymax = ymax.min(h - 1);
    let side = |dir| FillEdge {
        idx: top,
        dir,
        x: -XY_ONE,
        dx: 0,
        end_row: ymin,
    };
    let mut edges = [side(1), side(n - 1)];
    // edges still to take, shared by both sides; below zero the polygon is done
    let mut left = n as i64;
    let mut y = ymin;
    loop {
        for e in edges.iter_mut() {
            if y < e.end_row {
                continue;
            }
            let (mut from, mut to) = (e.idx, (e.idx + e.dir) % n);
            loop {
                let more = left > 0;
                left -= 1;
                if !more {
                    break;
                }
                let ty = px(v[to].1);
                if ty > y {
                    let (xs, xe) = (v[from].0, v[to].0);
                    e.end_row = ty;
                    // rounded division, truncating toward zero as C does
                    e.dx = ((xe - xs) * 2 + (ty - y)) / (2 * (ty - y));
                    e.x = xs;
                    e.idx = to;
                    break;
                }
                from = to;
                to = (to + e.dir) % n;
            }
        }
        if left < 0 {
            break;
        }
        if y >= 0 {
            let (l, r) = if edges[0].x > edges[1].x {
                (1, 0)
            } else {
                (0, 1)
            };
            let (x0, x1) = (px(edges[l].x), px(edges[r].x));
            if x0 <= x1 {
                hline(img, y, x0, x1, color);
            }
        } else {
            // rows above the image draw nothing: skip to the first row that changes an edge
            let skip = (edges[0].end_row.min(edges[1].end_row).min(0) - y - 1).max(0);
            for e in edges.iter_mut() {
                e.x += e.dx * skip;
            }
            y += skip;
        }
        for e in edges.iter_mut() {
            e.x += e.dx;
        }
        y += 1;
        if y > ymax {
            break;
        }
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
    fn hand_edge_colours_are_what_opencv_draws() {
        // read back from cv2.line with matplotlib's hsv_to_rgb([i / 20, 1, 1]) * 255
        let want: [[u8; 3]; 20] = [
            [255, 0, 0],
            [255, 77, 0],
            [255, 153, 0],
            [255, 229, 0],
            [204, 255, 0],
            [128, 255, 0],
            [51, 255, 0],
            [0, 255, 25],
            [0, 255, 102],
            [0, 255, 179],
            [0, 255, 255],
            [0, 178, 255],
            [0, 102, 255],
            [0, 25, 255],
            [51, 0, 255],
            [128, 0, 255],
            [204, 0, 255],
            [255, 0, 230],
            [255, 0, 153],
            [255, 0, 77],
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(hand_edge_color(i), *w, "edge {i}");
        }
    }

    #[test]
    fn fixed_point_fill_agrees_with_the_integer_fill() {
        // whole-pixel limb ellipses through both fills give the same pixels
        let mut poly = Vec::new();
        let mut spans = Spans::new();
        for (k, &(cx, cy, a, b, ang)) in [
            (40, 30, 25, 4, 17),
            (33, 41, 3, 4, 95),
            (10, 12, 30, 6, 200),
            (60, 5, 12, 2, 301),
            (2, 50, 0, 3, 45),
        ]
        .iter()
        .enumerate()
        {
            ellipse_poly(cx, cy, a, b, ang, &mut poly);
            let mut ours = RgbImage::new(64, 56);
            spans.fill_convex(&poly);
            spans.paint(|y, x0, x1| hline(&mut ours, y, x0, x1, Rgb([255, 255, 255])));
            let mut fixed = RgbImage::new(64, 56);
            let v: Vec<(i64, i64)> = poly
                .iter()
                .map(|&(x, y)| (x << XY_SHIFT, y << XY_SHIFT))
                .collect();
            fill_convex_fixed(&mut fixed, &v, Rgb([255, 255, 255]));
            assert_eq!(ours, fixed, "ellipse {k}");
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
