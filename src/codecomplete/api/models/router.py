"""Model listing routes (with and without /v1, for 0.x clients whose api_base lacks it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from codecomplete.api.deps import get_engine, require_api_key
from codecomplete.api.errors import error_responses
from codecomplete.api.models import serving
from codecomplete.api.models.protocol import EngineCard, EngineList, ModelCard, ModelList
from codecomplete.engine.client import EngineClient

router = APIRouter(dependencies=[Depends(require_api_key)], responses=error_responses(401, 404))

Engine = Annotated[EngineClient, Depends(get_engine)]


@router.get("/v1/models", response_model=ModelList)
@router.get("/models", response_model=ModelList, include_in_schema=False)
async def list_models(engine: Engine) -> ModelList:
    return serving.list_models(engine)


# Model ids may contain slashes (org/model).
@router.get("/v1/models/{model_id:path}", response_model=ModelCard)
@router.get("/models/{model_id:path}", response_model=ModelCard, include_in_schema=False)
async def get_model(model_id: str, engine: Engine) -> ModelCard:
    return serving.get_model(engine, model_id)


@router.get("/v1/engines", response_model=EngineList)
@router.get("/engines", response_model=EngineList, include_in_schema=False)
async def list_engines(engine: Engine) -> EngineList:
    return serving.list_engines(engine)


@router.get("/v1/engines/{engine_id:path}", response_model=EngineCard)
@router.get("/engines/{engine_id:path}", response_model=EngineCard, include_in_schema=False)
async def get_engine(engine_id: str, engine: Engine) -> EngineCard:
    return serving.get_engine_card(engine, engine_id)
