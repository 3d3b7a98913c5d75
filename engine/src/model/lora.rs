//! Named LoRA sets on the q, k and v projections of the condition stream.
//!
//! A set holds, for every block, low-rank adapters `ΔW = (alpha/rank) · B·A` for the q, k and v
//! projections that the condition tokens go through (double blocks: `img_attn.qkv`; single
//! blocks: the q/k/v rows of `linear1`). Text and image tokens never see a LoRA.
//!
//! * `A` (`rank x hidden`) starts small (uniform in `±1/sqrt(hidden)`, seeded) and `B`
//!   (`hidden x rank`) starts at zero, so a fresh set leaves the output exactly unchanged.
//! * The q adapter of the very last block is not created: the condition queries of the last
//!   layer only feed the condition rows' output, which nothing reads, so it could never get a
//!   gradient.
//! * Parameters are plain tensors (cheap inference) until the trainer calls
//!   [`LoraSets::make_trainable`], which turns them into `Var`s and returns them.

use super::config::DitConfig;
use super::error::{ModelError, Result};
use candle_core::{DType, Device, Tensor, Var};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Which projection an adapter sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoraTarget {
    /// The query projection.
    Q,
    /// The key projection.
    K,
    /// The value projection.
    V,
}

impl LoraTarget {
    /// All targets, in qkv order.
    pub const ALL: [LoraTarget; 3] = [LoraTarget::Q, LoraTarget::K, LoraTarget::V];

    /// Short name: `q`, `k` or `v`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoraTarget::Q => "q",
            LoraTarget::K => "k",
            LoraTarget::V => "v",
        }
    }

    /// Parses `q`, `k` or `v`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "q" => Some(LoraTarget::Q),
            "k" => Some(LoraTarget::K),
            "v" => Some(LoraTarget::V),
            _ => None,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            LoraTarget::Q => 0,
            LoraTarget::K => 1,
            LoraTarget::V => 2,
        }
    }
}

/// Hyper-parameters of a new LoRA set.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    /// Rank of every adapter.
    pub rank: usize,
    /// Alpha; the adapter output is scaled by `alpha / rank`.
    pub alpha: f64,
    /// Projections that get an adapter.
    pub targets: Vec<LoraTarget>,
    /// Seed of the `A` initialisation.
    pub seed: u64,
}

impl Default for LoraSpec {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 16.0,
            targets: LoraTarget::ALL.to_vec(),
            seed: 0,
        }
    }
}

/// A parameter that is either frozen (plain tensor) or trainable (`Var`).
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Frozen(Tensor),
    Train(Var),
}

impl Param {
    pub(crate) fn tensor(&self) -> &Tensor {
        match self {
            Param::Frozen(t) => t,
            Param::Train(v) => v.as_tensor(),
        }
    }
}

/// One adapter: `A` (rank x in) and `B` (out x rank).
#[derive(Debug, Clone)]
pub(crate) struct LoraPair {
    pub(crate) a: Param,
    pub(crate) b: Param,
}

/// The adapters of one block, indexed by [`LoraTarget::index`].
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerLora {
    pub(crate) adapters: [Option<LoraPair>; 3],
}

/// One named LoRA set.
#[derive(Debug, Clone)]
pub struct LoraSet {
    name: String,
    rank: usize,
    alpha: f64,
    targets: Vec<LoraTarget>,
    /// `depth` double-block entries, then `depth_single_blocks` single-block entries.
    pub(crate) layers: Vec<LayerLora>,
    /// Number of double blocks (for tensor names).
    depth: usize,
    trainable: bool,
}

impl LoraSet {
    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Rank of its adapters.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// Its alpha.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
    /// The targeted projections.
    pub fn targets(&self) -> &[LoraTarget] {
        &self.targets
    }
    /// Whether its parameters are currently `Var`s.
    pub fn is_trainable(&self) -> bool {
        self.trainable
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.named_params()
            .iter()
            .map(|(_, p)| p.tensor().elem_count())
            .sum()
    }

    /// Tensor names in the safetensors file, with their parameter, in a stable order.
    pub(crate) fn named_params(&self) -> Vec<(String, &Param)> {
        let mut out = Vec::new();
        for (li, layer) in self.layers.iter().enumerate() {
            for t in LoraTarget::ALL {
                if let Some(pair) = &layer.adapters[t.index()] {
                    out.push((
                        format!("{}.lora_A", layer_prefix(self.depth, li, t)),
                        &pair.a,
                    ));
                    out.push((
                        format!("{}.lora_B", layer_prefix(self.depth, li, t)),
                        &pair.b,
                    ));
                }
            }
        }
        out
    }
}

/// File-name prefix of the adapter of block `li` (double blocks first) on `t`.
fn layer_prefix(depth: usize, li: usize, t: LoraTarget) -> String {
    if li < depth {
        format!("double_blocks.{li}.cond_lora.{}", t.as_str())
    } else {
        format!("single_blocks.{}.cond_lora.{}", li - depth, t.as_str())
    }
}

/// All loaded LoRA sets of one base model, with at most one active.
#[derive(Debug, Clone)]
pub struct LoraSets {
    base_hash: String,
    hidden: usize,
    depth: usize,
    depth_single: usize,
    device: Device,
    dtype: DType,
    sets: HashMap<String, LoraSet>,
    active: Option<String>,
}

const META_FORMAT: &str = "skeleguide.lora.format";

impl LoraSets {
    /// An empty collection for a base model with this config.
    pub fn new(cfg: &DitConfig, device: &Device, dtype: DType) -> Self {
        Self {
            base_hash: cfg.hash(),
            hidden: cfg.hidden_size,
            depth: cfg.depth,
            depth_single: cfg.depth_single_blocks,
            device: device.clone(),
            dtype,
            sets: HashMap::new(),
            active: None,
        }
    }

    /// Config hash of the base model these sets belong to.
    pub fn base_hash(&self) -> &str {
        &self.base_hash
    }

    /// Names of the loaded sets, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.sets.keys().cloned().collect();
        v.sort();
        v
    }

    /// A set by name.
    pub fn get(&self, name: &str) -> Option<&LoraSet> {
        self.sets.get(name)
    }

    /// Whether a set is loaded.
    pub fn contains(&self, name: &str) -> bool {
        self.sets.contains_key(name)
    }

    /// The active set's name.
    pub fn active_name(&self) -> Option<&str> {
        self.active.as_deref()
    }

    /// The active set.
    pub fn active(&self) -> Option<&LoraSet> {
        self.active.as_ref().and_then(|n| self.sets.get(n))
    }

    /// Activates a set (O(1), nothing is reloaded). `None` runs the condition stream on the
    /// base weights only.
    pub fn set_active(&mut self, name: Option<&str>) -> Result<()> {
        match name {
            None => self.active = None,
            Some(n) => {
                if !self.sets.contains_key(n) {
                    return Err(ModelError::UnknownLoraSet(n.to_string()));
                }
                self.active = Some(n.to_string());
            }
        }
        Ok(())
    }

    fn total_layers(&self) -> usize {
        self.depth + self.depth_single
    }

    /// Whether block `li` (double blocks first) gets an adapter on `t`.
    fn has_slot(&self, li: usize, t: LoraTarget) -> bool {
        !(t == LoraTarget::Q && li + 1 == self.total_layers())
    }

    /// Adds a freshly initialised set (A small, B zero: the output is unchanged).
    pub fn add(&mut self, name: &str, spec: &LoraSpec) -> Result<()> {
        validate_name(name)?;
        if self.sets.contains_key(name) {
            return Err(ModelError::DuplicateLoraSet(name.to_string()));
        }
        if spec.rank == 0 || spec.rank > self.hidden {
            return Err(ModelError::InvalidLora {
                name: name.into(),
                reason: format!("rank {} must be in 1..={}", spec.rank, self.hidden),
            });
        }
        if !(spec.alpha.is_finite()) || spec.alpha <= 0.0 {
            return Err(ModelError::InvalidLora {
                name: name.into(),
                reason: format!("alpha {} must be > 0", spec.alpha),
            });
        }
        let mut targets = spec.targets.clone();
        targets.sort();
        targets.dedup();
        if targets.is_empty() {
            return Err(ModelError::InvalidLora {
                name: name.into(),
                reason: "no targets".into(),
            });
        }
        let mut rng = SplitMix64(spec.seed ^ crate::hash::fnv1a(name.as_bytes()));
        let bound = 1.0 / (self.hidden as f64).sqrt();
        let (h, r) = (self.hidden, spec.rank);
        let mut layers = Vec::with_capacity(self.total_layers());
        for li in 0..self.total_layers() {
            let mut layer = LayerLora::default();
            for t in &targets {
                if !self.has_slot(li, *t) {
                    continue;
                }
                let a: Vec<f32> = (0..r * h)
                    .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                    .collect();
                let a = Tensor::from_vec(a, (r, h), &self.device)?.to_dtype(self.dtype)?;
                let b = Tensor::zeros((h, r), self.dtype, &self.device)?;
                layer.adapters[t.index()] = Some(LoraPair {
                    a: Param::Frozen(a),
                    b: Param::Frozen(b),
                });
            }
            layers.push(layer);
        }
        self.sets.insert(
            name.to_string(),
            LoraSet {
                name: name.to_string(),
                rank: r,
                alpha: spec.alpha,
                targets,
                layers,
                depth: self.depth,
                trainable: false,
            },
        );
        Ok(())
    }

    /// Removes a set (deactivating it when it was active).
    pub fn remove(&mut self, name: &str) -> Result<LoraSet> {
        let set = self
            .sets
            .remove(name)
            .ok_or_else(|| ModelError::UnknownLoraSet(name.to_string()))?;
        if self.active.as_deref() == Some(name) {
            self.active = None;
        }
        Ok(set)
    }

    fn set_mut(&mut self, name: &str) -> Result<&mut LoraSet> {
        self.sets
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownLoraSet(name.to_string()))
    }

    /// Makes a set trainable: its tensors become `Var`s (the same values), which are returned
    /// in a stable order (A then B of each adapter, block by block). Calling it again returns
    /// the same `Var`s. Base weights are never trainable.
    pub fn make_trainable(&mut self, name: &str) -> Result<Vec<Var>> {
        let set = self.set_mut(name)?;
        let mut vars = Vec::new();
        for layer in set.layers.iter_mut() {
            for pair in layer.adapters.iter_mut().flatten() {
                for p in [&mut pair.a, &mut pair.b] {
                    let var = match p {
                        Param::Train(v) => v.clone(),
                        Param::Frozen(t) => Var::from_tensor(t)?,
                    };
                    *p = Param::Train(var.clone());
                    vars.push(var);
                }
            }
        }
        set.trainable = true;
        Ok(vars)
    }

    /// The trainable `Var`s of a set (empty when it is frozen).
    pub fn trainable_vars(&self, name: &str) -> Result<Vec<Var>> {
        let set = self
            .sets
            .get(name)
            .ok_or_else(|| ModelError::UnknownLoraSet(name.to_string()))?;
        let mut vars = Vec::new();
        for layer in &set.layers {
            for pair in layer.adapters.iter().flatten() {
                for p in [&pair.a, &pair.b] {
                    if let Param::Train(v) = p {
                        vars.push(v.clone());
                    }
                }
            }
        }
        Ok(vars)
    }

    /// Freezes a set: its current values become plain tensors again (no graph recording).
    pub fn freeze(&mut self, name: &str) -> Result<()> {
        let set = self.set_mut(name)?;
        for layer in set.layers.iter_mut() {
            for pair in layer.adapters.iter_mut().flatten() {
                for p in [&mut pair.a, &mut pair.b] {
                    if let Param::Train(v) = p {
                        *p = Param::Frozen(v.as_tensor().detach());
                    }
                }
            }
        }
        set.trainable = false;
        Ok(())
    }

    /// The set's tensors by their file names (`double_blocks.N.cond_lora.q.lora_A`, ...).
    pub fn tensors(&self, name: &str) -> Result<Vec<(String, Tensor)>> {
        let set = self
            .sets
            .get(name)
            .ok_or_else(|| ModelError::UnknownLoraSet(name.to_string()))?;
        Ok(set
            .named_params()
            .into_iter()
            .map(|(n, p)| (n, p.tensor().detach()))
            .collect())
    }

    /// Saves a set to a safetensors file (f32) with metadata: name, rank, alpha, targets and
    /// the base config hash. The file is written atomically (temp file + rename).
    pub fn save(&self, name: &str, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let set = self
            .sets
            .get(name)
            .ok_or_else(|| ModelError::UnknownLoraSet(name.to_string()))?;
        let mut data: BTreeMap<String, Tensor> = BTreeMap::new();
        for (n, t) in self.tensors(name)? {
            data.insert(n, t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?);
        }
        let targets: Vec<&str> = set.targets.iter().map(|t| t.as_str()).collect();
        let meta: HashMap<String, String> = [
            (META_FORMAT, "1".to_string()),
            ("name", set.name.clone()),
            ("rank", set.rank.to_string()),
            ("alpha", format!("{}", set.alpha)),
            ("targets", targets.join(",")),
            ("base_config_hash", self.base_hash.clone()),
            ("hidden_size", self.hidden.to_string()),
            ("depth", self.depth.to_string()),
            ("depth_single_blocks", self.depth_single.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let tmp = path.with_extension("safetensors.tmp");
        safetensors::serialize_to_file(data.iter(), Some(meta), &tmp)
            .map_err(|e| ModelError::Safetensors(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))?;
        Ok(())
    }

    /// Loads a set saved by [`LoraSets::save`] and returns its name. A loaded set replaces a
    /// set of the same name (and stays active if it was). Loading a set made for another base
    /// model fails with [`ModelError::LoraBaseMismatch`].
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<String> {
        let path = path.as_ref();
        let pstr = path.display().to_string();
        let bad = |reason: String| ModelError::BadLoraFile {
            path: pstr.clone(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let meta = header
            .metadata()
            .clone()
            .ok_or_else(|| bad("no metadata (not a SkeleGuide LoRA file)".into()))?;
        let get = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| bad(format!("metadata lacks `{k}`")))
        };
        if get(META_FORMAT)? != "1" {
            return Err(bad(format!("unknown format version {}", get(META_FORMAT)?)));
        }
        let name = get("name")?;
        validate_name(&name)?;
        let found_hash = get("base_config_hash")?;
        if found_hash != self.base_hash {
            return Err(ModelError::LoraBaseMismatch {
                path: pstr.clone(),
                set: name,
                expected: self.base_hash.clone(),
                found: found_hash,
            });
        }
        let rank: usize = get("rank")?
            .parse()
            .map_err(|_| bad("rank is not an integer".into()))?;
        let alpha: f64 = get("alpha")?
            .parse()
            .map_err(|_| bad("alpha is not a number".into()))?;
        if rank == 0 || alpha.is_nan() || alpha <= 0.0 {
            return Err(bad(format!("invalid rank {rank} / alpha {alpha}")));
        }
        let mut targets = Vec::new();
        for t in get("targets")?.split(',') {
            targets.push(LoraTarget::parse(t).ok_or_else(|| bad(format!("bad target `{t}`")))?);
        }
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("cannot read tensors: {e}")))?;
        let (h, r) = (self.hidden, rank);
        let mut layers = Vec::with_capacity(self.total_layers());
        for li in 0..self.total_layers() {
            let mut layer = LayerLora::default();
            for t in &targets {
                if !self.has_slot(li, *t) {
                    continue;
                }
                let prefix = layer_prefix(self.depth, li, *t);
                let load = |suffix: &str, shape: [usize; 2]| -> Result<Tensor> {
                    let tname = format!("{prefix}.{suffix}");
                    let view = st.tensor(&tname).map_err(|_| ModelError::MissingTensor {
                        name: tname.clone(),
                        expected: shape.to_vec(),
                    })?;
                    if view.shape() != shape {
                        return Err(ModelError::ShapeMismatch {
                            name: tname,
                            expected: shape.to_vec(),
                            found: view.shape().to_vec(),
                        });
                    }
                    let t = candle_core::safetensors::Load::load(&view, &Device::Cpu)?;
                    Ok(t.to_dtype(self.dtype)?.to_device(&self.device)?)
                };
                let a = load("lora_A", [r, h])?;
                let b = load("lora_B", [h, r])?;
                layer.adapters[t.index()] = Some(LoraPair {
                    a: Param::Frozen(a),
                    b: Param::Frozen(b),
                });
            }
            layers.push(layer);
        }
        self.sets.insert(
            name.clone(),
            LoraSet {
                name: name.clone(),
                rank,
                alpha,
                targets,
                layers,
                depth: self.depth,
                trainable: false,
            },
        );
        Ok(name)
    }
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ModelError::InvalidLora {
            name: name.to_string(),
            reason: "names use ASCII letters, digits, '_' and '-'".into(),
        });
    }
    Ok(())
}

/// A small deterministic PRNG (SplitMix64) for seeded initialisation.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(1e-300);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
