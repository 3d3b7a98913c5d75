//! AdamW with visible state (for exact checkpoints), global gradient-norm clipping, and the
//! run's random number generator.
//!
//! The update is candle_nn's `AdamW` formula, step for step:
//! `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `m̂ = m/(1−β1^t)`, `v̂ = v/(1−β2^t)`,
//! `θ ← θ·(1 − lr·wd) − lr·m̂/(√v̂ + ε)`. candle_nn keeps `m`, `v` and `t` private, so a resumed
//! run could not continue exactly with it.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use skeleguide_engine::model::lora::SplitMix64;

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
    /// The engine's SplitMix64 step on this state.
    fn with<T>(&mut self, f: impl FnOnce(&mut SplitMix64) -> T) -> T {
        let mut g = SplitMix64(self.0);
        let v = f(&mut g);
        self.0 = g.0;
        v
    }

    pub fn next_u64(&mut self) -> u64 {
        self.with(SplitMix64::next_u64)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        self.with(SplitMix64::next_f64)
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::Optimizer;

    /// Same formula as candle_nn's AdamW: identical parameters after several steps.
    #[test]
    fn matches_candle_nn_adamw() {
        let dev = Device::Cpu;
        let init = Tensor::new(&[[0.5f32, -1.0, 2.0], [0.1, 0.0, -0.3]], &dev).unwrap();
        let a = Var::from_tensor(&init).unwrap();
        let b = Var::from_tensor(&init).unwrap();
        let target = Tensor::new(&[[1f32, 2.0, 3.0], [-1.0, 0.5, 0.0]], &dev).unwrap();
        let p = AdamWParams {
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        };
        let mut ours = AdamW::new(vec![("a".into(), a.clone())], p.clone()).unwrap();
        let mut theirs = candle_nn::AdamW::new(
            vec![b.clone()],
            candle_nn::ParamsAdamW {
                lr: p.lr,
                beta1: p.beta1,
                beta2: p.beta2,
                eps: p.eps,
                weight_decay: p.weight_decay,
            },
        )
        .unwrap();
        for _ in 0..5 {
            let la = (a.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            ours.step(&la.backward().unwrap(), 0.0).unwrap();
            let lb = (b.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            theirs.backward_step(&lb).unwrap();
        }
        let d = (a.as_tensor() - b.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-6, "differs by {d}");
        assert!(a.as_tensor().to_vec2::<f32>().unwrap() != init.to_vec2::<f32>().unwrap());
        assert_eq!(ours.t, 5);
    }

    #[test]
    fn clipping_scales_the_gradients_to_the_global_norm() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[3f32, 4.0], &dev).unwrap()).unwrap();
        let mut opt = AdamW::new(
            vec![("x".into(), x.clone())],
            AdamWParams {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
        )
        .unwrap();
        // d/dx (x·x) = 2x = (6, 8): norm 10
        let g = x
            .as_tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!((opt.grad_norm(&g).unwrap() - 10.0).abs() < 1e-5);
        let norm = opt.step(&g, 1.0).unwrap();
        assert!(
            (norm - 10.0).abs() < 1e-5,
            "the norm before clipping is reported"
        );
        // The clipped gradient (0.6, 0.8) enters the first moment: m = (1 − β1)·g_clipped.
        let m = opt.slots[0].m.to_vec1::<f32>().unwrap();
        assert!(
            (m[0] - 0.06).abs() < 1e-6 && (m[1] - 0.08).abs() < 1e-6,
            "{m:?}"
        );
    }
}
