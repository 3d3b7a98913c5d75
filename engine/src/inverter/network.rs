//! The per-pixel class network ([`PoseInverter`]): architecture, weights (load, save, the
//! embedded default), forward pass, and its class map of an image, fused with the image's
//! exact palette colours when it is a drawn layout.

use super::colour::ColorDecoder;
use super::decode::{decode_classes, ClassMap};
use super::input::{check_image, input_tensor, to_working, WorkGeometry, INPUT_CHANNELS};
use super::{InverterError, Result, BACKGROUND, NO_CLASS, NUM_CLASSES, WEIGHTS_FILE};
use crate::model::layers::{shuffle2, unshuffle2, Lin};
use crate::model::lora::SplitMix64;
use crate::pose::PoseSet;
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use image::RgbImage;
use std::collections::HashMap;
use std::path::Path;

/// The network's `min_joints` where its class map reads a drawn layout ([`ClassMap::drawn`]):
/// small groups are then people partly hidden or out of frame more often than stray fragments.
const FUSED_MIN_JOINTS: usize = 4;

/// The network's default `min_joints`: people with fewer joints after grouping are stray
/// fragments of a misread layout (the largest bar that costs no accuracy on held-out layouts).
const MIN_JOINTS: usize = 6;
/// The network's default [`PoseInverter::exact_colour_bonus`]. The rasteriser paints every
/// pixel in its class's palette colour exactly, which the network, reading a shrunk image
/// through a few convolutions, does not always recover; the colour evidence is added to its
/// logits, so that it still outvotes a palette-coloured shape it reads surely as background.
const EXACT_COLOUR_BONUS: f32 = 8.0;

/// The exact colours' evidence is used when the image carries at least this share of the
/// skeleton pixels the network reads (at its working size) in exact palette colours, so that
/// the few pixels an autoencoder's round trip leaves at a palette colour by chance do not move
/// the reading to full size.
const EXACT_SHARE: f64 = 0.5;

/// The largest per-channel difference to a palette colour that counts as carrying it exactly
/// (as the colour decoder's default tolerance).
const EXACT_TOLERANCE: u8 = 12;

/// The least share of the image pixels in the network's skeleton (the working pixels it reads
/// as a joint or limb, mapped back to the image) whose exact palette colour is the class it
/// reads there ([`exact_agreement`]) for the image to count as a drawn layout: then a pixel of
/// no palette colour is background unless the network is very sure ([`PoseInverter::fuse`]),
/// and small groups are kept ([`FUSED_MIN_JOINTS`]). Clean layouts share more, degraded and
/// round-tripped ones less; unlike [`ColorDecoder::reads_cleanly`], it also holds for layouts
/// drawn over photos with many near-palette pixels.
const DRAWN_AGREEMENT: f64 = 0.6;

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
const DEFAULT_WEIGHTS: &[u8] = include_bytes!("../../../assets/models/tiny/inverter.safetensors");

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
    /// Checks the sizes are in range; the error says which is not.
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
        match dir.map(|d| d.join(WEIGHTS_FILE)) {
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

    /// The network's configuration.
    pub fn config(&self) -> &InverterConfig {
        &self.cfg
    }

    /// The device the network's parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Total number of parameters (scalars) of the network.
    pub fn num_params(&self) -> usize {
        self.params.values().map(|t| t.elem_count()).sum()
    }

    /// Class logits `(B, H, W, 36)` for channels-last input features `(B, H, W, 38)` (see
    /// [`super::input::pixel_features`]), H and W multiples of 4. Differentiable when the parameters are
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inverter::test_util::standing;
    use crate::inverter::{loss, one_hot};
    use crate::pose::{draw_layout, Pose};
    use image::imageops;

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
    fn the_embedded_network_loads() {
        let net = PoseInverter::embedded(&Device::Cpu).unwrap();
        assert!(net.num_params() > 0);
    }
}
