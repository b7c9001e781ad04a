"""Settings: flags, CODECOMPLETE_* variables and defaults agree (and the --help says so)."""

from __future__ import annotations

import pytest

from codecomplete.cli import _SERVE_FLAGS, build_parser, serve_settings
from codecomplete.settings import ServerSettings


def _settings(argv: list[str]) -> ServerSettings:
    args, _ = build_parser().parse_known_args(["serve", *argv])
    return serve_settings(args)


def test_every_setting_has_a_flag_and_every_flag_a_setting():
    assert set(_SERVE_FLAGS) == set(ServerSettings.model_fields)
    help_text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    for name in _SERVE_FLAGS:
        assert "--" + name.replace("_", "-") in help_text


def test_defaults(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("CODECOMPLETE_"):
            monkeypatch.delenv(key)
    s = _settings([])
    assert (s.host, s.port, s.device, s.dtype, s.api_key, s.model) == (
        "127.0.0.1",
        5000,
        "auto",
        "auto",
        None,
        None,
    )


def test_environment_then_flags(monkeypatch):
    monkeypatch.setenv("CODECOMPLETE_PORT", "5123")
    monkeypatch.setenv("CODECOMPLETE_SERVED_MODEL_NAME", "a, b")
    monkeypatch.setenv("CODECOMPLETE_API_KEY", "k")
    s = _settings([])
    assert s.port == 5123 and s.served_model_name == ["a", "b"] and s.api_key_value() == "k"
    s = _settings(["--port", "6000", "--served-model-name", "x", "y", "z"])
    assert s.port == 6000 and s.served_model_name == ["x", "y", "z"]
    monkeypatch.setenv("CODECOMPLETE_SERVED_MODEL_NAME", '["j1", "j2"]')
    assert _settings([]).served_model_name == ["j1", "j2"]


def test_token_healing_is_on_by_default_and_can_be_turned_off(monkeypatch):
    monkeypatch.delenv("CODECOMPLETE_TOKEN_HEALING", raising=False)
    assert _settings([]).token_healing is True
    assert _settings(["--no-token-healing"]).token_healing is False
    monkeypatch.setenv("CODECOMPLETE_TOKEN_HEALING", "false")
    assert _settings([]).token_healing is False
    s = _settings(["--token-healing", "--token-healing-max-chars", "4"])  # the flag wins
    assert s.token_healing is True and s.token_healing_max_chars == 4


def test_bad_values_name_the_flag(monkeypatch):
    monkeypatch.delenv("CODECOMPLETE_PORT", raising=False)
    with pytest.raises(SystemExit, match="--port"):
        _settings(["--port", "70000"])
    with pytest.raises(SystemExit, match="--max-batch-size"):
        _settings(["--max-batch-size", "0"])


def test_api_key_is_not_printed():
    s = ServerSettings(api_key="very-secret")
    assert "very-secret" not in repr(s) and "very-secret" not in str(s.model_dump())


def test_default_model_is_the_shipped_one_from_the_working_directory(tmp_path, monkeypatch):
    from codecomplete.cli import resolve_model

    shipped = tmp_path / "models" / "codecomplete-tiny-py"
    shipped.mkdir(parents=True)
    (shipped / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CODECOMPLETE_MODEL", raising=False)
    assert resolve_model(ServerSettings()) == str(shipped)
    assert resolve_model(ServerSettings(model="org/other")) == "org/other"
