"""The model cards of what the engine serves (one card per served name)."""

from __future__ import annotations

from codecomplete.api.deps import check_ready
from codecomplete.api.errors import APIError
from codecomplete.api.models.protocol import EngineCard, EngineList, ModelCard, ModelList
from codecomplete.engine.client import EngineClient


def model_cards(engine: EngineClient) -> list[ModelCard]:
    check_ready(engine)  # model_info exists only once the model is loaded
    info = engine.model_info
    return [
        ModelCard(
            id=name,
            created=info.created,
            root=info.name,
            context_length=info.context_length,
            fill_in_the_middle=info.fim_template is not None,
            fim_template=info.fim_template,
        )
        for name in info.served_names
    ]


def list_models(engine: EngineClient) -> ModelList:
    return ModelList(data=model_cards(engine))


def get_model(engine: EngineClient, model_id: str) -> ModelCard:
    for card in model_cards(engine):
        if card.id == model_id:
            return card
    raise APIError(
        404,
        f"the model {model_id!r} does not exist; this server serves {engine.model_info.served_names} "
        "(completion requests with any other name use the first one)",
        param="model",
        code="model_not_found",
    )


def list_engines(engine: EngineClient) -> EngineList:
    ok = engine.health().ok
    return EngineList(data=[EngineCard(id=c.id, ready=ok, created=c.created) for c in model_cards(engine)])


def get_engine_card(engine: EngineClient, engine_id: str) -> EngineCard:
    card = get_model(engine, engine_id)
    return EngineCard(id=card.id, ready=engine.health().ok, created=card.created)
