"""Value types shared by the notifier's event models: ids, money, languages, and the base
of every model read from the ledger (unknown fields ignored, so the ledger may add fields
without breaking the notifier)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Channel", "Id", "InModel", "Language", "Money", "PartyKind"]

Language = Literal["fr", "en"]
Channel = Literal["email", "webhook"]
#: Who the notifier can tell something: the directory holds these three kinds.
PartyKind = Literal["introducer", "client", "adviser"]

Money = Annotated[Decimal, Field(allow_inf_nan=False, max_digits=24)]
Id = Annotated[str, Field(min_length=1, max_length=256)]


class InModel(BaseModel):
    """Base of the models read from the ledger: frozen, extra fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
