//! The blocks of the MM-DiT, after candle-transformers' flux model: each block (double-stream,
//! single-stream, the final layer, and their parts) owns its weights, its loader and its
//! forward passes. [`Ctx`] carries the mode and the primitives of the candle-op path
//! ([`Mode::Train`], and [`Mode::Fast`] off CPU f32); [`FusedCtx`] those of the fused CPU f32
//! inference path (`forward_fused`).

use super::{chunks, host_vec, CondStream, Loader, Mod, Mode, Rope, NORM_EPS};
use crate::model::config::DitConfig;
use crate::model::error::Result;
use crate::model::kernels;
use crate::model::layers::Lin;
use crate::model::lora::LayerLora;
use candle_core::{DType, Tensor, D};
use std::sync::Arc;

/// QK RMS-norm scales of one attention (and their host copies for the fused CPU kernels).
#[derive(Debug, Clone)]
pub(super) struct QkNorm {
    pub(super) q: Tensor,
    pub(super) k: Tensor,
    pub(super) qh: Arc<Vec<f32>>,
    pub(super) kh: Arc<Vec<f32>>,
}

/// The two-layer GELU MLP of one double-block stream (`*_mlp.0`, `*_mlp.2`).
#[derive(Debug, Clone)]
pub(super) struct Mlp {
    pub(super) fc0: Lin,
    pub(super) fc2: Lin,
}

/// The weights of one stream of a double block (`img_*` or `txt_*`).
#[derive(Debug, Clone)]
pub(super) struct StreamWeights {
    pub(super) modulation: Lin,
    pub(super) qkv: Lin,
    pub(super) norm: QkNorm,
    pub(super) proj: Lin,
    pub(super) mlp: Mlp,
}

/// A double-stream block: text and image streams with their own weights, joint attention.
#[derive(Debug, Clone)]
pub(super) struct DoubleBlock {
    pub(super) img: StreamWeights,
    pub(super) txt: StreamWeights,
}

/// A single-stream block over the joint sequence: fused qkv + MLP input, fused output.
#[derive(Debug, Clone)]
pub(super) struct SingleBlock {
    pub(super) linear1: Lin,
    pub(super) linear2: Lin,
    pub(super) norm: QkNorm,
    pub(super) modulation: Lin,
}

/// The final adaLN + output projection.
#[derive(Debug, Clone)]
pub(super) struct FinalLayer {
    pub(super) linear: Lin,
    pub(super) ada: Lin,
}

/// The per-call context of the candle-op path ([`Mode::Train`], and [`Mode::Fast`] off the
/// fused CPU path): the mode, whether the fused differentiable CPU kernels apply, and the
/// shapes and constants the primitives need.
pub(super) struct Ctx<'a> {
    pub(super) mode: Mode,
    /// [`Mode::Train`] with the fused differentiable CPU kernels (CPU f32).
    pub(super) fused: bool,
    pub(super) cfg: &'a DitConfig,
    pub(super) ln_ones: &'a Tensor,
    pub(super) ln_zeros: &'a Tensor,
}

impl Ctx<'_> {
    fn layer_norm(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // candle's fused layer_norm, like its rms_norm, has no f64 kernel.
        match self.mode {
            Mode::Fast if x.dtype() != DType::F64 => candle_nn::ops::layer_norm(
                &x.contiguous()?,
                self.ln_ones,
                self.ln_zeros,
                NORM_EPS as f32,
            ),
            _ => {
                let mean = x.mean_keepdim(D::Minus1)?;
                let xc = x.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
                xc.broadcast_div(&(var + NORM_EPS)?.sqrt()?)
            }
        }
    }

    fn modulate(&self, x: &Tensor, m: &Mod) -> candle_core::Result<Tensor> {
        if self.fused {
            let h = self.cfg.hidden_size;
            return x.contiguous()?.apply_op2(
                &m.raw,
                kernels::AdaLnTrain {
                    shift_off: 3 * m.idx * h,
                    scale_off: (3 * m.idx + 1) * h,
                    eps: NORM_EPS as f32,
                },
            );
        }
        self.layer_norm(x)?
            .broadcast_mul(&m.scale1)?
            .broadcast_add(&m.shift)
    }

    /// Rotates `x` `(B, heads, L, hd)` by the tables (pairs (2i, 2i+1), like BFL).
    fn rope(&self, x: &Tensor, r: &Rope) -> candle_core::Result<Tensor> {
        match self.mode {
            Mode::Fast => candle_nn::rotary_emb::rope_i(&x.contiguous()?, &r.cos, &r.sin),
            Mode::Train => {
                let (b, h, l, d) = x.dims4()?;
                let x = x.reshape((b, h, l, d / 2, 2))?;
                let x0 = x.narrow(4, 0, 1)?;
                let x1 = x.narrow(4, 1, 1)?;
                let cos = r.cos.unsqueeze(1)?.unsqueeze(4)?;
                let sin = r.sin.unsqueeze(1)?.unsqueeze(4)?;
                let o0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
                let o1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
                Tensor::cat(&[o0, o1], 4)?.reshape((b, h, l, d))
            }
        }
    }

    fn rms(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        // candle's fused rms_norm has f32/bf16/f16 kernels only: f64 takes the plain formula.
        match self.mode {
            Mode::Fast if x.dtype() != DType::F64 => {
                candle_nn::ops::rms_norm(&x.contiguous()?, w, NORM_EPS as f32)
            }
            _ => {
                let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
                x.broadcast_div(&(ms + NORM_EPS)?.sqrt()?)?.broadcast_mul(w)
            }
        }
    }

    /// `(B, L, 3H)` -> raw q, k, v `(B, heads, L, hd)` (no norm yet).
    fn split_qkv(&self, qkv: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (b, l, _) = qkv.dims3()?;
        let nh = self.cfg.num_heads;
        let hd = self.cfg.head_dim();
        let t = qkv
            .reshape((b, l, 3, nh, hd))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        Ok((t.get(0)?, t.get(1)?, t.get(2)?))
    }

    /// QK RMS-norm with scale `w`, then RoPE with the tables of these rows (the fused training
    /// path does both in `packed_qkv`).
    fn norm_rope(&self, x: &Tensor, w: &Tensor, r: &Rope) -> candle_core::Result<Tensor> {
        self.rope(&self.rms(x, w)?, r)
    }

    /// A linear layer: one graph node in the fused training path (the weight and bias
    /// gradients only for trainable weights).
    fn lin(&self, l: &Lin, x: &Tensor) -> candle_core::Result<Tensor> {
        l.forward_ctx(x, self.fused)
    }

    /// `x + gate * y`.
    fn gate_res(&self, x: &Tensor, y: &Tensor, m: &Mod) -> candle_core::Result<Tensor> {
        if self.fused {
            let h = self.cfg.hidden_size;
            return x.contiguous()?.apply_op3(
                &y.contiguous()?,
                &m.raw,
                kernels::GateResTrain {
                    gate_off: (3 * m.idx + 2) * h,
                },
            );
        }
        x + y.broadcast_mul(&m.gate)?
    }

    /// Scaled dot-product attention; returns `(B, Lq, H)`.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
        let (b, _, lq, _) = q.dims4()?;
        let scale = 1.0 / (self.cfg.head_dim() as f64).sqrt();
        let p = match self.mode {
            Mode::Train if self.fused => {
                return q.contiguous()?.apply_op3(
                    &k.contiguous()?,
                    &v.contiguous()?,
                    kernels::AttentionTrain {
                        scale: scale as f32,
                    },
                )
            }
            Mode::Fast => {
                let s = (q * scale)?.matmul(&k.t()?)?;
                candle_nn::ops::softmax_last_dim(&s)?
            }
            Mode::Train => {
                let s = (q.matmul(&k.t()?)? * scale)?;
                candle_nn::ops::softmax(&s, D::Minus1)?
            }
        };
        p.matmul(v)?
            .transpose(1, 2)?
            .reshape((b, lq, self.cfg.hidden_size))
    }

    /// The fused training path's packed q/k/v `(3, B, heads, L, hd)` of these streams' `qkv`
    /// rows, q and k normed and rotated; `None` off that path.
    fn packed_qkv(
        &self,
        xs: &[&Tensor],
        norms: &[&QkNorm],
        rope: &Rope,
    ) -> candle_core::Result<Option<Tensor>> {
        let (true, Some((cos, sin))) = (self.fused, &rope.host) else {
            return Ok(None);
        };
        let scales: Vec<&Tensor> = norms.iter().flat_map(|n| [&n.q, &n.k]).collect();
        let scales = Tensor::stack(&scales, 0)?;
        let op = kernels::QkvHeadsTrain {
            heads: self.cfg.num_heads,
            hd: self.cfg.head_dim(),
            cos: Arc::clone(cos),
            sin: Arc::clone(sin),
            eps: NORM_EPS as f32,
        };
        Ok(Some(match xs {
            [a] => a.contiguous()?.apply_op2(&scales, op)?,
            [a, b] => a.contiguous()?.apply_op3(&b.contiguous()?, &scales, op)?,
            _ => candle_core::bail!("packed_qkv: one or two streams"),
        }))
    }

    /// Attention over a packed q/k/v, with the condition K/V appended when given.
    fn attend_packed(&self, packed: &Tensor, ckv: Option<&Tensor>) -> candle_core::Result<Tensor> {
        if ckv.is_none() {
            let scale = 1.0 / (self.cfg.head_dim() as f32).sqrt();
            return packed.apply_op1(kernels::AttentionTrain { scale });
        }
        let (k, v) = self.with_cond(packed.get(1)?, packed.get(2)?, ckv)?;
        self.attend(&packed.get(0)?, &k, &v)
    }

    /// Appends the cached condition K/V `(2, B, heads, N_cond, hd)` (if any) to `k` and `v`.
    fn with_cond(
        &self,
        k: Tensor,
        v: Tensor,
        ckv: Option<&Tensor>,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        match ckv {
            Some(c) => Ok((
                Tensor::cat(&[&k, &c.get(0)?], 2)?,
                Tensor::cat(&[&v, &c.get(1)?], 2)?,
            )),
            None => Ok((k, v)),
        }
    }

    /// The LoRA delta of the q, k, v projection for the modulated input `x`.
    fn lora_delta(
        &self,
        x: &Tensor,
        layer: &LayerLora,
        scale: f64,
    ) -> candle_core::Result<Option<Tensor>> {
        if layer.adapters.iter().all(|a| a.is_none()) {
            return Ok(None);
        }
        let h = self.cfg.hidden_size;
        let dims = x.dims().to_vec();
        let rows = x.elem_count() / h;
        let x2 = x.reshape((rows, h))?;
        let mut parts = Vec::with_capacity(3);
        for a in layer.adapters.iter() {
            parts.push(match a {
                Some(p) => {
                    let u = x2.matmul(&p.a.tensor().t()?)?;
                    (u.matmul(&p.b.tensor().t()?)? * scale)?
                }
                None => Tensor::zeros((rows, h), x.dtype(), x.device())?,
            });
        }
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = 3 * h;
        }
        Ok(Some(Tensor::cat(&parts, 1)?.reshape(out_dims)?))
    }

    /// `qkv` plus the LoRA delta of `xm` (the modulated input), when a set is active.
    fn add_lora(
        &self,
        qkv: Tensor,
        xm: &Tensor,
        lora: Option<(&LayerLora, f64)>,
    ) -> candle_core::Result<Tensor> {
        if let Some((l, s)) = lora {
            if let Some(d) = self.lora_delta(xm, l, s)? {
                return qkv + d;
            }
        }
        Ok(qkv)
    }
}

impl QkNorm {
    pub(super) fn new(ld: &Loader, p: &str, hd: usize) -> Result<Self> {
        let q = ld.tensor(&format!("{p}.query_norm.scale"), &[hd])?;
        let k = ld.tensor(&format!("{p}.key_norm.scale"), &[hd])?;
        Ok(Self {
            qh: host_vec(&q)?,
            kh: host_vec(&k)?,
            q,
            k,
        })
    }

    fn q(&self, ctx: &Ctx, x: &Tensor, r: &Rope) -> candle_core::Result<Tensor> {
        ctx.norm_rope(x, &self.q, r)
    }

    fn k(&self, ctx: &Ctx, x: &Tensor, r: &Rope) -> candle_core::Result<Tensor> {
        ctx.norm_rope(x, &self.k, r)
    }
}

impl Mlp {
    pub(super) fn new(ld: &Loader, p: &str, h: usize, mlp: usize) -> Result<Self> {
        Ok(Self {
            fc0: ld.lin(&format!("{p}.0"), h, mlp, true)?,
            fc2: ld.lin(&format!("{p}.2"), mlp, h, true)?,
        })
    }

    pub(super) fn forward(&self, ctx: &Ctx, x: &Tensor) -> candle_core::Result<Tensor> {
        let hid = kernels::gelu_train(&ctx.lin(&self.fc0, x)?)?;
        ctx.lin(&self.fc2, &hid)
    }
}

impl StreamWeights {
    pub(super) fn new(ld: &Loader, p: &str, cfg: &DitConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            modulation: ld.lin(&format!("{p}_mod.lin"), h, 6 * h, true)?,
            qkv: ld.lin(&format!("{p}_attn.qkv"), h, 3 * h, cfg.qkv_bias)?,
            norm: QkNorm::new(ld, &format!("{p}_attn.norm"), cfg.head_dim())?,
            proj: ld.lin(&format!("{p}_attn.proj"), h, h, true)?,
            mlp: Mlp::new(ld, &format!("{p}_mlp"), h, cfg.mlp_hidden())?,
        })
    }

    /// The (attention, MLP) modulation triples for the vector `vec` (already SiLU'd).
    fn mods(&self, ctx: &Ctx, vec: &Tensor) -> candle_core::Result<Vec<Mod>> {
        chunks(&ctx.lin(&self.modulation, vec)?, 2)
    }

    /// The rest of the block after attention: projection and gated residual, then the
    /// modulated MLP and its gated residual.
    fn post_attn(
        &self,
        ctx: &Ctx,
        x: &Tensor,
        a: &Tensor,
        m: &[Mod],
    ) -> candle_core::Result<Tensor> {
        let x2 = ctx.gate_res(x, &ctx.lin(&self.proj, a)?, &m[0])?;
        let mlp = self.mlp.forward(ctx, &ctx.modulate(&x2, &m[1])?)?;
        ctx.gate_res(&x2, &mlp, &m[1])
    }
}

impl DoubleBlock {
    pub(super) fn new(ld: &Loader, i: usize, cfg: &DitConfig) -> Result<Self> {
        Ok(Self {
            img: StreamWeights::new(ld, &format!("double_blocks.{i}.img"), cfg)?,
            txt: StreamWeights::new(ld, &format!("double_blocks.{i}.txt"), cfg)?,
        })
    }

    /// One double-stream block over text and image tokens (and the condition K/V, if any);
    /// returns the new `(txt, img)`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &self,
        ctx: &Ctx,
        txt: &Tensor,
        img: &Tensor,
        vec: &Tensor,
        rope: &Rope,
        rope_txt: &Rope,
        rope_img: &Rope,
        ckv: Option<&Tensor>,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (tw, iw) = (&self.txt, &self.img);
        let n_txt = txt.dim(1)?;
        let n_img = img.dim(1)?;
        let mi = iw.mods(ctx, vec)?;
        let mt = tw.mods(ctx, vec)?;
        let xt = ctx.lin(&tw.qkv, &ctx.modulate(txt, &mt[0])?)?;
        let xi = ctx.lin(&iw.qkv, &ctx.modulate(img, &mi[0])?)?;
        if let Some(packed) = ctx.packed_qkv(&[&xt, &xi], &[&tw.norm, &iw.norm], rope)? {
            let a = ctx.attend_packed(&packed, ckv)?;
            let txt = tw.post_attn(ctx, txt, &a.narrow(1, 0, n_txt)?, &mt)?;
            let img = iw.post_attn(ctx, img, &a.narrow(1, n_txt, n_img)?, &mi)?;
            return Ok((txt, img));
        }
        let (qt, kt, vt) = ctx.split_qkv(&xt)?;
        let (qi, ki, vi) = ctx.split_qkv(&xi)?;
        let q = Tensor::cat(
            &[
                tw.norm.q(ctx, &qt, rope_txt)?,
                iw.norm.q(ctx, &qi, rope_img)?,
            ],
            2,
        )?;
        let k = Tensor::cat(
            &[
                tw.norm.k(ctx, &kt, rope_txt)?,
                iw.norm.k(ctx, &ki, rope_img)?,
            ],
            2,
        )?;
        let v = Tensor::cat(&[vt, vi], 2)?;
        let (k, v) = ctx.with_cond(k, v, ckv)?;
        let a = ctx.attend(&q, &k, &v)?;
        let at = a.narrow(1, 0, n_txt)?;
        let ai = a.narrow(1, n_txt, n_img)?;
        let txt = tw.post_attn(ctx, txt, &at, &mt)?;
        let img = iw.post_attn(ctx, img, &ai, &mi)?;
        Ok((txt, img))
    }

    /// The condition stream through this block (its image-stream weights plus the LoRA):
    /// returns the layer's K/V `(2, B, heads, N_cond, hd)` and, unless `last`, advances `cs.h`.
    pub(super) fn cond_forward(
        &self,
        ctx: &Ctx,
        cs: &mut CondStream,
        last: bool,
    ) -> candle_core::Result<Tensor> {
        let w = &self.img;
        let m = w.mods(ctx, &cs.mods_vec)?;
        let xm = ctx.modulate(&cs.h, &m[0])?;
        let qkv = ctx.add_lora(ctx.lin(&w.qkv, &xm)?, &xm, cs.lora)?;
        if let Some(packed) = ctx.packed_qkv(&[&qkv], &[&w.norm], &cs.rope)? {
            let kv = packed.narrow(0, 1, 2)?;
            if !last {
                let a = ctx.attend_packed(&packed, None)?;
                cs.h = w.post_attn(ctx, &cs.h, &a, &m)?;
            }
            return Ok(kv);
        }
        let (q, k, v) = ctx.split_qkv(&qkv)?;
        let k = w.norm.k(ctx, &k, &cs.rope)?;
        let kv = Tensor::stack(&[&k, &v], 0)?;
        if last {
            return Ok(kv);
        }
        let q = w.norm.q(ctx, &q, &cs.rope)?;
        let a = ctx.attend(&q, &k, &v)?;
        cs.h = w.post_attn(ctx, &cs.h, &a, &m)?;
        Ok(kv)
    }
}

impl SingleBlock {
    pub(super) fn new(ld: &Loader, i: usize, cfg: &DitConfig) -> Result<Self> {
        let p = format!("single_blocks.{i}");
        let h = cfg.hidden_size;
        let mlp = cfg.mlp_hidden();
        Ok(Self {
            linear1: ld.lin(&format!("{p}.linear1"), h, 3 * h + mlp, true)?,
            linear2: ld.lin(&format!("{p}.linear2"), h + mlp, h, true)?,
            norm: QkNorm::new(ld, &format!("{p}.norm"), cfg.head_dim())?,
            modulation: ld.lin(&format!("{p}.modulation.lin"), h, 3 * h, true)?,
        })
    }

    /// The modulated input and its `linear1` output `(B, L, 3H + mlp)`.
    fn lin1(&self, ctx: &Ctx, x: &Tensor, m: &Mod) -> candle_core::Result<(Tensor, Tensor)> {
        let xm = ctx.modulate(x, m)?;
        let lin1 = ctx.lin(&self.linear1, &xm)?;
        Ok((xm, lin1))
    }

    /// The MLP half of `lin1`, `linear2` over `[attention, mlp]`, and the gated residual.
    fn post_attn(
        &self,
        ctx: &Ctx,
        x: &Tensor,
        lin1: &Tensor,
        a: Tensor,
        m: &Mod,
    ) -> candle_core::Result<Tensor> {
        let h3 = 3 * ctx.cfg.hidden_size;
        let mlp = kernels::gelu_train(&lin1.narrow(2, h3, ctx.cfg.mlp_hidden())?)?;
        let out = ctx.lin(&self.linear2, &Tensor::cat(&[a, mlp], 2)?)?;
        ctx.gate_res(x, &out, m)
    }

    /// One single-stream block over the joint `[txt, img]` sequence (and the condition K/V).
    pub(super) fn forward(
        &self,
        ctx: &Ctx,
        x: &Tensor,
        vec: &Tensor,
        rope: &Rope,
        ckv: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let h3 = 3 * ctx.cfg.hidden_size;
        let m = chunks(&ctx.lin(&self.modulation, vec)?, 1)?;
        let (_, lin1) = self.lin1(ctx, x, &m[0])?;
        if let Some(packed) = ctx.packed_qkv(&[&lin1], &[&self.norm], rope)? {
            let a = ctx.attend_packed(&packed, ckv)?;
            return self.post_attn(ctx, x, &lin1, a, &m[0]);
        }
        let (q, k, v) = ctx.split_qkv(&lin1.narrow(2, 0, h3)?)?;
        let q = self.norm.q(ctx, &q, rope)?;
        let k = self.norm.k(ctx, &k, rope)?;
        let (k, v) = ctx.with_cond(k, v, ckv)?;
        let a = ctx.attend(&q, &k, &v)?;
        self.post_attn(ctx, x, &lin1, a, &m[0])
    }

    /// The condition stream through this block: returns the layer's K/V and, unless `last`,
    /// advances `cs.h`.
    pub(super) fn cond_forward(
        &self,
        ctx: &Ctx,
        cs: &mut CondStream,
        last: bool,
    ) -> candle_core::Result<Tensor> {
        let h3 = 3 * ctx.cfg.hidden_size;
        let m = chunks(&ctx.lin(&self.modulation, &cs.mods_vec)?, 1)?;
        let (xm, lin1) = self.lin1(ctx, &cs.h, &m[0])?;
        let qkv = ctx.add_lora(lin1.narrow(2, 0, h3)?, &xm, cs.lora)?;
        if let Some(packed) = ctx.packed_qkv(&[&qkv], &[&self.norm], &cs.rope)? {
            let kv = packed.narrow(0, 1, 2)?;
            if !last {
                let a = ctx.attend_packed(&packed, None)?;
                cs.h = self.post_attn(ctx, &cs.h, &lin1, a, &m[0])?;
            }
            return Ok(kv);
        }
        let (q, k, v) = ctx.split_qkv(&qkv)?;
        let k = self.norm.k(ctx, &k, &cs.rope)?;
        let kv = Tensor::stack(&[&k, &v], 0)?;
        if last {
            return Ok(kv);
        }
        let q = self.norm.q(ctx, &q, &cs.rope)?;
        let a = ctx.attend(&q, &k, &v)?;
        cs.h = self.post_attn(ctx, &cs.h, &lin1, a, &m[0])?;
        Ok(kv)
    }
}

impl FinalLayer {
    pub(super) fn new(ld: &Loader, h: usize, out: usize) -> Result<Self> {
        Ok(Self {
            linear: ld.lin("final_layer.linear", h, out, true)?,
            ada: ld.lin("final_layer.adaLN_modulation.1", h, 2 * h, true)?,
        })
    }

    /// adaLN (shift, scale from `vec`) then the output projection.
    pub(super) fn forward(
        &self,
        ctx: &Ctx,
        img: &Tensor,
        vec: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let ada = ctx.lin(&self.ada, vec)?.unsqueeze(1)?;
        let h = ctx.cfg.hidden_size;
        let shift = ada.narrow(2, 0, h)?;
        let scale1 = (ada.narrow(2, h, h)? + 1.0)?;
        let img = if ctx.fused {
            img.contiguous()?.apply_op2(
                &ada.squeeze(1)?.contiguous()?,
                kernels::AdaLnTrain {
                    shift_off: 0,
                    scale_off: h,
                    eps: NORM_EPS as f32,
                },
            )?
        } else {
            ctx.layer_norm(img)?
                .broadcast_mul(&scale1)?
                .broadcast_add(&shift)?
        };
        ctx.lin(&self.linear, &img)
    }
}

/// The per-call context of the fused CPU f32 inference path ([`Mode::Fast`] on CPU f32):
/// shapes, the RoPE tables as host vectors and the number of condition tokens.
pub(super) struct FusedCtx {
    pub(super) h: usize,
    pub(super) nh: usize,
    pub(super) hd: usize,
    pub(super) mlp_w: usize,
    pub(super) eps: f32,
    pub(super) sm_scale: f32,
    pub(super) n_cond: usize,
    pub(super) cos: Arc<Vec<f32>>,
    pub(super) sin: Arc<Vec<f32>>,
}

impl FusedCtx {
    /// Fused adaLN with the `k`-th (shift, scale) of the modulation output `m`.
    fn adaln(&self, x: &Tensor, m: &Tensor, k: usize) -> candle_core::Result<Tensor> {
        x.apply_op2_no_bwd(
            m,
            &kernels::AdaLn {
                shift_off: 3 * k * self.h,
                scale_off: (3 * k + 1) * self.h,
                eps: self.eps,
            },
        )
    }

    /// Fused `x + gate_k * (y + bias)`.
    fn gate(
        &self,
        x: &Tensor,
        y: &Tensor,
        m: &Tensor,
        k: usize,
        bias: &Option<Arc<Vec<f32>>>,
    ) -> candle_core::Result<Tensor> {
        x.apply_op3_no_bwd(
            y,
            m,
            &kernels::GateRes {
                gate_off: (3 * k + 2) * self.h,
                bias: bias.clone(),
            },
        )
    }

    /// The fused q/k/v preparation (bias, QK-norm, RoPE, head split) of the given streams.
    fn qkv_prep(
        &self,
        stream_rows: Vec<usize>,
        stream_bias: Vec<Option<Arc<Vec<f32>>>>,
        norms: &[&QkNorm],
    ) -> kernels::QkvPrep {
        kernels::QkvPrep {
            heads: self.nh,
            hd: self.hd,
            stream_rows,
            stream_bias,
            q_scale: norms.iter().map(|n| Arc::clone(&n.qh)).collect(),
            k_scale: norms.iter().map(|n| Arc::clone(&n.kh)).collect(),
            cos: Arc::clone(&self.cos),
            sin: Arc::clone(&self.sin),
            sm_scale: self.sm_scale,
            eps: self.eps,
            n_cond: self.n_cond,
        }
    }

    /// Attention over the prepared (3, B, heads, L + Nc, hd) tensor; returns (B, heads, L, hd).
    fn attend(&self, prep: &Tensor, l: usize) -> candle_core::Result<Tensor> {
        let q = prep.get(0)?.narrow(2, 0, l)?;
        let k = prep.get(1)?;
        let v = prep.get(2)?;
        let s = q.matmul(&k.t()?)?;
        s.apply_op1_no_bwd(&kernels::SoftmaxLast)?.matmul(&v)
    }
}

impl StreamWeights {
    /// Fused path: the modulated MLP and its gated residual.
    fn mlp_fused(&self, fx: &FusedCtx, x: &Tensor, m: &Tensor) -> candle_core::Result<Tensor> {
        let hid = self.mlp.fc0.mm(&fx.adaln(x, m, 1)?)?;
        let g = hid.apply_op1_no_bwd(&kernels::Gelu {
            cols: fx.mlp_w,
            col_off: 0,
            bias: self.mlp.fc0.bh.clone(),
            out_shape: hid.shape().clone(),
        })?;
        fx.gate(x, &self.mlp.fc2.mm(&g)?, m, 1, &self.mlp.fc2.bh)
    }
}

impl DoubleBlock {
    /// The fused CPU path of [`DoubleBlock::forward`] (no bias/elementwise passes of its own,
    /// heads split and merged in the same passes).
    pub(super) fn forward_fused(
        &self,
        fx: &FusedCtx,
        txt: &Tensor,
        img: &Tensor,
        vec: &Tensor,
        ckv: Option<&Tensor>,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (tw, iw) = (&self.txt, &self.img);
        let h = fx.h;
        let n_txt = txt.dim(1)?;
        let n_img = img.dim(1)?;
        let mi = iw.modulation.forward(vec)?;
        let mt = tw.modulation.forward(vec)?;
        let qt = tw.qkv.mm(&fx.adaln(txt, &mt, 0)?)?;
        let qi = iw.qkv.mm(&fx.adaln(img, &mi, 0)?)?;
        let op = fx.qkv_prep(
            vec![n_txt, n_img],
            vec![tw.qkv.bh.clone(), iw.qkv.bh.clone()],
            &[&tw.norm, &iw.norm],
        );
        let prep = match ckv {
            Some(kv) => qt.apply_op3_no_bwd(&qi, kv, &op)?,
            None => qt.apply_op2_no_bwd(&qi, &op)?,
        };
        let a = fx.attend(&prep, n_txt + n_img)?;
        let flat = a.apply_op1_no_bwd(&kernels::MergeHeads {
            split: n_txt,
            mlp: None,
        })?;
        let b = a.dim(0)?;
        let at = flat.narrow(0, 0, b * n_txt * h)?.reshape((b, n_txt, h))?;
        let ai = flat
            .narrow(0, b * n_txt * h, b * n_img * h)?
            .reshape((b, n_img, h))?;
        let t2 = fx.gate(txt, &tw.proj.mm(&at)?, &mt, 0, &tw.proj.bh)?;
        let txt = tw.mlp_fused(fx, &t2, &mt)?;
        let i2 = fx.gate(img, &iw.proj.mm(&ai)?, &mi, 0, &iw.proj.bh)?;
        let img = iw.mlp_fused(fx, &i2, &mi)?;
        Ok((txt, img))
    }
}

impl SingleBlock {
    /// The fused CPU path of [`SingleBlock::forward`].
    pub(super) fn forward_fused(
        &self,
        fx: &FusedCtx,
        x: &Tensor,
        vec: &Tensor,
        ckv: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let h3 = 3 * fx.h;
        let l = x.dim(1)?;
        let m = self.modulation.forward(vec)?;
        let lin1 = self.linear1.mm(&fx.adaln(x, &m, 0)?)?;
        let op = fx.qkv_prep(vec![l], vec![self.linear1.bias_part(0, h3)], &[&self.norm]);
        let prep = match ckv {
            Some(kv) => lin1.apply_op2_no_bwd(kv, &op)?,
            None => lin1.apply_op1_no_bwd(&op)?,
        };
        let a = fx.attend(&prep, l)?;
        let cat = a.apply_op2_no_bwd(
            &lin1,
            &kernels::MergeHeads {
                split: l,
                mlp: Some(kernels::MlpPart {
                    col_off: h3,
                    cols: fx.mlp_w,
                    bias: self.linear1.bias_part(h3, fx.mlp_w),
                }),
            },
        )?;
        fx.gate(x, &self.linear2.mm(&cat)?, &m, 0, &self.linear2.bh)
    }
}

impl FinalLayer {
    /// The fused CPU path of [`FinalLayer::forward`].
    pub(super) fn forward_fused(
        &self,
        fx: &FusedCtx,
        img: &Tensor,
        vec: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let ada = self.ada.forward(vec)?;
        let img = img.apply_op2_no_bwd(
            &ada,
            &kernels::AdaLn {
                shift_off: 0,
                scale_off: fx.h,
                eps: fx.eps,
            },
        )?;
        self.linear.forward(&img)
    }
}
