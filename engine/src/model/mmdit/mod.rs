//! A FLUX.1-architecture MM-DiT with a cached condition stream and switchable LoRA sets.
//!
//! * Double-stream blocks, then single-stream blocks; QK RMS-norm; 3-axis RoPE; adaLN
//!   modulation; time, vector and guidance embeddings; the final layer. It loads BFL
//!   checkpoints by their own tensor names (`double_blocks.N.img_attn.qkv.weight`, ...).
//! * Two execution modes that agree to float tolerance: [`Mode::Train`] uses only
//!   differentiable candle ops (so every LoRA parameter, q and k rows included, gets its
//!   gradient); [`Mode::Fast`] uses candle's fused kernels (softmax, layer/RMS norm, RoPE) for
//!   inference.
//! * The condition stream (DESIGN.md): condition tokens are the packed latent of the condition
//!   image with the image's position ids, modulated from timestep 0, through the base
//!   image-stream weights plus the active LoRA on q, k and v. Condition rows attend only to
//!   condition tokens; text and image rows attend to everything. Their per-layer K/V can be
//!   cached ([`CondCache`]).
//!
//! Base weights are plain tensors (`detach`ed on load): they are never trainable, except in a
//! model built with [`MmDit::new_trainable`] (phase 0 of the tiny preset).

mod blocks;
mod checkpoint;

use super::cond_cache::{condition_fingerprint, fingerprint, CondCache, CondKey};
use super::config::DitConfig;
use super::device::{check_dtype, device_name};
use super::error::{ModelError, Result};
use super::layers::Lin;
use super::lora::{LayerLora, LoraSets, SplitMix64};
use blocks::{Ctx, DoubleBlock, FinalLayer, FusedCtx, SingleBlock};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use checkpoint::Packed;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const NORM_EPS: f64 = 1e-6;

/// Which implementation of the non-matmul ops to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Inference: candle's fused kernels (they have no backward pass).
    Fast,
    /// Training: only differentiable primitive ops.
    Train,
}

/// The per-call inputs of the DiT (everything but the condition).
#[derive(Debug, Clone, Copy)]
pub struct DitInputs<'a> {
    /// Packed noisy latent, `(B, N_img, in_channels)`.
    pub img: &'a Tensor,
    /// Image position ids, `(B, N_img, n_axes)` (`[0, row, col]`).
    pub img_ids: &'a Tensor,
    /// Text tokens, `(B, N_txt, context_in_dim)`.
    pub txt: &'a Tensor,
    /// Text position ids, `(B, N_txt, n_axes)` (zeros).
    pub txt_ids: &'a Tensor,
    /// σ per sample, `(B,)`, in [0, 1].
    pub timesteps: &'a Tensor,
    /// Pooled text vector, `(B, vec_in_dim)`.
    pub y: &'a Tensor,
    /// Guidance per sample, `(B,)`; used only when the config has a guidance embedding.
    pub guidance: Option<&'a Tensor>,
}

/// The condition of one call.
#[derive(Debug, Clone, Copy)]
pub enum Condition<'a> {
    /// No condition: the plain FLUX forward.
    None,
    /// Condition tokens `(B, N_cond, in_channels)` with their ids `(B, N_cond, n_axes)`
    /// (the image's own ids). They run through the network in this call.
    Tokens {
        /// The condition tokens, `(B, N_cond, in_channels)`.
        tokens: &'a Tensor,
        /// Their position ids, `(B, N_cond, n_axes)`.
        ids: &'a Tensor,
    },
    /// A cache built by [`MmDit::build_cond_cache`] for the current LoRA set and pooled vector.
    Cached(&'a CondCache),
}

#[derive(Debug, Clone)]
struct MlpEmbedder {
    in_layer: Lin,
    out_layer: Lin,
}

impl MlpEmbedder {
    fn forward(&self, x: &Tensor, fused: bool) -> candle_core::Result<Tensor> {
        let h = self.in_layer.forward_ctx(x, fused)?.silu()?;
        self.out_layer.forward_ctx(&h, fused)
    }
}

/// shift / (1 + scale) / gate, each `(B, 1, H)`.
struct Mod {
    shift: Tensor,
    scale1: Tensor,
    gate: Tensor,
    /// The whole modulation output `(B, 3n*H)` and this triple's index in it.
    raw: Tensor,
    idx: usize,
}

fn chunks(m: &Tensor, n: usize) -> candle_core::Result<Vec<Mod>> {
    let h = m.dim(D::Minus1)? / (3 * n);
    let raw = m.contiguous()?;
    let m = m.unsqueeze(1)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(Mod {
            shift: m.narrow(D::Minus1, (3 * i) * h, h)?,
            scale1: (m.narrow(D::Minus1, (3 * i + 1) * h, h)? + 1.0)?,
            gate: m.narrow(D::Minus1, (3 * i + 2) * h, h)?,
            raw: raw.clone(),
            idx: i,
        });
    }
    Ok(out)
}

/// RoPE tables for one sequence: `cos`/`sin` `(B, L, head_dim/2)`.
/// Host copies of the cos / sin tables.
type HostTables = (Arc<Vec<f32>>, Arc<Vec<f32>>);

#[derive(Clone)]
struct Rope {
    cos: Tensor,
    sin: Tensor,
    /// Host copies for the fused training kernels (CPU f32 only).
    host: Option<HostTables>,
}

impl Rope {
    /// The tables of rows `start..start+len`.
    fn rows(&self, start: usize, len: usize) -> candle_core::Result<Rope> {
        let cos = self.cos.narrow(1, start, len)?.contiguous()?;
        let sin = self.sin.narrow(1, start, len)?.contiguous()?;
        let host = match self.host {
            Some(_) => Some((
                Arc::new(cos.flatten_all()?.to_vec1::<f32>()?),
                Arc::new(sin.flatten_all()?.to_vec1::<f32>()?),
            )),
            None => None,
        };
        Ok(Rope { cos, sin, host })
    }
}

/// A block's condition-stream pass: `(ctx, stream, last) -> K/V`, advancing the stream.
type CondBlockFn = dyn Fn(&Ctx, &mut CondStream, bool) -> candle_core::Result<Tensor> + Send + Sync;

/// The condition stream's state inside one forward.
struct CondStream<'a> {
    h: Tensor,
    mods_vec: Tensor,
    rope: Rope,
    lora: Option<(&'a LayerLora, f64)>,
}

/// Our FLUX.1-architecture MM-DiT. See the module docs.
#[derive(Debug, Clone)]
pub struct MmDit {
    cfg: DitConfig,
    device: Device,
    dtype: DType,
    img_in: Lin,
    txt_in: Lin,
    time_in: MlpEmbedder,
    vector_in: MlpEmbedder,
    guidance_in: Option<MlpEmbedder>,
    double_blocks: Vec<DoubleBlock>,
    single_blocks: Vec<SingleBlock>,
    final_layer: FinalLayer,
    ln_ones: Tensor,
    ln_zeros: Tensor,
    /// CPU + f32: the fast path uses our fused kernels.
    host: bool,
    /// Train mode uses the fused differentiable kernels (CPU f32).
    fused_train: bool,
    /// Built by [`MmDit::new_trainable`]: the base weights may carry gradients.
    base_trainable: bool,
    /// Train mode recomputes each block during the backward pass instead of keeping its
    /// activations.
    checkpointing: bool,
    loras: LoraSets,
}

/// Every tensor of a BFL checkpoint for this config, with its shape, in a stable order.
pub fn bfl_tensor_shapes(cfg: &DitConfig) -> Vec<(String, Vec<usize>)> {
    let h = cfg.hidden_size;
    let hd = cfg.head_dim();
    let mlp = cfg.mlp_hidden();
    let mut v: Vec<(String, Vec<usize>)> = Vec::new();
    let mut lin = |name: String, inn: usize, out: usize, bias: bool| {
        v.push((format!("{name}.weight"), vec![out, inn]));
        if bias {
            v.push((format!("{name}.bias"), vec![out]));
        }
    };
    lin("img_in".into(), cfg.in_channels, h, true);
    lin("txt_in".into(), cfg.context_in_dim, h, true);
    lin("time_in.in_layer".into(), 256, h, true);
    lin("time_in.out_layer".into(), h, h, true);
    lin("vector_in.in_layer".into(), cfg.vec_in_dim, h, true);
    lin("vector_in.out_layer".into(), h, h, true);
    if cfg.guidance_embed {
        lin("guidance_in.in_layer".into(), 256, h, true);
        lin("guidance_in.out_layer".into(), h, h, true);
    }
    for i in 0..cfg.depth {
        for s in ["img", "txt"] {
            let p = format!("double_blocks.{i}.{s}");
            lin(format!("{p}_mod.lin"), h, 6 * h, true);
            lin(format!("{p}_attn.qkv"), h, 3 * h, cfg.qkv_bias);
            lin(format!("{p}_attn.proj"), h, h, true);
            lin(format!("{p}_mlp.0"), h, mlp, true);
            lin(format!("{p}_mlp.2"), mlp, h, true);
        }
    }
    for i in 0..cfg.depth_single_blocks {
        let p = format!("single_blocks.{i}");
        lin(format!("{p}.linear1"), h, 3 * h + mlp, true);
        lin(format!("{p}.linear2"), h + mlp, h, true);
        lin(format!("{p}.modulation.lin"), h, 3 * h, true);
    }
    lin("final_layer.linear".into(), h, cfg.in_channels, true);
    lin("final_layer.adaLN_modulation.1".into(), h, 2 * h, true);
    for i in 0..cfg.depth {
        for s in ["img", "txt"] {
            let p = format!("double_blocks.{i}.{s}_attn.norm");
            v.push((format!("{p}.query_norm.scale"), vec![hd]));
            v.push((format!("{p}.key_norm.scale"), vec![hd]));
        }
    }
    for i in 0..cfg.depth_single_blocks {
        let p = format!("single_blocks.{i}.norm");
        v.push((format!("{p}.query_norm.scale"), vec![hd]));
        v.push((format!("{p}.key_norm.scale"), vec![hd]));
    }
    v
}

/// Seeded random weights with BFL names: linear weights uniform in `±1/sqrt(in)`, biases in
/// `±0.1/sqrt(in)`, norm scales one (a zero QK-norm scale would zero q and k). Used by tests,
/// the benchmark and as the starting point of the tiny base model.
pub fn random_weights(
    cfg: &DitConfig,
    seed: u64,
    device: &Device,
    dtype: DType,
) -> Result<HashMap<String, Tensor>> {
    let mut rng = SplitMix64(seed);
    let mut out = HashMap::new();
    for (name, shape, bound) in init_bounds(cfg)? {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = match bound {
            None => vec![1.0; n],
            Some(b) => (0..n)
                .map(|_| ((rng.next_f64() * 2.0 - 1.0) * b) as f32)
                .collect(),
        };
        let t = Tensor::from_vec(data, shape, device)?.to_dtype(dtype)?;
        out.insert(name, t);
    }
    Ok(out)
}

/// [`random_weights`]'s distribution drawn by the device's own generator, directly on it: fast
/// at full size on a GPU (FLUX.1-dev's 12 B weights), but not the same values as the seeded
/// host draw.
pub fn random_weights_on_device(
    cfg: &DitConfig,
    device: &Device,
    dtype: DType,
) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, shape, bound) in init_bounds(cfg)? {
        let t = match bound {
            None => Tensor::ones(shape.as_slice(), dtype, device)?,
            Some(b) => {
                Tensor::rand(-b as f32, b as f32, shape.as_slice(), device)?.to_dtype(dtype)?
            }
        };
        out.insert(name, t);
    }
    Ok(out)
}

/// A tensor's name, shape and uniform-initialisation bound (`None`: ones).
type InitSpec = (String, Vec<usize>, Option<f64>);

/// Every BFL tensor of `cfg` with its shape and the bound of its uniform initialisation:
/// ±1/√fan-in for weights, a tenth of that for biases, `None` (ones) for norm scales.
fn init_bounds(cfg: &DitConfig) -> Result<Vec<InitSpec>> {
    cfg.validate()?;
    let shapes = bfl_tensor_shapes(cfg);
    let in_dims: HashMap<String, usize> = shapes
        .iter()
        .filter(|(n, s)| n.ends_with(".weight") && s.len() == 2)
        .map(|(n, s)| (n.trim_end_matches(".weight").to_string(), s[1]))
        .collect();
    Ok(shapes
        .into_iter()
        .map(|(name, shape)| {
            let bound = (!name.ends_with(".scale")).then(|| {
                let stem = name.trim_end_matches(".weight").trim_end_matches(".bias");
                let inn = *in_dims.get(stem).unwrap_or(&1) as f64;
                if name.ends_with(".bias") {
                    0.1 / inn.sqrt()
                } else {
                    1.0 / inn.sqrt()
                }
            });
            (name, shape, bound)
        })
        .collect())
}

/// Writes a name -> tensor map as a safetensors checkpoint.
pub fn save_weights(weights: &HashMap<String, Tensor>, path: impl AsRef<Path>) -> Result<()> {
    candle_core::safetensors::save(weights, path.as_ref())?;
    Ok(())
}

/// Position ids of an `h x w` grid of packed tokens: `[0, row, col]`, `(B, h*w, 3)`.
pub fn image_ids(
    batch: usize,
    h: usize,
    w: usize,
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    let mut v = Vec::with_capacity(h * w * 3);
    for r in 0..h {
        for c in 0..w {
            v.extend_from_slice(&[0f32, r as f32, c as f32]);
        }
    }
    let t = Tensor::from_vec(v, (1, h * w, 3), device)?
        .to_dtype(dtype)?
        .repeat((batch, 1, 1))?;
    Ok(t)
}

/// Position ids of the implicit baseline's joint sequence: the image tokens of an `h x w` grid
/// (`[0, row, col]`), then the layout tokens of the same grid with the first axis set to 1
/// (`[1, row, col]`): spatially aligned, yet distinguishable. `(B, 2*h*w, 3)`.
pub fn joint_ids(
    batch: usize,
    h: usize,
    w: usize,
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    let img = image_ids(batch, h, w, device, dtype)?;
    let mut lay = image_ids(1, h, w, &Device::Cpu, DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    for v in lay.iter_mut().step_by(3) {
        *v = 1.0;
    }
    let lay = Tensor::from_vec(lay, (1, h * w, 3), device)?
        .to_dtype(dtype)?
        .repeat((batch, 1, 1))?;
    Ok(Tensor::cat(&[img, lay], 1)?)
}

/// Text position ids (zeros), `(B, len, 3)`.
pub fn text_ids(batch: usize, len: usize, device: &Device, dtype: DType) -> Result<Tensor> {
    Ok(Tensor::zeros((batch, len, 3), dtype, device)?)
}

/// Packs a latent `(B, C, H, W)` into tokens of 2x2 patches `(B, H/2*W/2, 4C)` (BFL order).
pub fn pack_latents(latent: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = latent.dims4()?;
    if h % 2 != 0 || w % 2 != 0 {
        return Err(ModelError::BadInput {
            name: "latent".into(),
            expected: "(B, C, H, W) with even H and W".into(),
            found: latent.dims().to_vec(),
        });
    }
    Ok(latent
        .reshape((b, c, h / 2, 2, w / 2, 2))?
        .permute((0, 2, 4, 1, 3, 5))?
        .reshape((b, (h / 2) * (w / 2), c * 4))?)
}

/// Inverse of [`pack_latents`]: tokens `(B, h*w, 4C)` of an `h x w` token grid to `(B, C, 2h, 2w)`.
pub fn unpack_latents(tokens: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (b, n, c4) = tokens.dims3()?;
    if n != h * w || c4 % 4 != 0 {
        return Err(ModelError::BadInput {
            name: "tokens".into(),
            expected: format!("(B, {}, 4C)", h * w),
            found: tokens.dims().to_vec(),
        });
    }
    let c = c4 / 4;
    Ok(tokens
        .reshape((b, h, w, c, 2, 2))?
        .permute((0, 3, 1, 4, 2, 5))?
        .reshape((b, c, h * 2, w * 2))?)
}

fn timestep_embedding(t: &Tensor, dim: usize, dtype: DType) -> candle_core::Result<Tensor> {
    let half = dim / 2;
    let dev = t.device();
    let t = (t.to_dtype(DType::F32)? * 1000.0)?;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), dev)?;
    let args = t.unsqueeze(1)?.broadcast_mul(&freqs)?;
    Tensor::cat(&[args.cos()?, args.sin()?], D::Minus1)?.to_dtype(dtype)
}

fn host_vec(t: &Tensor) -> Result<Arc<Vec<f32>>> {
    Ok(Arc::new(
        t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
    ))
}

struct Loader<'a, 'b> {
    vb: &'a VarBuilder<'b>,
    /// Keep host copies of small vectors for the fused CPU kernels.
    host: bool,
    /// Keep the builder's tensors as they are (possibly `Var`s) instead of detaching them.
    trainable: bool,
}

impl Loader<'_, '_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if !self.vb.contains_tensor(name) {
            return Err(ModelError::MissingTensor {
                name: name.to_string(),
                expected: shape.to_vec(),
            });
        }
        let t = self.vb.get_unchecked(name)?;
        if t.dims() != shape {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        if self.trainable {
            return Ok(t);
        }
        // Plain tensor, never a Var: base weights are frozen.
        Ok(t.detach())
    }

    fn lin(&self, p: &str, inn: usize, out: usize, bias: bool) -> Result<Lin> {
        let w = self.tensor(&format!("{p}.weight"), &[out, inn])?;
        let b = if bias {
            Some(self.tensor(&format!("{p}.bias"), &[out])?)
        } else {
            None
        };
        let mut lin = Lin::new(w, b);
        if self.host {
            lin = lin.with_host_bias()?;
        }
        // A trainable model multiplies by the weight as stored: a transposed copy would be made
        // at every rebuild.
        if !self.trainable {
            lin = lin.frozen()?;
        }
        Ok(lin)
    }

    fn embedder(&self, p: &str, inn: usize, h: usize) -> Result<MlpEmbedder> {
        Ok(MlpEmbedder {
            in_layer: self.lin(&format!("{p}.in_layer"), inn, h, true)?,
            out_layer: self.lin(&format!("{p}.out_layer"), h, h, true)?,
        })
    }
}

impl MmDit {
    /// Builds the model from a `VarBuilder` holding BFL tensor names. The device and dtype are
    /// the builder's. Missing or mis-shaped tensors give an error naming the tensor.
    pub fn new(cfg: &DitConfig, vb: VarBuilder) -> Result<Self> {
        Self::build(cfg, vb, false)
    }

    /// Builds a model whose base weights stay connected to the builder's tensors, so that
    /// gradients reach them when those are `Var`s (phase 0 of the tiny preset trains the whole
    /// base DiT). `vb` must hold plain tensors by name, e.g. `VarBuilder::from_tensors` over
    /// `var.as_tensor().clone()`. The model keeps views of the weights but host copies of the
    /// biases and norm scales: after an optimiser step, build it again from the updated `Var`s. [`Mode::Train`] then uses the
    /// fused differentiable kernels with candle's matmul for the linear layers (their weight
    /// gradients included).
    pub fn new_trainable(cfg: &DitConfig, vb: VarBuilder) -> Result<Self> {
        Self::build(cfg, vb, true)
    }

    fn build(cfg: &DitConfig, vb: VarBuilder, trainable: bool) -> Result<Self> {
        cfg.validate()?;
        let device = vb.device().clone();
        let dtype = vb.dtype();
        check_dtype(&device, dtype)?;
        let host = device.is_cpu() && dtype == DType::F32;
        let ld = Loader {
            vb: &vb,
            host,
            trainable,
        };
        let h = cfg.hidden_size;
        let double_blocks = (0..cfg.depth)
            .map(|i| DoubleBlock::new(&ld, i, cfg))
            .collect::<Result<Vec<_>>>()?;
        let single_blocks = (0..cfg.depth_single_blocks)
            .map(|i| SingleBlock::new(&ld, i, cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            img_in: ld.lin("img_in", cfg.in_channels, h, true)?,
            txt_in: ld.lin("txt_in", cfg.context_in_dim, h, true)?,
            time_in: ld.embedder("time_in", 256, h)?,
            vector_in: ld.embedder("vector_in", cfg.vec_in_dim, h)?,
            guidance_in: if cfg.guidance_embed {
                Some(ld.embedder("guidance_in", 256, h)?)
            } else {
                None
            },
            double_blocks,
            single_blocks,
            final_layer: FinalLayer::new(&ld, h, cfg.in_channels)?,
            ln_ones: Tensor::ones(h, dtype, &device)?,
            ln_zeros: Tensor::zeros(h, dtype, &device)?,
            loras: LoraSets::new(cfg, &device, dtype),
            host,
            fused_train: true,
            base_trainable: trainable,
            checkpointing: false,
            cfg: cfg.clone(),
            device,
            dtype,
        })
    }

    /// Loads a BFL safetensors checkpoint (memory-mapped) onto `device` in `dtype`.
    pub fn load(
        path: impl AsRef<Path>,
        cfg: &DitConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let path = path.as_ref();
        check_dtype(device, dtype)?;
        if !path.is_file() {
            return Err(ModelError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such checkpoint file"),
            ));
        }
        // SAFETY: the file is memory-mapped read-only; it must not be modified while loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], dtype, device)? };
        Self::new(cfg, vb)
    }

    /// Builds the model from an in-memory name -> tensor map (e.g. [`random_weights`]).
    pub fn from_tensors(
        cfg: &DitConfig,
        weights: HashMap<String, Tensor>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        Self::new(cfg, VarBuilder::from_tensors(weights, dtype, device))
    }

    /// The architecture.
    pub fn config(&self) -> &DitConfig {
        &self.cfg
    }
    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// The LoRA sets of this model.
    pub fn loras(&self) -> &LoraSets {
        &self.loras
    }
    /// The LoRA sets, mutable (add, load, `set_active`, `make_trainable`, ...).
    pub fn loras_mut(&mut self) -> &mut LoraSets {
        &mut self.loras
    }

    // ----------------------------------------------------------------- input checks

    fn check(&self, name: &str, t: &Tensor, shape: &[Option<usize>]) -> Result<()> {
        if !t.device().same_device(&self.device) {
            return Err(ModelError::WrongDevice {
                name: name.into(),
                expected: device_name(&self.device),
                found: device_name(t.device()),
            });
        }
        if t.dtype() != self.dtype {
            return Err(ModelError::WrongDtype {
                name: name.into(),
                expected: self.dtype,
                found: t.dtype(),
            });
        }
        let ok = t.rank() == shape.len()
            && t.dims()
                .iter()
                .zip(shape)
                .all(|(d, e)| e.is_none_or(|e| e == *d));
        if !ok {
            let exp: Vec<String> = shape
                .iter()
                .map(|e| e.map_or("_".to_string(), |e| e.to_string()))
                .collect();
            return Err(ModelError::BadInput {
                name: name.into(),
                expected: format!("({})", exp.join(", ")),
                found: t.dims().to_vec(),
            });
        }
        Ok(())
    }

    fn check_inputs(&self, inp: &DitInputs) -> Result<(usize, usize, usize)> {
        let c = &self.cfg;
        let axes = c.axes_dim.len();
        self.check("img", inp.img, &[None, None, Some(c.in_channels)])?;
        let (b, n_img, _) = inp.img.dims3()?;
        self.check("img_ids", inp.img_ids, &[Some(b), Some(n_img), Some(axes)])?;
        self.check("txt", inp.txt, &[Some(b), None, Some(c.context_in_dim)])?;
        let n_txt = inp.txt.dim(1)?;
        self.check("txt_ids", inp.txt_ids, &[Some(b), Some(n_txt), Some(axes)])?;
        self.check("timesteps", inp.timesteps, &[Some(b)])?;
        self.check("y", inp.y, &[Some(b), Some(c.vec_in_dim)])?;
        if let Some(g) = inp.guidance {
            self.check("guidance", g, &[Some(b)])?;
        }
        Ok((b, n_img, n_txt))
    }

    fn check_condition(&self, tokens: &Tensor, ids: &Tensor, y: &Tensor) -> Result<usize> {
        let c = &self.cfg;
        self.check("condition", tokens, &[None, None, Some(c.in_channels)])?;
        let (b, n, _) = tokens.dims3()?;
        self.check(
            "condition_ids",
            ids,
            &[Some(b), Some(n), Some(c.axes_dim.len())],
        )?;
        self.check("y", y, &[Some(b), Some(c.vec_in_dim)])?;
        Ok(b)
    }

    // ----------------------------------------------------------------- primitives

    /// The context of the candle-op path for `mode`.
    fn ctx(&self, mode: Mode) -> Ctx<'_> {
        Ctx {
            mode,
            fused: mode == Mode::Train && self.host && self.fused_train,
            cfg: &self.cfg,
            ln_ones: &self.ln_ones,
            ln_zeros: &self.ln_zeros,
        }
    }

    fn rope_tables(&self, ids: &Tensor) -> candle_core::Result<Rope> {
        let (b, l, _) = ids.dims3()?;
        let ids = ids.to_dtype(DType::F32)?;
        let theta = self.cfg.theta as f64;
        let mut parts = Vec::with_capacity(self.cfg.axes_dim.len());
        for (i, &dim) in self.cfg.axes_dim.iter().enumerate() {
            let inv: Vec<f32> = (0..dim)
                .step_by(2)
                .map(|j| 1f32 / theta.powf(j as f64 / dim as f64) as f32)
                .collect();
            let inv = Tensor::from_vec(inv, (1, 1, dim / 2), ids.device())?;
            let pos = ids.narrow(2, i, 1)?; // (b, l, 1)
            parts.push(pos.broadcast_mul(&inv)?);
        }
        let freqs = Tensor::cat(&parts, 2)?; // (b, l, hd/2)
        debug_assert_eq!(freqs.dims(), &[b, l, self.cfg.head_dim() / 2]);
        let cos = freqs.cos()?.to_dtype(self.dtype)?.contiguous()?;
        let sin = freqs.sin()?.to_dtype(self.dtype)?.contiguous()?;
        let host = if self.host {
            Some((
                Arc::new(cos.flatten_all()?.to_vec1::<f32>()?),
                Arc::new(sin.flatten_all()?.to_vec1::<f32>()?),
            ))
        } else {
            None
        };
        Ok(Rope { cos, sin, host })
    }

    /// Chooses between the fused differentiable CPU kernels (default) and plain candle
    /// primitives for [`Mode::Train`]. Both give the same values and gradients (tested); the
    /// primitive path is slower and exists for verification and non-CPU devices.
    pub fn set_fused_training(&mut self, on: bool) {
        self.fused_train = on;
    }

    /// Turns activation checkpointing of [`Mode::Train`] on or off: in [`MmDit::forward`] each
    /// block keeps only its inputs and outputs, and the backward pass runs it again (values and
    /// gradients are unchanged; the step costs about one more forward pass). A condition cache
    /// ([`MmDit::build_cond_cache`]) is never checkpointed: it is for sampling. For LoRA
    /// training, where the base is frozen; a model built with [`MmDit::new_trainable`] is
    /// refused.
    pub fn set_activation_checkpointing(&mut self, on: bool) -> Result<()> {
        if on && self.base_trainable {
            return Err(ModelError::InvalidConfig(
                "activation checkpointing needs a frozen base (LoRA training); this model's base weights are trainable".into(),
            ));
        }
        self.checkpointing = on;
        Ok(())
    }

    /// Whether [`Mode::Train`] checkpoints each block's activations.
    pub fn activation_checkpointing(&self) -> bool {
        self.checkpointing
    }

    // ----------------------------------------------------------------- embeddings

    /// The time, guidance and pooled-text embedding (`fused`: the CPU f32 training path).
    fn vec_embedding(
        &self,
        timesteps: &Tensor,
        y: &Tensor,
        guidance: Option<&Tensor>,
        fused: bool,
    ) -> candle_core::Result<Tensor> {
        let mut v = self
            .time_in
            .forward(&timestep_embedding(timesteps, 256, self.dtype)?, fused)?;
        if let (Some(g_in), Some(g)) = (&self.guidance_in, guidance) {
            v = (v + g_in.forward(&timestep_embedding(g, 256, self.dtype)?, fused)?)?;
        }
        v + self.vector_in.forward(y, fused)?
    }

    /// The condition stream's vector: timestep 0, guidance 1 (when the model has a guidance
    /// embedding) and the pooled text vector. It depends only on `y`, so the cache can be keyed
    /// by it.
    fn cond_vec(&self, y: &Tensor, fused: bool) -> candle_core::Result<Tensor> {
        let b = y.dim(0)?;
        let t0 = Tensor::zeros(b, self.dtype, &self.device)?;
        let g1 = Tensor::ones(b, self.dtype, &self.device)?;
        self.vec_embedding(&t0, y, Some(&g1), fused)
    }

    // ----------------------------------------------------------------- condition stream

    /// The condition stream before the first block: the embedded tokens, the modulation vector
    /// and the position tables.
    fn cond_stream_start<'a>(
        &self,
        ctx: &Ctx,
        tokens: &Tensor,
        ids: &Tensor,
        y: &Tensor,
    ) -> candle_core::Result<CondStream<'a>> {
        Ok(CondStream {
            h: self.img_in.forward_ctx(tokens, ctx.fused)?,
            mods_vec: self.cond_vec(y, ctx.fused)?.silu()?,
            rope: self.rope_tables(ids)?,
            lora: None,
        })
    }

    /// Every block's condition-stream pass, double blocks first.
    fn cond_block_fns(&self) -> Vec<Arc<CondBlockFn>> {
        let doubles = self.double_blocks.iter().map(|b| {
            let b = b.clone();
            Arc::new(move |c: &Ctx, s: &mut CondStream, l: bool| b.cond_forward(c, s, l))
                as Arc<CondBlockFn>
        });
        let singles = self.single_blocks.iter().map(|b| {
            let b = b.clone();
            Arc::new(move |c: &Ctx, s: &mut CondStream, l: bool| b.cond_forward(c, s, l))
                as Arc<CondBlockFn>
        });
        doubles.chain(singles).collect()
    }

    /// Runs the condition tokens through every block; returns their per-layer (K, V).
    fn run_cond_stream(
        &self,
        tokens: &Tensor,
        ids: &Tensor,
        y: &Tensor,
        mode: Mode,
    ) -> Result<Vec<Tensor>> {
        let ctx = self.ctx(mode);
        let active = self.loras.active();
        let scale = active.map(|s| s.scale()).unwrap_or(0.0);
        let n_layers = self.cfg.num_blocks();
        let mut cs = self.cond_stream_start(&ctx, tokens, ids, y)?;
        let mut kv = Vec::with_capacity(n_layers);
        for (i, run) in self.cond_block_fns().into_iter().enumerate() {
            cs.lora = active.map(|s| (&s.layers[i], scale));
            let last = i + 1 == n_layers;
            kv.push(run(&ctx, &mut cs, last)?);
            if last {
                break;
            }
        }
        Ok(kv)
    }

    /// Runs the condition tokens once and records their K/V in every layer, for the active
    /// LoRA set and pooled vector `y`. `ids` are the image's own position ids.
    pub fn build_cond_cache(
        &self,
        tokens: &Tensor,
        ids: &Tensor,
        y: &Tensor,
        mode: Mode,
    ) -> Result<CondCache> {
        let b = self.check_condition(tokens, ids, y)?;
        let kv = self.run_cond_stream(tokens, ids, y, mode)?;
        Ok(CondCache {
            kv,
            key: CondKey {
                condition: condition_fingerprint(tokens, ids)?,
                lora: self.loras.active_name().map(|s| s.to_string()),
                pooled: fingerprint(y)?,
                batch: b,
                tokens: tokens.dim(1)?,
            },
        })
    }

    /// Rebuilds `slot` (in [`Mode::Fast`]) unless it already matches this condition, the active
    /// LoRA set and `y`. Returns whether it was rebuilt.
    pub fn ensure_cond_cache(
        &self,
        slot: &mut Option<CondCache>,
        tokens: &Tensor,
        ids: &Tensor,
        y: &Tensor,
    ) -> Result<bool> {
        if let Some(c) = slot.as_ref() {
            if c.matches(tokens, ids, self.loras.active_name(), y)? {
                return Ok(false);
            }
        }
        *slot = Some(self.build_cond_cache(tokens, ids, y, Mode::Fast)?);
        Ok(true)
    }

    fn validate_cache(&self, cache: &CondCache, b: usize, y: &Tensor) -> Result<()> {
        let key = &cache.key;
        if key.lora.as_deref() != self.loras.active_name() {
            return Err(ModelError::StaleCache(format!(
                "built for LoRA set {:?}, active is {:?}",
                key.lora,
                self.loras.active_name()
            )));
        }
        if key.batch != b {
            return Err(ModelError::StaleCache(format!(
                "built for batch {}, called with batch {b}",
                key.batch
            )));
        }
        if cache.kv.len() != self.cfg.num_blocks() {
            return Err(ModelError::StaleCache(format!(
                "has {} layers, the model has {}",
                cache.kv.len(),
                self.cfg.num_blocks()
            )));
        }
        if key.pooled != fingerprint(y)? {
            return Err(ModelError::StaleCache(
                "built for another pooled vector y".into(),
            ));
        }
        Ok(())
    }

    // ----------------------------------------------------------------- forward

    /// Predicts the velocity `v = noise - x_data` for the image tokens, `(B, N_img, in_channels)`.
    pub fn forward(&self, inp: &DitInputs, cond: Condition, mode: Mode) -> Result<Tensor> {
        let (b, n_img, n_txt) = self.check_inputs(inp)?;
        let ckpt = self.checkpointing && mode == Mode::Train;
        let ctx = self.ctx(mode);
        let owned_kv;
        let mut packed_kv = None;
        let cond_kv: Option<&[Tensor]> = match cond {
            Condition::None => None,
            Condition::Tokens { tokens, ids } => {
                let cb = self.check_condition(tokens, ids, inp.y)?;
                if cb != b {
                    return Err(ModelError::BadInput {
                        name: "condition".into(),
                        expected: format!("batch {b}"),
                        found: tokens.dims().to_vec(),
                    });
                }
                if ckpt {
                    packed_kv = Some(self.cond_stream_checkpointed(&ctx, tokens, ids, inp.y)?);
                    None
                } else {
                    owned_kv = self.run_cond_stream(tokens, ids, inp.y, mode)?;
                    Some(&owned_kv)
                }
            }
            Condition::Cached(c) => {
                self.validate_cache(c, b, inp.y)?;
                Some(&c.kv)
            }
        };
        if mode == Mode::Fast && self.host {
            return self.forward_fused_cpu(inp, cond_kv, n_img, n_txt);
        }
        let ckv = |i: usize| cond_kv.map(|kv| &kv[i]);

        let vec = self.vec_embedding(inp.timesteps, inp.y, inp.guidance, ctx.fused)?;
        let svec = vec.silu()?;
        let ids = Tensor::cat(&[inp.txt_ids, inp.img_ids], 1)?;
        let rope = self.rope_tables(&ids)?;
        let rope_txt = rope.rows(0, n_txt)?;
        let rope_img = rope.rows(n_txt, n_img)?;
        let txt = self.txt_in.forward_ctx(inp.txt, ctx.fused)?;
        let img = self.img_in.forward_ctx(inp.img, ctx.fused)?;

        let img = if ckpt {
            if packed_kv.is_none() {
                if let Some(kv) = cond_kv {
                    let packed = kv.iter().map(|t| Packed::of(std::slice::from_ref(t)));
                    packed_kv = Some(packed.collect::<candle_core::Result<Vec<_>>>()?);
                }
            }
            let ropes = [&rope, &rope_txt, &rope_img];
            self.blocks_checkpointed(&ctx, &txt, &img, &svec, ropes, packed_kv.as_deref())?
        } else {
            let (mut txt, mut img) = (txt, img);
            for (i, blk) in self.double_blocks.iter().enumerate() {
                (txt, img) =
                    blk.forward(&ctx, &txt, &img, &svec, &rope, &rope_txt, &rope_img, ckv(i))?;
            }
            let mut x = Tensor::cat(&[&txt, &img], 1)?;
            for (j, blk) in self.single_blocks.iter().enumerate() {
                x = blk.forward(&ctx, &x, &svec, &rope, ckv(self.cfg.depth + j))?;
            }
            x.narrow(1, n_txt, n_img)?
        };
        Ok(self.final_layer.forward(&ctx, &img, &svec)?)
    }
}

impl MmDit {
    /// The fast path on CPU f32: fused kernels (see `kernels/inference.rs`), no bias/elementwise
    /// passes of their own, heads split and merged in the same passes.
    fn forward_fused_cpu(
        &self,
        inp: &DitInputs,
        cond_kv: Option<&[Tensor]>,
        n_img: usize,
        n_txt: usize,
    ) -> Result<Tensor> {
        let hd = self.cfg.head_dim();
        let n_cond = cond_kv.map_or(Ok(0), |kv| kv[0].dim(3))?;
        let ckv = |i: usize| cond_kv.map(|kv| &kv[i]);

        let vec = self.vec_embedding(inp.timesteps, inp.y, inp.guidance, false)?;
        let svec = vec.silu()?;
        let ids = Tensor::cat(&[inp.txt_ids, inp.img_ids], 1)?;
        let rope = self.rope_tables(&ids)?;
        let fx = FusedCtx {
            h: self.cfg.hidden_size,
            nh: self.cfg.num_heads,
            hd,
            mlp_w: self.cfg.mlp_hidden(),
            eps: NORM_EPS as f32,
            sm_scale: 1.0 / (hd as f32).sqrt(),
            n_cond,
            cos: Arc::new(rope.cos.flatten_all()?.to_vec1::<f32>()?),
            sin: Arc::new(rope.sin.flatten_all()?.to_vec1::<f32>()?),
        };
        let mut txt = self.txt_in.forward(&inp.txt.contiguous()?)?;
        let mut img = self.img_in.forward(&inp.img.contiguous()?)?;

        for (i, blk) in self.double_blocks.iter().enumerate() {
            (txt, img) = blk.forward_fused(&fx, &txt, &img, &svec, ckv(i))?;
        }

        let mut x = Tensor::cat(&[&txt, &img], 1)?;
        for (j, blk) in self.single_blocks.iter().enumerate() {
            x = blk.forward_fused(&fx, &x, &svec, ckv(self.cfg.depth + j))?;
        }
        let img = if self.single_blocks.is_empty() {
            img
        } else {
            x.narrow(1, n_txt, n_img)?.contiguous()?
        };
        Ok(self.final_layer.forward_fused(&fx, &img, &svec)?)
    }
}
