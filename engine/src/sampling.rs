//! Flow-matching sampling (DESIGN.md "Flow-matching convention"): `x_σ = (1−σ)·x_data + σ·noise`,
//! the model predicts `v = noise − x_data`, σ runs 1 → 0 and each Euler step is
//! `x ← x + (σ_next − σ)·v`. The schedule is linear in σ, time-shifted with
//! `mu = m·L + b` over the number `L` of noisy-image tokens.
//!
//! Noise comes from a seeded generator on the CPU, so a seed gives the same starting noise on
//! every device; a cancel flag is checked before every step.

use crate::model::lora::SplitMix64;
use candle_core::{DType, Device, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

/// `m` of the time shift: (1.15 − 0.5) / (4096 − 256).
pub const SHIFT_M: f64 = 0.65 / 3840.0;
/// `b` of the time shift: 0.5 − 256·m.
pub const SHIFT_B: f64 = 0.5 - 256.0 * SHIFT_M;
/// Default number of Euler steps.
pub const DEFAULT_STEPS: usize = 25;

/// Which stage a progress report belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Stage 1: scene → layout latent.
    Reason,
    /// Stage 2: layout → image latent.
    Render,
}

impl Stage {
    /// The stage's lower-case name, `reason` or `render`, as shown in progress reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Reason => "reason",
            Stage::Render => "render",
        }
    }
}

/// Why sampling stopped without a result.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The cancel flag was set before a step or after the last one.
    #[error("cancelled")]
    Cancelled,
    /// The noise schedule is unusable (fewer than two levels, or a non-finite one).
    #[error("invalid sampling settings: {0}")]
    Settings(String),
    /// The model failed or returned a velocity of the wrong shape; the text says how.
    #[error("{0}")]
    Model(String),
}

impl From<candle_core::Error> for SampleError {
    fn from(e: candle_core::Error) -> Self {
        SampleError::Model(e.to_string())
    }
}

/// `mu` for `image_tokens` noisy-image tokens.
pub fn shift_mu(image_tokens: usize) -> f64 {
    SHIFT_M * image_tokens as f64 + SHIFT_B
}

/// The time shift `σ' = e^mu / (e^mu + 1/σ − 1)`; exact at both ends.
pub fn time_shift(mu: f64, sigma: f64) -> f64 {
    if sigma <= 0.0 {
        return 0.0;
    }
    if sigma >= 1.0 {
        return 1.0;
    }
    let e = mu.exp();
    e / (e + (1.0 / sigma - 1.0))
}

/// The `steps + 1` noise levels from 1 to 0: linear, then shifted for `image_tokens` tokens
/// (no shift with `None`, as for models trained without it).
pub fn schedule(steps: usize, image_tokens: Option<usize>) -> Vec<f64> {
    let steps = steps.max(1);
    (0..=steps)
        .map(|i| {
            let s = 1.0 - i as f64 / steps as f64;
            match image_tokens {
                Some(l) => time_shift(shift_mu(l), s),
                None => s,
            }
        })
        .collect()
}

/// Standard normal noise of `shape` from `seed`, identical bits on every device.
pub fn seeded_noise(
    shape: &[usize],
    seed: u64,
    device: &Device,
    dtype: DType,
) -> Result<Tensor, SampleError> {
    let n: usize = shape.iter().product();
    let mut rng = SplitMix64(seed ^ 0x5EED_5EED_5EED_5EED);
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        // Box–Muller on two uniforms in (0, 1]
        let u1 = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        v.push((r * t.cos()) as f32);
        v.push((r * t.sin()) as f32);
    }
    v.truncate(n);
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}

/// Integrates from `x` (pure noise at σ = sigmas[0]) to σ = sigmas.last() with Euler steps.
/// `velocity(x, σ)` is the model; `progress(step, total)` is called after each step; `cancel`
/// is checked before each step and gives `Cancelled` with no output.
pub fn euler(
    mut x: Tensor,
    sigmas: &[f64],
    mut velocity: impl FnMut(&Tensor, f64) -> Result<Tensor, SampleError>,
    mut progress: impl FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<Tensor, SampleError> {
    if sigmas.len() < 2 {
        return Err(SampleError::Settings(
            "a schedule needs at least two noise levels".into(),
        ));
    }
    if sigmas.iter().any(|s| !s.is_finite()) {
        return Err(SampleError::Settings(
            "the schedule holds a non-finite noise level".into(),
        ));
    }
    let total = sigmas.len() - 1;
    for (i, w) in sigmas.windows(2).enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(SampleError::Cancelled);
        }
        let v = velocity(&x, w[0])?;
        if v.dims() != x.dims() {
            return Err(SampleError::Model(format!(
                "the model returned {:?} for a state of {:?}",
                v.dims(),
                x.dims()
            )));
        }
        x = (x + (v * (w[1] - w[0]))?)?;
        progress(i + 1, total);
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(SampleError::Cancelled);
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_ends_and_shift() {
        let s = schedule(25, Some(64));
        assert_eq!(s.len(), 26);
        assert_eq!((s[0], s[25]), (1.0, 0.0));
        assert!(s.windows(2).all(|w| w[1] < w[0]));
        // mu at 256 tokens is 0.5 and at 4096 is 1.15
        assert!((shift_mu(256) - 0.5).abs() < 1e-12 && (shift_mu(4096) - 1.15).abs() < 1e-12);
        // a positive mu pushes mid-schedule sigmas up: sigma' = e^mu / (e^mu + 1)
        let mid = time_shift(1.15, 0.5);
        assert!((mid - 1.15f64.exp() / (1.15f64.exp() + 1.0)).abs() < 1e-12);
        assert_eq!(schedule(4, None), vec![1.0, 0.75, 0.5, 0.25, 0.0]);
    }

    #[test]
    fn euler_recovers_data_for_the_exact_velocity() -> Result<(), SampleError> {
        // with v = noise − data (what a perfect model predicts) every schedule lands on the data
        let dev = Device::Cpu;
        let data = Tensor::new(&[0.25f32, -1.5, 3.0], &dev)?;
        let noise = seeded_noise(&[3], 7, &dev, DType::F32)?;
        let v = (&noise - &data)?;
        let never = AtomicBool::new(false);
        let mut steps = Vec::new();
        let out = euler(
            noise.clone(),
            &schedule(7, Some(300)),
            |_, _| Ok(v.clone()),
            |i, n| steps.push((i, n)),
            &never,
        )?;
        let err: f32 = (out - &data)?.abs()?.max(0)?.to_scalar()?;
        assert!(err < 1e-5, "{err}");
        assert_eq!(steps, (1..=7).map(|i| (i, 7)).collect::<Vec<_>>());
        Ok(())
    }

    #[test]
    fn seeded_noise_is_deterministic_and_normal() -> Result<(), SampleError> {
        let dev = Device::Cpu;
        let a = seeded_noise(&[4, 1000], 42, &dev, DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let b = seeded_noise(&[4, 1000], 42, &dev, DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let c = seeded_noise(&[4, 1000], 43, &dev, DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(
            a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert_ne!(a, c);
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / a.len() as f32;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.08,
            "mean {mean} var {var}"
        );
        Ok(())
    }

    #[test]
    fn cancel_stops_before_the_next_step() -> Result<(), SampleError> {
        let dev = Device::Cpu;
        let x = seeded_noise(&[2], 1, &dev, DType::F32)?;
        let cancel = AtomicBool::new(false);
        let mut calls = 0;
        let r = euler(
            x,
            &schedule(10, None),
            |x, _| {
                calls += 1;
                if calls == 3 {
                    cancel.store(true, Ordering::Relaxed);
                }
                Ok(x.zeros_like()?)
            },
            |_, _| {},
            &cancel,
        );
        assert!(matches!(r, Err(SampleError::Cancelled)));
        assert_eq!(calls, 3);
        Ok(())
    }
}
