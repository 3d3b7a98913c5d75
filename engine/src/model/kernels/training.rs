//! Differentiable fused CPU f32 kernels of the training path (`Mode::Train` on CPU f32).
//!
//! Each op reuses the inference forward (or its helpers) and adds a fused backward pass, so
//! that LoRA training on the CPU avoids candle's slower scalar or over-complete backward ops.
//! Base weights are frozen: no op returns a gradient for them.

use super::inference::{
    fast_exp, for_rows, gelu_row, slice, sum8, sumsq8, AdaLn, GateRes, SyncPtr, PAR_GRAIN,
};
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape};
use rayon::prelude::*;

#[inline(always)]
fn gelu_grad_row_generic(x: &[f32], g: &[f32], dst: &mut [f32]) {
    const C: f32 = 0.797_884_6;
    const A: f32 = 0.044_715;
    for ((d, xv), gv) in dst.iter_mut().zip(x).zip(g) {
        let x = *xv;
        let u = C * (x + A * x * x * x);
        let s = 1.0 / (1.0 + fast_exp(-2.0 * u));
        let du = C * (1.0 + 3.0 * A * x * x);
        *d = gv * (s + x * s * (1.0 - s) * 2.0 * du);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_grad_row_avx2(x: &[f32], g: &[f32], dst: &mut [f32]) {
    gelu_grad_row_generic(x, g, dst)
}

fn gelu_grad_row(x: &[f32], g: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the enabled features (checked just above).
            unsafe { gelu_grad_row_avx2(x, g, dst) };
            return;
        }
    }
    gelu_grad_row_generic(x, g, dst)
}

/// Differentiable GELU (tanh approximation) for the training path: the same vectorised
/// forward as the fast path, and a fused backward (candle's own GELU backward goes through
/// scalar `powf`/`tanh`).
pub(crate) struct GeluTrain;

impl CustomOp1 for GeluTrain {
    fn name(&self) -> &'static str {
        "sg-gelu-train"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "gelu")?;
        let mut out = vec![0f32; x.len()];
        let row = 4096.min(x.len().max(1));
        for_rows(&mut out, row, |r, dst| {
            let n = dst.len();
            gelu_row(&x[r * row..r * row + n], None, dst)
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
    fn bwd(
        &self,
        arg: &candle_core::Tensor,
        _res: &candle_core::Tensor,
        grad: &candle_core::Tensor,
    ) -> Result<Option<candle_core::Tensor>> {
        let g = grad.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&g, &GeluGrad)?))
    }
}

struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "sg-gelu-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "gelu-grad x")?;
        let g = slice(s2, l2, "gelu-grad g")?;
        if x.len() != g.len() {
            bail!("gelu-grad: size mismatch")
        }
        let mut out = vec![0f32; x.len()];
        let row = 4096.min(x.len().max(1));
        for_rows(&mut out, row, |r, dst| {
            let n = dst.len();
            gelu_grad_row(&x[r * row..r * row + n], &g[r * row..r * row + n], dst)
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// GELU for the training path: fused CPU kernel (with backward) on contiguous f32 CPU
/// tensors, candle's differentiable `gelu` elsewhere.
pub(crate) fn gelu_train(x: &candle_core::Tensor) -> Result<candle_core::Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1(GeluTrain)
    } else {
        x.gelu()
    }
}

/// Differentiable adaLN for the training path: `LayerNorm(x) * (1 + scale) + shift` with scale
/// and shift read from `m` `(B, mod_cols)` at the given offsets; x is `(B, L, H)` contiguous.
/// The backward pass gives the gradients of x and of m.
#[derive(Clone)]
pub(crate) struct AdaLnTrain {
    pub shift_off: usize,
    pub scale_off: usize,
    pub eps: f32,
}

impl CustomOp2 for AdaLnTrain {
    fn name(&self) -> &'static str {
        "sg-adaln-train"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        AdaLn {
            shift_off: self.shift_off,
            scale_off: self.scale_off,
            eps: self.eps,
        }
        .cpu_fwd(s1, l1, s2, l2)
    }
    fn bwd(
        &self,
        x: &candle_core::Tensor,
        m: &candle_core::Tensor,
        _res: &candle_core::Tensor,
        grad: &candle_core::Tensor,
    ) -> Result<(Option<candle_core::Tensor>, Option<candle_core::Tensor>)> {
        let (b, l, h) = x.dims3()?;
        let (_, mc) = m.dims2()?;
        let g = grad.contiguous()?;
        let flat = x.apply_op3_no_bwd(m, &g, &AdaLnGrad(self.clone()))?;
        let dx = flat.narrow(0, 0, b * l * h)?.reshape((b, l, h))?;
        let dm = flat.narrow(0, b * l * h, b * mc)?.reshape((b, mc))?;
        Ok((Some(dx), Some(dm)))
    }
}

struct AdaLnGrad(AdaLnTrain);

impl CustomOp3 for AdaLnGrad {
    fn name(&self) -> &'static str {
        "sg-adaln-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "adaln-grad x")?;
        let m = slice(s2, l2, "adaln-grad m")?;
        let g = slice(s3, l3, "adaln-grad g")?;
        let (b, l, h) = l1.shape().dims3()?;
        let (mb, mc) = l2.shape().dims2()?;
        let p = &self.0;
        if mb != b || g.len() != x.len() || p.shift_off + h > mc || p.scale_off + h > mc {
            bail!("adaln-grad: bad shapes")
        }
        let n = b * l * h;
        let mut out = vec![0f32; n + b * mc];
        let ptr = SyncPtr(out.as_mut_ptr());
        let inv_h = 1.0 / h as f32;
        let job = |bi: usize| {
            let pp = &ptr;
            // SAFETY: batch element bi owns dx rows [bi*l, (bi+1)*l) and dm row bi.
            let dx = unsafe { std::slice::from_raw_parts_mut(pp.0.add(bi * l * h), l * h) };
            let dm = unsafe { std::slice::from_raw_parts_mut(pp.0.add(n + bi * mc), mc) };
            let scale = &m[bi * mc + p.scale_off..bi * mc + p.scale_off + h];
            let mut xhat = vec![0f32; h];
            let mut dxhat = vec![0f32; h];
            for r in 0..l {
                let o = (bi * l + r) * h;
                let xr = &x[o..o + h];
                let gr = &g[o..o + h];
                let mean = sum8(xr) * inv_h;
                let var = sumsq8(xr, mean) * inv_h;
                let rstd = 1.0 / (var + p.eps).sqrt();
                let (mut s1, mut s2) = (0f32, 0f32);
                for j in 0..h {
                    xhat[j] = (xr[j] - mean) * rstd;
                    dxhat[j] = gr[j] * (1.0 + scale[j]);
                    s1 += dxhat[j];
                    s2 += dxhat[j] * xhat[j];
                    dm[p.shift_off + j] += gr[j];
                    dm[p.scale_off + j] += gr[j] * xhat[j];
                }
                let (m1, m2) = (s1 * inv_h, s2 * inv_h);
                let d = &mut dx[r * h..(r + 1) * h];
                for j in 0..h {
                    d[j] = rstd * (dxhat[j] - m1 - xhat[j] * m2);
                }
            }
        };
        if b > 1 && n >= 2 * PAR_GRAIN {
            (0..b).into_par_iter().for_each(job);
        } else {
            (0..b).for_each(job);
        }
        Ok((CpuStorage::F32(out), Shape::from(n + b * mc)))
    }
}

/// `x @ W^T (+ b)` over the last dimension of a contiguous f32 `x` of any rank, as one graph
/// node: candle's `reshape`, `matmul`, `broadcast_add` and `reshape` are four, and its backward
/// pass spends a zero-fill and an add on every node. The weight operand is `W^T` `(in, out)`,
/// or with `out_in` the weight as stored, `(out, in)`: a trainable weight then gets its
/// gradient without a transposed copy and a strided add. The weight and bias gradients are
/// computed only for tracked (trainable) tensors, so frozen base weights cost no `x^T @ g`.
pub(crate) struct LinearTrain {
    pub out_in: bool,
}

impl LinearTrain {
    fn forward(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        wt: &CpuStorage,
        lw: &Layout,
        bias: Option<&[f32]>,
    ) -> Result<(CpuStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let lw = if self.out_in {
            lw.transpose(0, 1)?
        } else {
            lw.clone()
        };
        let lw = &lw;
        let (k, n) = lw.shape().dims2()?;
        let dims = lx.dims();
        let (Some(&kx), true) = (dims.last(), lx.is_contiguous()) else {
            bail!("linear: the input must be contiguous with a last dimension")
        };
        if kx != k {
            bail!("linear: {:?} x {:?}", dims, lw.dims())
        }
        let m = lx.shape().elem_count() / k.max(1);
        let l2 = Layout::contiguous_with_offset((m, k), lx.start_offset());
        let mut out = x.matmul(wt, (1, m, n, k), &l2, lw)?;
        if let (Some(b), CpuStorage::F32(v)) = (bias, &mut out) {
            if b.len() != n {
                bail!("linear: bias has {} values, expected {n}", b.len())
            }
            for_rows(v, n, |_, row| {
                for (r, bv) in row.iter_mut().zip(b) {
                    *r += bv;
                }
            });
        }
        let mut od = dims.to_vec();
        if let Some(last) = od.last_mut() {
            *last = n;
        }
        Ok((out, Shape::from(od)))
    }

    /// `(dx, dWt, db)`; the last two only for tracked tensors.
    fn backward(
        &self,
        x: &candle_core::Tensor,
        w: &candle_core::Tensor,
        b: Option<&candle_core::Tensor>,
        grad: &candle_core::Tensor,
    ) -> Result<(
        candle_core::Tensor,
        Option<candle_core::Tensor>,
        Option<candle_core::Tensor>,
    )> {
        let (k, n) = if self.out_in {
            let (n, k) = w.dims2()?;
            (k, n)
        } else {
            w.dims2()?
        };
        let m = x.elem_count() / k.max(1);
        let g = grad.contiguous()?.reshape((m, n))?;
        let x2 = x.reshape((m, k))?;
        let (dx, dw) = if self.out_in {
            let dw = w.track_op().then(|| g.t()?.matmul(&x2)).transpose()?;
            (g.matmul(w)?, dw)
        } else {
            let dw = w.track_op().then(|| x2.t()?.matmul(&g)).transpose()?;
            (g.matmul(&w.t()?)?, dw)
        };
        let dx = dx.reshape(x.dims())?;
        let db = match b {
            Some(b) if b.track_op() => Some(g.sum(0)?),
            _ => None,
        };
        Ok((dx, dw, db))
    }
}

impl CustomOp2 for LinearTrain {
    fn name(&self) -> &'static str {
        "sg-linear-train"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(s1, l1, s2, l2, None)
    }
    fn bwd(
        &self,
        x: &candle_core::Tensor,
        wt: &candle_core::Tensor,
        _res: &candle_core::Tensor,
        grad: &candle_core::Tensor,
    ) -> Result<(Option<candle_core::Tensor>, Option<candle_core::Tensor>)> {
        let (dx, dw, _) = self.backward(x, wt, None, grad)?;
        Ok((Some(dx), dw))
    }
}

impl CustomOp3 for LinearTrain {
    fn name(&self) -> &'static str {
        "sg-linear-bias-train"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(s1, l1, s2, l2, Some(slice(s3, l3, "linear bias")?))
    }
    fn bwd(
        &self,
        x: &candle_core::Tensor,
        wt: &candle_core::Tensor,
        b: &candle_core::Tensor,
        _res: &candle_core::Tensor,
        grad: &candle_core::Tensor,
    ) -> Result<(
        Option<candle_core::Tensor>,
        Option<candle_core::Tensor>,
        Option<candle_core::Tensor>,
    )> {
        let (dx, dw, db) = self.backward(x, wt, Some(b), grad)?;
        Ok((Some(dx), dw, db))
    }
}

/// Gated residual `x + gate * y` for the training path (gate read from `m` `(B, mod_cols)`).
/// The gradient of `m` is computed only when `m` is tracked (it never is for LoRA training,
/// where the modulation depends on frozen weights only).
#[derive(Clone)]
pub(crate) struct GateResTrain {
    pub gate_off: usize,
}

impl CustomOp3 for GateResTrain {
    fn name(&self) -> &'static str {
        "sg-gate-res-train"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        GateRes {
            gate_off: self.gate_off,
            bias: None,
        }
        .cpu_fwd(s1, l1, s2, l2, s3, l3)
    }
    fn bwd(
        &self,
        _x: &candle_core::Tensor,
        y: &candle_core::Tensor,
        m: &candle_core::Tensor,
        _res: &candle_core::Tensor,
        grad: &candle_core::Tensor,
    ) -> Result<(
        Option<candle_core::Tensor>,
        Option<candle_core::Tensor>,
        Option<candle_core::Tensor>,
    )> {
        let h = y.dim(2)?;
        let gate = m.narrow(1, self.gate_off, h)?.unsqueeze(1)?;
        let dy = grad.broadcast_mul(&gate)?;
        let dm = if m.track_op() {
            let (b, mc) = m.dims2()?;
            let dgate = (grad * y)?.sum(1)?;
            let mut parts = Vec::new();
            if self.gate_off > 0 {
                parts.push(candle_core::Tensor::zeros(
                    (b, self.gate_off),
                    m.dtype(),
                    m.device(),
                )?);
            }
            parts.push(dgate);
            if self.gate_off + h < mc {
                parts.push(candle_core::Tensor::zeros(
                    (b, mc - self.gate_off - h),
                    m.dtype(),
                    m.device(),
                )?);
            }
            Some(candle_core::Tensor::cat(&parts, 1)?)
        } else {
            None
        };
        Ok((Some(grad.clone()), Some(dy), dm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::max_rel;
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn gelu_train_matches_candle_forward_and_backward() {
        let v: Vec<f32> = (0..5000).map(|i| (i as f32 - 2500.0) / 300.0).collect();
        let x = Var::from_tensor(&Tensor::from_vec(v, (50, 100), &Device::Cpu).unwrap()).unwrap();
        let w = Tensor::rand(-1f32, 1f32, (50, 100), &Device::Cpu).unwrap();
        let ours = gelu_train(x.as_tensor()).unwrap();
        let theirs = x.as_tensor().gelu().unwrap();
        let d: f32 = (&ours - &theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_keepdim(0)
            .unwrap()
            .max(1)
            .unwrap()
            .to_vec1()
            .unwrap()[0];
        assert!(d < 1e-5, "forward diff {d}");
        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let a = g1.get(x.as_tensor()).unwrap();
        let b = g2.get(x.as_tensor()).unwrap();
        let d: f32 = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_keepdim(0)
            .unwrap()
            .max(1)
            .unwrap()
            .to_vec1()
            .unwrap()[0];
        assert!(d < 1e-4, "gradient diff {d}");
    }

    #[test]
    fn linear_train_matches_candle_forward_and_backward() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 5, 6), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 6), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 4, &dev).unwrap()).unwrap();
        let g = Tensor::randn(0f32, 1.0, (2, 5, 4), &dev).unwrap();
        let theirs = |bias: bool| {
            let y = x
                .as_tensor()
                .reshape((10, 6))
                .unwrap()
                .matmul(&w.as_tensor().t().unwrap())
                .unwrap();
            let y = if bias {
                y.broadcast_add(b.as_tensor()).unwrap()
            } else {
                y
            };
            y.reshape((2, 5, 4)).unwrap()
        };
        for (out_in, bias) in [(true, true), (true, false), (false, true), (false, false)] {
            let wt = w.as_tensor().t().unwrap().contiguous().unwrap();
            let wop = if out_in { w.as_tensor().clone() } else { wt };
            let op = LinearTrain { out_in };
            let ours = if bias {
                x.as_tensor().apply_op3(&wop, b.as_tensor(), op).unwrap()
            } else {
                x.as_tensor().apply_op2(&wop, op).unwrap()
            };
            let r = theirs(bias);
            assert!(max_rel(&ours, &r) < 1e-5, "out_in {out_in}, bias {bias}");
            let g1 = (ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (r * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let mut vars = vec![&x, &w];
            if bias {
                vars.push(&b);
            }
            for v in vars {
                let e = max_rel(
                    g1.get(v.as_tensor()).unwrap(),
                    g2.get(v.as_tensor()).unwrap(),
                );
                assert!(e < 1e-5, "out_in {out_in}, bias {bias}: rel err {e}");
            }
        }
        // A frozen weight gets no gradient: only x's is computed.
        let frozen = w.as_tensor().detach();
        let y = x
            .as_tensor()
            .apply_op2(&frozen, LinearTrain { out_in: true })
            .unwrap();
        let gs = (y * &g).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(gs.get(x.as_tensor()).is_some() && gs.get(&frozen).is_none());
    }
}
