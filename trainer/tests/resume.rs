//! An interrupted run resumes bit-identically (docs/training.md): for every part of the
//! curriculum (0-ae, 0-dit, 1, 2, 3), a run killed with SIGKILL after a checkpoint and resumed
//! with `--resume` ends with the same loss log, model files and checkpoint (weights, AdamW
//! moments, moving average, RNG state), bit for bit, as a run straight through.

mod common;

use common::dataset;
use skeleguide_engine::modeldir;
use skeleguide_trainer::checkpoint::CHECKPOINT_FILE;
use skeleguide_trainer::phases::model_dir;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_skeleguide-train");

/// `skeleguide-train train --phase PHASE` under `config` on `data` into `out`.
fn train(config: &Path, data: &Path, out: &Path, phase: &str, resume: bool) -> Command {
    let mut c = Command::new(BIN);
    c.args(["train", "--phase", phase, "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--data")
        .arg(data);
    if resume {
        c.arg("--resume");
    }
    c
}

/// Runs a training command to its end; returns its stderr.
fn finish(mut c: Command) -> String {
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    err
}

/// Runs `--resume` to the end and checks from its summary that it continued `phase` after step
/// `at` of `steps` rather than starting over.
fn resume_from(c: Command, phase: &str, steps: usize, at: usize) {
    let err = finish(c);
    let line = format!("phase {phase:>5}: {steps} steps ({} run now)", steps - at);
    assert!(err.contains(&line), "`{line}` expected in: {err}");
}

/// The `phase` and `step` of a run's checkpoint, read from the file's header alone; `None`
/// before the first checkpoint.
fn position(out: &Path) -> Option<(String, usize)> {
    let mut f = std::fs::File::open(out.join(CHECKPOINT_FILE)).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let mut header = vec![0u8; usize::try_from(u64::from_le_bytes(len)).ok()?];
    f.read_exact(&mut header).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let m = &v["__metadata__"];
    Some((
        m["phase"].as_str()?.to_string(),
        m["step"].as_str()?.parse().ok()?,
    ))
}

/// Starts a training command and kills it with SIGKILL as soon as its checkpoint lies inside
/// `phase` (after a step of it, before its last of `steps`); returns the checkpoint's step.
fn kill_inside(mut c: Command, out: &Path, phase: &str, steps: usize) -> usize {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let inside =
        |p: &Option<(String, usize)>| matches!(p, Some((ph, s)) if ph == phase && *s < steps);
    let t0 = Instant::now();
    while !inside(&position(out)) {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the run ended ({st}) before a checkpoint inside phase {phase}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no checkpoint inside phase {phase} appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // SIGKILL: no chance to clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    // It may have checkpointed again before the signal landed, but not finished the phase.
    let at = position(out);
    assert!(
        inside(&at),
        "phase {phase} finished before the kill: {at:?}"
    );
    at.unwrap().1
}

/// A safetensors file's tensors by name as (dtype, shape, raw bytes), and its metadata.
type Raw = (
    BTreeMap<String, (String, Vec<usize>, Vec<u8>)>,
    BTreeMap<String, String>,
);

/// Reads a safetensors file as [`Raw`].
fn raw(p: &Path) -> Raw {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let t = (
                format!("{:?}", v.dtype()),
                v.shape().to_vec(),
                v.data().to_vec(),
            );
            (k, t)
        })
        .collect();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap_or_default();
    (tensors, meta.into_iter().collect())
}

/// Asserts that two safetensors files hold the same tensors, byte for byte, naming the ones
/// that differ; returns both files' metadata.
fn assert_same_tensors(a: &Path, b: &Path) -> [BTreeMap<String, String>; 2] {
    let (ra, rb) = (raw(a), raw(b));
    let names = |r: &Raw| r.0.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&ra), names(&rb), "{}: tensor names", b.display());
    let differ: Vec<&String> = ra.0.keys().filter(|k| ra.0[*k] != rb.0[*k]).collect();
    assert!(
        differ.is_empty(),
        "{}: {} of {} tensors differ from the run straight through, e.g. {:?}",
        b.display(),
        differ.len(),
        ra.0.len(),
        &differ[..differ.len().min(4)]
    );
    [ra.1, rb.1]
}

/// The run's `train.jsonl` without the wall-clock fields.
fn log_records(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("train.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("step_time_s");
            o.remove("samples_per_s");
            v
        })
        .collect()
}

/// Asserts that the run in `resumed` ended exactly as the one in `straight`: the same loss log
/// (every loss term, lr and gradient norm of every step), the same model files and the same
/// checkpoint, tensors and metadata.
fn assert_same_end(straight: &Path, resumed: &Path) {
    let (a, b) = (log_records(straight), log_records(resumed));
    if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
        panic!(
            "log record {i} differs:\n straight {}\n resumed  {}",
            a[i], b[i]
        );
    }
    assert_eq!(a.len(), b.len(), "log length");
    let files = |out: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(model_dir(out))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            // the card reports the process's wall time
            .filter(|n| n != modeldir::CARD_FILE)
            .collect();
        v.sort();
        v
    };
    assert_eq!(files(straight), files(resumed));
    for name in files(straight) {
        let (fa, fb) = (
            model_dir(straight).join(&name),
            model_dir(resumed).join(&name),
        );
        if name.ends_with(".safetensors") {
            assert_same_tensors(&fa, &fb);
        } else {
            assert!(
                std::fs::read(&fa).unwrap() == std::fs::read(&fb).unwrap(),
                "{name} differs"
            );
        }
    }
    let ck = |out: &Path| out.join(CHECKPOINT_FILE);
    let [ma, mb] = assert_same_tensors(&ck(straight), &ck(resumed));
    assert_eq!(ma, mb, "checkpoint metadata");
}

/// A config for the LoRA phases on `base` (checkpoints every 3 steps).
fn lora_config(dir: &Path, base: &Path, rank: usize, steps: [usize; 3]) -> PathBuf {
    let p = dir.join(format!("lora-rank{rank}.toml"));
    let [s1, s2, s3] = steps;
    let text = format!(
        "preset = \"tiny\"\nbase_model = {:?}\nseed = 4\nbatch = 2\ncheckpoint_every = 3\n\
         [optim]\nlr = 1e-3\ngrad_clip = 1.0\nprompt_dropout = 0.1\ncond_dropout = 0.1\nlambda_reason = 0.5\nlambda_render = 1.0\n\
         [data]\n[lora]\nrank = {rank}\nalpha = 4.0\n[phase1]\nsteps = {s1}\n[phase2]\nsteps = {s2}\n[phase3]\nsteps = {s3}\n",
        base.display().to_string()
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// A randomly initialised tiny base model.
fn random_base() -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    modeldir::init_random(base.path(), "tiny", 7).unwrap();
    base
}

/// Phase `phase` (2 or 3) alone on a random base: killed inside it, resumed, it ends as the
/// run straight through.
fn lora_phase_resumes_bit_identically(phase: usize) {
    let data = dataset(2);
    let base = random_base();
    let tmp = tempfile::tempdir().unwrap();
    let steps = [2, 8, 8];
    let config = lora_config(tmp.path(), base.path(), 4, steps);
    let name = phase.to_string();
    let straight = tmp.path().join("straight");
    finish(train(&config, data.path(), &straight, &name, false));
    let killed = tmp.path().join("killed");
    let at = kill_inside(
        train(&config, data.path(), &killed, &name, false),
        &killed,
        &name,
        steps[phase - 1],
    );
    let resumed = train(&config, data.path(), &killed, &name, true);
    resume_from(resumed, &name, steps[phase - 1], at);
    assert_same_end(&straight, &killed);
}

#[test]
fn phase0_resumes_bit_identically_after_sigkill_in_either_part() {
    let data = dataset(2);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("phase0.toml");
    // Every random and stateful part of phase 0 is on: skeleton-weighted AE crops, layouts in
    // the DiT's batches, a cosine schedule, adaLN-Zero and a moving average.
    std::fs::write(
        &config,
        "preset = \"tiny\"\nseed = 3\nbatch = 2\ncheckpoint_every = 3\n\
         [optim]\nlr = 1e-3\ngrad_clip = 1.0\nprompt_dropout = 0.1\ncond_dropout = 0.1\nlambda_reason = 0.5\nlambda_render = 1.0\n\
         [data]\n[lora]\nrank = 4\nalpha = 4.0\n\
         [phase0]\nae_steps = 16\nae_lr = 1.5e-3\nae_batch = 2\nae_crop = 32\nae_skeleton_weight = 8.0\n\
         dit_steps = 8\ndit_lr = 1e-3\ndit_schedule = \"cosine\"\nadaln_zero = true\nlayout_share = 0.5\nema_decay = 0.9\n\
         [phase1]\nsteps = 1\n[phase2]\nsteps = 1\n[phase3]\nsteps = 1\n",
    )
    .unwrap();
    let straight = tmp.path().join("straight");
    finish(train(&config, data.path(), &straight, "0", false));
    let ae_config = |out: &Path| std::fs::read(out.join("ae-config.json")).unwrap();
    // an autoencoder step is short: more of them, so that the kill lands inside the part
    for (part, steps) in [("0-ae", 16), ("0-dit", 8)] {
        let killed = tmp.path().join(part);
        let run = |resume| train(&config, data.path(), &killed, "0", resume);
        let at = kill_inside(run(false), &killed, part, steps);
        resume_from(run(true), part, steps, at);
        assert_same_end(&straight, &killed);
        assert_eq!(ae_config(&straight), ae_config(&killed), "{part}");
    }
}

#[test]
fn phase1_resumes_bit_identically_after_sigkill_and_refuses_another_config() {
    let data = dataset(2);
    let base = random_base();
    // the base's PoseInverter comes along (it reads what the base's autoencoder decodes)
    let inverter = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../assets/models/tiny")
        .join(modeldir::INVERTER_FILE);
    std::fs::copy(&inverter, base.path().join(modeldir::INVERTER_FILE)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = lora_config(tmp.path(), base.path(), 4, [12, 1, 1]);
    let straight = tmp.path().join("straight");
    finish(train(&config, data.path(), &straight, "1", false));
    assert_eq!(log_records(&straight).len(), 12);
    let linked = std::fs::read(model_dir(&straight).join(modeldir::INVERTER_FILE)).unwrap();
    assert_eq!(linked, std::fs::read(&inverter).unwrap());

    let killed = tmp.path().join("killed");
    let at = kill_inside(
        train(&config, data.path(), &killed, "1", false),
        &killed,
        "1",
        12,
    );
    // resuming under a config that shapes the tensors otherwise is refused, the run untouched
    let ck = killed.join(CHECKPOINT_FILE);
    let (ck_bytes, log_bytes) = (
        std::fs::read(&ck).unwrap(),
        std::fs::read(killed.join("train.jsonl")).unwrap(),
    );
    let other = lora_config(tmp.path(), base.path(), 8, [12, 1, 1]);
    let o = train(&other, data.path(), &killed, "1", true)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("lora.rank = 4") && err.contains("says 8"),
        "{err}"
    );
    assert_eq!(std::fs::read(&ck).unwrap(), ck_bytes);
    assert_eq!(
        std::fs::read(killed.join("train.jsonl")).unwrap(),
        log_bytes
    );
    resume_from(train(&config, data.path(), &killed, "1", true), "1", 12, at);
    assert_same_end(&straight, &killed);
}

#[test]
fn phase2_resumes_bit_identically_after_sigkill() {
    lora_phase_resumes_bit_identically(2);
}

#[test]
fn phase3_resumes_bit_identically_after_sigkill() {
    lora_phase_resumes_bit_identically(3);
}
