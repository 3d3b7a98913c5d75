//! `skeleguide bench`: the combined run and the existing subcommands emit valid JSON (no timing
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
