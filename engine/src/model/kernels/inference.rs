//! Forward-only fused CPU f32 kernels of the inference fast path (`Mode::Fast` on CPU f32).
//!
//! They fold the bias adds, adaLN modulation, QK RMS-norm, RoPE, the softmax scale, head
//! split/merge, GELU and the gated residual into few passes; they have no backward pass, so the
//! model applies them with `apply_op*_no_bwd`. The row helpers at the top (`slice`, `for_rows`,
//! `fast_exp`, `sum8`, `sumsq8`, `gelu_row`, `SyncPtr`) are shared with `training.rs`.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape};
use rayon::prelude::*;
use std::sync::Arc;

/// Minimum elements per parallel task.
pub(super) const PAR_GRAIN: usize = 16 * 1024;

pub(super) fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => match l.contiguous_offsets() {
            Some((a, b)) => Ok(&v[a..b]),
            None => bail!("{what}: input must be contiguous"),
        },
        _ => bail!("{what}: only f32 is supported"),
    }
}

/// One head row of q or k: RMS-norm with scale `w` times `gain`, then the rotation of pairs
/// (2i, 2i+1) by the row's `(cos, sin)` tables.
#[inline(always)]
pub(super) fn norm_rope_row(
    x: &[f32],
    w: &[f32],
    (cs, sn): (&[f32], &[f32]),
    gain: f32,
    eps: f32,
    dst: &mut [f32],
) {
    let ms = sumsq8(x, 0.0) * (1.0 / x.len().max(1) as f32);
    let rs = gain / (ms + eps).sqrt();
    for i in 0..cs.len() {
        let x0 = x[2 * i] * rs * w[2 * i];
        let x1 = x[2 * i + 1] * rs * w[2 * i + 1];
        dst[2 * i] = x0 * cs[i] - x1 * sn[i];
        dst[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
    }
}

/// Runs `f(row_index, row)` over the rows of `out`, in parallel when large.
pub(super) fn for_rows(
    out: &mut [f32],
    row_len: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    if row_len == 0 {
        return;
    }
    if out.len() >= 2 * PAR_GRAIN {
        let min_rows = (PAR_GRAIN / row_len).max(1);
        out.par_chunks_mut(row_len)
            .with_min_len(min_rows)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    } else {
        out.chunks_mut(row_len)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    }
}

/// Raw output pointer that parallel tasks share to fill disjoint regions of one buffer.
pub(super) struct SyncPtr(pub(super) *mut f32);
// SAFETY: used only to write disjoint regions from parallel tasks.
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

/// `exp(x)` for f32 without libm: range reduction + degree-6 polynomial (~2 ulp); branch free so
/// that it vectorises.
#[inline(always)]
pub(super) fn fast_exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: rounds to an integer in the mantissa
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_452 + r * 0.001_388_89)))));
    // 2^n from the integer held in t's low mantissa bits (wrapping ops keep it branch free).
    let bits = t
        .to_bits()
        .wrapping_sub(0x4B40_0000)
        .wrapping_add(127)
        .wrapping_shl(23);
    p * f32::from_bits(bits)
}

/// Sum with 8 independent lanes (vectorises; plain `sum` is a strict sequential reduction).
#[inline(always)]
pub(super) fn sum8(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// Sum of `(x - c)^2` with 8 lanes.
#[inline(always)]
pub(super) fn sumsq8(x: &[f32], c: f32) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for i in 0..8 {
            let d = ch[i] - c;
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|v| (v - c) * (v - c)).sum::<f32>()
}

#[inline(always)]
pub(super) fn max8(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = acc[i].max(c[i]);
        }
    }
    acc.iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |a, b| a.max(*b))
}

/// GELU, tanh approximation: `x * sigmoid(2u)` with `u = sqrt(2/pi) (x + 0.044715 x^3)`,
/// which equals `0.5 x (1 + tanh u)`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    let u = C * (x + 0.044_715 * x * x * x);
    x / (1.0 + fast_exp(-2.0 * u))
}

#[inline(always)]
fn gelu_row_generic(src: &[f32], bias: Option<&[f32]>, dst: &mut [f32]) {
    match bias {
        Some(b) => {
            for ((d, s), b) in dst.iter_mut().zip(src).zip(b) {
                *d = gelu(*s + *b);
            }
        }
        None => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = gelu(*s);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_row_avx2(src: &[f32], bias: Option<&[f32]>, dst: &mut [f32]) {
    gelu_row_generic(src, bias, dst)
}

pub(super) fn gelu_row(src: &[f32], bias: Option<&[f32]>, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the enabled features (checked just above).
            unsafe { gelu_row_avx2(src, bias, dst) };
            return;
        }
    }
    gelu_row_generic(src, bias, dst)
}

/// Plain GELU (tanh approximation) of a contiguous f32 tensor, vectorised.
pub(crate) struct Gelu {
    /// Columns read from each source row (starting at `col_off`).
    pub cols: usize,
    pub col_off: usize,
    /// Bias added before the activation (`cols` values).
    pub bias: Option<Arc<Vec<f32>>>,
    /// Output shape (elem count = rows * cols).
    pub out_shape: Shape,
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "sg-gelu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = slice(s, l, "gelu")?;
        let row_stride = *l.dims().last().unwrap_or(&1);
        let rows = src.len() / row_stride.max(1);
        if self.col_off + self.cols > row_stride || rows * self.cols != self.out_shape.elem_count()
        {
            bail!("gelu: bad geometry")
        }
        let mut out = vec![0f32; rows * self.cols];
        let bias = self.bias.as_deref().map(|b| b.as_slice());
        for_rows(&mut out, self.cols, |r, dst| {
            let s0 = r * row_stride + self.col_off;
            gelu_row(&src[s0..s0 + self.cols], bias, dst)
        });
        Ok((CpuStorage::F32(out), self.out_shape.clone()))
    }
}

/// adaLN: `LayerNorm(x) * (1 + scale) + shift` with scale/shift read from a modulation tensor
/// `(B, mod_cols)`. x is `(B, L, H)`.
pub(crate) struct AdaLn {
    pub shift_off: usize,
    pub scale_off: usize,
    pub eps: f32,
}

impl CustomOp2 for AdaLn {
    fn name(&self) -> &'static str {
        "sg-adaln"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "adaln x")?;
        let m = slice(s2, l2, "adaln mod")?;
        let (b, l, h) = l1.shape().dims3()?;
        let (mb, mc) = l2.shape().dims2()?;
        if mb != b || self.shift_off + h > mc || self.scale_off + h > mc {
            bail!("adaln: bad modulation shape")
        }
        let mut out = vec![0f32; x.len()];
        let inv_h = 1.0 / h as f32;
        for_rows(&mut out, h, |r, dst| {
            let bi = r / l;
            let xr = &x[r * h..(r + 1) * h];
            let mean = sum8(xr) * inv_h;
            let var = sumsq8(xr, mean) * inv_h;
            let rstd = 1.0 / (var + self.eps).sqrt();
            let shift = &m[bi * mc + self.shift_off..bi * mc + self.shift_off + h];
            let scale = &m[bi * mc + self.scale_off..bi * mc + self.scale_off + h];
            for (((d, xv), sc), sh) in dst.iter_mut().zip(xr).zip(scale).zip(shift) {
                *d = (xv - mean) * rstd * (1.0 + sc) + sh;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Gated residual: `x + gate * (y + bias)`; x, y `(B, L, H)`, gate read from `(B, mod_cols)`.
pub(crate) struct GateRes {
    pub gate_off: usize,
    pub bias: Option<Arc<Vec<f32>>>,
}

impl CustomOp3 for GateRes {
    fn name(&self) -> &'static str {
        "sg-gate-res"
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
        let x = slice(s1, l1, "gate x")?;
        let y = slice(s2, l2, "gate y")?;
        let m = slice(s3, l3, "gate mod")?;
        let (b, l, h) = l1.shape().dims3()?;
        let (mb, mc) = l3.shape().dims2()?;
        if y.len() != x.len() || mb != b || self.gate_off + h > mc {
            bail!("gate-res: bad shapes")
        }
        let mut out = vec![0f32; x.len()];
        let bias = self.bias.as_deref().map(|b| b.as_slice());
        for_rows(&mut out, h, |r, dst| {
            let bi = r / l;
            let g = &m[bi * mc + self.gate_off..bi * mc + self.gate_off + h];
            let xr = &x[r * h..(r + 1) * h];
            let yr = &y[r * h..(r + 1) * h];
            match bias {
                Some(bb) => {
                    for ((((d, xv), gv), yv), bv) in dst.iter_mut().zip(xr).zip(g).zip(yr).zip(bb) {
                        *d = xv + gv * (yv + bv);
                    }
                }
                None => {
                    for (((d, xv), gv), yv) in dst.iter_mut().zip(xr).zip(g).zip(yr) {
                        *d = xv + gv * yv;
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Builds attention inputs from one or two qkv projections (txt then img, concatenated along
/// the sequence): adds the qkv bias, applies QK RMS-norm, RoPE (pairs (2i, 2i+1)) and the
/// softmax scale (to q), splits heads and appends the cached condition K/V.
///
/// Output `(3, B, heads, L + N_cond, hd)`; the q rows past `L` are zero.
pub(crate) struct QkvPrep {
    pub heads: usize,
    pub hd: usize,
    /// Number of rows of each input stream (sums to L).
    pub stream_rows: Vec<usize>,
    /// Bias of each stream (3H values).
    pub stream_bias: Vec<Option<Arc<Vec<f32>>>>,
    /// QK-norm scales of each stream (hd values each).
    pub q_scale: Vec<Arc<Vec<f32>>>,
    pub k_scale: Vec<Arc<Vec<f32>>>,
    /// RoPE tables `(B, L, hd/2)`.
    pub cos: Arc<Vec<f32>>,
    pub sin: Arc<Vec<f32>>,
    pub sm_scale: f32,
    pub eps: f32,
    /// Condition tokens in the appended cache (0: none).
    pub n_cond: usize,
}

impl QkvPrep {
    fn run(
        &self,
        streams: &[(&[f32], usize)],
        ckv: Option<&[f32]>,
        batch: usize,
    ) -> Result<(Vec<f32>, Shape)> {
        let (nh, hd) = (self.heads, self.hd);
        let h = nh * hd;
        let half = hd / 2;
        let l: usize = self.stream_rows.iter().sum();
        let lt = l + self.n_cond;
        if self.cos.len() != batch * l * half || self.sin.len() != self.cos.len() {
            bail!("qkv-prep: rope table size mismatch")
        }
        let ns = self.stream_rows.len();
        if streams.len() != ns
            || self.stream_bias.len() != ns
            || self.q_scale.len() != ns
            || self.k_scale.len() != ns
            || self
                .q_scale
                .iter()
                .chain(&self.k_scale)
                .any(|w| w.len() != hd)
        {
            bail!("qkv-prep: per-stream parameters mismatch")
        }
        for ((src, stride), rows) in streams.iter().zip(&self.stream_rows) {
            if *stride < 3 * h || src.len() != batch * rows * stride {
                bail!("qkv-prep: bad stream geometry")
            }
        }
        if let Some(c) = ckv {
            if c.len() != 2 * batch * nh * self.n_cond * hd {
                bail!("qkv-prep: bad condition cache size")
            }
        }
        let sec = batch * nh * lt * hd; // one of q / k / v
        let mut out = vec![0f32; 3 * sec];
        let ptr = SyncPtr(out.as_mut_ptr());
        let job = |bi: usize| {
            let p = &ptr;
            let mut pos = 0usize;
            let mut t = vec![0f32; 3 * h];
            for (si, ((src, stride), rows)) in streams.iter().zip(&self.stream_rows).enumerate() {
                let bias = self.stream_bias[si].as_deref();
                let (qs, ks) = (&self.q_scale[si], &self.k_scale[si]);
                for r in 0..*rows {
                    let o = (bi * rows + r) * stride;
                    let row = &src[o..o + 3 * h];
                    match bias {
                        Some(b) => {
                            for ((d, x), bv) in t.iter_mut().zip(row).zip(b.iter()) {
                                *d = x + bv;
                            }
                        }
                        None => t.copy_from_slice(row),
                    }
                    let li = pos + r;
                    let cs = &self.cos[(bi * l + li) * half..(bi * l + li + 1) * half];
                    let sn = &self.sin[(bi * l + li) * half..(bi * l + li + 1) * half];
                    for hh in 0..nh {
                        let dst_off = ((bi * nh + hh) * lt + li) * hd;
                        for part in 0..3 {
                            let so = part * h + hh * hd;
                            let th = &t[so..so + hd];
                            // SAFETY: every (bi, part, hh, li) writes its own hd-long slot.
                            let dst = unsafe {
                                std::slice::from_raw_parts_mut(p.0.add(part * sec + dst_off), hd)
                            };
                            if part == 2 {
                                dst.copy_from_slice(th);
                                continue;
                            }
                            let w = if part == 0 { qs } else { ks };
                            let extra = if part == 0 { self.sm_scale } else { 1.0 };
                            norm_rope_row(th, w, (cs, sn), extra, self.eps, dst);
                        }
                    }
                }
                pos += rows;
            }
            if let Some(c) = ckv {
                let nc = self.n_cond;
                for part in 0..2 {
                    for hh in 0..nh {
                        let src_off = (((part * batch + bi) * nh + hh) * nc) * hd;
                        let dst_off = (part + 1) * sec + ((bi * nh + hh) * lt + l) * hd;
                        // SAFETY: rows l..lt of (bi, hh) in the k and v sections are ours.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(p.0.add(dst_off), nc * hd) };
                        dst.copy_from_slice(&c[src_off..src_off + nc * hd]);
                    }
                }
            }
        };
        if hd > 512 {
            bail!("qkv-prep: head dim {hd} > 512 is not supported by the fast path")
        }
        if batch > 1 && out.len() >= 2 * PAR_GRAIN {
            (0..batch).into_par_iter().for_each(job);
        } else {
            (0..batch).for_each(job);
        }
        Ok((out, Shape::from((3, batch, nh, lt, hd))))
    }
}

fn stream_batch(l: &Layout, rows: usize) -> Result<usize> {
    let dims = l.dims();
    if dims.len() != 3 || dims[1] != rows {
        bail!("qkv-prep: stream shape {dims:?} does not have {rows} rows")
    }
    Ok(dims[0])
}

impl CustomOp1 for QkvPrep {
    fn name(&self) -> &'static str {
        "sg-qkv-prep"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let b = stream_batch(l, self.stream_rows[0])?;
        let a = (slice(s, l, "qkv")?, *l.dims().last().unwrap_or(&0));
        let (o, sh) = self.run(&[a], None, b)?;
        Ok((CpuStorage::F32(o), sh))
    }
}

impl CustomOp2 for QkvPrep {
    fn name(&self) -> &'static str {
        "sg-qkv-prep2"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let b = stream_batch(l1, self.stream_rows[0])?;
        let a = (slice(s1, l1, "qkv")?, *l1.dims().last().unwrap_or(&0));
        let (o, sh) = if self.stream_rows.len() == 2 {
            let c = (slice(s2, l2, "qkv")?, *l2.dims().last().unwrap_or(&0));
            self.run(&[a, c], None, b)?
        } else {
            self.run(&[a], Some(slice(s2, l2, "cond kv")?), b)?
        };
        Ok((CpuStorage::F32(o), sh))
    }
}

impl CustomOp3 for QkvPrep {
    fn name(&self) -> &'static str {
        "sg-qkv-prep3"
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
        let b = stream_batch(l1, self.stream_rows[0])?;
        let a = (slice(s1, l1, "qkv")?, *l1.dims().last().unwrap_or(&0));
        let c = (slice(s2, l2, "qkv")?, *l2.dims().last().unwrap_or(&0));
        let (o, sh) = self.run(&[a, c], Some(slice(s3, l3, "cond kv")?), b)?;
        Ok((CpuStorage::F32(o), sh))
    }
}

/// Merges attention heads `(B, heads, L, hd)` into rows. With `mlp` set (single blocks) the
/// output is `(B, L, H + M)` = `[attn | gelu(lin1[.., 3H..] + bias)]`; otherwise the output is
/// flat: the first `split` rows of every batch element (text), then the rest (image), each
/// block `(B, rows, H)` contiguous.
pub(crate) struct MergeHeads {
    pub split: usize,
    pub mlp: Option<MlpPart>,
}

pub(crate) struct MlpPart {
    pub col_off: usize,
    pub cols: usize,
    pub bias: Option<Arc<Vec<f32>>>,
}

impl MergeHeads {
    fn run(
        &self,
        a: &[f32],
        al: &Layout,
        lin1: Option<(&[f32], usize)>,
    ) -> Result<(Vec<f32>, Shape)> {
        let (b, nh, l, hd) = al.shape().dims4()?;
        let h = nh * hd;
        match (&self.mlp, lin1) {
            (Some(mp), Some((src, stride))) => {
                let w = h + mp.cols;
                if src.len() != b * l * stride || mp.col_off + mp.cols > stride {
                    bail!("merge-heads: bad lin1 geometry")
                }
                let mut out = vec![0f32; b * l * w];
                let bias = mp.bias.as_deref().map(|v| v.as_slice());
                for_rows(&mut out, w, |r, dst| {
                    let (bi, li) = (r / l, r % l);
                    for hh in 0..nh {
                        let so = ((bi * nh + hh) * l + li) * hd;
                        dst[hh * hd..(hh + 1) * hd].copy_from_slice(&a[so..so + hd]);
                    }
                    let s0 = r * stride + mp.col_off;
                    gelu_row(&src[s0..s0 + mp.cols], bias, &mut dst[h..]);
                });
                Ok((out, Shape::from((b, l, w))))
            }
            (None, None) => {
                if self.split > l {
                    bail!("merge-heads: split past the sequence")
                }
                let mut out = vec![0f32; b * l * h];
                let l1 = self.split;
                let l2 = l - l1;
                for_rows(&mut out, h, |r, dst| {
                    let (bi, li) = if r < b * l1 {
                        (r / l1.max(1), r % l1.max(1))
                    } else {
                        let q = r - b * l1;
                        (q / l2.max(1), l1 + q % l2.max(1))
                    };
                    for hh in 0..nh {
                        let so = ((bi * nh + hh) * l + li) * hd;
                        dst[hh * hd..(hh + 1) * hd].copy_from_slice(&a[so..so + hd]);
                    }
                });
                Ok((out, Shape::from(b * l * h)))
            }
            _ => bail!("merge-heads: lin1 given without mlp part or vice versa"),
        }
    }
}

impl CustomOp1 for MergeHeads {
    fn name(&self) -> &'static str {
        "sg-merge-heads"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (o, sh) = self.run(slice(s, l, "attn")?, l, None)?;
        Ok((CpuStorage::F32(o), sh))
    }
}

impl CustomOp2 for MergeHeads {
    fn name(&self) -> &'static str {
        "sg-merge-heads-mlp"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let stride = *l2.dims().last().unwrap_or(&0);
        let (o, sh) = self.run(
            slice(s1, l1, "attn")?,
            l1,
            Some((slice(s2, l2, "lin1")?, stride)),
        )?;
        Ok((CpuStorage::F32(o), sh))
    }
}

#[inline(always)]
fn softmax_row_generic(x: &[f32], dst: &mut [f32]) {
    let m = max8(x);
    for (d, v) in dst.iter_mut().zip(x) {
        *d = fast_exp(v - m);
    }
    let inv = 1.0 / sum8(dst);
    for d in dst.iter_mut() {
        *d *= inv;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_row_avx2(x: &[f32], dst: &mut [f32]) {
    softmax_row_generic(x, dst)
}

/// Softmax over the last dimension (inference only), vectorised `exp`.
pub(crate) struct SoftmaxLast;

impl CustomOp1 for SoftmaxLast {
    fn name(&self) -> &'static str {
        "sg-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "softmax")?;
        let n = *l.dims().last().unwrap_or(&1);
        let mut out = vec![0f32; x.len()];
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        for_rows(&mut out, n, |r, dst| {
            let src = &x[r * n..(r + 1) * n];
            #[cfg(target_arch = "x86_64")]
            {
                if avx2 {
                    // SAFETY: the CPU supports the enabled features (checked above).
                    unsafe { softmax_row_avx2(src, dst) };
                    return;
                }
            }
            softmax_row_generic(src, dst)
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        for i in -8000..8000 {
            let x = i as f32 / 100.0;
            let e = fast_exp(x);
            let r = x.exp();
            assert!(((e - r) / r).abs() < 2e-6, "{x}: {e} vs {r}");
        }
    }
}
