//! `skeleguide bench dit`: speed of our MM-DiT against candle-transformers' FLUX, of cached vs
//! uncached condition sampling, and of a LoRA training step.
//!
//! Everything runs on the `tiny` preset at 128x128 (a 16x16 latent: 64 image tokens, 64
//! condition tokens) with 32 text tokens and random weights; both models get the same weights
//! and inputs. Times are medians in milliseconds.

use super::config::DitConfig;
use super::error::Result;
use super::lora::LoraSpec;
use super::mmdit::{image_ids, random_weights, text_ids, Condition, DitInputs, MmDit, Mode};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Optimizer, VarBuilder};
use candle_transformers::models::flux::WithForward;
use serde::Serialize;
use std::fmt;
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Batch sizes of the forward and sampling rows.
    pub batches: Vec<usize>,
    /// Timed repetitions of one forward (median is reported).
    pub forward_iters: usize,
    /// Untimed warm-up repetitions.
    pub warmup: usize,
    /// Sampling steps of one stage.
    pub steps: usize,
    /// Timed repetitions of a whole sampling run.
    pub sampling_iters: usize,
    /// Batch of the training step.
    pub train_batch: usize,
    /// Timed training steps.
    pub train_iters: usize,
    /// Rank of the trained LoRA set.
    pub lora_rank: usize,
    /// Text tokens.
    pub text_tokens: usize,
    /// Image side in pixels (the latent is side/8, packed 2x2).
    pub image_size: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            batches: vec![1, 8],
            forward_iters: 20,
            warmup: 3,
            steps: 25,
            sampling_iters: 3,
            train_batch: 8,
            train_iters: 5,
            lora_rank: 16,
            text_tokens: 32,
            image_size: 128,
        }
    }
}

impl BenchOptions {
    /// A very short run (for smoke tests).
    pub fn quick() -> Self {
        Self {
            batches: vec![1],
            forward_iters: 1,
            warmup: 0,
            steps: 2,
            sampling_iters: 1,
            train_batch: 2,
            train_iters: 1,
            lora_rank: 4,
            text_tokens: 8,
            image_size: 64,
        }
    }
}

/// One batch size's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct DitBenchRow {
    /// The batch size these numbers are for.
    pub batch: usize,
    /// Our forward, fast path, no condition.
    pub dit_forward_ms: f64,
    /// candle-transformers `flux::model::Flux`, same weights and input.
    pub reference_forward_ms: f64,
    /// `dit_forward_ms / reference_forward_ms` (target <= 0.5).
    pub forward_ratio: f64,
    /// Our forward, fast path, against a condition K/V cache (one sampling step).
    pub dit_forward_cached_ms: f64,
    /// Our forward, fast path, running the condition tokens too (one uncached step).
    pub dit_forward_uncached_ms: f64,
    /// Our forward in the training (differentiable) path, no condition.
    pub dit_forward_train_path_ms: f64,
    /// A whole stage (`steps` Euler steps) with a condition, K/V cache on (cache build included).
    pub stage_sampling_ms_cached: f64,
    /// The same stage recomputing the condition stream at every step.
    pub stage_sampling_ms_uncached: f64,
    /// `uncached / cached` (target >= 1.6).
    pub cache_speedup: f64,
}

/// The result of [`bench_dit`].
#[derive(Debug, Clone, Serialize)]
pub struct DitBench {
    /// The model preset benchmarked (always `tiny`).
    pub preset: String,
    /// Hash of the DiT configuration.
    pub config_hash: String,
    /// Image side, in pixels.
    pub image_size: usize,
    /// Number of image tokens per sample.
    pub image_tokens: usize,
    /// Number of condition tokens per sample (as many as image tokens).
    pub condition_tokens: usize,
    /// Number of text tokens per sample.
    pub text_tokens: usize,
    /// Sampling steps of one stage in the sampling rows.
    pub steps: usize,
    /// Threads candle's matmul uses (`RAYON_NUM_THREADS` or the core count).
    pub threads: usize,
    /// `CANDLE_NUM_THREADS` as set in the environment.
    pub candle_num_threads_env: Option<String>,
    /// `RAYON_NUM_THREADS` as set in the environment.
    pub rayon_num_threads_env: Option<String>,
    /// One row per batch size.
    pub rows: Vec<DitBenchRow>,
    /// Forward + MSE + backward + AdamW on one LoRA set, condition included.
    pub train_step_ms: f64,
    /// Batch size of the training step.
    pub train_batch: usize,
    /// Rank of the LoRA set trained in the training step.
    pub lora_rank: usize,
    /// Number of trainable LoRA parameters in the training step.
    pub lora_params: usize,
    /// Peak resident set size of the process (VmHWM), MiB; None where /proc is missing.
    pub peak_rss_mib: Option<f64>,
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time_ms<F: FnMut() -> Result<()>>(warmup: usize, iters: usize, mut f: F) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let mut v = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(v))
}

/// Random DiT inputs of one batch for the benchmarks: `grid²` image tokens, as many condition
/// tokens, `nt` text tokens, σ = 0.5, guidance 3.5 when the model embeds it, and a target.
pub(super) struct RandomBatch {
    pub(super) img: Tensor,
    pub(super) target: Tensor,
    pub(super) cond: Tensor,
    pub(super) img_ids: Tensor,
    pub(super) txt: Tensor,
    pub(super) txt_ids: Tensor,
    pub(super) y: Tensor,
    pub(super) t: Tensor,
    /// σ = 1 for every example (the joint phase's one-step estimate).
    pub(super) ones: Tensor,
    pub(super) guidance: Option<Tensor>,
}

impl RandomBatch {
    pub(super) fn new(
        cfg: &DitConfig,
        b: usize,
        grid: usize,
        nt: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let r = |shape: &[usize]| -> Result<Tensor> {
            Ok(Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)?)
        };
        let full = |v: f32| -> Result<Tensor> { Ok(Tensor::full(v, b, dev)?.to_dtype(dtype)?) };
        let (grid, n) = (grid.max(1), grid.max(1) * grid.max(1));
        Ok(Self {
            img: r(&[b, n, cfg.in_channels])?,
            target: r(&[b, n, cfg.in_channels])?,
            cond: r(&[b, n, cfg.in_channels])?,
            img_ids: image_ids(b, grid, grid, dev, dtype)?,
            txt: r(&[b, nt, cfg.context_in_dim])?,
            txt_ids: text_ids(b, nt, dev, dtype)?,
            y: r(&[b, cfg.vec_in_dim])?,
            t: full(0.5)?,
            ones: full(1.0)?,
            guidance: cfg.guidance_embed.then(|| full(3.5)).transpose()?,
        })
    }

    pub(super) fn dit(&self) -> DitInputs<'_> {
        DitInputs {
            img: &self.img,
            img_ids: &self.img_ids,
            txt: &self.txt,
            txt_ids: &self.txt_ids,
            timesteps: &self.t,
            y: &self.y,
            guidance: self.guidance.as_ref(),
        }
    }

    /// `tokens` as the condition, at the image's positions.
    pub(super) fn cond_of<'a>(&'a self, tokens: &'a Tensor) -> Condition<'a> {
        Condition::Tokens {
            tokens,
            ids: &self.img_ids,
        }
    }

    /// The mean squared error of `pred` against the target.
    pub(super) fn mse(&self, pred: &Tensor) -> Result<Tensor> {
        Ok((pred - &self.target)?.sqr()?.mean_all()?)
    }
}

/// Peak RSS of this process in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs the DiT benchmark on the CPU in f32.
pub fn bench_dit(opts: &BenchOptions) -> Result<DitBench> {
    let dev = Device::Cpu;
    let cfg = DitConfig::tiny();
    let weights = random_weights(&cfg, 1234, &dev, DType::F32)?;
    let reference = candle_transformers::models::flux::model::Flux::new(
        &cfg.to_candle_flux(),
        VarBuilder::from_tensors(weights.clone(), DType::F32, &dev),
    )?;
    let mut model = MmDit::from_tensors(&cfg, weights, &dev, DType::F32)?;
    let grid = (opts.image_size / 16).max(1);
    let n_img = grid * grid;
    let nt = opts.text_tokens;
    let spec = LoraSpec {
        rank: opts.lora_rank,
        alpha: opts.lora_rank as f64,
        ..LoraSpec::default()
    };
    model.loras_mut().add("skeletal", &spec)?;
    model.loras_mut().set_active(Some("skeletal"))?;

    let mut rows = Vec::new();
    for &b in &opts.batches {
        let batch = RandomBatch::new(&cfg, b, grid, nt, DType::F32, &dev)?;
        let (img, cond, img_ids) = (&batch.img, &batch.cond, &batch.img_ids);
        let (txt, txt_ids, y, t) = (&batch.txt, &batch.txt_ids, &batch.y, &batch.t);
        let inp = batch.dit();
        let (w, it) = (opts.warmup, opts.forward_iters);
        let reference_ms = time_ms(w, it, || {
            reference.forward(img, img_ids, txt, txt_ids, t, y, None)?;
            Ok(())
        })?;
        let ours_ms = time_ms(w, it, || {
            model.forward(&inp, Condition::None, Mode::Fast)?;
            Ok(())
        })?;
        let cache = model.build_cond_cache(cond, img_ids, y, Mode::Fast)?;
        let cached_fwd_ms = time_ms(w, it, || {
            model.forward(&inp, Condition::Cached(&cache), Mode::Fast)?;
            Ok(())
        })?;
        let uncached_fwd_ms = time_ms(w, it, || {
            let c = Condition::Tokens {
                tokens: cond,
                ids: img_ids,
            };
            model.forward(&inp, c, Mode::Fast)?;
            Ok(())
        })?;
        let train_path_ms = time_ms(w.min(1), it.div_ceil(4), || {
            model.forward(&inp, Condition::None, Mode::Train)?;
            Ok(())
        })?;
        let steps = opts.steps.max(1);
        let sample = |cached: bool| -> Result<()> {
            let cache = if cached {
                Some(model.build_cond_cache(cond, img_ids, y, Mode::Fast)?)
            } else {
                None
            };
            let mut x = img.clone();
            for s in 0..steps {
                let s0 = 1.0 - s as f64 / steps as f64;
                let s1 = 1.0 - (s + 1) as f64 / steps as f64;
                let tt = Tensor::full(s0 as f32, b, &dev)?;
                let step_inp = DitInputs {
                    img: &x,
                    timesteps: &tt,
                    ..inp
                };
                let c = match &cache {
                    Some(c) => Condition::Cached(c),
                    None => Condition::Tokens {
                        tokens: cond,
                        ids: img_ids,
                    },
                };
                let v = model.forward(&step_inp, c, Mode::Fast)?;
                x = (&x + (v * (s1 - s0))?)?;
            }
            Ok(())
        };
        // Interleave the two runs so that machine load affects both alike.
        if opts.warmup > 0 {
            sample(true)?;
            sample(false)?;
        }
        let (mut vc, mut vu) = (Vec::new(), Vec::new());
        for _ in 0..opts.sampling_iters.max(1) {
            let t0 = Instant::now();
            sample(true)?;
            vc.push(t0.elapsed().as_secs_f64() * 1e3);
            let t0 = Instant::now();
            sample(false)?;
            vu.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let (cached_ms, uncached_ms) = (median(vc), median(vu));
        rows.push(DitBenchRow {
            batch: b,
            dit_forward_ms: ours_ms,
            reference_forward_ms: reference_ms,
            forward_ratio: ours_ms / reference_ms,
            dit_forward_cached_ms: cached_fwd_ms,
            dit_forward_uncached_ms: uncached_fwd_ms,
            dit_forward_train_path_ms: train_path_ms,
            stage_sampling_ms_cached: cached_ms,
            stage_sampling_ms_uncached: uncached_ms,
            cache_speedup: uncached_ms / cached_ms,
        });
    }

    // Training step on the LoRA set.
    let b = opts.train_batch.max(1);
    let vars = model.loras_mut().make_trainable("skeletal")?;
    let lora_params = vars.iter().map(|v| v.elem_count()).sum();
    let mut opt = candle_nn::AdamW::new(
        vars,
        candle_nn::ParamsAdamW {
            lr: 1e-4,
            ..Default::default()
        },
    )?;
    let batch = RandomBatch::new(&cfg, b, grid, nt, DType::F32, &dev)?;
    let train_ms = time_ms(opts.warmup.min(1), opts.train_iters, || {
        let pred = model.forward(&batch.dit(), batch.cond_of(&batch.cond), Mode::Train)?;
        let loss = batch.mse(&pred)?;
        opt.backward_step(&loss)?;
        Ok(())
    })?;
    model.loras_mut().freeze("skeletal")?;

    Ok(DitBench {
        preset: "tiny".into(),
        config_hash: cfg.hash(),
        image_size: opts.image_size,
        image_tokens: n_img,
        condition_tokens: n_img,
        text_tokens: nt,
        steps: opts.steps,
        threads: candle_core::utils::get_num_threads(),
        candle_num_threads_env: std::env::var("CANDLE_NUM_THREADS").ok(),
        rayon_num_threads_env: std::env::var("RAYON_NUM_THREADS").ok(),
        rows,
        train_step_ms: train_ms,
        train_batch: b,
        lora_rank: opts.lora_rank,
        lora_params,
        peak_rss_mib: peak_rss_mib(),
    })
}

impl fmt::Display for DitBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "DiT benchmark: preset {} ({}), {}x{} px = {} image + {} condition tokens, {} text tokens, {} threads",
            self.preset,
            self.config_hash,
            self.image_size,
            self.image_size,
            self.image_tokens,
            self.condition_tokens,
            self.text_tokens,
            self.threads
        )?;
        writeln!(
            f,
            "{:>5} {:>12} {:>14} {:>8} {:>11} {:>13} {:>12} {:>16} {:>18} {:>8}",
            "batch",
            "forward ms",
            "reference ms",
            "ratio",
            "fwd cached",
            "fwd uncached",
            "train-path",
            format!("{} steps cached", self.steps),
            format!("{} steps uncached", self.steps),
            "speedup"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>5} {:>12.2} {:>14.2} {:>7.2}x {:>11.2} {:>13.2} {:>12.2} {:>16.1} {:>18.1} {:>7.2}x",
                r.batch,
                r.dit_forward_ms,
                r.reference_forward_ms,
                r.forward_ratio,
                r.dit_forward_cached_ms,
                r.dit_forward_uncached_ms,
                r.dit_forward_train_path_ms,
                r.stage_sampling_ms_cached,
                r.stage_sampling_ms_uncached,
                r.cache_speedup
            )?;
        }
        writeln!(
            f,
            "train step (batch {}, LoRA rank {}, {} params, fwd+bwd+AdamW): {:.1} ms",
            self.train_batch, self.lora_rank, self.lora_params, self.train_step_ms
        )?;
        match self.peak_rss_mib {
            Some(m) => writeln!(f, "peak RSS: {m:.1} MiB"),
            None => writeln!(f, "peak RSS: n/a"),
        }
    }
}
