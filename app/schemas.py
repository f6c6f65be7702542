"""Request and response models: what /docs shows and what responses are checked against."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class PredictJSON(BaseModel):
    """One image: `image` (a data URL or base64) or `pixels` (MNIST form), not both."""

    image: str | None = Field(
        None,
        description="data URL (data:image/png;base64,...) or base64 of a PNG/JPEG/GIF/BMP/WebP",
    )
    pixels: list[float] | list[list[float]] | None = Field(
        None, description="784 numbers or 28 rows of 28, 0..255, light digit on dark (MNIST form)"
    )
    preprocess: bool = Field(False, description="send `pixels` through crop/scale/centring first")


class PredictUpload(BaseModel):
    file: bytes = Field(description="an image file (PNG, JPEG, GIF, BMP, WebP)")


class VerdictDetail(BaseModel):
    """The numbers behind a verdict (see model/verdict.py)."""

    verdict: Literal["digit", "unsure", "not_a_digit"]
    reason: str = Field(description="the first failed test, `low_confidence`, `confident` or "
                        "`uncalibrated`")
    failed: list[str] = Field(description="every not-a-digit test whose score is over its "
                              "threshold")
    message: str = Field(description="the verdict in words")
    candidates: list[int] = Field(description="the two likeliest digits")
    calibrated_confidence: float | None = Field(
        description="the top probability after temperature scaling")
    sure_above: float = Field(description="calibrated confidence above which validation "
                              "answers were right 99% of the time")
    temperature: float | None
    scores: dict[str, float | None]
    thresholds: dict[str, float]


class VerdictInfo(BaseModel):
    """How the served model's verdict was fitted (model/calibrate.py)."""

    model_version: str
    max_rejection: float
    thresholds: dict[str, float]
    valid_rejection: float
    valid_rejection_by_score: dict[str, float]
    temperature: float
    target_accuracy: float
    sure_above: float
    sure_coverage: float
    reliability: dict[str, dict[str, Any]]
    risk_coverage: dict[str, list[float]]
    rejected_examples: list[dict[str, Any]]


class Prediction(BaseModel):
    digit: int = Field(ge=0, le=9)
    confidence: float
    probabilities: list[float] = Field(min_length=10, max_length=10)
    preview: list[list[int]] = Field(description="28x28 pixels 0..255: what the model saw")
    verdict: Literal["digit", "unsure", "not_a_digit"]
    verdict_detail: VerdictDetail
    model_version: str
    elapsed_ms: float


class BatchJSON(BaseModel):
    images: list[str] | None = Field(None, description="data URLs or base64 images")
    pixels: list[list[float] | list[list[float]]] | None = Field(
        None, description="images in MNIST form, each 784 numbers or 28x28"
    )
    preprocess: bool = False
    previews: bool = Field(True, description="false: answers without the 28x28 previews")
    verdicts: bool = Field(True, description="false: answers without verdicts (not judged)")


class BatchPrediction(BaseModel):
    digit: int | None = None
    confidence: float | None = None
    probabilities: list[float] | None = None
    preview: list[list[int]] | None = None
    verdict: Literal["digit", "unsure", "not_a_digit"] | None = None
    verdict_detail: VerdictDetail | None = None
    error: str | None = None
    code: str | None = None
    status: int | None = None


class BatchResponse(BaseModel):
    predictions: list[BatchPrediction]
    model_version: str
    elapsed_ms: float


class ErrorBody(BaseModel):
    detail: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    model_version: str | None = None
    device: str | None = None
    detail: str | None = None


class Metrics(BaseModel):
    accuracy: float
    loss: float
    n: int
    precision: list[float]
    recall: list[float]
    confusion: list[list[int]]


class ModelCard(BaseModel):
    model_version: str
    arch: str
    parameters: int
    device: str
    mean: float
    std: float
    transforms: list[str]
    train_size: int | None = None
    valid_size: int | None = None
    config: dict[str, Any] | None = None
    history: list[dict[str, Any]]
    valid: Metrics | None = None
    test: Metrics | None = None
    train_seconds: float | None = None
    trained_on: str | None = None
    created: str | None = None
    torch_version: str | None = None
    data_sha256: str | None = None


class Weights(BaseModel):
    weights: list[list[list[float]]] = Field(description="10 templates of 28x28 weights")
    bias: list[float]
    mean: float
    std: float


class GalleryItem(BaseModel):
    image: list[list[int]]
    true: int
    predicted: int


class Gallery(BaseModel):
    items: list[GalleryItem]


# Open Inference Protocol v2


class V2Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class V2RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class V2InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor]
    outputs: list[V2RequestOutput] | None = None


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[V2Tensor]


class V2Error(BaseModel):
    error: str


class V2TensorMeta(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMeta]
    outputs: list[V2TensorMeta]


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class V2Live(BaseModel):
    live: bool


class V2Ready(BaseModel):
    ready: bool


class V2ModelReady(BaseModel):
    name: str
    ready: bool
