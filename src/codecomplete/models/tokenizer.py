"""Byte-level BPE tokenizers for this project's models (`codecomplete tokenizer train`).

Pure `tokenizers` (no torch): the result is saved as a Hugging Face tokenizer folder that
`AutoTokenizer` loads exactly as trained, with the end-of-text and FIM tokens as single tokens.
(transformers 5's `GPT2TokenizerFast` loads it too, but swaps in GPT-2's own pre-tokenizer.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from codecomplete.models.fim import TEMPLATES

EOS_TOKEN = "<|endoftext|>"
FIM_PAD_TOKEN = "<fim_pad>"


def special_tokens(fim_template: str = "codecomplete") -> list[str]:
    """End-of-text first (id 0), then the FIM template's tokens and a pad token."""
    toks = [EOS_TOKEN]
    for t in TEMPLATES[fim_template].special_tokens() + [FIM_PAD_TOKEN]:
        if t not in toks:
            toks.append(t)
    return toks


def train_bpe(
    texts: Iterable[str],
    out_dir: str | Path,
    vocab_size: int = 16384,
    min_frequency: int = 2,
    model_max_length: int = 1024,
    fim_template: str = "codecomplete",
) -> Path:
    """Train a byte-level BPE on `texts` and save it as a HF tokenizer folder in `out_dir`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = special_tokens(fim_template)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # A newline, and the indentation that starts a line, are tokens of their own. GPT-2's
            # rule glues "\n" to the following spaces ("\n   " + " return"), so a prompt that ends
            # where an editor's cursor is after Enter ("\n" or "\n    ") would end mid-token,
            # in a split the model never saw in training.
            pre_tokenizers.Split(Regex(r"\n|(?<=\n)[ \t]+"), behavior="isolated"),
            # add_prefix_space=False: code is completed mid-line, a space must never be invented.
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    fim = TEMPLATES[fim_template]
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "bos_token": EOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": FIM_PAD_TOKEN,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "additional_special_tokens": [t for t in specials if t not in (EOS_TOKEN, FIM_PAD_TOKEN)],
        "fim_template": fim.name,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": EOS_TOKEN,
                "eos_token": EOS_TOKEN,
                "unk_token": EOS_TOKEN,
                "pad_token": FIM_PAD_TOKEN,
                "additional_special_tokens": config["additional_special_tokens"],
            },
            indent=2,
        )
        + "\n"
    )
    return out
