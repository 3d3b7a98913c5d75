//! Fused CPU f32 kernels (candle custom ops) of the MM-DiT.
//!
//! A small DiT on a 2-core CPU is dominated by elementwise passes and temporaries, not by
//! matmuls, so these kernels fold the bias adds, normalisations, RoPE, head split/merge, GELU
//! and the gated residuals into few passes. A test checks that the fast and training paths
//! agree to 1e-5.
//!
//! - `inference.rs`: forward-only kernels of the inference fast path.
//! - `training.rs`: kernels with backward passes for the training path (LoRA on frozen base
//!   weights, or a whole trainable base); they reuse the inference forwards and row helpers.
//! - `attention.rs`, `qkv_heads.rs`: the training path's attention and its q/k/v preparation
//!   (head split, QK-norm, RoPE), with their backward passes.

mod attention;
mod inference;
mod qkv_heads;
mod training;

pub(crate) use attention::AttentionTrain;
pub(crate) use inference::{AdaLn, GateRes, Gelu, MergeHeads, MlpPart, QkvPrep, SoftmaxLast};
pub(crate) use qkv_heads::QkvHeadsTrain;
pub(crate) use training::{gelu_train, AdaLnTrain, GateResTrain, LinearTrain};

/// What the kernels' tests compare with: the largest difference over the largest magnitude.
#[cfg(test)]
fn max_rel(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    let top = |t: candle_core::Tensor| {
        t.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    top((a - b).unwrap()) / top(b.clone()).max(1e-12)
}
