//! Manifest data sets: the synthetic round trip, a hand-written real-style manifest, and the
//! errors of broken ones (file, line and field named).

use skeleguide_trainer::data::synth::DEFAULT_MIN_PERSON_HEIGHT;
use skeleguide_trainer::data::synth::{write_dataset, SynthOptions};
use skeleguide_trainer::data::{example_seed, generate_example, Manifest, ManifestError, Split};
use std::path::Path;

fn synth(dir: &Path, count: usize) {
    let opts = SynthOptions {
        count,
        seed: 77,
        split: Split::Train,
        size: 96,
        min_person_height: DEFAULT_MIN_PERSON_HEIGHT,
        threads: 2,
    };
    write_dataset(dir, &opts, &|| {}).unwrap();
}

#[test]
fn synthetic_data_sets_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 4);
    // the directory or the file itself
    let m = Manifest::open(dir.path()).unwrap();
    let m2 = Manifest::open(&dir.path().join("manifest.jsonl")).unwrap();
    assert_eq!(m.len(), 4);
    assert_eq!(m.records, m2.records);
    for (i, r) in m.records.iter().enumerate() {
        assert_eq!(r.line, i + 1);
        assert_eq!(r.id, format!("train-{i:06}"));
        assert!(r.mask.is_some() && r.layout.is_some());
        assert!(r.fields.contains_key("facts"));
        let s = r.load().unwrap();
        let ex = generate_example(
            96,
            DEFAULT_MIN_PERSON_HEIGHT,
            example_seed(77, Split::Train, i as u64),
        )
        .unwrap();
        assert!(s.image == ex.image && s.background == ex.background);
        assert!(s.mask.as_ref().unwrap() == &ex.mask);
        assert_eq!(s.prompt, ex.prompt);
        assert_eq!(s.poses.people.len(), ex.poses.people.len());
        for (a, b) in s.poses.people.iter().zip(&ex.poses.people) {
            assert_eq!(a.joints, b.joints);
        }
    }
}

#[test]
fn reads_a_minimal_real_style_manifest() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 1);
    // only the required fields, other names, a `./` path for one, no mask, a blank line
    let text = "\n{\"background\": \"background/train-000000.png\", \"image\": \"./image/train-000000.png\", \"poses\": \"poses/train-000000.json\", \"prompt\": \"a person\", \"mask\": null}\n";
    let file = dir.path().join("real.jsonl");
    std::fs::write(&file, text).unwrap();
    let m = Manifest::open(&file).unwrap();
    assert_eq!(m.len(), 1);
    let r = &m.records[0];
    assert_eq!(r.line, 2);
    assert_eq!(r.id, "line-2");
    assert!(r.mask.is_none());
    assert_eq!(r.prompt, "a person");
    assert!(r.load().unwrap().mask.is_none());
}

fn problems(err: ManifestError) -> Vec<String> {
    match err {
        ManifestError::Invalid { problems, .. } => problems,
        other => panic!("expected Invalid, got {other}"),
    }
}

#[test]
fn broken_manifests_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 1);
    let good = r#"{"background": "background/train-000000.png", "image": "image/train-000000.png", "poses": "poses/train-000000.json", "prompt": "p"}"#;
    let lines = [
        good.to_string(),
        r#"{"background": "background/train-000000.png", "image": "image/nope.png", "poses": "poses/train-000000.json", "prompt": "p"}"#.to_string(),
        r#"{"background": "background/train-000000.png", "image": "image/train-000000.png", "poses": "poses/train-000000.json"}"#.to_string(),
        r#"{"background": 3, "image": "image/train-000000.png", "poses": "poses/train-000000.json", "prompt": "p"}"#.to_string(),
        r#"{"background": "background/train-000000.png", "image": "image/train-000000.png", "poses": "poses", "prompt": "p"}"#.to_string(),
        "{not json".to_string(),
        "[1, 2]".to_string(),
        r#"{"background": "background/train-000000.png", "image": "image/train-000000.png", "poses": "poses/train-000000.json", "prompt": 5, "mask": ""}"#.to_string(),
    ];
    let file = dir.path().join("broken.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let err = Manifest::open(&file).unwrap_err();
    let msg = err.to_string();
    let p = problems(err);
    let f = file.display().to_string();
    let expect = [
        format!("{f}:2: image: file "),
        format!("{f}:3: prompt: missing"),
        format!("{f}:4: background: expected a path string, found a number"),
        format!("{f}:5: poses: "),
        format!("{f}:6: malformed JSON"),
        format!("{f}:7: a record must be a JSON object"),
        format!("{f}:8: mask: empty path"),
        format!("{f}:8: prompt: expected a string, found a number"),
    ];
    for e in &expect {
        assert!(
            p.iter().any(|l| l.starts_with(e.as_str())),
            "no problem starting {e:?} in\n{msg}"
        );
    }
    assert!(
        !p.iter().any(|l| l.contains(":1:")),
        "line 1 is fine:\n{msg}"
    );
    assert!(
        msg.contains("does not exist") && msg.contains("is not a file"),
        "{msg}"
    );

    // no file, empty file, a directory without a manifest
    let missing = Manifest::open(&dir.path().join("nope.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("nope.jsonl") && missing.contains("cannot read"),
        "{missing}"
    );
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    let e = Manifest::open(&empty).unwrap_err().to_string();
    assert!(e.contains("empty.jsonl") && e.contains("no records"), "{e}");
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let e = Manifest::open(&sub).unwrap_err().to_string();
    assert!(e.contains("manifest.jsonl"), "{e}");
}

#[test]
fn load_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 1);
    std::fs::write(dir.path().join("bad.png"), b"not an image").unwrap();
    std::fs::write(dir.path().join("bad.json"), b"{\"people\": 3}").unwrap();
    let text = concat!(
        r#"{"background": "bad.png", "image": "image/train-000000.png", "poses": "poses/train-000000.json", "prompt": "p"}"#,
        "\n",
        r#"{"background": "background/train-000000.png", "image": "image/train-000000.png", "poses": "bad.json", "prompt": "p"}"#,
        "\n"
    );
    std::fs::write(dir.path().join("manifest.jsonl"), text).unwrap();
    let m = Manifest::open(dir.path()).unwrap();
    let e = m.records[0].load().unwrap_err().to_string();
    assert!(e.contains("bad.png"), "{e}");
    let e = m.records[1].load().unwrap_err().to_string();
    assert!(e.contains("bad.json"), "{e}");
}

#[test]
fn manifest_paths_outside_the_data_set_are_refused_with_the_record_line() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 2);
    let file = dir.path().join("manifest.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines[1]["image"] = "../../../../etc/passwd".into();
    lines[1]["background"] = "/etc/passwd".into();
    let out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&file, out.join("\n") + "\n").unwrap();
    let p = problems(Manifest::open(dir.path()).unwrap_err());
    assert!(
        p.iter()
            .any(|m| m.contains(":2: image:") && m.contains("leaves")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.contains(":2: background:") && m.contains("absolute")),
        "{p:?}"
    );
}
