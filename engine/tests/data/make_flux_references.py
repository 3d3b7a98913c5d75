"""Writes the FLUX reference fixtures in flux_ref/, read by engine/tests/flux_reference.rs.

Small random-weight models are built with the reference implementations themselves, so our
loaders and forward passes are checked against code we did not write:
- the autoencoder with diffusers' AutoencoderKL in FLUX's configuration scaled down (16 latent
  channels, no quant convs, scale 0.3611 / shift 0.1159), saved under BFL's ae.safetensors names;
- T5 (v1.1 / XXL style: gated-gelu, untied) with transformers' T5EncoderModel and CLIP's text
  tower with CLIPTextModel, saved by save_pretrained in the layout FluxText::load reads, with
  tokenizer.json files built here with the `tokenizers` package (a Unigram + Metaspace one for
  T5, a byte-level BPE with </w> suffixes and the specials last for CLIP, as the released ones).
Inputs and outputs are used as FLUX uses them: latents are (mean - shift) * scale of the
posterior, decode takes z / scale + shift; T5 gets ids padded to max_length with no attention
mask and gives last_hidden_state; CLIP gets ids padded to 77 and gives pooler_output (the
final-layer-normed state at the end-of-text token). References are computed in float64.
The output is the same on every run. Regenerate (from the repository root; made with torch 2.15,
diffusers 0.42.1, transformers 5.25.0, tokenizers 0.23.3):
  pip install torch diffusers transformers tokenizers safetensors
  python3 engine/tests/data/make_flux_references.py
  cargo test --release --workspace --test flux_reference
"""
import json, math, os, re
from collections import Counter
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast, T5Config, T5EncoderModel
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flux_ref")
T5_MAX_LEN = 256  # FLUX.1 schnell's length (dev: 512): relative distances reach past max_distance 128.
CLIP_MAX_LEN = 77
PROMPTS = [
    "A woman in a red coat sitting on a bench, looking left.",
    "Two people dancing in a bright studio",
    "A man standing with his arms raised, " * 40 + "photographed from the front",
    "",
]
CORPUS = [
    "a woman in a red coat sitting on a bench, looking left.",
    "a man standing with his arms raised, photographed from the front",
    "two people dancing in a bright studio",
    "a child running on the beach at sunset",
    "an old man walking with a cane in the park",
    "a dancer jumping high, her legs stretched apart",
    "three friends sitting at a table and laughing",
    "a woman kneeling on one knee, hands on her hips",
    "a boy reaching up to catch a ball",
    "two women walking side by side in the rain",
    "a person lying on the grass, seen from above",
    "a man leaning against a wall with crossed arms",
    "a girl in a blue dress waving her right hand",
    "a yoga pose on a mat in a bright room, photographed from the side",
]
# Captions start with a capital; T5 does not lower-case, so its vocabulary needs both.
CORPUS = (CORPUS + [s[0].upper() + s[1:] for s in CORPUS]) * 2


def perturb_(model, names):
    """Norm weights 1 + 0.2 N(0,1), biases 0.2 N(0,1): the defaults (1 and 0) would hide swaps."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if any(k in n for k in names):
                p.copy_((1.0 if n.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))


# ------------------------------------------------------------------ autoencoder

def bfl_name(n):
    """diffusers AutoencoderKL name -> BFL ae.safetensors name (and whether it is a 1x1 conv)."""
    rules = [
        (r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out."),
        (r"^(encoder|decoder)\.mid_block\.resnets\.0\.", r"\1.mid.block_1."),
        (r"^(encoder|decoder)\.mid_block\.resnets\.1\.", r"\1.mid.block_2."),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.", r"\1.mid.attn_1.norm."),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_([qkv])\.", r"\1.mid.attn_1.\2."),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_out\.0\.", r"\1.mid.attn_1.proj_out."),
        (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2."),
        (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample."),
        # diffusers lists the decoder's up blocks deepest first, BFL shallowest first.
        (r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.", lambda m: f"decoder.up.{N_LEVELS - 1 - int(m[1])}.block.{m[2]}."),
        (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up.{N_LEVELS - 1 - int(m[1])}.upsample."),
        (r"^(encoder|decoder)\.(conv_in|conv_out)\.", r"\1.\2."),
    ]
    for pat, rep in rules:
        if re.match(pat, n):
            out = re.sub(pat, rep, n).replace(".conv_shortcut.", ".nin_shortcut.")
            return out, ".mid.attn_1." in out and ".norm." not in out
    raise KeyError(f"no BFL name for {n}")


BLOCKS = (32, 64)
N_LEVELS = len(BLOCKS)
torch.manual_seed(0)
vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * N_LEVELS,
                    up_block_types=["UpDecoderBlock2D"] * N_LEVELS, block_out_channels=BLOCKS,
                    layers_per_block=1, act_fn="silu", latent_channels=16, norm_num_groups=32,
                    sample_size=32, scaling_factor=0.3611, shift_factor=0.1159,
                    use_quant_conv=False, use_post_quant_conv=False).eval()
perturb_(vae, ["norm"])
ae = {}
for n, t in vae.state_dict().items():
    name, linear_as_conv = bfl_name(n)
    # BFL's attention uses 1x1 convs where diffusers uses linears.
    ae[name] = (t[:, :, None, None] if linear_as_conv and t.dim() == 2 else t).contiguous().float()
assert len(ae) == len(vae.state_dict()), "two diffusers tensors map to one BFL name"
os.makedirs(OUT, exist_ok=True)
save_file(ae, os.path.join(OUT, "ae.safetensors"))

g = torch.Generator().manual_seed(1)
yy, xx = torch.meshgrid(torch.linspace(-1, 1, 24), torch.linspace(-1, 1, 32), indexing="ij")
smooth = torch.stack([xx, yy, xx * yy])[None].repeat(2, 1, 1, 1)
image = (0.7 * smooth + 0.3 * torch.rand(2, 3, 24, 32, generator=g) * 2 - 0.3).clamp(-1, 1)
latent_in = torch.randn(2, 16, 8, 12, generator=g)
vae64 = vae.double()
sf, sh = vae.config.scaling_factor, vae.config.shift_factor
with torch.no_grad():
    # FLUX: latents = (posterior mean - shift) * scale; decode(z / scale + shift).
    latent = (vae64.encode(image.double()).latent_dist.mode() - sh) * sf
    decoded = vae64.decode(latent_in.double() / sf + sh).sample
save_file({"image": image, "latent": latent.float().contiguous(), "decode_in": latent_in,
           "decoded": decoded.float().contiguous()},
          os.path.join(OUT, "ae_io.safetensors"))
json.dump({"resolution": 32, "in_channels": 3, "ch": BLOCKS[0], "out_ch": 3,
           "ch_mult": [c // BLOCKS[0] for c in BLOCKS], "num_res_blocks": 1, "z_channels": 16,
           "scale_factor": sf, "shift_factor": sh}, open(os.path.join(OUT, "ae_config.json"), "w"), indent=1)

# ------------------------------------------------------------------ tokenizers


def pre_tokens(tok):
    """The corpus through `tok`'s normalizer and pre-tokenizer."""
    return [w for line in CORPUS for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(line))]


# The vocabularies are built here rather than with the `tokenizers` trainers, whose output
# changes from run to run (hash-map order, parallel float sums).
def t5_tokenizer():
    """A SentencePiece-style Unigram: whole words (scored by log frequency) and single characters."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    words = Counter(m[0] for w in pre_tokens(tok) for m in [re.match(r"▁\w+", w)] if m)
    total = sum(words.values())
    chars = sorted({c for w in pre_tokens(tok) for c in w})
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(w, round(math.log(n / total), 6)) for w, n in sorted(words.items(), key=lambda x: (-x[1], x[0]))]
    pieces += [(c, -20.0) for c in chars if c not in words]
    tok.model = models.Unigram(pieces, unk_id=2, byte_fallback=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return tok


def bpe_merges(words, n):
    """Plain BPE: merge the most frequent adjacent pair n times (ties: the smallest pair)."""
    seqs = Counter(tuple(w[:-1]) + (w[-1] + "</w>",) for w in words)
    merges = []
    for _ in range(n):
        pairs = Counter()
        for s, c in seqs.items():
            for pair in zip(s, s[1:]):
                pairs[pair] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged = Counter()
        for s, c in seqs.items():
            out = []
            for t in s:
                if out and (out[-1], t) == best:
                    out[-1] += t
                else:
                    out.append(t)
            merged[tuple(out)] += c
        seqs = merged
    return merges


def clip_tokenizer():
    """CLIP's layout: byte-level BPE with </w> word ends; 256 bytes, 256 word-final bytes, merges, specials."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    split = Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(split, behavior="removed", invert=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    merges = bpe_merges(pre_tokens(tok), 80)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {}
    for t in alphabet + [c + "</w>" for c in alphabet] + [a + b for a, b in merges]:
        vocab.setdefault(t, len(vocab))
    tok.model = models.BPE(vocab, merges, end_of_word_suffix="</w>", continuing_subword_prefix="")
    tok.decoder = decoders.ByteLevel()
    # As in CLIP's vocabulary the specials come last, so the end of text is the largest id.
    tok.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    assert eos == tok.get_vocab_size() - 1 and bos == eos - 1
    tok.post_processor = processors.RobertaProcessing(("<|endoftext|>", eos), ("<|startoftext|>", bos),
                                                      trim_offsets=False, add_prefix_space=False)
    return tok


def hf_ids(path, max_len, **special):
    """Ids as FLUX's HFEmbedder asks for them: truncated to and padded to max_length."""
    hf = PreTrainedTokenizerFast(tokenizer_file=path, model_max_length=max_len, **special)
    return hf(PROMPTS, truncation=True, max_length=max_len, padding="max_length", return_length=False,
              return_overflowing_tokens=False, return_tensors="pt")["input_ids"]


def reloaded(cls, model, path):
    """The model as read back from `path` (the reference must come from the files we ship)."""
    back = cls.from_pretrained(path).eval()
    want, got = model.state_dict(), back.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want), path
    return back


# ------------------------------------------------------------------ T5

t5_dir, clip_dir = os.path.join(OUT, "text", "t5"), os.path.join(OUT, "text", "clip")
os.makedirs(t5_dir, exist_ok=True)
os.makedirs(clip_dir, exist_ok=True)
t5_tok = t5_tokenizer()
t5_tok.save(os.path.join(t5_dir, "tokenizer.json"))
torch.manual_seed(2)
# T5-XXL's table has more rows than its tokenizer has tokens; so does this one.
t5_cfg = T5Config(vocab_size=(t5_tok.get_vocab_size() + 15) // 16 * 16, d_model=32, d_kv=8, d_ff=48, num_layers=2,
                  num_heads=4, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                  dropout_rate=0.0, layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu",
                  tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
t5 = T5EncoderModel(t5_cfg).eval()
perturb_(t5, ["layer_norm"])
t5.save_pretrained(t5_dir)
t5 = reloaded(T5EncoderModel, t5, t5_dir)
t5_ids = hf_ids(os.path.join(t5_dir, "tokenizer.json"), T5_MAX_LEN, pad_token="<pad>", eos_token="</s>",
                unk_token="<unk>")
with torch.no_grad():
    t5_hidden = t5.double()(input_ids=t5_ids, attention_mask=None).last_hidden_state

# ------------------------------------------------------------------ CLIP

clip_tok = clip_tokenizer()
clip_tok.save(os.path.join(clip_dir, "tokenizer.json"))
torch.manual_seed(3)
# bos 0 / pad 1 / eos 2 as in FLUX's text_encoder config: eos 2 makes CLIP pool at argmax(ids).
clip_cfg = CLIPTextConfig(vocab_size=clip_tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=CLIP_MAX_LEN,
                          hidden_act="quick_gelu", projection_dim=32, layer_norm_eps=1e-5,
                          bos_token_id=0, pad_token_id=1, eos_token_id=2)
clip = CLIPTextModel(clip_cfg).eval()
perturb_(clip, ["layer_norm"])
clip.save_pretrained(clip_dir)
# The released FLUX text_encoder file (and transformers before v5) name the tower `text_model.*`.
save_file({"text_model." + k: v.contiguous() for k, v in clip.state_dict().items()},
          os.path.join(clip_dir, "model.safetensors"), metadata={"format": "pt"})
clip = reloaded(CLIPTextModel, clip, clip_dir)
clip_ids = hf_ids(os.path.join(clip_dir, "tokenizer.json"), CLIP_MAX_LEN, bos_token="<|startoftext|>",
                  eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")
with torch.no_grad():
    clip_pooled = clip.double()(input_ids=clip_ids, attention_mask=None).pooler_output

save_file({"t5_ids": t5_ids.to(torch.int64), "clip_ids": clip_ids.to(torch.int64),
           "t5_hidden": t5_hidden.float().contiguous(), "clip_pooled": clip_pooled.float().contiguous()},
          os.path.join(OUT, "text_io.safetensors"))
json.dump({"prompts": PROMPTS, "t5_max_len": T5_MAX_LEN}, open(os.path.join(OUT, "text_io.json"), "w"), indent=1)
for root, _, files in sorted(os.walk(OUT)):
    for f in sorted(files):
        print(f"{os.path.relpath(os.path.join(root, f), OUT)}: {os.path.getsize(os.path.join(root, f))} bytes")
