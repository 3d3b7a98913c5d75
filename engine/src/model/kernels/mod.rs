//! Fused CPU f32 kernels (candle custom ops) of the MM-DiT.
//!
//! A small DiT on a 2-core CPU is dominated by elementwise passes and temporaries, not by
//! matmuls, so these kernels fold the bias adds, normalisations, RoPE, head split/merge, GELU
//! and the gated residuals into few passes. A test checks that the fast and training paths
//! agree to 1e-5.
//!
//! - `inference.rs`: forward-only kernels of the inference fast path.
//! - `training.rs`: kernels with backward passes for the training path (LoRA on frozen base
//!   weights); they reuse the inference forwards and row helpers.

mod inference;
mod training;

pub(crate) use inference::{AdaLn, GateRes, Gelu, MergeHeads, MlpPart, QkvPrep, SoftmaxLast};
pub(crate) use training::{gelu_train, AdaLnTrain, FrozenLinear, GateResTrain, NormRopeTrain};
