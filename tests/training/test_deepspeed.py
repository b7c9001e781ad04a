"""End to end under the DeepSpeed launcher: 2 CPU ranks (gloo), a tiny GPT-2 from scratch.

On a fresh machine DeepSpeed first compiles its shared-memory comm op for the CPU (~45 s, cached in
~/.cache/torch_extensions afterwards), so the first run of this file takes that much longer.

    PYTHONPATH=src python -m pytest tests/training/test_deepspeed.py -q
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import codecomplete

pytestmark = [pytest.mark.deepspeed, pytest.mark.slow]

SRC = Path(codecomplete.__file__).resolve().parents[1]
STEPS = 30


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _recipe(tmp: Path, token_dataset: Path, tokenizer: Path, out: str, **run) -> Path:
    recipe = {
        "model": {
            "arch": {
                "model_type": "gpt2",
                "n_layer": 2,
                "n_embd": 64,
                "n_head": 4,
                "n_positions": 128,
                "resid_pdrop": 0.0,
                "embd_pdrop": 0.0,
                "attn_pdrop": 0.0,
            },
            "tokenizer": str(tokenizer),
        },
        "data": {"path": str(token_dataset), "seq_len": 128, "fim_rate": 0.5, "valid_sequences": 32},
        "optim": {"lr": 3e-3, "warmup_steps": 5},
        "run": {
            "out_dir": str(tmp / out),
            "max_steps": STEPS,
            "micro_batch_size": 8,
            "grad_accum": 2,
            "precision": "fp32",
            "zero": "zero2",
            "eval_every": 10,
            "save_every": 10,
            "keep_last": 3,
            "log_every": 5,
            **run,
        },
    }
    path = tmp / f"{out}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ, DS_ACCELERATOR="cpu", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _codecomplete(*args: str, timeout: int = 420) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codecomplete", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )


def _train(recipe: Path, *args: str, port: int | None = None) -> subprocess.CompletedProcess:
    return _codecomplete(
        "train", "--config", str(recipe), "--num-gpus", "2", "--master-port", str(port or _port()), *args
    )


def _shm_buffers(port: int) -> list[Path]:
    """DeepSpeed's CPU allreduce segments of a run on `port` still named in /dev/shm."""
    return sorted(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_{os.getuid()}_*_{port}_*"))


def _metrics(out: Path) -> dict[int, dict]:
    merged: dict[int, dict] = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        merged.setdefault(rec["step"], {}).update(rec)
    return merged


def _valid_losses(out: Path) -> list[float]:
    return [m["valid/loss"] for _, m in sorted(_metrics(out).items()) if "valid/loss" in m]


@pytest.fixture(scope="module")
def zero2_run(tmp_path_factory, token_dataset, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("ds")
    port = _port()
    proc = _train(_recipe(tmp, token_dataset, tiny_model_dir, "zero2"), port=port)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Nothing left in /dev/shm: DeepSpeed leaves its 69 MB per-rank allreduce segments behind,
    # and runs add up until the machine is out of memory (training/loop.py unlinks them).
    assert _shm_buffers(port) == []
    return tmp, tmp / "zero2", proc.stdout + proc.stderr


def test_zero2_on_two_ranks_lowers_validation_loss(zero2_run):
    _, out, log = zero2_run
    valid = _valid_losses(out)
    assert len(valid) == 3 and valid[-1] < valid[0] - 0.1, valid
    assert (
        "effective batch: 8 micro x 2 accum x 2 ranks = 32 sequences x 128 tokens = 4,096 tokens/step" in log
    )
    assert "ZeRO stage 2" in log and "tok_s=" in log  # the header and the progress bar
    steps = [p.name for p in sorted((out / "checkpoints").iterdir())]
    assert steps == ["step-00000010", "step-00000020", "step-00000030"]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert _metrics(out)[STEPS]["train/tokens_seen"] == STEPS * 4096


def test_zero3_with_cpu_offload_on_two_ranks_lowers_validation_loss(tmp_path, token_dataset, tiny_model_dir):
    # torch's AdamW on the offloaded states: DeepSpeedCPUAdam (the default with offload) would add a
    # ~90 s C++ build on a fresh machine; docs/train.md records a run with it.
    recipe = _recipe(tmp_path, token_dataset, tiny_model_dir, "zero3", zero="zero3_offload", save_every=0)
    proc = _train(recipe, "--set", "optim.impl=torch")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "ZeRO stage 3 (zero3_offload)" in log
    valid = _valid_losses(tmp_path / "zero3")
    assert valid[-1] < valid[0] - 0.1, valid
    # ZeRO-3 shards the parameters themselves: export must still gather a whole model.
    exported = _codecomplete("export", str(tmp_path / "zero3"), str(tmp_path / "zero3-hf"), timeout=180)
    assert exported.returncode == 0, exported.stderr[-3000:]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "zero3-hf")
    assert model.lm_head.weight is model.transformer.wte.weight


def test_killed_run_resumes_to_the_same_losses(zero2_run, token_dataset, tiny_model_dir):
    tmp, reference, _ = zero2_run
    recipe = _recipe(tmp, token_dataset, tiny_model_dir, "killed")
    ckpts = tmp / "killed" / "checkpoints"

    # 1. SIGKILL in the middle of writing step 20's checkpoint: every rank's shards are on disk, the
    #    checkpoint is not marked complete. The run dies between two complete checkpoints (10 and 30).
    port = _port()
    first = _train(recipe, "--set", "run.fault_kill_in_save_at=20", port=port)
    assert first.returncode != 0
    assert _shm_buffers(port) == []  # a killed run leaves no shared memory behind either
    assert sorted(p.name for p in ckpts.iterdir()) == [".tmp-step-00000020", "step-00000010"]
    assert any((ckpts / ".tmp-step-00000020" / "ds").iterdir())

    # 2. --resume auto skips the half-written checkpoint, continues from step 10 and reaches the
    #    losses of the uninterrupted run at the same steps (same data, same lr, same RNG).
    second = _train(recipe, "--resume", "auto")
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-3000:]
    assert "removed an interrupted checkpoint: .tmp-step-00000020" in log
    assert "step-00000010 at step 10" in log

    got, want = _metrics(tmp / "killed"), _metrics(reference)
    for step in (15, 20, 25, 30):
        assert got[step]["train/loss"] == pytest.approx(want[step]["train/loss"], rel=1e-4, abs=1e-4)
        assert got[step]["train/lr"] == pytest.approx(want[step]["train/lr"], rel=1e-6)
    assert got[30]["valid/loss"] == pytest.approx(want[30]["valid/loss"], rel=1e-4, abs=1e-4)
    assert got[30]["train/tokens_seen"] == want[30]["train/tokens_seen"]


def test_export_gives_a_servable_folder_with_the_trained_weights(zero2_run, token_dataset):
    tmp, out, _ = zero2_run
    exported = _codecomplete("export", str(out), str(tmp / "hf"), timeout=180)
    assert exported.returncode == 0, exported.stderr[-3000:]
    hf = tmp / "hf"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "generation_config.json", "README.md"):
        assert (hf / name).is_file(), name

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codecomplete.models.fim import detect
    from codecomplete.training.data import PackedSequences, TokenShards

    model = AutoModelForCausalLM.from_pretrained(hf).eval()
    tok = AutoTokenizer.from_pretrained(hf)
    assert model.lm_head.weight is model.transformer.wte.weight  # tied embeddings survived
    assert detect(tok.get_vocab(), model.config.fim_template).name == "codecomplete"

    # The exported weights are the trained ones: same validation loss as the run measured at the end.
    valid = PackedSequences(TokenShards(token_dataset, "valid"), 128, seed=0)
    x = torch.from_numpy(np.stack([valid[k] for k in range(32)]))
    with torch.no_grad():
        loss = float(model(input_ids=x, labels=x).loss)
    assert loss == pytest.approx(_valid_losses(out)[-1], rel=1e-3)

    ids = tok("def main(", return_tensors="pt").input_ids
    gen = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert gen.shape[1] > ids.shape[1]
    card = (hf / "README.md").read_text()
    assert "ZeRO stage 2" in card and "| 30 |" in card and "fim_rate" in card
    state = json.loads((hf / "training_state.json").read_text())
    [run] = state["history"]
    assert run["start"] == "scratch" and run["steps"] == STEPS and run["seconds"] > 0
    assert [p[0] for p in run["train_curve"]] == list(range(5, STEPS + 1, 5))  # log_every 5
    assert state["total"]["tokens"] == run["tokens"] == state["tokens_seen"]
    assert (hf / "training_curve.svg").read_text().startswith("<svg")


def test_a_run_continued_from_an_export_adds_to_its_history(zero2_run, token_dataset):
    """The shipped model's workflow: export, train on from the exported folder, export again; the
    second card states the training of both runs."""
    tmp, out, _ = zero2_run
    base = tmp / "base"
    assert _codecomplete("export", str(out), str(base), timeout=180).returncode == 0
    recipe = yaml.safe_load(
        _recipe(tmp, token_dataset, base, "continued", max_steps=10, seed=99, eval_every=4).read_text()
    )
    recipe["model"] = {"name_or_path": str(base), "tokenizer": str(base)}
    (tmp / "continued.yaml").write_text(yaml.safe_dump(recipe))
    proc = _train(tmp / "continued.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exported = _codecomplete(
        "export", str(tmp / "continued"), str(tmp / "second"), "--name", "mine", timeout=180
    )
    assert exported.returncode == 0, exported.stderr[-3000:]

    state = json.loads((tmp / "second" / "training_state.json").read_text())
    first, second = state["history"]
    assert (first["start"], first["steps"]) == ("scratch", STEPS)
    assert (second["start"], second["steps"], second["seed"]) == (str(base), 10, 99)
    # 10 is not a multiple of eval_every: the last step is evaluated anyway, before its checkpoint.
    assert [v["step"] for v in second["valid"]] == [4, 8, 10] and second["final_valid_loss"] is not None
    assert state["total"]["steps"] == STEPS + 10
    assert state["total"]["tokens"] == first["tokens"] + second["tokens"]
    card = (tmp / "second" / "README.md").read_text()
    assert card.startswith("---") and "# mine" in card
    assert f"{STEPS + 10:,} optimizer steps" in card and "in 2 run(s)" in card

    # Weight averaging: the continued run's end and the export it started from, averaged.
    averaged = _codecomplete(
        "export", str(tmp / "continued"), str(tmp / "averaged"), "--average-with", str(base), timeout=180
    )
    assert averaged.returncode == 0, averaged.stderr[-3000:]
    import torch
    from safetensors.torch import load_file

    mean, end, start = (load_file(tmp / d / "model.safetensors") for d in ("averaged", "second", "base"))
    assert mean.keys() == end.keys() == start.keys()
    for k in mean:
        torch.testing.assert_close(mean[k], (end[k] + start[k]) / 2, rtol=0, atol=1e-6)
    state = json.loads((tmp / "averaged" / "training_state.json").read_text())
    assert state["total"]["steps"] == STEPS + 10  # averaging adds no training
    assert state["history"][-1]["averaged_with"] == [
        {"path": str(base), "steps": STEPS, "tokens": first["tokens"]}
    ]
    card = (tmp / "averaged" / "README.md").read_text()
    assert f"the mean of this run's final weights and those of `{base}`" in card
    assert f"--average-with {base}" in card  # the export command that made it


def test_exported_model_is_served_to_the_openai_client(zero2_run):
    """Export -> `codecomplete serve --model <out>` -> a completion through the openai client, and
    the served text is what the exported weights generate greedily."""
    import openai
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from serving import serve_subprocess

    tmp, out, _ = zero2_run
    hf = tmp / "served"
    exported = _codecomplete("export", str(out), str(hf), timeout=180)
    assert exported.returncode == 0, exported.stderr[-3000:]

    prompt = "def main(args):\n    "
    tok = AutoTokenizer.from_pretrained(hf)
    model = AutoModelForCausalLM.from_pretrained(hf).eval()
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        gen = model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    want = tok.decode(gen[0, ids.shape[1] :])

    # No completion budget: the comparison is of 8 whole tokens, whatever the machine's load.
    with serve_subprocess(hf, "--num-threads", "1", "--completion-deadline-ms", "0") as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=60)
        [served] = client.models.list().data
        got = client.completions.create(model=served.id, prompt=prompt, max_tokens=8, temperature=0)
    choice = got.choices[0]
    if choice.finish_reason == "length":
        assert choice.text == want
    else:  # the engine stopped at end-of-text, which generate(eos_token_id=None) runs past
        assert choice.finish_reason == "stop" and want.startswith(choice.text)


def test_export_refuses_an_interrupted_checkpoint(tmp_path):
    half = tmp_path / "run" / "checkpoints" / "step-00000010"
    (half / "ds").mkdir(parents=True)
    proc = _codecomplete("export", str(half), str(tmp_path / "out"), timeout=120)
    assert proc.returncode != 0 and "interrupted" in proc.stderr


LLAMA = {
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 176,
    "max_position_embeddings": 128,
    "tie_word_embeddings": True,
}


def test_llama_block_compiled_with_fused_adamw_matches_eager_and_exports(
    tmp_path, token_dataset, tiny_model_dir
):
    """The Llama block (RoPE, SwiGLU, RMSNorm) trains under ZeRO-2 on 2 ranks; `run.compile` and
    `optim.fused` (the throughput settings) give the eager run's losses, and the export is a
    LlamaForCausalLM with tied embeddings holding the trained weights."""
    runs = {}
    for name, extra in (
        ("eager", []),
        ("compiled", ["--set", "run.compile=true", "--set", "optim.fused=true"]),
    ):
        recipe = yaml.safe_load(
            _recipe(
                tmp_path, token_dataset, tiny_model_dir, name, max_steps=10, eval_every=5, save_every=0
            ).read_text()
        )
        recipe["model"]["arch"] = LLAMA
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
        proc = _train(tmp_path / f"{name}.yaml", *extra)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs[name] = (proc.stdout + proc.stderr, _metrics(tmp_path / name))
    log, compiled = runs["compiled"]
    assert "LlamaForCausalLM (llama)" in log and "torch.compile" in log
    _, eager = runs["eager"]
    assert compiled[10]["valid/loss"] < compiled[5]["valid/loss"]
    for step in (5, 10):
        assert compiled[step]["train/loss"] == pytest.approx(eager[step]["train/loss"], rel=2e-3)
        assert compiled[step]["valid/loss"] == pytest.approx(eager[step]["valid/loss"], rel=2e-3)

    exported = _codecomplete("export", str(tmp_path / "compiled"), str(tmp_path / "hf"), timeout=180)
    assert exported.returncode == 0, exported.stderr[-3000:]
    import torch
    from transformers import AutoModelForCausalLM

    from codecomplete.training.data import PackedSequences, TokenShards

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.lm_head.weight is model.model.embed_tokens.weight
    valid = PackedSequences(TokenShards(token_dataset, "valid"), 128, seed=0)
    x = torch.from_numpy(np.stack([valid[k] for k in range(32)]))
    with torch.no_grad():
        loss = float(model(input_ids=x, labels=x).loss)
    assert loss == pytest.approx(compiled[10]["valid/loss"], rel=1e-3)
