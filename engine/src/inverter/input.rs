//! Image preparation: reading layout images, how an image maps to the network's working size,
//! and the network's per-pixel input features (RGB and the match to each palette colour).

use super::{InverterError, Result};
use crate::pose::skeleton::{limb_color, COLORS, NUM_JOINTS, NUM_LIMBS};
use crate::pose::stick_width;
use candle_core::{Device, Tensor};
use image::{imageops, RgbImage};
use std::path::Path;

/// Input channels per pixel: RGB, then how closely the pixel matches each of the 35 palette
/// colours (18 joints, 17 limbs; see [`pixel_features`]).
pub const INPUT_CHANNELS: usize = 3 + NUM_JOINTS + NUM_LIMBS;
/// Width of the palette-match response, in 8-bit colour units (Euclidean RGB distance).
const MATCH_WIDTH: f32 = 24.0;

/// Reads a layout image (PNG or JPEG). RGB and RGBA (alpha dropped) are accepted; grayscale
/// images are refused because a layout is colour-coded. Sizes are checked from the header
/// before decoding (see [`crate::imageio::read_dynamic`]).
pub fn read_layout(path: &Path) -> Result<RgbImage> {
    let img = crate::imageio::read_dynamic(path)?;
    let file = path.display().to_string();
    match img.color().channel_count() {
        3 | 4 => Ok(img.into_rgb8()),
        n => Err(InverterError::Image {
            file,
            msg: format!(
                "has {n} channel(s) ({:?}); a layout image needs colour (RGB or RGBA): the joint and limb colours carry the skeleton",
                img.color()
            ),
        }),
    }
}

/// An RGB image from raw interleaved 8-bit pixels with 3 (RGB) or 4 (RGBA) channels; `name`
/// names the input in messages.
pub fn image_from_raw(
    pixels: &[u8],
    width: u32,
    height: u32,
    channels: usize,
    name: &str,
) -> Result<RgbImage> {
    let bad = |msg: String| InverterError::Image {
        file: name.to_string(),
        msg,
    };
    if width == 0 || height == 0 {
        return Err(bad(format!("empty {width}x{height} image")));
    }
    if width as u64 * height as u64 > crate::imageio::MAX_PIXELS {
        return Err(bad(format!(
            "{width}x{height} is larger than {} megapixels",
            crate::imageio::MAX_PIXELS / 1_000_000
        )));
    }
    if channels != 3 && channels != 4 {
        return Err(bad(format!(
            "{channels} channel(s); a layout image needs 3 (RGB) or 4 (RGBA)"
        )));
    }
    let need = width as usize * height as usize * channels;
    if pixels.len() != need {
        return Err(bad(format!(
            "{} bytes of pixels, expected {width}x{height}x{channels} = {need}",
            pixels.len()
        )));
    }
    let rgb: Vec<u8> = if channels == 3 {
        pixels.to_vec()
    } else {
        pixels
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect()
    };
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| bad("pixel buffer size mismatch".into()))
}

pub(super) fn check_image(img: &RgbImage) -> Result<()> {
    if img.width() == 0 || img.height() == 0 {
        return Err(InverterError::Image {
            file: "layout image".into(),
            msg: format!("empty {}x{} image", img.width(), img.height()),
        });
    }
    Ok(())
}

/// How an image maps to the network's working resolution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkGeometry {
    /// Working width in pixels, before padding.
    pub width: usize,
    /// Working height in pixels, before padding.
    pub height: usize,
    /// Scale factor from image pixels to working pixels.
    pub scale: f64,
    /// Padded working width in pixels (a multiple of 4).
    pub padded_width: usize,
    /// Padded working height in pixels (a multiple of 4).
    pub padded_height: usize,
}

impl WorkGeometry {
    /// The geometry of a `w`×`h` image at working size `work` (longest side; smaller images
    /// keep their size: upscaling adds cost, not information).
    pub fn new(w: u32, h: u32, work: usize) -> Self {
        let scale = (work as f64 / w.max(h) as f64).min(1.0);
        let width = ((w as f64 * scale).round() as usize).max(1);
        let height = ((h as f64 * scale).round() as usize).max(1);
        let pad = |x: usize| x.div_ceil(4) * 4;
        WorkGeometry {
            width,
            height,
            scale,
            padded_width: pad(width),
            padded_height: pad(height),
        }
    }

    /// Image coordinate -> working coordinate (continuous: pixel `i` covers `[i, i + 1)`).
    pub fn to_work(&self, x: f64) -> f64 {
        x * self.scale
    }

    /// Working coordinate -> image coordinate.
    pub fn to_image(&self, u: f64) -> f64 {
        u / self.scale
    }

    /// The working pixel (along an axis `n` working pixels long) that image pixel `i` falls in.
    pub fn cell(&self, i: usize, n: usize) -> usize {
        (((i as f64 + 0.5) * self.scale) as usize).min(n - 1)
    }

    /// The stick width the rasteriser would use at the working size (class-map units).
    pub fn stick_width(&self) -> f64 {
        stick_width(self.width as u32, self.height as u32) as f64
    }
}

/// The image resized to its working size (Triangle filter), not yet padded.
pub fn to_working(img: &RgbImage, g: &WorkGeometry) -> RgbImage {
    if (img.width() as usize, img.height() as usize) == (g.width, g.height) {
        img.clone()
    } else {
        imageops::resize(
            img,
            g.width as u32,
            g.height as u32,
            imageops::FilterType::Triangle,
        )
    }
}

/// The palette: the 18 joint colours, then the 17 limb colours (class order).
fn palette() -> &'static [[f32; 3]; NUM_JOINTS + NUM_LIMBS] {
    static P: std::sync::OnceLock<[[f32; 3]; NUM_JOINTS + NUM_LIMBS]> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        std::array::from_fn(|c| {
            let q = if c < NUM_JOINTS {
                COLORS[c]
            } else {
                limb_color(c - NUM_JOINTS)
            };
            q.map(|v| v as f32)
        })
    })
}

/// The palette colour nearest to `rgb` (the first on ties: joints before limbs) and its largest
/// per-channel difference.
pub(super) fn nearest_palette(rgb: [u8; 3]) -> (usize, f32) {
    let p = rgb.map(|v| v as f32);
    let mut best = (0, f32::MAX);
    for (c, q) in palette().iter().enumerate() {
        let d = (0..3).map(|i| (p[i] - q[i]).abs()).fold(0f32, f32::max);
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

/// The network's input features of one pixel: RGB in [-1, 1], then for each palette colour
/// `exp(-(d / MATCH_WIDTH)²)` with `d` the Euclidean RGB distance to it. The match channels
/// hand the network the colour decoder's knowledge, so that a clean layout is easy and the
/// learning goes into reading drifted colours from their context.
fn pixel_features(rgb: [u8; 3], out: &mut [f32]) {
    for c in 0..3 {
        out[c] = rgb[c] as f32 / 127.5 - 1.0;
    }
    let p = rgb.map(|v| v as f32);
    let w2 = MATCH_WIDTH * MATCH_WIDTH;
    for (k, q) in palette().iter().enumerate() {
        let d2 = (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2);
        // beyond 3 widths the response is below 1.3e-4: written as 0 (saves the exp)
        out[3 + k] = if d2 > 9.0 * w2 { 0.0 } else { (-d2 / w2).exp() };
    }
}

/// Input features `(rows × cols × INPUT_CHANNELS)` of the `cols`×`rows` window of `work` at
/// (`ox`, `oy`), black (its features) outside the image: the network input layout.
pub fn window_features(
    work: &RgbImage,
    ox: usize,
    oy: usize,
    cols: usize,
    rows: usize,
) -> Vec<f32> {
    let mut black = [0f32; INPUT_CHANNELS];
    pixel_features([0, 0, 0], &mut black);
    let mut data = Vec::with_capacity(rows * cols * INPUT_CHANNELS);
    for _ in 0..rows * cols {
        data.extend_from_slice(&black);
    }
    let (w, h) = (work.width() as usize, work.height() as usize);
    for y in 0..rows.min(h.saturating_sub(oy)) {
        for x in 0..cols.min(w.saturating_sub(ox)) {
            let p = work.get_pixel((ox + x) as u32, (oy + y) as u32).0;
            pixel_features(
                p,
                &mut data[(y * cols + x) * INPUT_CHANNELS..][..INPUT_CHANNELS],
            );
        }
    }
    data
}

/// A working image as network input `(1, padded_h, padded_w, INPUT_CHANNELS)` (see
/// [`pixel_features`]), padded with black on the right and bottom.
pub(super) fn input_tensor(work: &RgbImage, g: &WorkGeometry, device: &Device) -> Result<Tensor> {
    let (pw, ph) = (g.padded_width, g.padded_height);
    let data = window_features(work, 0, 0, pw, ph);
    Ok(Tensor::from_vec(data, (1, ph, pw, INPUT_CHANNELS), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_round_trips() {
        let g = WorkGeometry::new(1000, 600, 256);
        assert_eq!((g.width, g.height), (256, 154));
        assert_eq!((g.padded_width, g.padded_height), (256, 156));
        for x in [0.0, 10.3, 999.0] {
            assert!((g.to_image(g.to_work(x)) - x).abs() < 1e-9);
        }
        assert_eq!(g.stick_width(), 2.0);
    }

    #[test]
    fn raw_images_are_checked() {
        let e = image_from_raw(&[0; 12], 2, 2, 3, "x.raw").unwrap();
        assert_eq!(e.dimensions(), (2, 2));
        let msg = image_from_raw(&[0; 4], 2, 2, 1, "x.raw")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("x.raw") && msg.contains("1 channel"), "{msg}");
        let msg = image_from_raw(&[], 0, 5, 3, "x.raw")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("empty 0x5"), "{msg}");
        let msg = image_from_raw(&[0; 5], 2, 2, 3, "x.raw")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("expected 2x2x3 = 12"), "{msg}");
        let msg = image_from_raw(&[], 200_000, 200_000, 3, "x.raw")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("megapixels"), "{msg}");
    }
}
