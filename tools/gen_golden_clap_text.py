#!/usr/bin/env python3
"""Golden data for the LAION-CLAP text tower (common/bpe.c, models/clap_text*.c),
from the reference Python code: Hugging Face `transformers` (RobertaTokenizer,
RobertaModel) and `tokenizers`, and the `laion-clap` package (1.1.x) for the
text branch as CLAP runs it (CLAP.encode_text with text_branch_type "roberta":
the RobertaModel's pooler_output, text_projection = Linear, ReLU, Linear, then
F.normalize in get_text_embedding).

    PY=bench/.venv-torch/bin/python      # torch, transformers, tokenizers, laion-clap
    $PY tools/gen_golden_clap_text.py tokenizer   # tests/golden/clap_text/{vocab.json,merges.txt,tokens.json}

tokenizer: roberta-base's own vocabulary cannot be fetched here (no model hub),
so the algorithm is checked on a small byte-level BPE vocabulary trained by the
`tokenizers` package on a few made-up sentences (below), with roberta-base's
special tokens and ids (<s> 0, <pad> 1, </s> 2, <unk> 3, <mask> with
lstrip=True as roberta-base's tokenizer.json has it). tokens.json holds, for
every string of CORPUS and of a seeded random corpus, the ids that
RobertaTokenizer gives with laion_clap's call (padding="max_length",
truncation=True, max_length=77) up to the padding (the rest is <pad>, checked
here), and whether the text was cut.
"""

import argparse
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("tokenizer").set_defaults(fn=cmd_tokenizer)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
