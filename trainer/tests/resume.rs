//! An interrupted run resumes bit-identically (docs/training.md): for every part of the
//! curriculum (0-ae, 0-dit, 1, 2, 3), a run killed with SIGKILL after a checkpoint and resumed
//! with `--resume` ends with the same loss log, model files and checkpoint (weights, AdamW
//! moments, moving average, RNG state), bit for bit, as a run straight through. So does a run
//! cut into time slots by `--minutes`; a compact checkpoint carries a run in half the bytes,
//! and the device slot's scripts carry it to another run folder.

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

/// A phase-0 config (checkpoints only at each part's end) that trains its autoencoder 4 steps,
/// or adopts the shipped one (`adopt`).
fn slot_config(dir: &Path, compact: bool, adopt: bool) -> PathBuf {
    let p = dir.join(format!("slot-{compact}-{adopt}.toml"));
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/models/tiny");
    let ae = if adopt {
        format!(
            "ae_steps = 0\nae_from = {:?}",
            shipped.display().to_string()
        )
    } else {
        "ae_steps = 4\nae_batch = 2\nae_crop = 32".to_string()
    };
    let text = format!(
        "preset = \"tiny\"\nseed = 3\nbatch = 2\ncheckpoint_every = 100\ncompact_checkpoint = {compact}\n\
         [optim]\nlr = 1e-3\ngrad_clip = 1.0\nprompt_dropout = 0.1\ncond_dropout = 0.1\nlambda_reason = 0.5\nlambda_render = 1.0\n\
         [data]\n[lora]\nrank = 4\nalpha = 4.0\n\
         [phase0]\n{ae}\n\
         dit_steps = 5\ndit_lr = 1e-3\ndit_schedule = \"cosine\"\nlayout_share = 0.5\n\
         [phase1]\nsteps = 1\n[phase2]\nsteps = 1\n[phase3]\nsteps = 1\n"
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// `--minutes` stops a run after the step under way, with a checkpoint and exit status 0, and
/// a run cut into slots that way ends bit for bit as the run straight through.
#[test]
fn a_run_cut_into_time_slots_ends_as_the_run_straight_through() {
    let data = dataset(2);
    let tmp = tempfile::tempdir().unwrap();
    let config = slot_config(tmp.path(), false, false);
    let straight = tmp.path().join("straight");
    finish(train(&config, data.path(), &straight, "0", false));
    let cut = tmp.path().join("cut");
    // a budget spent by the first step: each slot runs one step
    let slot = |resume| {
        let mut c = train(&config, data.path(), &cut, "0", resume);
        c.args(["--minutes", "0.00001"]);
        finish(c)
    };
    let first = slot(false);
    assert!(
        first.contains("stopped at step 1 of 4 of phase 0-ae") && first.contains("--resume"),
        "{first}"
    );
    assert_eq!(position(&cut), Some(("0-ae".to_string(), 1)));
    let mut slots = 1;
    while slot(true).contains("stopped at step") {
        slots += 1;
        assert!(slots < 20, "the slots do not end");
    }
    // one step per slot; a part's last step stops at the part's end, and the slot after it
    // goes on to the next part's first step
    assert_eq!(slots, 4 + (5 - 1), "slots that stopped");
    assert_same_end(&straight, &cut);

    let o = train(&config, data.path(), &cut, "0", true)
        .args(["--minutes", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--minutes 0: must be above 0"), "{err}");
}

/// A compact checkpoint holds the parameters in f32, the second moment in bf16 and no first
/// moment, about half the bytes of a full one, and a run resumed from it goes on to its end.
#[test]
fn a_compact_checkpoint_keeps_the_second_moment_in_bf16_and_resumes() {
    let data = dataset(2);
    let tmp = tempfile::tempdir().unwrap();
    let (full_cfg, compact_cfg) = (
        slot_config(tmp.path(), false, true),
        slot_config(tmp.path(), true, true),
    );
    // the autoencoder adopted, a slot of one step stops after the first step of 0-dit
    let stop_in_dit = |config: &Path, out: &Path| {
        let mut c = train(config, data.path(), out, "0", false);
        c.args(["--minutes", "0.00001"]);
        finish(c);
        assert_eq!(position(out), Some(("0-dit".to_string(), 1)));
    };
    let (full, compact) = (tmp.path().join("full"), tmp.path().join("compact"));
    stop_in_dit(&full_cfg, &full);
    stop_in_dit(&compact_cfg, &compact);
    let ((ft, _), (ct, cm)) = (
        raw(&full.join(CHECKPOINT_FILE)),
        raw(&compact.join(CHECKPOINT_FILE)),
    );
    assert_eq!(cm.get("moments").map(String::as_str), Some("compact"));
    assert!(
        ct.keys().all(|k| !k.starts_with("adam_m.")),
        "no first moment"
    );
    let vs: Vec<_> = ct
        .iter()
        .filter(|(k, _)| k.starts_with("adam_v."))
        .collect();
    assert_eq!(
        vs.len(),
        ft.keys().filter(|k| k.starts_with("adam_v.")).count()
    );
    assert!(
        vs.iter().all(|(_, (dtype, _, _))| dtype == "BF16"),
        "v in bf16"
    );
    for (k, t) in ct.iter().filter(|(k, _)| k.starts_with("param.")) {
        assert_eq!(
            t, &ft[k],
            "{k}: the parameters are the full checkpoint's, in f32"
        );
    }
    let bytes = |out: &Path| std::fs::metadata(out.join(CHECKPOINT_FILE)).unwrap().len();
    let (fb, cb) = (bytes(&full), bytes(&compact));
    assert!(cb * 10 < fb * 6, "compact {cb} bytes against full {fb}");
    let err = finish(train(&compact_cfg, data.path(), &compact, "0", true));
    assert!(err.contains("phase 0-dit: 5 steps (4 run now)"), "{err}");
    let log = log_records(&compact);
    assert_eq!(log.len(), 5, "the adopted autoencoder logs no step");
    assert!(log
        .iter()
        .all(|r| r["loss"].as_f64().is_some_and(f64::is_finite)));
}

/// The device slot's two scripts: `scripts/device/train-base.sh` stops a run at its time with
/// a compact checkpoint and packs it into parts of at most 15 MiB without the data set or the
/// adopted autoencoder; `scripts/device/unpack-run.sh` puts it into another run folder, where
/// `--resume` goes on from the slot's step to the end.
#[test]
fn a_device_slot_comes_back_in_parts_and_the_run_goes_on_elsewhere() {
    let has = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has("xz") || !has("tar") || !has("split") {
        eprintln!("skipped: the device scripts need xz, tar and split");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(repo.join("trainer/configs/tiny-gpu-base.toml")).unwrap();
    let small = [
        ("batch = 256", "batch = 2"),
        ("synth_count = 20000", "synth_count = 6"),
        // more steps than any machine runs in the slot
        ("dit_steps = 4000", "dit_steps = 100000"),
        ("checkpoint_every = 200", "checkpoint_every = 1000"),
    ]
    .iter()
    .fold(base, |t, (a, b)| {
        assert!(t.contains(a), "{a} in tiny-gpu-base.toml");
        t.replace(a, b)
    })
    .replace("steps = 1000\n", "steps = 1\n")
    .replace("steps = 250\n", "steps = 1\n")
    .replace("steps = 600\n", "steps = 1\n");
    let config = tmp.path().join("small.toml");
    std::fs::write(&config, small).unwrap();
    let (run, out, back) = (
        tmp.path().join("run"),
        tmp.path().join("out"),
        tmp.path().join("back"),
    );
    let bin = Path::new(BIN).parent().unwrap();
    let o = Command::new("bash")
        .arg(repo.join("scripts/device/train-base.sh"))
        .current_dir(&repo)
        .envs([
            ("BIN", bin.as_os_str()),
            ("CONFIG", config.as_os_str()),
            ("RUN", run.as_os_str()),
            ("OUT", out.as_os_str()),
            ("MINUTES", "0.15".as_ref()),
        ])
        .output()
        .unwrap();
    let log = std::fs::read_to_string(out.join("log.txt")).unwrap_or_default();
    assert!(
        o.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        log.contains("of phase 0-dit, the time given being spent"),
        "the slot stops inside the base: {log}"
    );
    let (phase, at) = position(&run).unwrap();
    assert_eq!(phase, "0-dit");
    let parts: Vec<u64> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("run.tar.xz.part-")
        })
        .map(|e| e.metadata().unwrap().len())
        .collect();
    assert!(
        parts.len() >= 2,
        "a compact checkpoint spans parts: {parts:?}"
    );
    assert!(parts.iter().all(|&n| n <= 15 << 20), "{parts:?}");

    let unpack = |from: &Path| {
        Command::new("bash")
            .arg(repo.join("scripts/device/unpack-run.sh"))
            .arg(from)
            .arg(&back)
            .output()
            .unwrap()
    };
    // a part lost on the way: refused, the run folder untouched
    let short = tmp.path().join("short");
    std::fs::create_dir(&short).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("run.tar.xz.part-"))
        .collect();
    names.sort();
    for n in &names[..names.len() - 1] {
        std::fs::copy(out.join(n), short.join(n)).unwrap();
    }
    let o = unpack(&short);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("missing or truncated"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!back.join(CHECKPOINT_FILE).exists());
    let o = unpack(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!back.join("data").exists(), "the data set stays behind");
    assert_eq!(
        std::fs::read(back.join("model/ae.safetensors")).unwrap(),
        std::fs::read(repo.join("assets/models/tiny/ae.safetensors")).unwrap()
    );
    assert_eq!(position(&back), Some(("0-dit".to_string(), at)));
    // the data set is regenerated from the config's seed, as it was on the device
    let err = finish({
        let mut c = Command::new(BIN);
        c.args(["train", "--resume", "--minutes", "0.00001", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&back);
        c
    });
    assert!(
        err.contains(&format!(
            "stopped at step {} of 100000 of phase 0-dit",
            at + 1
        )),
        "{err}"
    );
    assert_eq!(position(&back), Some(("0-dit".to_string(), at + 1)));
}
