#!/usr/bin/env python3
"""Golden data for the LAION-CLAP text tower (common/bpe.c, models/clap_text*.c),
from the reference Python code: Hugging Face `transformers` (RobertaTokenizer,
RobertaModel) and `tokenizers`, and the `laion-clap` package (1.1.x) for the
text branch as CLAP runs it (CLAP.encode_text with text_branch_type "roberta":
the RobertaModel's pooler_output, text_projection = Linear, ReLU, Linear, then
F.normalize in get_text_embedding).

    PY=bench/.venv-torch/bin/python      # torch, transformers, tokenizers, laion-clap
    $PY tools/gen_golden_clap_text.py tokenizer   # tests/golden/clap_text/{vocab.json,merges.txt,tokens.json}
    $PY tools/gen_golden_clap_text.py encoder     # tests/golden/clap_text/small.{safetensors,slg,json}
    $PY tools/gen_golden_clap_text.py encoder --full DIR   # full size (random weights), not committed

tokenizer: roberta-base's own vocabulary cannot be fetched here (no model hub),
so the algorithm is checked on a small byte-level BPE vocabulary trained by the
`tokenizers` package on a few made-up sentences (below), with roberta-base's
special tokens and ids (<s> 0, <pad> 1, </s> 2, <unk> 3, <mask> with
lstrip=True as roberta-base's tokenizer.json has it). tokens.json holds, for
every string of CORPUS and of a seeded random corpus, the ids that
RobertaTokenizer gives with laion_clap's call (padding="max_length",
truncation=True, max_length=77) up to the padding (the rest is <pad>, checked
here), and whether the text was cut.

encoder: the package's CLAP class is built with a small PANN audio branch (not
used), then its RobertaModel text branch (roberta-base's configuration: learned
positions with padding_idx 1, one token type, post-layer-norm layers, exact
GELU, layer_norm_eps 1e-05, the pooler) and text_projection (Linear, ReLU,
Linear: the module the package builds, with the input width of the reduced
branch) are given reduced sizes (--full: 12 layers x 768 x 12 heads, 3072,
50265 tokens, 514 positions, 512 joint) and random weights (seeded; biases and
norm parameters 0.1 N(0,1) around their defaults, so none is trivial). The
weights go through tools/convert_clap.py's build() with the trained test
vocabulary; the model runs in float64 (float32 weights converted exactly) on
texts tokenised as laion_clap does, through CLAP.get_text_embedding (encode_text,
"roberta" branch: pooler_output -> text_projection; F.normalize). Stages come
from forward hooks on the package's modules.
  small.safetensors  weights + tokenizer + metadata, as convert_clap.py writes them
  small.json         {"texts": [...]} the queries
  small.slg          (tests/unit/sl_golden.h) arrays ids [B][77], emb [B][77][W] (the
                     embeddings' LayerNorm output), layer{i} [B][77][W], pooled [B][W],
                     proj [B][J] (before normalisation), out [B][J]
"""

import argparse
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# importing laion_clap asks the model hub for tokenizers it does not use here: fail fast offline
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "golden", "clap_text")

TRAIN_TEXT = [
    "a calm piano piece with soft strings and rain sounds in the background",
    "upbeat electronic dance music with a heavy bass line and synth pads",
    "melancholic acoustic guitar ballad sung by a woman, slow tempo",
    "energetic rock song with distorted guitars, loud drums and a male singer",
    "jazz trio: piano, double bass and brushed drums, swinging at 120 bpm",
    "orchestral film score with brass fanfares and timpani rolls",
    "lo-fi hip hop beat with vinyl crackle, mellow keys and a laid-back groove",
    "traditional Irish folk tune on fiddle and tin whistle",
    "ambient drone with reverb-drenched textures; no percussion",
    "it's a children's song, they're singing and we'll dance, I'm happy, you'd smile, we've won",
    "heavy metal: blast beats, screamed vocals, down-tuned 7-string guitars!!!",
    "bossa nova (1960s), nylon guitar & soft voice... café music",
    "Musique électronique française avec des voix éthérées",
    "música latina con percusión y trompetas",
    "钢琴 音乐 安静 的 夜晚",
    "ピアノの静かな曲",
    "조용한 피아노 음악",
    "Классическая музыка для фортепиано",
    "موسيقى عربية تقليدية",
    "🎹🎸🥁 emoji music 🎶🎵",
    "numbers 1 2 3 10 100 2024 3.14 440Hz 808",
]

CORPUS = [
    "",
    "a",
    " ",
    "   ",
    "\t",
    "\n\n",
    " \t\n ",
    "piano",
    " piano",
    "piano ",
    "piano  ",
    "calm piano with rain",
    "calm  piano\twith\t\train\n",
    "a   b",
    "a \t b",
    "x\t\ty",
    "don't stop",
    "it's they're we'll I'm you'd we've",
    "IT'S DON'T I'M",
    "'s 't 're 've 'm 'll 'd",
    "''s ' s '",
    "rock'n'roll",
    "heavy metal!!!",
    "what??? no!!! ...",
    "---===***",
    "((a)) [b] {c} <d>",
    "http://example.com/path?q=1&r=2#frag",
    "email@example.com",
    "1234567890",
    "3.14 2,718 1e10 -5 +7",
    "120bpm 440Hz 808s",
    "½ ² ³ Ⅻ ① ٣ ३",
    "café crème brûlée",
    "cafe\u0301",
    "Ärger Öl Übermut straße",
    "naïve résumé",
    "钢琴音乐",
    "钢琴 音乐 安静",
    "ピアノの静かな曲",
    "조용한 피아노",
    "Классическая музыка",
    "موسيقى عربية",
    "संगीत",
    "ดนตรีไทย",
    "🎹",
    "🎹🎸🥁",
    "music 🎶 for 🎵 you",
    "👨‍👩‍👧 family",
    "🇫🇷🇯🇵",
    "👍🏽",
    "a\u00a0b",
    "a\u3000b",
    "a\u2028b",
    "a\u200bb",
    "a\u1680b",
    "\u0085x",
    "x\r\ny",
    "\x1cx\x1d",
    "\u0558\u0e8e\ua7ce",
    "\ue000\U000f0000\U0010ffff",
    "<s>",
    "</s>",
    "a <s> b",
    "x</s>y",
    "<pad><unk>",
    "a <mask> b",
    "a \t <mask>b",
    "<mask>",
    "  <mask>  ",
    "<s</s>>",
    "<<s>>",
    "the " * 100,
    "a" * 500,
    "!" * 300,
    "calm piano with rain " * 30,
    " ".join(str(i) for i in range(200)),
    "🎹" * 100,
    "piano" * 400,
    "pianocalmrainthe" * 300,
]

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def random_corpus(n, seed):
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789",
        " ", " ", " ", "\t\n\r\u00a0\u3000", "'", "'sdtlmrve", ".,;:!?-_()[]{}<>/\\\"@#$%^&*+=~`|",
        "éèàüöäßçñøåœ", "钢琴音乐安静夜晚", "ピアノ曲", "피아노음악", "музыка", "موسيقى",
        "🎹🎸🥁🎶👍🏽\u200d", "\u0301\u0308", "½²①٣", "<s></s><mask><pad><unk>",
    ]
    out = []
    for _ in range(n):
        k = rng.randint(0, 40)
        out.append("".join(rng.choice(rng.choice(pools)) for _ in range(k)))
    return out


def train_vocab(out_dir):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TRAIN_TEXT * 4, trainer)
    tok.model.save(out_dir)


def make_tokenizer(out_dir):
    from tokenizers import AddedToken
    from transformers import RobertaTokenizer

    return RobertaTokenizer(os.path.join(out_dir, "vocab.json"), os.path.join(out_dir, "merges.txt"),
                            mask_token=AddedToken("<mask>", lstrip=True, rstrip=False))


def cmd_tokenizer(_args):
    os.makedirs(OUT, exist_ok=True)
    train_vocab(OUT)
    tok = make_tokenizer(OUT)
    vocab = json.load(open(os.path.join(OUT, "vocab.json"), encoding="utf-8"))
    for i, s in enumerate(SPECIALS):
        assert vocab[s] == (4 if s == "<mask>" else i) or s == "<mask>", (s, vocab[s])
    cases = []
    for text in CORPUS + random_corpus(300, 20):
        r = tok(text, padding="max_length", truncation=True, max_length=77)
        ids = list(r["input_ids"])
        full = tok(text)["input_ids"]
        n = int(sum(r["attention_mask"]))
        assert ids[n:] == [tok.pad_token_id] * (77 - n)
        cases.append({"text": text, "ids": ids[:n], "truncated": len(full) > 77})
    with open(os.path.join(OUT, "tokens.json"), "w", encoding="ascii") as f:
        json.dump({"max_length": 77, "cases": cases}, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print("wrote %d cases to %s" % (len(cases), OUT))


QUERIES = [
    "calm piano with rain sounds",
    "",
    "heavy metal with screamed vocals!!!",
    "a <pad> in the middle shifts the positions",
    "calm piano with rain " * 30,
    "钢琴 音乐 🎹",
]


def stub_torchvision():
    """laion_clap's package imports torchvision (transforms, ops.misc.FrozenBatchNorm2d: image
    and training code, never on the inference path) and PIL; where they are not installed, the
    audio golden script's stand-in modules (gen_golden_clap._StandIn: any submodule, any name)
    let the package import."""
    import importlib.util

    if all(importlib.util.find_spec(m) is not None for m in ("torchvision", "PIL")):
        return
    sys.path.insert(0, HERE)
    from gen_golden_clap import _StandIn

    if not any(isinstance(f, _StandIn) for f in sys.meta_path):
        sys.meta_path.insert(0, _StandIn())


def build_model(full, weights_path):
    """The package's CLAP with the reduced (or, full=True, roberta-base sized) random text
    tower; its weights written to weights_path through convert_clap.build. Returns
    (model in float32 eval mode, tokenizer, dims, joint)."""
    import torch
    from torch import nn
    from transformers import RobertaConfig, RobertaModel

    stub_torchvision()
    import laion_clap.clap_module.model as clap_model

    sys.path.insert(0, HERE)
    import convert_clap
    import stemline_st

    tok = make_tokenizer(OUT)
    vocab_n = len(json.load(open(os.path.join(OUT, "vocab.json"), encoding="utf-8")))
    if full:
        dims = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=514)
        joint = 512
    else:
        dims = dict(vocab_size=vocab_n + 3, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=96, max_position_embeddings=80)
        joint = 24
    cfg = RobertaConfig(type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        **dims)
    torch.manual_seed(20)
    orig = clap_model.RobertaModel.from_pretrained
    clap_model.RobertaModel.from_pretrained = lambda *a, **k: RobertaModel(cfg)
    try:
        model = clap_model.CLAP(embed_dim=512, joint_embed_shape=joint,
                                audio_cfg=dict(model_type="PANN", model_name="Cnn6", hop_size=480),
                                text_cfg=dict(context_length=77, vocab_size=dims["vocab_size"],
                                              width=dims["hidden_size"], heads=dims["num_attention_heads"],
                                              layers=dims["num_hidden_layers"], model_type="roberta"))
    finally:
        clap_model.RobertaModel.from_pretrained = orig
    # the package's text_projection module with the reduced branch's input width
    model.text_projection = nn.Sequential(nn.Linear(dims["hidden_size"], joint), nn.ReLU(), nn.Linear(joint, joint))
    g = torch.Generator().manual_seed(21)
    with torch.no_grad():
        for name, p in list(model.text_branch.named_parameters()) + list(model.text_projection.named_parameters()):
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "LayerNorm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g) if full else torch.randn(p.shape, generator=g)
                        * p.shape[-1] ** -0.5)
    model.eval()
    sd = {("text_branch." + k): v.detach().numpy() for k, v in model.text_branch.state_dict().items()}
    sd.update({("text_projection." + k): v.detach().numpy() for k, v in model.text_projection.state_dict().items()})
    vocab_b = open(os.path.join(OUT, "vocab.json"), "rb").read()
    merges_b = open(os.path.join(OUT, "merges.txt"), "rb").read()
    tensors, meta = convert_clap.build(sd, vocab_b, merges_b, text_heads=dims["num_attention_heads"],
                                       require_audio=False)
    stemline_st.save(weights_path, tensors, meta)
    return model, tok, dims, joint



def cmd_encoder(args):
    full = args.full is not None
    out_dir = args.full if full else OUT
    os.makedirs(out_dir, exist_ok=True)
    import numpy as np
    import torch

    sys.path.insert(0, HERE)
    import stemline_st

    model, tok, dims, joint = build_model(full, os.path.join(out_dir, "small.safetensors"))
    model = model.double()
    taps = {}

    def hook(key):
        def fn(_mod, _inp, out):
            if isinstance(out, (tuple, list)):
                out = out[0]
            taps[key] = out.detach().float().numpy()
        return fn

    tb = model.text_branch
    tb.embeddings.register_forward_hook(hook("emb"))
    for i, layer in enumerate(tb.encoder.layer):
        layer.register_forward_hook(hook("layer%d" % i))
    model.text_projection.register_forward_hook(hook("proj"))
    tb.pooler.register_forward_hook(hook("pooled"))
    queries = QUERIES
    data = tok(queries, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_embedding(dict(data)).float().numpy()
    ids = data["input_ids"].numpy().astype(np.float32)
    arrays = [("ids", ids), ("emb", taps["emb"])]
    arrays += [("layer%d" % i, taps["layer%d" % i]) for i in range(dims["num_hidden_layers"])]
    arrays += [("pooled", taps["pooled"]), ("proj", taps["proj"]), ("out", out)]
    stemline_st.write_slg(os.path.join(out_dir, "small.slg"),
                          "tools/gen_golden_clap_text.py encoder%s" % (" --full" if full else ""),
              {"queries": len(queries), "width": dims["hidden_size"], "layers": dims["num_hidden_layers"],
               "joint": joint}, arrays)
    with open(os.path.join(out_dir, "small.json"), "w", encoding="ascii") as f:
        json.dump({"texts": queries}, f, ensure_ascii=True)
        f.write("\n")
    print("wrote %s" % out_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("tokenizer").set_defaults(fn=cmd_tokenizer)
    enc = sub.add_parser("encoder")
    enc.add_argument("--full", metavar="DIR", help="full-size model into DIR (not committed)")
    enc.set_defaults(fn=cmd_encoder)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
