//! `skeleguide-train ablate` on random-init model directories (2 examples).

use skeleguide_trainer::data::synth::DEFAULT_MIN_PERSON_HEIGHT;
use skeleguide_trainer::data::synth::{write_dataset, Split, SynthOptions};
use std::path::Path;
use std::process::Command;

fn set_method(dir: &Path, method: &str) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["method"] = serde_json::Value::String(method.into());
    std::fs::write(&p, v.to_string()).unwrap();
}

/// `skeleguide-train ablate --models MODELS --data DATA --out OUT EXTRA...`
fn ablate(models: &str, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skeleguide-train"))
        .args(["ablate", "--models", models, "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn ablate_writes_tables_and_grids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("test");
    let opts = SynthOptions {
        count: 2,
        seed: 4,
        split: Split::Test,
        size: 128,
        min_person_height: DEFAULT_MIN_PERSON_HEIGHT,
        threads: 1,
    };
    write_dataset(&data, &opts, &|| {}).unwrap();
    let (sg, ss) = (d.join("sg"), d.join("ss"));
    skeleguide_engine::modeldir::init_random(&sg, "tiny", 1).unwrap();
    skeleguide_engine::modeldir::init_random(&ss, "tiny", 2).unwrap();
    set_method(&ss, "single-stage");
    let out = d.join("docs");
    let notes = d.join("notes.md");
    std::fs::write(&notes, "Both from random weights.\n").unwrap();
    let models = format!("single-stage={},skeleguide={}", ss.display(), sg.display());
    let o = ablate(
        &models,
        &data,
        &out,
        &["--steps", "2", "--notes", notes.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(out.join("ablation.md")).unwrap();
    // skeleguide first (table order), then the baseline
    let a = md.find("| skeleguide |").expect(&md);
    let b = md.find("| single-stage |").expect(&md);
    assert!(a < b);
    // the single-stage baseline has no layout: its PCKh cell is n/a with the reason listed
    let row = md[b..].lines().next().unwrap();
    assert!(row.starts_with("| single-stage | n/a | n/a |"), "{row}");
    assert!(md
        .contains("single-stage: `layout_pckh` is n/a: the single-stage baseline makes no layout"));
    assert!(md.contains("Tables 2 and 3"));
    assert!(md.contains("## How the models were trained\n\nBoth from random weights.\n"));
    // the paper's direction, checked where both methods were evaluated
    let line = md
        .lines()
        .find(|l| l.starts_with("- skeleguide beats single-stage on background PSNR: "))
        .expect(&md);
    assert!(
        line.contains("**holds** (skeleguide ") || line.contains("**does not hold** (skeleguide "),
        "{line}"
    );
    assert!(md.contains(
        "- skeleguide beats implicit on background PSNR: **not measured** (implicit not evaluated)."
    ));
    assert!(md.contains("- skeleguide beats stage1-only on layout PCKh@0.5: **not measured**"));
    for m in ["skeleguide", "single-stage"] {
        let g = image::open(out.join(format!("ablation-{m}.png")))
            .unwrap()
            .into_rgb8();
        // two scenes of 128 px, three rows, 2 px gaps
        assert_eq!(g.dimensions(), (2 * 128 + 3 * 2, 3 * 128 + 4 * 2));
        assert!(md.contains(&format!("](ablation-{m}.png)")));
    }
    // the single-stage grid's layout row is the grey placeholder
    let g = image::open(out.join("ablation-single-stage.png"))
        .unwrap()
        .into_rgb8();
    assert_eq!(g.get_pixel(60, 2 + 128 + 2 + 60).0, [96, 96, 96]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("ablation.json")).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["examples"], 2);

    // a name that does not match the directory's method is refused, naming config.json
    let bad = format!("implicit={}", sg.display());
    let o = ablate(&bad, &data, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("config.json") && err.contains("implicit"),
        "{err}"
    );
    let o = ablate("bogus=x", &data, &out, &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown method `bogus`"));
    // an unreadable notes file is named
    let o = ablate(&models, &data, &out, &["--notes", "/nonexistent/notes.md"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--notes /nonexistent/notes.md"));
}
