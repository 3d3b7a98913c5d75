//! `skeleguide bench flux`: FLUX.1-dev's cost at its real size, from random weights of the real
//! shapes built directly on the device (no checkpoint files): the DiT step against
//! candle-transformers' FLUX on the same weights, the condition-stream step with and without its
//! K/V cache, the autoencoder, T5-XXL + CLIP-L (token ids stand in for the tokenizers), and a
//! LoRA training step (both sets, base frozen, batch 1) at two sizes, with and without
//! activation checkpointing, and the whole two-stage
//! `generate` through the real pipeline. `quick` runs the same rows
//! on a reduced configuration of the same architecture, for the CPU and CI.

use super::autoencoder::{Autoencoder, FluxAe, FluxAeConfig};
use super::bench::{median, peak_rss_mib, RandomBatch};
use super::config::DitConfig;
use super::device::device_name;
use super::error::{ModelError, Result};
use super::lora::LoraSpec;
use super::mmdit::{random_weights_on_device, Condition, MmDit, Mode};
use super::text::TextEncoder;
use candle_core::{DType, Device, Module, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Optimizer, VarBuilder};
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::flux::WithForward;
use candle_transformers::models::t5::{Config as T5Config, T5EncoderModel};
use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct FluxBenchOptions {
    /// A reduced configuration of the same architecture (for the CPU).
    pub quick: bool,
    /// Image side in pixels of the DiT, autoencoder and generation rows.
    pub size: usize,
    /// The two sides of the LoRA training rows.
    pub train_sizes: [usize; 2],
    /// Compute dtype.
    pub dtype: DType,
    /// Timed repetitions per row (the median is reported).
    pub iters: usize,
}

impl FluxBenchOptions {
    /// FLUX.1-dev at 1024², LoRA training at 512² and 1024².
    pub fn full(dtype: DType) -> Self {
        Self {
            quick: false,
            size: 1024,
            train_sizes: [512, 1024],
            dtype,
            iters: 3,
        }
    }

    /// The options of a run on `device`: `quick` or full, in `dtype` (`bf16` or `f32`; default
    /// f32 with `quick`, else the device's default).
    pub fn for_device(device: &Device, quick: bool, dtype: Option<&str>) -> Result<Self> {
        let dtype = match dtype {
            Some("f32") => DType::F32,
            Some("bf16") => DType::BF16,
            Some(other) => {
                return Err(ModelError::InvalidConfig(format!(
                    "dtype {other:?}: must be bf16 or f32"
                )))
            }
            None if quick => DType::F32,
            None => super::device::default_dtype(device),
        };
        let mut opts = if quick {
            Self::quick()
        } else {
            Self::full(dtype)
        };
        opts.dtype = dtype;
        Ok(opts)
    }

    /// The reduced configuration at 64², LoRA training at 32² and 64², f32.
    pub fn quick() -> Self {
        Self {
            quick: true,
            size: 64,
            train_sizes: [32, 64],
            dtype: DType::F32,
            iters: 1,
        }
    }
}

/// One measured row.
#[derive(Debug, Clone, Serialize)]
pub struct FluxBenchRow {
    /// What was timed.
    pub what: String,
    /// Median milliseconds.
    pub ms: f64,
    /// Peak resident memory of the process so far (CPU), MiB.
    pub peak_rss_mib: Option<f64>,
    /// The most device memory in use while the row ran (GPU: the whole device's, weights and
    /// other processes included, sampled every millisecond), MiB.
    pub peak_device_mib: Option<f64>,
    /// Why the row could not be measured (out of device memory, say); the others still run.
    pub error: Option<String>,
}

/// The result of [`bench_flux`].
#[derive(Debug, Clone, Serialize)]
pub struct FluxBench {
    /// `flux-dev`, or `flux-dev (reduced)` with `quick`.
    pub model: String,
    /// Where it ran.
    pub device: String,
    /// Compute dtype.
    pub dtype: String,
    /// DiT parameters.
    pub dit_params: usize,
    /// Image side of the DiT rows.
    pub size: usize,
    /// Image and text tokens of the DiT rows.
    pub image_tokens: usize,
    /// Text tokens (T5's sequence).
    pub text_tokens: usize,
    /// LoRA rank of the condition-stream and training rows.
    pub lora_rank: usize,
    /// The rows.
    pub rows: Vec<FluxBenchRow>,
}

impl fmt::Display for FluxBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({:.1} M DiT parameters) on {} in {}: {}² = {} image + {} text tokens, LoRA rank {}",
            self.model,
            self.dit_params as f64 / 1e6,
            self.device,
            self.dtype,
            self.size,
            self.image_tokens,
            self.text_tokens,
            self.lora_rank
        )?;
        for r in &self.rows {
            let mem = match (r.peak_device_mib, r.peak_rss_mib) {
                (Some(m), _) => format!("   (peak device memory {m:.0} MiB)"),
                (None, Some(m)) => format!("   (peak RSS {m:.0} MiB)"),
                (None, None) => String::new(),
            };
            match &r.error {
                Some(e) => writeln!(f, "{:<58} failed: {e}", r.what)?,
                None => writeln!(f, "{:<58} {:>10.1} ms{mem}", r.what, r.ms)?,
            }
        }
        Ok(())
    }
}

/// Samples a GPU's used memory on a thread while a row runs.
struct DeviceMemorySampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Option<usize>>,
}

impl DeviceMemorySampler {
    /// Starts sampling `device` (`None` off a GPU).
    fn start(device: &Device) -> Option<Self> {
        let used = device_used_bytes(device)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = None;
            loop {
                let done = flag.load(Ordering::Relaxed);
                if let Some(u) = used() {
                    peak = Some(peak.map_or(u, |p: usize| p.max(u)));
                }
                if done {
                    return peak;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        Some(Self { stop, thread })
    }

    /// Stops sampling; the peak in MiB.
    fn finish(self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.thread.join().ok().flatten()?;
        Some(peak as f64 / (1024.0 * 1024.0))
    }
}

/// A reader of the device's used memory in bytes (total minus free), for CUDA devices.
fn device_used_bytes(device: &Device) -> Option<Box<dyn Fn() -> Option<usize> + Send>> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let ctx = Arc::clone(d.cuda_stream().context());
            Some(Box::new(move || {
                ctx.mem_get_info().ok().map(|(free, total)| total - free)
            }))
        }
        _ => None,
    }
}

/// A `VarBuilder` backend that makes every tensor asked for: normal(0, 0.02) values, ones for
/// norm scales, on the requested device. The shapes are the model code's own, so a model built
/// from it has exactly the size and cost of the real one.
struct RandomBackend;

impl SimpleBackend for RandomBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let norm = name.contains("norm") || name.ends_with(".scale");
        if norm && s.rank() == 1 {
            return Tensor::ones(s, dtype, dev);
        }
        Tensor::randn(0f32, 0.02, s, dev)?.to_dtype(dtype)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights: {name} asked for without a shape")
    }
    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

fn random_vb(dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(RandomBackend), dtype, device.clone())
}

/// The configurations: FLUX.1-dev's, or a reduced one of the same architecture.
struct Configs {
    dit: DitConfig,
    ae: FluxAeConfig,
    t5: T5Config,
    clip: ClipTextConfig,
    t5_len: usize,
}

fn configs(quick: bool) -> Result<Configs> {
    let t5 = |d_model: usize, d_kv: usize, d_ff: usize, layers: usize, heads: usize| {
        serde_json::from_value::<T5Config>(serde_json::json!({
            "vocab_size": 32128, "d_model": d_model, "d_kv": d_kv, "d_ff": d_ff,
            "num_layers": layers, "num_heads": heads, "relative_attention_num_buckets": 32,
            "relative_attention_max_distance": 128, "dropout_rate": 0.0,
            "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0,
            "feed_forward_proj": "gated-gelu", "is_encoder_decoder": true,
            "pad_token_id": 0, "eos_token_id": 1
        }))
    };
    let clip = |embed: usize, inter: usize, layers: usize, heads: usize| ClipTextConfig {
        vocab_size: 49408,
        embed_dim: embed,
        activation: Activation::QuickGelu,
        intermediate_size: inter,
        max_position_embeddings: 77,
        pad_with: None,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        projection_dim: embed,
    };
    if !quick {
        return Ok(Configs {
            dit: DitConfig::flux_dev(),
            ae: FluxAeConfig::dev(),
            t5: t5(4096, 64, 10240, 24, 64)?,
            clip: clip(768, 3072, 12, 12),
            t5_len: 512,
        });
    }
    let mut dit = DitConfig::flux_dev();
    dit.hidden_size = 128;
    dit.num_heads = 2;
    dit.depth = 1;
    dit.depth_single_blocks = 1;
    dit.axes_dim = vec![16, 24, 24];
    dit.context_in_dim = 64;
    dit.vec_in_dim = 64;
    let mut ae = FluxAeConfig::dev();
    ae.ch = 32;
    ae.ch_mult = vec![1, 1, 1, 1];
    ae.num_res_blocks = 1;
    Ok(Configs {
        dit,
        ae,
        t5: t5(64, 16, 128, 2, 4)?,
        clip: clip(64, 128, 2, 2),
        t5_len: 16,
    })
}

/// Runs the FLUX benchmark on `device`.
pub fn bench_flux(opts: &FluxBenchOptions, device: &Device) -> Result<FluxBench> {
    if !opts.quick && device.is_cpu() {
        return Err(ModelError::InvalidConfig(
            "bench flux: FLUX.1-dev at full size needs a GPU (a cuda build); use --quick on the CPU"
                .into(),
        ));
    }
    let c = configs(opts.quick)?;
    let dtype = opts.dtype;
    let mut rows = Vec::new();
    let mut timed = |what: String, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let mut run = || -> Result<f64> {
            f()?; // warm-up: kernels, caches
            let mut v = Vec::new();
            for _ in 0..opts.iters.max(1) {
                device.synchronize()?;
                let t = Instant::now();
                f()?;
                device.synchronize()?;
                v.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok(median(v))
        };
        let sampler = DeviceMemorySampler::start(device);
        let (ms, error) = match run() {
            Ok(ms) => (ms, None),
            Err(e) => (f64::NAN, Some(e.to_string())),
        };
        rows.push(FluxBenchRow {
            what,
            ms,
            peak_rss_mib: if device.is_cpu() {
                peak_rss_mib()
            } else {
                None
            },
            peak_device_mib: sampler.and_then(DeviceMemorySampler::finish),
            error,
        });
        Ok(())
    };

    // Text encoders on fixed token ids (freed before the DiT rows, built again for generate).
    let text = RandomFluxText::new(&c, dtype, device)?;
    timed("T5 + CLIP encode (one prompt)".into(), &mut || {
        text.encode(&["a person in a red coat"]).map(drop)
    })?;
    drop(text);

    // Autoencoder.
    let ae = FluxAe::new(&c.ae, random_vb(dtype, device))?;
    let s = opts.size;
    let img = Tensor::rand(-1f32, 1f32, (1, 3, s, s), device)?.to_dtype(dtype)?;
    let mut lat = None;
    timed(format!("AE encode {s}²"), &mut || {
        lat = Some(ae.encode(&img)?);
        Ok(())
    })?;
    timed(format!("AE decode {s}²"), &mut || match &lat {
        Some(lat) => Ok(ae.decode(lat).map(drop)?),
        None => Err(ModelError::InvalidConfig(
            "no latent to decode (the encode row failed)".into(),
        )),
    })?;
    drop(ae);

    // DiT: ours against the reference on the same weights.
    let weights = random_weights_on_device(&c.dit, device, dtype)?;
    let dit_params = weights.values().map(|t| t.elem_count()).sum();
    let reference = candle_transformers::models::flux::model::Flux::new(
        &c.dit.to_candle_flux(),
        VarBuilder::from_tensors(weights.clone(), dtype, device),
    )?;
    let mut dit = MmDit::from_tensors(&c.dit, weights, device, dtype)?;
    let rank = if opts.quick { 8 } else { 128 };
    let spec = LoraSpec {
        rank,
        alpha: rank as f64,
        ..LoraSpec::default()
    };
    for set in ["skeletal", "appearance"] {
        dit.loras_mut().add(set, &spec)?;
    }
    let grid = s / 16;
    let (n_img, n_txt) = (grid * grid, c.t5_len);
    let inputs = RandomBatch::new(&c.dit, 1, grid, n_txt, dtype, device)?;
    let inp = inputs.dit();
    timed(format!("DiT step {s}², ours (single stream)"), &mut || {
        dit.forward(&inp, Condition::None, Mode::Fast)?;
        Ok(())
    })?;
    timed(
        format!("DiT step {s}², candle-transformers' FLUX"),
        &mut || {
            reference.forward(
                inp.img,
                inp.img_ids,
                inp.txt,
                inp.txt_ids,
                inp.timesteps,
                inp.y,
                inp.guidance,
            )?;
            Ok(())
        },
    )?;
    drop(reference);
    dit.loras_mut().set_active(Some("skeletal"))?;
    let cache = dit.build_cond_cache(&inputs.cond, &inputs.img_ids, &inputs.y, Mode::Fast)?;
    timed(
        format!("condition-stream step {s}², K/V cached"),
        &mut || {
            dit.forward(&inp, Condition::Cached(&cache), Mode::Fast)?;
            Ok(())
        },
    )?;
    drop(cache);
    timed(
        format!("condition-stream step {s}², uncached"),
        &mut || {
            dit.forward(&inp, inputs.cond_of(&inputs.cond), Mode::Fast)?;
            Ok(())
        },
    )?;

    // LoRA training: both sets trainable (the joint phase's parameters), base frozen.
    for ts in opts.train_sizes {
        let set = RandomBatch::new(&c.dit, 1, ts / 16, n_txt, dtype, device)?;
        let mut vars = dit.loras_mut().make_trainable("skeletal")?;
        vars.extend(dit.loras_mut().make_trainable("appearance")?);
        let mut opt = candle_nn::AdamW::new(
            vars,
            candle_nn::ParamsAdamW {
                lr: 1e-5,
                ..Default::default()
            },
        )?;
        for ckpt in [false, true] {
            dit.set_activation_checkpointing(ckpt)?;
            let what = if ckpt {
                format!("LoRA training step {ts}², batch 1, activation checkpointing")
            } else {
                format!("LoRA training step {ts}², batch 1")
            };
            timed(what, &mut || {
                let pred = dit.forward(&set.dit(), set.cond_of(&set.cond), Mode::Train)?;
                let loss = set.mse(&pred)?;
                opt.backward_step(&loss)?;
                Ok(())
            })?;
        }
        dit.set_activation_checkpointing(false)?;
        for s in ["skeletal", "appearance"] {
            dit.loras_mut().freeze(s)?;
        }
    }

    // The whole two-stage generate through the real pipeline, its caches cleared before each
    // run: text encoding, the scene's encode, 25 + 25 steps (2 + 2 with `quick`), both decodes
    // and the pose inversion (model loading excluded).
    let steps = if opts.quick { 2 } else { 25 };
    let mut pipeline = RandomFluxText::new(&c, dtype, device)
        .and_then(|text| {
            let ae = FluxAe::new(&c.ae, random_vb(dtype, device))?;
            crate::pipeline::Pipeline::from_parts(
                std::path::Path::new("random flux-dev"),
                flux_model_config(&c.dit, s, rank),
                dit,
                Box::new(ae),
                Box::new(text),
                device,
                dtype,
            )
            .map_err(|e| ModelError::InvalidConfig(e.to_string()))
        })
        .map_err(|e| e.to_string());
    let scene = image::RgbImage::from_fn(s as u32, s as u32, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
    });
    let run = crate::pipeline::RunOptions {
        steps,
        seed: 0,
        keep_background: true,
        guidance: None,
        candidates: None,
        contrast: None,
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    timed(
        format!("generate {s}², {steps} + {steps} steps"),
        &mut || {
            let p = pipeline
                .as_mut()
                .map_err(|e| ModelError::InvalidConfig(e.clone()))?;
            p.clear_caches();
            p.generate(
                &scene,
                "a person in a red coat",
                &run,
                &mut |_, _, _| {},
                &cancel,
            )
            .map(drop)
            .map_err(|e| ModelError::InvalidConfig(e.to_string()))
        },
    )?;
    Ok(FluxBench {
        model: if opts.quick {
            "flux-dev (reduced)".into()
        } else {
            "flux-dev".into()
        },
        device: device_name(device),
        dtype: format!("{dtype:?}").to_lowercase(),
        dit_params,
        size: s,
        image_tokens: n_img,
        text_tokens: n_txt,
        lora_rank: rank,
        rows,
    })
}

/// FLUX.1-dev's model directory settings around `dit`, at working size `size`.
fn flux_model_config(dit: &DitConfig, size: usize, rank: usize) -> crate::modeldir::ModelConfig {
    use crate::modeldir::{AeSpec, LoraConfig, ModelConfig, TextSpec, APPEARANCE, SKELETAL};
    let mut mc = ModelConfig::tiny();
    mc.preset = "flux-dev".into();
    mc.dit = dit.clone();
    mc.resolution = size as u32;
    mc.ae = AeSpec::Flux;
    mc.text = TextSpec::Flux;
    mc.lora = [SKELETAL, APPEARANCE]
        .into_iter()
        .map(|n| {
            let l = LoraConfig {
                rank,
                alpha: rank as f64,
            };
            (n.to_string(), l)
        })
        .collect();
    mc
}

/// T5-XXL + CLIP-L with random weights; every prompt becomes the same token ids (the tokenizer
/// files are not needed to time the encoders).
struct RandomFluxText {
    t5: std::sync::Mutex<T5EncoderModel>,
    clip: ClipTextTransformer,
    t5_dim: usize,
    clip_dim: usize,
    t5_len: usize,
    dtype: DType,
    device: Device,
}

impl RandomFluxText {
    fn new(c: &Configs, dtype: DType, device: &Device) -> Result<Self> {
        Ok(Self {
            t5: std::sync::Mutex::new(T5EncoderModel::load(random_vb(dtype, device), &c.t5)?),
            clip: ClipTextTransformer::new(random_vb(dtype, device).pp("text_model"), &c.clip)?,
            t5_dim: c.t5.d_model,
            clip_dim: c.clip.embed_dim,
            t5_len: c.t5_len,
            dtype,
            device: device.clone(),
        })
    }
}

impl TextEncoder for RandomFluxText {
    fn encode(&self, prompts: &[&str]) -> Result<super::text::TextFeatures> {
        let b = prompts.len();
        let t5_ids = Tensor::arange(0u32, self.t5_len as u32, &self.device)?
            .unsqueeze(0)?
            .repeat((b, 1))?;
        let clip_ids = Tensor::arange(0u32, 77u32, &self.device)?
            .unsqueeze(0)?
            .repeat((b, 1))?;
        let tokens = self
            .t5
            .lock()
            .map_err(|_| ModelError::InvalidConfig("T5 lock poisoned".into()))?
            .forward_dt(&t5_ids, Some(self.dtype))?;
        let pooled = self.clip.forward(&clip_ids)?.to_dtype(self.dtype)?;
        Ok(super::text::TextFeatures {
            tokens,
            pooled,
            truncated: false,
        })
    }

    fn token_dim(&self) -> usize {
        self.t5_dim
    }

    fn pooled_dim(&self) -> usize {
        self.clip_dim
    }

    fn max_len(&self) -> usize {
        self.t5_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bfl_tensor_shapes;

    #[test]
    fn the_quick_run_times_every_row_on_the_cpu() {
        let r = bench_flux(&FluxBenchOptions::quick(), &Device::Cpu).unwrap();
        let rows: Vec<&str> = r.rows.iter().map(|r| r.what.as_str()).collect();
        assert_eq!(rows.len(), 12, "{rows:?}");
        assert!(rows
            .iter()
            .any(|w| w.starts_with("generate 64², 2 + 2 steps")));
        assert!(
            r.rows
                .iter()
                .all(|r| r.error.is_none() && r.ms > 0.0 && r.ms.is_finite()),
            "{:?}",
            r.rows
        );
        assert!(rows.iter().any(|w| w.contains("candle-transformers")));
        assert!(rows.iter().any(|w| w.contains("LoRA training step 64²")));
        assert!(rows
            .iter()
            .any(|w| w.contains("LoRA training step 64², batch 1, activation checkpointing")));
        let full = bench_flux(&FluxBenchOptions::full(DType::F32), &Device::Cpu).unwrap_err();
        assert!(full.to_string().contains("--quick"), "{full}");
    }

    #[test]
    fn the_full_configuration_has_flux_dev_sizes() {
        let c = configs(false).unwrap();
        let dit: usize = bfl_tensor_shapes(&c.dit)
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        // FLUX.1-dev's transformer: 11.9 B parameters; T5-XXL's encoder 4096 wide, 24 layers.
        assert!((11.8e9..12.0e9).contains(&(dit as f64)), "{dit}");
        assert_eq!((c.t5.d_model, c.t5.num_layers, c.t5_len), (4096, 24, 512));
        assert_eq!((c.clip.embed_dim, c.clip.num_hidden_layers), (768, 12));
    }
}
