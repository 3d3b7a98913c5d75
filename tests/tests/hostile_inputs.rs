//! Inputs a hostile or careless user gives: streams and FIFOs where files are expected, sizes
//! far past the engine's limits in tiny files, stray bytes in prompts. Each must end in one line
//! naming the file and the field, exit code 2, quickly and without a large allocation.

use skeleguide_tests::{mkfifo, skeleguide_bin, small_scene};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `skeleguide args…`, killing it after `limit` (a hang fails the test instead of CI).
fn run_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(skeleguide_bin())
        .args(args)
        .env_remove("SKELEGUIDE_MODEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("skeleguide {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Exit code 2 with one line of error mentioning every `needle`.
fn refused(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` in: {err}");
    }
}

const SECONDS: Duration = Duration::from_secs(20);

/// `generate` (one step) on a small scene in `dir` with the model directory `model`, its output
/// `dir/o.png`.
fn generate_with(dir: &Path, model: &Path) -> Output {
    let scene = small_scene(dir);
    let args = [
        "generate",
        "--scene",
        scene.to_str().unwrap(),
        "--prompt",
        "a man",
    ];
    let model_args = ["--model", model.to_str().unwrap(), "--steps", "1"];
    let out = dir.join("o.png");
    let all: Vec<&str> = args
        .into_iter()
        .chain(model_args)
        .chain(["-o", out.to_str().unwrap()])
        .collect();
    run_within(&all, SECONDS)
}

#[test]
fn a_fifo_nobody_writes_to_is_refused_not_waited_on() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("pose.json");
    if !mkfifo(&fifo) {
        return;
    }
    let out = run_within(&["pose", "info", fifo.to_str().unwrap()], SECONDS);
    refused(&out, &["pose.json"]);
}

#[test]
fn a_model_config_that_is_a_fifo_is_refused_not_waited_on() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("model");
    std::fs::create_dir(&model).unwrap();
    if !mkfifo(&model.join("config.json")) {
        return;
    }
    let out = generate_with(d.path(), &model);
    refused(&out, &["config.json"]);
}

#[test]
fn an_endless_stream_as_a_pose_file_or_scene_is_cut_at_the_stream_limit() {
    if !Path::new("/dev/zero").exists() {
        skeleguide_tests::skip_missing("no /dev/zero");
        return;
    }
    let out = run_within(&["pose", "info", "/dev/zero"], SECONDS);
    refused(&out, &["/dev/zero", "limit"]);
    let d = tempfile::tempdir().unwrap();
    let pose = d.path().join("p.json");
    std::fs::write(
        &pose,
        r#"{"people":[],"canvas_width":64,"canvas_height":64}"#,
    )
    .unwrap();
    let out = run_within(
        &[
            "pose",
            "draw",
            "--pose",
            pose.to_str().unwrap(),
            "--scene",
            "/dev/zero",
            "-o",
            d.path().join("l.png").to_str().unwrap(),
        ],
        SECONDS,
    );
    refused(&out, &["/dev/zero"]);
}

#[test]
fn a_tiny_pose_file_with_a_huge_canvas_is_refused_before_drawing() {
    let d = tempfile::tempdir().unwrap();
    let pose = d.path().join("big.json");
    let mut kp = vec![0; 54];
    kp[..3].copy_from_slice(&[10, 10, 1]);
    let doc = serde_json::json!({
        "people": [{"pose_keypoints_2d": kp}],
        "canvas_width": 30000,
        "canvas_height": 30000
    });
    std::fs::write(&pose, doc.to_string()).unwrap();
    let out = run_within(
        &[
            "pose",
            "draw",
            "--pose",
            pose.to_str().unwrap(),
            "-o",
            d.path().join("l.png").to_str().unwrap(),
        ],
        SECONDS,
    );
    refused(&out, &["big.json", "30000x30000", "limit"]);
    assert!(!d.path().join("l.png").exists());
}

/// A copy of the shipped model with `edit` applied to its config.json.
fn model_with(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> std::path::PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/models/tiny");
    let model = dir.join("model");
    std::fs::create_dir(&model).unwrap();
    for e in std::fs::read_dir(&shipped).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), model.join(e.file_name())).unwrap();
    }
    let cfg_path = model.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::remove_file(&cfg_path).unwrap();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    model
}

#[test]
fn model_configs_past_the_limits_or_with_unknown_keys_are_refused_by_field() {
    type ConfigEdit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: [(&str, ConfigEdit); 5] = [
        (
            "ae.config: tiny autoencoder: widths",
            Box::new(|c| c["ae"]["config"]["widths"] = serde_json::json!([])),
        ),
        (
            "resolution",
            Box::new(|c| c["resolution"] = 1_000_000.into()),
        ),
        ("depth", Box::new(|c| c["dit"]["depth"] = 1_000_000.into())),
        (
            "rank",
            Box::new(|c| c["lora"]["skeletal"]["rank"] = 100_000.into()),
        ),
        ("resolutoin", Box::new(|c| c["resolutoin"] = 128.into())),
    ];
    for (field, edit) in cases {
        let d = tempfile::tempdir().unwrap();
        let model = model_with(d.path(), edit);
        let out = generate_with(d.path(), &model);
        refused(&out, &["config.json", field]);
    }
}

#[test]
fn prompts_files_lose_their_bom_and_refuse_control_characters() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 1).unwrap();
    let scene = small_scene(d.path());
    let prompts = d.path().join("prompts.txt");
    let batch = |out: &str| {
        run_within(
            &[
                "batch",
                "--scene",
                scene.to_str().unwrap(),
                "--prompts",
                prompts.to_str().unwrap(),
                "--seeds",
                "0",
                "--model",
                model.to_str().unwrap(),
                "--steps",
                "1",
                "--out",
                d.path().join(out).to_str().unwrap(),
            ],
            SECONDS * 3,
        )
    };
    std::fs::write(&prompts, "\u{feff}a man standing\n").unwrap();
    let out = batch("a");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = std::fs::read_to_string(d.path().join("a/manifest.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(manifest.lines().next().unwrap()).unwrap();
    assert_eq!(line["prompt"], "a man standing");
    std::fs::write(&prompts, "a man standing\na woman\u{1b}[31m waving\n").unwrap();
    refused(&batch("b"), &["prompts.txt", "line 2", "U+001B"]);
    assert!(!d.path().join("b/manifest.jsonl").exists());
}

#[test]
fn a_model_with_a_nan_weight_is_refused_naming_file_and_tensor() {
    let d = tempfile::tempdir().unwrap();
    let model = model_with(d.path(), |_| {});
    let lora = model.join("lora-skeletal.safetensors");
    let mut bytes = std::fs::read(&lora).unwrap();
    std::fs::remove_file(&lora).unwrap();
    // safetensors: an 8-byte header length, the JSON header, then the data
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let (name, info) = header
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, v)| *k != "__metadata__" && v["dtype"] == "F32")
        .unwrap();
    let start = 8 + n + info["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&lora, &bytes).unwrap();
    let out = generate_with(d.path(), &model);
    refused(&out, &["lora-skeletal.safetensors", name.as_str(), "NaN"]);
    assert!(!d.path().join("o.png").exists());
}
