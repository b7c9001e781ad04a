"""`codecomplete export <checkpoint> <out>`: a ZeRO checkpoint gathered into one servable HF folder.

The ZeRO shards (any stage, any number of ranks) are merged by DeepSpeed's own zero_to_fp32 code into
fp32 weights, loaded into a model built from the checkpoint's config, and saved with safetensors next
to the tokenizer, a generation config and a model card (recipe, data stats, eval numbers). Tied input
and output embeddings stay tied: the merged state dict may carry the shared matrix once, and the
export checks that both ends point at the same tensor before writing.

`--average-with FOLDER` (repeatable) writes the uniform mean of the checkpoint's weights and those
of earlier exports of the same model instead: weight averaging over the ends of the runs'
learning-rate cycles (stochastic weight averaging, Izmailov et al. 2018). Every run of the bundled
model warms up and decays its learning rate again, so the end of each run is the end of a cycle;
docs/train.md has what the mean of two such ends measured against either end alone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from codecomplete.training import checkpoint as ckpt
from codecomplete.training import history

DTYPES = ("float32", "bfloat16", "float16")


def _tied_names(model) -> set[str]:
    """Parameter names that alias another parameter (e.g. lm_head.weight tied to the token embedding)."""
    seen: dict[int, str] = {}
    aliases = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            aliases.add(name)
            aliases.add(seen[id(p)])
        else:
            seen[id(p)] = name
    return aliases


def gather_state_dict(checkpoint: Path) -> dict[str, Any]:
    """fp32 weights from a complete checkpoint, whatever its ZeRO stage and rank count."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=ckpt.DS_TAG)


def load_model_from_checkpoint(checkpoint: Path):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = gather_state_dict(checkpoint)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = _tied_names(model)
    really_missing = [k for k in missing if k not in tied]
    if really_missing or unexpected:
        raise RuntimeError(
            f"{checkpoint}: weights do not match the model config (missing {really_missing[:5]}, "
            f"unexpected {list(unexpected)[:5]})"
        )
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
        out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
        if out_emb is not None and out_emb.weight is not in_emb.weight:
            raise RuntimeError("tie_word_embeddings is set but the exported embeddings are not tied")
    return model


def average_weights(model, folders: list[Path]) -> list[dict[str, Any]]:
    """Set `model`'s weights to the uniform mean of its own and those of each exported folder in
    `folders` (summed in float64), and return what was averaged in, for the state and the card.

    The folders must hold the same architecture: same parameter names and shapes, else ValueError
    (averaging two unrelated models gives a broken one, silently). Tied parameters are averaged
    once and stay tied."""
    import torch
    from transformers import AutoModelForCausalLM

    params = dict(model.named_parameters())  # tied aliases once
    total = {name: p.detach().to(torch.float64).clone() for name, p in params.items()}
    sources = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"--average-with {folder}: no such model folder")
        other = dict(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).named_parameters())
        if other.keys() != params.keys():
            diff = sorted(other.keys() ^ params.keys())
            raise ValueError(
                f"--average-with {folder}: not the same architecture as the checkpoint "
                f"(parameters only in one of them: {diff[:5]})"
            )
        for name, p in other.items():
            if p.shape != params[name].shape:
                raise ValueError(
                    f"--average-with {folder}: {name} is {tuple(p.shape)} there and "
                    f"{tuple(params[name].shape)} in the checkpoint"
                )
            total[name] += p.detach().to(torch.float64)
        past = history.totals(history.read_history(folder))
        sources.append({"path": str(folder), "steps": past["steps"], "tokens": past["tokens"]})
    with torch.no_grad():
        for name, p in params.items():
            p.copy_((total[name] / (len(folders) + 1)).to(p.dtype))
    return sources


def relocate_paths(obj: Any, pairs: list[tuple[str, str]], root: str | Path | None = None) -> Any:
    """`obj` (JSON-like) with each path prefix OLD of `pairs` rewritten as NEW, and absolute paths
    under `root` made relative to it: the card's commands then run from the repository, whatever
    folders the runs were started in. A prefix matches whole path components only."""
    import re

    rules = [
        (str(old).rstrip("/"), str(new).rstrip("/") or ".") for old, new in pairs if str(old).rstrip("/")
    ]
    if root is not None:
        rules.append((str(Path(root).resolve()), "."))

    def rewrite(text: str, old: str, new: str) -> str:
        def sub(m: re.Match) -> str:
            if m.group(1) and new == ".":
                return ""  # OLD/rest -> rest
            return new + m.group(1)

        # OLD as a whole path or the start of one: followed by /, or by what ends a path.
        return re.sub(re.escape(old) + r"(/|(?=[\s\"',:;)\]=]|$))", sub, text)

    def walk(x: Any) -> Any:
        if isinstance(x, str):
            for old, new in rules:
                x = rewrite(x, old, new)
            return x
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        return x

    return walk(obj)


def model_card(
    state: dict[str, Any],
    eval_results: dict[str, Any] | None,
    command: str | None,
    export_command: str | None = None,
    name: str = "model",
    runs: list[dict[str, Any]] | None = None,
    curve_file: str | None = None,
    relocated: list[tuple[str, str]] | None = None,
) -> str:
    recipe = state.get("recipe", {})
    runs = runs or []
    earlier = ""
    if len(runs) > 1:
        tot = history.totals(runs)
        earlier = (
            f"This section is the last run only; with the {len(runs) - 1} run(s) before it the weights "
            f"have had {tot['steps']:,} steps and {tot['tokens']:,} tokens (see Training history)."
        )
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [code, codecomplete]",
        "---",
        "",
        f"# {name}",
        "",
        "A causal code model trained with `codecomplete train` (DeepSpeed ZeRO) and exported with "
        "`codecomplete export`. Serve it with `codecomplete serve --model <this folder>`.",
        "",
        "## Training",
        "",
        *([earlier, ""] if earlier else []),
        f"- steps: {state.get('step')}, tokens seen: {state.get('tokens_seen'):,}",
        f"- global batch: {state.get('global_batch')} sequences x {state.get('seq_len')} tokens, "
        f"{state.get('world_size')} rank(s), ZeRO stage {state.get('zero_stage')}, precision {state.get('precision')}",
        f"- FIM template: {state.get('fim_template')}",
        f"- final training loss: {state['last_loss']:.4f}"
        if isinstance(state.get("last_loss"), float)
        else f"- final training loss: {state.get('last_loss')}",
    ]
    averaged = runs[-1].get("averaged_with") if runs else None
    if averaged:
        lines.append(
            "- weights: the mean of this run's final weights and those of "
            + ", ".join(f"`{a['path']}` (after {a.get('tokens') or 0:,} tokens)" for a in averaged)
            + ": weight averaging over the ends of the runs' learning-rate cycles. The losses logged "
            "during training are the run's own weights', before averaging."
        )
    if command:
        lines += ["", "Commands:", "", "```", command, *([export_command] if export_command else []), "```"]
    if relocated:
        moved = ", ".join(f"`{old}` -> `{new}`" for old, new in relocated)
        lines += [
            "",
            f"Paths in this card are repository-relative; rewritten from where the runs kept them: {moved}.",
        ]
    lines += [
        "",
        "Recipe (resolved):",
        "",
        "```yaml",
        yaml.safe_dump(recipe, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    lines += history.markdown(runs, curve_file)
    data = state.get("data", {})
    lines += ["## Data", "", f"Token dataset `{data.get('path')}`, tokenizer `{data.get('tokenizer')}`.", ""]
    splits = data.get("splits") or {}
    if splits:
        lines += ["| split | documents | tokens |", "|---|---|---|"]
        for split, info in splits.items():
            lines.append(
                f"| {split} | {info.get('num_documents', '?'):,} | {info.get('num_tokens', '?'):,} |"
            )
        lines.append("")
    lines += ["## Evaluation", ""]
    valid = state.get("valid") or []
    if valid:
        lines += [
            "Validation during training (held-out split, no FIM):",
            "",
            "| step | loss | perplexity |",
            "|---|---|---|",
        ]
        lines += [f"| {v['step']} | {v['valid/loss']:.4f} | {v['valid/perplexity']:.2f} |" for v in valid]
        lines.append("")
    if eval_results:
        lines += [
            "`codecomplete eval` results:",
            "",
            "```json",
            json.dumps(eval_results, indent=2),
            "```",
            "",
        ]
    if not valid and not eval_results:
        lines += ["No evaluation recorded.", ""]
    return "\n".join(lines)


def export(
    checkpoint: str | Path,
    out: str | Path,
    dtype: str = "float32",
    eval_results: dict[str, Any] | None = None,
    overwrite: bool = False,
    name: str | None = None,
    relocate: list[tuple[str, str]] | None = None,
    average_with: list[str | Path] | None = None,
) -> Path:
    """Write a Hugging Face model folder to `out` from a complete checkpoint (or a run directory).

    With `average_with`, the weights written are the mean of the checkpoint's and those folders'
    (`average_weights`), and the run's history record and the card say so. The card and the
    recorded history name paths relative to the current folder (run it from the repository), after
    rewriting each `relocate` prefix (OLD, NEW)."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig

    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}")
    src = ckpt.resolve_checkpoint(checkpoint)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass --overwrite)")
    state = ckpt.read_state(src)
    model = load_model_from_checkpoint(src)
    averaged = average_weights(model, [Path(f) for f in average_with]) if average_with else []
    model = model.to(getattr(torch, dtype))
    tokenizer = AutoTokenizer.from_pretrained(src)

    tmp = out.with_name(f".{out.name}.exporting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    eos = tokenizer.eos_token_id
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
    ).save_pretrained(tmp)
    command = state.get("command")
    export_command = (
        f"codecomplete export {src} {out}"
        + (f" --dtype {dtype}" if dtype != "float32" else "")
        + (f" --name {name}" if name else "")
        + "".join(f" --average-with {a['path']}" for a in averaged)
    )
    # This run's record (its curve from the run folder's metrics log) after the runs it continued.
    run_dir = src.parent.parent if src.parent.name == "checkpoints" else None
    runs = history.parent_history(state) + [
        history.run_record(state, history.read_metrics(run_dir, state.get("step")) if run_dir else [])
    ]
    if averaged:  # recorded once, in the run's record: the card and later histories read it there
        runs[-1]["averaged_with"] = averaged
    relocate = list(relocate or [])
    state, runs, command, export_command = relocate_paths(
        [state, runs, command, export_command], relocate, root=Path.cwd()
    )
    svg = history.svg_curve(runs)
    if svg:
        (tmp / "training_curve.svg").write_text(svg)
    card = model_card(
        state,
        eval_results,
        command,
        export_command,
        name=name or out.name,
        runs=runs,
        curve_file="training_curve.svg" if svg else None,
        relocated=relocate,
    )
    (tmp / "README.md").write_text(card)
    kept = {k: v for k, v in state.items() if k not in ("recipe", "parent_history")}
    (tmp / history.STATE_FILE).write_text(
        json.dumps({**kept, "history": runs, "total": history.totals(runs)}, indent=2) + "\n"
    )
    for f in tmp.iterdir():
        f.chmod(0o644)  # a server running as another user must be able to read the weights
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
