"""Request and response models of the corrections API (/api/feedback): what /docs shows."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FeedbackJSON(BaseModel):
    """One correction: the drawing (`image` or `pixels`, as for /api/predict) and its digit."""

    image: str | None = Field(None, description="data URL or base64 of the drawing (as predict)")
    pixels: list[float] | list[list[float]] | None = Field(
        None, description="784 numbers or 28 rows of 28, 0..255 (MNIST form)")
    preprocess: bool = Field(False, description="send `pixels` through crop/scale/centring")
    label: int = Field(ge=0, le=9, description="the right digit")
    predicted: int | None = Field(None, ge=0, le=9, description="the digit the page showed")
    model_version: str | None = Field(None, max_length=64,
                                      description="the model version the page showed")
    client_id: str | None = Field(None, min_length=1, max_length=64,
                                  pattern=r"^[A-Za-z0-9_-]+$",
                                  description="a random id the browser keeps (rate limit)")
    share_canvas: bool = Field(False, description="also keep the drawing as sent (PNG, <= 64 KB)")


class FeedbackCreated(BaseModel):
    id: int
    created: bool = Field(description="false when the same image with the same label was "
                          "already stored (the answer is then 200 with the existing id)")
    label: int
    predicted: int | None
    model_version: str | None


class VersionStats(BaseModel):
    model_version: str | None
    count: int
    judged: int = Field(description="corrections the model had read (predicted is known)")
    wrong: int
    wrong_share: float | None


class FeedbackStats(BaseModel):
    total: int
    per_label: list[int] = Field(min_length=10, max_length=10)
    per_model_version: list[VersionStats]
    wrong: int
    wrong_share: float | None = Field(description="share of judged corrections the model got "
                                      "wrong")


class FeedbackItem(BaseModel):
    id: int
    created_at: str
    label: int
    predicted: int | None
    probabilities: list[float] | None
    model_version: str | None
    client_id: str | None
    has_canvas: bool
    image: list[list[int]] = Field(description="28x28 pixels 0..255: what is stored")


class FeedbackPage(BaseModel):
    items: list[FeedbackItem]
    total: int = Field(description="corrections matching the filters")
    next_before_id: int | None = Field(description="pass as before_id for the next page")


class FeedbackDeleted(BaseModel):
    deleted: int
