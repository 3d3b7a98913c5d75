//! A small software rasteriser for the synthetic scenes: filled polygons, shaded capsules and
//! ellipses, and alpha blending, on a supersampled canvas that also records which pixels show a
//! person (for the person mask). Pixels are sampled at their centres; the canvas is box-filtered
//! down to the output size at the end. (The OpenPose layout is not drawn here: it always comes
//! from the engine's `pose::draw_layout`.)

use image::{GrayImage, RgbImage};

/// The direction the light comes from (towards the viewer, from the upper left), normalised.
const LIGHT: [f64; 3] = [-0.41, -0.57, 0.71];

/// A colour as floats in 0..=255.
pub type Rgbf = [f64; 3];

/// Rounds (half up) and clamps to bytes; NaN becomes 0.
#[inline]
pub fn to_u8(c: Rgbf) -> [u8; 3] {
    // `as u8` truncates and saturates, and `round()` is a slow library call here
    let q = |v: f64| (v.clamp(0.0, 255.0) + 0.5) as u8;
    [q(c[0]), q(c[1]), q(c[2])]
}

pub fn mul(c: Rgbf, k: f64) -> Rgbf {
    [c[0] * k, c[1] * k, c[2] * k]
}

pub fn lerp(a: Rgbf, b: Rgbf, t: f64) -> Rgbf {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Lambert shading of `base` for a surface normal whose image-plane part is (nx, ny)
/// (|n| <= 1; the rest points at the viewer).
pub fn shade(base: Rgbf, nx: f64, ny: f64) -> Rgbf {
    let n2 = (nx * nx + ny * ny).min(1.0);
    let nz = (1.0 - n2).sqrt();
    let lambert = (nx * LIGHT[0] + ny * LIGHT[1] + nz * LIGHT[2]).max(0.0);
    mul(base, 0.5 + 0.6 * lambert)
}

/// The supersampled drawing surface.
#[derive(Clone)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    px: Vec<[u8; 3]>,
    /// Per pixel: the tag of the last opaque paint (0 = scenery, 1 = a person).
    tags: Vec<u8>,
    /// The tag that opaque paint writes.
    pub tag: u8,
    /// Canvas pixels per output pixel: every primitive takes output-pixel coordinates.
    pub scale: f64,
}

impl Canvas {
    /// A canvas of `width` x `height` canvas pixels; primitives take coordinates in output
    /// pixels, `scale` canvas pixels each.
    pub fn new(width: usize, height: usize, fill: [u8; 3], scale: f64) -> Self {
        Canvas {
            width,
            height,
            px: vec![fill; width * height],
            tags: vec![0; width * height],
            tag: 0,
            scale,
        }
    }

    fn sp(&self, p: (f64, f64)) -> (f64, f64) {
        (p.0 * self.scale, p.1 * self.scale)
    }

    fn spoly(&self, pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
        pts.iter().map(|&p| self.sp(p)).collect()
    }

    #[inline]
    fn put(&mut self, i: usize, c: [u8; 3]) {
        self.px[i] = c;
        self.tags[i] = self.tag;
    }

    /// Calls `f(x, y)` for every pixel whose centre lies inside the polygon (even-odd rule).
    fn scan_poly(&self, pts: &[(f64, f64)], mut f: impl FnMut(usize, usize)) {
        if pts.len() < 3 || pts.iter().any(|p| !p.0.is_finite() || !p.1.is_finite()) {
            return;
        }
        let ymin = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let ymax = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let y0 = (ymin - 0.5).ceil().max(0.0) as usize;
        let y1 = ((ymax - 0.5).floor()).min(self.height as f64 - 1.0);
        if y1 < 0.0 {
            return;
        }
        let y1 = y1 as usize;
        let mut xs: Vec<f64> = Vec::with_capacity(8);
        for y in y0..=y1 {
            let yc = y as f64 + 0.5;
            xs.clear();
            for k in 0..pts.len() {
                let (ax, ay) = pts[k];
                let (bx, by) = pts[(k + 1) % pts.len()];
                if (ay <= yc && yc < by) || (by <= yc && yc < ay) {
                    xs.push(ax + (yc - ay) * (bx - ax) / (by - ay));
                }
            }
            xs.sort_by(|a, b| a.total_cmp(b));
            for pair in xs.chunks_exact(2) {
                let xa = (pair[0] - 0.5).ceil().max(0.0);
                let xb = (pair[1] - 0.5).ceil().min(self.width as f64);
                if xb > xa {
                    for x in xa as usize..xb as usize {
                        f(x, y);
                    }
                }
            }
        }
    }

    /// Fills a polygon with a per-pixel colour `color(x, y)` (canvas pixel centres).
    pub fn fill_poly_with(&mut self, pts: &[(f64, f64)], mut color: impl FnMut(f64, f64) -> Rgbf) {
        let mut hits = Vec::new();
        let pts = self.spoly(pts);
        self.scan_poly(&pts, |x, y| hits.push((x, y)));
        let k = 1.0 / self.scale;
        for (x, y) in hits {
            let c = to_u8(color((x as f64 + 0.5) * k, (y as f64 + 0.5) * k));
            self.put(y * self.width + x, c);
        }
    }

    pub fn fill_poly(&mut self, pts: &[(f64, f64)], color: Rgbf) {
        self.fill_poly_with(pts, |_, _| color);
    }

    /// Blends `color` with opacity `alpha` over a polygon; the person tags are kept.
    pub fn blend_poly(&mut self, pts: &[(f64, f64)], color: Rgbf, alpha: f64) {
        let mut hits = Vec::new();
        let pts = self.spoly(pts);
        self.scan_poly(&pts, |x, y| hits.push(y * self.width + x));
        for i in hits {
            let p = self.px[i];
            let old = [p[0] as f64, p[1] as f64, p[2] as f64];
            self.px[i] = to_u8(lerp(old, color, alpha));
        }
    }

    /// Fills a whole axis-aligned band of rows with `color(x, y)`.
    pub fn fill_rows_with(&mut self, y0: f64, y1: f64, mut color: impl FnMut(f64, f64) -> Rgbf) {
        let (y0, y1) = (y0 * self.scale, y1 * self.scale);
        let k = 1.0 / self.scale;
        let ya = (y0 - 0.5).ceil().max(0.0) as usize;
        let yb = ((y1 - 0.5).ceil().max(0.0) as usize).min(self.height);
        for y in ya..yb {
            for x in 0..self.width {
                let c = to_u8(color((x as f64 + 0.5) * k, (y as f64 + 0.5) * k));
                self.put(y * self.width + x, c);
            }
        }
    }

    /// A tapered capsule from `a` (radius `ra`) to `b` (radius `rb`), shaded as a round volume.
    pub fn capsule(&mut self, a: (f64, f64), b: (f64, f64), ra: f64, rb: f64, base: Rgbf) {
        self.capsule_with(a, b, ra, rb, |nx, ny, _| shade(base, nx, ny));
    }

    /// A tapered capsule whose colour is `color(nx, ny, t)`: the image-plane normal and the
    /// position along the axis (0 at `a`, 1 at `b`).
    pub fn capsule_with(
        &mut self,
        a: (f64, f64),
        b: (f64, f64),
        ra: f64,
        rb: f64,
        mut color: impl FnMut(f64, f64, f64) -> Rgbf,
    ) {
        let (a, b) = (self.sp(a), self.sp(b));
        let (ra, rb) = ((ra * self.scale).max(0.3), (rb * self.scale).max(0.3));
        let vals = [a.0, a.1, b.0, b.1, ra, rb];
        if vals.iter().any(|v| !v.is_finite()) {
            return;
        }
        let r = ra.max(rb);
        let x0 = (a.0.min(b.0) - r - 0.5).floor().max(0.0) as usize;
        let y0 = (a.1.min(b.1) - r - 0.5).floor().max(0.0) as usize;
        let x1 = ((a.0.max(b.0) + r + 0.5).ceil().max(0.0) as usize).min(self.width);
        let y1 = ((a.1.max(b.1) + r + 0.5).ceil().max(0.0) as usize).min(self.height);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        for y in y0..y1 {
            let py = y as f64 + 0.5;
            for x in x0..x1 {
                let px = x as f64 + 0.5;
                let t = if len2 > 0.0 {
                    (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
                let rr = ra + (rb - ra) * t;
                let (ex, ey) = (px - cx, py - cy);
                let d2 = ex * ex + ey * ey;
                if d2 <= rr * rr {
                    let c = to_u8(color(ex / rr, ey / rr, t));
                    self.put(y * self.width + x, c);
                }
            }
        }
    }

    /// A filled ellipse with radii (rx, ry) rotated by `angle`, coloured by `color(nx, ny)` with
    /// (nx, ny) the position in the unit disk.
    pub fn ellipse_with(
        &mut self,
        c: (f64, f64),
        rx: f64,
        ry: f64,
        angle: f64,
        mut color: impl FnMut(f64, f64) -> Rgbf,
    ) {
        let c = self.sp(c);
        let (rx, ry) = ((rx * self.scale).max(0.3), (ry * self.scale).max(0.3));
        if ![c.0, c.1, rx, ry, angle].iter().all(|v| v.is_finite()) {
            return;
        }
        let r = rx.max(ry);
        let x0 = (c.0 - r - 0.5).floor().max(0.0) as usize;
        let y0 = (c.1 - r - 0.5).floor().max(0.0) as usize;
        let x1 = ((c.0 + r + 0.5).ceil().max(0.0) as usize).min(self.width);
        let y1 = ((c.1 + r + 0.5).ceil().max(0.0) as usize).min(self.height);
        let (s, co) = angle.sin_cos();
        for y in y0..y1 {
            let py = y as f64 + 0.5 - c.1;
            for x in x0..x1 {
                let px = x as f64 + 0.5 - c.0;
                let u = (px * co + py * s) / rx;
                let v = (-px * s + py * co) / ry;
                if u * u + v * v <= 1.0 {
                    // back to image axes for the normal
                    let (nx, ny) = (u * co - v * s, u * s + v * co);
                    let col = to_u8(color(nx, ny));
                    self.put(y * self.width + x, col);
                }
            }
        }
    }

    /// Blends a filled ellipse (axis-aligned) of `color` at opacity `alpha`, fading to the edge.
    pub fn blend_ellipse(&mut self, c: (f64, f64), rx: f64, ry: f64, color: Rgbf, alpha: f64) {
        let c = self.sp(c);
        let (rx, ry) = ((rx * self.scale).max(0.3), (ry * self.scale).max(0.3));
        if ![c.0, c.1, rx, ry].iter().all(|v| v.is_finite()) {
            return;
        }
        let x0 = (c.0 - rx - 0.5).floor().max(0.0) as usize;
        let y0 = (c.1 - ry - 0.5).floor().max(0.0) as usize;
        let x1 = ((c.0 + rx + 0.5).ceil().max(0.0) as usize).min(self.width);
        let y1 = ((c.1 + ry + 0.5).ceil().max(0.0) as usize).min(self.height);
        for y in y0..y1 {
            let v = (y as f64 + 0.5 - c.1) / ry;
            for x in x0..x1 {
                let u = (x as f64 + 0.5 - c.0) / rx;
                let d = u * u + v * v;
                if d <= 1.0 {
                    let i = y * self.width + x;
                    let p = self.px[i];
                    let old = [p[0] as f64, p[1] as f64, p[2] as f64];
                    self.px[i] = to_u8(lerp(old, color, alpha * (1.0 - d)));
                }
            }
        }
    }

    /// Box-filters the canvas down by `factor` into an RGB image.
    pub fn downsample(&self, factor: usize) -> RgbImage {
        let (w, h) = (self.width / factor, self.height / factor);
        let mut out = RgbImage::new(w as u32, h as u32);
        let n = (factor * factor) as u32;
        let buf: &mut [u8] = &mut out;
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0u32; 3];
                for sy in 0..factor {
                    let row = (y * factor + sy) * self.width + x * factor;
                    for p in &self.px[row..row + factor] {
                        acc[0] += p[0] as u32;
                        acc[1] += p[1] as u32;
                        acc[2] += p[2] as u32;
                    }
                }
                let o = (y * w + x) * 3;
                for k in 0..3 {
                    buf[o + k] = ((acc[k] + n / 2) / n) as u8;
                }
            }
        }
        out
    }

    /// The person mask at the output size: 255 where any of the pixel's samples shows a person
    /// (so the mask covers every pixel the people change), 0 elsewhere.
    pub fn mask(&self, factor: usize) -> GrayImage {
        let (w, h) = (self.width / factor, self.height / factor);
        let mut out = GrayImage::new(w as u32, h as u32);
        let buf: &mut [u8] = &mut out;
        for y in 0..h {
            for x in 0..w {
                let mut count = 0;
                for sy in 0..factor {
                    let row = (y * factor + sy) * self.width + x * factor;
                    count += self.tags[row..row + factor]
                        .iter()
                        .filter(|&&t| t == 1)
                        .count();
                }
                buf[y * w + x] = if count > 0 { 255 } else { 0 };
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_fill_covers_pixel_centres() {
        let mut c = Canvas::new(10, 10, [0, 0, 0], 1.0);
        c.fill_poly(
            &[(2.0, 2.0), (6.0, 2.0), (6.0, 5.0), (2.0, 5.0)],
            [255.0; 3],
        );
        let img = c.downsample(1);
        let count = img.pixels().filter(|p| p.0[0] == 255).count();
        assert_eq!(count, 12);
        // out-of-canvas and degenerate input is harmless
        c.fill_poly(&[(-50.0, -50.0), (500.0, -40.0), (20.0, 300.0)], [1.0; 3]);
        c.fill_poly(&[(f64::NAN, 0.0), (1.0, 1.0), (2.0, 0.0)], [1.0; 3]);
        c.capsule((-100.0, -100.0), (-90.0, -90.0), 3.0, 3.0, [9.0; 3]);
    }

    #[test]
    fn mask_follows_person_tags() {
        let mut c = Canvas::new(8, 8, [0, 0, 0], 1.0);
        c.tag = 1;
        c.fill_poly(
            &[(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)],
            [200.0; 3],
        );
        c.tag = 0;
        c.fill_poly(&[(2.0, 0.0), (4.0, 0.0), (4.0, 4.0), (2.0, 4.0)], [10.0; 3]);
        c.tag = 1;
        c.fill_poly(
            &[(6.0, 6.0), (7.0, 6.0), (7.0, 7.0), (6.0, 7.0)],
            [200.0; 3],
        );
        let m = c.mask(2);
        assert_eq!(m.get_pixel(0, 0).0[0], 255);
        assert_eq!(m.get_pixel(1, 0).0[0], 0);
        assert_eq!(m.get_pixel(3, 3).0[0], 255, "one sample of four is enough");
    }
}
