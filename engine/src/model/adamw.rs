//! AdamW with visible state (for exact checkpoints) and global gradient-norm clipping: the
//! optimiser of every training phase.
//!
//! The update is candle_nn's `AdamW` formula, step for step:
//! `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `m̂ = m/(1−β1^t)`, `v̂ = v/(1−β2^t)`,
//! `θ ← θ·(1 − lr·wd) − lr·m̂/(√v̂ + ε)`. candle_nn keeps `m`, `v` and `t` private, so a resumed
//! run could not continue exactly with it. On the CPU in f32 the update is one pass over each
//! parameter (candle's tensor ops make about a dozen passes and as many temporaries).

use super::allreduce::AllReduce;
use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};

#[derive(Clone, Debug)]
/// AdamW's hyper-parameters.
pub struct AdamWParams {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the second moment's square root.
    pub eps: f64,
    /// Decoupled weight decay (per unit of lr).
    pub weight_decay: f64,
}

/// One trainable parameter with its moments.
pub struct Slot {
    /// The checkpoint key.
    pub name: String,
    /// The parameter.
    pub var: Var,
    /// First moment.
    pub m: Tensor,
    /// Second moment.
    pub v: Tensor,
    /// The exponential moving average of the parameter, when the optimiser keeps one.
    pub ema: Option<Tensor>,
}

/// The optimiser: its parameters, one slot per trainable tensor, and the step count.
pub struct AdamW {
    /// Hyper-parameters (the lr may change between steps).
    pub params: AdamWParams,
    /// The trainable tensors with their moments.
    pub slots: Vec<Slot>,
    /// Steps taken.
    pub t: u64,
    /// Decay of the weights' exponential moving average (`None`: no average).
    pub ema_decay: Option<f64>,
}

impl AdamW {
    /// Zero moments for named variables (the names are checkpoint keys; keep them stable).
    pub fn new(vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let m = var.as_tensor().zeros_like()?;
                let v = var.as_tensor().zeros_like()?;
                Ok(Slot {
                    name,
                    var,
                    m,
                    v,
                    ema: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            params,
            slots,
            t: 0,
            ema_decay: None,
        })
    }

    /// Keeps an exponential moving average of every parameter, `ema ← d·ema + (1−d)·θ` after
    /// each step, starting from the current values: the weights to sample from (a diffusion
    /// model's average draws cleaner samples than its last iterate). The decay of step `t` is
    /// `min(d, (1 + t) / (10 + t))`, so the random initial weights fade out of the average
    /// within the first steps.
    pub fn with_ema(mut self, decay: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            candle_core::bail!("EMA decay {decay}: must be in [0, 1)")
        }
        for s in self.slots.iter_mut() {
            s.ema = Some(s.var.as_tensor().copy()?.detach());
        }
        self.ema_decay = Some(decay);
        Ok(self)
    }

    /// The global L2 norm of the gradients of every slot (missing gradients count as zero).
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        norm_of(&self.slot_grads(grads))
    }

    /// Each parameter's gradient in `grads`, in slot order.
    fn slot_grads(&self, grads: &GradStore) -> Vec<Option<Tensor>> {
        self.slots
            .iter()
            .map(|s| grads.get(s.var.as_tensor()).cloned())
            .collect()
    }

    fn on_host(&self) -> bool {
        self.slots.iter().all(|s| {
            s.var.device().is_cpu() && s.var.dtype() == DType::F32 && s.m.dtype() == DType::F32
        })
    }

    /// One update. Gradients are scaled by `clip / norm` first when `clip > 0` and the global
    /// norm exceeds it. Returns the norm before clipping.
    pub fn step(&mut self, grads: &GradStore, clip: f64) -> Result<f64> {
        if self.on_host() {
            return self.step_host(grads, clip, None);
        }
        let gs = self.slot_grads(grads);
        self.step_tensors(&gs, clip)
    }

    /// The update with candle ops (any device and dtype), one gradient (or none) per slot.
    fn step_tensors(&mut self, grads: &[Option<Tensor>], clip: f64) -> Result<f64> {
        let norm = norm_of(grads)?;
        let scale = clip_scale(norm, clip);
        self.t += 1;
        let p = &self.params;
        let b1t = p.beta1.powi(self.t as i32);
        let b2t = p.beta2.powi(self.t as i32);
        let decay = 1.0 - p.lr * p.weight_decay;
        for (s, g) in self.slots.iter_mut().zip(grads) {
            let Some(g) = g else {
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
            if let Some(e) = &s.ema {
                let d = ema_decay_at(self.ema_decay, self.t);
                s.ema = Some(((e * d)? + (s.var.as_tensor() * (1.0 - d))?)?.detach());
            }
        }
        Ok(norm)
    }

    /// Exchanges every parameter with its moving average (a second call restores them): to
    /// evaluate or save the average with the code that uses the parameters.
    pub fn swap_ema(&mut self) -> Result<()> {
        for s in self.slots.iter_mut() {
            if let Some(e) = s.ema.take() {
                let current = s.var.as_tensor().copy()?.detach();
                s.var.set(&e)?;
                s.ema = Some(current);
            }
        }
        Ok(())
    }

    /// [`AdamW::step`] of one rank of a data-parallel group: the gradients are first replaced by
    /// their mean over the ranks, so every rank takes the same step. Every rank's optimiser must
    /// hold the same tensors in the same order. CPU f32 parameters reduce in one host pass,
    /// others through the group's tensor reduction ([`AdamW::step_staged`]).
    pub fn step_reduced(
        &mut self,
        grads: &GradStore,
        clip: f64,
        group: &dyn AllReduce,
    ) -> Result<f64> {
        let r = if self.on_host() {
            self.step_host(grads, clip, Some(group))
        } else {
            self.step_staged(grads, clip, group)
        };
        if let Err(e) = &r {
            // The other ranks would otherwise wait for this one until their timeout.
            group.abort(&e.to_string());
        }
        r
    }

    /// The ranks' buffers are paired by position: every tensor must have its gradient.
    fn every_gradient_present<T>(&self, gs: &[Option<T>], group: &dyn AllReduce) -> Result<()> {
        match self.slots.iter().zip(gs).find(|(_, g)| g.is_none()) {
            Some((s, _)) => candle_core::bail!(
                "rank {}: no gradient for {} (every rank must train the same tensors)",
                group.rank(),
                s.name
            ),
            None => Ok(()),
        }
    }

    /// [`AdamW::step_reduced`] for parameters on a GPU (or in another dtype): the group reduces
    /// the gradients (on the device with NCCL, else through host f32 buffers), then the update
    /// runs on the device.
    fn step_staged(&mut self, grads: &GradStore, clip: f64, group: &dyn AllReduce) -> Result<f64> {
        let gs = self.slot_grads(grads);
        self.every_gradient_present(&gs, group)?;
        let gs: Vec<Tensor> = gs.into_iter().flatten().collect();
        let reduced = group
            .all_reduce_mean_tensors(&gs)
            .map_err(candle_core::Error::wrap)?;
        self.step_tensors(&reduced.into_iter().map(Some).collect::<Vec<_>>(), clip)
    }

    /// [`AdamW::step`] on the host for CPU f32 parameters: one parallel pass per parameter.
    fn step_host(
        &mut self,
        grads: &GradStore,
        clip: f64,
        group: Option<&dyn AllReduce>,
    ) -> Result<f64> {
        use rayon::prelude::*;
        const CHUNK: usize = 16 * 1024;
        let host = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let mut gs: Vec<Option<Vec<f32>>> = self
            .slots
            .iter()
            .map(|s| grads.get(s.var.as_tensor()).map(host).transpose())
            .collect::<Result<_>>()?;
        if let Some(group) = group {
            self.every_gradient_present(&gs, group)?;
            let mut bufs: Vec<Vec<f32>> = gs.iter_mut().filter_map(Option::take).collect();
            group
                .all_reduce_mean(&mut bufs)
                .map_err(candle_core::Error::wrap)?;
            for (g, b) in gs.iter_mut().zip(bufs) {
                *g = Some(b);
            }
        }
        let norm = gs
            .iter()
            .flatten()
            .map(|g| {
                g.par_chunks(CHUNK)
                    .map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
                    .sum::<f64>()
            })
            .sum::<f64>()
            .sqrt();
        let scale = clip_scale(norm, clip) as f32;
        self.t += 1;
        let p = &self.params;
        let (b1, b2) = (p.beta1 as f32, p.beta2 as f32);
        let (c1, c2) = (
            1.0 / (1.0 - p.beta1.powi(self.t as i32)) as f32,
            1.0 / (1.0 - p.beta2.powi(self.t as i32)) as f32,
        );
        let (lr, eps, decay) = (
            p.lr as f32,
            p.eps as f32,
            (1.0 - p.lr * p.weight_decay) as f32,
        );
        let ema_d = ema_decay_at(self.ema_decay, self.t) as f32;
        for (s, g) in self.slots.iter_mut().zip(gs) {
            let Some(g) = g else { continue };
            let (mut m, mut v, mut th) = (host(&s.m)?, host(&s.v)?, host(s.var.as_tensor())?);
            th.par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|(((th, m), v), g)| {
                    for i in 0..g.len() {
                        let gi = g[i] * scale;
                        m[i] = b1 * m[i] + (1.0 - b1) * gi;
                        v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                        let upd = (m[i] * c1) / ((v[i] * c2).sqrt() + eps);
                        th[i] = th[i] * decay - lr * upd;
                    }
                });
            let shape = s.var.shape().clone();
            let dev = s.var.device().clone();
            if let Some(e) = &s.ema {
                let mut e = host(e)?;
                e.par_chunks_mut(CHUNK)
                    .zip(th.par_chunks(CHUNK))
                    .for_each(|(e, th)| {
                        for (e, t) in e.iter_mut().zip(th) {
                            *e = ema_d * *e + (1.0 - ema_d) * t;
                        }
                    });
                s.ema = Some(Tensor::from_vec(e, shape.clone(), &dev)?);
            }
            s.var.set(&Tensor::from_vec(th, shape.clone(), &dev)?)?;
            s.m = Tensor::from_vec(m, shape.clone(), &dev)?;
            s.v = Tensor::from_vec(v, shape, &dev)?;
        }
        Ok(norm)
    }
}

/// The moving average's decay after `t` steps (0 without an average).
fn ema_decay_at(decay: Option<f64>, t: u64) -> f64 {
    decay.map_or(0.0, |d| d.min((1.0 + t as f64) / (10.0 + t as f64)))
}

/// The global L2 norm of the given gradients.
fn norm_of(grads: &[Option<Tensor>]) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.iter().flatten() {
        total += g
            .to_dtype(DType::F32)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f32>()? as f64;
    }
    Ok(total.sqrt())
}

/// The factor that brings the global gradient norm down to `clip` (1 when it is below).
fn clip_scale(norm: f64, clip: f64) -> f64 {
    if clip > 0.0 && norm > clip {
        clip / (norm + 1e-6)
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::Optimizer;

    /// Same formula as candle_nn's AdamW: the same parameters after several steps.
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
        // f32 in a different order of operations: a few ulp of the largest parameter (~3).
        let top = b
            .as_tensor()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d / top < 1e-6, "differs by {d} (largest parameter {top})");
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

    #[test]
    fn the_moving_average_follows_the_parameters() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[1f32, -2.0], &dev).unwrap()).unwrap();
        let p = AdamWParams {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let mut opt = AdamW::new(vec![("x".into(), x.clone())], p)
            .unwrap()
            .with_ema(0.5)
            .unwrap();
        let mut expect = x.as_tensor().to_vec1::<f32>().unwrap();
        for step in 1..=12u32 {
            let g = x
                .as_tensor()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            opt.step(&g, 0.0).unwrap();
            let now = x.as_tensor().to_vec1::<f32>().unwrap();
            // Warm-up: (1 + t) / (10 + t) until it reaches the configured 0.5 (t = 8).
            let d = 0.5f32.min((1.0 + step as f32) / (10.0 + step as f32));
            for (e, t) in expect.iter_mut().zip(&now) {
                *e = d * *e + (1.0 - d) * t;
            }
        }
        let ema = opt.slots[0].ema.as_ref().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in ema.iter().zip(&expect) {
            assert!((a - b).abs() < 1e-6, "{ema:?} vs {expect:?}");
        }
        let live = x.as_tensor().to_vec1::<f32>().unwrap();
        assert_ne!(ema, live);
        opt.swap_ema().unwrap();
        assert_eq!(x.as_tensor().to_vec1::<f32>().unwrap(), ema);
        opt.swap_ema().unwrap();
        assert_eq!(x.as_tensor().to_vec1::<f32>().unwrap(), live);
        assert!(AdamW::new(vec![], opt.params.clone())
            .unwrap()
            .with_ema(1.0)
            .is_err());
    }

    /// A rank missing a gradient fails with the tensor's name and stops the others, instead of
    /// pairing its buffers with the wrong tensors.
    #[test]
    fn a_rank_without_a_gradient_stops_the_group() {
        use crate::model::allreduce::{AllReduce, ThreadGroup};
        let ranks = ThreadGroup::ranks(2, std::time::Duration::from_secs(60));
        let errs: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = ranks
                .iter()
                .map(|r| {
                    s.spawn(move || {
                        let dev = Device::Cpu;
                        let x =
                            Var::from_tensor(&Tensor::new(&[1f32, 2.0], &dev).unwrap()).unwrap();
                        let y = Var::from_tensor(&Tensor::new(&[3f32], &dev).unwrap()).unwrap();
                        let p = AdamWParams {
                            lr: 0.1,
                            beta1: 0.9,
                            beta2: 0.999,
                            eps: 1e-8,
                            weight_decay: 0.0,
                        };
                        let mut opt =
                            AdamW::new(vec![("x".into(), x.clone()), ("y".into(), y.clone())], p)
                                .unwrap();
                        // Rank 1 forgets y.
                        let loss = if r.rank() == 0 {
                            (x.as_tensor().sum_all().unwrap() + y.as_tensor().sum_all().unwrap())
                                .unwrap()
                        } else {
                            x.as_tensor().sum_all().unwrap()
                        };
                        let g = loss.backward().unwrap();
                        opt.step_reduced(&g, 0.0, r).unwrap_err().to_string()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for e in &errs {
            assert!(
                e.contains("rank 1") && e.contains("no gradient for y"),
                "{e}"
            );
        }
    }
}
