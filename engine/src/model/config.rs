//! MM-DiT configuration: presets, JSON load/save and a stable config hash.

use super::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Architecture hyper-parameters of a FLUX.1-style MM-DiT.
///
/// The field names and meaning follow BFL's `FluxParams` (and candle-transformers'
/// `flux::model::Config`), so a BFL checkpoint loads with the matching preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DitConfig {
    /// Channels of one packed image token (16 latent channels x 2x2 patch = 64).
    pub in_channels: usize,
    /// Size of the pooled text vector `y` (CLIP-L pooled: 768).
    pub vec_in_dim: usize,
    /// Size of one text-encoder token (T5-XXL: 4096).
    pub context_in_dim: usize,
    /// Transformer width.
    pub hidden_size: usize,
    /// MLP width = hidden_size * mlp_ratio.
    pub mlp_ratio: f64,
    /// Attention heads.
    pub num_heads: usize,
    /// Number of double-stream blocks.
    pub depth: usize,
    /// Number of single-stream blocks.
    pub depth_single_blocks: usize,
    /// RoPE dimensions per position axis; sums to the head dim.
    pub axes_dim: Vec<usize>,
    /// RoPE base.
    pub theta: usize,
    /// Bias on the qkv projections.
    pub qkv_bias: bool,
    /// Whether the model has a guidance embedding (FLUX.1-dev: yes, schnell: no).
    pub guidance_embed: bool,
}

/// Names of the built-in presets.
pub const PRESETS: [&str; 3] = ["flux-dev", "flux-schnell", "tiny"];

impl DitConfig {
    /// FLUX.1-dev (12B, guidance-distilled).
    pub fn flux_dev() -> Self {
        Self {
            in_channels: 64,
            vec_in_dim: 768,
            context_in_dim: 4096,
            hidden_size: 3072,
            mlp_ratio: 4.0,
            num_heads: 24,
            depth: 19,
            depth_single_blocks: 38,
            axes_dim: vec![16, 56, 56],
            theta: 10_000,
            qkv_bias: true,
            guidance_embed: true,
        }
    }

    /// FLUX.1-schnell: as dev, without the guidance embedding.
    pub fn flux_schnell() -> Self {
        Self {
            guidance_embed: false,
            ..Self::flux_dev()
        }
    }

    /// The embedded CPU model: hidden 256, 4 heads (head dim 64), 2 double + 4 single blocks,
    /// 64-channel tokens (16 latent channels x 2x2), 128-wide text tokens and pooled vector.
    pub fn tiny() -> Self {
        Self {
            in_channels: 64,
            vec_in_dim: 128,
            context_in_dim: 128,
            hidden_size: 256,
            mlp_ratio: 4.0,
            num_heads: 4,
            depth: 2,
            depth_single_blocks: 4,
            axes_dim: vec![8, 28, 28],
            theta: 10_000,
            qkv_bias: true,
            guidance_embed: false,
        }
    }

    /// A preset by name (`flux-dev`, `flux-schnell`, `tiny`).
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "flux-dev" | "dev" => Ok(Self::flux_dev()),
            "flux-schnell" | "schnell" => Ok(Self::flux_schnell()),
            "tiny" => Ok(Self::tiny()),
            other => Err(ModelError::InvalidConfig(format!(
                "unknown preset `{other}` (known: {})",
                PRESETS.join(", ")
            ))),
        }
    }

    /// Parse and validate a config from JSON text.
    pub fn from_json_str(s: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(s)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read and validate a JSON config file.
    pub fn load_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let s = crate::fsutil::read_text_limited(path, crate::limits::MAX_CONFIG_BYTES)
            .map_err(|e| ModelError::io(path, e))?;
        Self::from_json_str(&s)
    }

    /// Pretty JSON text of this config.
    pub fn to_json_string(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Write this config as JSON.
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json_string()?).map_err(|e| ModelError::io(path, e))
    }

    /// Per-head dimension.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads.max(1)
    }

    /// MLP hidden width (same rounding as BFL: truncation).
    pub fn mlp_hidden(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio) as usize
    }

    /// Total number of blocks (double + single).
    pub fn num_blocks(&self) -> usize {
        self.depth + self.depth_single_blocks
    }

    /// Checks the internal consistency of the config.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidConfig(m));
        if self.hidden_size == 0 || self.num_heads == 0 {
            return bad("hidden_size and num_heads must be > 0".into());
        }
        use crate::limits::{at_most, MAX_BLOCKS, MAX_WIDTH};
        for (field, v) in [
            ("hidden_size", self.hidden_size),
            ("num_heads", self.num_heads),
            ("in_channels", self.in_channels),
            ("vec_in_dim", self.vec_in_dim),
            ("context_in_dim", self.context_in_dim),
        ] {
            at_most(field, v, MAX_WIDTH).map_err(ModelError::InvalidConfig)?;
        }
        at_most("depth", self.depth, MAX_BLOCKS).map_err(ModelError::InvalidConfig)?;
        at_most("depth_single_blocks", self.depth_single_blocks, MAX_BLOCKS)
            .map_err(ModelError::InvalidConfig)?;
        at_most("depth + depth_single_blocks", self.num_blocks(), MAX_BLOCKS)
            .map_err(ModelError::InvalidConfig)?;
        if !(self.mlp_ratio.is_finite()
            && self.mlp_ratio * self.hidden_size as f64 <= MAX_WIDTH as f64)
        {
            return bad(format!(
                "mlp_ratio {} gives an MLP wider than the limit of {MAX_WIDTH}",
                self.mlp_ratio
            ));
        }
        if self.hidden_size % self.num_heads != 0 {
            return bad(format!(
                "hidden_size {} is not divisible by num_heads {}",
                self.hidden_size, self.num_heads
            ));
        }
        let hd = self.head_dim();
        if hd % 2 != 0 {
            return bad(format!("head dim {hd} must be even for RoPE"));
        }
        if self.axes_dim.iter().any(|d| d % 2 != 0 || *d == 0) {
            return bad(format!("axes_dim {:?} must be even and > 0", self.axes_dim));
        }
        if self.axes_dim.iter().sum::<usize>() != hd {
            return bad(format!(
                "axes_dim {:?} must sum to the head dim {hd}",
                self.axes_dim
            ));
        }
        if self.num_blocks() == 0 {
            return bad("the model needs at least one block".into());
        }
        if self.mlp_ratio.is_nan() || self.mlp_ratio <= 0.0 || self.mlp_hidden() == 0 {
            return bad(format!("mlp_ratio {} gives an empty MLP", self.mlp_ratio));
        }
        if self.in_channels == 0 || self.vec_in_dim == 0 || self.context_in_dim == 0 {
            return bad("in_channels, vec_in_dim and context_in_dim must be > 0".into());
        }
        if self.theta == 0 {
            return bad("theta must be > 0".into());
        }
        Ok(())
    }

    /// A stable 16-hex-digit hash of the architecture (FNV-1a 64 over the canonical JSON).
    /// LoRA files record it to refuse being loaded on another base.
    pub fn hash(&self) -> String {
        let s = serde_json::to_string(self).unwrap_or_default();
        format!("{:016x}", crate::hash::fnv1a(s.as_bytes()))
    }

    /// The equivalent candle-transformers config (used by the parity test and the benchmark).
    pub fn to_candle_flux(&self) -> candle_transformers::models::flux::model::Config {
        candle_transformers::models::flux::model::Config {
            in_channels: self.in_channels,
            vec_in_dim: self.vec_in_dim,
            context_in_dim: self.context_in_dim,
            hidden_size: self.hidden_size,
            mlp_ratio: self.mlp_ratio,
            num_heads: self.num_heads,
            depth: self.depth,
            depth_single_blocks: self.depth_single_blocks,
            axes_dim: self.axes_dim.clone(),
            theta: self.theta,
            qkv_bias: self.qkv_bias,
            guidance_embed: self.guidance_embed,
        }
    }
}
