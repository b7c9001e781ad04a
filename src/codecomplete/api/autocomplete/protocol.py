"""The legacy ivolution VS Code plugin: POST /autocomplete {"text": ...} -> {"result": [...]}.

The plugin sends the last 30 lines plus the current line up to the cursor, with any Content-Type,
and reads five continuations. Defaults are the old backend's (8 new tokens, top_p 0.85,
temperature 1); `n` and `max_tokens` are honoured when sent.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from codecomplete.api.completions.protocol import check_text
from codecomplete.engine.types import SamplingParams


class AutocompleteRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"text": "import numpy as np\nx = np.", "n": 3}]}
    )

    text: str
    n: Annotated[int, Field(ge=1)] = 5
    max_tokens: Annotated[int, Field(ge=1, le=256)] = 8
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] = 0.85

    @field_validator("text")
    @classmethod
    def _valid_text(cls, value: str) -> str:
        return check_text(value, "text")

    def to_sampling_params(self) -> SamplingParams:
        return SamplingParams(
            max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p, n=self.n
        )


class AutocompleteResponse(BaseModel):
    result: list[str]
