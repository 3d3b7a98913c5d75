//! `TinyText`: vocabulary, tokenisation (lower case, unknown words, truncation flag), shapes
//! that match the tiny DiT, any prompt, save/load, and a gradient for every parameter.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use skeleguide_engine::model::tiny_text::{words, BOS, PAD, UNK};
use skeleguide_engine::model::{DitConfig, ModelError, TextEncoder, TinyText, TinyTextConfig};

const DEV: Device = Device::Cpu;

const CORPUS: &[&str] = &[
    "A woman in a red coat sitting on the bench",
    "a man standing in the kitchen",
    "Two people walking in the park, a man and a woman",
    "a child waving",
];

fn cfg() -> TinyTextConfig {
    TinyTextConfig {
        max_len: 12,
        ..TinyTextConfig::with_vocab(TinyText::build_vocab(CORPUS, 1))
    }
}

#[test]
fn vocabulary_is_lowercase_counted_and_deterministic() {
    let v = TinyText::build_vocab(CORPUS, 1);
    assert_eq!(&v[..3], &[PAD, UNK, BOS]);
    // "a" is the most frequent word, then "in"/"woman"/"man" ...
    assert_eq!(v[3], "a");
    assert!(v.contains(&"woman".to_string()));
    assert!(!v.iter().any(|w| w.chars().any(|c| c.is_uppercase())));
    assert_eq!(v, TinyText::build_vocab(CORPUS, 1));
    let v2 = TinyText::build_vocab(CORPUS, 2);
    assert!(v2.contains(&"woman".to_string()));
    assert!(!v2.contains(&"kitchen".to_string()));
    let words: Vec<String> = words("Hello, WORLD! It's 3pm — Über-cool").collect();
    assert_eq!(words, ["hello", "world", "it", "s", "3pm", "über", "cool"]);
}

#[test]
fn defaults_match_the_tiny_dit() {
    let dit = DitConfig::tiny();
    let c = TinyTextConfig::default();
    assert_eq!(c.token_dim, dit.context_in_dim);
    assert_eq!(c.pooled_dim, dit.vec_in_dim);
    let t = TinyText::random(
        &TinyTextConfig::with_vocab(TinyText::build_vocab(CORPUS, 1)),
        0,
        &DEV,
    )
    .unwrap();
    assert_eq!(t.token_dim(), 128);
    assert_eq!(t.pooled_dim(), 128);
    let f = t.encode(&["a woman"]).unwrap();
    assert_eq!(f.tokens.dims(), &[1, c.max_len, 128]);
    assert_eq!(f.pooled.dims(), &[1, 128]);
}

#[test]
fn tokenisation_lowercase_unknown_and_truncation() {
    let c = cfg();
    let t = TinyText::random(&c, 1, &DEV).unwrap();
    let id = |w: &str| c.vocab.iter().position(|v| v == w).unwrap() as u32;
    let (ids, cut) = t.tokenize("A WOMAN Sitting");
    assert_eq!(ids, vec![2, id("a"), id("woman"), id("sitting")]);
    assert!(!cut);
    let (ids, _) = t.tokenize("a zebra");
    assert_eq!(ids, vec![2, id("a"), 1]);
    let (ids, cut) = t.tokenize("");
    assert_eq!(ids, vec![2]);
    assert!(!cut);
    // max_len 12 = <bos> + 11 words.
    let eleven = "a ".repeat(11);
    let (ids, cut) = t.tokenize(&eleven);
    assert_eq!(ids.len(), 12);
    assert!(!cut);
    let twelve = "a ".repeat(12);
    let (ids, cut) = t.tokenize(&twelve);
    assert_eq!(ids.len(), 12);
    assert!(cut);
    assert!(t.encode(&[twelve.as_str()]).unwrap().truncated);
    assert!(!t.encode(&[eleven.as_str()]).unwrap().truncated);
}

#[test]
fn any_prompt_encodes() {
    let t = TinyText::random(&cfg(), 2, &DEV).unwrap();
    let long = "word ".repeat(200_000);
    let prompts = [
        "",
        " \t\n ",
        "Ünïcødé 🙂 日本語のテキスト \u{0} \u{200b} \u{202e} ﷽",
        "!!!???...",
        long.as_str(),
    ];
    let f = t.encode(&prompts).unwrap();
    assert_eq!(f.tokens.dims(), &[5, 12, 128]);
    assert_eq!(f.pooled.dims(), &[5, 128]);
    assert!(f.truncated);
    let s = f.tokens.sum_all().unwrap().to_scalar::<f32>().unwrap()
        + f.pooled.sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(s.is_finite());
    assert!(t.encode(&[]).is_err());
    // Padding positions are zero; <bos> is not.
    let f = t.encode(&["a man"]).unwrap();
    let tail = f
        .tokens
        .narrow(1, 3, 9)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap();
    assert_eq!(tail.to_scalar::<f32>().unwrap(), 0.0);
    let head = f
        .tokens
        .narrow(1, 0, 3)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap();
    assert!(head.to_scalar::<f32>().unwrap() > 0.0);
}

#[test]
fn batching_does_not_change_a_prompt() {
    let t = TinyText::random(&cfg(), 3, &DEV).unwrap();
    let a = t.encode(&["a woman sitting"]).unwrap();
    let b = t
        .encode(&["a woman sitting", "two people walking in the park"])
        .unwrap();
    let d = (&a.pooled - &b.pooled.narrow(0, 0, 1).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d < 1e-5);
    // Different prompts differ.
    let c = t.encode(&["a man standing"]).unwrap();
    let d = (&a.pooled - &c.pooled)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d > 1e-4);
}

#[test]
fn every_parameter_gets_a_nonzero_gradient() {
    let c = cfg();
    let vm = TinyText::seeded_varmap(&c, 4, &DEV).unwrap();
    let t = TinyText::new(VarBuilder::from_varmap(&vm, DType::F32, &DEV), &c).unwrap();
    let f = t
        .encode(&["a woman in a red coat", "two people walking", "zebra"])
        .unwrap();
    // A fixed random projection of both outputs.
    let rt = Tensor::randn(0f32, 1f32, f.tokens.dims(), &DEV).unwrap();
    let rp = Tensor::randn(0f32, 1f32, f.pooled.dims(), &DEV).unwrap();
    let loss = ((f.tokens * rt).unwrap().sum_all().unwrap()
        + (f.pooled * rp).unwrap().sum_all().unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let data = vm.data().lock().unwrap();
    assert_eq!(data.len(), t.parameters().len());
    for (name, var) in data.iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let n = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n > 0.0 && n.is_finite(), "zero gradient for {name}");
    }
}

#[test]
fn save_load_round_trip_and_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("text.safetensors");
    let c = cfg();
    let t = TinyText::random(&c, 5, &DEV).unwrap();
    t.save(&p).unwrap();
    let back = TinyText::load(&p, &c, &DEV).unwrap();
    let a = t.encode(&["a woman"]).unwrap();
    let b = back.encode(&["a woman"]).unwrap();
    let d = (a.tokens - b.tokens)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);

    // The config (with its vocabulary) round-trips through JSON.
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<TinyTextConfig>(&json).unwrap(), c);

    // A bigger vocabulary than the file's: the embedding is named.
    let mut bigger = c.clone();
    bigger.vocab.push("zebra".into());
    match TinyText::load(&p, &bigger, &DEV).unwrap_err() {
        ModelError::ShapeMismatch { name, .. } => assert_eq!(name, "tok_emb.weight"),
        e => panic!("unexpected {e}"),
    }
    let mut map = t.parameters().clone();
    map.remove("layers.1.mlp.fc2.bias");
    candle_core::safetensors::save(&map, &p).unwrap();
    match TinyText::load(&p, &c, &DEV).unwrap_err() {
        ModelError::MissingTensor { name, .. } => assert_eq!(name, "layers.1.mlp.fc2.bias"),
        e => panic!("unexpected {e}"),
    }
    // A vocabulary without the special tokens is rejected.
    let bad = TinyTextConfig::with_vocab(vec!["a".into()]);
    assert!(matches!(
        TinyText::random(&bad, 0, &DEV).unwrap_err(),
        ModelError::InvalidConfig(_)
    ));
}
