"""GET /v1/models, /v1/models/{id} (openai 1.x `client.models`), /v1/engines (openai 0.x).

Spec: https://platform.openai.com/docs/api-reference/models/object
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "codecomplete"

    # --- codecomplete extras -------------------------------------------------------------------
    root: str
    """The primary served name (all names of one model share it)."""
    context_length: int
    fill_in_the_middle: bool
    """False: this model has no FIM tokens and `suffix` is ignored."""
    fim_template: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EngineCard(BaseModel):
    """openai-python 0.x `Engine`."""

    id: str
    object: Literal["engine"] = "engine"
    owner: str = "codecomplete"
    ready: bool = True
    created: int | None = None


class EngineList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EngineCard]
