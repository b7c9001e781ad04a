"""Does a FIM model end its middles? Log-probability of end-of-text right after the true middle.

    python scripts/fim_eot_probe.py --model models/codecomplete-tiny-py [--cuts 40]

For the first N FIM cuts of the held-out set (the cuts `codecomplete eval --task fim` uses), it
scores end-of-text after the true middle twice: with 200 prefix tokens (the middle ends mid-context)
and with the prefix padded so the middle ends on the context's last position. A model that learnt
to end middles scores both high; one that learnt "end where the context ends" scores only the
second (docs/train.md, FIM).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from codecomplete.eval.inputs import load_source_files
from codecomplete.eval.tasks import sample_fim_cuts
from codecomplete.models.fim import from_name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/codecomplete-tiny-py")
    p.add_argument("--data", default="evalsets/heldout-python/test.jsonl.gz")
    p.add_argument("--cuts", type=int, default=40)
    p.add_argument("--template", default="codecomplete")
    args = p.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    ctx = model.config.max_position_embeddings
    template, eos = from_name(args.template), tok.eos_token_id
    files, _ = load_source_files(args.data, None)
    scores: dict[str, list[float]] = {"mid-context": [], "at the context's end": []}
    for cut in sample_fim_cuts(files, args.cuts, 0, 3):
        pre = tok.encode(cut.prefix, add_special_tokens=False)
        suf = tok.encode(cut.suffix, add_special_tokens=False)[:100]
        mid = tok.encode(cut.middle, add_special_tokens=False)
        room = ctx - len(template.encode([], [], tok.convert_tokens_to_ids)) - len(suf) - len(mid) - 1
        for name, prefix in (("mid-context", pre[-200:]), ("at the context's end", pre[-room:])):
            ids = template.encode(prefix, suf, tok.convert_tokens_to_ids) + mid + [eos]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
            scores[name].append(logp[len(ids) - 2, eos].item())
    for name, values in scores.items():
        print(
            f"middle ends {name}: median log p(end-of-text) {statistics.median(values):.2f} ({len(values)} cuts)"
        )


if __name__ == "__main__":
    main()
