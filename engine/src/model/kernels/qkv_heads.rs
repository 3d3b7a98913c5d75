//! Differentiable q/k/v preparation for the training path on CPU f32: the heads split out of
//! one or two streams' `qkv` rows, q and k RMS-normed with their stream's scales and rotated
//! (RoPE), all written into one packed `(3, B, heads, L, hd)` tensor.
//!
//! candle's version is a reshape, a permute, a copy, three `get`s, the norm and the rotation per
//! stream, then a concatenation per part: a dozen nodes whose backward passes pad, copy and add
//! full-size gradients.

use super::inference::{for_rows, norm_rope_row, slice, sumsq8, SyncPtr};
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// The op. Each stream is `(B, L_s, cols)` contiguous with q, k, v in the columns
/// `[0, 3H)` (the rest of a row, e.g. a single block's MLP input, is skipped); the streams are
/// joined along the sequence in order. `scales` is `(2 * streams, hd)`: q then k of each
/// stream. `cos`/`sin` are the joint sequence's `(B, L, hd/2)` tables.
#[derive(Clone)]
pub(crate) struct QkvHeadsTrain {
    pub heads: usize,
    pub hd: usize,
    pub cos: Arc<Vec<f32>>,
    pub sin: Arc<Vec<f32>>,
    pub eps: f32,
}

/// One stream's place: its rows, their offset in the joint sequence, and its row width.
#[derive(Clone, Copy)]
struct Stream {
    len: usize,
    off: usize,
    cols: usize,
}

impl QkvHeadsTrain {
    fn h(&self) -> usize {
        self.heads * self.hd
    }

    /// The streams of these layouts, and the batch and joint length.
    fn streams(&self, ls: &[&Layout], scales: &Layout) -> Result<(Vec<Stream>, usize, usize)> {
        let mut out = Vec::with_capacity(ls.len());
        let mut b0 = None;
        let mut off = 0;
        for l in ls {
            let (b, len, cols) = l.shape().dims3()?;
            if cols < 3 * self.h() || b0.is_some_and(|b0| b0 != b) {
                bail!(
                    "qkv-heads: stream {:?} for {} heads of {}",
                    l.dims(),
                    self.heads,
                    self.hd
                )
            }
            b0 = Some(b);
            out.push(Stream { len, off, cols });
            off += len;
        }
        let b = b0.unwrap_or(0);
        let half = self.hd / 2;
        if scales.dims() != [2 * ls.len(), self.hd]
            || self.cos.len() != b * off * half
            || self.sin.len() != self.cos.len()
            || self.hd % 2 != 0
        {
            bail!(
                "qkv-heads: scales {:?} or tables do not match",
                scales.dims()
            )
        }
        Ok((out, b, off))
    }

    fn run(
        &self,
        xs: &[&[f32]],
        ls: &[&Layout],
        w: &[f32],
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (streams, b, l) = self.streams(ls, lw)?;
        let (nh, hd, h, half) = (self.heads, self.hd, self.h(), self.hd / 2);
        let mut out = vec![0f32; 3 * b * nh * l * hd];
        // One output row per (part, batch, head, position).
        for_rows(&mut out, hd, |r, dst| {
            let pos = r % l;
            let head = (r / l) % nh;
            let bi = (r / (l * nh)) % b;
            let part = r / (l * nh * b);
            let si = streams.iter().rposition(|s| s.off <= pos).unwrap_or(0);
            let s = streams[si];
            let row = (bi * s.len + pos - s.off) * s.cols + part * h + head * hd;
            let src = &xs[si][row..row + hd];
            if part == 2 {
                dst.copy_from_slice(src);
                return;
            }
            let scale = &w[(2 * si + part) * hd..(2 * si + part + 1) * hd];
            let t = (bi * l + pos) * half;
            let tables = (&self.cos[t..t + half], &self.sin[t..t + half]);
            norm_rope_row(src, scale, tables, 1.0, self.eps, dst);
        });
        Ok((CpuStorage::F32(out), Shape::from((3, b, nh, l, hd))))
    }

    /// The gradients of the streams and of the scales from the packed output's gradient.
    fn grads(&self, xs: &[&Tensor], scales: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let mut all: Vec<Tensor> = xs.iter().map(|x| x.flatten_all()).collect::<Result<_>>()?;
        all.push(scales.flatten_all()?);
        let op = QkvHeadsGrad {
            fwd: self.clone(),
            dims: xs.iter().map(|x| x.dims().to_vec()).collect(),
        };
        let flat = Tensor::cat(&all, 0)?.apply_op2_no_bwd(&grad.contiguous()?, &op)?;
        let mut out = Vec::with_capacity(xs.len() + 1);
        let mut at = 0;
        for x in xs {
            let n = x.elem_count();
            out.push(Some(flat.narrow(0, at, n)?.reshape(x.dims())?));
            at += n;
        }
        let b = xs.first().map_or(Ok(0), |x| x.dim(0))?;
        let ns = scales.elem_count();
        out.push(if scales.track_op() {
            Some(
                flat.narrow(0, at, b * ns)?
                    .reshape((b, ns))?
                    .sum(0)?
                    .reshape(scales.dims())?,
            )
        } else {
            None
        });
        Ok(out)
    }
}

impl CustomOp2 for QkvHeadsTrain {
    fn name(&self) -> &'static str {
        "sg-qkv-heads-train"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run(
            &[slice(s1, l1, "qkv")?],
            &[l1],
            slice(s2, l2, "scales")?,
            l2,
        )
    }
    fn bwd(
        &self,
        x: &Tensor,
        scales: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let mut g = self.grads(&[x], scales, grad)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten()))
    }
}

impl CustomOp3 for QkvHeadsTrain {
    fn name(&self) -> &'static str {
        "sg-qkv-heads-train-2"
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
        let xs = [slice(s1, l1, "qkv")?, slice(s2, l2, "qkv")?];
        self.run(&xs, &[l1, l2], slice(s3, l3, "scales")?, l3)
    }
    fn bwd(
        &self,
        x1: &Tensor,
        x2: &Tensor,
        scales: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mut g = self.grads(&[x1, x2], scales, grad)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten(), g.next().flatten()))
    }
}

/// The backward of [`QkvHeadsTrain`] over (the streams and scales flattened and concatenated;
/// the packed gradient): the streams' gradients, then one partial scale gradient per batch
/// element, flattened and concatenated.
struct QkvHeadsGrad {
    fwd: QkvHeadsTrain,
    dims: Vec<Vec<usize>>,
}

impl CustomOp2 for QkvHeadsGrad {
    fn name(&self) -> &'static str {
        "sg-qkv-heads-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let p = &self.fwd;
        let layouts: Vec<Layout> = self
            .dims
            .iter()
            .map(|d| Layout::contiguous(d.as_slice()))
            .collect();
        let lrefs: Vec<&Layout> = layouts.iter().collect();
        let ns = 2 * self.dims.len() * p.hd;
        let lw = Layout::contiguous((2 * self.dims.len(), p.hd));
        let (streams, b, l) = p.streams(&lrefs, &lw)?;
        let all = slice(s1, l1, "qkv-heads-grad inputs")?;
        let g = slice(s2, l2, "qkv-heads-grad g")?;
        let sizes: Vec<usize> = layouts.iter().map(|l| l.shape().elem_count()).collect();
        let nx: usize = sizes.iter().sum();
        let (nh, hd, h, half) = (p.heads, p.hd, p.h(), p.hd / 2);
        if all.len() != nx + ns || g.len() != 3 * b * nh * l * hd {
            bail!("qkv-heads-grad: sizes do not match")
        }
        let w = &all[nx..];
        let mut starts = Vec::with_capacity(sizes.len());
        let mut at = 0;
        for n in &sizes {
            starts.push(at);
            at += n;
        }
        let inv = 1.0 / hd as f32;
        let mut out = vec![0f32; nx + b * ns];
        let ptr = SyncPtr(out.as_mut_ptr());
        (0..b).into_par_iter().for_each(|bi| {
            let pp = &ptr;
            // SAFETY: batch element bi owns its rows of every stream's gradient and its row of
            // scale partials; nothing else writes them.
            let dw = unsafe { std::slice::from_raw_parts_mut(pp.0.add(nx + bi * ns), ns) };
            let mut gu = vec![0f32; hd];
            for (si, s) in streams.iter().enumerate() {
                let rows = s.len * s.cols;
                let dx = unsafe {
                    std::slice::from_raw_parts_mut(pp.0.add(starts[si] + bi * rows), rows)
                };
                let x = &all[starts[si] + bi * rows..starts[si] + (bi + 1) * rows];
                for pos in 0..s.len {
                    let t = (bi * l + s.off + pos) * half;
                    let (cs, sn) = (&p.cos[t..t + half], &p.sin[t..t + half]);
                    for part in 0..3 {
                        for head in 0..nh {
                            let gr = ((part * b + bi) * nh + head) * l + s.off + pos;
                            let gr = &g[gr * hd..(gr + 1) * hd];
                            let c = pos * s.cols + part * h + head * hd;
                            let d = &mut dx[c..c + hd];
                            if part == 2 {
                                d.copy_from_slice(gr);
                                continue;
                            }
                            let xr = &x[c..c + hd];
                            let wo = (2 * si + part) * hd;
                            let scale = &w[wo..wo + hd];
                            let rstd = 1.0 / (sumsq8(xr, 0.0) * inv + p.eps).sqrt();
                            // Undo the rotation (its transpose), then the norm.
                            for i in 0..half {
                                gu[2 * i] = gr[2 * i] * cs[i] + gr[2 * i + 1] * sn[i];
                                gu[2 * i + 1] = -gr[2 * i] * sn[i] + gr[2 * i + 1] * cs[i];
                            }
                            let mut dot = 0f32;
                            for j in 0..hd {
                                let nj = xr[j] * rstd;
                                dw[wo + j] += gu[j] * nj;
                                d[j] = gu[j] * scale[j];
                                dot += d[j] * nj;
                            }
                            let mdot = dot * inv;
                            for j in 0..hd {
                                d[j] = rstd * (d[j] - xr[j] * rstd * mdot);
                            }
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from(nx + b * ns)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::max_rel;
    use candle_core::{Device, Var};

    /// candle's primitives for one stream: split the heads of the first 3H columns, RMS-norm q
    /// and k with their scales, rotate them with this stream's rows of the tables.
    fn reference(
        x: &Tensor,
        q_s: &Tensor,
        k_s: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        nh: usize,
    ) -> Tensor {
        let (b, l, _) = x.dims3().unwrap();
        let hd = q_s.dim(0).unwrap();
        let h = nh * hd;
        let t = x
            .narrow(2, 0, 3 * h)
            .unwrap()
            .reshape((b, l, 3, nh, hd))
            .unwrap()
            .permute((2, 0, 3, 1, 4))
            .unwrap();
        let norm_rope = |x: Tensor, s: &Tensor| {
            let ms = x.sqr().unwrap().mean_keepdim(3).unwrap();
            let n = x
                .broadcast_div(&(ms + 1e-6).unwrap().sqrt().unwrap())
                .unwrap()
                .broadcast_mul(s)
                .unwrap()
                .reshape((b, nh, l, hd / 2, 2))
                .unwrap();
            let (x0, x1) = (n.narrow(4, 0, 1).unwrap(), n.narrow(4, 1, 1).unwrap());
            let c = cos.unsqueeze(1).unwrap().unsqueeze(4).unwrap();
            let s = sin.unsqueeze(1).unwrap().unsqueeze(4).unwrap();
            let o0 = (x0.broadcast_mul(&c).unwrap() - x1.broadcast_mul(&s).unwrap()).unwrap();
            let o1 = (x0.broadcast_mul(&s).unwrap() + x1.broadcast_mul(&c).unwrap()).unwrap();
            Tensor::cat(&[o0, o1], 4)
                .unwrap()
                .reshape((b, nh, l, hd))
                .unwrap()
        };
        Tensor::stack(
            &[
                norm_rope(t.get(0).unwrap(), q_s),
                norm_rope(t.get(1).unwrap(), k_s),
                t.get(2).unwrap().contiguous().unwrap(),
            ],
            0,
        )
        .unwrap()
    }

    /// Two streams (the second with extra columns, like a single block's MLP input): values,
    /// and the gradients of both streams and of the four scales, against candle's primitives.
    #[test]
    fn qkv_heads_match_candle_forward_and_backward() {
        let dev = Device::Cpu;
        let (b, nh, hd, l1, l2) = (2, 2, 8, 3, 5);
        let h = nh * hd;
        let var = |d: &[usize], m: f32| {
            Var::from_tensor(&Tensor::randn(m, 1.0, d, &dev).unwrap()).unwrap()
        };
        let (x1, x2) = (var(&[b, l1, 3 * h], 0.0), var(&[b, l2, 3 * h + 7], 0.0));
        let scales = var(&[4, hd], 1.0);
        let cos = Tensor::randn(0f32, 1.0, (b, l1 + l2, hd / 2), &dev).unwrap();
        let sin = Tensor::randn(0f32, 1.0, (b, l1 + l2, hd / 2), &dev).unwrap();
        let host = |t: &Tensor| Arc::new(t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let op = QkvHeadsTrain {
            heads: nh,
            hd,
            cos: host(&cos),
            sin: host(&sin),
            eps: 1e-6,
        };
        let ours = x1
            .as_tensor()
            .apply_op3(x2.as_tensor(), scales.as_tensor(), op)
            .unwrap();
        let s = |i: usize| scales.as_tensor().get(i).unwrap();
        let rows = |t: &Tensor, a: usize, n: usize| t.narrow(1, a, n).unwrap();
        let theirs = Tensor::cat(
            &[
                reference(
                    x1.as_tensor(),
                    &s(0),
                    &s(1),
                    &rows(&cos, 0, l1),
                    &rows(&sin, 0, l1),
                    nh,
                ),
                reference(
                    x2.as_tensor(),
                    &s(2),
                    &s(3),
                    &rows(&cos, l1, l2),
                    &rows(&sin, l1, l2),
                    nh,
                ),
            ],
            3,
        )
        .unwrap();
        assert!(max_rel(&ours, &theirs) < 1e-5);
        let w = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in [("x1", &x1), ("x2", &x2), ("scales", &scales)] {
            let e = max_rel(
                g1.get(v.as_tensor()).unwrap(),
                g2.get(v.as_tensor()).unwrap(),
            );
            assert!(e < 1e-5, "d{name}: rel err {e}");
        }
    }
}
