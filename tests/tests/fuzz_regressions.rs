//! Every input the fuzz targets start from or once failed on (`fuzz/seeds/`, `fuzz/regressions/`)
//! and the project's own files of each kind, run through the same functions the fuzz targets
//! call: each must return, never panic. `scripts/fuzz.sh` does the fuzzing itself.

// The fuzz crate's functions are public there, private to this test.
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::path::{Path, PathBuf};

type Target = (&'static str, fn(&[u8]));

const TARGETS: &[Target] = &[
    ("pose_json", targets::pose_json),
    ("manifest", targets::manifest),
    ("model_config", targets::model_config),
    ("train_toml", targets::train_toml),
    ("safetensors_header", targets::safetensors_header),
    ("image", targets::image),
    ("synth_seed", targets::synth_seed),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn every_fuzz_target_is_listed_here() {
    let mut declared: Vec<String> = files_in(&root().join("fuzz/fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    declared.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(declared, listed);
}

#[test]
fn seeds_and_past_failures_return_without_a_panic() {
    let mut ran = 0;
    for (name, run) in TARGETS {
        let seeds = files_in(&root().join("fuzz/seeds").join(name));
        let found = files_in(&root().join("fuzz/regressions").join(name));
        for file in seeds.iter().chain(&found) {
            let bytes = std::fs::read(file).unwrap();
            run(&bytes);
            ran += 1;
        }
    }
    assert!(ran >= 8, "only {ran} seed files");
}

#[test]
fn the_projects_own_files_parse_through_the_fuzzed_readers() {
    let r = root();
    let read = |p: &str| std::fs::read(r.join(p)).unwrap();
    for pose in files_in(&r.join("assets/poses")) {
        let text = std::fs::read_to_string(&pose).unwrap();
        let opts = skeleguide_engine::pose::io::ImportOptions::default();
        skeleguide_engine::pose::io::parse_pose_json(&text, "pose", &opts)
            .unwrap_or_else(|e| panic!("{}: {e}", pose.display()));
    }
    let config = String::from_utf8(read("assets/models/tiny/config.json")).unwrap();
    skeleguide_engine::modeldir::ModelConfig::parse(&config, Path::new("config.json")).unwrap();
    for toml in files_in(&r.join("trainer/configs")) {
        let text = std::fs::read_to_string(&toml).unwrap();
        skeleguide_trainer::config::TrainConfig::parse(&text, &toml)
            .unwrap_or_else(|e| panic!("{}: {e}", toml.display()));
    }
    let seed = read("fuzz/seeds/safetensors_header/w.safetensors");
    let expected = [("w".to_string(), vec![2, 3])];
    skeleguide_engine::modeldir::check_shapes_in(&seed, Path::new("w"), &expected).unwrap();
    skeleguide_engine::modeldir::check_finite_in(&seed, Path::new("w")).unwrap();
    for image in files_in(&r.join("fuzz/seeds/image")) {
        let bytes = std::fs::read(&image).unwrap();
        let img = skeleguide_engine::imageio::decode_dynamic(&bytes, "image").unwrap();
        assert_eq!((img.width(), img.height()), (12, 8), "{}", image.display());
    }
    let manifest = String::from_utf8(read("fuzz/seeds/manifest/two-records.jsonl")).unwrap();
    // Every field is valid; only the files it names are absent outside their data set.
    let e = skeleguide_trainer::data::manifest::Manifest::parse(
        &manifest,
        Path::new("set/manifest.jsonl"),
    )
    .unwrap_err();
    let skeleguide_trainer::data::manifest::ManifestError::Invalid { problems, total } = e else {
        panic!("{e}");
    };
    assert_eq!(total, 10, "{problems:?}");
    assert!(
        problems.iter().all(|p| p.ends_with("does not exist")),
        "{problems:?}"
    );
}

#[test]
fn a_truncated_header_and_an_absurd_one_are_errors_naming_the_file() {
    let seed = std::fs::read(root().join("fuzz/seeds/safetensors_header/w.safetensors")).unwrap();
    for bad in [&seed[..5], &seed[..seed.len() - 4]] {
        let e = skeleguide_engine::modeldir::check_finite_in(bad, Path::new("w.safetensors"))
            .unwrap_err();
        assert!(e.to_string().contains("w.safetensors"), "{e}");
    }
    let mut huge = seed.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = skeleguide_engine::modeldir::check_finite_in(&huge, Path::new("w.safetensors"))
        .unwrap_err();
    assert!(e.to_string().contains("not a safetensors file"), "{e}");
}

#[test]
fn a_jpeg_claiming_far_more_pixels_than_its_bytes_hold_is_refused_at_once() {
    let bomb = std::fs::read(root().join("fuzz/regressions/image/jpeg-16mp-in-1kb")).unwrap();
    let t = std::time::Instant::now();
    let e = skeleguide_engine::imageio::decode_dynamic(&bomb, "bomb.jpg").unwrap_err();
    assert!(
        e.to_string().contains("65320x248") && e.to_string().contains("truncated"),
        "{e}"
    );
    assert!(t.elapsed() < std::time::Duration::from_millis(100));
    // the project's own JPEG seed still decodes
    let jpg = std::fs::read(root().join("fuzz/seeds/image/12x8.jpg")).unwrap();
    skeleguide_engine::imageio::decode_dynamic(&jpg, "seed.jpg").unwrap();
}
