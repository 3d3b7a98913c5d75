//! `FluxAe`: a tiny random BFL-format autoencoder checkpoint, written here with candle's own
//! `flux::autoencoder` modules (so the tensor names are those of `ae.safetensors`), loads
//! through our loader, round-trips shapes, encodes deterministically with the mean, and
//! reports missing or mis-shaped tensors by name. The numbers are checked against diffusers'
//! own autoencoder in `flux_reference.rs`.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder, VarMap};
use candle_transformers::models::flux::autoencoder::{Decoder, Encoder};
use skeleguide_engine::model::{Autoencoder, FluxAe, FluxAeConfig, ModelError};
use std::collections::HashMap;
use std::path::Path;

const DEV: Device = Device::Cpu;

fn tiny_cfg() -> FluxAeConfig {
    FluxAeConfig {
        resolution: 32,
        in_channels: 3,
        ch: 32,
        out_ch: 3,
        ch_mult: vec![1, 2],
        num_res_blocks: 1,
        z_channels: 4,
        scale_factor: 0.3611,
        shift_factor: 0.1159,
    }
}

/// Writes a random checkpoint with BFL names and returns its tensors.
fn write_checkpoint(path: &Path, cfg: &FluxAeConfig) -> HashMap<String, Tensor> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &DEV);
    Encoder::new(cfg, vb.pp("encoder")).unwrap();
    Decoder::new(cfg, vb.pp("decoder")).unwrap();
    let mut map: HashMap<String, Tensor> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    // GroupNorm weights from a fresh VarMap are zero (Init::Const(0)); make them non-trivial
    // so the outputs actually depend on the input.
    for (k, t) in map.iter_mut() {
        if k.contains("norm") && k.ends_with(".weight") {
            *t = t.ones_like().unwrap();
        }
    }
    candle_core::safetensors::save(&map, path).unwrap();
    map
}

fn images(b: usize, h: usize, w: usize) -> Tensor {
    let n = b * 3 * h * w;
    let v: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    Tensor::from_vec(v, (b, 3, h, w), &DEV).unwrap()
}

#[test]
fn bfl_names_match_the_released_layout() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ae.safetensors");
    let map = write_checkpoint(&p, &tiny_cfg());
    for name in [
        "encoder.conv_in.weight",
        "encoder.down.0.block.0.norm1.weight",
        "encoder.down.0.downsample.conv.weight",
        "encoder.down.1.block.0.nin_shortcut.weight",
        "encoder.mid.attn_1.q.weight",
        "encoder.mid.block_2.conv2.bias",
        "encoder.norm_out.weight",
        "encoder.conv_out.weight",
        "decoder.conv_in.weight",
        "decoder.up.1.upsample.conv.weight",
        "decoder.up.0.block.1.conv1.weight",
        "decoder.mid.attn_1.proj_out.bias",
        "decoder.conv_out.weight",
    ] {
        assert!(map.contains_key(name), "missing {name}");
    }
    // The encoder's conv_out gives mean and log-variance: 2 * z channels.
    assert_eq!(map["encoder.conv_out.weight"].dims(), &[8, 64, 3, 3]);
}

#[test]
fn loads_and_round_trips_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ae.safetensors");
    let cfg = tiny_cfg();
    write_checkpoint(&p, &cfg);
    let ae = FluxAe::load_with_config(&p, &cfg, &DEV, DType::F32).unwrap();
    assert_eq!(ae.latent_channels(), 4);
    assert_eq!(ae.downsample(), 2);
    for (h, w) in [(16, 16), (12, 20)] {
        let x = images(2, h, w);
        let z = ae.encode(&x).unwrap();
        assert_eq!(z.dims(), &[2, 4, h / 2, w / 2]);
        let y = ae.decode(&z).unwrap();
        assert_eq!(y.dims(), &[2, 3, h, w]);
        assert_eq!(y.dtype(), DType::F32);
        let s = y
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(s.is_finite());
    }
}

#[test]
fn encode_is_the_scaled_shifted_mean_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ae.safetensors");
    let cfg = tiny_cfg();
    let map = write_checkpoint(&p, &cfg);
    let ae = FluxAe::load_with_config(&p, &cfg, &DEV, DType::F32).unwrap();
    let x = images(1, 16, 16);
    let z1 = ae.encode(&x).unwrap();
    let z2 = ae.encode(&x).unwrap();
    let d = (&z1 - &z2).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "encode must not sample");

    // Reference: candle's encoder, first z channels (the mean), then (z - shift) * scale once.
    let enc = Encoder::new(
        &cfg,
        VarBuilder::from_tensors(map.clone(), DType::F32, &DEV).pp("encoder"),
    )
    .unwrap();
    let moments = enc.forward(&x).unwrap();
    let mean = moments.narrow(1, 0, 4).unwrap();
    let want = ((mean - 0.1159).unwrap() * 0.3611).unwrap();
    let err = (&z1 - &want).unwrap().abs().unwrap().max_all().unwrap();
    assert!(err.to_scalar::<f32>().unwrap() < 1e-5);

    // Decode undoes the scaling before the decoder.
    let dec = Decoder::new(
        &cfg,
        VarBuilder::from_tensors(map, DType::F32, &DEV).pp("decoder"),
    )
    .unwrap();
    let want = dec
        .forward(&((&z1 / 0.3611).unwrap() + 0.1159).unwrap())
        .unwrap();
    let got = ae.decode(&z1).unwrap();
    let err = (&got - &want).unwrap().abs().unwrap().max_all().unwrap();
    assert!(err.to_scalar::<f32>().unwrap() < 1e-5);
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ae.safetensors");
    let cfg = tiny_cfg();
    let mut map = write_checkpoint(&p, &cfg);
    map.remove("decoder.mid.attn_1.k.weight");
    candle_core::safetensors::save(&map, &p).unwrap();
    let err = FluxAe::load_with_config(&p, &cfg, &DEV, DType::F32).unwrap_err();
    match &err {
        ModelError::MissingTensor { name, expected } => {
            assert_eq!(name, "decoder.mid.attn_1.k.weight");
            assert_eq!(expected, &vec![64, 64, 1, 1]);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("decoder.mid.attn_1.k.weight"));
}

#[test]
fn misshaped_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ae.safetensors");
    let cfg = tiny_cfg();
    let mut map = write_checkpoint(&p, &cfg);
    map.insert(
        "encoder.conv_in.weight".into(),
        Tensor::zeros((32, 4, 3, 3), DType::F32, &DEV).unwrap(),
    );
    candle_core::safetensors::save(&map, &p).unwrap();
    let err = FluxAe::load_with_config(&p, &cfg, &DEV, DType::F32).unwrap_err();
    match &err {
        ModelError::ShapeMismatch {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, "encoder.conv_in.weight");
            assert_eq!(expected, &vec![32, 3, 3, 3]);
            assert_eq!(found, &vec![32, 4, 3, 3]);
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn wrong_config_for_the_file_names_a_tensor() {
    // A real-size config against the tiny file: the first tensor already disagrees.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ae.safetensors");
    write_checkpoint(&p, &tiny_cfg());
    let err = FluxAe::load(&p, &DEV, DType::F32).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::ShapeMismatch { .. } | ModelError::MissingTensor { .. }
        ),
        "{err}"
    );
}

#[test]
fn missing_file_and_bad_inputs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = FluxAe::load(&dir.path().join("nope.safetensors"), &DEV, DType::F32).unwrap_err();
    assert!(matches!(err, ModelError::Io { .. }), "{err}");
    let err = FluxAe::load(&dir.path().join("x"), &DEV, DType::BF16).unwrap_err();
    assert!(matches!(err, ModelError::UnsupportedDtype { .. }), "{err}");

    let p = dir.path().join("ae.safetensors");
    let cfg = tiny_cfg();
    write_checkpoint(&p, &cfg);
    let ae = FluxAe::load_with_config(&p, &cfg, &DEV, DType::F32).unwrap();
    // Odd size, wrong channels, wrong rank, wrong latent channels.
    assert!(ae.encode(&images(1, 15, 16)).is_err());
    assert!(ae
        .encode(&Tensor::zeros((1, 4, 16, 16), DType::F32, &DEV).unwrap())
        .is_err());
    assert!(ae
        .encode(&Tensor::zeros((3, 16, 16), DType::F32, &DEV).unwrap())
        .is_err());
    assert!(ae
        .decode(&Tensor::zeros((1, 3, 8, 8), DType::F32, &DEV).unwrap())
        .is_err());
    // An unsupported config is an error, not a panic.
    let mut bad = cfg.clone();
    bad.ch = 20;
    assert!(matches!(
        FluxAe::load_with_config(&p, &bad, &DEV, DType::F32).unwrap_err(),
        ModelError::InvalidConfig(_)
    ));
}
