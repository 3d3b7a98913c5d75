//! PoseInverter: layout image -> editable multi-person keypoints.
//!
//! The paper fine-tunes a 7B VLM for this. We read the layout in two steps that are shared by
//! a small learned network ([`PoseInverter`]) and a training-free baseline ([`ColorDecoder`]):
//!
//! 1. **Per-pixel classes.** Every pixel gets one of 36 classes: one of the 18 joints, one of
//!    the 17 limbs, or background — exactly what the rasteriser painted there (each joint and
//!    limb has its own palette colour, and later strokes cover earlier ones). The baseline
//!    reads the class from the pixel's colour within a tolerance; the network predicts it from
//!    context, so it also reads layouts whose colours have drifted (an autoencoder round trip,
//!    JPEG, blur, a photo behind the skeleton).
//! 2. **Decoding** ([`decode_classes`]): the centroid of each joint-coloured blob is a joint
//!    candidate (sub-pixel by construction); a pair of candidates is scored by how much of the
//!    segment between them carries that limb's class; people are assembled limb by
//!    limb from the neck outwards (the OpenPose order of `LIMBS`), each limb's pairs chosen as
//!    the assignment with the best total score. Then each person takes, limb
//!    by limb, the free blobs that complete it, including slivers too small to found a person
//!    (a joint mostly covered by a later one), and may share a blob another person holds when
//!    a clearly seen limb leads there; a person that is mostly another one's shared blobs (a
//!    stray fragment grown into a copy) is folded into it, and two halves of one person (the
//!    joint where they meet read as two blobs) are joined. A joint that is not found is
//!    missing.
//!    Coordinates come back in the input image's own pixels.
//!
//! Because both share step 2, comparing them measures only the per-pixel part.
//!
//! **Network.** The image is shrunk so that its longest side is at most `work_size` (256;
//! layouts are scale-consistent because the stick width scales with the image), padded to a
//! multiple of 4 and run channels-last:
//! * per-pixel features: RGB and the match to each of the 35 palette colours
//!   ([`pixel_features`]);
//! * pixel-unshuffle ×2, 1×1 conv to `stem` channels + SiLU (stride 2);
//! * pixel-unshuffle ×2, 1×1 conv to `width` channels + SiLU (stride 4);
//! * `blocks` residual blocks of two 3×3 convolutions (stride 4);
//! * a 1×1 conv to 4 × `stem` channels, pixel-shuffle back to stride 2, plus the stride-2 stem
//!   features, SiLU, and one residual 3×3 convolution there;
//! * a 1×1 head to 4 × 36 class logits and pixel-shuffle to stride 1, plus a per-pixel 1×1
//!   skip from the input features (the full-resolution colour evidence, which the strided
//!   path would have to squeeze through its channels).
//!
//! It is trained with a class-weighted softmax cross-entropy against the layout redrawn at the
//! working size ([`class_targets`], [`loss`]).
//!
//! Weights live in a model directory's `inverter.safetensors`; the architecture is stored in
//! the file (`config` tensor), so any trained size loads. The shipped default is embedded.

use crate::error::PoseError;
use crate::metrics::pose::hungarian;
use crate::model::layers::{shuffle2, unshuffle2, Lin};
use crate::model::lora::SplitMix64;
use crate::pose::skeleton::{limb_color, COLORS, LIMBS, NUM_JOINTS, NUM_LIMBS};
use crate::pose::{stick_width, Keypoint, Pose, PoseSet};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use image::{imageops, DynamicImage, RgbImage};
use std::collections::HashMap;
use std::path::Path;

/// Classes per pixel: 18 joints, 17 limbs, then background.
pub const NUM_CLASSES: usize = NUM_JOINTS + NUM_LIMBS + 1;
/// The background class of the network; class maps ([`ColorDecoder::classify`],
/// [`decode_classes`]) write background as [`NO_CLASS`].
pub const BACKGROUND: usize = NUM_JOINTS + NUM_LIMBS;
/// Background in a class map.
pub const NO_CLASS: u8 = 255;
/// Loss weight of a pixel by its true class: joints, limbs, background.
pub const CLASS_WEIGHTS: [f32; 3] = [4.0, 2.0, 1.0];
/// Input channels per pixel: RGB, then how closely the pixel matches each of the 35 palette
/// colours (18 joints, 17 limbs; see [`pixel_features`]).
pub const INPUT_CHANNELS: usize = 3 + NUM_JOINTS + NUM_LIMBS;
/// Width of the palette-match response, in 8-bit colour units (Euclidean RGB distance).
pub const MATCH_WIDTH: f32 = 24.0;
/// The network's `min_joints` where its class map reads a drawn layout ([`ClassMap::drawn`]):
/// small groups are then people partly hidden or out of frame more often than stray fragments.
/// On 500 held-out clean layouts (seed 7) and 300 of seeds 11 and 23, 3 / 4 / 5 / 6 gave PCK
/// 0.9831 / 0.9831 / 0.9832 / 0.9821, 0.9867 / 0.9864 / 0.9864 / 0.9845 and 0.9797 / 0.9803 /
/// 0.9800 / 0.9794, with count accuracy 0.996 / 0.998 / 0.998 / 0.994, 1.000 / 1.000 / 1.000 /
/// 0.990 and 0.987 / 0.990 / 0.987 / 0.987.
pub const FUSED_MIN_JOINTS: usize = 4;

/// The network's default `min_joints`: people with fewer joints after grouping are stray
/// fragments of a misread layout. On 200 held-out layouts (with [`absorb_duplicates`]), 4 / 5
/// / 6 / 7 / 8 gave clean PCK 0.907 / 0.910 / 0.913 / 0.917 / 0.915, count accuracy 0.845 /
/// 0.880 / 0.895 / 0.915 / 0.920 and PCK after the autoencoder round trip 0.536 / 0.541 /
/// 0.537 / 0.535 / 0.524: 6 is the largest that costs nothing anywhere.
pub const MIN_JOINTS: usize = 6;
/// The network's default [`PoseInverter::exact_colour_bonus`]. The rasteriser paints every
/// pixel in its class's palette colour exactly, which the network, reading a shrunk image
/// through a few convolutions, does not always recover; the colour evidence is added to its
/// logits, so that it still outvotes a palette-coloured shape it reads surely as background.
/// On 200 held-out clean layouts (seed 11, not the evaluation's), 0 / 2 / 4 / 8 / 1000 gave
/// PCK 0.928 / 0.956 / 0.966 / 0.967 / 0.968 before the background side was added; with it,
/// 4 / 8 gave 0.972 / 0.974.
pub const EXACT_COLOUR_BONUS: f32 = 8.0;

/// The exact colours' evidence is used when the image carries at least this share of the
/// skeleton pixels the network reads (at its working size) in exact palette colours. Without
/// this bar, the few pixels an autoencoder's round trip leaves at a palette colour by chance
/// moved the reading to full size and cost 0.036 of count accuracy after the round trip (500
/// held-out layouts, seed 7).
pub const EXACT_SHARE: f64 = 0.5;

/// The largest per-channel difference to a palette colour that counts as carrying it exactly
/// (as the colour decoder's default tolerance).
pub const EXACT_TOLERANCE: u8 = 12;

/// The least share of the image pixels in the network's skeleton (the working pixels it reads
/// as a joint or limb, mapped back to the image) whose exact palette colour is the class it
/// reads there ([`exact_agreement`]) for the image to count as a drawn layout: then a pixel of
/// no palette colour is background unless the network is very sure ([`PoseInverter::fuse`]),
/// and small groups are kept ([`FUSED_MIN_JOINTS`]). On 150 held-out layouts (seed 7) the share
/// is at least 0.40 clean (1 % below 0.53), at most 0.53 degraded and 0.21 after the
/// autoencoder round trip. It replaced [`ColorDecoder::reads_cleanly`] there, which photos
/// with many near-palette pixels fail (30 % of the clean layouts): on 500 (seed 7) clean PCK
/// 0.9805 -> 0.9831, count accuracy 0.992 -> 0.998, degraded 0.822 -> 0.828; 0.5 / 0.7 gave
/// 0.9831 / 0.9827 clean and 0.826 / 0.828 degraded.
pub const DRAWN_AGREEMENT: f64 = 0.6;

/// See [`DRAWN_AGREEMENT`]: `classes` at the working size `g`, `exact` the palette classes of
/// the `width`×`height` image (or [`NO_CLASS`]).
fn exact_agreement(classes: &[u8], g: &WorkGeometry, exact: &[u8], width: u32, height: u32) -> f64 {
    let (w, h) = (width as usize, height as usize);
    let cols: Vec<usize> = (0..w).map(|x| g.cell(x, g.width)).collect();
    let (mut seen, mut agree) = (0usize, 0usize);
    for y in 0..h {
        let row = &classes[g.cell(y, g.height) * g.width..][..g.width];
        for (x, &col) in cols.iter().enumerate() {
            let c = row[col];
            if c != NO_CLASS {
                seen += 1;
                agree += (exact[y * w + x] == c) as usize;
            }
        }
    }
    agree as f64 / seen.max(1) as f64
}

/// Name of the tensor that stores the architecture.
const CONFIG_TENSOR: &str = "config";
/// The file format in the `config` tensor's fifth value (2: per-pixel classes).
const FORMAT: f32 = 2.0;

/// The shipped network (`assets/models/tiny/inverter.safetensors`; see INVERTER.md there),
/// embedded for model directories without their own and for `skeleguide invert` without
/// `--model`.
pub const DEFAULT_WEIGHTS: &[u8] = include_bytes!("../../assets/models/tiny/inverter.safetensors");

/// Errors of the inverter. Every message names the file (or input) at fault.
#[derive(Debug, thiserror::Error)]
pub enum InverterError {
    #[error("{file}: {msg}")]
    Image { file: String, msg: String },
    #[error("{file}: {msg}")]
    Weights { file: String, msg: String },
    #[error("inverter: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Pose(#[from] PoseError),
}

pub type Result<T> = std::result::Result<T, InverterError>;

// ------------------------------------------------------------------ input

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

fn check_image(img: &RgbImage) -> Result<()> {
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
    /// Working size (before padding) and the scale factor image -> working.
    pub width: usize,
    pub height: usize,
    pub scale: f64,
    /// Padded working size (multiples of 4).
    pub padded_width: usize,
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
fn nearest_palette(rgb: [u8; 3]) -> (usize, f32) {
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
pub fn pixel_features(rgb: [u8; 3], out: &mut [f32]) {
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
pub fn input_tensor(work: &RgbImage, g: &WorkGeometry, device: &Device) -> Result<Tensor> {
    let (pw, ph) = (g.padded_width, g.padded_height);
    let data = window_features(work, 0, 0, pw, ph);
    Ok(Tensor::from_vec(data, (1, ph, pw, INPUT_CHANNELS), device)?)
}

// ------------------------------------------------------------------ the network

/// Architecture of a [`PoseInverter`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InverterConfig {
    /// Longest side of the working image.
    pub work_size: usize,
    /// Channels at stride 2.
    pub stem: usize,
    /// Channels at stride 4.
    pub width: usize,
    /// Residual blocks at stride 4.
    pub blocks: usize,
}

impl Default for InverterConfig {
    fn default() -> Self {
        InverterConfig {
            work_size: 256,
            stem: 24,
            width: 48,
            blocks: 3,
        }
    }
}

impl InverterConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(32..=1024).contains(&self.work_size) || self.work_size % 4 != 0 {
            return Err(format!(
                "work_size {} must be a multiple of 4 in 32..=1024",
                self.work_size
            ));
        }
        if !(1..=512).contains(&self.stem) || !(1..=512).contains(&self.width) {
            return Err(format!(
                "stem {} and width {} must be in 1..=512",
                self.stem, self.width
            ));
        }
        if self.blocks > 64 {
            return Err(format!("{} blocks is more than 64", self.blocks));
        }
        Ok(())
    }

    /// Every parameter: name, shape, init bound (uniform ±b).
    fn param_specs(&self) -> Vec<(String, Vec<usize>, f64)> {
        let mut v = Vec::new();
        let mut lin = |name: &str, inn: usize, out: usize, gain: f64| {
            v.push((
                format!("{name}.weight"),
                vec![out, inn],
                gain * (3.0 / inn as f64).sqrt(),
            ));
            v.push((format!("{name}.bias"), vec![out], 0.0));
        };
        lin("stem", 4 * INPUT_CHANNELS, self.stem, 1.0);
        lin("down", 4 * self.stem, self.width, 1.0);
        for b in 0..self.blocks {
            lin(&format!("block{b}.conv1"), 9 * self.width, self.width, 1.0);
            lin(&format!("block{b}.conv2"), 9 * self.width, self.width, 0.1);
        }
        lin("up", self.width, 4 * self.stem, 1.0);
        lin("refine", 9 * self.stem, self.stem, 0.1);
        lin("head", self.stem, 4 * NUM_CLASSES, 1.0);
        lin("skip", INPUT_CHANNELS, NUM_CLASSES, 1.0);
        v
    }

    fn to_tensor(self, device: &Device) -> Result<Tensor> {
        let v = [self.work_size, self.stem, self.width, self.blocks].map(|x| x as f32);
        let mut v = v.to_vec();
        v.push(FORMAT);
        Ok(Tensor::from_vec(v, 5, device)?)
    }
}

/// A tensor of the network, or the missing one named.
fn lin(p: &HashMap<String, Tensor>, name: &str) -> Result<Lin> {
    Lin::get(p, name).map_err(|n| InverterError::Weights {
        file: "inverter".into(),
        msg: format!("missing tensor `{n}`"),
    })
}

/// The per-pixel class network; see the module docs.
pub struct PoseInverter {
    cfg: InverterConfig,
    stem: Lin,
    down: Lin,
    blocks: Vec<(Lin, Lin)>,
    up: Lin,
    refine: Lin,
    head: Lin,
    skip: Lin,
    params: HashMap<String, Tensor>,
    device: Device,
    /// People with fewer joints than this are dropped (stray fragments of a misread layout).
    pub min_joints: usize,
    /// Added to the logit of the palette class whose colour a pixel carries exactly (within
    /// [`EXACT_TOLERANCE`]); 0 reads the network alone. See [`EXACT_COLOUR_BONUS`].
    pub exact_colour_bonus: f32,
}

impl std::fmt::Debug for PoseInverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoseInverter")
            .field("cfg", &self.cfg)
            .field("params", &self.num_params())
            .finish()
    }
}

impl PoseInverter {
    /// Builds the model from a var builder (a `VarMap`-backed one creates missing parameters).
    pub fn new(vb: VarBuilder, cfg: &InverterConfig) -> Result<Self> {
        cfg.validate().map_err(|msg| InverterError::Weights {
            file: "inverter config".into(),
            msg,
        })?;
        let mut params = HashMap::new();
        for (name, shape, b) in cfg.param_specs() {
            let init = if b == 0.0 {
                candle_nn::Init::Const(0.0)
            } else {
                candle_nn::Init::Uniform { lo: -b, up: b }
            };
            params.insert(name.clone(), vb.get_with_hints(shape, &name, init)?);
        }
        Self::from_params(params, cfg, vb.device())
    }

    /// Seeded trainable parameters (a `VarMap` to build the model from and to optimise).
    pub fn seeded_varmap(cfg: &InverterConfig, seed: u64, device: &Device) -> Result<VarMap> {
        let vm = VarMap::new();
        let mut rng = SplitMix64(seed ^ 0x9E37_79B9_7F4A_7C15);
        let mut next = || rng.next_f64();
        {
            let mut data = vm.data().lock().map_err(|_| InverterError::Weights {
                file: "inverter".into(),
                msg: "poisoned VarMap lock".into(),
            })?;
            for (name, shape, b) in cfg.param_specs() {
                let n: usize = shape.iter().product();
                let v: Vec<f32> = (0..n).map(|_| ((next() * 2.0 - 1.0) * b) as f32).collect();
                data.insert(
                    name,
                    Var::from_tensor(&Tensor::from_vec(v, shape, device)?)?,
                );
            }
        }
        Ok(vm)
    }

    /// Trainable copies of this model's parameters (to fine-tune it; see [`Self::from_varmap`]).
    pub fn to_varmap(&self) -> Result<VarMap> {
        let vm = VarMap::new();
        {
            let mut data = vm.data().lock().map_err(|_| InverterError::Weights {
                file: "inverter".into(),
                msg: "poisoned VarMap lock".into(),
            })?;
            for (name, t) in &self.params {
                data.insert(name.clone(), Var::from_tensor(&t.copy()?)?);
            }
        }
        Ok(vm)
    }

    /// A detached copy of trained parameters (inference records no graph).
    pub fn from_varmap(vm: &VarMap, cfg: &InverterConfig, device: &Device) -> Result<Self> {
        let params: HashMap<String, Tensor> = vm
            .data()
            .lock()
            .map_err(|_| InverterError::Weights {
                file: "inverter".into(),
                msg: "poisoned VarMap lock".into(),
            })?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        for (name, shape, _) in cfg.param_specs() {
            match params.get(&name) {
                Some(t) if t.dims() == shape.as_slice() => {}
                _ => {
                    return Err(InverterError::Weights {
                        file: "trained weights".into(),
                        msg: format!("tensor `{name}` is missing or not of shape {shape:?}"),
                    })
                }
            }
        }
        Self::from_params(params, cfg, device)
    }

    fn from_params(
        params: HashMap<String, Tensor>,
        cfg: &InverterConfig,
        device: &Device,
    ) -> Result<Self> {
        let blocks = (0..cfg.blocks)
            .map(|b| {
                Ok((
                    lin(&params, &format!("block{b}.conv1"))?,
                    lin(&params, &format!("block{b}.conv2"))?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(PoseInverter {
            stem: lin(&params, "stem")?,
            down: lin(&params, "down")?,
            up: lin(&params, "up")?,
            refine: lin(&params, "refine")?,
            head: lin(&params, "head")?,
            skip: lin(&params, "skip")?,
            blocks,
            params,
            cfg: *cfg,
            device: device.clone(),
            min_joints: MIN_JOINTS,
            exact_colour_bonus: EXACT_COLOUR_BONUS,
        })
    }

    /// Builds the model from named tensors (e.g. a loaded file); `file` names the source.
    pub fn from_tensors(
        mut tensors: HashMap<String, Tensor>,
        file: &str,
        device: &Device,
    ) -> Result<Self> {
        let bad = |msg: String| InverterError::Weights {
            file: file.to_string(),
            msg,
        };
        let c = tensors.remove(CONFIG_TENSOR).ok_or_else(|| {
            bad(format!(
                "missing tensor `{CONFIG_TENSOR}` (the architecture); is this a PoseInverter file?"
            ))
        })?;
        let c: Vec<f32> = c
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()
            .map_err(|e| bad(format!("tensor `{CONFIG_TENSOR}`: {e}")))?;
        if c.len() == 4 {
            return Err(bad(format!(
                "tensor `{CONFIG_TENSOR}` has 4 values: this file is an older heatmap-format PoseInverter, which this version no longer reads; retrain it with `skeleguide-train inverter`"
            )));
        }
        if c.len() != 5
            || c.iter()
                .any(|v| !v.is_finite() || *v < 0.0 || v.fract() != 0.0)
        {
            return Err(bad(format!(
                "tensor `{CONFIG_TENSOR}` must hold 5 non-negative integers (work_size, stem, width, blocks, format), found {c:?}"
            )));
        }
        if c[4] != FORMAT {
            return Err(bad(format!(
                "tensor `{CONFIG_TENSOR}`: format {} is not the supported {FORMAT}",
                c[4]
            )));
        }
        let cfg = InverterConfig {
            work_size: c[0] as usize,
            stem: c[1] as usize,
            width: c[2] as usize,
            blocks: c[3] as usize,
        };
        cfg.validate()
            .map_err(|m| bad(format!("tensor `{CONFIG_TENSOR}`: {m}")))?;
        let mut params = HashMap::new();
        for (name, shape, _) in cfg.param_specs() {
            let t = tensors
                .remove(&name)
                .ok_or_else(|| bad(format!("missing tensor `{name}` (shape {shape:?})")))?;
            if t.dims() != shape.as_slice() {
                return Err(bad(format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            params.insert(name, t.to_dtype(DType::F32)?.to_device(device)?);
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(bad(format!("unexpected tensor `{extra}`")));
        }
        Self::from_params(params, &cfg, device)
    }

    /// Loads `inverter.safetensors`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| InverterError::Weights {
            file: file.clone(),
            msg: format!("cannot read: {e}"),
        })?;
        Self::from_bytes(&bytes, &file, device)
    }

    /// Loads from safetensors bytes; `file` names the source in messages.
    pub fn from_bytes(bytes: &[u8], file: &str, device: &Device) -> Result<Self> {
        let t = candle_core::safetensors::load_buffer(bytes, device).map_err(|e| {
            InverterError::Weights {
                file: file.to_string(),
                msg: format!("not a readable safetensors file: {e}"),
            }
        })?;
        Self::from_tensors(t, file, device)
    }

    /// The embedded default (`assets/models/tiny/inverter.safetensors`).
    pub fn embedded(device: &Device) -> Result<Self> {
        Self::from_bytes(
            DEFAULT_WEIGHTS,
            "embedded assets/models/tiny/inverter.safetensors",
            device,
        )
    }

    /// The model directory's `inverter.safetensors` when present, else the embedded default.
    pub fn for_model_dir(dir: Option<&Path>, device: &Device) -> Result<Self> {
        match dir.map(|d| d.join(crate::modeldir::INVERTER_FILE)) {
            Some(p) if p.is_file() => Self::load(&p, device),
            _ => Self::embedded(device),
        }
    }

    /// Writes the weights (and the architecture) as safetensors, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut all: HashMap<String, Tensor> = self
            .params
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.detach().to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        all.insert(CONFIG_TENSOR.into(), self.cfg.to_tensor(&Device::Cpu)?);
        let bytes = safetensors::serialize(
            all.iter().map(|(k, v)| (k.clone(), v)).collect::<Vec<_>>(),
            None,
        )
        .map_err(|e| InverterError::Weights {
            file: path.display().to_string(),
            msg: format!("cannot serialise: {e}"),
        })?;
        crate::fsutil::write_atomic(path, &bytes)?;
        Ok(())
    }

    pub fn config(&self) -> &InverterConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn num_params(&self) -> usize {
        self.params.values().map(|t| t.elem_count()).sum()
    }

    /// Class logits `(B, H, W, 36)` for channels-last input features `(B, H, W, 38)` (see
    /// [`pixel_features`]), H and W multiples of 4. Differentiable when the parameters are
    /// `Var`s.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, false)
    }

    /// [`Self::forward`] for inference: the same logits (to float rounding) with the 3×3
    /// convolutions run channels-last ([`Lin::conv3x3_nhwc_infer`]), faster on the CPU and
    /// without gradients.
    pub fn forward_infer(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, true)
    }

    fn forward_with(&self, x: &Tensor, infer: bool) -> Result<Tensor> {
        let (_, h, w, c) = x.dims4()?;
        if c != INPUT_CHANNELS || h % 4 != 0 || w % 4 != 0 || h == 0 || w == 0 {
            return Err(InverterError::Image {
                file: "network input".into(),
                msg: format!(
                    "shape {:?}: expected (B, H, W, {INPUT_CHANNELS}) with H, W non-zero multiples of 4",
                    x.dims()
                ),
            });
        }
        let s2 = self.stem.forward(&unshuffle2(x)?)?.silu()?;
        let mut h4 = self.down.forward(&unshuffle2(&s2)?)?.silu()?;
        if infer {
            for (c1, c2) in &self.blocks {
                let r = c1.conv3x3_nhwc_infer(&h4)?.silu()?;
                h4 = (&h4 + c2.conv3x3_nhwc_infer(&r)?)?;
            }
        } else if !self.blocks.is_empty() {
            let mut xc = h4.permute((0, 3, 1, 2))?.contiguous()?;
            for (c1, c2) in &self.blocks {
                let r = c1.conv3x3_nchw(&xc)?.silu()?;
                xc = (xc + c2.conv3x3_nchw(&r)?)?;
            }
            h4 = xc.permute((0, 2, 3, 1))?.contiguous()?;
        }
        let u = (shuffle2(&self.up.forward(&h4)?)? + s2)?.silu()?;
        let r = if infer {
            self.refine.conv3x3_nhwc_infer(&u)?
        } else {
            self.refine.conv3x3_nhwc(&u)?
        };
        let u = (&u + r.silu()?)?;
        Ok((shuffle2(&self.head.forward(&u)?)? + self.skip.forward(x)?)?)
    }

    /// The class map of one image (see [`ClassMap`]): the network's classes at its working
    /// size or, when the image carries what the network reads in exact palette colours (at
    /// least [`EXACT_SHARE`] of it: a drawn layout), at the image's own size with those
    /// colours' evidence added (see [`Self::exact_colour_bonus`]).
    pub fn classes(&self, img: &RgbImage) -> Result<ClassMap> {
        check_image(img)?;
        let g = WorkGeometry::new(img.width(), img.height(), self.cfg.work_size);
        let work = to_working(img, &g);
        let x = input_tensor(&work, &g, &self.device)?;
        let logits = self.forward_infer(&x)?.squeeze(0)?;
        let best: Vec<u32> = logits
            .argmax(D::Minus1)?
            .flatten_all()?
            .to_device(&Device::Cpu)?
            .to_vec1()?;
        let mut classes = vec![NO_CLASS; g.width * g.height];
        for y in 0..g.height {
            for x in 0..g.width {
                let c = best[y * g.padded_width + x] as usize;
                if c != BACKGROUND {
                    classes[y * g.width + x] = c as u8;
                }
            }
        }
        if self.exact_colour_bonus > 0.0 {
            let exact = ColorDecoder {
                tolerance: EXACT_TOLERANCE,
                ..Default::default()
            }
            .classify(img);
            // the image carries the skeleton the network reads in exact colours (a drawn
            // layout, not one an autoencoder or JPEG has shifted, whose few exact pixels are
            // chance): at least half as many exact pixels, counted at the working size
            let seen = classes.iter().filter(|&&c| c != NO_CLASS).count() as f64;
            let carried = exact.iter().filter(|&&c| c != NO_CLASS).count() as f64;
            if carried > 0.0 && carried * g.scale * g.scale >= EXACT_SHARE * seen {
                let drawn = exact_agreement(&classes, &g, &exact, img.width(), img.height())
                    >= DRAWN_AGREEMENT;
                return self.fuse(&logits, &g, img.width(), img.height(), &exact, drawn);
            }
        }
        Ok(ClassMap {
            geometry: g,
            classes,
            drawn: false,
        })
    }

    /// The class map at the image's own `width`×`height`: each pixel takes the class with the
    /// highest logit of the working pixel it falls in, [`Self::exact_colour_bonus`] added to
    /// the palette class its colour matches exactly (`exact`, per image pixel) and, when the
    /// image is a drawn layout (`drawn`, see [`DRAWN_AGREEMENT`]), to the background of a pixel
    /// matching none: a drawn layout paints its skeleton in exact colours only, so the network
    /// must be very sure to read a joint or limb elsewhere.
    fn fuse(
        &self,
        logits: &Tensor,
        g: &WorkGeometry,
        width: u32,
        height: u32,
        exact: &[u8],
        drawn: bool,
    ) -> Result<ClassMap> {
        let l: Vec<f32> = logits.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
        let (w, h) = (width as usize, height as usize);
        let cols: Vec<usize> = (0..w).map(|x| g.cell(x, g.width)).collect();
        let mut classes = vec![NO_CLASS; w * h];
        for y in 0..h {
            let row = g.cell(y, g.height) * g.padded_width;
            for x in 0..w {
                let z = &l[(row + cols[x]) * NUM_CLASSES..][..NUM_CLASSES];
                let e = exact[y * w + x] as usize;
                let bg = if drawn && e == NO_CLASS as usize {
                    z[BACKGROUND] + self.exact_colour_bonus
                } else {
                    z[BACKGROUND]
                };
                let mut best = (BACKGROUND, bg);
                for (c, &v) in z.iter().enumerate() {
                    let v = if c == e {
                        v + self.exact_colour_bonus
                    } else {
                        v
                    };
                    if v > best.1 {
                        best = (c, v);
                    }
                }
                if best.0 != BACKGROUND {
                    classes[y * w + x] = best.0 as u8;
                }
            }
        }
        Ok(ClassMap {
            geometry: WorkGeometry::new(width, height, w.max(h)),
            classes,
            drawn,
        })
    }

    /// The poses of a layout image, in the image's own pixels.
    pub fn invert(&self, img: &RgbImage) -> Result<PoseSet> {
        Ok(self.decode(&self.classes(img)?, img.width(), img.height()))
    }

    /// The poses of a class map (from [`Self::classes`] of a `width`×`height` image), in the
    /// image's own pixels: [`decode_classes`] with this network's `min_joints`.
    pub fn decode(&self, map: &ClassMap, width: u32, height: u32) -> PoseSet {
        let g = map.geometry;
        let min_joints = if map.drawn {
            self.min_joints.min(FUSED_MIN_JOINTS)
        } else {
            self.min_joints
        };
        let mut people =
            decode_classes(&map.classes, g.width, g.height, g.stick_width(), min_joints);
        for p in &mut people {
            for k in p.joints.iter_mut().flatten() {
                k.x = g.to_image(k.x);
                k.y = g.to_image(k.y);
            }
        }
        PoseSet {
            width,
            height,
            people,
        }
    }
}

/// Per-pixel classes of an image at its working size: `0..18` joints, `18..35` limbs,
/// [`NO_CLASS`] background; row-major `geometry.width × geometry.height`.
#[derive(Clone, Debug)]
pub struct ClassMap {
    pub geometry: WorkGeometry,
    pub classes: Vec<u8>,
    /// The map reads a drawn layout: the classes were fused with the image's exact colours at
    /// its own size, and those colours agree with what the network reads
    /// ([`DRAWN_AGREEMENT`]). Its small groups are then people partly hidden or out of frame,
    /// not stray fragments of a misread map ([`FUSED_MIN_JOINTS`]).
    pub drawn: bool,
}

/// Whether a limb between two joints `len` apart, whose circles have radius `radius`, shows
/// less than two pixels outside both circles.
fn limb_is_hidden(len: f64, radius: f64) -> bool {
    len - 2.0 * radius - 1.0 < 2.0
}

/// Scores a limb between two joints `len` pixels apart whose circles have radius `radius`
/// (same units): the mean of `field(t)` over 9 points of the part of the segment outside both
/// circles, when at least 2/3 of the samples exceed 0.4. When that part is shorter than two
/// pixels the limb is hidden under the circles, and the pair is accepted by proximity with
/// [`HIDDEN_LIMB_SCORE`] (less a little per pixel of length, so the nearest pair wins a tie).
fn score_limb(len: f64, radius: f64, field: impl Fn(f64) -> f64) -> Option<f64> {
    const N: usize = 9;
    if limb_is_hidden(len, radius) {
        return Some(HIDDEN_LIMB_SCORE - 0.001 * len);
    }
    let t0 = (radius + 0.5) / len;
    let t1 = 1.0 - t0;
    let mut sum = 0.0;
    let mut hits = 0;
    for i in 0..N {
        let t = t0 + (t1 - t0) * i as f64 / (N - 1) as f64;
        let s = field(t);
        sum += s;
        if s > 0.4 {
            hits += 1;
        }
    }
    (hits * 3 >= N * 2).then_some(sum / N as f64)
}

/// Blobs of one joint type closer than this many stick widths are one joint
/// ([`merge_split_blobs`]). Two people's same joints are rarely that close; on 300 held-out
/// layouts decoded from exact class maps, 2.5 gives PCK 0.978 and count accuracy 1.000 (none:
/// 0.975 and 0.987; 5: 0.966).
pub const JOINT_MERGE_RADIUS: f64 = 2.5;

/// The score of a pair whose limb is hidden under its two joint circles. Two joints that
/// close are almost surely one limb, so this ranks just below a limb seen whole (1.0) and well
/// above a long segment that is seen only at its ends and covered in between (about 0.5-0.6):
/// at 0.5, small people (stick width 1-2 px, where neck-shoulder and face limbs are hidden)
/// lost their shoulders to a neighbour's neck (decoder PCK on exact class maps 0.940 -> 0.967).
pub const HIDDEN_LIMB_SCORE: f64 = 0.95;

// ------------------------------------------------------------------ grouping

/// Most candidates kept per joint type (the strongest); bounds the pairing work on noisy maps.
pub const MAX_CANDIDATES: usize = 24;

fn keep_best(c: &mut Vec<Candidate>) {
    if c.len() > MAX_CANDIDATES {
        c.sort_by(|a, b| b.score.total_cmp(&a.score));
        c.truncate(MAX_CANDIDATES);
    }
}

/// A joint candidate in image pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub x: f64,
    pub y: f64,
    pub score: f64,
}

impl Candidate {
    /// A joint a person already holds, as a candidate of full score.
    fn held(k: Keypoint) -> Self {
        Candidate {
            x: k.x,
            y: k.y,
            score: 1.0,
        }
    }
}

/// For limb `(a, b)` of a person holding exactly one of its joints: the held joint, the
/// missing one, and whether the held one is `a` (the limb runs from it).
fn half_held(p: &Pose, (a, b): (usize, usize)) -> Option<(Keypoint, usize, bool)> {
    match (p.joints[a], p.joints[b]) {
        (Some(ka), None) => Some((ka, b, true)),
        (None, Some(kb)) => Some((kb, a, false)),
        _ => None,
    }
}

/// Assembles people from joint candidates: for each limb in `LIMBS` order (neck outwards),
/// the candidate pairs of the assignment with the best total `limb` score (Hungarian; each
/// candidate once per limb) are attached, best first, to the person of the already-placed
/// end. A candidate with no limb
/// becomes a one-joint person when its score is at least `lone_score` and it lies farther
/// than `lone_dist` from every placed joint.
pub fn group(
    cands: &[Vec<Candidate>; NUM_JOINTS],
    limb: &impl Fn(usize, &Candidate, &Candidate) -> Option<f64>,
    lone_dist: f64,
    lone_score: f64,
) -> Vec<Pose> {
    // person slots: candidate index per joint
    let mut people: Vec<[Option<usize>; NUM_JOINTS]> = Vec::new();
    let find = |people: &Vec<[Option<usize>; NUM_JOINTS]>, j: usize, i: usize| {
        people.iter().position(|p| p[j] == Some(i))
    };
    for (k, &(a, b)) in LIMBS.iter().enumerate() {
        let mut pairs = Vec::new();
        for (ia, ca) in cands[a].iter().enumerate() {
            for (ib, cb) in cands[b].iter().enumerate() {
                if let Some(s) = limb(k, ca, cb) {
                    let d = ((ca.x - cb.x).powi(2) + (ca.y - cb.y).powi(2)).sqrt();
                    pairs.push((s, d, ia, ib));
                }
            }
        }
        // the pairs of the assignment with the best total score, not the greedy best-first
        // pairs: when two people's limbs of one type overlap, the best single pair is often a
        // cross pair that leaves the other person the wrong joint
        let (na, nb) = (cands[a].len(), cands[b].len());
        let mut cost = vec![0.0; na * nb];
        for &(s, _, ia, ib) in &pairs {
            cost[ia * nb + ib] = -s;
        }
        let best = hungarian(&cost, na, nb);
        pairs.retain(|&(_, _, ia, ib)| best[ia] == Some(ib));
        pairs.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.total_cmp(&q.1)));
        let mut used_a = vec![false; cands[a].len()];
        let mut used_b = vec![false; cands[b].len()];
        for (_, _, ia, ib) in pairs {
            if used_a[ia] || used_b[ib] {
                continue;
            }
            let pa = find(&people, a, ia);
            let pb = find(&people, b, ib);
            let ok = match (pa, pb) {
                (None, None) => {
                    let mut p = [None; NUM_JOINTS];
                    p[a] = Some(ia);
                    p[b] = Some(ib);
                    people.push(p);
                    true
                }
                (Some(p), None) => {
                    if people[p][b].is_none() {
                        people[p][b] = Some(ib);
                        true
                    } else {
                        false
                    }
                }
                (None, Some(q)) => {
                    if people[q][a].is_none() {
                        people[q][a] = Some(ia);
                        true
                    } else {
                        false
                    }
                }
                (Some(p), Some(q)) if p == q => true,
                (Some(p), Some(q)) => {
                    let disjoint =
                        (0..NUM_JOINTS).all(|j| people[p][j].is_none() || people[q][j].is_none());
                    if disjoint {
                        let other = people[q];
                        for j in 0..NUM_JOINTS {
                            if other[j].is_some() {
                                people[p][j] = other[j];
                            }
                        }
                        people.remove(q);
                    }
                    disjoint
                }
            };
            if ok {
                used_a[ia] = true;
                used_b[ib] = true;
            }
        }
    }
    // lone joints
    let placed: Vec<(f64, f64)> = people
        .iter()
        .flat_map(|p| {
            p.iter()
                .enumerate()
                .filter_map(|(j, i)| i.map(|i| (cands[j][i].x, cands[j][i].y)))
                .collect::<Vec<_>>()
        })
        .collect();
    for j in 0..NUM_JOINTS {
        for (i, c) in cands[j].iter().enumerate() {
            if c.score < lone_score || find(&people, j, i).is_some() {
                continue;
            }
            let far = placed
                .iter()
                .all(|&(x, y)| ((x - c.x).powi(2) + (y - c.y).powi(2)).sqrt() > lone_dist);
            if far {
                let mut p = [None; NUM_JOINTS];
                p[j] = Some(i);
                people.push(p);
            }
        }
    }
    merge_fragments(&mut people, cands);
    let mut out: Vec<Pose> = people
        .into_iter()
        .map(|p| {
            Pose::from_joints(std::array::from_fn(|j| {
                p[j].map(|i| Keypoint::new(cands[j][i].x, cands[j][i].y))
            }))
        })
        .collect();
    // a stable order: left to right by the first present joint
    out.sort_by(|a, b| {
        let x = |p: &Pose| p.joints.iter().flatten().next().map_or(0.0, |k| k.x);
        x(a).total_cmp(&x(b))
    });
    out
}

/// Every person has a neck (the root of the skeleton tree; COCO-18 derives it from the
/// shoulders). A group without one is a fragment cut off by a hidden joint (e.g. a hip covered
/// by the other hip in a profile view): it joins the nearest person with a neck that has none
/// of its joint types, when one lies within that person's bounding-box diagonal. Fragments
/// left over then join each other the same way (within half the larger one's diagonal).
fn merge_fragments(
    people: &mut Vec<[Option<usize>; NUM_JOINTS]>,
    cands: &[Vec<Candidate>; NUM_JOINTS],
) {
    merge_pass(people, cands, true, 1.0);
    merge_pass(people, cands, false, 0.5);
}

fn bbox_diag_of(p: &[(f64, f64)]) -> f64 {
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for &(x, y) in p {
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt()
}

fn merge_pass(
    people: &mut Vec<[Option<usize>; NUM_JOINTS]>,
    cands: &[Vec<Candidate>; NUM_JOINTS],
    into_neck: bool,
    reach: f64,
) {
    let pts = |p: &[Option<usize>; NUM_JOINTS]| -> Vec<(f64, f64)> {
        (0..NUM_JOINTS)
            .filter_map(|j| p[j].map(|i| (cands[j][i].x, cands[j][i].y)))
            .collect()
    };
    let mut i = 0;
    while i < people.len() {
        if people[i][1].is_some() {
            i += 1;
            continue;
        }
        let frag = pts(&people[i]);
        let mut best: Option<(f64, usize)> = None;
        for (q, p) in people.iter().enumerate() {
            if q == i || (p[1].is_none() == into_neck) {
                continue;
            }
            if (0..NUM_JOINTS).any(|j| p[j].is_some() && people[i][j].is_some()) {
                continue;
            }
            let ppts = pts(p);
            let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
            for &(x, y) in &ppts {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
            let diag = ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt();
            let d = frag
                .iter()
                .flat_map(|a| {
                    ppts.iter()
                        .map(move |b| ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt())
                })
                .fold(f64::MAX, f64::min);
            let diag = if into_neck {
                diag
            } else {
                let fd = bbox_diag_of(&frag);
                diag.max(fd)
            };
            if d <= (reach * diag).max(1.0) && best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, q));
            }
        }
        match best {
            Some((_, q)) => {
                let f = people[i];
                for j in 0..NUM_JOINTS {
                    if f[j].is_some() {
                        people[q][j] = f[j];
                    }
                }
                people.remove(i);
            }
            None => i += 1,
        }
    }
}

// ------------------------------------------------------------------ decoding a class map

/// People from a class map (`0..18` joints, `18..35` limbs, [`NO_CLASS`] background) of a
/// `w`×`h` layout drawn with stick width `sw`: joint candidates are the centroids of joint
/// blobs (8-connected, at least a fifth of a full circle), limbs are scored along the segment
/// between two candidates, people are grouped by [`group`], groups of fewer than `min_joints`
/// joints are dropped as fragments, each person left then takes the free blobs, slivers
/// included, that its limbs lead to ([`complete`]), and last may share a blob another person
/// holds when a clearly seen limb leads there. Then a person made mostly of another's
/// shared blobs is folded into it ([`absorb_duplicates`]), and two halves of one person are
/// joined ([`join_halves`]). Coordinates are in the map's pixels, continuous (pixel `i`
/// covers `[i, i + 1)`).
pub fn decode_classes(cls: &[u8], w: usize, h: usize, sw: f64, min_joints: usize) -> Vec<Pose> {
    let full = std::f64::consts::PI * sw * sw;
    let min_area = (0.2 * full).max(1.0) as usize;
    let mut cands: [Vec<Candidate>; NUM_JOINTS] = std::array::from_fn(|_| Vec::new());
    // blobs below `min_area`: too weak to found a person, but a person may take one
    let mut slivers: [Vec<Candidate>; NUM_JOINTS] = std::array::from_fn(|_| Vec::new());
    for_each_region(
        cls,
        w,
        h,
        |c| c < NUM_JOINTS,
        |c, pixels| {
            let n = pixels.len();
            let (sx, sy) = pixels.iter().fold((0f64, 0f64), |(sx, sy), &i| {
                (sx + (i % w) as f64, sy + (i / w) as f64)
            });
            let cand = Candidate {
                // the rasteriser draws at the truncated point: add half a pixel back
                x: sx / n as f64 + 0.5,
                y: sy / n as f64 + 0.5,
                score: (n as f64 / full).min(1.0),
            };
            if n >= min_area {
                cands[c].push(cand);
            } else {
                slivers[c].push(cand);
            }
        },
    );
    merge_split_blobs(
        &mut cands,
        &mut slivers,
        JOINT_MERGE_RADIUS * sw,
        min_area as f64 / full,
    );
    for c in cands.iter_mut().chain(slivers.iter_mut()) {
        keep_best(c);
    }
    // 1 where limb k is seen; 0.5 where something drawn after it (a later limb or a joint)
    // covers the point, since it may hide the limb; 0 on background or earlier limbs
    let limb_at = |k: usize, x: f64, y: f64| -> f64 {
        let (xi, yi) = (x.round() as i64, y.round() as i64);
        let mut best = 0.0f64;
        for dy in -1..=1 {
            for dx in -1..=1 {
                let (nx, ny) = (xi + dx, yi + dy);
                if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                    continue;
                }
                let c = cls[ny as usize * w + nx as usize] as usize;
                if c == NUM_JOINTS + k {
                    return 1.0;
                }
                if c < NUM_JOINTS || (c > NUM_JOINTS + k && c < BACKGROUND) {
                    best = best.max(0.5);
                }
            }
        }
        best
    };
    let limb = |k: usize, a: &Candidate, b: &Candidate| {
        let len = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
        score_limb(len, sw, |t| {
            // back to pixel indices (the candidates carry the +0.5 of pixel centres)
            limb_at(k, a.x - 0.5 + t * (b.x - a.x), a.y - 0.5 + t * (b.y - a.y))
        })
    };
    let mut people = group(&cands, &limb, 3.0 * sw, 0.6);
    // fragments go first, so that their blobs are free again and completing cannot lift one
    // over the bar
    people.retain(|p| p.present_count() >= min_joints);
    // candidates no person took, and the slivers, may still complete a person
    let mut rest = slivers;
    for (j, cs) in cands.iter().enumerate() {
        for c in cs {
            let taken = people
                .iter()
                .any(|p| p.joints[j].is_some_and(|k| k.x == c.x && k.y == c.y));
            if !taken {
                rest[j].push(*c);
            }
        }
    }
    complete(&mut people, &rest, &limb);
    // two people's same joints closer than the merge radius are one blob, held by one of them:
    // the other may share it when a limb seen clearly (not hidden under the circles, score
    // above SHARED_JOINT_SCORE) leads there
    let clear = |k: usize, a: &Candidate, b: &Candidate| {
        let len = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
        if limb_is_hidden(len, sw) {
            return None;
        }
        limb(k, a, b).filter(|&s| s > SHARED_JOINT_SCORE)
    };
    complete(&mut people, &cands, &clear);
    // last, joints no blob gave, where a limb leads
    complete_from_limb_ends(&mut people, &limb_ends(cls, w, h, sw), sw);
    untangle_chains(&mut people, &limb);
    regroup_by_prior(&mut people, &limb, sw);
    absorb_duplicates(&mut people);
    join_halves(&mut people, HALF_JOIN_RADIUS * sw);
    people
}

/// The four limb chains that leave the neck beside a counterpart: (root joint, the
/// counterpart root on the other side, the chain's joints, the neck-to-root limb).
const SIDE_CHAINS: [(usize, usize, [usize; 3], usize); 4] = [
    (2, 5, [2, 3, 4], 0),
    (5, 2, [5, 6, 7], 1),
    (8, 11, [8, 9, 10], 6),
    (11, 8, [11, 12, 13], 9),
];

/// A chain must be at least this much nearer its counterpart after a swap (as a share of the
/// distance before) for [`untangle_chains`] to swap it.
pub const UNTANGLE_GAIN: f64 = 0.5;

/// Swaps whole arm or leg chains between two people where the pixels cannot tell them apart but
/// the body can: when two people's necks both reach the other's shoulder (or hip) by a limb as
/// good as their own, and each shoulder then lies much nearer the other shoulder of its new
/// person ([`UNTANGLE_GAIN`]), the chains are exchanged. Overlapping people whose torsos run
/// along one line otherwise keep the assignment the grouping happened to find first.
fn untangle_chains(
    people: &mut [Pose],
    limb: &impl Fn(usize, &Candidate, &Candidate) -> Option<f64>,
) {
    let dist = |a: Keypoint, b: Keypoint| (a.x - b.x).hypot(a.y - b.y);
    for &(root, other, chain, k) in &SIDE_CHAINS {
        for p in 0..people.len() {
            for q in p + 1..people.len() {
                let get = |i: usize, j: usize| people[i].joints[j];
                let (Some(np), Some(nq), Some(rp), Some(rq), Some(op), Some(oq)) = (
                    get(p, 1),
                    get(q, 1),
                    get(p, root),
                    get(q, root),
                    get(p, other),
                    get(q, other),
                ) else {
                    continue;
                };
                let before = dist(rp, op) + dist(rq, oq);
                let after = dist(rq, op) + dist(rp, oq);
                if after >= UNTANGLE_GAIN * before {
                    continue;
                }
                // the weaker of the two neck-to-root limbs, as grouped or swapped
                let fit = |a: Keypoint, b: Keypoint| {
                    limb(k, &Candidate::held(a), &Candidate::held(b)).unwrap_or(0.0)
                };
                let own = fit(np, rp).min(fit(nq, rq));
                let swapped = fit(np, rq).min(fit(nq, rp));
                if swapped + 0.05 < own {
                    continue;
                }
                for j in chain {
                    let t = people[p].joints[j];
                    people[p].joints[j] = people[q].joints[j];
                    people[q].joints[j] = t;
                }
            }
        }
    }
}

/// How near (in stick widths) a limb's end must lie to a person's joint to count as reaching
/// it, in [`complete_from_limb_ends`].
pub const LIMB_END_RADIUS: f64 = 3.0;

/// The two ends of every connected region (8-connected, at least two stick widths long) of
/// each limb class, along the region's principal axis.
fn limb_ends(cls: &[u8], w: usize, h: usize, sw: f64) -> [Vec<[(f64, f64); 2]>; NUM_LIMBS] {
    let min_area = ((0.2 * std::f64::consts::PI * sw * sw) as usize).max(2);
    let mut ends: [Vec<[(f64, f64); 2]>; NUM_LIMBS] = std::array::from_fn(|_| Vec::new());
    for_each_region(
        cls,
        w,
        h,
        |c| (NUM_JOINTS..BACKGROUND).contains(&c),
        |c, pixels| {
            if pixels.len() < min_area {
                return;
            }
            if let Some(e) = principal_ends(pixels, w) {
                if (e[0].0 - e[1].0).hypot(e[0].1 - e[1].1) >= 2.0 * sw {
                    ends[c - NUM_JOINTS].push(e);
                }
            }
        },
    );
    ends
}

/// The 8 neighbours of a pixel, row by row.
const NEIGHBOURS_8: [(i64, i64); 8] = [
    (-1, -1),
    (0, -1),
    (1, -1),
    (-1, 0),
    (1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
];

/// Calls `f(class, pixels)` for each 8-connected region of one class among the pixels whose
/// class `wanted` accepts, in the scan order of the regions' first pixels.
fn for_each_region(
    cls: &[u8],
    w: usize,
    h: usize,
    wanted: impl Fn(usize) -> bool,
    mut f: impl FnMut(usize, &[usize]),
) {
    let mut seen = vec![false; w * h];
    let (mut stack, mut pixels) = (Vec::new(), Vec::new());
    for start in 0..w * h {
        let c = cls[start];
        if seen[start] || !wanted(c as usize) {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        pixels.clear();
        while let Some(i) = stack.pop() {
            pixels.push(i);
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            for (dx, dy) in NEIGHBOURS_8 {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                    continue;
                }
                let ni = ny as usize * w + nx as usize;
                if !seen[ni] && cls[ni] == c {
                    seen[ni] = true;
                    stack.push(ni);
                }
            }
        }
        f(c as usize, &pixels);
    }
}

/// Fills joints that no blob gave from the limbs leading to them: an autoencoder's round trip
/// keeps a layout's limbs better than its small joint circles, whose pixels it blurs into the
/// limbs' colours or the background. For each limb (in `LIMBS` order, neck outwards, repeated
/// while joints are added) and each person holding one of its joints but not the other, a
/// region of that limb's class with one end within [`LIMB_END_RADIUS`] stick widths of the
/// held joint (the nearest such region) gives the missing joint at its other end. It runs after
/// the blob-based completion, so it only fills joints that would otherwise be missing.
fn complete_from_limb_ends(people: &mut [Pose], ends: &[Vec<[(f64, f64); 2]>; NUM_LIMBS], sw: f64) {
    let radius = LIMB_END_RADIUS * sw;
    let mut used: Vec<Vec<bool>> = ends.iter().map(|e| vec![false; e.len()]).collect();
    for _ in 0..NUM_JOINTS {
        let mut added = false;
        for (k, &(a, b)) in LIMBS.iter().enumerate() {
            for p in people.iter_mut() {
                let Some((have, want, _)) = half_held(p, (a, b)) else {
                    continue;
                };
                // (distance of the near end, region, far end)
                let mut best: Option<(f64, usize, (f64, f64))> = None;
                for (ri, e) in ends[k].iter().enumerate() {
                    if used[k][ri] {
                        continue;
                    }
                    for (here, there) in [(e[0], e[1]), (e[1], e[0])] {
                        let d = (here.0 - have.x).hypot(here.1 - have.y);
                        if d <= radius && best.is_none_or(|(bd, _, _)| d < bd) {
                            best = Some((d, ri, there));
                        }
                    }
                }
                if let Some((_, ri, there)) = best {
                    used[k][ri] = true;
                    p.joints[want] = Some(Keypoint::new(there.0, there.1));
                    added = true;
                }
            }
        }
        if !added {
            break;
        }
    }
}

/// The two ends (pixel centres) of a region along its principal axis.
fn principal_ends(pixels: &[usize], w: usize) -> Option<[(f64, f64); 2]> {
    let n = pixels.len() as f64;
    let xy = |i: usize| ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
    let (mx, my) = pixels.iter().fold((0.0, 0.0), |(sx, sy), &i| {
        let (x, y) = xy(i);
        (sx + x / n, sy + y / n)
    });
    let (mut cxx, mut cyy, mut cxy) = (0.0, 0.0, 0.0);
    for &i in pixels {
        let (x, y) = xy(i);
        cxx += (x - mx) * (x - mx);
        cyy += (y - my) * (y - my);
        cxy += (x - mx) * (y - my);
    }
    let angle = 0.5 * (2.0 * cxy).atan2(cxx - cyy);
    let (dx, dy) = (angle.cos(), angle.sin());
    let (lo, hi) = pixels.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &i| {
        let (x, y) = xy(i);
        let t = (x - mx) * dx + (y - my) * dy;
        (lo.min(t), hi.max(t))
    });
    (hi > lo).then(|| [(mx + lo * dx, my + lo * dy), (mx + hi * dx, my + hi * dy)])
}

/// How close (in stick widths) the joints two halves of one person both have must lie for
/// [`join_halves`]. On 300 held-out layouts, 0 / 3 / 5 / 8 / 12 gave the network clean PCK
/// 0.925 / 0.926 / 0.928 / 0.928 / 0.928 and count accuracy 0.880 / 0.883 / 0.897 / 0.910 /
/// 0.923, while the exact-class ceiling stayed at 0.983 up to 8 and fell to 0.981 at 12.
pub const HALF_JOIN_RADIUS: f64 = 8.0;

/// Joins two people that are halves of one person: every joint type both have (at least one:
/// where the halves meet, read as two nearby blobs) lies within `radius` of its counterpart.
/// The larger half keeps its positions for those types.
fn join_halves(people: &mut Vec<Pose>, radius: f64) {
    loop {
        let mut pair = None;
        'search: for a in 0..people.len() {
            for b in 0..people.len() {
                if a == b || people[a].present_count() < people[b].present_count() {
                    continue;
                }
                let mut shared = 0;
                let mut fits = true;
                for j in 0..NUM_JOINTS {
                    if let (Some(p), Some(q)) = (people[a].joints[j], people[b].joints[j]) {
                        shared += 1;
                        fits &= ((p.x - q.x).powi(2) + (p.y - q.y).powi(2)).sqrt() <= radius;
                    }
                }
                if fits && shared > 0 {
                    pair = Some((a, b));
                    break 'search;
                }
            }
        }
        let Some((a, b)) = pair else { break };
        fold_into(people, b, a);
    }
}

/// Removes person `from` and gives its joints to person `into` where that one has none.
fn fold_into(people: &mut Vec<Pose>, from: usize, into: usize) {
    let gone = people.remove(from);
    let into = if into > from { into - 1 } else { into };
    for (mine, theirs) in people[into].joints.iter_mut().zip(gone.joints) {
        if mine.is_none() {
            *mine = theirs;
        }
    }
}

/// Folds a person that is mostly another person into it. After sharing, a stray fragment (a
/// second nose-and-eyes blob of a misread head, say) can grow along the blobs another person
/// holds into a copy of that person with a few joints of its own. A person sharing at least
/// as many joints (the same blob: identical coordinates) with one other person as it has of
/// its own is such a copy: its own joints go to that person where it lacks them, and the copy
/// is dropped. Smaller people are folded first.
fn absorb_duplicates(people: &mut Vec<Pose>) {
    loop {
        let same = |a: &Pose, b: &Pose, j: usize| match (a.joints[j], b.joints[j]) {
            (Some(p), Some(q)) => p.x == q.x && p.y == q.y,
            _ => false,
        };
        let mut order: Vec<usize> = (0..people.len()).collect();
        order.sort_by_key(|&i| people[i].present_count());
        let mut fold = None;
        for &b in &order {
            let shared_any =
                |j: usize| (0..people.len()).any(|o| o != b && same(&people[b], &people[o], j));
            let own = (0..NUM_JOINTS)
                .filter(|&j| people[b].joints[j].is_some() && !shared_any(j))
                .count();
            // the person it shares the most blobs with
            let best = (0..people.len())
                .filter(|&a| a != b)
                .map(|a| {
                    let shared = (0..NUM_JOINTS)
                        .filter(|&j| same(&people[b], &people[a], j))
                        .count();
                    (shared, a)
                })
                .max();
            if let Some((_, a)) = best.filter(|&(shared, _)| shared > 0 && shared >= own) {
                fold = Some((b, a));
                break;
            }
        }
        let Some((b, a)) = fold else { break };
        fold_into(people, b, a);
    }
}

/// The limb score that lets a person share a joint blob another person holds (see
/// [`decode_classes`]); exact-class ceiling on 500 held-out layouts 0.9805 -> 0.9817.
pub const SHARED_JOINT_SCORE: f64 = 0.9;

/// Merges the blobs of one joint type whose centroids lie within `radius` of each other, the
/// larger first (area-weighted centroid, score the summed share of a circle): a joint circle
/// cut in two by a later circle, or speckled by a network, is one joint. The merged blobs are
/// sorted again into candidates and slivers by `min_score` (the sliver bar as a share of a
/// circle).
fn merge_split_blobs(
    cands: &mut [Vec<Candidate>; NUM_JOINTS],
    slivers: &mut [Vec<Candidate>; NUM_JOINTS],
    radius: f64,
    min_score: f64,
) {
    for j in 0..NUM_JOINTS {
        let mut all: Vec<Candidate> = cands[j].drain(..).chain(slivers[j].drain(..)).collect();
        all.sort_by(|a, b| b.score.total_cmp(&a.score));
        // scores summed unclamped while merging (the area as a share of a circle)
        let mut kept: Vec<Candidate> = Vec::new();
        for c in all {
            let near = kept
                .iter_mut()
                .find(|k| ((k.x - c.x).powi(2) + (k.y - c.y).powi(2)).sqrt() < radius);
            match near {
                Some(k) => {
                    let sum = k.score + c.score;
                    k.x = (k.x * k.score + c.x * c.score) / sum;
                    k.y = (k.y * k.score + c.y * c.score) / sum;
                    k.score = sum;
                }
                None => kept.push(c),
            }
        }
        for mut c in kept {
            let area = c.score;
            c.score = area.min(1.0);
            if area >= min_score {
                cands[j].push(c);
            } else {
                slivers[j].push(c);
            }
        }
    }
}

/// Gives each person's missing joints from `rest` (candidates in no person): limb by limb in
/// `LIMBS` order, a person with one end of a limb takes the free candidate of the other end
/// that `limb` scores best, each candidate once; repeated while it adds joints, since a joint
/// added opens the limbs beyond it.
fn complete(
    people: &mut [Pose],
    rest: &[Vec<Candidate>; NUM_JOINTS],
    limb: &impl Fn(usize, &Candidate, &Candidate) -> Option<f64>,
) {
    let mut used: Vec<Vec<bool>> = rest.iter().map(|c| vec![false; c.len()]).collect();
    for _ in 0..NUM_JOINTS {
        let mut added = false;
        for (k, &(a, b)) in LIMBS.iter().enumerate() {
            // (score, person, free joint, candidate)
            let mut offers = Vec::new();
            for (pi, p) in people.iter().enumerate() {
                let Some((have, want, forward)) = half_held(p, (a, b)) else {
                    continue;
                };
                let h = Candidate::held(have);
                for (ci, c) in rest[want].iter().enumerate() {
                    if used[want][ci] {
                        continue;
                    }
                    let s = if forward {
                        limb(k, &h, c)
                    } else {
                        limb(k, c, &h)
                    };
                    if let Some(s) = s {
                        offers.push((s, pi, want, ci));
                    }
                }
            }
            offers.sort_by(|p, q| q.0.total_cmp(&p.0));
            for (_, pi, want, ci) in offers {
                if used[want][ci] || people[pi].joints[want].is_some() {
                    continue;
                }
                used[want][ci] = true;
                let c = rest[want][ci];
                people[pi].joints[want] = Some(Keypoint::new(c.x, c.y));
                added = true;
            }
        }
        if !added {
            break;
        }
    }
}

// ------------------------------------------------------------------ colour baseline

/// The training-free baseline: classifies each pixel by the palette (each joint and limb has
/// its own colour) and decodes the class map with [`decode_classes`], like the network. Exact
/// on clean layouts; colour drift (blur, JPEG, an autoencoder) breaks it.
#[derive(Clone, Copy, Debug)]
pub struct ColorDecoder {
    /// Largest per-channel difference to a palette colour that still counts as that colour.
    pub tolerance: u8,
    /// People with fewer joints are dropped: a blob or two of a palette colour in a photo is
    /// not a person (on 500 held-out clean layouts, many over textures with palette-coloured
    /// shapes, 3 takes count accuracy from 0.930 to 0.988).
    pub min_joints: usize,
}

impl Default for ColorDecoder {
    fn default() -> Self {
        ColorDecoder {
            tolerance: 12,
            min_joints: 3,
        }
    }
}

impl ColorDecoder {
    /// Per-pixel class: 0..18 joints, 18..35 limbs, [`NO_CLASS`] background.
    pub fn classify(&self, img: &RgbImage) -> Vec<u8> {
        self.scan(img).0
    }

    /// The class map and whether the image reads cleanly (see [`Self::reads_cleanly`]), in
    /// one pass over the palette.
    fn scan(&self, img: &RgbImage) -> (Vec<u8>, bool) {
        let tol = self.tolerance as f32;
        let (mut near, mut exact) = (0usize, 0usize);
        let classes = img
            .pixels()
            .map(|p| {
                let (c, d) = nearest_palette(p.0);
                near += (d <= 48.0) as usize;
                if d <= tol {
                    exact += 1;
                    c as u8
                } else {
                    NO_CLASS
                }
            })
            .collect();
        // the tolerance is below 48, so every exact pixel is a near one too
        (classes, exact > 0 && 2 * exact >= near.max(exact))
    }

    /// Whether the image carries the palette exactly enough for this decoder: of the pixels
    /// within 48 (per channel) of a palette colour, at least half are within the tolerance.
    /// True for a layout drawn by a rasteriser (no antialiasing) over black or a scene; false
    /// after an autoencoder, JPEG or heavy blur, where the network reads more.
    pub fn reads_cleanly(&self, img: &RgbImage) -> bool {
        self.scan(img).1
    }

    /// The poses of a layout image, in its own pixels.
    pub fn invert(&self, img: &RgbImage) -> Result<PoseSet> {
        check_image(img)?;
        Ok(self.decode(img, &self.scan(img).0))
    }

    /// [`Self::invert`] when the image reads cleanly, else `None`, classifying only once.
    pub fn invert_if_clean(&self, img: &RgbImage) -> Result<Option<PoseSet>> {
        check_image(img)?;
        let (classes, clean) = self.scan(img);
        Ok(clean.then(|| self.decode(img, &classes)))
    }

    /// The poses of `img` from its full-resolution class map.
    fn decode(&self, img: &RgbImage, classes: &[u8]) -> PoseSet {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let sw = stick_width(img.width(), img.height()) as f64;
        let people = decode_classes(classes, w, h, sw, self.min_joints);
        PoseSet {
            width: img.width(),
            height: img.height(),
            people,
        }
    }
}

// ------------------------------------------------------------------ training targets

/// The training target of one image: the class of every pixel of its padded working canvas
/// (`padded_height × padded_width`, row-major; the network's [`BACKGROUND`] class outside the
/// drawing), read from `poses` redrawn by the rasteriser at the working size, i.e. what the
/// layout shows there, later strokes covering earlier ones.
pub fn class_targets(poses: &PoseSet, g: &WorkGeometry) -> Vec<u8> {
    let set = poses.resized(g.width as u32, g.height as u32);
    let mut canvas = RgbImage::new(g.width as u32, g.height as u32);
    crate::pose::draw_on(&mut canvas, &set);
    let exact = ColorDecoder {
        tolerance: 0,
        ..Default::default()
    };
    let cls = exact.classify(&canvas);
    let mut t = vec![BACKGROUND as u8; g.padded_width * g.padded_height];
    for y in 0..g.height {
        for x in 0..g.width {
            let c = cls[y * g.width + x];
            if c != NO_CLASS {
                t[y * g.padded_width + x] = c;
            }
        }
    }
    t
}

/// One-hot targets `(n, h, w, 36)` from class labels (`0..36`, row-major per image).
pub fn one_hot(labels: &[u8], n: usize, h: usize, w: usize, device: &Device) -> Result<Tensor> {
    let mut v = vec![0f32; labels.len() * NUM_CLASSES];
    for (i, &c) in labels.iter().enumerate() {
        v[i * NUM_CLASSES + (c as usize).min(BACKGROUND)] = 1.0;
    }
    Ok(Tensor::from_vec(v, (n, h, w, NUM_CLASSES), device)?)
}

/// The training loss: softmax cross-entropy per pixel against one-hot `targets`, weighted by
/// the true class ([`CLASS_WEIGHTS`]: joints, limbs, background) and normalised by the total
/// weight. `logits` and `targets` are `(B, H, W, 36)`. Built from plain differentiable ops
/// (no fused softmax, which would drop the gradient).
pub fn loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let m = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&m)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp = shifted.broadcast_sub(&lse)?;
    let nll = (logp * targets)?.sum_keepdim(D::Minus1)?.neg()?;
    let mut wv = vec![CLASS_WEIGHTS[0]; NUM_JOINTS];
    wv.extend(std::iter::repeat_n(CLASS_WEIGHTS[1], NUM_LIMBS));
    wv.push(CLASS_WEIGHTS[2]);
    let wv = Tensor::from_vec(wv, NUM_CLASSES, logits.device())?;
    let w = targets.broadcast_mul(&wv)?.sum_keepdim(D::Minus1)?;
    Ok(((nll * &w)?.sum_all()? / w.sum_all()?)?)
}

/// Decodes a `DynamicImage` already in memory (any channel layout is converted like
/// [`read_layout`] does; grayscale is refused). `name` names it in messages.
pub fn layout_from_dynamic(img: DynamicImage, name: &str) -> Result<RgbImage> {
    match img.color().channel_count() {
        3 | 4 => Ok(img.into_rgb8()),
        n => Err(InverterError::Image {
            file: name.to_string(),
            msg: format!("has {n} channel(s); a layout image needs colour (RGB or RGBA)"),
        }),
    }
}

// ------------------------------------------------------------------ pose prior

/// Bone-length statistics of the body: for pairs of limbs (indices into `LIMBS`), the mean and
/// standard deviation of the log ratio of their drawn lengths, over 20,000 people of the
/// synthetic pose model (3-D bodies of sampled proportions in every action, projected, then
/// rotated, scaled, mirrored and jittered as the inverter's training layouts are; the trainer's
/// `pose_prior_is_the_generators_statistics` test recomputes them). Mirrored limbs (the two
/// sides' bones, mean 0), neighbouring bones of one arm or leg, and the face against the trunk.
pub const POSE_PRIOR: [(usize, usize, f64, f64); 28] = [
    (0, 1, 0.000, 0.503),    // n 43158
    (2, 4, 0.005, 0.390),    // n 38955
    (3, 5, 0.002, 0.405),    // n 35591
    (6, 9, 0.000, 0.072),    // n 43158
    (7, 10, 0.001, 0.179),   // n 38895
    (8, 11, 0.001, 0.155),   // n 35590
    (13, 15, -0.003, 0.467), // n 21727
    (14, 16, -0.009, 0.706), // n 4211
    (2, 3, 0.160, 0.330),    // n 38955
    (4, 5, 0.159, 0.335),    // n 38961
    (7, 8, -0.074, 0.274),   // n 38930
    (10, 11, -0.075, 0.278), // n 38922
    (6, 7, 0.321, 0.267),    // n 40889
    (9, 10, 0.323, 0.271),   // n 40919
    (0, 6, -1.637, 0.565),   // n 43158
    (1, 9, -1.638, 0.565),   // n 43158
    (12, 13, 0.718, 0.553),  // n 27318
    (13, 14, -0.509, 0.656), // n 17548
    (15, 16, -0.510, 0.654), // n 17419
    (2, 6, -0.719, 0.269),   // n 40956
    (4, 9, -0.724, 0.278),   // n 40931
    (12, 6, -1.315, 0.314),  // n 33478
    (13, 6, -2.072, 0.391),  // n 27318
    (15, 6, -2.062, 0.379),  // n 27320
    (14, 6, -1.607, 0.397),  // n 18413
    (16, 6, -1.563, 0.416),  // n 18286
    (14, 12, -0.234, 0.396), // n 17548
    (16, 12, -0.236, 0.389), // n 17419
];

/// The most one [`POSE_PRIOR`] term may add (a squared z-score): a foreshortened bone or a
/// jittered small person is unlikely, not impossible.
pub const PRIOR_CAP: f64 = 16.0;

/// How much a unit of [`implausibility`] weighs against a unit of limb evidence in
/// [`regroup_by_prior`]. On 500 held-out layouts (seed 7) and 300 of seeds 11 and 23, 0.02 /
/// 0.03 / 0.05 gave exact-class PCK 0.9822 / 0.9818 / 0.9819, 0.9868 / 0.9870 / 0.9868 and
/// 0.9774 / 0.9797 / 0.9794 (before gifts and the face terms; INVERTER.md).
pub const PRIOR_WEIGHT: f64 = 0.03;

/// The least gain (limb evidence less [`PRIOR_WEIGHT`] × the fall in implausibility) for which
/// [`regroup_by_prior`] moves joints.
pub const PRIOR_MARGIN: f64 = 0.05;

/// How unlike a body a person's proportions are: the sum over the [`POSE_PRIOR`] pairs whose
/// four joints it holds of the squared z-score of the pair's log length ratio (at most
/// [`PRIOR_CAP`]) less 1, its expectation, so that a bone that fits the body lowers it and one
/// that does not raises it. Lengths are at least `floor` (a stick width: below it the drawing
/// does not resolve them).
pub fn implausibility(p: &Pose, floor: f64) -> f64 {
    let len = |k: usize| p.limb_length(k).map(|l| l.max(floor));
    POSE_PRIOR
        .iter()
        .filter_map(|&(k, l, mean, sd)| {
            let z = ((len(k)? / len(l)?).ln() - mean) / sd;
            Some((z * z).min(PRIOR_CAP) - 1.0)
        })
        .sum()
}

/// The joints a regrouping moves together: the neck alone, and each other joint with every
/// joint beyond it in the skeleton tree (`LIMBS` runs from the neck outwards), e.g. an elbow
/// with its wrist, a shoulder with its arm, an eye with its ear.
fn movable_sets() -> Vec<[bool; NUM_JOINTS]> {
    (0..NUM_JOINTS)
        .map(|j| {
            let mut set = [false; NUM_JOINTS];
            set[j] = true;
            if j != 1 {
                for &(a, b) in &LIMBS {
                    if set[a] {
                        set[b] = true;
                    }
                }
            }
            set
        })
        .collect()
}

/// The summed `limb` scores of the limbs of `x` and `y` with one end in `set` and the other
/// outside, and how many there are; `None` when one of them is not a limb at all.
fn crossing_evidence(
    set: &[bool; NUM_JOINTS],
    x: &Pose,
    y: &Pose,
    limb: &impl Fn(usize, &Candidate, &Candidate) -> Option<f64>,
) -> Option<(f64, usize)> {
    let mut total = 0.0;
    let mut n = 0;
    for (k, &(a, b)) in LIMBS.iter().enumerate() {
        if set[a] == set[b] {
            continue;
        }
        for z in [x, y] {
            if let (Some(u), Some(v)) = (z.joints[a], z.joints[b]) {
                total += limb(k, &Candidate::held(u), &Candidate::held(v))?;
                n += 1;
            }
        }
    }
    Some((total, n))
}

/// Regroups joints between people where the body tells better than the pixels. Overlapping
/// people's limbs of one type share a colour, so a link to the wrong person's wrist, knee or
/// ear can score as well as the right one, or better where the right one runs under later
/// strokes. For every two people and every movable set of joints ([`movable_sets`]), the set is
/// exchanged between them (or given to the one lacking it, from the one holding it) when the
/// limbs crossing the set's edge stay limbs, as many as before, and the gain, [`PRIOR_WEIGHT`]
/// × the fall in the two people's summed [`implausibility`] less the fall in those limbs'
/// summed scores, exceeds [`PRIOR_MARGIN`]. Repeated (at most three rounds) while it moves
/// joints.
///
/// On 500 held-out clean layouts (seed 7, with photos), the exact-class ceiling 0.9756 ->
/// 0.9832 (joints at another person's same joint 193 -> 84); the network as shipped then
/// 0.9716 -> 0.9794 (INVERTER.md).
fn regroup_by_prior(
    people: &mut [Pose],
    limb: &impl Fn(usize, &Candidate, &Candidate) -> Option<f64>,
    sw: f64,
) {
    let sets = movable_sets();
    for _ in 0..3 {
        let mut moved = false;
        for set in &sets {
            for p in 0..people.len() {
                for q in 0..people.len() {
                    let holds =
                        |i: usize| (0..NUM_JOINTS).any(|j| set[j] && people[i].joints[j].is_some());
                    // an exchange once per pair (p < q, both hold some of the set); a gift from
                    // p, which holds some, to q, which holds none
                    if p == q || !holds(p) || (holds(q) && p > q) {
                        continue;
                    }
                    let (mut np, mut nq) = (people[p].clone(), people[q].clone());
                    for j in (0..NUM_JOINTS).filter(|&j| set[j]) {
                        std::mem::swap(&mut np.joints[j], &mut nq.joints[j]);
                    }
                    let Some((own, n_own)) = crossing_evidence(set, &people[p], &people[q], limb)
                    else {
                        continue;
                    };
                    let Some((moved_score, n_moved)) = crossing_evidence(set, &np, &nq, limb)
                    else {
                        continue;
                    };
                    if n_own != n_moved || n_own == 0 {
                        continue;
                    }
                    let before = implausibility(&people[p], sw) + implausibility(&people[q], sw);
                    let after = implausibility(&np, sw) + implausibility(&nq, sw);
                    if PRIOR_WEIGHT * (before - after) - (own - moved_score) > PRIOR_MARGIN {
                        people[p] = np;
                        people[q] = nq;
                        moved = true;
                    }
                }
            }
        }
        if !moved {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pose::draw_layout;

    fn standing(x: f64, y: f64, s: f64) -> Pose {
        // a front-facing person, head at (x, y), height about 8s
        let pts = [
            (0.0, 0.0),
            (0.0, 1.0),
            (-1.0, 1.0),
            (-1.3, 2.5),
            (-1.5, 4.0),
            (1.0, 1.0),
            (1.3, 2.5),
            (1.5, 4.0),
            (-0.6, 4.0),
            (-0.7, 6.0),
            (-0.7, 8.0),
            (0.6, 4.0),
            (0.7, 6.0),
            (0.7, 8.0),
            (-0.25, -0.25),
            (0.25, -0.25),
            (-0.5, -0.1),
            (0.5, -0.1),
        ];
        Pose::from_joints(std::array::from_fn(|j| {
            Some(Keypoint::new(x + s * pts[j].0, y + s * pts[j].1))
        }))
    }

    #[test]
    fn colour_decoder_recovers_a_clean_layout() {
        let mut gt = PoseSet::new(512, 384);
        gt.people.push(standing(120.0, 60.0, 30.0));
        let mut second = standing(360.0, 80.0, 25.0);
        second.joints[4] = None; // a missing wrist
        gt.people.push(second);
        let img = draw_layout(None, &gt);
        let pred = ColorDecoder::default().invert(&img).unwrap();
        assert_eq!(pred.people.len(), 2);
        let r = crate::metrics::pose::pck(&pred, &gt, 0.05);
        assert_eq!(r.correct, r.total, "{r:?}");
        assert!(pred.people[1].joints[4].is_none());
        // sub-pixel: every joint within 1.5 px
        for (p, g) in pred.people.iter().zip(&gt.people) {
            for j in 0..NUM_JOINTS {
                if let (Some(a), Some(b)) = (p.joints[j], g.joints[j]) {
                    assert!(
                        (a.x - b.x).abs() < 1.5 && (a.y - b.y).abs() < 1.5,
                        "joint {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_joint_mostly_covered_by_a_later_one_is_still_found() {
        // a profile head: the left ear (drawn after the right one) covers all of the right
        // ear's circle but a sliver below the size that may found a person
        let mut p = standing(120.0, 60.0, 30.0);
        let r_ear = p.joints[16].unwrap();
        p.joints[17] = Some(Keypoint::new(r_ear.x + 1.0, r_ear.y));
        let mut gt = PoseSet::new(512, 384);
        gt.people.push(p);
        let img = draw_layout(None, &gt);
        let dec = ColorDecoder::default();
        let cls = dec.classify(&img);
        let shown = cls.iter().filter(|&&c| c == 16).count();
        let sw = stick_width(512, 384) as f64;
        assert!(
            shown > 0 && (shown as f64) < 0.2 * std::f64::consts::PI * sw * sw,
            "{shown} pixels of the right ear show"
        );
        let pred = dec.invert(&img).unwrap();
        assert_eq!(pred.people.len(), 1);
        let k = pred.people[0].joints[16].expect("the covered right ear");
        assert!(
            (k.x - r_ear.x).abs() < 4.0 && (k.y - r_ear.y).abs() < 4.0,
            "{k:?} vs {r_ear:?}"
        );
    }

    #[test]
    fn joints_whose_circles_are_lost_are_found_at_their_limbs_ends() {
        let mut gt = PoseSet::new(512, 384);
        gt.people.push(standing(120.0, 60.0, 30.0));
        let img = draw_layout(None, &gt);
        let exact = ColorDecoder {
            tolerance: 0,
            ..Default::default()
        };
        // the right elbow's and wrist's circles blurred away, as an autoencoder does
        let mut cls = exact.classify(&img);
        for c in cls.iter_mut() {
            if *c == 3 || *c == 4 {
                *c = NO_CLASS;
            }
        }
        let sw = stick_width(512, 384) as f64;
        let people = decode_classes(&cls, 512, 384, sw, 3);
        assert_eq!(people.len(), 1, "{people:?}");
        let tol = 0.05 * crate::metrics::pose::bbox_diag(&gt.people[0]).unwrap();
        for j in [3, 4] {
            let (t, k) = (gt.people[0].joints[j].unwrap(), people[0].joints[j]);
            let k = k.unwrap_or_else(|| panic!("joint {j} missing: {people:?}"));
            let d = (k.x - t.x).hypot(k.y - t.y);
            assert!(d <= tol, "joint {j} {d:.1} px off (tolerance {tol:.1})");
        }
        // without the forearm's pixels nothing leads to the wrist: it stays missing
        let forearm = NUM_JOINTS + LIMBS.iter().position(|&l| l == (3, 4)).unwrap();
        for c in cls.iter_mut() {
            if *c as usize == forearm {
                *c = NO_CLASS;
            }
        }
        let people = decode_classes(&cls, 512, 384, sw, 3);
        assert_eq!(people.len(), 1, "{people:?}");
        assert!(people[0].joints[3].is_some());
        assert_eq!(people[0].joints[4], None, "{people:?}");
    }

    #[test]
    fn a_drawn_layouts_exact_colours_give_its_classes_and_a_blurred_one_is_read_by_the_network() {
        let dev = Device::Cpu;
        let mut net = PoseInverter::embedded(&dev).unwrap();
        let mut gt = PoseSet::new(600, 480);
        gt.people.push(standing(150.0, 60.0, 40.0));
        gt.people.push(standing(400.0, 90.0, 35.0));
        let img = draw_layout(None, &gt);
        let exact = ColorDecoder {
            tolerance: EXACT_TOLERANCE,
            ..Default::default()
        }
        .classify(&img);
        // with the colours' evidence: every pixel as drawn, at the image's own size
        let map = net.classes(&img).unwrap();
        assert_eq!((map.geometry.width, map.geometry.height), (600, 480));
        let wrong = map
            .classes
            .iter()
            .zip(&exact)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(wrong, 0, "{wrong} pixels differ from the drawn classes");
        assert_eq!(net.invert(&img).unwrap().people.len(), 2);
        // the network alone, at its working size
        net.exact_colour_bonus = 0.0;
        let map = net.classes(&img).unwrap();
        assert_eq!((map.geometry.width, map.geometry.height), (256, 205));
        // a blurred layout carries few exact pixels: the network's reading stands
        net.exact_colour_bonus = EXACT_COLOUR_BONUS;
        let blurred = imageops::blur(&img, 1.5);
        let a = net.classes(&blurred).unwrap();
        net.exact_colour_bonus = 0.0;
        let b = net.classes(&blurred).unwrap();
        assert_eq!(a.geometry, b.geometry);
        assert!(a.classes == b.classes);
    }

    #[test]
    fn leg_chains_the_pixels_cannot_tell_apart_go_to_the_person_whose_other_hip_is_beside_them() {
        // two people one above the other, torsos along one line: each neck reaches either
        // right hip through the same drawn torso, and the grouping took the far one
        let (a, b) = (standing(100.0, 40.0, 20.0), standing(100.0, 90.0, 20.0));
        let (mut p, mut q) = (a.clone(), b.clone());
        for j in [8, 9, 10] {
            p.joints[j] = b.joints[j];
            q.joints[j] = a.joints[j];
        }
        let ambiguous = |_: usize, _: &Candidate, _: &Candidate| Some(1.0);
        let mut people = vec![p.clone(), q.clone()];
        untangle_chains(&mut people, &ambiguous);
        assert_eq!(people, vec![a.clone(), b.clone()]);
        // when the pixels do tell (only the limbs as grouped are drawn), they win
        let drawn: Vec<(usize, f64, f64)> = [&p, &q]
            .iter()
            .flat_map(|o| {
                [(6, 8), (9, 11)].map(|(k, j)| (k, o.joints[1].unwrap().y, o.joints[j].unwrap().y))
            })
            .collect();
        let own_only = |k: usize, x: &Candidate, y: &Candidate| {
            Some(if drawn.contains(&(k, x.y, y.y)) {
                1.0
            } else {
                0.2
            })
        };
        let mut people = vec![p.clone(), q.clone()];
        untangle_chains(&mut people, &own_only);
        assert_eq!(people, vec![p, q]);
    }

    #[test]
    fn a_forearm_the_pixels_cannot_place_goes_to_the_person_whose_body_it_fits() {
        // a tall and a short person side by side, their right forearms exchanged: both links
        // score alike, and only the body's proportions tell them apart
        let (a, b) = (standing(100.0, 40.0, 20.0), standing(140.0, 70.0, 12.0));
        let (mut p, mut q) = (a.clone(), b.clone());
        for j in [3, 4] {
            p.joints[j] = b.joints[j];
            q.joints[j] = a.joints[j];
        }
        assert!(implausibility(&p, 1.0) > implausibility(&a, 1.0) + 10.0);
        let ambiguous = |_: usize, _: &Candidate, _: &Candidate| Some(1.0);
        let mut people = vec![p.clone(), q.clone()];
        regroup_by_prior(&mut people, &ambiguous, 1.0);
        assert_eq!(people, vec![a.clone(), b.clone()]);
        // the truth stays as it is
        let mut people = vec![a.clone(), b.clone()];
        regroup_by_prior(&mut people, &ambiguous, 1.0);
        assert_eq!(people, vec![a.clone(), b.clone()]);
        // when the pixels do tell (the links as grouped are drawn, the others barely), they win
        let grouped: Vec<_> = [&p, &q]
            .iter()
            .flat_map(|o| [(o.joints[2], o.joints[3]), (o.joints[3], o.joints[4])])
            .collect();
        let drawn = |k: usize, x: &Candidate, y: &Candidate| {
            let key = (Some(Keypoint::new(x.x, x.y)), Some(Keypoint::new(y.x, y.y)));
            Some(if ![2, 3].contains(&k) || grouped.contains(&key) {
                1.0
            } else {
                0.1
            })
        };
        let mut people = vec![p.clone(), q.clone()];
        regroup_by_prior(&mut people, &drawn, 1.0);
        assert_eq!(people, vec![p, q]);
    }

    #[test]
    fn an_ear_held_by_the_wrong_person_is_given_to_the_one_it_fits() {
        let (a, b) = (standing(100.0, 40.0, 20.0), standing(180.0, 40.0, 20.0));
        // a holds b's left ear and not its own; b has none
        let (mut p, mut q) = (a.clone(), b.clone());
        p.joints[17] = b.joints[17];
        q.joints[17] = None;
        let ambiguous = |_: usize, _: &Candidate, _: &Candidate| Some(1.0);
        let mut people = vec![p, q];
        regroup_by_prior(&mut people, &ambiguous, 1.0);
        let mut want_a = a.clone();
        want_a.joints[17] = None;
        assert_eq!(people, vec![want_a, b]);
    }

    #[test]
    fn a_drawn_layout_keeps_a_person_of_four_joints_that_a_misread_map_would_drop() {
        let net = PoseInverter::embedded(&Device::Cpu).unwrap();
        let mut gt = PoseSet::new(480, 360);
        gt.people.push(standing(120.0, 60.0, 30.0));
        // the head and shoulders of someone mostly out of frame
        let whole = standing(360.0, 280.0, 30.0);
        gt.people.push(Pose::from_joints(std::array::from_fn(|j| {
            [0, 1, 2, 5].contains(&j).then(|| whole.joints[j]).flatten()
        })));
        let img = draw_layout(None, &gt);
        let map = net.classes(&img).unwrap();
        assert!(map.drawn, "a layout drawn on black reads as drawn");
        let read = net.decode(&map, img.width(), img.height());
        assert_eq!(read.people.len(), 2, "{:?}", read.people);
        assert!(read.people.iter().any(|p| p.present_count() == 4));
        // the same map taken for a misread one: the group is below the network's min_joints
        let misread = ClassMap {
            drawn: false,
            ..map
        };
        assert_eq!(
            net.decode(&misread, img.width(), img.height()).people.len(),
            1
        );
    }

    #[test]
    fn two_halves_meeting_at_a_split_neck_are_one_person() {
        let a = standing(120.0, 60.0, 30.0);
        let (mut left, mut right) = (Pose::default(), Pose::default());
        for j in [1, 2, 3, 4, 8, 9, 10] {
            left.joints[j] = a.joints[j];
        }
        for j in [0, 5, 6, 7, 11, 12, 13, 14, 15, 16, 17] {
            right.joints[j] = a.joints[j];
        }
        let neck = a.joints[1].unwrap();
        right.joints[1] = Some(Keypoint::new(neck.x + 5.0, neck.y + 2.0));
        // a whole person beside them, and a fragment whose neck is far from theirs
        let b = standing(300.0, 60.0, 30.0);
        let mut far = Pose::default();
        for j in [1, 2, 3, 4] {
            far.joints[j] = a.joints[j].map(|k| Keypoint::new(k.x, k.y + 100.0));
        }
        let mut people = vec![left, right.clone(), b.clone(), far.clone()];
        join_halves(&mut people, 16.0);
        assert_eq!(people.len(), 3, "{people:?}");
        let whole = &people[0];
        assert_eq!(whole.present_count(), NUM_JOINTS);
        assert_eq!(whole.joints[1], right.joints[1], "the larger half's neck");
        assert_eq!(whole.joints[2], a.joints[2]);
        assert_eq!(people[1], b);
        assert_eq!(people[2], far);
    }

    #[test]
    fn a_copy_grown_along_shared_blobs_is_folded_into_its_person() {
        let a = standing(120.0, 60.0, 30.0);
        // a stray head fragment that took a's neck and hips by sharing: 3 of a's blobs, 3 of
        // its own (a second nose a pixel away, and the eyes a lacks)
        let mut a_no_eyes = a.clone();
        a_no_eyes.joints[14] = None;
        a_no_eyes.joints[15] = None;
        let mut copy = Pose::default();
        for j in [1, 8, 11] {
            copy.joints[j] = a.joints[j];
        }
        let nose = a.joints[0].unwrap();
        copy.joints[0] = Some(Keypoint::new(nose.x + 1.0, nose.y));
        copy.joints[14] = a.joints[14];
        copy.joints[15] = a.joints[15];
        // another person whose hip blob is also a's: one joint of many, a separate person
        let mut b = standing(300.0, 60.0, 30.0);
        b.joints[8] = a.joints[8];
        let mut people = vec![a_no_eyes.clone(), copy, b.clone()];
        absorb_duplicates(&mut people);
        assert_eq!(people.len(), 2, "{people:?}");
        assert_eq!(people[1], b);
        let merged = &people[0];
        assert_eq!(
            merged.joints[0], a_no_eyes.joints[0],
            "a keeps its own nose"
        );
        assert_eq!(merged.joints[14], a.joints[14]);
        assert_eq!(merged.joints[15], a.joints[15]);
        assert_eq!(merged.present_count(), a.present_count());
    }

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

    #[test]
    fn targets_are_the_drawn_classes_at_the_working_size() {
        let mut gt = PoseSet::new(512, 512);
        gt.people.push(standing(256.0, 80.0, 40.0));
        let g = WorkGeometry::new(512, 512, 256);
        let t = class_targets(&gt, &g);
        assert_eq!(t.len(), 256 * 256);
        let at =
            |x: f64, y: f64| t[(g.to_work(y) as usize) * g.padded_width + g.to_work(x) as usize];
        // the nose joint, the neck-hip limb (6) half-way down, background far away
        let k = gt.people[0].joints[0].unwrap();
        assert_eq!(at(k.x, k.y), 0);
        let (a, b) = (
            gt.people[0].joints[1].unwrap(),
            gt.people[0].joints[8].unwrap(),
        );
        assert_eq!(
            at((a.x + b.x) / 2.0, (a.y + b.y) / 2.0) as usize,
            NUM_JOINTS + 6
        );
        assert_eq!(at(10.0, 500.0) as usize, BACKGROUND);
        // decoding the targets recovers the person (in working pixels)
        let cls: Vec<u8> = t
            .iter()
            .map(|&c| {
                if c as usize == BACKGROUND {
                    NO_CLASS
                } else {
                    c
                }
            })
            .collect();
        let people = decode_classes(&cls, 256, 256, g.stick_width(), 1);
        assert_eq!(people.len(), 1);
        let p = people[0].joints[0].unwrap();
        assert!((g.to_image(p.x) - k.x).abs() < 2.5 && (g.to_image(p.y) - k.y).abs() < 2.5);
    }

    #[test]
    fn the_inference_path_gives_the_training_paths_logits() {
        let dev = Device::Cpu;
        let cfg = InverterConfig {
            work_size: 64,
            stem: 6,
            width: 10,
            blocks: 2,
        };
        let vm = PoseInverter::seeded_varmap(&cfg, 5, &dev).unwrap();
        let net = PoseInverter::from_varmap(&vm, &cfg, &dev).unwrap();
        let x = Tensor::rand(-1f32, 1f32, (2, 20, 16, INPUT_CHANNELS), &dev).unwrap();
        let a = net.forward(&x).unwrap();
        let b = net.forward_infer(&x).unwrap();
        assert_eq!(a.dims(), b.dims());
        let d = crate::model::layers::max_abs_diff(&a, &b);
        assert!(d < 1e-4, "max logit difference {d}");
        // and the shipped weights read the same class map both ways on a real layout
        let shipped = PoseInverter::embedded(&dev).unwrap();
        let mut gt = PoseSet::new(200, 160);
        gt.people.push(standing(60.0, 30.0, 14.0));
        let g = WorkGeometry::new(200, 160, shipped.config().work_size);
        let work = to_working(&draw_layout(None, &gt), &g);
        let x = input_tensor(&work, &g, &dev).unwrap();
        let best = |t: Tensor| -> Vec<u32> {
            t.argmax(D::Minus1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let a = best(shipped.forward(&x).unwrap());
        let b = best(shipped.forward_infer(&x).unwrap());
        let same = a.iter().zip(&b).filter(|(p, q)| p == q).count();
        assert!(
            same * 1000 >= a.len() * 999,
            "{same} of {} pixels agree",
            a.len()
        );
    }

    #[test]
    fn the_network_gives_class_logits_per_pixel_and_its_loss_has_gradients() {
        let cfg = InverterConfig {
            work_size: 64,
            stem: 4,
            width: 8,
            blocks: 1,
        };
        let dev = Device::Cpu;
        let vm = PoseInverter::seeded_varmap(&cfg, 1, &dev).unwrap();
        let net = PoseInverter::new(VarBuilder::from_varmap(&vm, DType::F32, &dev), &cfg).unwrap();
        let x = Tensor::rand(-1f32, 1f32, (2, 16, 12, INPUT_CHANNELS), &dev).unwrap();
        let y = net.forward(&x).unwrap();
        assert_eq!(y.dims(), &[2, 16, 12, NUM_CLASSES]);
        let labels: Vec<u8> = (0..2 * 16 * 12).map(|i| (i % NUM_CLASSES) as u8).collect();
        let t = one_hot(&labels, 2, 16, 12, &dev).unwrap();
        let l = loss(&y, &t).unwrap();
        let v = l.to_scalar::<f32>().unwrap();
        // near-uniform logits at init: the loss is about ln 36
        assert!((v - (NUM_CLASSES as f32).ln()).abs() < 1.0, "{v}");
        let grads = l.backward().unwrap();
        // every parameter gets a finite, non-zero gradient (no fused op cuts it)
        for (name, var) in vm.data().lock().unwrap().iter() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let n: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(n.is_finite() && n > 0.0, "{name}: |grad| sum {n}");
        }
        // a saved network loads back and gives the same logits
        let dir = tempfile::tempdir().unwrap();
        let m = PoseInverter::from_varmap(&vm, &cfg, &dev).unwrap();
        let f = dir.path().join("inverter.safetensors");
        m.save(&f).unwrap();
        let back = PoseInverter::load(&f, &dev).unwrap();
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(back.forward(&x).unwrap()), flat(y));
    }

    #[test]
    fn an_older_heatmap_file_is_refused_by_name() {
        let dev = Device::Cpu;
        let mut t = HashMap::new();
        t.insert(
            CONFIG_TENSOR.to_string(),
            Tensor::new(&[256f32, 16.0, 24.0, 4.0], &dev).unwrap(),
        );
        let msg = PoseInverter::from_tensors(t, "old.safetensors", &dev)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("old.safetensors") && msg.contains("older heatmap-format"),
            "{msg}"
        );
    }

    #[test]
    fn clean_layouts_read_cleanly_and_blurred_ones_do_not() {
        let mut gt = PoseSet::new(256, 256);
        gt.people.push(standing(128.0, 40.0, 20.0));
        let img = draw_layout(None, &gt);
        let dec = ColorDecoder::default();
        assert!(dec.reads_cleanly(&img));
        assert!(!dec.reads_cleanly(&imageops::blur(&img, 1.5)));
        assert!(
            !dec.reads_cleanly(&RgbImage::new(8, 8)),
            "black has no palette pixel"
        );
    }

    #[test]
    fn the_embedded_network_loads() {
        let net = PoseInverter::embedded(&Device::Cpu).unwrap();
        assert!(net.num_params() > 0);
    }
}
