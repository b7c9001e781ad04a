"""The same model scored two ways, as a folder and through the real server on loopback, gives the
same greedy predictions and the same perplexity."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from codecomplete.api.app import build_app
from codecomplete.engine import EngineConfig, build_engine
from codecomplete.eval.runner import EvalConfig, run_eval
from codecomplete.settings import ServerSettings


@pytest.fixture(scope="module")
def real_server(tiny_model_dir):
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = str(tiny_model_dir)
    # Token healing off: the folder backend runs model.generate on the prompt as tokenised, and the
    # comparison is of the two paths, not of healing (tests/engine/test_healing.py).
    config = EngineConfig(model=model, served_names=["tiny"], device="cpu", token_healing=False)
    engine = build_engine(config)
    app = build_app(ServerSettings(model=model), engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["line-completion", "fim"])
def test_server_and_folder_give_the_same_greedy_predictions(task, real_server, tiny_model_dir, py_dir):
    common = dict(task=task, data=str(py_dir), n=6, max_tokens=8, seed=5)
    served = run_eval(EvalConfig(base_url=real_server, **common))
    local = run_eval(EvalConfig(model=str(tiny_model_dir), device="cpu", **common))
    assert [e["prediction"] for e in served["examples"]] == [e["prediction"] for e in local["examples"]]
    assert served["metrics"] == local["metrics"]


@pytest.mark.slow
def test_server_and_folder_give_the_same_perplexity(real_server, tiny_model_dir, token_dir):
    common = dict(task="perplexity", data=str(token_dir), n=3, window=128)
    served = run_eval(EvalConfig(base_url=real_server, **common))
    local = run_eval(EvalConfig(model=str(tiny_model_dir), device="cpu", **common))
    assert served["metrics"]["tokens_scored"] == local["metrics"]["tokens_scored"] == 3 * 127
    assert served["metrics"]["perplexity"] == pytest.approx(local["metrics"]["perplexity"], rel=1e-3)
