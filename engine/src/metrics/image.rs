//! Image-quality metrics for RGB8 images: PSNR and SSIM, on the whole image or only outside a
//! mask (e.g. the dilated person mask, to measure how well the background is kept).
//!
//! - **PSNR** is over all three channels: `10·log10(255² / MSE)`, with the MSE averaged over
//!   every channel of every counted pixel. Identical images give `f64::INFINITY`.
//! - **SSIM** is the standard one of Wang, Bovik, Sheikh and Simoncelli (2004): an 11×11
//!   Gaussian window with σ = 1.5, `K1 = 0.01`, `K2 = 0.03`, `L = 255`, computed on **luma**
//!   (`Y = 0.299 R + 0.587 G + 0.114 B`, BT.601, kept as a real number) and averaged over the
//!   SSIM map. As in the reference implementation the map is taken only where the whole window
//!   lies inside the image ("valid" filtering), so both sides must be at least 11 pixels.
//! - **Masked variants** count only pixels whose mask value is zero: PSNR over those pixels,
//!   SSIM over the map entries whose window centre is such a pixel (the windows themselves may
//!   reach into the masked region). They return `None` when no pixel is counted.

use image::{GrayImage, RgbImage};

/// Side of the SSIM window.
pub const SSIM_WINDOW: usize = 11;
/// Standard deviation of the SSIM window's Gaussian.
pub const SSIM_SIGMA: f64 = 1.5;
/// SSIM's `K1` constant, stabilising the luminance term.
pub const SSIM_K1: f64 = 0.01;
/// SSIM's `K2` constant, stabilising the contrast-structure term.
pub const SSIM_K2: f64 = 0.03;

/// Why two images (and a mask) cannot be compared.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricError {
    /// The two images have different sizes (width and height of each).
    #[error("the images differ in size: {0}x{1} vs {2}x{3}")]
    SizeMismatch(u32, u32, u32, u32),
    /// The mask's size (first two) differs from the images' size (last two).
    #[error("the mask is {0}x{1} but the images are {2}x{3}")]
    MaskSize(u32, u32, u32, u32),
    /// An image side is below the SSIM window; holds the image's width and height.
    #[error("SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {0}x{1}")]
    TooSmall(u32, u32),
    /// The images have no pixels.
    #[error("the images are empty")]
    Empty,
}

/// Result alias of the image metrics.
pub type Result<T> = std::result::Result<T, MetricError>;

fn check(a: &RgbImage, b: &RgbImage, mask: Option<&GrayImage>) -> Result<()> {
    if a.dimensions() != b.dimensions() {
        return Err(MetricError::SizeMismatch(
            a.width(),
            a.height(),
            b.width(),
            b.height(),
        ));
    }
    if a.width() == 0 || a.height() == 0 {
        return Err(MetricError::Empty);
    }
    if let Some(m) = mask {
        if m.dimensions() != a.dimensions() {
            return Err(MetricError::MaskSize(
                m.width(),
                m.height(),
                a.width(),
                a.height(),
            ));
        }
    }
    Ok(())
}

/// Mean squared error over the channels of the pixels where `keep(i)` (pixel index) holds,
/// and the number of pixels counted.
fn mse_where(a: &RgbImage, b: &RgbImage, keep: impl Fn(usize) -> bool) -> (f64, usize) {
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for (i, (pa, pb)) in a
        .as_raw()
        .chunks_exact(3)
        .zip(b.as_raw().chunks_exact(3))
        .enumerate()
    {
        if keep(i) {
            for c in 0..3 {
                let d = pa[c] as f64 - pb[c] as f64;
                sum += d * d;
            }
            n += 1;
        }
    }
    (sum / (3 * n.max(1)) as f64, n)
}

fn psnr_from_mse(mse: f64) -> f64 {
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

/// PSNR in dB over all pixels and channels; `INFINITY` for identical images.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    check(a, b, None)?;
    Ok(psnr_from_mse(mse_where(a, b, |_| true).0))
}

/// PSNR in dB over the pixels where `mask` is zero; `None` when the mask covers everything.
pub fn psnr_masked(a: &RgbImage, b: &RgbImage, mask: &GrayImage) -> Result<Option<f64>> {
    check(a, b, Some(mask))?;
    let m = mask.as_raw();
    let (mse, n) = mse_where(a, b, |i| m[i] == 0);
    Ok((n > 0).then(|| psnr_from_mse(mse)))
}

/// SSIM (luma, Gaussian window) averaged over the whole valid map.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    check(a, b, None)?;
    let map = ssim_map(a, b)?;
    Ok(map.mean_where(|_, _| true).unwrap_or(1.0))
}

/// SSIM averaged over the map entries whose window centre has a zero mask value; `None` when
/// no valid window centre is outside the mask.
pub fn ssim_masked(a: &RgbImage, b: &RgbImage, mask: &GrayImage) -> Result<Option<f64>> {
    check(a, b, Some(mask))?;
    let map = ssim_map(a, b)?;
    Ok(map.mean_where(|x, y| mask.get_pixel(x, y).0[0] == 0))
}

/// The SSIM map over the window centres of the valid region.
struct SsimMap {
    /// Offset of the first centre (half the window).
    off: u32,
    w: usize,
    h: usize,
    values: Vec<f64>,
}

impl SsimMap {
    /// Mean over the centres at image coordinates `(x, y)` for which `keep(x, y)`.
    fn mean_where(&self, keep: impl Fn(u32, u32) -> bool) -> Option<f64> {
        let mut sum = 0.0;
        let mut n = 0usize;
        for y in 0..self.h {
            for x in 0..self.w {
                if keep(x as u32 + self.off, y as u32 + self.off) {
                    sum += self.values[y * self.w + x];
                    n += 1;
                }
            }
        }
        (n > 0).then(|| sum / n as f64)
    }
}

fn luma(img: &RgbImage) -> Vec<f64> {
    img.as_raw()
        .chunks_exact(3)
        .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
        .collect()
}

/// The normalised 1-D Gaussian of the window (the 2-D window is its outer product).
fn gaussian_1d() -> [f64; SSIM_WINDOW] {
    let mut g = [0.0; SSIM_WINDOW];
    let c = (SSIM_WINDOW / 2) as f64;
    for (i, v) in g.iter_mut().enumerate() {
        let d = i as f64 - c;
        *v = (-d * d / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp();
    }
    let s: f64 = g.iter().sum();
    g.iter_mut().for_each(|v| *v /= s);
    g
}

/// Valid-region separable Gaussian filter of a `w`×`h` plane: output is
/// `(w − 10) × (h − 10)`.
fn filter_valid(src: &[f64], w: usize, h: usize, g: &[f64; SSIM_WINDOW]) -> Vec<f64> {
    let (ow, oh) = (w + 1 - SSIM_WINDOW, h + 1 - SSIM_WINDOW);
    // horizontal pass: h rows of ow
    let mut tmp = vec![0.0; ow * h];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..ow {
            tmp[y * ow + x] = g
                .iter()
                .zip(&row[x..x + SSIM_WINDOW])
                .map(|(k, v)| k * v)
                .sum();
        }
    }
    let mut out = vec![0.0; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = g
                .iter()
                .enumerate()
                .map(|(k, gk)| gk * tmp[(y + k) * ow + x])
                .sum();
        }
    }
    out
}

fn ssim_map(a: &RgbImage, b: &RgbImage) -> Result<SsimMap> {
    let (w, h) = (a.width() as usize, a.height() as usize);
    if w < SSIM_WINDOW || h < SSIM_WINDOW {
        return Err(MetricError::TooSmall(a.width(), a.height()));
    }
    let g = gaussian_1d();
    let (x, y) = (luma(a), luma(b));
    let prod = |p: &[f64], q: &[f64]| -> Vec<f64> { p.iter().zip(q).map(|(u, v)| u * v).collect() };
    let mu_x = filter_valid(&x, w, h, &g);
    let mu_y = filter_valid(&y, w, h, &g);
    let xx = filter_valid(&prod(&x, &x), w, h, &g);
    let yy = filter_valid(&prod(&y, &y), w, h, &g);
    let xy = filter_valid(&prod(&x, &y), w, h, &g);
    let c1 = (SSIM_K1 * 255.0).powi(2);
    let c2 = (SSIM_K2 * 255.0).powi(2);
    let values = (0..mu_x.len())
        .map(|i| {
            let (mx, my) = (mu_x[i], mu_y[i]);
            let sx = xx[i] - mx * mx;
            let sy = yy[i] - my * my;
            let sxy = xy[i] - mx * my;
            ((2.0 * mx * my + c1) * (2.0 * sxy + c2)) / ((mx * mx + my * my + c1) * (sx + sy + c2))
        })
        .collect();
    Ok(SsimMap {
        off: (SSIM_WINDOW / 2) as u32,
        w: w + 1 - SSIM_WINDOW,
        h: h + 1 - SSIM_WINDOW,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgb};

    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                ((x * 7 + y * 3) % 200 + 20) as u8,
                ((x * 13 + y * 5) % 180 + 30) as u8,
                ((x ^ y) % 150 + 50) as u8,
            ])
        })
    }

    /// A deterministic noise value in [-amp, amp].
    fn noise(i: u64, amp: f64) -> f64 {
        let z = i
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(17)
            .wrapping_mul(0xbf58_476d_1ce4_e5b9);
        ((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * amp
    }

    fn noisy(img: &RgbImage, amp: f64) -> RgbImage {
        let mut out = img.clone();
        for (i, v) in out.iter_mut().enumerate() {
            *v = (*v as f64 + noise(i as u64, amp)).round().clamp(0.0, 255.0) as u8;
        }
        out
    }

    #[test]
    fn psnr_of_a_constant_offset() {
        let a = pattern(32, 24);
        let mut b = a.clone();
        b.iter_mut().for_each(|v| *v += 10); // values are at most 219
                                             // MSE = 100 -> 10·log10(65025/100)
        let want = 10.0 * (65025.0f64 / 100.0).log10();
        assert!((psnr(&a, &b).unwrap() - want).abs() < 1e-9);
        assert!((want - 28.1308).abs() < 1e-3);
        assert_eq!(psnr(&a, &a).unwrap(), f64::INFINITY);
    }

    #[test]
    fn psnr_of_one_channel_offset() {
        // only red is off by 30: MSE = 900 / 3 = 300
        let a = RgbImage::from_pixel(5, 4, Rgb([100, 100, 100]));
        let b = RgbImage::from_pixel(5, 4, Rgb([130, 100, 100]));
        let want = 10.0 * (65025.0f64 / 300.0).log10();
        assert!((psnr(&a, &b).unwrap() - want).abs() < 1e-9);
    }

    #[test]
    fn masked_psnr_ignores_the_masked_region() {
        let a = pattern(40, 30);
        let mut b = a.clone();
        let mut mask = GrayImage::new(40, 30);
        // wreck the left half and mask it; offset the right half by 5
        for y in 0..30 {
            for x in 0..40 {
                if x < 20 {
                    b.put_pixel(x, y, Rgb([255, 0, 255]));
                    mask.put_pixel(x, y, Luma([255]));
                } else {
                    let p = a.get_pixel(x, y).0;
                    b.put_pixel(x, y, Rgb([p[0] + 5, p[1] + 5, p[2] + 5]));
                }
            }
        }
        let want = 10.0 * (65025.0f64 / 25.0).log10();
        let got = psnr_masked(&a, &b, &mask).unwrap().unwrap();
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        assert!(psnr(&a, &b).unwrap() < got - 10.0);
        let all = GrayImage::from_pixel(40, 30, Luma([1]));
        assert_eq!(psnr_masked(&a, &b, &all).unwrap(), None);
    }

    #[test]
    fn ssim_is_one_for_identical_images_and_falls_with_noise() {
        let a = pattern(48, 40);
        assert!((ssim(&a, &a).unwrap() - 1.0).abs() < 1e-12);
        let s5 = ssim(&a, &noisy(&a, 5.0)).unwrap();
        let s20 = ssim(&a, &noisy(&a, 20.0)).unwrap();
        let s60 = ssim(&a, &noisy(&a, 60.0)).unwrap();
        assert!(s5 < 1.0 && s20 < s5 && s60 < s20, "{s5} {s20} {s60}");
        assert!(s60 < 0.8, "{s60}");
    }

    #[test]
    fn ssim_of_flat_images_by_hand() {
        // Flat images: σ = 0 everywhere, so SSIM = (2·μx·μy + C1) / (μx² + μy² + C1).
        let a = RgbImage::from_pixel(16, 16, Rgb([100, 100, 100]));
        let b = RgbImage::from_pixel(16, 16, Rgb([120, 120, 120]));
        let c1 = (0.01f64 * 255.0).powi(2);
        // luma of a grey pixel equals its value (the weights sum to 1)
        let want = (2.0 * 100.0 * 120.0 + c1) / (100.0f64 * 100.0 + 120.0 * 120.0 + c1);
        let got = ssim(&a, &b).unwrap();
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }

    #[test]
    fn masked_ssim_ignores_the_masked_region() {
        let a = pattern(60, 40);
        let mut b = a.clone();
        let mut mask = GrayImage::new(60, 40);
        for y in 0..40 {
            for x in 0..30 {
                b.put_pixel(x, y, Rgb([(x * 31 % 256) as u8, 0, (y * 17 % 256) as u8]));
            }
            // the mask covers the damage plus a margin of a half window
            for x in 0..36 {
                mask.put_pixel(x, y, Luma([255]));
            }
        }
        let m = ssim_masked(&a, &b, &mask).unwrap().unwrap();
        assert!((m - 1.0).abs() < 1e-12, "{m}");
        assert!(ssim(&a, &b).unwrap() < 0.9);
        let all = GrayImage::from_pixel(60, 40, Luma([9]));
        assert_eq!(ssim_masked(&a, &b, &all).unwrap(), None);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let a = pattern(20, 20);
        let b = pattern(21, 20);
        assert_eq!(psnr(&a, &b), Err(MetricError::SizeMismatch(20, 20, 21, 20)));
        let small = pattern(10, 30);
        assert_eq!(ssim(&small, &small), Err(MetricError::TooSmall(10, 30)));
        let m = GrayImage::new(3, 3);
        assert_eq!(
            psnr_masked(&a, &a, &m),
            Err(MetricError::MaskSize(3, 3, 20, 20))
        );
    }
}
