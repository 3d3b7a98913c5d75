//! Data-parallel LoRA training through the binaries: `launch --gpus 2` (two processes on the
//! CPU, joined over TCP) takes the same steps as one process at the same global batch, a run
//! checkpointed by two ranks resumes on one, only rank 0 writes, and a rank that dies or never
//! joins stops the run with a message instead of a hang.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_skeleguide-train");

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Phase 1 from the shipped base for `steps` steps, batch 4 (two rows per rank with two ranks).
fn config(dir: &Path, name: &str, steps: usize) -> PathBuf {
    let base = repo_file("assets/models/tiny");
    let text = format!(
        "preset = \"tiny\"\nmethod = \"skeleguide\"\nbase_model = {base:?}\nseed = 3\nbatch = 4\n\
         checkpoint_every = 2\nsample_every = 0\n\
         [optim]\nlr = 1e-3\ngrad_clip = 1.0\nprompt_dropout = 0.1\ncond_dropout = 0.1\n\
         lambda_reason = 0.5\nlambda_render = 1.0\n\
         [data]\n[lora]\nrank = 4\nalpha = 4.0\n\
         [phase1]\nsteps = {steps}\n[phase2]\nsteps = 2\n[phase3]\nsteps = 2\n"
    );
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run(args: &[&str], extra: &[&Path]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    for a in extra {
        c.arg(a);
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn tensors(p: &Path) -> BTreeMap<String, Vec<f32>> {
    candle_core::safetensors::load(p, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

/// max |a - b| over max |b|, over every tensor of the skeletal LoRA file of two runs.
fn lora_rel_diff(a: &Path, b: &Path) -> f64 {
    let f = format!(
        "model/{}",
        skeleguide_engine::modeldir::lora_file("skeletal")
    );
    let (ta, tb) = (tensors(&a.join(&f)), tensors(&b.join(&f)));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    let (mut diff, mut scale) = (0f64, 0f64);
    for (k, va) in &ta {
        for (x, y) in va.iter().zip(&tb[k]) {
            diff = diff.max((x - y).abs() as f64);
            scale = scale.max(y.abs() as f64);
        }
    }
    diff / scale.max(1e-12)
}

fn losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("train.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn two_ranks_take_the_steps_of_one_process_and_resume_on_one() {
    let data = common::dataset(8);
    let dir = tempfile::tempdir().unwrap();
    let cfg4 = config(dir.path(), "four.toml", 4);
    let cfg2 = config(dir.path(), "two.toml", 2);
    let (one, two, mixed) = (
        dir.path().join("one"),
        dir.path().join("two"),
        dir.path().join("mixed"),
    );
    let d = data.path();
    run(
        &["train", "--phase", "1", "--config"],
        &[&cfg4, Path::new("--out"), &one, Path::new("--data"), d],
    );
    run(
        &[
            "launch", "--gpus", "2", "--", "train", "--phase", "1", "--config",
        ],
        &[&cfg4, Path::new("--out"), &two, Path::new("--data"), d],
    );
    let rel = lora_rel_diff(&two, &one);
    assert!(
        rel <= 1e-5,
        "2 ranks vs 1 process: relative difference {rel:e}"
    );
    // rank 0 alone wrote the log: one record per step, the mean loss of the two halves
    let (l1, l2) = (losses(&one), losses(&two));
    assert_eq!((l1.len(), l2.len()), (4, 4));
    for (a, b) in l1.iter().zip(&l2) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{l1:?} vs {l2:?}");
    }
    // two steps on two ranks, then resumed to four on one process
    run(
        &[
            "launch", "--gpus", "2", "--", "train", "--phase", "1", "--config",
        ],
        &[&cfg2, Path::new("--out"), &mixed, Path::new("--data"), d],
    );
    run(
        &["train", "--phase", "1", "--resume", "--config"],
        &[&cfg4, Path::new("--out"), &mixed, Path::new("--data"), d],
    );
    let rel = lora_rel_diff(&mixed, &one);
    assert!(
        rel <= 1e-5,
        "resumed across world sizes: relative difference {rel:e}"
    );
    assert_eq!(losses(&mixed).len(), 4);
}

/// `launch --gpus 2 -- train EXTRA --config CFG --out OUT` that must be refused: its one-line
/// stderr.
fn refused_launch(extra: &[&str], cfg: &Path, out: &Path) -> String {
    let o = Command::new(BIN)
        .args(["launch", "--gpus", "2", "--", "train"])
        .args(extra)
        .arg("--config")
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_batch_the_ranks_cannot_share_and_phase_zero_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", 2);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("batch = 4", "batch = 3");
    std::fs::write(&cfg, text).unwrap();
    let err = refused_launch(&["--phase", "1"], &cfg, &dir.path().join("o"));
    assert!(
        err.contains("batch = 3") && err.contains("divide by 2"),
        "{err}"
    );
    assert_eq!(
        err.trim().lines().count(),
        1,
        "checked once, before any process: {err}"
    );
    let smoke = repo_file("trainer/configs/tiny-smoke.toml");
    let err = refused_launch(&["--phase", "0"], &smoke, &dir.path().join("p0"));
    assert!(err.contains("phase 0 trains on one process"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // the focus weights are divided by the whole batch's mean
    let focus = dir.path().join("focus.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("batch = 3", "batch = 4")
        .replace("[optim]\n", "[optim]\nrender_focus = 2.0\n");
    std::fs::write(&focus, text).unwrap();
    let err = refused_launch(&["--phase", "3"], &focus, &dir.path().join("f"));
    assert!(
        err.contains("focus.toml") && err.contains("optim.render_focus"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // ranks cannot stop together at a time
    let plain = config(dir.path(), "plain.toml", 2);
    let err = refused_launch(
        &["--phase", "1", "--minutes", "5"],
        &plain,
        &dir.path().join("m"),
    );
    assert!(err.contains("--minutes: a data-parallel run"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // launch sets the rank flags itself
    let err = refused_launch(&["--rank", "1"], &cfg, &dir.path().join("r"));
    assert!(err.contains("--rank: launch sets it"));
    // NCCL asked of a build without it: one line, before any rank waits for the others
    if !skeleguide_engine::model::allreduce::nccl_compiled() {
        let out = dir.path().join("nccl");
        let o = Command::new(BIN)
            .args(["train", "--phase", "1", "--world-size", "2", "--rank", "1"])
            .args(["--reduce", "nccl", "--group-timeout", "600", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("no NCCL backend"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!out.exists());
    }
}

#[test]
fn a_rank_that_never_joins_or_dies_stops_the_run() {
    let data = common::dataset(8);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "long.toml", 400);
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    // rank 0 alone: rank 1 never joins
    let out = dir.path().join("alone");
    let t = Instant::now();
    let o = Command::new(BIN)
        .args([
            "train",
            "--phase",
            "1",
            "--world-size",
            "2",
            "--rank",
            "0",
            "--group-timeout",
            "2",
        ])
        .args(["--rendezvous", &addr, "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ranks 1 did not join"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(60));
    assert!(!out.exists(), "nothing is written before the group forms");
    // both ranks start; rank 1 is killed mid-run; rank 0 must stop with a message
    let out = dir.path().join("killed");
    let spawn = |rank: &str| {
        Command::new(BIN)
            .args(["train", "--phase", "1", "--world-size", "2", "--rank", rank])
            .args(["--rendezvous", &addr, "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out)
            .arg("--data")
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let rank0 = spawn("0");
    let mut rank1 = spawn("1");
    let log = out.join("train.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&log).map_or(true, |t| t.lines().count() < 2) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no steps logged"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rank1.kill().unwrap();
    let _ = rank1.wait();
    let killed = Instant::now();
    let o = rank0.wait_with_output().unwrap();
    assert!(killed.elapsed() < Duration::from_secs(60), "rank 0 hung");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rank 1") && err.contains("ended"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
