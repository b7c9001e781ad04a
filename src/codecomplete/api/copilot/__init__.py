"""GitHub Copilot's control plane: token, user, experiment config, telemetry (api/copilot/router.py)."""
