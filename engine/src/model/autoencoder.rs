//! Autoencoders behind one trait: BFL's FLUX autoencoder ([`FluxAe`]) and our tiny CPU one
//! ([`super::tiny_ae::TinyAe`]).
//!
//! Convention of the trait: images are `(B, 3, H, W)` in `[-1, 1]`; latents are what the DiT
//! sees, i.e. already shifted and scaled.
//!
//! This file also holds the checked weight loading shared by the encoders: every tensor a
//! model asks for is looked up before use, and a missing or mis-shaped one becomes a
//! [`ModelError::MissingTensor`] / [`ModelError::ShapeMismatch`] that names it.

use super::device::{check_dtype, device_name};
use super::error::{ModelError, Result};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Module, VarBuilder};
use candle_transformers::models::flux::autoencoder::{Decoder, DiagonalGaussian, Encoder};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The configuration type of BFL's autoencoder (candle-transformers' `flux::autoencoder`).
pub use candle_transformers::models::flux::autoencoder::Config as FluxAeConfig;

/// An image autoencoder for the DiT.
pub trait Autoencoder: Send + Sync {
    /// Images `(B, 3, H, W)` in `[-1, 1]`, `H` and `W` multiples of [`Self::downsample`] ->
    /// latents `(B, C, H/f, W/f)`, already scaled/shifted for the DiT, in the autoencoder's own
    /// dtype (f32 for the tiny one): callers convert them to the DiT's.
    fn encode(&self, images: &Tensor) -> Result<Tensor>;
    /// Latents `(B, C, h, w)` -> images `(B, 3, h*f, w*f)` in about `[-1, 1]` (f32).
    fn decode(&self, latents: &Tensor) -> Result<Tensor>;
    /// Number of latent channels `C`.
    fn latent_channels(&self) -> usize;
    /// Spatial downsampling factor `f`.
    fn downsample(&self) -> usize;
}

// ------------------------------------------------------------------ checked loading

/// A [`SimpleBackend`] that checks every requested tensor against the wrapped one and
/// records the first problem as a typed [`ModelError`].
struct CheckedBackend {
    inner: Box<dyn SimpleBackend>,
    first_error: Arc<Mutex<Option<ModelError>>>,
}

impl CheckedBackend {
    fn record(&self, e: ModelError) -> candle_core::Error {
        let msg = e.to_string();
        if let Ok(mut slot) = self.first_error.lock() {
            if slot.is_none() {
                *slot = Some(e);
            }
        }
        candle_core::Error::Msg(msg)
    }
}

impl SimpleBackend for CheckedBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if !self.inner.contains_tensor(name) {
            return Err(self.record(ModelError::MissingTensor {
                name: name.to_string(),
                expected: s.dims().to_vec(),
            }));
        }
        let t = self.inner.get_unchecked(name, dtype, dev)?;
        if t.dims() != s.dims() {
            return Err(self.record(ModelError::ShapeMismatch {
                name: name.to_string(),
                expected: s.dims().to_vec(),
                found: t.dims().to_vec(),
            }));
        }
        // Plain tensors: loaded weights are never trainable.
        Ok(t.detach())
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if !self.inner.contains_tensor(name) {
            return Err(self.record(ModelError::MissingTensor {
                name: name.to_string(),
                expected: vec![],
            }));
        }
        Ok(self.inner.get_unchecked(name, dtype, dev)?.detach())
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(name)
    }
}

/// Memory-maps `paths` (safetensors, all shards of one model) and builds a model from them
/// with `build`; a missing or mis-shaped tensor is reported by name.
pub(crate) fn build_checked<T>(
    paths: &[PathBuf],
    device: &Device,
    dtype: DType,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<T>,
) -> Result<T> {
    for p in paths {
        if !p.is_file() {
            return Err(ModelError::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such weights file"),
            ));
        }
    }
    // SAFETY: the files are memory-mapped read-only; they must not change while loaded.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(paths) }.map_err(|e| {
        ModelError::Safetensors(format!(
            "{}: {e}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    build_checked_backend(Box::new(st), device, dtype, build)
}

/// Like [`build_checked`] over any backend (e.g. an in-memory tensor map).
pub(crate) fn build_checked_backend<T>(
    inner: Box<dyn SimpleBackend>,
    device: &Device,
    dtype: DType,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<T>,
) -> Result<T> {
    let first_error = Arc::new(Mutex::new(None));
    let backend = CheckedBackend {
        inner,
        first_error: first_error.clone(),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), dtype, device.clone());
    match build(vb) {
        Ok(m) => Ok(m),
        Err(e) => {
            let recorded = first_error.lock().ok().and_then(|mut s| s.take());
            Err(recorded.unwrap_or(ModelError::Candle(e)))
        }
    }
}

/// Checks rank, dims (`None` = any) and that the tensor is floating point.
pub(crate) fn check_shape(name: &str, t: &Tensor, shape: &[Option<usize>]) -> Result<()> {
    let ok = t.rank() == shape.len()
        && t.dims()
            .iter()
            .zip(shape)
            .all(|(d, e)| e.is_none_or(|e| e == *d))
        && t.dtype().is_float();
    if ok {
        return Ok(());
    }
    let exp: Vec<String> = shape
        .iter()
        .map(|e| e.map_or("_".to_string(), |e| e.to_string()))
        .collect();
    Err(ModelError::BadInput {
        name: name.into(),
        expected: format!("({}) float", exp.join(", ")),
        found: t.dims().to_vec(),
    })
}

pub(crate) fn check_device(name: &str, t: &Tensor, device: &Device) -> Result<()> {
    if t.device().same_device(device) {
        Ok(())
    } else {
        Err(ModelError::WrongDevice {
            name: name.into(),
            expected: device_name(device),
            found: device_name(t.device()),
        })
    }
}

/// Checks an image batch `(B, 3, H, W)` with `H`, `W` positive multiples of `f`.
pub(crate) fn check_images(t: &Tensor, f: usize, device: &Device) -> Result<()> {
    check_device("images", t, device)?;
    check_shape("images", t, &[None, Some(3), None, None])?;
    let (b, _, h, w) = t.dims4()?;
    if b == 0 || h == 0 || w == 0 || h % f != 0 || w % f != 0 {
        return Err(ModelError::BadInput {
            name: "images".into(),
            expected: format!("(B>0, 3, H, W) with H and W positive multiples of {f}"),
            found: t.dims().to_vec(),
        });
    }
    Ok(())
}

/// Checks a latent batch `(B, C, h, w)`.
pub(crate) fn check_latents(t: &Tensor, c: usize, device: &Device) -> Result<()> {
    check_device("latents", t, device)?;
    check_shape("latents", t, &[None, Some(c), None, None])?;
    let (b, _, h, w) = t.dims4()?;
    if b == 0 || h == 0 || w == 0 {
        return Err(ModelError::BadInput {
            name: "latents".into(),
            expected: format!("(B>0, {c}, h>0, w>0)"),
            found: t.dims().to_vec(),
        });
    }
    Ok(())
}

// ------------------------------------------------------------------ FluxAe

/// BFL's FLUX autoencoder (`ae.safetensors`, 16 latent channels, ÷8), through
/// candle-transformers' `flux::autoencoder` modules.
///
/// Unlike candle's `AutoEncoder::encode`, which draws a sample of the posterior, [`encode`]
/// is deterministic: it takes the posterior mean, then applies `(z - shift) * scale`
/// (0.1159 and 0.3611 for the released model). [`decode`] applies `z / scale + shift`.
///
/// [`encode`]: Autoencoder::encode
/// [`decode`]: Autoencoder::decode
pub struct FluxAe {
    encoder: Encoder,
    decoder: Decoder,
    mean: DiagonalGaussian,
    scale: f64,
    shift: f64,
    z_channels: usize,
    downsample: usize,
    device: Device,
    dtype: DType,
}

impl std::fmt::Debug for FluxAe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluxAe")
            .field("z_channels", &self.z_channels)
            .field("downsample", &self.downsample)
            .field("scale", &self.scale)
            .field("shift", &self.shift)
            .field("device", &device_name(&self.device))
            .field("dtype", &self.dtype)
            .finish()
    }
}

fn validate_ae_config(cfg: &FluxAeConfig) -> Result<()> {
    let bad = |m: String| Err(ModelError::InvalidConfig(format!("flux autoencoder: {m}")));
    if cfg.ch_mult.is_empty() || cfg.ch == 0 || cfg.z_channels == 0 {
        return bad("ch, ch_mult and z_channels must be non-empty / positive".into());
    }
    if cfg.in_channels != 3 || cfg.out_ch != 3 {
        return bad("in_channels and out_ch must be 3 (RGB)".into());
    }
    for m in &cfg.ch_mult {
        if (cfg.ch * m) % 32 != 0 || *m == 0 {
            return bad(format!(
                "every ch * ch_mult must be a positive multiple of 32 (GroupNorm 32), got {}",
                cfg.ch * m
            ));
        }
    }
    if cfg.scale_factor == 0.0 || !cfg.scale_factor.is_finite() || !cfg.shift_factor.is_finite() {
        return bad("scale_factor must be finite and non-zero".into());
    }
    Ok(())
}

impl FluxAe {
    /// Loads BFL's `ae.safetensors` (the FLUX.1 dev/schnell autoencoder config).
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with_config(path, &FluxAeConfig::dev(), device, dtype)
    }

    /// Loads a BFL-format autoencoder with another configuration (e.g. tiny test models).
    pub fn load_with_config(
        path: &Path,
        cfg: &FluxAeConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        check_dtype(device, dtype)?;
        validate_ae_config(cfg)?;
        let (encoder, decoder) = build_checked(&[path.to_path_buf()], device, dtype, |vb| {
            Ok((
                Encoder::new(cfg, vb.pp("encoder"))?,
                Decoder::new(cfg, vb.pp("decoder"))?,
            ))
        })?;
        Self::assemble(encoder, decoder, cfg, device, dtype)
    }

    /// Builds the autoencoder from a var builder with BFL names (`encoder.conv_in.weight`, ...).
    pub fn new(cfg: &FluxAeConfig, vb: VarBuilder) -> Result<Self> {
        validate_ae_config(cfg)?;
        let device = vb.device().clone();
        let dtype = vb.dtype();
        check_dtype(&device, dtype)?;
        let encoder = Encoder::new(cfg, vb.pp("encoder"))?;
        let decoder = Decoder::new(cfg, vb.pp("decoder"))?;
        Self::assemble(encoder, decoder, cfg, &device, dtype)
    }

    fn assemble(
        encoder: Encoder,
        decoder: Decoder,
        cfg: &FluxAeConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        Ok(Self {
            encoder,
            decoder,
            mean: DiagonalGaussian::new(false, 1)?,
            scale: cfg.scale_factor,
            shift: cfg.shift_factor,
            z_channels: cfg.z_channels,
            downsample: 1 << (cfg.ch_mult.len() - 1),
            device: device.clone(),
            dtype,
        })
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// The device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

impl Autoencoder for FluxAe {
    fn encode(&self, images: &Tensor) -> Result<Tensor> {
        check_images(images, self.downsample, &self.device)?;
        let x = images.to_dtype(self.dtype)?;
        let moments = self.encoder.forward(&x)?;
        let z = self.mean.forward(&moments)?;
        Ok(((z - self.shift)? * self.scale)?)
    }

    fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        check_latents(latents, self.z_channels, &self.device)?;
        let z = ((latents.to_dtype(self.dtype)? / self.scale)? + self.shift)?;
        Ok(self.decoder.forward(&z)?.to_dtype(DType::F32)?)
    }

    fn latent_channels(&self) -> usize {
        self.z_channels
    }

    fn downsample(&self) -> usize {
        self.downsample
    }
}
