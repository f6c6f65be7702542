"""Schema fuzzing: schemathesis drives the app through its own /openapi.json (in process, ASGI).

Every generated request, valid or deliberately invalid by the schema, must get an answer that
is not a 5xx, whose status code the operation declares, whose content type it declares, and
whose body matches the declared schema for that status. One test per operation, each bounded
(a few examples per generation mode, fixed seed, no deadline) so that the whole file runs in
about a minute on two cores.

Schemathesis's own pytest plugin (`schemathesis.pytest.from_fixture`) does not work with the
pytest this project uses, so the operations are listed from the app's schema at collection
time and each one is driven through `APIOperation.as_strategy` with Hypothesis directly.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from PIL import Image, ImageDraw
from schemathesis.checks import load_all_checks
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.schemas import OpenApiSchema

from app.main import create_app
from app.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO / "models" / "mnist-logreg.safetensors"
EXAMPLES_PER_MODE = 300
MODEL_NAME = "mnist-logreg"
DEBUG = bool(os.environ.get("MNIST_CANVAS_FUZZ_DEBUG"))  # print every case and its answer
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

load_all_checks()
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def _settings(model_path: Path, data_dir: Path) -> Settings:
    return Settings(
        model_path=model_path, data_dir=data_dir, download=False, train_on_start="never",
        device="cpu", log_level="warning",
        # Small limits keep generated bodies cheap and put the limit paths in reach.
        max_batch=8, max_body_bytes=256 * 1024,
    )


def _operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation in the app's schema; building it loads no model."""
    document = create_app(_settings(SHIPPED_MODEL, Path("/nonexistent"))).openapi()
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    ]


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def api_schema(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> OpenApiSchema:
    if SHIPPED_MODEL.exists():
        model_path = SHIPPED_MODEL
    else:
        model_path = request.getfixturevalue("default_model_path")
    app = create_app(_settings(model_path, tmp_path_factory.mktemp("fuzz") / "no-data"))
    config = schemathesis.Config()
    config.projects.default.generation.update(deterministic=True, database="none")
    # Schemathesis starts the app's lifespan (the model loads) on the first request.
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


def test_schema_lists_the_api() -> None:
    labels = {f"{method} {path}" for method, path in OPERATIONS}
    assert {"POST /api/predict", "POST /api/predict/batch", "GET /readyz",
            "POST /v2/models/{name}/infer"} <= labels


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["positive", "negative"])
def test_operation_conforms_to_its_schema(
    method: str, path: str, mode: GenerationMode, api_schema: OpenApiSchema
) -> None:
    operation = api_schema[path][method]
    strategy = operation.as_strategy(generation_mode=mode)
    if "{name}" in path:
        # A random model name only ever reaches the 404; half the cases name the real model.
        strategy = strategy | operation.as_strategy(
            generation_mode=mode, path_parameters={"name": MODEL_NAME}
        )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=CHECKS)
        if DEBUG:
            print("CASE", method, path, mode.value, case.media_type, response.status_code,
                  response.text[:100].replace("\n", " "))

    try:
        run()
    except Unsatisfiable:
        # An operation without parameters or body has no invalid inputs to generate.
        pytest.skip(f"{method} {path} has no {mode.value} cases")


def _digit_png() -> bytes:
    """A synthetic dark '7' on white, as a PNG."""
    img = Image.new("L", (140, 140), 255)
    ImageDraw.Draw(img).line([(30, 30), (110, 30), (60, 120)], fill=0, width=12)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _data_url() -> str:
    return "data:image/png;base64," + base64.b64encode(_digit_png()).decode()


SEVEN = [0.0] * 784
for _i in range(6, 22):
    SEVEN[6 * 28 + _i] = 255.0  # the bar
    SEVEN[(6 + _i - 5) * 28 + 21 - (_i - 6) // 2] = 255.0  # the stem


# (id, method, path, media type, body, path parameters): requests the app answers with 200,
# whose answers must match the declared 200 schema (random generation rarely gets there).
VALID_REQUESTS: list[tuple[str, str, str, str | None, Any, dict[str, str] | None]] = [
    ("predict-pixels", "POST", "/api/predict", "application/json", {"pixels": SEVEN}, None),
    ("predict-pixels-28x28", "POST", "/api/predict", "application/json",
     {"pixels": [SEVEN[r * 28:(r + 1) * 28] for r in range(28)], "preprocess": True}, None),
    ("predict-data-url", "POST", "/api/predict", "application/json", {"image": _data_url()},
     None),
    ("predict-upload", "POST", "/api/predict", "multipart/form-data", {"file": _digit_png()},
     None),
    ("predict-raw-png", "POST", "/api/predict", "image/png", _digit_png(), None),
    ("batch-pixels", "POST", "/api/predict/batch", "application/json",
     {"pixels": [SEVEN, [0.0] * 783]}, None),
    ("batch-images", "POST", "/api/predict/batch", "application/json",
     {"images": [_data_url(), "not base64!"]}, None),
    ("v2-infer", "POST", "/v2/models/{name}/infer", "application/json",
     {"id": "a", "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 784],
                             "data": [v / 255 for v in SEVEN] * 2}]}, {"name": MODEL_NAME}),
    ("v2-model", "GET", "/v2/models/{name}", None, None, {"name": MODEL_NAME}),
    ("v2-model-ready", "GET", "/v2/models/{name}/ready", None, None, {"name": MODEL_NAME}),
]


@pytest.mark.parametrize(
    ("method", "path", "media_type", "body", "params"),
    [row[1:] for row in VALID_REQUESTS],
    ids=[row[0] for row in VALID_REQUESTS],
)
def test_valid_request_answer_matches_its_schema(
    method: str, path: str, media_type: str | None, body: Any, params: dict[str, str] | None,
    api_schema: OpenApiSchema,
) -> None:
    operation = api_schema[path][method]
    kwargs: dict[str, Any] = {"path_parameters": params} if params else {}
    if body is not None:
        kwargs.update(body=body, media_type=media_type)
    case = operation.Case(**kwargs)
    response = case.call_and_validate(checks=CHECKS)
    assert response.status_code == 200, response.text[:300]
