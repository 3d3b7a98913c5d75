//! Training checkpoints: one safetensors file (`OUT/checkpoint.safetensors`) written
//! atomically (temporary sibling + rename). It holds every trainable parameter (`param.NAME`),
//! the AdamW moments (`adam_m.NAME`, `adam_v.NAME`), the weights' moving average when the run
//! keeps one (`ema.NAME`) and, in the metadata, the phase, the step
//! within it, the AdamW step count and the RNG state. Frozen parts (the base, the autoencoder,
//! the text encoder, a finished LoRA set) live in the model directory written at each phase's
//! end, so a checkpoint only needs what is being trained.
//!
//! A compact checkpoint (metadata `moments` = `compact`, the config's `compact_checkpoint`)
//! holds the second moment in bf16 and no first moment, which resuming restarts at zero.

use crate::optim::{AdamW, TrainRng};
use crate::phase::Phase;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const FORMAT: &str = "skeleguide.checkpoint.v1";
/// Metadata value of `moments` in a compact checkpoint (absent: both moments in f32).
const COMPACT: &str = "compact";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
}

fn err(path: &Path, msg: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::File {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

/// Where a run is: the phase (metadata `phase`: `0-ae`, `0-dit`, `1`, `2`, `3`) and the steps
/// done in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub phase: Phase,
    pub step: usize,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub pos: Position,
    pub rng: TrainRng,
    pub adam_t: u64,
    pub tensors: HashMap<String, Tensor>,
    /// Written compact: no first moment, the second in bf16.
    pub compact: bool,
    /// The shaping fields of the config it was written under (see [`shaping_fields`]).
    pub shaping: HashMap<String, String>,
}

pub fn path(out: &Path) -> PathBuf {
    out.join(CHECKPOINT_FILE)
}

/// The largest step count a checkpoint may claim.
pub const MAX_STEP: u64 = 1 << 40;

/// The training settings that shape a run's tensors, as `(field, value)`: a checkpoint records
/// them, and resuming under other values is refused before the first step.
pub fn shaping_fields(cfg: &crate::config::TrainConfig) -> Vec<(String, String)> {
    let ae = cfg
        .phase0
        .as_ref()
        .and_then(|p| p.ae.as_ref())
        .map(|a| serde_json::to_string(a).unwrap_or_default())
        .unwrap_or_default();
    vec![
        ("preset".into(), cfg.preset.clone()),
        ("method".into(), format!("{:?}", cfg.method)),
        ("lora.rank".into(), cfg.lora.rank.to_string()),
        ("phase0.ae".into(), ae),
    ]
}

/// Writes the optimiser's parameters and state, with the `shaping` fields of the run's config;
/// `compact` leaves out the first moment and keeps the second in bf16.
pub fn save(
    out: &Path,
    pos: &Position,
    rng: &TrainRng,
    opt: &AdamW,
    shaping: &[(String, String)],
    compact: bool,
) -> Result<(), CheckpointError> {
    let p = path(out);
    let mut data: Vec<(String, Tensor)> = Vec::with_capacity(opt.slots.len() * 3);
    let host = |t: &Tensor, dtype: DType| -> Result<Tensor, CheckpointError> {
        t.to_dtype(dtype)
            .and_then(|t| t.to_device(&Device::Cpu))
            .map(|t| t.detach())
            .map_err(|e| err(&p, e))
    };
    let v_dtype = if compact { DType::BF16 } else { DType::F32 };
    for s in &opt.slots {
        data.push((
            format!("param.{}", s.name),
            host(s.var.as_tensor(), DType::F32)?,
        ));
        if !compact {
            data.push((format!("adam_m.{}", s.name), host(&s.m, DType::F32)?));
        }
        data.push((format!("adam_v.{}", s.name), host(&s.v, v_dtype)?));
        if let Some(e) = &s.ema {
            data.push((format!("ema.{}", s.name), host(e, DType::F32)?));
        }
    }
    let mut meta: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("phase", pos.phase.to_string()),
        ("step", pos.step.to_string()),
        ("rng", rng.0.to_string()),
        ("adam_t", opt.t.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if compact {
        meta.insert("moments".into(), COMPACT.into());
    }
    for (k, v) in shaping {
        meta.insert(format!("config.{k}"), v.clone());
    }
    let tmp = p.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(data.iter().map(|(k, v)| (k.as_str(), v)), Some(meta), &tmp)
        .map_err(|e| err(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| err(&p, format!("cannot rename into place: {e}")))
}

/// Reads a checkpoint (`None` when there is none).
pub fn load(out: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let p = path(out);
    if !p.is_file() {
        return Ok(None);
    }
    let bytes = std::fs::read(&p).map_err(|e| err(&p, format!("cannot read: {e}")))?;
    let (_, st_meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| err(&p, format!("not a safetensors file: {e}")))?;
    let meta = st_meta.metadata().clone().unwrap_or_default();
    let get = |k: &str| {
        meta.get(k)
            .cloned()
            .ok_or_else(|| err(&p, format!("metadata `{k}` is missing")))
    };
    if get("format")? != FORMAT {
        return Err(err(&p, format!("metadata `format` is not {FORMAT}")));
    }
    let num = |k: &str| -> Result<u64, CheckpointError> {
        get(k)?
            .parse::<u64>()
            .map_err(|e| err(&p, format!("metadata `{k}`: {e}")))
    };
    let phase = get("phase")?;
    let phase: Phase = phase.parse().map_err(|_| {
        let names: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        err(
            &p,
            format!(
                "metadata `phase` = {phase:?} is not a phase ({})",
                names.join(", ")
            ),
        )
    })?;
    let step = num("step")?;
    if step > MAX_STEP {
        return Err(err(
            &p,
            format!("metadata `step` = {step} is over the limit of {MAX_STEP}"),
        ));
    }
    let pos = Position {
        phase,
        step: step as usize,
    };
    let shaping = meta
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("config.")?.to_string(), v.clone())))
        .collect();
    let compact = match meta.get("moments").map(String::as_str) {
        None => false,
        Some(COMPACT) => true,
        Some(other) => {
            return Err(err(
                &p,
                format!("metadata `moments` = {other:?} is not {COMPACT:?}"),
            ))
        }
    };
    let rng = TrainRng(num("rng")?);
    let adam_t = num("adam_t")?;
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| err(&p, e))?;
    Ok(Some(Checkpoint {
        pos,
        rng,
        adam_t,
        tensors,
        compact,
        shaping,
    }))
}

impl Checkpoint {
    /// Refuses resuming under a config whose tensor-shaping fields differ from the ones this
    /// checkpoint was written under (a checkpoint that recorded none is not compared).
    pub fn check_config(
        &self,
        cfg: &crate::config::TrainConfig,
        out: &Path,
    ) -> Result<(), CheckpointError> {
        for (k, v) in shaping_fields(cfg) {
            if let Some(was) = self.shaping.get(&k) {
                if *was != v {
                    return Err(err(
                        &path(out),
                        format!("written with {k} = {was}, but the config says {v}: resume with the run's own config"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Puts the parameters and moments back into `opt` (same slot names, same shapes); a
    /// compact checkpoint's first moment restarts at zero.
    pub fn restore(&self, opt: &mut AdamW, out: &Path) -> Result<(), CheckpointError> {
        let p = path(out);
        for s in opt.slots.iter_mut() {
            let get = |prefix: &str| -> Result<Tensor, CheckpointError> {
                let key = format!("{prefix}.{}", s.name);
                let t = self
                    .tensors
                    .get(&key)
                    .ok_or_else(|| err(&p, format!("tensor `{key}` is missing")))?;
                if t.dims() != s.var.as_tensor().dims() {
                    return Err(err(
                        &p,
                        format!(
                            "tensor `{key}` has shape {:?}, expected {:?}",
                            t.dims(),
                            s.var.as_tensor().dims()
                        ),
                    ));
                }
                t.to_dtype(s.var.dtype())
                    .and_then(|t| t.to_device(s.var.device()))
                    .map_err(|e| err(&p, e))
            };
            s.var.set(&get("param")?).map_err(|e| err(&p, e))?;
            s.m = if self.compact {
                s.var.as_tensor().zeros_like().map_err(|e| err(&p, e))?
            } else {
                get("adam_m")?
            };
            s.v = get("adam_v")?;
            if s.ema.is_some() {
                // A checkpoint from before the average was kept starts it at the parameters.
                let key = format!("ema.{}", s.name);
                s.ema = Some(if self.tensors.contains_key(&key) {
                    get("ema")?
                } else {
                    s.var.as_tensor().copy().map_err(|e| err(&p, e))?
                });
            }
        }
        opt.t = self.adam_t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_phase_names_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        let meta: HashMap<String, String> = [
            ("format", FORMAT),
            ("phase", "4"),
            ("step", "1"),
            ("rng", "1"),
            ("adam_t", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let t = Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();
        safetensors::serialize_to_file([("param.x", &t)], Some(meta), &p).unwrap();
        let e = load(dir.path())
            .err()
            .expect("phase 4 is refused")
            .to_string();
        assert_eq!(
            e,
            format!(
                "{}: metadata `phase` = \"4\" is not a phase (0-ae, 0-dit, 1, 2, 3)",
                p.display()
            )
        );
    }
}
