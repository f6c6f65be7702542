"""The app's FastAPI class: FastAPI plus the request-body schemas of the routes that read their
body by hand (several content types, or raw JSON parsed with orjson).

Those routes describe their bodies with `openapi_extra` and `$ref`s to
`#/components/schemas/<Model>`; FastAPI only adds models that routes take as parameters, so
`openapi()` (overridden as FastAPI's docs describe, "Extending OpenAPI") adds these.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from app.schemas import BatchJSON, PredictJSON, PredictUpload, V2InferRequest

EXTRA_SCHEMAS: tuple[type[BaseModel], ...] = (PredictJSON, PredictUpload, BatchJSON,
                                              V2InferRequest)


class CanvasAPI(FastAPI):
    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()  # builds and caches self.openapi_schema
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in EXTRA_SCHEMAS:
                found = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(found.pop("$defs", {}))
                components[model.__name__] = found
        return self.openapi_schema or {}
