//! Training checkpoints: one safetensors file (`OUT/checkpoint.safetensors`) written
//! atomically (temporary sibling + rename). It holds every trainable parameter (`param.NAME`),
//! the AdamW moments (`adam_m.NAME`, `adam_v.NAME`) and, in the metadata, the phase, the step
//! within it, the AdamW step count and the RNG state. Frozen parts (the base, the autoencoder,
//! the text encoder, a finished LoRA set) live in the model directory written at each phase's
//! end, so a checkpoint only needs what is being trained.

use crate::optim::{AdamW, TrainRng};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const FORMAT: &str = "skeleguide.checkpoint.v1";

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

/// Where a run is: the phase (`0-ae`, `0-dit`, `1`, `2`, `3`) and the steps done in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub phase: String,
    pub step: usize,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub pos: Position,
    pub rng: TrainRng,
    pub adam_t: u64,
    pub tensors: HashMap<String, Tensor>,
}

pub fn path(out: &Path) -> PathBuf {
    out.join(CHECKPOINT_FILE)
}

/// Writes the optimiser's parameters and state.
pub fn save(
    out: &Path,
    pos: &Position,
    rng: &TrainRng,
    opt: &AdamW,
) -> Result<(), CheckpointError> {
    let p = path(out);
    let mut data: Vec<(String, Tensor)> = Vec::with_capacity(opt.slots.len() * 3);
    let host = |t: &Tensor| -> Result<Tensor, CheckpointError> {
        t.to_dtype(DType::F32)
            .and_then(|t| t.to_device(&Device::Cpu))
            .map(|t| t.detach())
            .map_err(|e| err(&p, e))
    };
    for s in &opt.slots {
        data.push((format!("param.{}", s.name), host(s.var.as_tensor())?));
        data.push((format!("adam_m.{}", s.name), host(&s.m)?));
        data.push((format!("adam_v.{}", s.name), host(&s.v)?));
    }
    let meta: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("phase", pos.phase.clone()),
        ("step", pos.step.to_string()),
        ("rng", rng.0.to_string()),
        ("adam_t", opt.t.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
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
    let pos = Position {
        phase: get("phase")?,
        step: num("step")? as usize,
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
    }))
}

impl Checkpoint {
    /// Puts the parameters and moments back into `opt` (same slot names, same shapes).
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
            s.m = get("adam_m")?;
            s.v = get("adam_v")?;
        }
        opt.t = self.adam_t;
        Ok(())
    }
}
