//! `skeleguide bench train`: the training step of each phase of the curriculum on the `tiny`
//! preset, split into forward, backward and optimiser, as the trainer runs it.
//!
//! - `0-dit`: every base weight trainable (the model is rebuilt from its `Var`s each step, as
//!   phase 0 does), no condition, one forward;
//! - `1`: the skeletal LoRA on the condition branch, scene condition tokens, one forward;
//! - `2`: both LoRA sets; the reason forward, the one-step layout estimate and the render
//!   forward conditioned on it (three forwards, as the joint phase);
//! - `3`: the appearance LoRA, layout condition tokens, one forward.
//!
//! Random weights and inputs; flow-matching MSE against a random target; the engine's AdamW with
//! gradient clipping at 1. Times are medians in milliseconds.

use super::adamw::{AdamW, AdamWParams};
use super::bench::{median, RandomBatch};
use super::config::DitConfig;
use super::device::device_name;
use super::error::Result;
use super::lora::LoraSpec;
use super::mmdit::{random_weights, Condition, DitInputs, MmDit, Mode};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct TrainBenchOptions {
    /// Batch sizes (one set of rows each).
    pub batches: Vec<usize>,
    /// Timed steps per row (the median is reported).
    pub iters: usize,
    /// Untimed steps before them.
    pub warmup: usize,
    /// Image side in pixels (the latent is side/8, packed 2x2).
    pub image_size: usize,
    /// Text tokens.
    pub text_tokens: usize,
    /// LoRA rank of both sets.
    pub lora_rank: usize,
    /// The phases to run (`0-dit`, `1`, `2`, `3`).
    pub phases: Vec<String>,
}

impl TrainBenchOptions {
    /// The phases in curriculum order.
    pub const ALL_PHASES: [&'static str; 4] = ["0-dit", "1", "2", "3"];

    /// The defaults for `device`: batch 8 on the CPU; 32, 128 and 512 on a GPU.
    pub fn for_device(device: &Device) -> Self {
        Self {
            batches: if device.is_cpu() {
                vec![8]
            } else {
                vec![32, 128, 512]
            },
            iters: 10,
            warmup: 3,
            image_size: 128,
            text_tokens: 32,
            lora_rank: 16,
            phases: Self::ALL_PHASES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A very short run (for smoke tests).
    pub fn quick() -> Self {
        Self {
            batches: vec![2],
            iters: 1,
            warmup: 0,
            image_size: 64,
            text_tokens: 8,
            lora_rank: 4,
            phases: Self::ALL_PHASES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// One phase at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct TrainBenchRow {
    /// `0-dit`, `1`, `2` or `3`.
    pub phase: String,
    /// Batch size.
    pub batch: usize,
    /// Trainable parameters.
    pub trainable_params: usize,
    /// The whole step, median.
    pub step_ms: f64,
    /// Model (re)build, text-free forward passes and the loss, median.
    pub forward_ms: f64,
    /// `loss.backward()`, median.
    pub backward_ms: f64,
    /// Gradient clipping and the AdamW update, median.
    pub optimizer_ms: f64,
    /// `batch / step`.
    pub samples_per_s: f64,
}

/// The result of [`bench_train`].
#[derive(Debug, Clone, Serialize)]
pub struct TrainBench {
    /// The model preset (always `tiny`).
    pub preset: String,
    /// Where it ran (`cpu`, `cuda:0`).
    pub device: String,
    /// Training dtype.
    pub dtype: String,
    /// Image tokens per sample.
    pub image_tokens: usize,
    /// Condition tokens per sample in the LoRA phases.
    pub condition_tokens: usize,
    /// Text tokens per sample.
    pub text_tokens: usize,
    /// LoRA rank.
    pub lora_rank: usize,
    /// Threads of the CPU backend.
    pub threads: usize,
    /// One row per phase and batch size.
    pub rows: Vec<TrainBenchRow>,
}

impl TrainBench {
    /// The step time of `phase` over that of phase `0-dit` at the same batch (the first batch
    /// where both ran).
    pub fn ratio_to_base(&self, phase: &str) -> Option<f64> {
        self.rows.iter().find_map(|r| {
            let base = self
                .rows
                .iter()
                .find(|b| b.phase == "0-dit" && b.batch == r.batch)?;
            (r.phase == phase).then(|| r.step_ms / base.step_ms)
        })
    }
}

impl fmt::Display for TrainBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "training step, tiny preset on {} ({}, {} threads): {} image + {} text tokens, {} condition tokens in the LoRA phases, LoRA rank {}",
            self.device, self.dtype, self.threads, self.image_tokens, self.text_tokens,
            self.condition_tokens, self.lora_rank
        )?;
        writeln!(
            f,
            "{:>6} {:>6} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "phase",
            "batch",
            "trainable",
            "step ms",
            "forward",
            "backward",
            "optimiser",
            "samples/s"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>6} {:>6} {:>11} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                r.phase,
                r.batch,
                r.trainable_params,
                r.step_ms,
                r.forward_ms,
                r.backward_ms,
                r.optimizer_ms,
                r.samples_per_s
            )?;
        }
        if let Some(x) = self.ratio_to_base("1") {
            writeln!(f, "phase-1 step / phase 0-dit step: {x:.2}")?;
        }
        Ok(())
    }
}

/// Medians of the step and its parts.
#[derive(Default)]
struct Parts {
    forward: Vec<f64>,
    backward: Vec<f64>,
    optimizer: Vec<f64>,
    step: Vec<f64>,
}

/// Times `f` (which returns the loss) and the backward / optimiser around it.
fn timed_step(
    dev: &Device,
    opt: &mut AdamW,
    parts: &mut Parts,
    record: bool,
    f: impl FnOnce() -> Result<Tensor>,
) -> Result<()> {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    dev.synchronize()?;
    let t0 = Instant::now();
    let loss = f()?;
    dev.synchronize()?;
    let t1 = Instant::now();
    let grads = loss.backward()?;
    dev.synchronize()?;
    let t2 = Instant::now();
    opt.step(&grads, 1.0)?;
    dev.synchronize()?;
    if record {
        parts.forward.push((t1 - t0).as_secs_f64() * 1e3);
        parts.backward.push((t2 - t1).as_secs_f64() * 1e3);
        parts.optimizer.push(ms(t2));
        parts.step.push(ms(t0));
    }
    Ok(())
}

fn adam(vars: Vec<(String, Var)>) -> Result<AdamW> {
    Ok(AdamW::new(
        vars,
        AdamWParams {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        },
    )?)
}

/// Runs the training benchmark on `device` in f32.
pub fn bench_train(opts: &TrainBenchOptions, device: &Device) -> Result<TrainBench> {
    let cfg = DitConfig::tiny();
    let dtype = DType::F32;
    let weights = random_weights(&cfg, 4321, device, dtype)?;
    let grid = (opts.image_size / 16).max(1);
    let nt = opts.text_tokens.max(1);
    let spec = LoraSpec {
        rank: opts.lora_rank,
        alpha: opts.lora_rank as f64,
        ..LoraSpec::default()
    };
    let mut rows = Vec::new();
    for &b in &opts.batches {
        let inp = RandomBatch::new(&cfg, b, grid, nt, dtype, device)?;
        for phase in &opts.phases {
            let mut parts = Parts::default();
            let total = opts.warmup + opts.iters.max(1);
            let trainable = match phase.as_str() {
                "0-dit" => {
                    let vars: Vec<(String, Var)> = weights
                        .iter()
                        .map(|(k, t)| Ok((k.clone(), Var::from_tensor(t)?)))
                        .collect::<Result<_>>()?;
                    let n = vars.iter().map(|(_, v)| v.elem_count()).sum();
                    let mut opt = adam(vars.clone())?;
                    for i in 0..total {
                        timed_step(device, &mut opt, &mut parts, i >= opts.warmup, || {
                            let map: HashMap<String, Tensor> = vars
                                .iter()
                                .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                                .collect();
                            let dit = MmDit::new_trainable(
                                &cfg,
                                VarBuilder::from_tensors(map, dtype, device),
                            )?;
                            inp.mse(&dit.forward(&inp.dit(), Condition::None, Mode::Train)?)
                        })?;
                    }
                    n
                }
                "1" | "2" | "3" => {
                    let mut dit = MmDit::from_tensors(&cfg, weights.clone(), device, dtype)?;
                    dit.loras_mut().add("skeletal", &spec)?;
                    dit.loras_mut().add("appearance", &spec)?;
                    let mut vars = Vec::new();
                    let sets: &[&str] = match phase.as_str() {
                        "1" => &["skeletal"],
                        "2" => &["skeletal", "appearance"],
                        _ => &["appearance"],
                    };
                    for set in sets {
                        for (i, v) in dit.loras_mut().make_trainable(set)?.into_iter().enumerate() {
                            vars.push((format!("{set}.{i}"), v));
                        }
                    }
                    let n = vars.iter().map(|(_, v)| v.elem_count()).sum();
                    let mut opt = adam(vars)?;
                    for i in 0..total {
                        timed_step(device, &mut opt, &mut parts, i >= opts.warmup, || {
                            lora_loss(&mut dit, phase, &inp)
                        })?;
                    }
                    n
                }
                other => {
                    return Err(super::error::ModelError::InvalidConfig(format!(
                        "bench train: unknown phase {other:?} (expected 0-dit, 1, 2 or 3)"
                    )))
                }
            };
            let step = median(parts.step);
            rows.push(TrainBenchRow {
                phase: phase.clone(),
                batch: b,
                trainable_params: trainable,
                step_ms: step,
                forward_ms: median(parts.forward),
                backward_ms: median(parts.backward),
                optimizer_ms: median(parts.optimizer),
                samples_per_s: b as f64 / (step / 1e3),
            });
        }
    }
    Ok(TrainBench {
        preset: "tiny".into(),
        device: device_name(device),
        dtype: format!("{dtype:?}").to_lowercase(),
        image_tokens: grid * grid,
        condition_tokens: grid * grid,
        text_tokens: nt,
        lora_rank: opts.lora_rank,
        threads: candle_core::utils::get_num_threads(),
        rows,
    })
}

/// The loss of one LoRA phase's step, with the phase's forwards and conditions.
fn lora_loss(dit: &mut MmDit, phase: &str, inp: &RandomBatch) -> Result<Tensor> {
    match phase {
        "1" => {
            dit.loras_mut().set_active(Some("skeletal"))?;
            inp.mse(&dit.forward(&inp.dit(), inp.cond_of(&inp.cond), Mode::Train)?)
        }
        "3" => {
            dit.loras_mut().set_active(Some("appearance"))?;
            inp.mse(&dit.forward(&inp.dit(), inp.cond_of(&inp.cond), Mode::Train)?)
        }
        _ => {
            // Joint: the reason loss, the one-step layout estimate from σ = 1, and the render
            // loss conditioned on that estimate.
            dit.loras_mut().set_active(Some("skeletal"))?;
            let reason =
                inp.mse(&dit.forward(&inp.dit(), inp.cond_of(&inp.cond), Mode::Train)?)?;
            let one = DitInputs {
                timesteps: &inp.ones,
                ..inp.dit()
            };
            let v0 = dit.forward(&one, inp.cond_of(&inp.cond), Mode::Train)?;
            let m_hat = (&inp.img - v0)?;
            dit.loras_mut().set_active(Some("appearance"))?;
            let render = inp.mse(&dit.forward(&inp.dit(), inp.cond_of(&m_hat), Mode::Train)?)?;
            Ok(((reason * 0.5)? + render)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_gives_a_timed_row_with_its_trainable_parameters() {
        let r = bench_train(&TrainBenchOptions::quick(), &Device::Cpu).unwrap();
        let phases: Vec<&str> = r.rows.iter().map(|r| r.phase.as_str()).collect();
        assert_eq!(phases, ["0-dit", "1", "2", "3"]);
        let p: Vec<usize> = r.rows.iter().map(|r| r.trainable_params).collect();
        // The base has every weight; phase 2 trains both LoRA sets, phases 1 and 3 one each.
        assert!(p[0] > 10 * p[2], "{p:?}");
        assert_eq!(p[2], p[1] + p[3], "{p:?}");
        for row in &r.rows {
            assert!(row.step_ms > 0.0 && row.step_ms.is_finite(), "{row:?}");
            let sum = row.forward_ms + row.backward_ms + row.optimizer_ms;
            assert!(
                (sum - row.step_ms).abs() <= 0.05 * row.step_ms + 0.5,
                "{row:?}"
            );
        }
        assert!(r.ratio_to_base("1").is_some());
        assert!(r.to_string().contains("phase-1 step / phase 0-dit step"));
    }
}
