"""Request and response bodies of the HTTP API (pydantic): wrong types are a 422 naming the field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

Timestamp = StrictFloat  # unix seconds (ints accepted, fractions floored); strings are refused, not parsed


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(Strict):
    user_id: StrictInt = Field(description="original MovieLens user id (or one that has ingested events)")
    k: StrictInt = Field(10, description="number of items, 1..catalogue size")
    exclude_seen: StrictBool = Field(True, description="leave out items the user already interacted with")
    at: Timestamp | None = Field(None, description="request time, unix seconds (default: now)")


class RecommendedItem(BaseModel):
    item_id: int
    title: str | None
    genres: list[str] | None = None
    score: float
    rating: float | None = Field(description="predicted rating; null when the model has no rating head")


class RecommendResponse(BaseModel):
    user_id: int
    items: list[RecommendedItem]


class RatingsRequest(Strict):
    user_id: StrictInt
    item_ids: list[StrictInt] = Field(min_length=1, description="original MovieLens item ids")
    at: Timestamp | None = None


class PredictedRating(BaseModel):
    item_id: int
    rating: float


class RatingsResponse(BaseModel):
    user_id: int
    ratings: list[PredictedRating]


class EventRequest(Strict):
    user_id: StrictInt = Field(description="original id; a new id creates a user")
    item_id: StrictInt
    timestamp: Timestamp = Field(description="unix seconds; an event older than the user's last is fine")
    rating: StrictFloat | None = None


class EventResponse(BaseModel):
    user_id: int
    n_events: int
    in_order: bool
