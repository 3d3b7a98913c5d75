//! `TinyText`: our small text encoder for the tiny preset.
//!
//! * **Tokens.** Words are the maximal runs of Unicode alphanumeric characters, lower-cased;
//!   everything else separates them. A word outside the vocabulary becomes `<unk>`. Every
//!   prompt starts with `<bos>`; the sequence is padded with `<pad>` to `max_len` (and
//!   truncated to it, which [`TextFeatures::truncated`] reports).
//! * **Network.** Token + learned position embeddings, `layers` pre-LayerNorm transformer
//!   blocks (multi-head self-attention with padding masked out, GELU MLP), a final LayerNorm,
//!   then a linear map to `token_dim` for every position (zero at padding) and a linear map of
//!   the `<bos>` state to `pooled_dim`.
//! * Built only from differentiable candle ops (`candle_nn::ops::softmax`, hand-written layer
//!   norm): the trainer trains it together with the base DiT, and every parameter gets its
//!   gradient.

use super::autoencoder::{build_checked, build_checked_backend};
use super::device::{check_dtype, device_name};
use super::error::{ModelError, Result};
use super::layers::Lin;
use super::text::{cap_prompt, check_prompts, TextEncoder, TextFeatures};
use super::tiny_ae::{fetch_params, save_params, seeded_params, varmap_from, InitKind, ParamSpec};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The padding token (vocabulary index 0).
pub const PAD: &str = "<pad>";
/// The unknown-word token (index 1).
pub const UNK: &str = "<unk>";
/// The start token (index 2); its final state gives the pooled vector.
pub const BOS: &str = "<bos>";
const PAD_ID: u32 = 0;
const UNK_ID: u32 = 1;
const BOS_ID: u32 = 2;
const LN_EPS: f64 = 1e-5;

/// Architecture and vocabulary of a [`TinyText`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinyTextConfig {
    /// The vocabulary: `<pad>`, `<unk>`, `<bos>`, then lower-case words.
    pub vocab: Vec<String>,
    /// Width of the transformer.
    pub dim: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads (`dim` must be a multiple).
    pub heads: usize,
    /// MLP hidden width as a multiple of `dim`.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: usize,
    /// Token positions per prompt, `<bos>` included (`L` of the output).
    pub max_len: usize,
    /// Per-token output size: the DiT's `context_in_dim`.
    pub token_dim: usize,
    /// Pooled output size: the DiT's `vec_in_dim`.
    pub pooled_dim: usize,
}

fn default_mlp_ratio() -> usize {
    4
}

impl Default for TinyTextConfig {
    /// Dimensions of the tiny preset (`DitConfig::tiny()`: `context_in_dim` = `vec_in_dim` =
    /// 128) with only the special tokens as vocabulary; build the real one with
    /// [`TinyText::build_vocab`].
    fn default() -> Self {
        Self {
            vocab: vec![PAD.into(), UNK.into(), BOS.into()],
            dim: 128,
            layers: 2,
            heads: 4,
            mlp_ratio: 4,
            max_len: 32,
            token_dim: 128,
            pooled_dim: 128,
        }
    }
}

impl TinyTextConfig {
    /// The default dimensions with the given vocabulary.
    pub fn with_vocab(vocab: Vec<String>) -> Self {
        Self {
            vocab,
            ..Self::default()
        }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidConfig(format!("tiny text encoder: {m}")));
        if self.vocab.len() < 3
            || self.vocab[0] != PAD
            || self.vocab[1] != UNK
            || self.vocab[2] != BOS
        {
            return bad(format!(
                "the vocabulary must start with `{PAD}`, `{UNK}`, `{BOS}`"
            ));
        }
        if self.vocab.len() > u32::MAX as usize {
            return bad("vocabulary too large".into());
        }
        if self.dim == 0 || self.heads == 0 || self.dim % self.heads != 0 {
            return bad(format!(
                "dim {} must be a positive multiple of heads {}",
                self.dim, self.heads
            ));
        }
        if self.max_len < 2 || self.token_dim == 0 || self.pooled_dim == 0 || self.mlp_ratio == 0 {
            return bad("max_len >= 2 and positive token_dim, pooled_dim, mlp_ratio".into());
        }
        use crate::limits::{at_most, MAX_BLOCKS, MAX_WIDTH};
        for (field, v, limit) in [
            ("dim", self.dim, MAX_WIDTH),
            ("heads", self.heads, MAX_WIDTH),
            ("token_dim", self.token_dim, MAX_WIDTH),
            ("pooled_dim", self.pooled_dim, MAX_WIDTH),
            (
                "dim x mlp_ratio",
                self.dim.saturating_mul(self.mlp_ratio),
                MAX_WIDTH,
            ),
            ("max_len", self.max_len, MAX_WIDTH),
            ("layers", self.layers, MAX_BLOCKS),
        ] {
            if let Err(e) = at_most(field, v, limit) {
                return bad(e);
            }
        }
        Ok(())
    }

    pub(crate) fn param_specs(&self) -> Vec<ParamSpec> {
        let d = self.dim;
        let mut v = Vec::new();
        let mut push = |name: String, shape: Vec<usize>, init: InitKind| {
            v.push(ParamSpec { name, shape, init })
        };
        push(
            "tok_emb.weight".into(),
            vec![self.vocab.len(), d],
            InitKind::Normal(0.1),
        );
        push(
            TinyText::POSITIONS.into(),
            vec![self.max_len, d],
            InitKind::Normal(0.02),
        );
        let lin = |push: &mut dyn FnMut(String, Vec<usize>, InitKind),
                   p: &str,
                   inn: usize,
                   out: usize,
                   gain: f64| {
            push(
                format!("{p}.weight"),
                vec![out, inn],
                InitKind::Uniform(gain * (3.0 / inn as f64).sqrt()),
            );
            push(format!("{p}.bias"), vec![out], InitKind::Const(0.0));
        };
        let ln = |push: &mut dyn FnMut(String, Vec<usize>, InitKind), p: &str| {
            push(format!("{p}.weight"), vec![d], InitKind::Const(1.0));
            push(format!("{p}.bias"), vec![d], InitKind::Const(0.0));
        };
        let hid = d * self.mlp_ratio;
        for l in 0..self.layers {
            let p = format!("layers.{l}");
            ln(&mut push, &format!("{p}.ln1"));
            lin(&mut push, &format!("{p}.attn.qkv"), d, 3 * d, 1.0);
            lin(&mut push, &format!("{p}.attn.proj"), d, d, 0.5);
            ln(&mut push, &format!("{p}.ln2"));
            lin(&mut push, &format!("{p}.mlp.fc1"), d, hid, 1.0);
            lin(&mut push, &format!("{p}.mlp.fc2"), hid, d, 0.5);
        }
        ln(&mut push, "ln_f");
        lin(&mut push, "token_out", d, self.token_dim, 1.0);
        lin(&mut push, "pooled_out", d, self.pooled_dim, 1.0);
        v
    }
}

/// The words of a text: maximal runs of alphanumeric characters, lower-cased.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
}

#[derive(Debug, Clone)]
struct Ln {
    w: Tensor,
    b: Tensor,
}

impl Ln {
    /// Layer norm over the last dim from primitive (differentiable) ops.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + LN_EPS)?.sqrt()?)?;
        Ok(xn.broadcast_mul(&self.w)?.broadcast_add(&self.b)?)
    }
}

#[derive(Debug, Clone)]
struct Block {
    ln1: Ln,
    qkv: Lin,
    proj: Lin,
    ln2: Ln,
    fc1: Lin,
    fc2: Lin,
}

/// Our small word-level transformer text encoder; see the module docs.
pub struct TinyText {
    cfg: TinyTextConfig,
    index: HashMap<String, u32>,
    tok_emb: Tensor,
    pos_emb: Tensor,
    blocks: Vec<Block>,
    ln_f: Ln,
    token_out: Lin,
    pooled_out: Lin,
    params: HashMap<String, Tensor>,
    device: Device,
}

impl std::fmt::Debug for TinyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TinyText")
            .field("vocab", &self.cfg.vocab.len())
            .field("dim", &self.cfg.dim)
            .field("layers", &self.cfg.layers)
            .field("max_len", &self.cfg.max_len)
            .field("device", &device_name(&self.device))
            .finish()
    }
}

impl TinyText {
    /// The learnt position embeddings' tensor, `[max_len, dim]`.
    pub const POSITIONS: &'static str = "pos_emb.weight";

    /// The vocabulary of `texts`: the special tokens, then every word seen at least
    /// `min_count` times, most frequent first (ties alphabetical), so it is deterministic.
    pub fn build_vocab<S: AsRef<str>>(texts: &[S], min_count: usize) -> Vec<String> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for t in texts {
            let (t, _) = cap_prompt(t.as_ref());
            for w in words(t) {
                *counts.entry(w).or_insert(0) += 1;
            }
        }
        let mut ws: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(w, c)| *c >= min_count.max(1) && w != PAD && w != UNK && w != BOS)
            .collect();
        ws.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut v = vec![PAD.to_string(), UNK.to_string(), BOS.to_string()];
        v.extend(ws.into_iter().map(|(w, _)| w));
        v
    }

    /// Builds the model from a var builder: `VarMap`-backed for training (missing parameters
    /// are created with their initialisation) or loaded tensors.
    pub fn new(vb: VarBuilder, cfg: &TinyTextConfig) -> Result<Self> {
        cfg.validate()?;
        if vb.dtype() != DType::F32 {
            return Err(ModelError::UnsupportedDtype {
                dtype: vb.dtype(),
                device: device_name(vb.device()),
                reason: "the tiny text encoder runs in f32".into(),
            });
        }
        let params = fetch_params(&vb, &cfg.param_specs())?;
        Self::from_params(params, cfg, vb.device())
    }

    /// A model with seeded random weights (plain tensors).
    pub fn random(cfg: &TinyTextConfig, seed: u64, device: &Device) -> Result<Self> {
        cfg.validate()?;
        Self::from_params(
            seeded_params(&cfg.param_specs(), seed, device)?,
            cfg,
            device,
        )
    }

    /// Seeded trainable parameters: build the model with `VarBuilder::from_varmap` and give
    /// `varmap.all_vars()` to the optimiser.
    pub fn seeded_varmap(cfg: &TinyTextConfig, seed: u64, device: &Device) -> Result<VarMap> {
        cfg.validate()?;
        varmap_from(&seeded_params(&cfg.param_specs(), seed, device)?)
    }

    /// Loads weights written by [`TinyText::save`]; a missing or mis-shaped tensor is named.
    pub fn load(path: &Path, cfg: &TinyTextConfig, device: &Device) -> Result<Self> {
        cfg.validate()?;
        check_dtype(device, DType::F32)?;
        let specs = cfg.param_specs();
        let params = build_checked(&[path.to_path_buf()], device, DType::F32, |vb| {
            fetch_params(&vb, &specs)
        })?;
        Self::from_params(params, cfg, device)
    }

    /// Builds the model from an in-memory name -> tensor map (checked like [`TinyText::load`]).
    pub fn from_tensors(
        tensors: HashMap<String, Tensor>,
        cfg: &TinyTextConfig,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let specs = cfg.param_specs();
        let params = build_checked_backend(Box::new(tensors), device, DType::F32, |vb| {
            fetch_params(&vb, &specs)
        })?;
        Self::from_params(params, cfg, device)
    }

    fn from_params(
        params: HashMap<String, Tensor>,
        cfg: &TinyTextConfig,
        device: &Device,
    ) -> Result<Self> {
        let g = |n: &str| {
            params.get(n).cloned().ok_or(ModelError::MissingTensor {
                name: n.to_string(),
                expected: vec![],
            })
        };
        let lin = |p: &str| -> Result<Lin> {
            Lin::get(&params, p).map_err(|name| ModelError::MissingTensor {
                name,
                expected: vec![],
            })
        };
        let ln = |p: &str| -> Result<Ln> {
            Ok(Ln {
                w: g(&format!("{p}.weight"))?,
                b: g(&format!("{p}.bias"))?,
            })
        };
        let mut blocks = Vec::with_capacity(cfg.layers);
        for l in 0..cfg.layers {
            let p = format!("layers.{l}");
            blocks.push(Block {
                ln1: ln(&format!("{p}.ln1"))?,
                qkv: lin(&format!("{p}.attn.qkv"))?,
                proj: lin(&format!("{p}.attn.proj"))?,
                ln2: ln(&format!("{p}.ln2"))?,
                fc1: lin(&format!("{p}.mlp.fc1"))?,
                fc2: lin(&format!("{p}.mlp.fc2"))?,
            });
        }
        let index = cfg
            .vocab
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Ok(Self {
            index,
            tok_emb: g("tok_emb.weight")?,
            pos_emb: g(Self::POSITIONS)?,
            blocks,
            ln_f: ln("ln_f")?,
            token_out: lin("token_out")?,
            pooled_out: lin("pooled_out")?,
            params,
            cfg: cfg.clone(),
            device: device.clone(),
        })
    }

    /// Writes the weights as safetensors (the vocabulary lives in the config).
    pub fn save(&self, path: &Path) -> Result<()> {
        save_params(&self.params, path)
    }

    /// The configuration (with the vocabulary).
    pub fn config(&self) -> &TinyTextConfig {
        &self.cfg
    }

    /// All parameters by name.
    pub fn parameters(&self) -> &HashMap<String, Tensor> {
        &self.params
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.params.values().map(|t| t.elem_count()).sum()
    }

    /// Token ids of a prompt (`<bos>` first, no padding, at most `max_len`) and whether it
    /// was truncated.
    pub fn tokenize(&self, prompt: &str) -> (Vec<u32>, bool) {
        let (text, mut truncated) = cap_prompt(prompt);
        let mut ids = vec![BOS_ID];
        for w in words(text) {
            if ids.len() == self.cfg.max_len {
                truncated = true;
                break;
            }
            ids.push(*self.index.get(&w).unwrap_or(&UNK_ID));
        }
        (ids, truncated)
    }
}

impl TextEncoder for TinyText {
    fn encode(&self, prompts: &[&str]) -> Result<TextFeatures> {
        check_prompts(prompts)?;
        let (b, l, d) = (prompts.len(), self.cfg.max_len, self.cfg.dim);
        let (h, hd) = (self.cfg.heads, self.cfg.dim / self.cfg.heads);
        let mut ids = Vec::with_capacity(b * l);
        let mut mask = Vec::with_capacity(b * l);
        let mut truncated = false;
        for p in prompts {
            let (mut t, cut) = self.tokenize(p);
            truncated |= cut;
            mask.extend((0..l).map(|i| if i < t.len() { 1f32 } else { 0f32 }));
            t.resize(l, PAD_ID);
            ids.extend(t);
        }
        let ids = Tensor::from_vec(ids, b * l, &self.device)?;
        let mask = Tensor::from_vec(mask, (b, l), &self.device)?;
        // Additive key mask: 0 for tokens, -1e9 for padding.
        let key_bias = ((mask.ones_like()? - &mask)? * -1e9)?.reshape((b, 1, 1, l))?;

        let x = self.tok_emb.index_select(&ids, 0)?.reshape((b, l, d))?;
        let mut x = x.broadcast_add(&self.pos_emb)?;
        let scale = 1.0 / (hd as f64).sqrt();
        for blk in &self.blocks {
            let y = blk.ln1.forward(&x)?;
            let qkv = blk
                .qkv
                .forward_broadcast(&y)?
                .reshape((b, l, 3, h, hd))?
                .permute((2, 0, 3, 1, 4))?;
            let q = qkv.get(0)?.contiguous()?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&key_bias)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let o = att.matmul(&v)?.permute((0, 2, 1, 3))?.reshape((b, l, d))?;
            x = (x + blk.proj.forward_broadcast(&o)?)?;
            let y = blk.ln2.forward(&x)?;
            let y = blk
                .fc2
                .forward_broadcast(&blk.fc1.forward_broadcast(&y)?.gelu()?)?;
            x = (x + y)?;
        }
        let x = self.ln_f.forward(&x)?;
        let tokens = self
            .token_out
            .forward_broadcast(&x)?
            .broadcast_mul(&mask.unsqueeze(2)?)?;
        let pooled = self
            .pooled_out
            .forward_broadcast(&x.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?)?;
        Ok(TextFeatures {
            tokens,
            pooled,
            truncated,
        })
    }

    fn token_dim(&self) -> usize {
        self.cfg.token_dim
    }

    fn pooled_dim(&self) -> usize {
        self.cfg.pooled_dim
    }

    fn max_len(&self) -> usize {
        self.cfg.max_len
    }
}
