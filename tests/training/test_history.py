"""The training history an export carries from run to run (no DeepSpeed needed here)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from codecomplete.training import history


def _state(steps: int, start: str | None, seed: int, valid: list[tuple[int, float]], **extra) -> dict:
    return {
        "step": steps,
        "tokens_seen": steps * 4096,
        "last_loss": 3.5,
        "global_batch": 8,
        "seq_len": 512,
        "world_size": 2,
        "zero_stage": 2,
        "precision": "fp32",
        "valid": [{"step": s, "valid/loss": loss, "valid/perplexity": 2.718**loss} for s, loss in valid],
        "data": {"path": "data/tokens"},
        "recipe": {
            "model": {"name_or_path": start},
            "optim": {"lr": 1e-3, "warmup_steps": 10, "schedule": "cosine"},
            "run": {"seed": seed},
            "data": {"fim_rate": 0.5},
        },
        "command": f"codecomplete train --set run.seed={seed}",
        **extra,
    }


def _metrics(steps: int, every: int = 10, tok_s: float = 2048.0) -> list[dict]:
    return [
        {"step": s, "train/loss": 5.0 - s / 1000, "train/tokens_per_s": tok_s, "train/tokens_seen": s * 4096}
        for s in range(every, steps + 1, every)
    ]


def test_time_from_the_metrics_log_is_tokens_over_throughput():
    # 100 steps x 4,096 tokens at 2,048 tokens/s = 200 s, whatever the logging cadence.
    assert history.train_seconds_from_metrics(_metrics(100, every=10)) == pytest.approx(200.0)
    assert history.train_seconds_from_metrics(_metrics(100, every=25)) == pytest.approx(200.0)
    assert history.train_seconds_from_metrics([]) is None


def test_a_run_record_takes_schedule_curve_and_time_from_the_state():
    rec = history.run_record(
        _state(100, None, 1, [(50, 4.5), (100, 4.2)], train_seconds=321.0), _metrics(100)
    )
    assert rec["start"] == "scratch" and rec["steps"] == 100 and rec["tokens"] == 409_600
    assert rec["seed"] == 1 and rec["lr"] == 1e-3 and rec["fim_rate"] == 0.5
    assert rec["final_valid_loss"] == 4.2 and [v["step"] for v in rec["valid"]] == [50, 100]
    assert rec["train_curve"][0] == [10, 4.99] and len(rec["train_curve"]) == 10
    assert rec["seconds"] == 321.0 and rec["seconds_kind"] == "wall clock"
    assert rec["samples"] == [0, 800]  # 100 steps x 8 sequences of the seed's order
    later = _state(50, "models/m", 1, [])
    later["recipe"]["data"]["start_sample"] = 800
    assert history.run_record(later)["samples"] == [800, 1200]  # where to go on from next time
    # A run from before the trainer recorded its time: estimated from the log, and labelled so.
    old = history.run_record(_state(100, None, 1, []), _metrics(100))
    assert old["seconds"] == pytest.approx(200.0) and old["seconds_kind"].startswith("optimizer steps")


def test_metrics_stop_at_the_exported_step_and_survive_a_torn_line(tmp_path):
    lines = [json.dumps(m) for m in _metrics(50)] + [
        json.dumps({"step": 50, "valid/loss": 4.0}),
        '{"step": 6',
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    got = history.read_metrics(tmp_path, last_step=30)
    assert [m["step"] for m in got] == [10, 20, 30]
    assert history.read_metrics(tmp_path)[-1] == {**_metrics(50)[-1], "valid/loss": 4.0}
    assert history.read_metrics(tmp_path / "missing") == []


def test_history_chains_through_exported_folders(tmp_path):
    # Export 1 (from scratch) wrote a history of one run; run 2 started from that folder.
    first = history.run_record(_state(800, None, 1234, [(800, 4.9)], train_seconds=2700.0))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / history.STATE_FILE).write_text(json.dumps({"step": 800, "history": [first]}))
    second_state = _state(500, str(folder), 4321, [(500, 4.6)], train_seconds=1000.0)
    runs = history.parent_history(second_state) + [history.run_record(second_state)]
    assert [r["seed"] for r in runs] == [1234, 4321] and runs[1]["start"] == str(folder)
    assert history.totals(runs) == {
        "runs": 2,
        "steps": 1300,
        "tokens": 1300 * 4096,
        "seconds": 3700.0,
        "seconds_complete": True,
    }
    # Recorded at the start of the run, the parent's history wins over whatever the folder holds
    # now (the usual workflow replaces the starting folder with the new export).
    (folder / history.STATE_FILE).write_text(json.dumps({"step": 500, "history": runs}))
    assert history.parent_history({**second_state, "parent_history": [first]}) == [first]


def test_a_folder_exported_before_histories_counts_as_one_run_and_a_hub_model_as_none(tmp_path):
    (tmp_path / history.STATE_FILE).write_text(json.dumps(_state(800, None, 7, [(800, 4.9)])))
    [legacy] = history.read_history(tmp_path)
    assert legacy["steps"] == 800 and legacy["seed"] == 7
    assert history.read_history(tmp_path / "bigcode-santacoder") == []


def test_card_section_has_a_row_per_run_and_the_total():
    runs = [
        history.run_record(_state(800, None, 1, [(800, 4.9)], train_seconds=2700.0)),
        history.run_record(_state(500, "models/x", 2, [(500, 4.6)]), _metrics(500)),
    ]
    text = "\n".join(history.markdown(runs, "training_curve.svg"))
    assert "1,300 optimizer steps, 5,324,800 tokens, in 2 run(s)" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| run")]
    assert len(rows) == 2 and "`models/x`" in rows[1] and "4.900" in rows[0] and "4.600" in rows[1]
    assert "*" in rows[1] and "optimizer steps only" in text  # the estimated time is marked
    assert "![training curve](training_curve.svg)" in text
    assert "`--set run.seed=2 --set data.start_sample=4000`" in text  # where the data order left off


def test_curve_is_valid_svg_with_a_boundary_per_continued_run():
    runs = [
        history.run_record(_state(100, None, 1, [(50, 4.5), (100, 4.2)]), _metrics(100)),
        history.run_record(_state(100, "m", 2, [(100, 3.9)]), _metrics(100)),
    ]
    root = ET.fromstring(history.svg_curve(runs))
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    dashed = [p for p in lines if p.get("stroke-dasharray")]
    assert len(dashed) == 1
    valid = [p for p in lines if p.get("stroke") == "#1f5fbf"]
    assert len(valid) == 1 and len(valid[0].get("points").split()) == 3
    assert history.svg_curve([]) is None


def test_card_commands_name_repository_relative_paths(tmp_path, monkeypatch):
    # Earlier runs kept their data outside the repository: `export --relocate OLD=NEW` rewrites
    # those prefixes, and paths under the current folder (the repository) become relative.
    from codecomplete.training.export import model_card, relocate_paths

    monkeypatch.chdir(tmp_path)
    old = _state(
        800, None, 1, [(800, 4.9)], command="codecomplete train --set data.path=/art/corpus/tokens,/art/x"
    )
    old["data"] = {"path": "/art/corpus/tokens", "tokenizer": f"{tmp_path}/models/m"}
    new = _state(
        100, f"{tmp_path}/models/m", 2, [], command="codecomplete train --set run.out_dir=/artifacts/r"
    )
    state, runs = relocate_paths([new, [history.run_record(old)]], [("/art", "data/tiny-py")], root=tmp_path)
    assert (
        runs[0]["command"] == "codecomplete train --set data.path=data/tiny-py/corpus/tokens,data/tiny-py/x"
    )
    assert runs[0]["data"] == "data/tiny-py/corpus/tokens"
    assert state["recipe"]["model"]["name_or_path"] == "models/m"
    assert "/artifacts/r" in state["command"]  # /art matches whole path components only
    card = model_card(state, None, state["command"], runs=runs, relocated=[("/art", "data/tiny-py")])
    assert str(tmp_path) not in card and "`/art` -> `data/tiny-py`" in card
