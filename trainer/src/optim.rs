//! AdamW with visible state (for exact checkpoints), global gradient-norm clipping, and the
//! run's random number generator.
//!
//! The update is candle_nn's `AdamW` formula, step for step:
//! `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `m̂ = m/(1−β1^t)`, `v̂ = v/(1−β2^t)`,
//! `θ ← θ·(1 − lr·wd) − lr·m̂/(√v̂ + ε)`. candle_nn keeps `m`, `v` and `t` private, so a resumed
//! run could not continue exactly with it.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

#[derive(Clone, Debug)]
pub struct AdamWParams {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// One trainable parameter with its moments.
pub struct Slot {
    pub name: String,
    pub var: Var,
    pub m: Tensor,
    pub v: Tensor,
}

pub struct AdamW {
    pub params: AdamWParams,
    pub slots: Vec<Slot>,
    /// Steps taken.
    pub t: u64,
}

impl AdamW {
    /// Zero moments for named variables (the names are checkpoint keys; keep them stable).
    pub fn new(vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let m = var.as_tensor().zeros_like()?;
                let v = var.as_tensor().zeros_like()?;
                Ok(Slot { name, var, m, v })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            params,
            slots,
            t: 0,
        })
    }

    /// The global L2 norm of the gradients of every slot (missing gradients count as zero).
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut total = 0f64;
        for s in &self.slots {
            if let Some(g) = grads.get(s.var.as_tensor()) {
                total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        Ok(total.sqrt())
    }

    /// One update. Gradients are scaled by `clip / norm` first when `clip > 0` and the global
    /// norm exceeds it. Returns the norm before clipping.
    pub fn step(&mut self, grads: &GradStore, clip: f64) -> Result<f64> {
        let norm = self.grad_norm(grads)?;
        let scale = if clip > 0.0 && norm > clip {
            clip / (norm + 1e-6)
        } else {
            1.0
        };
        self.t += 1;
        let p = &self.params;
        let b1t = p.beta1.powi(self.t as i32);
        let b2t = p.beta2.powi(self.t as i32);
        let decay = 1.0 - p.lr * p.weight_decay;
        for s in self.slots.iter_mut() {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let g = if scale != 1.0 {
                (g * scale)?
            } else {
                g.clone()
            };
            let m = ((&s.m * p.beta1)? + (&g * (1.0 - p.beta1))?)?;
            let v = ((&s.v * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let m_hat = (&m / (1.0 - b1t))?;
            let v_hat = (&v / (1.0 - b2t))?;
            let theta = (s.var.as_tensor() * decay)?;
            let upd = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
            s.var.set(&(theta - (upd * p.lr)?)?)?;
            s.m = m;
            s.v = v;
        }
        Ok(norm)
    }
}

/// The run's generator (SplitMix64): one `u64` of state, saved in checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainRng(pub u64);

impl TrainRng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.f64() * n as f64) as usize % n.max(1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `n` standard normal f32 values.
    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal() as f32).collect()
    }
}
