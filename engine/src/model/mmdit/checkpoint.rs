//! Activation checkpointing: a checkpointed block keeps only its inputs and outputs for the
//! backward pass, which runs the block's forward again from them. At FLUX's size the attention
//! scores of every block (kept by an ordinary training forward) are far larger than one GPU's
//! memory; with checkpointing only the blocks' token streams stay, plus one block's activations
//! during its recomputation.
//!
//! A checkpointed block is one node of candle's graph: a custom op over the block's inputs
//! packed into one tensor, whose forward hands out the block's output (computed beforehand
//! without recording a graph) and whose backward recomputes the block from the saved inputs
//! and returns the gradient of the packed inputs. Whatever carries a gradient into the block
//! (the token streams, the modulation vector, the condition K/V, the LoRA weights) must be one
//! of its inputs: the base weights it captures are frozen ([`MmDit::set_activation_checkpointing`]
//! refuses a trainable base).

use super::blocks::Ctx;
use super::{CondStream, MmDit, Mode, Rope};
use crate::model::config::DitConfig;
use crate::model::lora::{LayerLora, LoraPair, Param};
use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Layout, Shape, Storage, Tensor, Var};
use std::sync::{Arc, Mutex};

/// A block's forward from its inputs to its outputs.
type Segment = dyn Fn(&[Tensor]) -> candle_core::Result<Vec<Tensor>> + Send + Sync;

/// Runs `segment` on `inputs` without keeping its intermediate activations for the backward
/// pass. The outputs are connected to `inputs` for gradients; the segment is run again from
/// the saved inputs when the backward pass reaches it.
fn checkpoint(inputs: &[Tensor], segment: Arc<Segment>) -> candle_core::Result<Vec<Tensor>> {
    let detached: Vec<Tensor> = inputs.iter().map(Tensor::detach).collect();
    let outs = segment(&detached)?;
    let in_shapes: Vec<Shape> = inputs.iter().map(|t| t.shape().clone()).collect();
    let out_shapes: Vec<Shape> = outs.iter().map(|t| t.shape().clone()).collect();
    let packed_out = pack(&outs)?;
    drop(outs);
    let op = Checkpoint {
        segment,
        in_shapes,
        out_shapes: out_shapes.clone(),
        out: Mutex::new(Some(packed_out)),
    };
    let res = pack(inputs)?.apply_op1(op)?;
    unpack(&res, &out_shapes)
}

/// The tensors flattened and joined into one vector (all of one dtype).
fn pack(ts: &[Tensor]) -> candle_core::Result<Tensor> {
    let flat = ts
        .iter()
        .map(Tensor::flatten_all)
        .collect::<candle_core::Result<Vec<_>>>()?;
    Tensor::cat(&flat, 0)
}

/// The inverse of [`pack`]: views of `packed` in `shapes`.
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
    in_shapes: Vec<Shape>,
    out_shapes: Vec<Shape>,
    /// The packed outputs, computed before the op and handed over by its forward (once).
    out: Mutex<Option<Tensor>>,
}

impl Checkpoint {
    fn take_out(&self) -> candle_core::Result<Tensor> {
        self.out
            .lock()
            .ok()
            .and_then(|mut o| o.take())
            .ok_or_else(|| candle_core::Error::Msg("checkpoint: forward run twice".into()))
    }
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

impl CustomOp1 for Checkpoint {
    fn name(&self) -> &'static str {
        "activation-checkpoint"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = self.take_out()?;
        let (storage, layout) = out.storage_and_layout();
        match &*storage {
            Storage::Cpu(s) => Ok((copy_of(s, layout)?, layout.shape().clone())),
            _ => Err(candle_core::Error::Msg(
                "checkpoint: inputs and outputs on different devices".into(),
            )),
        }
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let out = self.take_out()?;
        let (storage, layout) = out.storage_and_layout();
        match &*storage {
            Storage::Cuda(s) => Ok((copy_of(s, layout)?, layout.shape().clone())),
            _ => Err(candle_core::Error::Msg(
                "checkpoint: inputs and outputs on different devices".into(),
            )),
        }
    }

    fn bwd(
        &self,
        packed_in: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let var = Var::from_tensor(&packed_in.detach())?;
        let outs = (self.segment)(&unpack(var.as_tensor(), &self.in_shapes)?)?;
        let grads = unpack(&grad_res.detach(), &self.out_shapes)?;
        // d/d(inputs) of Σ out·grad is the chain rule's vector-Jacobian product.
        let mut surrogate: Option<Tensor> = None;
        for (o, g) in outs.iter().zip(&grads) {
            let t = (o * g)?.sum_all()?.to_dtype(DType::F32)?;
            surrogate = Some(match surrogate {
                None => t,
                Some(s) => (s + t)?,
            });
        }
        let Some(surrogate) = surrogate else {
            return Ok(None);
        };
        Ok(surrogate.backward()?.get(var.as_tensor()).cloned())
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
                *slot = Some(LoraPair {
                    a: Param::Frozen(a.clone()),
                    b: Param::Frozen(b.clone()),
                });
            }
        }
    }
    LayerLora { adapters }
}

/// A block's condition-stream pass: `(ctx, stream, last) -> K/V`, advancing the stream.
pub(super) type CondBlockFn =
    dyn Fn(&Ctx, &mut CondStream, bool) -> candle_core::Result<Tensor> + Send + Sync;

impl MmDit {
    fn owned_ctx(&self, ctx: &Ctx) -> OwnedCtx {
        OwnedCtx {
            fused: ctx.fused,
            cfg: self.cfg.clone(),
            ln_ones: self.ln_ones.clone(),
            ln_zeros: self.ln_zeros.clone(),
        }
    }

    /// Double block `i` of the image and text streams, checkpointed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn double_checkpointed(
        &self,
        ctx: &Ctx,
        i: usize,
        txt: &Tensor,
        img: &Tensor,
        svec: &Tensor,
        ropes: [&Rope; 3],
        ckv: Option<&Tensor>,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let blk = self.double_blocks[i].clone();
        let octx = self.owned_ctx(ctx);
        let [rope, rope_txt, rope_img] = ropes.map(Rope::clone);
        let segment = Arc::new(move |x: &[Tensor]| {
            let (t, im) = blk.forward(
                &octx.ctx(),
                &x[0],
                &x[1],
                &x[2],
                &rope,
                &rope_txt,
                &rope_img,
                x.get(3),
            )?;
            Ok(vec![t, im])
        });
        let mut inputs = vec![txt.clone(), img.clone(), svec.clone()];
        inputs.extend(ckv.cloned());
        let mut out = checkpoint(&inputs, segment)?.into_iter();
        match (out.next(), out.next()) {
            (Some(t), Some(im)) => Ok((t, im)),
            _ => Err(candle_core::Error::Msg(
                "checkpoint: a double block gave no (txt, img)".into(),
            )),
        }
    }

    /// Single block `j` over the joint sequence, checkpointed.
    pub(super) fn single_checkpointed(
        &self,
        ctx: &Ctx,
        j: usize,
        x: &Tensor,
        svec: &Tensor,
        rope: &Rope,
        ckv: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let blk = self.single_blocks[j].clone();
        let octx = self.owned_ctx(ctx);
        let rope = rope.clone();
        let segment = Arc::new(move |x: &[Tensor]| {
            Ok(vec![blk.forward(
                &octx.ctx(),
                &x[0],
                &x[1],
                &rope,
                x.get(2),
            )?])
        });
        let mut inputs = vec![x.clone(), svec.clone()];
        inputs.extend(ckv.cloned());
        checkpoint(&inputs, segment)?
            .pop()
            .ok_or_else(|| candle_core::Error::Msg("checkpoint: a block gave no output".into()))
    }

    /// One block's condition-stream pass (`run`), checkpointed: returns the layer's K/V and,
    /// unless `last`, advances `cs.h`. The LoRA weights are inputs, so their gradients flow.
    pub(super) fn cond_checkpointed(
        &self,
        ctx: &Ctx,
        run: Arc<CondBlockFn>,
        cs: &mut CondStream,
        last: bool,
    ) -> candle_core::Result<Tensor> {
        let octx = self.owned_ctx(ctx);
        let rope = cs.rope.clone();
        let lora = cs.lora.map(|(l, s)| (l.clone(), s));
        let mut inputs = vec![cs.h.clone(), cs.mods_vec.clone()];
        if let Some((l, _)) = &lora {
            inputs.extend(lora_tensors(l));
        }
        let segment = Arc::new(move |x: &[Tensor]| {
            let layer = lora.as_ref().map(|(l, s)| (lora_with(l, &x[2..]), *s));
            let mut stream = CondStream {
                h: x[0].clone(),
                mods_vec: x[1].clone(),
                rope: rope.clone(),
                lora: layer.as_ref().map(|(l, s)| (l, *s)),
            };
            let kv = run(&octx.ctx(), &mut stream, last)?;
            Ok(if last { vec![kv] } else { vec![kv, stream.h] })
        });
        let mut out = checkpoint(&inputs, segment)?.into_iter();
        let kv = out
            .next()
            .ok_or_else(|| candle_core::Error::Msg("checkpoint: a block gave no K/V".into()))?;
        if let Some(h) = out.next() {
            cs.h = h;
        }
        Ok(kv)
    }
}
