//! PoseInverter: layout image -> editable multi-person keypoints.
//!
//! The paper fine-tunes a 7B VLM for this. We use a small fully-convolutional keypoint network
//! ([`PoseInverter`]) plus a training-free colour-segmentation baseline ([`ColorDecoder`]); both
//! share the grouping step, so the comparison between them measures only the per-pixel part.
//!
//! **Network.** The image is resized so that its longest side is `work_size` (256; layouts are
//! scale-consistent because the stick width scales with the image), padded to a multiple of 4
//! and run channels-last:
//! * pixel-unshuffle ×2, 1×1 conv to `stem` channels + SiLU (stride 2);
//! * pixel-unshuffle ×2, 1×1 conv to `width` channels + SiLU (stride 4);
//! * `blocks` residual blocks of two 3×3 convolutions (stride 4);
//! * a 1×1 head to 4 × 35 channels and pixel-shuffle back to stride 2, plus a 1×1 skip from the
//!   stride-2 stem features.
//!
//! The 35 output channels are logits of 18 joint heatmaps (a Gaussian of σ = 1 cell at each
//! visible joint) and 17 **limb affinity fields**: the probability that a cell is covered by
//! limb `k` as drawn. They are scalar affinity fields (no direction vector): a candidate pair
//! of joints is scored by the mean field along the segment between them, which is where the
//! rasteriser draws the limb ellipse.
//!
//! **Decoding.** Joint peaks are local maxima above a threshold, refined to sub-pixel accuracy
//! by a quadratic fit of the log-probability over the 3×3 neighbourhood (exact for a Gaussian
//! peak). People are assembled greedily limb by limb from the neck outwards (the OpenPose
//! order of `LIMBS`). A joint that is not found is missing. Coordinates come back in the
//! input image's own pixels.
//!
//! Weights live in a model directory's `inverter.safetensors`; the architecture is stored in
//! the file (`config` tensor), so any trained size loads. The shipped default is embedded.

use crate::error::PoseError;
use crate::model::layers::{shuffle2, unshuffle2, Lin};
use crate::model::lora::SplitMix64;
use crate::pose::skeleton::{limb_color, COLORS, LIMBS, NUM_JOINTS, NUM_LIMBS};
use crate::pose::{stick_width, Keypoint, Pose, PoseSet};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use image::{imageops, DynamicImage, RgbImage};
use std::collections::HashMap;
use std::path::Path;

/// Output channels: 18 joint heatmaps, then 17 limb affinity fields.
pub const OUT_CHANNELS: usize = NUM_JOINTS + NUM_LIMBS;
/// Output stride of the maps, in working pixels.
pub const MAP_STRIDE: usize = 2;
/// Heatmap Gaussian σ, in map cells.
pub const HEATMAP_SIGMA: f64 = 1.0;
/// Name of the tensor that stores the architecture.
const CONFIG_TENSOR: &str = "config";

/// The shipped network (`assets/inverter/inverter.safetensors`, not yet accurate: see INVERTER.md
/// there), embedded so that `--network` works in a fresh clone.
pub const DEFAULT_WEIGHTS: &[u8] = include_bytes!("../../assets/inverter/inverter.safetensors");

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
    /// The geometry of a `w`×`h` image at working size `work` (longest side).
    pub fn new(w: u32, h: u32, work: usize) -> Self {
        let scale = work as f64 / w.max(h) as f64;
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

    /// Map size (cells).
    pub fn map_size(&self) -> (usize, usize) {
        (
            self.padded_width / MAP_STRIDE,
            self.padded_height / MAP_STRIDE,
        )
    }

    /// Image pixel coordinate -> map cell coordinate (pixel i has its centre at coordinate i).
    pub fn to_map(&self, x: f64) -> f64 {
        let xw = (x + 0.5) * self.scale - 0.5;
        (xw - (MAP_STRIDE as f64 - 1.0) / 2.0) / MAP_STRIDE as f64
    }

    /// Map cell coordinate -> image pixel coordinate.
    pub fn from_map(&self, u: f64) -> f64 {
        let xw = u * MAP_STRIDE as f64 + (MAP_STRIDE as f64 - 1.0) / 2.0;
        (xw + 0.5) / self.scale - 0.5
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

/// A working image as network input `(1, padded_h, padded_w, 3)` in [-1, 1], zero-padded
/// (black) on the right and bottom.
pub fn input_tensor(work: &RgbImage, g: &WorkGeometry, device: &Device) -> Result<Tensor> {
    let (pw, ph) = (g.padded_width, g.padded_height);
    let mut data = vec![-1f32; pw * ph * 3];
    let w = work.width() as usize;
    for (y, row) in work.as_raw().chunks_exact(w * 3).enumerate() {
        let dst = &mut data[y * pw * 3..][..w * 3];
        for (d, s) in dst.iter_mut().zip(row) {
            *d = *s as f32 / 127.5 - 1.0;
        }
    }
    Ok(Tensor::from_vec(data, (1, ph, pw, 3), device)?)
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
            stem: 16,
            width: 24,
            blocks: 4,
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
        lin("stem", 12, self.stem, 1.0);
        lin("down", 4 * self.stem, self.width, 1.0);
        for b in 0..self.blocks {
            lin(&format!("block{b}.conv1"), 9 * self.width, self.width, 1.0);
            lin(&format!("block{b}.conv2"), 9 * self.width, self.width, 0.1);
        }
        lin("head", self.width, 4 * OUT_CHANNELS, 1.0);
        lin("skip", self.stem, OUT_CHANNELS, 1.0);
        v
    }

    fn to_tensor(self, device: &Device) -> Result<Tensor> {
        let v = [self.work_size, self.stem, self.width, self.blocks].map(|x| x as f32);
        Ok(Tensor::from_vec(v.to_vec(), 4, device)?)
    }
}

/// A tensor of the network, or the missing one named.
fn lin(p: &HashMap<String, Tensor>, name: &str) -> Result<Lin> {
    Lin::get(p, name).map_err(|n| InverterError::Weights {
        file: "inverter".into(),
        msg: format!("missing tensor `{n}`"),
    })
}

/// The keypoint network; see the module docs.
pub struct PoseInverter {
    cfg: InverterConfig,
    stem: Lin,
    down: Lin,
    blocks: Vec<(Lin, Lin)>,
    head: Lin,
    skip: Lin,
    params: HashMap<String, Tensor>,
    device: Device,
    /// Joint peak threshold (probability).
    pub peak_threshold: f32,
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
            head: lin(&params, "head")?,
            skip: lin(&params, "skip")?,
            blocks,
            params,
            cfg: *cfg,
            device: device.clone(),
            peak_threshold: 0.3,
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
        if c.len() != 4
            || c.iter()
                .any(|v| !v.is_finite() || *v < 0.0 || v.fract() != 0.0)
        {
            return Err(bad(format!(
                "tensor `{CONFIG_TENSOR}` must hold 4 non-negative integers (work_size, stem, width, blocks), found {c:?}"
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

    /// The embedded default (the shipped tiny model's inverter).
    pub fn embedded(device: &Device) -> Result<Self> {
        Self::from_bytes(
            DEFAULT_WEIGHTS,
            "embedded assets/inverter/inverter.safetensors",
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

    /// Logits `(B, H/2, W/2, 35)` for channels-last input `(B, H, W, 3)` in [-1, 1], H and W
    /// multiples of 4. Differentiable when the parameters are `Var`s.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, h, w, c) = x.dims4()?;
        if c != 3 || h % 4 != 0 || w % 4 != 0 || h == 0 || w == 0 {
            return Err(InverterError::Image {
                file: "network input".into(),
                msg: format!(
                    "shape {:?}: expected (B, H, W, 3) with H, W non-zero multiples of 4",
                    x.dims()
                ),
            });
        }
        let s2 = self.stem.forward(&unshuffle2(x)?)?.silu()?;
        let mut h4 = self.down.forward(&unshuffle2(&s2)?)?.silu()?;
        if !self.blocks.is_empty() {
            let mut xc = h4.permute((0, 3, 1, 2))?.contiguous()?;
            for (c1, c2) in &self.blocks {
                let r = c1.conv3x3_nchw(&xc)?.silu()?;
                xc = (xc + c2.conv3x3_nchw(&r)?)?;
            }
            h4 = xc.permute((0, 2, 3, 1))?.contiguous()?;
        }
        let out = shuffle2(&self.head.forward(&h4)?)?;
        Ok((out + self.skip.forward(&s2)?)?)
    }

    /// Probability maps of one image.
    pub fn maps(&self, img: &RgbImage) -> Result<Maps> {
        check_image(img)?;
        let g = WorkGeometry::new(img.width(), img.height(), self.cfg.work_size);
        let work = to_working(img, &g);
        let x = input_tensor(&work, &g, &self.device)?;
        let logits = self.forward(&x)?;
        let probs = candle_nn::ops::sigmoid(&logits)?;
        let data: Vec<f32> = probs.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
        let (mw, mh) = g.map_size();
        Ok(Maps {
            geometry: g,
            width: mw,
            height: mh,
            data,
        })
    }

    /// The poses of a layout image, in the image's own pixels.
    pub fn invert(&self, img: &RgbImage) -> Result<PoseSet> {
        let maps = self.maps(img)?;
        Ok(maps.decode(img.width(), img.height(), self.peak_threshold))
    }
}

/// Network outputs: probabilities, channels-last `(height, width, 35)`.
#[derive(Clone, Debug)]
pub struct Maps {
    pub geometry: WorkGeometry,
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Maps {
    fn at(&self, x: usize, y: usize, c: usize) -> f32 {
        self.data[(y * self.width + x) * OUT_CHANNELS + c]
    }

    /// Bilinear sample of channel `c` at map coordinates (0 outside).
    fn sample(&self, u: f64, v: f64, c: usize) -> f32 {
        if u < -0.5 || v < -0.5 || u > self.width as f64 - 0.5 || v > self.height as f64 - 0.5 {
            return 0.0;
        }
        let u = u.clamp(0.0, (self.width - 1) as f64);
        let v = v.clamp(0.0, (self.height - 1) as f64);
        let (x0, y0) = (u.floor() as usize, v.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.width - 1), (y0 + 1).min(self.height - 1));
        let (fx, fy) = ((u - x0 as f64) as f32, (v - y0 as f64) as f32);
        let top = self.at(x0, y0, c) * (1.0 - fx) + self.at(x1, y0, c) * fx;
        let bot = self.at(x0, y1, c) * (1.0 - fx) + self.at(x1, y1, c) * fx;
        top * (1.0 - fy) + bot * fy
    }

    /// Joint candidates: local maxima above `threshold`, refined by a quadratic fit of the
    /// log-probability, in image pixels.
    pub fn candidates(&self, threshold: f32) -> [Vec<Candidate>; NUM_JOINTS] {
        let g = &self.geometry;
        let (vw, vh) = (
            (g.width.div_ceil(MAP_STRIDE)).min(self.width),
            (g.height.div_ceil(MAP_STRIDE)).min(self.height),
        );
        std::array::from_fn(|j| {
            let mut out = Vec::new();
            for y in 0..vh {
                for x in 0..vw {
                    let p = self.at(x, y, j);
                    if p < threshold {
                        continue;
                    }
                    // strict maximum against earlier neighbours, >= against later ones (plateaus)
                    let mut is_max = true;
                    'n: for dy in -1i64..=1 {
                        for dx in -1i64..=1 {
                            if dx == 0 && dy == 0 {
                                continue;
                            }
                            let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                            if nx < 0 || ny < 0 || nx >= vw as i64 || ny >= vh as i64 {
                                continue;
                            }
                            let q = self.at(nx as usize, ny as usize, j);
                            let earlier = dy < 0 || (dy == 0 && dx < 0);
                            if q > p || (earlier && q == p) {
                                is_max = false;
                                break 'n;
                            }
                        }
                    }
                    if !is_max {
                        continue;
                    }
                    let l = |xx: i64, yy: i64| -> f64 {
                        if xx < 0 || yy < 0 || xx >= vw as i64 || yy >= vh as i64 {
                            (p as f64).max(1e-6).ln() - 4.0
                        } else {
                            (self.at(xx as usize, yy as usize, j) as f64).max(1e-6).ln()
                        }
                    };
                    let (xi, yi) = (x as i64, y as i64);
                    let fit = |a: f64, c: f64, b: f64| {
                        let den = a - 2.0 * c + b;
                        if den < -1e-9 {
                            (0.5 * (a - b) / den).clamp(-0.5, 0.5)
                        } else {
                            0.0
                        }
                    };
                    let c0 = l(xi, yi);
                    let dxo = fit(l(xi - 1, yi), c0, l(xi + 1, yi));
                    let dyo = fit(l(xi, yi - 1), c0, l(xi, yi + 1));
                    out.push(Candidate {
                        x: g.from_map(x as f64 + dxo),
                        y: g.from_map(y as f64 + dyo),
                        score: p as f64,
                    });
                }
            }
            keep_best(&mut out);
            out
        })
    }

    /// Mean limb field along the segment between two image points (None when too weak).
    fn limb_score(&self, k: usize, a: &Candidate, b: &Candidate) -> Option<f64> {
        let g = &self.geometry;
        let (ua, va, ub, vb) = (g.to_map(a.x), g.to_map(a.y), g.to_map(b.x), g.to_map(b.y));
        let len_w = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt() * g.scale;
        let sw = stick_width(g.width as u32, g.height as u32) as f64;
        score_limb(len_w, sw, |t| {
            self.sample(ua + t * (ub - ua), va + t * (vb - va), NUM_JOINTS + k) as f64
        })
    }

    /// Decodes people (coordinates in a `width`×`height` image).
    pub fn decode(&self, width: u32, height: u32, threshold: f32) -> PoseSet {
        let cands = self.candidates(threshold);
        let sw = stick_width(width, height) as f64;
        let people = group(&cands, |k, a, b| self.limb_score(k, a, b), 3.0 * sw, 0.6);
        PoseSet {
            width,
            height,
            people,
        }
    }
}

/// Scores a limb between two joints `len` pixels apart whose circles have radius `radius`
/// (same units): the mean of `field(t)` over 9 points of the part of the segment outside both
/// circles, when at least 2/3 of the samples exceed 0.4. When that part is shorter than two
/// pixels the limb is hidden under the circles, and the pair is accepted by proximity.
fn score_limb(len: f64, radius: f64, field: impl Fn(f64) -> f64) -> Option<f64> {
    const N: usize = 9;
    let visible = len - 2.0 * radius - 1.0;
    if visible < 2.0 {
        return Some(0.5 - 0.001 * len);
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

/// Assembles people from joint candidates: for each limb in `LIMBS` order (neck outwards),
/// candidate pairs scored by `limb` are taken greedily (best first, each candidate once per
/// limb) and attached to the person of the already-placed end. A candidate with no limb
/// becomes a one-joint person when its score is at least `lone_score` and it lies farther
/// than `lone_dist` from every placed joint.
pub fn group(
    cands: &[Vec<Candidate>; NUM_JOINTS],
    limb: impl Fn(usize, &Candidate, &Candidate) -> Option<f64>,
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

// ------------------------------------------------------------------ colour baseline

/// The training-free baseline: classifies each pixel by the palette (each joint and limb has
/// its own colour), takes joint blobs' centroids as joints and the limb masks as affinity
/// fields, then groups like the network. Exact on clean layouts; colour drift (blur, JPEG,
/// an autoencoder) breaks it.
#[derive(Clone, Copy, Debug)]
pub struct ColorDecoder {
    /// Largest per-channel difference to a palette colour that still counts as that colour.
    pub tolerance: u8,
}

impl Default for ColorDecoder {
    fn default() -> Self {
        ColorDecoder { tolerance: 12 }
    }
}

impl ColorDecoder {
    /// Per-pixel class: 0..18 joints, 18..35 limbs, 255 background.
    pub fn classify(&self, img: &RgbImage) -> Vec<u8> {
        let mut palette: Vec<[u8; 3]> = COLORS.to_vec();
        palette.extend((0..NUM_LIMBS).map(limb_color));
        let tol = self.tolerance as i32;
        img.pixels()
            .map(|p| {
                let mut best = (i32::MAX, 255u8);
                for (c, q) in palette.iter().enumerate() {
                    let d = (0..3)
                        .map(|i| (p.0[i] as i32 - q[i] as i32).abs())
                        .max()
                        .unwrap_or(0);
                    if d <= tol && d < best.0 {
                        best = (d, c as u8);
                    }
                }
                best.1
            })
            .collect()
    }

    /// The poses of a layout image, in its own pixels.
    pub fn invert(&self, img: &RgbImage) -> Result<PoseSet> {
        check_image(img)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let cls = self.classify(img);
        let sw = stick_width(img.width(), img.height()) as f64;
        let min_area = (0.2 * std::f64::consts::PI * sw * sw).max(1.0) as usize;
        let mut cands: [Vec<Candidate>; NUM_JOINTS] = std::array::from_fn(|_| Vec::new());
        // connected components (8-connected) of each joint colour
        let mut seen = vec![false; w * h];
        let mut stack = Vec::new();
        for start in 0..w * h {
            let c = cls[start];
            if seen[start] || c as usize >= NUM_JOINTS {
                continue;
            }
            seen[start] = true;
            stack.push(start);
            let (mut n, mut sx, mut sy) = (0usize, 0f64, 0f64);
            while let Some(i) = stack.pop() {
                let (x, y) = (i % w, i / w);
                n += 1;
                sx += x as f64;
                sy += y as f64;
                for dy in -1i64..=1 {
                    for dx in -1i64..=1 {
                        let (nx, ny) = (x as i64 + dx, y as i64 + dy);
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
            }
            if n >= min_area {
                let full = std::f64::consts::PI * sw * sw;
                cands[c as usize].push(Candidate {
                    // the rasteriser draws at the truncated point: add half a pixel back
                    x: sx / n as f64 + 0.5,
                    y: sy / n as f64 + 0.5,
                    score: (n as f64 / full).min(1.0),
                });
            }
        }
        for c in cands.iter_mut() {
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
                    if c < NUM_JOINTS || (c > NUM_JOINTS + k && c < OUT_CHANNELS) {
                        best = best.max(0.5);
                    }
                }
            }
            best
        };
        let limb = |k: usize, a: &Candidate, b: &Candidate| {
            let len = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
            score_limb(len, sw, |t| {
                limb_at(k, a.x + t * (b.x - a.x), a.y + t * (b.y - a.y))
            })
        };
        let people = group(&cands, limb, 3.0 * sw, 0.6);
        Ok(PoseSet {
            width: img.width(),
            height: img.height(),
            people,
        })
    }
}

// ------------------------------------------------------------------ training targets

/// Training targets for one image, on its map grid `(map_h, map_w, 35)` channels-last. They
/// are *amodal*: a Gaussian at every present joint inside the canvas and the full drawn area of
/// every limb (ellipse plus its two joint circles), even where later drawing covers them, so
/// the network learns to complete a left limb hidden under the right one (profile views). The
/// canvas is `clean`'s size (the poses' pixels).
pub fn targets(clean: &RgbImage, poses: &PoseSet, g: &WorkGeometry) -> Vec<f32> {
    let (mw, mh) = g.map_size();
    let mut t = vec![0f32; mw * mh * OUT_CHANNELS];
    let (w, h) = (clean.width(), clean.height());
    // sample points: 2×2 per cell, in image pixels
    let mut pts: Vec<(usize, i64, i64)> = Vec::with_capacity(mw * mh * 4);
    for cy in 0..mh {
        for cx in 0..mw {
            for (oy, ox) in [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)] {
                let x = g.from_map(cx as f64 - 0.5 + ox).round() as i64;
                let y = g.from_map(cy as f64 - 0.5 + oy).round() as i64;
                if x >= 0 && y >= 0 && x < w as i64 && y < h as i64 {
                    pts.push((cy * mw + cx, x, y));
                }
            }
        }
    }
    let mut canvas = RgbImage::new(w, h);
    for (k, &(a, b)) in LIMBS.iter().enumerate() {
        let mut only = PoseSet::new(w, h);
        for p in &poses.people {
            if let (Some(pa), Some(pb)) = (p.joints[a], p.joints[b]) {
                let mut q = Pose::default();
                q.joints[a] = Some(pa);
                q.joints[b] = Some(pb);
                only.people.push(q);
            }
        }
        if only.people.is_empty() {
            continue;
        }
        canvas.as_mut().fill(0);
        crate::pose::draw_on(&mut canvas, &only);
        for &(cell, x, y) in &pts {
            if canvas.get_pixel(x as u32, y as u32).0 != [0, 0, 0] {
                t[cell * OUT_CHANNELS + NUM_JOINTS + k] += 0.25;
            }
        }
    }
    let r = 3.0 * HEATMAP_SIGMA;
    for person in &poses.people {
        for (j, k) in person.joints.iter().enumerate() {
            let Some(k) = k else { continue };
            if k.x < 0.0 || k.y < 0.0 || k.x >= w as f64 || k.y >= h as f64 {
                continue;
            }
            let (u, v) = (g.to_map(k.x), g.to_map(k.y));
            let (x0, x1) = ((u - r).floor().max(0.0) as usize, (u + r).ceil() as usize);
            let (y0, y1) = ((v - r).floor().max(0.0) as usize, (v + r).ceil() as usize);
            for cy in y0..=y1.min(mh - 1) {
                for cx in x0..=x1.min(mw - 1) {
                    let d2 = (cx as f64 - u).powi(2) + (cy as f64 - v).powi(2);
                    let val = (-d2 / (2.0 * HEATMAP_SIGMA * HEATMAP_SIGMA)).exp() as f32;
                    let slot = &mut t[(cy * mw + cx) * OUT_CHANNELS + j];
                    *slot = slot.max(val);
                }
            }
        }
    }
    t
}

/// The training loss: per-element binary cross-entropy with logits against soft targets,
/// weighted up on positives (×`1 + 20t` for joint channels, ×`1 + 3t` for limb channels),
/// averaged. `logits` and `targets` are `(B, h, w, 35)`. Built from plain differentiable ops.
pub fn loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let x = logits;
    let t = targets;
    // softplus(x) - t x, stable: relu(x) + log(1 + exp(-|x|)) - t x
    let bce = ((x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)? - (x * t)?)?;
    let dev = x.device();
    let mut wv = vec![20f32; NUM_JOINTS];
    wv.extend(std::iter::repeat_n(3f32, NUM_LIMBS));
    let pos_w = Tensor::from_vec(wv, OUT_CHANNELS, dev)?;
    let w = (t.broadcast_mul(&pos_w)? + 1.0)?;
    Ok((bce * w)?.mean_all()?)
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
    fn geometry_round_trips() {
        let g = WorkGeometry::new(1000, 600, 256);
        assert_eq!((g.width, g.height), (256, 154));
        assert_eq!((g.padded_width, g.padded_height), (256, 156));
        for x in [0.0, 10.3, 999.0] {
            assert!((g.from_map(g.to_map(x)) - x).abs() < 1e-9);
        }
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
    fn targets_mark_visible_joints_and_limbs() {
        let mut gt = PoseSet::new(256, 256);
        gt.people.push(standing(128.0, 40.0, 20.0));
        let clean = draw_layout(None, &gt);
        let g = WorkGeometry::new(256, 256, 256);
        let t = targets(&clean, &gt, &g);
        let (mw, _) = g.map_size();
        // the nose peak is near its map position
        let k = gt.people[0].joints[0].unwrap();
        let (u, v) = (
            g.to_map(k.x).round() as usize,
            g.to_map(k.y).round() as usize,
        );
        assert!(t[(v * mw + u) * OUT_CHANNELS] > 0.6);
        // the neck-hip limb (6) covers the mid point of its segment
        let a = gt.people[0].joints[1].unwrap();
        let b = gt.people[0].joints[8].unwrap();
        let (u, v) = (
            g.to_map((a.x + b.x) / 2.0).round() as usize,
            g.to_map((a.y + b.y) / 2.0).round() as usize,
        );
        assert!(t[(v * mw + u) * OUT_CHANNELS + NUM_JOINTS + 6] > 0.4);
    }
}
