//! Activation checkpointing: a checkpointed block keeps only its inputs and outputs for the
//! backward pass, which runs the block's forward again from them. At FLUX's size the attention
//! scores of every block (kept by an ordinary training forward) are far larger than one GPU's
//! memory; with checkpointing only the blocks' token streams stay, plus one block's activations
//! during its recomputation.
//!
//! A checkpointed block is one node of candle's graph: a custom op over the block's inputs in
//! two or three packed tensors ([`Packed`]: the token stream; the modulation vector, with the
//! layer's LoRA weights in the condition stream; the condition layer's K/V). Its forward hands
//! out the block's packed output (computed beforehand without recording a graph); its backward
//! recomputes the block from the saved inputs and returns their gradients. The next block takes
//! that packed output as its stream input as it is, so each block's stream and K/V are kept
//! once. Whatever carries a gradient into the block must be one of its inputs: the base weights
//! it captures are frozen ([`MmDit::set_activation_checkpointing`] refuses a trainable base).

use super::blocks::Ctx;
use super::{CondStream, MmDit, Mode, Rope};
use crate::model::config::DitConfig;
use crate::model::lora::{LayerLora, LoraPair, Param};
use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Storage, Tensor, Var,
};
use std::sync::{Arc, Mutex};

/// A block's forward from its inputs, one list per [`Packed`] group, to its outputs.
type Segment = dyn Fn(&[Vec<Tensor>]) -> candle_core::Result<Vec<Tensor>> + Send + Sync;

/// Tensors flattened and joined into one vector, with their shapes. A checkpointed block takes
/// its inputs as two or three of these and returns its outputs as one, which the next block
/// takes as it is: the token streams are kept once, not once more as the next block's input.
#[derive(Clone)]
pub(super) struct Packed {
    flat: Tensor,
    shapes: Vec<Shape>,
}

impl Packed {
    /// The tensors joined into one vector (all of one dtype): a copy, except for one
    /// contiguous tensor, whose flat view is taken as it is.
    pub(super) fn of(ts: &[Tensor]) -> candle_core::Result<Self> {
        let flat = ts
            .iter()
            .map(Tensor::flatten_all)
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            flat: Tensor::cat(&flat, 0)?,
            shapes: ts.iter().map(|t| t.shape().clone()).collect(),
        })
    }

    /// Views of the tensors.
    fn parts(&self) -> candle_core::Result<Vec<Tensor>> {
        unpack(&self.flat, &self.shapes)
    }
}

/// Runs `segment` on the tensors of `groups` (two or three) without keeping its intermediate
/// activations for the backward pass. The outputs are connected to the groups for gradients;
/// the segment is run again from the saved groups when the backward pass reaches it.
fn checkpoint(groups: &[&Packed], segment: Arc<Segment>) -> candle_core::Result<Packed> {
    let inputs = groups
        .iter()
        .map(|g| unpack(&g.flat.detach(), &g.shapes))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let outs = segment(&inputs)?;
    drop(inputs);
    let out = Packed::of(&outs)?;
    drop(outs);
    let op = Checkpoint {
        segment,
        in_shapes: groups.iter().map(|g| g.shapes.clone()).collect(),
        out_shapes: out.shapes.clone(),
        out: Mutex::new(Some(out.flat)),
    };
    let flat = match groups {
        [a, b] => a.flat.apply_op2(&b.flat, op)?,
        [a, b, c] => a.flat.apply_op3(&b.flat, &c.flat, op)?,
        _ => candle_core::bail!("checkpoint: {} input groups, 2 or 3 expected", groups.len()),
    };
    Ok(Packed {
        flat,
        shapes: out.shapes,
    })
}

/// Views of `packed` in `shapes`.
fn unpack(packed: &Tensor, shapes: &[Shape]) -> candle_core::Result<Vec<Tensor>> {
    let mut off = 0;
    let mut out = Vec::with_capacity(shapes.len());
    for s in shapes {
        let n = s.elem_count();
        out.push(packed.narrow(0, off, n)?.reshape(s)?);
        off += n;
    }
    Ok(out)
}

struct Checkpoint {
    segment: Arc<Segment>,
    in_shapes: Vec<Vec<Shape>>,
    out_shapes: Vec<Shape>,
    /// The packed outputs, computed before the op and handed over by its forward (once).
    out: Mutex<Option<Tensor>>,
}

impl Checkpoint {
    fn take_out(&self) -> candle_core::Result<Tensor> {
        let mut out = self.out.lock().map_err(|_| {
            candle_core::Error::Msg("checkpoint: the output's lock is poisoned".into())
        })?;
        out.take()
            .ok_or_else(|| candle_core::Error::Msg("checkpoint: forward run twice".into()))
    }

    /// The forward on the CPU: the precomputed output, copied into the op's own storage.
    fn cpu_out(&self) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = self.take_out()?;
        let (storage, layout) = out.storage_and_layout();
        match &*storage {
            Storage::Cpu(s) => Ok((copy_of(s, layout)?, layout.shape().clone())),
            _ => Err(different_devices()),
        }
    }

    /// The forward on a CUDA device, as [`Checkpoint::cpu_out`].
    fn cuda_out(&self) -> candle_core::Result<(CudaStorage, Shape)> {
        let out = self.take_out()?;
        let (storage, layout) = out.storage_and_layout();
        match &*storage {
            Storage::Cuda(s) => Ok((copy_of(s, layout)?, layout.shape().clone())),
            _ => Err(different_devices()),
        }
    }

    /// The gradient of each input group: the segment recomputed from `args`, then
    /// d/d(inputs) of Σ out·grad, the chain rule's vector-Jacobian product.
    fn grads(
        &self,
        args: &[&Tensor],
        grad_res: &Tensor,
    ) -> candle_core::Result<Vec<Option<Tensor>>> {
        // a group no gradient flows into (the first tokens, the modulation vector, a cache's
        // K/V) is recomputed from as it is: no copy into a variable, no gradient computed
        let vars = args
            .iter()
            .map(|a| {
                a.track_op()
                    .then(|| Var::from_tensor(&a.detach()))
                    .transpose()
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let inputs = vars
            .iter()
            .zip(args)
            .zip(&self.in_shapes)
            .map(|((v, a), s)| match v {
                Some(v) => unpack(v.as_tensor(), s),
                None => unpack(&a.detach(), s),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let outs = (self.segment)(&inputs)?;
        let grads = unpack(&grad_res.detach(), &self.out_shapes)?;
        let mut surrogate: Option<Tensor> = None;
        for (o, g) in outs.iter().zip(&grads) {
            let t = (o * g)?.sum_all()?.to_dtype(DType::F32)?;
            surrogate = Some(match surrogate {
                None => t,
                Some(s) => (s + t)?,
            });
        }
        let Some(surrogate) = surrogate else {
            return Ok(vec![None; args.len()]);
        };
        let store = surrogate.backward()?;
        // detached: a gradient must not keep the recomputed block's graph alive
        Ok(vars
            .iter()
            .map(|v| {
                v.as_ref()
                    .and_then(|v| store.get(v.as_tensor()).map(Tensor::detach))
            })
            .collect())
    }
}

fn different_devices() -> candle_core::Error {
    candle_core::Error::Msg("checkpoint: inputs and outputs on different devices".into())
}

/// A contiguous copy of `src` as `layout` describes it.
fn copy_of<S>(src: &S, layout: &Layout) -> candle_core::Result<S>
where
    S: BackendStorage,
    S::Device: BackendDevice<Storage = S>,
{
    let mut dst = src.device().zeros_impl(layout.shape(), src.dtype())?;
    src.copy_strided_src(&mut dst, 0, layout)?;
    Ok(dst)
}

impl CustomOp2 for Checkpoint {
    fn name(&self) -> &'static str {
        "activation-checkpoint"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.cpu_out()
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        self.cuda_out()
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let mut g = self.grads(&[a, b], grad)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten()))
    }
}

impl CustomOp3 for Checkpoint {
    fn name(&self) -> &'static str {
        "activation-checkpoint"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.cpu_out()
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        self.cuda_out()
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mut g = self.grads(&[a, b, c], grad)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten(), g.next().flatten()))
    }
}

/// What a block's recomputation needs of [`Ctx`], owned.
#[derive(Clone)]
struct OwnedCtx {
    fused: bool,
    cfg: DitConfig,
    ln_ones: Tensor,
    ln_zeros: Tensor,
}

impl OwnedCtx {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            mode: Mode::Train,
            fused: self.fused,
            cfg: &self.cfg,
            ln_ones: &self.ln_ones,
            ln_zeros: &self.ln_zeros,
        }
    }
}

/// A LoRA layer's weights in a stable order (A then B of each adapter).
fn lora_tensors(layer: &LayerLora) -> Vec<Tensor> {
    layer
        .adapters
        .iter()
        .flatten()
        .flat_map(|p| [p.a.tensor().clone(), p.b.tensor().clone()])
        .collect()
}

/// `template`'s adapters with the weights `ts` (in [`lora_tensors`]' order).
fn lora_with(template: &LayerLora, ts: &[Tensor]) -> LayerLora {
    let mut it = ts.iter();
    let mut adapters: [Option<LoraPair>; 3] = Default::default();
    for (slot, t) in adapters.iter_mut().zip(&template.adapters) {
        if t.is_some() {
            if let (Some(a), Some(b)) = (it.next(), it.next()) {
                // views of the packed input, not `Var`s: their gradient flows to the packed input
                *slot = Some(LoraPair {
                    a: Param::Frozen(a.clone()),
                    b: Param::Frozen(b.clone()),
                });
            }
        }
    }
    LayerLora { adapters }
}

impl MmDit {
    fn owned_ctx(&self, ctx: &Ctx) -> OwnedCtx {
        OwnedCtx {
            fused: ctx.fused,
            cfg: self.cfg.clone(),
            ln_ones: self.ln_ones.clone(),
            ln_zeros: self.ln_zeros.clone(),
        }
    }

    /// The condition stream with every block checkpointed: per layer, the block's packed
    /// output, whose first tensor is the layer's K/V (then, but for the last layer, the
    /// stream). The LoRA weights are inputs, so their gradients flow.
    pub(super) fn cond_stream_checkpointed(
        &self,
        ctx: &Ctx,
        tokens: &Tensor,
        ids: &Tensor,
        y: &Tensor,
    ) -> candle_core::Result<Vec<Packed>> {
        let start = self.cond_stream_start(ctx, tokens, ids, y)?;
        let active = self.loras.active();
        let scale = active.map(|s| s.scale()).unwrap_or(0.0);
        let n_layers = self.cfg.num_blocks();
        let mut stream = Packed::of(&[start.h])?;
        let mut out = Vec::with_capacity(n_layers);
        for (i, run) in self.cond_block_fns().into_iter().enumerate() {
            let last = i + 1 == n_layers;
            let lora = active.map(|s| (s.layers[i].clone(), scale));
            let mut mods_and_lora = vec![start.mods_vec.clone()];
            if let Some((l, _)) = &lora {
                mods_and_lora.extend(lora_tensors(l));
            }
            let mods_and_lora = Packed::of(&mods_and_lora)?;
            let octx = self.owned_ctx(ctx);
            let rope = start.rope.clone();
            let segment = Arc::new(move |g: &[Vec<Tensor>]| {
                let (Some(h), Some((mods_vec, lora_ts))) = (g[0].last(), g[1].split_first()) else {
                    candle_core::bail!("checkpoint: a condition block without its inputs")
                };
                let layer = lora.as_ref().map(|(l, s)| (lora_with(l, lora_ts), *s));
                let mut cs = CondStream {
                    h: h.clone(),
                    mods_vec: mods_vec.clone(),
                    rope: rope.clone(),
                    lora: layer.as_ref().map(|(l, s)| (l, *s)),
                };
                let kv = run(&octx.ctx(), &mut cs, last)?;
                Ok(if last { vec![kv] } else { vec![kv, cs.h] })
            });
            stream = checkpoint(&[&stream, &mods_and_lora], segment)?;
            out.push(stream.clone());
            if last {
                break;
            }
        }
        Ok(out)
    }

    /// The double and single blocks, each checkpointed, from the embedded text and image
    /// tokens to the image tokens before the final layer. `cond` holds each layer's packed
    /// condition K/V ([`MmDit::cond_stream_checkpointed`]).
    pub(super) fn blocks_checkpointed(
        &self,
        ctx: &Ctx,
        txt: &Tensor,
        img: &Tensor,
        svec: &Tensor,
        ropes: [&Rope; 3],
        cond: Option<&[Packed]>,
    ) -> candle_core::Result<Tensor> {
        let (n_txt, n_img) = (txt.dim(1)?, img.dim(1)?);
        let svec = Packed::of(std::slice::from_ref(svec))?;
        let cond_kv_of = |i: usize| match cond {
            None => Ok(None),
            Some(c) => c.get(i).map(Some).ok_or_else(|| {
                candle_core::Error::Msg(format!("checkpoint: no condition K/V for layer {i}"))
            }),
        };
        let mut stream = Packed::of(&[txt.clone(), img.clone()])?;
        for i in 0..self.double_blocks.len() {
            let blk = self.double_blocks[i].clone();
            let octx = self.owned_ctx(ctx);
            let [rope, rope_txt, rope_img] = ropes.map(Rope::clone);
            let segment = Arc::new(move |g: &[Vec<Tensor>]| {
                let ([txt, img], [svec]) = (&g[0][..], &g[1][..]) else {
                    candle_core::bail!("checkpoint: a double block without its inputs")
                };
                let kv = g.get(2).and_then(|c| c.first());
                let (t, im) =
                    blk.forward(&octx.ctx(), txt, img, svec, &rope, &rope_txt, &rope_img, kv)?;
                Ok(vec![t, im])
            });
            stream = checkpoint(&block_inputs(&stream, &svec, cond_kv_of(i)?), segment)?;
        }
        for j in 0..self.single_blocks.len() {
            let blk = self.single_blocks[j].clone();
            let octx = self.owned_ctx(ctx);
            let rope = ropes[0].clone();
            let segment = Arc::new(move |g: &[Vec<Tensor>]| {
                // the first single block joins the double blocks' (txt, img) itself, so that
                // output is not kept a second time as a joined copy
                let (x, svec) = match (&g[0][..], &g[1][..]) {
                    ([x], [svec]) => (x.clone(), svec),
                    ([txt, img], [svec]) => (Tensor::cat(&[txt, img], 1)?, svec),
                    _ => candle_core::bail!("checkpoint: a single block without its inputs"),
                };
                let kv = g.get(2).and_then(|c| c.first());
                Ok(vec![blk.forward(&octx.ctx(), &x, svec, &rope, kv)?])
            });
            let kv = cond_kv_of(self.cfg.depth + j)?;
            stream = checkpoint(&block_inputs(&stream, &svec, kv), segment)?;
        }
        match &stream.parts()?[..] {
            [x] => x.narrow(1, n_txt, n_img),
            [_, img] => Ok(img.clone()),
            _ => candle_core::bail!("checkpoint: the blocks gave no image tokens"),
        }
    }
}

/// A block's input groups: the token stream, the modulation vector and, with a condition, the
/// layer's K/V.
fn block_inputs<'a>(
    stream: &'a Packed,
    svec: &'a Packed,
    kv: Option<&'a Packed>,
) -> Vec<&'a Packed> {
    let mut g = vec![stream, svec];
    g.extend(kv);
    g
}
