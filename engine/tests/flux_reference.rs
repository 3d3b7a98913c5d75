//! `FluxAe` and `FluxText` against outputs of the reference implementations: diffusers'
//! `AutoencoderKL` (FLUX's configuration, scaled down, saved under BFL's `ae.safetensors`
//! names) and transformers' `T5EncoderModel` / `CLIPTextModel` with their own tokenizer.json
//! files. The fixtures in `tests/data/flux_ref/` come from `tests/data/make_flux_references.py`;
//! the references were computed in float64 and used as FLUX uses them.

use candle_core::{DType, Device, Tensor};
use skeleguide_engine::model::{
    Autoencoder, FluxAe, FluxAeConfig, FluxText, FluxTextOptions, TextEncoder,
};
use std::collections::HashMap;
use std::path::PathBuf;

const DEV: Device = Device::Cpu;
/// Allowed max|ours - reference| / max|reference| (f32 against a float64 reference).
const TOL: f32 = 1e-5;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/flux_ref")
}

fn tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(data().join(name), &DEV).unwrap()
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(data().join(name)).unwrap()).unwrap()
}

/// max|got - want| / max|want|, after checking the shapes agree.
fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims());
    let got = got.to_dtype(DType::F32).unwrap();
    let max = |t: &Tensor| {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let scale = max(want);
    assert!(scale > 0.0, "reference is all zeros");
    max(&(got - want).unwrap()) / scale
}

fn check(what: &str, got: &Tensor, want: &Tensor) {
    let e = rel_err(got, want);
    eprintln!("{what}: max rel err {e:.3e}");
    assert!(e <= TOL, "{what}: max rel err {e:.3e} > {TOL:e}");
}

fn ae_config() -> FluxAeConfig {
    let j = json("ae_config.json");
    let n = |k: &str| j[k].as_u64().unwrap() as usize;
    FluxAeConfig {
        resolution: n("resolution"),
        in_channels: n("in_channels"),
        ch: n("ch"),
        out_ch: n("out_ch"),
        ch_mult: j["ch_mult"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect(),
        num_res_blocks: n("num_res_blocks"),
        z_channels: n("z_channels"),
        scale_factor: j["scale_factor"].as_f64().unwrap(),
        shift_factor: j["shift_factor"].as_f64().unwrap(),
    }
}

#[test]
fn flux_ae_matches_diffusers_autoencoder_kl() {
    let io = tensors("ae_io.safetensors");
    let ae = FluxAe::load_with_config(
        &data().join("ae.safetensors"),
        &ae_config(),
        &DEV,
        DType::F32,
    )
    .unwrap();
    assert_eq!(ae.latent_channels(), 16);
    check(
        "ae encode",
        &ae.encode(&io["image"]).unwrap(),
        &io["latent"],
    );
    check(
        "ae decode",
        &ae.decode(&io["decode_in"]).unwrap(),
        &io["decoded"],
    );
}

fn flux_text() -> (FluxText, Vec<String>) {
    let j = json("text_io.json");
    let opts = FluxTextOptions {
        t5_max_len: j["t5_max_len"].as_u64().unwrap() as usize,
    };
    let te = FluxText::load_with(&data().join("text"), &DEV, DType::F32, &opts).unwrap();
    let prompts = j["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    (te, prompts)
}

#[test]
fn flux_text_matches_transformers_t5_and_clip() {
    let io = tensors("text_io.safetensors");
    let (te, prompts) = flux_text();
    let p: Vec<&str> = prompts.iter().map(|s| s.as_str()).collect();
    let f = te.encode(&p).unwrap();
    check("t5 last hidden state", &f.tokens, &io["t5_hidden"]);
    check("clip pooled", &f.pooled, &io["clip_pooled"]);
    // The long prompt overflows both T5's length and CLIP's 77 tokens.
    assert!(f.truncated);
}

#[test]
fn flux_text_matches_the_reference_one_prompt_at_a_time() {
    // Alone, a short prompt is padded to its own length for CLIP, not to 77 as in FLUX: the
    // causal mask must make that invisible at the end-of-text token.
    let io = tensors("text_io.safetensors");
    let (te, prompts) = flux_text();
    for (i, p) in prompts.iter().enumerate() {
        let f = te.encode(&[p.as_str()]).unwrap();
        let row = |t: &Tensor| t.narrow(0, i, 1).unwrap();
        check(&format!("t5 prompt {i}"), &f.tokens, &row(&io["t5_hidden"]));
        check(
            &format!("clip prompt {i}"),
            &f.pooled,
            &row(&io["clip_pooled"]),
        );
    }
}
