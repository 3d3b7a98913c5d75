//! Keeping the user's scene: the generated person is blended into the original photo at its
//! full resolution, so every pixel outside the person region is the scene's own.
//!
//! The person region is found at the model's working size (a mask of where the layout draws a
//! skeleton), grown by a margin that covers the body around the bones, and feathered; the
//! resulting alpha is scaled up bilinearly to the scene's size. Where the alpha is zero the
//! output pixel is the scene pixel, bit for bit.

use image::{GrayImage, RgbImage};

/// The person region grows this fraction of the working size's longest side around the
/// skeleton (the body's flesh around its bones) before the feather starts.
pub const GROW_FRACTION: f32 = 1.0 / 32.0;
/// The feather's width, as a fraction of the working size's longest side.
pub const FEATHER_FRACTION: f32 = 1.0 / 32.0;
/// A pixel of a decoded layout belongs to the skeleton when one of its channels differs from
/// the round-tripped scene by more than this (the autoencoder's own error stays well below).
pub const LAYOUT_DIFF_THRESHOLD: u8 = 64;

/// How far around the people read from a layout its changes count as a person, as a fraction
/// of the working size's longer side.
pub const READ_MARGIN_FRACTION: f32 = 1.0 / 16.0;

/// Clears the pixels of `core` outside `near` (both 255 inside, 0 outside).
pub fn keep_within(core: &mut GrayImage, near: &GrayImage) {
    for (c, n) in core.pixels_mut().zip(near.pixels()) {
        if n.0[0] == 0 {
            c.0[0] = 0;
        }
    }
}

/// The pixels where `layout` (a layout drawn over the scene, decoded) differs from
/// `scene_round_trip` (the scene through the same autoencoder) by more than `threshold` in one
/// channel, without isolated pixels (a skeleton is drawn with strokes, never single pixels).
pub fn layout_core(layout: &RgbImage, scene_round_trip: &RgbImage, threshold: u8) -> GrayImage {
    let (w, h) = layout.dimensions();
    let mut raw = GrayImage::new(w, h);
    for ((d, a), b) in raw
        .pixels_mut()
        .zip(layout.pixels())
        .zip(scene_round_trip.pixels())
    {
        let diff = a.0.iter().zip(b.0).map(|(x, y)| x.abs_diff(y)).max();
        if diff.unwrap_or(0) > threshold {
            d.0[0] = 255;
        }
    }
    let mut core = GrayImage::new(w, h);
    for y in 0..h {
        for x in 0..w {
            if raw.get_pixel(x, y).0[0] == 0 {
                continue;
            }
            let neighbours = (y.saturating_sub(1)..=(y + 1).min(h - 1))
                .flat_map(|ny| (x.saturating_sub(1)..=(x + 1).min(w - 1)).map(move |nx| (nx, ny)))
                .filter(|&(nx, ny)| (nx, ny) != (x, y) && raw.get_pixel(nx, ny).0[0] > 0)
                .count();
            if neighbours > 0 {
                core.put_pixel(x, y, image::Luma([255]));
            }
        }
    }
    core
}

/// Distance (in pixels, 8-neighbour chamfer with diagonal √2) from every pixel to the nearest
/// non-zero pixel of `mask`; `f32::INFINITY` everywhere when the mask is empty.
pub fn distance_to(mask: &GrayImage) -> Vec<f32> {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let mut d: Vec<f32> = mask
        .as_raw()
        .iter()
        .map(|&v| if v > 0 { 0.0 } else { f32::INFINITY })
        .collect();
    let diag = std::f32::consts::SQRT_2;
    let forward = [
        (-1i64, -1i64, diag),
        (0, -1, 1.0),
        (1, -1, diag),
        (-1, 0, 1.0),
    ];
    let relax = |d: &mut [f32], x: usize, y: usize, steps: &[(i64, i64, f32)]| {
        let mut best = d[y * w + x];
        for &(dx, dy, cost) in steps {
            let (nx, ny) = (x as i64 + dx, y as i64 + dy);
            if nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h {
                best = best.min(d[ny as usize * w + nx as usize] + cost);
            }
        }
        d[y * w + x] = best;
    };
    for y in 0..h {
        for x in 0..w {
            relax(&mut d, x, y, &forward);
        }
    }
    let backward: Vec<(i64, i64, f32)> = forward.iter().map(|&(a, b, c)| (-a, -b, c)).collect();
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            relax(&mut d, x, y, &backward);
        }
    }
    d
}

/// The alpha of the generated image at the core mask's size: 1 within `grow` pixels of the
/// core, falling smoothly to 0 over the next `feather` pixels.
pub fn feathered_alpha(core: &GrayImage, grow: f32, feather: f32) -> Vec<f32> {
    distance_to(core)
        .into_iter()
        .map(|d| {
            let t = ((d - grow) / feather.max(1e-3)).clamp(0.0, 1.0);
            let s = 1.0 - t;
            s * s * (3.0 - 2.0 * s)
        })
        .collect()
}

/// `alpha` (`w`×`h`, row-major) scaled bilinearly to `out_w`×`out_h` as 0–255.
pub fn upscale_alpha(alpha: &[f32], w: u32, h: u32, out_w: u32, out_h: u32) -> GrayImage {
    let sample = |x: i64, y: i64| {
        alpha[(y.clamp(0, h as i64 - 1) * w as i64 + x.clamp(0, w as i64 - 1)) as usize]
    };
    let (sx, sy) = (w as f32 / out_w as f32, h as f32 / out_h as f32);
    let mut out = GrayImage::new(out_w, out_h);
    for (ox, oy, p) in out.enumerate_pixels_mut() {
        let fx = (ox as f32 + 0.5) * sx - 0.5;
        let fy = (oy as f32 + 0.5) * sy - 0.5;
        let (x0, y0) = (fx.floor(), fy.floor());
        let (tx, ty) = (fx - x0, fy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let top = sample(x0, y0) * (1.0 - tx) + sample(x0 + 1, y0) * tx;
        let bottom = sample(x0, y0 + 1) * (1.0 - tx) + sample(x0 + 1, y0 + 1) * tx;
        p.0[0] = ((top * (1.0 - ty) + bottom * ty) * 255.0)
            .round()
            .clamp(0.0, 255.0) as u8;
    }
    out
}

/// `generated` over `scene` through `alpha` (255: generated). Where alpha is 0 the scene's
/// pixel is kept exactly.
pub fn blend(scene: &RgbImage, generated: &RgbImage, alpha: &GrayImage) -> RgbImage {
    let mut out = scene.clone();
    for ((o, g), a) in out.pixels_mut().zip(generated.pixels()).zip(alpha.pixels()) {
        let a = a.0[0] as u32;
        if a == 0 {
            continue;
        }
        for (c, gc) in o.0.iter_mut().zip(g.0) {
            *c = ((gc as u32 * a + *c as u32 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgb};

    #[test]
    fn distance_is_zero_on_the_mask_and_grows_away_from_it() {
        let mut m = GrayImage::new(9, 5);
        m.put_pixel(2, 2, Luma([255]));
        let d = distance_to(&m);
        assert_eq!(d[2 * 9 + 2], 0.0);
        assert_eq!(d[2 * 9 + 5], 3.0);
        assert!((d[0] - 2.0 * std::f32::consts::SQRT_2).abs() < 1e-6);
        assert!(distance_to(&GrayImage::new(3, 3))
            .iter()
            .all(|v| v.is_infinite()));
    }

    #[test]
    fn alpha_is_one_near_the_core_and_zero_beyond_the_feather() {
        let mut m = GrayImage::new(40, 1);
        m.put_pixel(0, 0, Luma([255]));
        let a = feathered_alpha(&m, 4.0, 8.0);
        assert!(a[..=4].iter().all(|&v| v == 1.0));
        assert!(a[12..].iter().all(|&v| v == 0.0));
        assert!(a[5..12].windows(2).all(|w| w[0] >= w[1]));
        assert!(a[8] > 0.0 && a[8] < 1.0);
    }

    #[test]
    fn blend_keeps_scene_pixels_exactly_where_alpha_is_zero() {
        let scene = RgbImage::from_fn(64, 48, |x, y| Rgb([x as u8 * 3, y as u8 * 5, 77]));
        let generated = RgbImage::from_pixel(64, 48, Rgb([255, 0, 0]));
        let mut core = GrayImage::new(16, 12);
        core.put_pixel(8, 6, Luma([255]));
        let alpha = upscale_alpha(&feathered_alpha(&core, 1.0, 2.0), 16, 12, 64, 48);
        let out = blend(&scene, &generated, &alpha);
        assert_eq!(alpha.get_pixel(33, 25).0[0], 255);
        assert_eq!(out.get_pixel(33, 25), &Rgb([255, 0, 0]));
        let mut kept = 0;
        for ((o, s), a) in out.pixels().zip(scene.pixels()).zip(alpha.pixels()) {
            if a.0[0] == 0 {
                assert_eq!(o, s);
                kept += 1;
            }
        }
        assert!(kept > 64 * 48 * 3 / 4, "{kept}");
    }

    #[test]
    fn layout_core_finds_strokes_and_drops_lone_pixels() {
        let scene = RgbImage::from_pixel(20, 20, Rgb([90, 90, 90]));
        let mut layout = scene.clone();
        for x in 3..12 {
            layout.put_pixel(x, 5, Rgb([255, 0, 85]));
        }
        layout.put_pixel(17, 17, Rgb([0, 255, 0]));
        let core = layout_core(&layout, &scene, LAYOUT_DIFF_THRESHOLD);
        assert_eq!(core.get_pixel(7, 5).0[0], 255);
        assert_eq!(core.get_pixel(17, 17).0[0], 0);
        assert_eq!(core.pixels().filter(|p| p.0[0] > 0).count(), 9);
    }
}
