//! `FluxText`: tiny random T5 and CLIP checkpoints (candle-transformers' own modules write the
//! tensor names) with word-level `tokenizer.json` files built with the `tokenizers` crate load
//! through `FluxText::load`, and encode prompts with the right shapes, whatever the prompt.
//! The numbers are checked against transformers' own T5 and CLIP in `flux_reference.rs`.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::t5::{Config as T5Config, T5EncoderModel};
use skeleguide_engine::model::{max_abs_diff, FluxText, FluxTextOptions, ModelError, TextEncoder};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::normalizers::Lowercase;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::Tokenizer;

const DEV: Device = Device::Cpu;
const WORDS: &[&str] = &[
    "a", "woman", "man", "in", "red", "coat", "sitting", "on", "the", "bench", "standing", "room",
    "two", "people",
];

const T5_CONFIG: &str = r#"{
  "vocab_size": 40, "d_model": 16, "d_kv": 4, "d_ff": 24, "num_layers": 2, "num_heads": 4,
  "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16,
  "dropout_rate": 0.0, "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0,
  "feed_forward_proj": "gated-gelu", "is_encoder_decoder": true, "tie_word_embeddings": false,
  "pad_token_id": 0, "eos_token_id": 1
}"#;

// A full CLIPModel-style config: the text tower is under `text_config`.
const CLIP_CONFIG: &str = r#"{
  "text_config": {
    "vocab_size": 40, "hidden_size": 24, "intermediate_size": 48, "num_hidden_layers": 2,
    "num_attention_heads": 2, "max_position_embeddings": 12, "hidden_act": "quick_gelu",
    "projection_dim": 24
  },
  "vision_config": {}
}"#;

/// A lower-casing word-level tokenizer with `specials` first and a post-processor template.
fn write_tokenizer(path: &Path, specials: &[&str], template: &str, marks: &[&str]) {
    let vocab = specials
        .iter()
        .chain(WORDS.iter())
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as u32));
    let model = WordLevel::builder()
        .vocab(vocab.collect())
        .unk_token("<unk>".into())
        .build()
        .unwrap();
    let special_tokens: Vec<(String, u32)> = marks
        .iter()
        .map(|m| {
            let id = specials.iter().position(|s| s == m).unwrap() as u32;
            (m.to_string(), id)
        })
        .collect();
    let post = TemplateProcessing::builder()
        .try_single(template)
        .unwrap()
        .special_tokens(special_tokens)
        .build()
        .unwrap();
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(Lowercase)).unwrap();
    tok.with_pre_tokenizer(Some(Whitespace {}));
    tok.with_post_processor(Some(post));
    tok.save(path, false).unwrap();
}

fn tensors_of(vm: &VarMap) -> HashMap<String, Tensor> {
    vm.data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let t = v.as_tensor().clone();
            // Fresh VarMap norm weights can be zero; use ones so outputs are not trivial.
            let t = if k.contains("norm") && k.ends_with("weight") {
                t.ones_like().unwrap()
            } else {
                t
            };
            (k.clone(), t)
        })
        .collect()
}

/// Writes DIR/t5 and DIR/clip; returns the two weight maps.
fn write_model_dir(dir: &Path) -> (HashMap<String, Tensor>, HashMap<String, Tensor>) {
    let t5_dir = dir.join("t5");
    let clip_dir = dir.join("clip");
    std::fs::create_dir_all(&t5_dir).unwrap();
    std::fs::create_dir_all(&clip_dir).unwrap();

    std::fs::write(t5_dir.join("config.json"), T5_CONFIG).unwrap();
    write_tokenizer(
        &t5_dir.join("tokenizer.json"),
        &["<pad>", "</s>", "<unk>"],
        "$A </s>",
        &["</s>"],
    );
    let cfg: T5Config = serde_json::from_str(T5_CONFIG).unwrap();
    let vm = VarMap::new();
    // Real T5 checkpoints store the embedding as `shared.weight`.
    vm.get(
        (40, 16),
        "shared.weight",
        candle_nn::Init::Randn {
            mean: 0.,
            stdev: 1.,
        },
        DType::F32,
        &DEV,
    )
    .unwrap();
    T5EncoderModel::load(VarBuilder::from_varmap(&vm, DType::F32, &DEV), &cfg).unwrap();
    let t5 = tensors_of(&vm);
    candle_core::safetensors::save(&t5, t5_dir.join("model.safetensors")).unwrap();

    std::fs::write(clip_dir.join("config.json"), CLIP_CONFIG).unwrap();
    write_tokenizer(
        &clip_dir.join("tokenizer.json"),
        &["<|startoftext|>", "<|endoftext|>", "<unk>"],
        "<|startoftext|> $A <|endoftext|>",
        &["<|startoftext|>", "<|endoftext|>"],
    );
    let ccfg = ClipTextConfig {
        vocab_size: 40,
        embed_dim: 24,
        activation: Activation::QuickGelu,
        intermediate_size: 48,
        max_position_embeddings: 12,
        pad_with: None,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        projection_dim: 24,
    };
    let vm = VarMap::new();
    ClipTextTransformer::new(
        VarBuilder::from_varmap(&vm, DType::F32, &DEV).pp("text_model"),
        &ccfg,
    )
    .unwrap();
    let clip = tensors_of(&vm);
    candle_core::safetensors::save(&clip, clip_dir.join("model.safetensors")).unwrap();
    (t5, clip)
}

fn opts() -> FluxTextOptions {
    FluxTextOptions { t5_max_len: 8 }
}

#[test]
fn loads_and_encodes_with_the_right_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (t5_map, _) = write_model_dir(dir.path());
    assert!(t5_map.contains_key("shared.weight"));
    assert!(
        t5_map.contains_key("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    );
    let te = FluxText::load_with(dir.path(), &DEV, DType::F32, &opts()).unwrap();
    assert_eq!(te.token_dim(), 16);
    assert_eq!(te.pooled_dim(), 24);
    assert_eq!(te.max_len(), 8);
    let f = te.encode(&["A woman in a RED coat", "two people"]).unwrap();
    assert_eq!(f.tokens.dims(), &[2, 8, 16]);
    assert_eq!(f.pooled.dims(), &[2, 24]);
    assert!(!f.truncated);
    let s = f
        .tokens
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(s.is_finite() && s > 0.0);
    // Deterministic.
    let g = te.encode(&["A woman in a RED coat", "two people"]).unwrap();
    assert_eq!(max_abs_diff(&f.tokens, &g.tokens), 0.0);
    assert_eq!(max_abs_diff(&f.pooled, &g.pooled), 0.0);
}

#[test]
fn default_t5_length_is_512() {
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path());
    let te = FluxText::load(dir.path(), &DEV, DType::F32).unwrap();
    assert_eq!(te.max_len(), 512);
    let f = te.encode(&["a man standing"]).unwrap();
    assert_eq!(f.tokens.dims(), &[1, 512, 16]);
}

#[test]
fn pooled_vector_does_not_depend_on_batch_padding() {
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path());
    let te = FluxText::load_with(dir.path(), &DEV, DType::F32, &opts()).unwrap();
    let alone = te.encode(&["two people"]).unwrap();
    let batched = te
        .encode(&["two people", "a man in a red coat standing in the room"])
        .unwrap();
    let d = max_abs_diff(&alone.pooled, &batched.pooled.narrow(0, 0, 1).unwrap());
    assert!(d < 1e-5, "pooled changed with padding: {d}");
    let d = max_abs_diff(&alone.tokens, &batched.tokens.narrow(0, 0, 1).unwrap());
    assert!(d < 1e-5, "tokens changed with batching: {d}");
}

#[test]
fn no_prompt_crashes_it() {
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path());
    let te = FluxText::load_with(dir.path(), &DEV, DType::F32, &opts()).unwrap();
    let long = "a woman sitting on the bench ".repeat(5000);
    let prompts = [
        "",
        "   ",
        "Ünïcødé 🙂 日本語のテキスト \u{0} \u{200b} \u{202e}",
        "\n\t\r",
        long.as_str(),
    ];
    for p in prompts {
        let f = te.encode(&[p]).unwrap();
        assert_eq!(f.tokens.dims(), &[1, 8, 16]);
        assert_eq!(f.pooled.dims(), &[1, 24]);
        let s = f.pooled.sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(s.is_finite());
    }
    assert!(!te.encode(&[""]).unwrap().truncated);
    assert!(te.encode(&[long.as_str()]).unwrap().truncated);
    // 10 words + </s> exceed T5's 8 tokens (CLIP's 12 still fit): the flag is set.
    assert!(
        te.encode(&["a woman in a red coat sitting on the bench"])
            .unwrap()
            .truncated
    );
    assert!(!te.encode(&["a man"]).unwrap().truncated);
    // An empty batch is an error, not a panic.
    assert!(te.encode(&[]).is_err());
}

#[test]
fn missing_or_misshaped_tensors_and_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t5, mut clip) = write_model_dir(dir.path());

    clip.remove("text_model.final_layer_norm.bias");
    candle_core::safetensors::save(&clip, dir.path().join("clip/model.safetensors")).unwrap();
    let err = FluxText::load_with(dir.path(), &DEV, DType::F32, &opts()).unwrap_err();
    match &err {
        ModelError::MissingTensor { name, .. } => {
            assert_eq!(name, "text_model.final_layer_norm.bias")
        }
        other => panic!("unexpected {other}"),
    }

    let name = "encoder.block.1.layer.1.DenseReluDense.wo.weight";
    assert!(t5.contains_key(name), "{:?}", t5.keys().collect::<Vec<_>>());
    t5.insert(
        name.into(),
        Tensor::zeros((16, 7), DType::F32, &DEV).unwrap(),
    );
    candle_core::safetensors::save(&t5, dir.path().join("t5/model.safetensors")).unwrap();
    let err = FluxText::load_with(dir.path(), &DEV, DType::F32, &opts()).unwrap_err();
    match &err {
        ModelError::ShapeMismatch { name: n, found, .. } => {
            assert_eq!(n, name);
            assert_eq!(found, &vec![16, 7]);
        }
        other => panic!("unexpected {other}"),
    }

    std::fs::remove_file(dir.path().join("t5/tokenizer.json")).unwrap();
    let err = FluxText::load_with(dir.path(), &DEV, DType::F32, &opts()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}
