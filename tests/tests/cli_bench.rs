//! `skeleguide bench`: the combined run and the subcommands emit valid JSON (no timing
//! assertions: speed figures are measured, not tested).

use skeleguide_tests::run;

fn json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn bench_quick_emits_every_figure_as_json() {
    let v = json(&["bench", "--json", "--quick"]);
    let p = &v["pipeline"];
    for k in ["generate_ms", "ae_encode_ms", "ae_decode_ms"] {
        assert!(p[k].as_f64().is_some_and(|x| x > 0.0), "{k}: {v}");
    }
    assert_eq!(p["reason_steps"], 2);
    assert_eq!(p["working_size"], "128x96");
    // a fresh random model has no PoseInverter: reported, not an error
    if p["inverter_ms"].is_null() {
        assert!(p["inverter"].as_str().unwrap().starts_with("no inverter"));
    }
    assert!(v["dit"]["rows"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(v["ui"].is_null());
    assert!(v["skipped"][0].as_str().unwrap().starts_with("ui:"));
    if cfg!(target_os = "linux") {
        assert!(v["peak_rss_mib"].as_f64().is_some_and(|m| m > 1.0));
    }
    // the per-group subcommand still works
    let d = json(&["bench", "dit", "--quick", "--json"]);
    assert_eq!(d["preset"], "tiny");
}

#[test]
fn bench_ui_measures_the_editor_without_a_display() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    skeleguide_engine::modeldir::init_random(&model, "tiny", 1).unwrap();
    // the frames run on egui's context alone: no window, so no display is needed
    let bench_ui = |model: &std::path::Path| {
        std::process::Command::new(skeleguide_tests::skeleguide_bin())
            .args(["bench", "ui", "--json", "--model"])
            .arg(model)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .unwrap()
    };
    let out = bench_ui(&model);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["scene"], "1024x768");
    assert_eq!(v["people"], 5);
    // a number, not null: frames were measured while the engine thread rendered
    for k in [
        "frame_ms_idle",
        "frame_ms_editing",
        "frame_ms_during_render",
        "preview_ms_8_steps",
    ] {
        assert!(v[k].as_f64().is_some_and(|x| x > 0.0), "{k}: {v}");
    }
    let absent = dir.path().join("absent");
    let out = bench_ui(&absent);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("absent") && err.contains("not found"), "{err}");
    assert!(out.stdout.is_empty());
}
