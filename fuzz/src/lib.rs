//! What each fuzz target feeds its bytes to: the same reader a user's file reaches, after the
//! file has been read. The workspace's `fuzz_regressions` test runs these functions on every
//! file in `fuzz/regressions/`, so a crash found once stays fixed.
//!
//! Every function must return (an `Ok` or an error message) for any input: a panic, an abort
//! or an allocation beyond the fuzzer's limit is the bug being looked for.

use std::path::Path;

/// Where the inputs claim to come from; nothing is ever read from or written to it.
const NOWHERE: &str = "fuzz-input";

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A pose file (OpenPose / ControlNet / COCO JSON and the editors' own formats).
pub fn pose_json(data: &[u8]) {
    if let Some(t) = text(data) {
        let opts = skeleguide_engine::pose::io::ImportOptions::default();
        if let Ok(doc) = skeleguide_engine::pose::io::parse_pose_json(t, NOWHERE, &opts) {
            // A parsed document must also survive being written back.
            let _ = skeleguide_engine::pose::io::to_json(&doc.frames, Default::default());
        }
    }
}

/// A training data set's `manifest.jsonl`.
pub fn manifest(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = skeleguide_trainer::data::manifest::Manifest::parse(
            t,
            &Path::new(NOWHERE).join("manifest.jsonl"),
        );
    }
}

/// A model directory's `config.json`.
pub fn model_config(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = skeleguide_engine::modeldir::ModelConfig::parse(t, Path::new(NOWHERE));
    }
}

/// A training configuration (TOML).
pub fn train_toml(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = skeleguide_trainer::config::TrainConfig::parse(t, Path::new(NOWHERE));
    }
}

/// A weights file: the header and finiteness checks every model directory goes through.
pub fn safetensors_header(data: &[u8]) {
    let path = Path::new(NOWHERE);
    let _ = skeleguide_engine::modeldir::check_finite_in(data, path);
    let expected = [("w".to_string(), vec![2, 3])];
    let _ = skeleguide_engine::modeldir::check_shapes_in(data, path, &expected);
}

/// A scene or layout image (PNG or JPEG).
pub fn image(data: &[u8]) {
    let _ = skeleguide_engine::imageio::decode_dynamic(data, NOWHERE);
}

/// The synthetic scene generator, at the smallest size, on the seed in the first 8 bytes: any
/// seed must give a scene or an error, never a crash.
pub fn synth_seed(data: &[u8]) {
    let mut seed = [0u8; 8];
    let n = data.len().min(8);
    seed[..n].copy_from_slice(&data[..n]);
    let _ = skeleguide_trainer::data::synth::generate_example(
        64,
        skeleguide_trainer::data::synth::DEFAULT_MIN_PERSON_HEIGHT,
        u64::from_le_bytes(seed),
    );
}
