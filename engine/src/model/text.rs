//! Text encoders behind one trait: FLUX's T5-XXL + CLIP-L ([`FluxText`]) and our tiny word
//! transformer ([`super::tiny_text::TinyText`]).
//!
//! Both return per-token features `(B, L, D)` for the DiT's text stream and a pooled vector
//! `(B, Dv)` for its vector input. No prompt can make them fail: an empty prompt encodes to
//! the special tokens only, an over-long one is truncated (and [`TextFeatures::truncated`]
//! says so), and any Unicode is accepted.

use super::autoencoder::build_checked;
use super::device::check_dtype;
use super::error::{ModelError, Result};
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::t5::{Config as T5Config, T5EncoderModel};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

pub use crate::limits::MAX_PROMPT_CHARS;

/// The output of a text encoder for a batch of prompts.
#[derive(Debug, Clone)]
pub struct TextFeatures {
    /// Per-token features `(B, L, D)`; `L` is the encoder's [`TextEncoder::max_len`].
    pub tokens: Tensor,
    /// Pooled vector `(B, Dv)`.
    pub pooled: Tensor,
    /// Whether any prompt of the batch was truncated.
    pub truncated: bool,
}

/// A text encoder for the DiT.
pub trait TextEncoder: Send {
    /// Encodes a batch of prompts (at least one).
    fn encode(&self, prompts: &[&str]) -> Result<TextFeatures>;
    /// `D`, the per-token feature size (the DiT's `context_in_dim`).
    fn token_dim(&self) -> usize;
    /// `Dv`, the pooled vector size (the DiT's `vec_in_dim`).
    fn pooled_dim(&self) -> usize;
    /// `L`, the number of token features per prompt.
    fn max_len(&self) -> usize;
}

/// Cuts `prompt` to at most [`MAX_PROMPT_CHARS`] characters; `true` when it was cut.
pub(crate) fn cap_prompt(prompt: &str) -> (&str, bool) {
    match prompt.char_indices().nth(MAX_PROMPT_CHARS) {
        Some((i, _)) => (&prompt[..i], true),
        None => (prompt, false),
    }
}

pub(crate) fn check_prompts(prompts: &[&str]) -> Result<()> {
    if prompts.is_empty() {
        return Err(ModelError::BadInput {
            name: "prompts".into(),
            expected: "at least one prompt".into(),
            found: vec![0],
        });
    }
    Ok(())
}

// ------------------------------------------------------------------ tokenizers

/// A `tokenizer.json` tokenizer with HF-style truncation (special tokens are kept).
struct Tok {
    inner: Tokenizer,
    max_len: usize,
}

impl Tok {
    fn load(path: &Path, max_len: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(ModelError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such tokenizer file"),
            ));
        }
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| ModelError::InvalidConfig(format!("tokenizer {}: {e}", path.display())))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| ModelError::InvalidConfig(format!("tokenizer {}: {e}", path.display())))?;
        Ok(Self { inner, max_len })
    }

    /// Token ids (at most `max_len`, special tokens included) and whether it was truncated.
    fn ids(&self, prompt: &str) -> Result<(Vec<u32>, bool)> {
        let (text, cut) = cap_prompt(prompt);
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| ModelError::InvalidConfig(format!("tokenizer: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        let truncated = cut || !enc.get_overflowing().is_empty() || ids.len() > self.max_len;
        ids.truncate(self.max_len);
        Ok((ids, truncated))
    }

    fn id_of(&self, tokens: &[&str]) -> Option<u32> {
        tokens.iter().find_map(|t| self.inner.token_to_id(t))
    }
}

// ------------------------------------------------------------------ configs

/// The text part of a Hugging Face CLIP `config.json` (either a `CLIPTextModel` config or a
/// full `CLIPModel` one with a `text_config` section).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct HfClipTextConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: String,
    projection_dim: usize,
}

impl Default for HfClipTextConfig {
    fn default() -> Self {
        // CLIP-L/14's text tower (openai/clip-vit-large-patch14).
        Self {
            vocab_size: 49408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            projection_dim: 768,
        }
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let s = crate::fsutil::read_text_limited(path, crate::limits::MAX_CONFIG_BYTES)
        .map_err(|e| ModelError::io(path, e))?;
    Ok(serde_json::from_str(&s)?)
}

fn clip_config(path: &Path) -> Result<ClipTextConfig> {
    let mut v = read_json(path)?;
    if let Some(t) = v.get_mut("text_config") {
        v = t.take();
    }
    let c: HfClipTextConfig = serde_json::from_value(v)?;
    if c.hidden_act != "quick_gelu" {
        return Err(ModelError::InvalidConfig(format!(
            "{}: CLIP hidden_act `{}` is not supported (only quick_gelu)",
            path.display(),
            c.hidden_act
        )));
    }
    if c.num_attention_heads == 0
        || c.hidden_size % c.num_attention_heads != 0
        || c.max_position_embeddings < 2
    {
        return Err(ModelError::InvalidConfig(format!(
            "{}: CLIP hidden_size {} must be a multiple of num_attention_heads {}, and \
             max_position_embeddings >= 2",
            path.display(),
            c.hidden_size,
            c.num_attention_heads
        )));
    }
    Ok(ClipTextConfig {
        vocab_size: c.vocab_size,
        embed_dim: c.hidden_size,
        activation: Activation::QuickGelu,
        intermediate_size: c.intermediate_size,
        max_position_embeddings: c.max_position_embeddings,
        pad_with: None,
        num_hidden_layers: c.num_hidden_layers,
        num_attention_heads: c.num_attention_heads,
        projection_dim: c.projection_dim,
    })
}

fn t5_config(path: &Path) -> Result<T5Config> {
    let s = crate::fsutil::read_text_limited(path, crate::limits::MAX_CONFIG_BYTES)
        .map_err(|e| ModelError::io(path, e))?;
    let c: T5Config = serde_json::from_str(&s)?;
    if c.num_heads == 0 || c.d_model == 0 || c.num_layers == 0 {
        return Err(ModelError::InvalidConfig(format!(
            "{}: T5 d_model, num_heads and num_layers must be positive",
            path.display()
        )));
    }
    Ok(c)
}

/// All `*.safetensors` files of `dir` (sorted: shards load together).
fn safetensors_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(ModelError::io(
            &dir.join("model.safetensors"),
            std::io::Error::new(std::io::ErrorKind::NotFound, "no *.safetensors weights"),
        ));
    }
    Ok(v)
}

// ------------------------------------------------------------------ FluxText

/// Options of [`FluxText::load_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FluxTextOptions {
    /// T5 sequence length: prompts are truncated to it and padded to it (BFL: 512 for dev,
    /// 256 for schnell).
    pub t5_max_len: usize,
}

impl Default for FluxTextOptions {
    fn default() -> Self {
        Self { t5_max_len: 512 }
    }
}

/// FLUX's text encoders: T5-XXL (token features) and CLIP-L's text tower (pooled vector).
///
/// Directory layout read by [`FluxText::load`]:
/// ```text
/// DIR/t5/config.json      Hugging Face T5 config (google/t5-v1_1-xxl)
/// DIR/t5/tokenizer.json
/// DIR/t5/*.safetensors    encoder weights (`shared.weight`, `encoder.block.N...`), shards ok
/// DIR/clip/config.json    CLIPTextModel or CLIPModel config (openai/clip-vit-large-patch14)
/// DIR/clip/tokenizer.json
/// DIR/clip/*.safetensors  `text_model.embeddings...` (a full CLIPModel file works too)
/// ```
/// As in BFL's reference, T5 ids are padded with the pad id (0) to `t5_max_len` and run
/// without an attention mask; the pooled vector is CLIP's final-layer-normed state at the
/// end-of-text token (77 tokens at most).
pub struct FluxText {
    t5: Mutex<T5EncoderModel>,
    clip: ClipTextTransformer,
    t5_tok: Tok,
    clip_tok: Tok,
    t5_dim: usize,
    clip_dim: usize,
    t5_pad: u32,
    clip_pad: u32,
    t5_vocab_rows: usize,
    clip_vocab_rows: usize,
    device: Device,
    dtype: DType,
}

impl std::fmt::Debug for FluxText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluxText")
            .field("t5_dim", &self.t5_dim)
            .field("clip_dim", &self.clip_dim)
            .field("t5_max_len", &self.t5_tok.max_len)
            .field("clip_max_len", &self.clip_tok.max_len)
            .field("dtype", &self.dtype)
            .finish()
    }
}

impl FluxText {
    /// Loads T5 and CLIP from `dir` (layout in the type docs), T5 length 512.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with(dir, device, dtype, &FluxTextOptions::default())
    }

    /// Loads T5 and CLIP from `dir` with explicit options.
    pub fn load_with(
        dir: &Path,
        device: &Device,
        dtype: DType,
        opts: &FluxTextOptions,
    ) -> Result<Self> {
        check_dtype(device, dtype)?;
        if opts.t5_max_len < 1 {
            return Err(ModelError::InvalidConfig(
                "t5_max_len must be positive".into(),
            ));
        }
        let t5_dir = dir.join("t5");
        let clip_dir = dir.join("clip");

        let t5_cfg = t5_config(&t5_dir.join("config.json"))?;
        let t5_tok = Tok::load(&t5_dir.join("tokenizer.json"), opts.t5_max_len)?;
        let t5_files = safetensors_in(&t5_dir)?;
        let t5 = build_checked(&t5_files, device, dtype, |vb| {
            T5EncoderModel::load(vb, &t5_cfg)
        })?;

        let clip_cfg = clip_config(&clip_dir.join("config.json"))?;
        let clip_tok = Tok::load(
            &clip_dir.join("tokenizer.json"),
            clip_cfg.max_position_embeddings,
        )?;
        let clip_files = safetensors_in(&clip_dir)?;
        let clip = build_checked(&clip_files, device, dtype, |vb: VarBuilder| {
            let vb = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
                vb.pp("text_model")
            } else {
                vb
            };
            ClipTextTransformer::new(vb, &clip_cfg)
        })?;

        let t5_pad = t5_cfg.pad_token_id as u32;
        let clip_pad = clip_tok
            .id_of(&["<|endoftext|>", "</s>", "<pad>"])
            .unwrap_or(0);
        if clip_pad as usize >= clip_cfg.vocab_size {
            return Err(ModelError::InvalidConfig(format!(
                "CLIP pad id {clip_pad} is outside the vocabulary ({})",
                clip_cfg.vocab_size
            )));
        }
        Ok(Self {
            t5: Mutex::new(t5),
            clip,
            t5_tok,
            clip_tok,
            t5_dim: t5_cfg.d_model,
            clip_dim: clip_cfg.embed_dim,
            t5_pad,
            clip_pad,
            t5_vocab_rows: t5_cfg.vocab_size,
            clip_vocab_rows: clip_cfg.vocab_size,
            device: device.clone(),
            dtype,
        })
    }

    /// The compute dtype (the outputs have it too).
    pub fn dtype(&self) -> DType {
        self.dtype
    }
}

/// Replaces ids outside `vocab` (a tokenizer bigger than the model's table) by `fallback`.
fn clamp_ids(ids: &mut [u32], vocab: usize, fallback: u32) {
    for id in ids.iter_mut() {
        if *id as usize >= vocab {
            *id = fallback;
        }
    }
}

impl TextEncoder for FluxText {
    fn encode(&self, prompts: &[&str]) -> Result<TextFeatures> {
        check_prompts(prompts)?;
        let b = prompts.len();
        let mut truncated = false;

        // T5: pad every prompt to max_len.
        let l = self.t5_tok.max_len;
        let mut t5_ids = Vec::with_capacity(b * l);
        let t5_vocab = self.t5_vocab();
        for p in prompts {
            let (mut ids, cut) = self.t5_tok.ids(p)?;
            truncated |= cut;
            clamp_ids(&mut ids, t5_vocab, self.t5_pad);
            ids.resize(l, self.t5_pad);
            t5_ids.extend(ids);
        }
        let t5_ids = Tensor::from_vec(t5_ids, (b, l), &self.device)?;
        let tokens = {
            let mut t5 = self
                .t5
                .lock()
                .map_err(|_| ModelError::InvalidConfig("T5 lock poisoned".into()))?;
            t5.forward_dt(&t5_ids, Some(self.dtype))?
        };

        // CLIP: pad to the longest prompt; pool at each prompt's last token (end of text).
        let mut clip_rows = Vec::with_capacity(b);
        for p in prompts {
            let (mut ids, cut) = self.clip_tok.ids(p)?;
            truncated |= cut;
            if ids.is_empty() {
                ids.push(self.clip_pad);
            }
            clamp_ids(&mut ids, self.clip_vocab(), self.clip_pad);
            clip_rows.push(ids);
        }
        let cl = clip_rows.iter().map(|r| r.len()).max().unwrap_or(1);
        let last: Vec<usize> = clip_rows.iter().map(|r| r.len() - 1).collect();
        let flat: Vec<u32> = clip_rows
            .into_iter()
            .flat_map(|mut r| {
                r.resize(cl, self.clip_pad);
                r
            })
            .collect();
        let clip_ids = Tensor::from_vec(flat, (b, cl), &self.device)?;
        let hidden = self.clip.forward_with_mask(&clip_ids, usize::MAX)?;
        let pooled = last
            .iter()
            .enumerate()
            .map(|(i, &j)| hidden.i((i, j)).and_then(|t| t.unsqueeze(0)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let pooled = Tensor::cat(&pooled, 0)?;
        Ok(TextFeatures {
            tokens,
            pooled,
            truncated,
        })
    }

    fn token_dim(&self) -> usize {
        self.t5_dim
    }

    fn pooled_dim(&self) -> usize {
        self.clip_dim
    }

    fn max_len(&self) -> usize {
        self.t5_tok.max_len
    }
}

impl FluxText {
    fn t5_vocab(&self) -> usize {
        // The embedding table's rows (T5 pads its vocabulary past the tokenizer's).
        self.t5_vocab_rows
    }
    fn clip_vocab(&self) -> usize {
        self.clip_vocab_rows
    }
}
