//! The condition K/V cache (OminiControl2 scheme).
//!
//! Condition rows attend only to condition tokens and are modulated from timestep 0, so their
//! keys and values in every layer do not depend on σ, the noise, the text or the image. One
//! pass of the condition tokens records them per layer; every sampling step then runs only the
//! text and image tokens against the cache.
//!
//! The cache is keyed by (condition tokens and ids, active LoRA set, pooled vector): the model
//! refuses a cache whose LoRA set or pooled vector differs from the current call, so switching
//! stage (`set_active`) invalidates it. Use [`crate::model::MmDit::ensure_cond_cache`] to
//! rebuild it only when needed.

use super::error::Result;
use candle_core::{DType, Tensor};

/// What a [`CondCache`] was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CondKey {
    /// Fingerprint of the condition tokens and their position ids.
    pub condition: u64,
    /// The LoRA set that was active (None: base weights only).
    pub lora: Option<String>,
    /// Fingerprint of the pooled vector `y`.
    pub pooled: u64,
    /// Batch size.
    pub batch: usize,
    /// Number of condition tokens.
    pub tokens: usize,
}

/// Per-layer condition keys and values (after QK-norm and RoPE), each layer one tensor
/// `(2, B, heads, N_cond, head_dim)` (K then V).
#[derive(Debug, Clone)]
pub struct CondCache {
    pub(crate) kv: Vec<Tensor>,
    pub(crate) key: CondKey,
}

impl CondCache {
    /// What the cache was built from.
    pub fn key(&self) -> &CondKey {
        &self.key
    }

    /// Number of layers recorded (double + single blocks).
    pub fn num_layers(&self) -> usize {
        self.kv.len()
    }

    /// Bytes held by the cached tensors.
    pub fn memory_bytes(&self) -> usize {
        self.kv
            .iter()
            .map(|kv| kv.elem_count() * kv.dtype().size_in_bytes())
            .sum()
    }

    /// Whether this cache is valid for that condition, active LoRA set and pooled vector.
    pub fn matches(
        &self,
        tokens: &Tensor,
        ids: &Tensor,
        active_lora: Option<&str>,
        y: &Tensor,
    ) -> Result<bool> {
        Ok(self.key.lora.as_deref() == active_lora
            && self.key.pooled == fingerprint(y)?
            && self.key.condition == condition_fingerprint(tokens, ids)?)
    }
}

/// FNV-1a fingerprint of a tensor's shape and values (as f32).
pub fn fingerprint(t: &Tensor) -> Result<u64> {
    let mut h = crate::hash::FNV_OFFSET;
    let mut eat = |bytes: &[u8]| h = crate::hash::fnv1a_from(h, bytes);
    for d in t.dims() {
        eat(&(*d as u64).to_le_bytes());
    }
    let vals = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    for v in vals {
        eat(&v.to_bits().to_le_bytes());
    }
    Ok(h)
}

pub(crate) fn condition_fingerprint(tokens: &Tensor, ids: &Tensor) -> Result<u64> {
    Ok(fingerprint(tokens)?.rotate_left(17) ^ fingerprint(ids)?)
}
