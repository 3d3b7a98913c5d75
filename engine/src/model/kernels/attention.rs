//! Differentiable scaled dot-product attention for the training path on CPU f32, as one graph
//! node with the heads merged in its output.
//!
//! candle's version is `q @ k^T`, a scale, a softmax, `@ v`, a transpose and a reshape: six
//! nodes whose backward passes each zero-fill and add a gradient, two of them through strided
//! (transposed) copies. Here the forward and backward run per (batch, head) with small matrix
//! products, in parallel over the pairs; the backward recomputes the attention weights from
//! q and k instead of keeping them.

use super::inference::{fast_exp, max8, slice, sum8, SyncPtr};
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor,
};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// `softmax(scale * q k^T) v` for q `(B, heads, Lq, hd)` and k, v `(B, heads, Lk, hd)`, all
/// contiguous f32 (as three operands, or packed as one `(3, B, heads, L, hd)`); the output is
/// `(B, Lq, heads * hd)`.
#[derive(Clone, Copy)]
pub(crate) struct AttentionTrain {
    pub scale: f32,
}

/// Sizes of one call.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    nh: usize,
    lq: usize,
    lk: usize,
    hd: usize,
}

impl Dims {
    fn of(q: &Layout, k: &Layout, v: &Layout) -> Result<Self> {
        let (b, nh, lq, hd) = q.shape().dims4()?;
        let (kb, knh, lk, khd) = k.shape().dims4()?;
        if (kb, knh, khd) != (b, nh, hd) || v.dims() != k.dims() {
            bail!(
                "attention: q {:?}, k {:?}, v {:?}",
                q.dims(),
                k.dims(),
                v.dims()
            )
        }
        Ok(Self { b, nh, lq, lk, hd })
    }

    fn h(&self) -> usize {
        self.nh * self.hd
    }
}

/// A matrix to write: a raw pointer (parallel tasks write disjoint elements of one buffer, so
/// none of them may hold a `&mut` slice spanning another's), the number of elements from it
/// that belong to the buffer, and the (row, column) strides.
struct Dst(*mut f32, usize, usize, usize);

/// A task-local buffer as a [`Dst`].
fn local(buf: &mut [f32], rs: usize, cs: usize) -> Dst {
    Dst(buf.as_mut_ptr(), buf.len(), rs, cs)
}

/// `dst (m×n) = beta * lhs (m×k) @ rhs (k×n)` with explicit (row, column) strides, one thread.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: Dst,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    beta: f32,
) {
    let (Dst(d, dlen, drs, dcs), (l, lrs, lcs), (r, rrs, rcs)) = (dst, lhs, rhs);
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        }
    };
    assert!(dlen >= last(m, n, drs, dcs));
    assert!(l.len() >= last(m, k, lrs, lcs) && r.len() >= last(k, n, rrs, rcs));
    // SAFETY: the asserts above keep every index that gemm reads or writes inside the inputs
    // and inside the `dlen` elements the caller vouches for; the caller's task owns the
    // elements this product writes.
    unsafe {
        gemm(
            m,
            n,
            k,
            d,
            dcs as isize,
            drs as isize,
            false,
            l.as_ptr(),
            lcs as isize,
            lrs as isize,
            r.as_ptr(),
            rcs as isize,
            rrs as isize,
            0.0,
            beta,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// `p = softmax(scale * q k^T)` of one (batch, head), `(Lq, Lk)` row-major.
fn weights(d: Dims, q: &[f32], k: &[f32], scale: f32, p: &mut [f32]) {
    let (lq, lk, hd) = (d.lq, d.lk, d.hd);
    matmul(lq, lk, hd, local(p, lk, 1), (q, hd, 1), (k, 1, hd), scale);
    for row in p.chunks_mut(lk) {
        let m = max8(row);
        for x in row.iter_mut() {
            *x = fast_exp(*x - m);
        }
        let inv = 1.0 / sum8(row);
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
}

impl CustomOp3 for AttentionTrain {
    fn name(&self) -> &'static str {
        "sg-attention-train"
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
        let d = Dims::of(l1, l2, l3)?;
        let (q, k, v) = (
            slice(s1, l1, "attention q")?,
            slice(s2, l2, "attention k")?,
            slice(s3, l3, "attention v")?,
        );
        let (lq, lk, hd, h) = (d.lq, d.lk, d.hd, d.h());
        let mut out = vec![0f32; d.b * lq * h];
        if lq == 0 || lk == 0 || hd == 0 {
            return Ok((CpuStorage::F32(out), Shape::from((d.b, lq, h))));
        }
        let ptr = SyncPtr(out.as_mut_ptr());
        let out_len = out.len();
        (0..d.b * d.nh).into_par_iter().for_each(|bh| {
            let pp = &ptr;
            let (bi, hi) = (bh / d.nh, bh % d.nh);
            let mut p = vec![0f32; lq * lk];
            let qo = bh * lq * hd;
            let ko = bh * lk * hd;
            weights(
                d,
                &q[qo..qo + lq * hd],
                &k[ko..ko + lk * hd],
                self.scale,
                &mut p,
            );
            // This pair writes only the columns [hi*hd, (hi+1)*hd) of batch bi's rows, disjoint
            // from every other pair's, through a raw pointer (no overlapping `&mut` slices).
            let start = bi * lq * h + hi * hd;
            // SAFETY: `start < out_len`, so the offset stays inside `out`.
            let dst = Dst(unsafe { pp.0.add(start) }, out_len - start, h, 1);
            let vb = &v[ko..ko + lk * hd];
            matmul(lq, hd, lk, dst, (&p, lk, 1), (vb, hd, 1), 1.0);
        });
        Ok((CpuStorage::F32(out), Shape::from((d.b, lq, h))))
    }
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (nq, nk) = (q.elem_count(), k.elem_count());
        let qkv = Tensor::cat(&[q.flatten_all()?, k.flatten_all()?, v.flatten_all()?], 0)?;
        let op = AttentionGrad {
            scale: self.scale,
            q: q.dims().to_vec(),
            kv: k.dims().to_vec(),
        };
        let flat = qkv.apply_op2_no_bwd(&grad.contiguous()?, &op)?;
        let dq = flat.narrow(0, 0, nq)?.reshape(q.dims())?;
        let dk = flat.narrow(0, nq, nk)?.reshape(k.dims())?;
        let dv = flat.narrow(0, nq + nk, nk)?.reshape(v.dims())?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

impl CustomOp1 for AttentionTrain {
    fn name(&self) -> &'static str {
        "sg-attention-packed-train"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = l.dims();
        let (Some((&3, part)), Some(start)) = (d.split_first(), l.contiguous_offsets()) else {
            bail!("attention: packed input {d:?} must be (3, B, heads, L, hd), contiguous")
        };
        let n = part.iter().product::<usize>();
        let pl = |i: usize| Layout::contiguous_with_offset(part, start.0 + i * n);
        CustomOp3::cpu_fwd(self, s, &pl(0), s, &pl(1), s, &pl(2))
    }
    fn bwd(&self, packed: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let d = packed.dims();
        let op = AttentionGrad {
            scale: self.scale,
            q: d[1..].to_vec(),
            kv: d[1..].to_vec(),
        };
        let flat = packed
            .flatten_all()?
            .apply_op2_no_bwd(&grad.contiguous()?, &op)?;
        Ok(Some(flat.reshape(d)?))
    }
}

/// The backward of [`AttentionTrain`] over (q, k, v flattened and concatenated; dO): returns
/// dq, dk, dv flattened and concatenated.
struct AttentionGrad {
    scale: f32,
    q: Vec<usize>,
    kv: Vec<usize>,
}

impl CustomOp2 for AttentionGrad {
    fn name(&self) -> &'static str {
        "sg-attention-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let ql = Layout::contiguous(self.q.as_slice());
        let kl = Layout::contiguous(self.kv.as_slice());
        let d = Dims::of(&ql, &kl, &kl)?;
        let all = slice(s1, l1, "attention-grad qkv")?;
        let go = slice(s2, l2, "attention-grad dO")?;
        let (lq, lk, hd, h) = (d.lq, d.lk, d.hd, d.h());
        let (nq, nk) = (d.b * d.nh * lq * hd, d.b * d.nh * lk * hd);
        if all.len() != nq + 2 * nk || go.len() != d.b * lq * h {
            bail!("attention-grad: sizes do not match")
        }
        let (q, k, v) = (&all[..nq], &all[nq..nq + nk], &all[nq + nk..]);
        let mut out = vec![0f32; nq + 2 * nk];
        if lq == 0 || lk == 0 || hd == 0 {
            return Ok((CpuStorage::F32(out), Shape::from(nq + 2 * nk)));
        }
        let ptr = SyncPtr(out.as_mut_ptr());
        (0..d.b * d.nh).into_par_iter().for_each(|bh| {
            let pp = &ptr;
            let (bi, hi) = (bh / d.nh, bh % d.nh);
            let (qo, ko) = (bh * lq * hd, bh * lk * hd);
            let (qb, kb, vb) = (
                &q[qo..qo + lq * hd],
                &k[ko..ko + lk * hd],
                &v[ko..ko + lk * hd],
            );
            let gs = bi * lq * h + hi * hd;
            let gb = &go[gs..gs + (lq - 1) * h + hd];
            let mut p = vec![0f32; lq * lk];
            let mut dp = vec![0f32; lq * lk];
            weights(d, qb, kb, self.scale, &mut p);
            // SAFETY: pair bh owns rows [qo, qo + lq*hd) of dq and [ko, ko + lk*hd) of dk and dv.
            let (dq, dk, dv) = unsafe {
                (
                    std::slice::from_raw_parts_mut(pp.0.add(qo), lq * hd),
                    std::slice::from_raw_parts_mut(pp.0.add(nq + ko), lk * hd),
                    std::slice::from_raw_parts_mut(pp.0.add(nq + nk + ko), lk * hd),
                )
            };
            // dV = P^T dO; dP = dO V^T.
            matmul(lk, hd, lq, local(dv, hd, 1), (&p, 1, lk), (gb, h, 1), 1.0);
            matmul(
                lq,
                lk,
                hd,
                local(&mut dp, lk, 1),
                (gb, h, 1),
                (vb, 1, hd),
                1.0,
            );
            // dS = scale * P * (dP - <dP, P>) per row.
            for (pr, dr) in p.chunks(lk).zip(dp.chunks_mut(lk)) {
                let dot: f32 = pr.iter().zip(dr.iter()).map(|(a, b)| a * b).sum();
                for (dv, pv) in dr.iter_mut().zip(pr) {
                    *dv = self.scale * pv * (*dv - dot);
                }
            }
            // dQ = dS K; dK = dS^T Q.
            matmul(lq, hd, lk, local(dq, hd, 1), (&dp, lk, 1), (kb, hd, 1), 1.0);
            matmul(lk, hd, lq, local(dk, hd, 1), (&dp, 1, lk), (qb, hd, 1), 1.0);
        });
        Ok((CpuStorage::F32(out), Shape::from(nq + 2 * nk)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::max_rel;
    use candle_core::{Device, Var, D};

    /// Values and all three gradients against candle's primitives, with more keys than queries
    /// (condition K/V appended).
    #[test]
    fn attention_train_matches_candle_forward_and_backward() {
        let dev = Device::Cpu;
        let (b, nh, lq, lk, hd) = (2, 3, 7, 11, 8);
        let var =
            |d: &[usize]| Var::from_tensor(&Tensor::randn(0f32, 1.0, d, &dev).unwrap()).unwrap();
        let (q, k, v) = (
            var(&[b, nh, lq, hd]),
            var(&[b, nh, lk, hd]),
            var(&[b, nh, lk, hd]),
        );
        let w = Tensor::randn(0f32, 1.0, (b, lq, nh * hd), &dev).unwrap();
        let scale = 1.0 / (hd as f32).sqrt();
        let ours = q
            .as_tensor()
            .apply_op3(k.as_tensor(), v.as_tensor(), AttentionTrain { scale })
            .unwrap();
        let s =
            (q.as_tensor().matmul(&k.as_tensor().t().unwrap()).unwrap() * scale as f64).unwrap();
        let theirs = candle_nn::ops::softmax(&s, D::Minus1)
            .unwrap()
            .matmul(v.as_tensor())
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, lq, nh * hd))
            .unwrap();
        assert!(max_rel(&ours, &theirs) < 1e-5);
        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
            let e = max_rel(
                g1.get(x.as_tensor()).unwrap(),
                g2.get(x.as_tensor()).unwrap(),
            );
            assert!(e < 1e-5, "d{name}: rel err {e}");
        }
    }

    /// The packed form gives the same output, and its gradient is q's, k's and v's packed.
    #[test]
    fn packed_attention_matches_the_three_operand_form() {
        let dev = Device::Cpu;
        let (b, nh, l, hd) = (2, 2, 9, 8);
        let packed =
            Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, b, nh, l, hd), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (b, l, nh * hd), &dev).unwrap();
        let op = AttentionTrain { scale: 0.3 };
        let one = packed.as_tensor().apply_op1(op).unwrap();
        let parts: Vec<Tensor> = (0..3).map(|i| packed.as_tensor().get(i).unwrap()).collect();
        let three = parts[0].apply_op3(&parts[1], &parts[2], op).unwrap();
        assert!(max_rel(&one, &three) < 1e-6);
        let g1 = (one * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (three * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let e = max_rel(
            g1.get(packed.as_tensor()).unwrap(),
            g2.get(packed.as_tensor()).unwrap(),
        );
        assert!(e < 1e-6, "rel err {e}");
    }
}
