"""The public wire contract (``shared/spec/contract.md``) as strict pydantic v2 models.

Inbound messages are CloudEvents 1.0 structured JSON. :func:`parse_envelope` turns raw
bytes into an :class:`Envelope` and a domain fact, or raises :class:`Rejection` with a
specific ``reason`` code and a readable ``message``. The same models generate the JSON
Schema files in ``schemas/`` (see :mod:`ledger.application.schemas`); the field types and
their patterns come from :mod:`ledger.application.fields`, one source for both.

Each inbound type is one model class below: it registers itself in :data:`INBOUND_TYPES`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ledger.application.fields import (
    CONTROL_FREE_PATTERN,
    EMAIL_SCHEMA,
    WEBHOOK_URL_SCHEMA,
    Bic,
    Currency,
    Day,
    EndToEndId,
    EnvelopeId,
    EnvelopeText,
    EnvelopeType,
    Iban,
    Id,
    Money,
    Period,
    Rate,
    RunId,
    Text,
    Timestamp,
    check_text,
    currency_decimals_schema,
    has_control_characters,
    is_envelope_id,
)
from ledger.application.sealing import TOKEN_PREFIX, Keyring, is_token, open_data
from ledger.application.values import (
    SHARED_TEXT_FIELDS,
    shared_date,
    shared_decimal,
    shared_facts_values,
    shared_fields,
    shared_text,
)
from ledger.domain import facts as f
from ledger.domain.calendar import MAX_MONTHS
from ledger.domain.money import fits_currency, minor_unit_exponent
from ledger.domain.periods import month_end
from ledger.domain.personal import personal_fields_of

__all__ = [
    "INBOUND_TYPES",
    "MAX_MESSAGE_BYTES",
    "REASON_CODES",
    "Envelope",
    "ParsedFact",
    "Rejection",
    "fact_of_accepted",
    "fact_of_stored",
    "fact_to_data",
    "has_duplicate_keys",
    "parse_envelope",
    "type_of_fact",
]

#: Largest inbound message or ``--events`` line the ledger reads.
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TERMS = 24
MAX_PURCHASES_PER_REBATE = 1000
#: Most lines of a payout run (one per beneficiary and currency).
MAX_RUN_LINES = 10_000
#: CloudEvents attributes (the 8 the contract names and extensions) at most; each string
#: extension value at most this long, all extensions at most this many bytes of JSON
#: (they are stored with the fact).
MAX_ATTRIBUTES = 24
MAX_EXTENSION_CHARS = 512
MAX_EXTENSIONS_BYTES = 2048


class Rejection(Exception):
    """An inbound message the ledger rejects: ``reason`` is a stable code (README, "Reason
    codes"), ``message`` says what is wrong in words."""

    def __init__(self, reason: str, message: str, envelope_id: str | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.envelope_id = envelope_id

    def detached(self) -> Rejection:
        """A fresh copy without the traceback (a raised one keeps its frames alive)."""
        return Rejection(self.reason, self.message, self.envelope_id)


#: Every inbound type: the CloudEvents ``type`` -> its data model. The models fill it
#: themselves (:meth:`_Data.__init_subclass__`): adding a type is writing its model.
INBOUND_TYPES: dict[str, type[_Data]] = {}
_MODEL_OF_FACT: dict[type, type[_Data]] = {}


class _Data(BaseModel):
    """The ``data`` of one inbound type. A subclass names its CloudEvents ``TYPE``, the
    domain fact it carries (``FACT``) and, when it has a ``currency``, the amount fields
    whose decimals that currency bounds (``AMOUNTS``); it registers itself."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    TYPE: ClassVar[str]
    FACT: ClassVar[type]
    AMOUNTS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        type_name = cls.__dict__.get("TYPE")
        if type_name is None:
            return
        assert type_name not in INBOUND_TYPES, type_name
        assert cls.FACT not in _MODEL_OF_FACT, cls.FACT
        INBOUND_TYPES[type_name] = cls
        _MODEL_OF_FACT[cls.FACT] = cls

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> Any:
        schema = handler(core_schema)
        if cls.AMOUNTS:
            target = handler.resolve_ref_schema(schema)
            target["allOf"] = currency_decimals_schema(list(cls.AMOUNTS))
        return schema

    @model_validator(mode="after")
    def _amounts_fit_currency(self) -> _Data:
        currency = getattr(self, "currency", None)
        for name in self.AMOUNTS:
            amount: Decimal = getattr(self, name)
            assert currency is not None, name
            if not fits_currency(amount, currency):
                raise PydanticCustomError(
                    "too_many_decimals",
                    "{name} {amount} has more decimals than {currency} allows ({digits})",
                    {
                        "name": name,
                        "amount": str(amount),
                        "currency": currency,
                        "digits": minor_unit_exponent(currency),
                    },
                )
        return self

    def to_fact(self) -> f.Fact:
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        fact: f.Fact = self.FACT(**shared_fields(self.FACT, fields))
        return fact


# Inbound data types -------------------------------------------------------------------


class _ContactV1(_Data):
    """A party's contact (introducer, client, adviser): how it is told what concerns it."""

    display_name: Text
    email: Annotated[EmailStr, WithJsonSchema(EMAIL_SCHEMA)] | None = None
    webhook_url: Annotated[HttpUrl, WithJsonSchema(WEBHOOK_URL_SCHEMA)] | None = None
    language: Literal["fr", "en"] = "fr"

    @model_validator(mode="before")
    @classmethod
    def _plain_text(cls, data: Any) -> Any:
        # URL parsing drops tabs and newlines silently: refuse them before it sees them
        if isinstance(data, dict):
            for name in ("email", "webhook_url"):
                value = data.get(name)
                if isinstance(value, str):
                    check_text(value, name)
        return data

    def to_fact(self) -> f.Fact:
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        if self.webhook_url is not None:
            fields["webhook_url"] = str(self.webhook_url)
        fact: f.Fact = self.FACT(**shared_fields(self.FACT, fields))
        return fact


class IntroducerRegisteredV1(_ContactV1):
    """Rule the schema cannot express: the IBAN's checksum and its country's format."""

    TYPE: ClassVar[str] = "coop.ledger.introducer.registered.v1"
    FACT: ClassVar[type] = f.IntroducerRegistered
    introducer_id: Id
    iban: Iban | None = None
    bic: Bic | None = None
    account_holder: Text | None = None


class ClientRegisteredV1(_ContactV1):
    TYPE: ClassVar[str] = "coop.ledger.client.registered.v1"
    FACT: ClassVar[type] = f.ClientRegistered
    client_id: Id


class AdviserRegisteredV1(_ContactV1):
    TYPE: ClassVar[str] = "coop.ledger.adviser.registered.v1"
    FACT: ClassVar[type] = f.AdviserRegistered
    adviser_id: Id


class BankDetailsChangedV1(_Data):
    """An introducer's bank account from a date on. Rule the schema cannot express: the
    IBAN's checksum and its country's format (``invalid_iban``)."""

    TYPE: ClassVar[str] = "coop.ledger.introducer.bank_details.v1"
    FACT: ClassVar[type] = f.BankDetailsChanged
    introducer_id: Id
    iban: Iban
    effective_date: Day
    bic: Bic | None = None
    account_holder: Text | None = None


class EligibilityChangedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.introducer.eligibility_changed.v1"
    FACT: ClassVar[type] = f.EligibilityChanged
    introducer_id: Id
    can_receive_commission: bool
    effective_date: Day


class TermV1(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    rate: Rate
    months: Annotated[int, Field(ge=1, le=MAX_MONTHS)]


def _voidable(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "target_type must be a string")
    if value not in f.VOIDABLE_TYPES:
        raise PydanticCustomError(
            "not_voidable",
            "{value} cannot be voided (voidable: {types}); an invoice is corrected by a credit note, "
            "and a void cannot itself be voided",
            {"value": repr(value[:40]), "types": ", ".join(sorted(f.VOIDABLE_TYPES))},
        )
    return value


def _both_or_neither(a: str, a_type: str, b: str, b_type: str) -> dict[str, Any]:
    """JSON Schema: ``a`` is given (not null) exactly when ``b`` is."""
    return {
        "if": {"properties": {a: {"type": a_type}}, "required": [a]},
        "then": {"properties": {b: {"type": b_type}}, "required": [b]},
        "else": {"not": {"properties": {b: {"type": b_type}}, "required": [b]}},
    }


class IntroductionRecordedV1(_Data):
    """Rules the schema cannot express: the terms' months add up to at most 600, and
    ``prior_last_invoice_date`` is before ``date`` (both refused by the ledger)."""

    model_config = ConfigDict(
        json_schema_extra={"allOf": [_both_or_neither("terms", "array", "terms_reason", "string")]}
    )
    TYPE: ClassVar[str] = "coop.ledger.introduction.recorded.v1"
    FACT: ClassVar[type] = f.IntroductionRecorded
    introduction_id: Id
    introducer_id: Id
    client_id: Id
    adviser_id: Id
    date: Day
    terms: Annotated[list[TermV1], Field(min_length=1, max_length=MAX_TERMS)] | None = None
    terms_reason: Text | None = None
    prior_last_invoice_date: Day | None = None

    @model_validator(mode="after")
    def _terms_need_reason(self) -> IntroductionRecordedV1:
        if self.terms is not None and self.terms_reason is None:
            raise PydanticCustomError("invalid_terms", "custom terms need a terms_reason (rule R2)")
        if self.terms is None and self.terms_reason is not None:
            raise PydanticCustomError("invalid_terms", "terms_reason given without terms")
        if self.terms is not None and sum(t.months for t in self.terms) > MAX_MONTHS:
            raise PydanticCustomError(
                "invalid_terms", "terms span more than {limit} months", {"limit": MAX_MONTHS}
            )
        if self.prior_last_invoice_date is not None and self.prior_last_invoice_date >= self.date:
            raise PydanticCustomError(
                "invalid_value", "prior_last_invoice_date must be before the introduction's date"
            )
        return self

    def to_fact(self) -> f.Fact:
        terms = tuple(f.Term(t.rate, t.months) for t in self.terms) if self.terms is not None else None
        introduction = f.IntroductionRecorded(
            self.introduction_id,
            self.introducer_id,
            self.client_id,
            self.adviser_id,
            self.date,
            terms,
            self.terms_reason,
            self.prior_last_invoice_date,
        )
        return shared_facts_values(introduction)


class InvoiceIssuedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.invoice.issued.v1"
    FACT: ClassVar[type] = f.InvoiceIssued
    AMOUNTS: ClassVar[tuple[str, ...]] = ("net_amount", "tax_amount")
    invoice_id: Id
    adviser_id: Id
    client_id: Id
    issue_date: Day
    currency: Currency
    net_amount: Money
    tax_amount: Money = Decimal(0)


class CreditNoteIssuedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.credit_note.issued.v1"
    FACT: ClassVar[type] = f.CreditNoteIssued
    credit_note_id: Id
    invoice_id: Id
    issue_date: Day
    net_amount: Money
    tax_amount: Money = Decimal(0)


class PaymentReceivedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.payment.received.v1"
    FACT: ClassVar[type] = f.PaymentReceived
    payment_id: Id
    invoice_id: Id
    date: Day
    amount: Money


class PayoutRecordedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.payout.recorded.v1"
    FACT: ClassVar[type] = f.PayoutRecorded
    AMOUNTS: ClassVar[tuple[str, ...]] = ("amount",)
    payout_id: Id
    adviser_id: Id
    beneficiary_id: Id
    date: Day
    currency: Currency
    amount: Money
    run_id: RunId | None = None
    end_to_end_id: EndToEndId | None = None
    bank_reference: Text | None = None


class PayoutLineV1(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    beneficiary_id: Id
    currency: Currency
    amount: Money


class PayoutRunProposedV1(_Data):
    """A payout run from a closed month. Rules the schema cannot express: each amount above
    zero with at most its currency's decimals, each (beneficiary, currency) once."""

    TYPE: ClassVar[str] = "coop.ledger.payout_run.proposed.v1"
    FACT: ClassVar[type] = f.PayoutRunProposed
    run_id: RunId
    period: Period
    date: Day
    proposed_by: Id
    lines: Annotated[list[PayoutLineV1], Field(min_length=1, max_length=MAX_RUN_LINES)]

    @model_validator(mode="after")
    def _lines(self) -> PayoutRunProposedV1:
        seen: set[tuple[str, str]] = set()
        for line in self.lines:
            if line.amount <= 0 or not fits_currency(line.amount, line.currency):
                raise PydanticCustomError(
                    "invalid_amount",
                    "a payout of {amount} {currency} is not above zero in the currency's minor unit",
                    {"amount": str(line.amount), "currency": line.currency},
                )
            if (line.beneficiary_id, line.currency) in seen:
                raise PydanticCustomError(
                    "invalid_value",
                    "{who} is listed twice in {currency}",
                    {"who": line.beneficiary_id, "currency": line.currency},
                )
            seen.add((line.beneficiary_id, line.currency))
        return self

    def to_fact(self) -> f.Fact:
        lines = tuple(f.PayoutLine(x.beneficiary_id, x.currency, x.amount) for x in self.lines)
        return shared_facts_values(
            f.PayoutRunProposed(self.run_id, self.period, self.date, self.proposed_by, lines)
        )


class PayoutRunApprovedV1(_Data):
    """A second person approves a run (checked against the proposal in the log:
    ``unknown_run``, ``approval_required``)."""

    TYPE: ClassVar[str] = "coop.ledger.payout_run.approved.v1"
    FACT: ClassVar[type] = f.PayoutRunApproved
    run_id: RunId
    date: Day
    approved_by: Id


class PurchaseRecordedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.purchase.recorded.v1"
    FACT: ClassVar[type] = f.PurchaseRecorded
    AMOUNTS: ClassVar[tuple[str, ...]] = ("cost_amount",)
    purchase_id: Id
    client_id: Id
    supplier_id: Id
    date: Day
    currency: Currency
    cost_amount: Money


class ResaleInvoicedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.resale.invoiced.v1"
    FACT: ClassVar[type] = f.ResaleInvoiced
    resale_id: Id
    purchase_id: Id
    date: Day
    amount: Money


class RebateReceivedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.rebate.received.v1"
    FACT: ClassVar[type] = f.RebateReceived
    AMOUNTS: ClassVar[tuple[str, ...]] = ("amount",)
    rebate_id: Id
    supplier_id: Id
    date: Day
    currency: Currency
    amount: Money
    purchase_ids: Annotated[
        list[Id],
        Field(min_length=1, max_length=MAX_PURCHASES_PER_REBATE, json_schema_extra={"uniqueItems": True}),
    ]

    @model_validator(mode="after")
    def _each_purchase_once(self) -> RebateReceivedV1:
        if len(set(self.purchase_ids)) != len(self.purchase_ids):
            raise PydanticCustomError("invalid_value", "purchase_ids lists a purchase twice")
        return self

    def to_fact(self) -> f.Fact:
        rebate = f.RebateReceived(
            self.rebate_id, self.supplier_id, self.date, self.currency, self.amount, tuple(self.purchase_ids)
        )
        return shared_facts_values(rebate)


class RebatePassedThroughV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.rebate.passed_through.v1"
    FACT: ClassVar[type] = f.RebatePassedThrough
    AMOUNTS: ClassVar[tuple[str, ...]] = ("amount",)
    pass_through_id: Id
    client_id: Id
    date: Day
    currency: Currency
    amount: Money


class VendorCommissionReceivedV1(_Data):
    """A vendor's commission to an adviser on a client's purchase, disclosed to the client."""

    TYPE: ClassVar[str] = "coop.ledger.vendor_commission.received.v1"
    FACT: ClassVar[type] = f.VendorCommissionReceived
    AMOUNTS: ClassVar[tuple[str, ...]] = ("amount",)
    vendor_commission_id: Id
    adviser_id: Id
    client_id: Id
    supplier_id: Id
    date: Day
    currency: Currency
    amount: Money
    description: Text


class FactVoidedV1(_Data):
    """A fact recorded in error, taken back (rules R8). Rule the schema cannot express:
    ``requested_by`` and ``approved_by`` are two different people (``approval_required``)."""

    TYPE: ClassVar[str] = "coop.ledger.fact.voided.v1"
    FACT: ClassVar[type] = f.FactVoided
    void_id: Id
    target_type: Annotated[
        str, PlainValidator(_voidable), WithJsonSchema({"type": "string", "enum": sorted(f.VOIDABLE_TYPES)})
    ]
    target_id: Id
    date: Day
    reason: Text
    requested_by: Id
    approved_by: Id

    @model_validator(mode="after")
    def _four_eyes(self) -> FactVoidedV1:
        if self.requested_by == self.approved_by:
            raise PydanticCustomError(
                "approval_required",
                "a void needs two people: approved_by must differ from requested_by ({who})",
                {"who": self.requested_by},
            )
        return self


class PeriodClosedV1(_Data):
    """A month closed by the treasurer (rules R9). Rules the schema cannot express:
    ``closed_by`` and ``approved_by`` are two different people (``approval_required``), and
    ``date`` is after the month's last day (``period_not_ended``); each close must be the
    month right after the last closed one (``period_out_of_order``, checked against the log)."""

    TYPE: ClassVar[str] = "coop.ledger.period.closed.v1"
    FACT: ClassVar[type] = f.PeriodClosed
    period: Period
    date: Day
    closed_by: Id
    approved_by: Id

    @model_validator(mode="after")
    def _closable(self) -> PeriodClosedV1:
        if self.closed_by == self.approved_by:
            raise PydanticCustomError(
                "approval_required",
                "a close needs two people: approved_by must differ from closed_by ({who})",
                {"who": self.closed_by},
            )
        end = month_end(self.period)
        if self.date <= end:
            raise PydanticCustomError(
                "period_not_ended",
                "{period} ends on {end}: it can be closed from the next day, not on {date}",
                {"period": self.period, "end": end.isoformat(), "date": self.date.isoformat()},
            )
        return self


class PartyErasedV1(_Data):
    """A person's personal data erased at their request (right to erasure): their data
    key is destroyed; ids, amounts and figures stay. No personal data in it. Rule the
    schema cannot express: ``requested_by`` and ``approved_by`` are two different people
    (``approval_required``)."""

    TYPE: ClassVar[str] = "coop.ledger.party.erased.v1"
    FACT: ClassVar[type] = f.PartyErased
    party_type: Literal["introducer", "client", "adviser"]
    party_id: Id
    requested_by: Id
    approved_by: Id

    @model_validator(mode="after")
    def _four_eyes(self) -> PartyErasedV1:
        if self.requested_by == self.approved_by:
            raise PydanticCustomError(
                "approval_required",
                "an erasure needs two people: approved_by must differ from requested_by ({who})",
                {"who": self.requested_by},
            )
        return self


# Envelope ------------------------------------------------------------------------------

_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")


_ATTRIBUTES = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "subject",
    "data",
    "dataschema",
)


def _envelope_schema_extra(schema: dict[str, Any]) -> None:
    """Extension attributes in the published schema as the ledger checks them (all but the
    total size, at most MAX_EXTENSIONS_BYTES of JSON, which a schema cannot express)."""
    schema.pop("additionalProperties", None)
    schema["patternProperties"] = {
        rf"^(?!({'|'.join(_ATTRIBUTES)})$)[a-z0-9]{{1,20}}$": {
            "type": ["string", "integer", "boolean"],
            "maxLength": MAX_EXTENSION_CHARS,
            "pattern": CONTROL_FREE_PATTERN,
        }
    }
    schema["additionalProperties"] = False
    schema["maxProperties"] = MAX_ATTRIBUTES


class Envelope(BaseModel):
    """A CloudEvents 1.0 structured-mode envelope. Extension attributes are kept (bounded)."""

    model_config = ConfigDict(
        extra="allow", strict=True, frozen=True, json_schema_extra=_envelope_schema_extra
    )
    specversion: Literal["1.0"]
    id: EnvelopeId
    source: EnvelopeText
    type: EnvelopeType
    time: Timestamp | None = None
    datacontenttype: Literal["application/json"] | None = None
    subject: EnvelopeText | None = None
    data: dict[str, Any]

    @model_validator(mode="after")
    def _extensions(self) -> Envelope:
        extra = self.model_extra or {}
        count = len(self.model_fields_set)  # extension attributes included
        if count > MAX_ATTRIBUTES:
            raise PydanticCustomError(
                "invalid_envelope",
                "{count} attributes, at most {limit}",
                {"count": count, "limit": MAX_ATTRIBUTES},
            )
        for name, value in extra.items():
            if _EXTENSION_NAME.fullmatch(name) is None:
                raise PydanticCustomError(
                    "invalid_envelope",
                    "{name} is not a CloudEvents attribute name",
                    {"name": repr(name[:40])},
                )
            if not isinstance(value, (str, int, bool)):
                raise PydanticCustomError(
                    "invalid_envelope",
                    "extension '{name}' must be a string, integer or boolean",
                    {"name": name},
                )
            if isinstance(value, str) and (len(value) > MAX_EXTENSION_CHARS or has_control_characters(value)):
                raise PydanticCustomError(
                    "invalid_envelope",
                    "extension '{name}' must be at most {limit} characters without control characters",
                    {"name": name, "limit": MAX_EXTENSION_CHARS},
                )
        if extra and len(orjson.dumps(extra)) > MAX_EXTENSIONS_BYTES:
            raise PydanticCustomError(
                "invalid_envelope",
                "extension attributes exceed {limit} bytes",
                {"limit": MAX_EXTENSIONS_BYTES},
            )
        return self


@dataclass(frozen=True, slots=True)
class ParsedFact:
    """An accepted envelope and the fact it carries."""

    envelope: Envelope
    fact: f.Fact
    #: The envelope exactly as received (JSON values), what the log stores.
    document: dict[str, Any]


#: Every reason code a rejection can carry (documented in the README).
REASON_CODES = frozenset(
    {
        "invalid_json",
        "too_large",
        "invalid_envelope",
        "unknown_type",
        "missing_field",
        "unknown_field",
        "wrong_type",
        "money_as_number",
        "rate_as_number",
        "negative_amount",
        "invalid_amount",
        "too_many_decimals",
        "unknown_currency",
        "invalid_id",
        "invalid_date",
        "invalid_terms",
        "invalid_value",
        "invalid_data",
        "conflict",
        "not_voidable",
        "approval_required",
        "period_not_ended",
        "period_out_of_order",
        "invalid_iban",
        "unknown_run",
        "party_erased",
    }
)

_OUR_CODES = {
    "invalid_iban",
    "period_not_ended",
    "not_voidable",
    "approval_required",
    "money_as_number",
    "rate_as_number",
    "negative_amount",
    "invalid_amount",
    "too_many_decimals",
    "unknown_currency",
    "invalid_id",
    "invalid_date",
    "invalid_terms",
    "invalid_value",
    "invalid_envelope",
    "invalid_data",
    "wrong_type",
}


def _reason(error: ValidationError) -> tuple[str, str]:
    """Map pydantic's errors to one reason code and a readable message."""
    errors = error.errors(include_url=False)
    first = next((e for e in errors if e["type"] in _OUR_CODES), errors[0])
    kind = first["type"]
    where = ".".join(str(p) for p in first["loc"]) or "data"
    if kind in _OUR_CODES:
        reason = kind
    elif kind == "missing":
        reason = "missing_field"
    elif kind == "extra_forbidden":
        reason = "unknown_field"
    elif kind.endswith("_type") or kind in {"bool_parsing", "int_parsing", "int_from_float"}:
        reason = "wrong_type"
    elif kind in {"value_error", "literal_error", "enum", "string_pattern_mismatch"} or kind.startswith(
        "url_"
    ):
        reason = "invalid_value"
    else:
        reason = "invalid_data"
    message = f"{where}: {first['msg']}"
    more = len(errors) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return reason, message


#: One JSON string (escapes included) and what follows it: a colon after optional whitespace
#: makes it an object key. Outside strings valid JSON has no quotes, so matching string after
#: string from the left finds every string, and counts exactly the keys of the text.
_STRING_THEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"[ \t\n\r]*(:?)')


def _key_count(text: bytes) -> int:
    """How many object keys the (valid) JSON ``text`` writes, duplicates included."""
    return _STRING_THEN.findall(text).count(b":")


def has_duplicate_keys(text: bytes, doc: Any) -> bool:
    """Whether the valid JSON ``text`` (parsed into ``doc``, which keeps one value per key)
    writes a key twice in one object.

    ``doc``'s compact dump holds each key once. Without a backslash and without whitespace
    after a quote in ``text``, every quote delimits a string, and ``":`` counts the keys plus
    the strings that begin with a colon; those strings are the same in both texts unless a
    key is written twice (whose dropped copy then adds to ``text``'s count). So the counts
    differ exactly when a key is repeated: two byte counts, no Python per key. Otherwise the
    strings are matched one by one."""
    compact = orjson.dumps(doc)
    if (
        b"\\" not in text
        and b'" ' not in text
        and b'"\n' not in text
        and b'"\t' not in text
        and b'"\r' not in text
    ):
        return text.count(b'":') != compact.count(b'":')
    return _key_count(text) != _key_count(compact)


def parse_envelope(raw: bytes | str, *, sealed: bool = False) -> ParsedFact:
    """Validate one inbound message against the contract, or raise :class:`Rejection`.

    A personal field holding a sealed token (``pd1:...``) is refused (``invalid_value``):
    tokens are what the log stores, never what a sender sends. With ``sealed`` (a replay of
    an exported log, whose keys stay in the store) each token reads as erased instead."""
    data = raw.encode() if isinstance(raw, str) else raw
    size = len(data)
    if size > MAX_MESSAGE_BYTES:
        raise Rejection("too_large", f"message of {size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Rejection("invalid_json", f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Rejection("invalid_json", f"expected a JSON object, got {type(doc).__name__}")
    raw_id = doc.get("id")
    envelope_id = raw_id if is_envelope_id(raw_id) else None
    try:
        duplicated = has_duplicate_keys(data, doc)
    except orjson.JSONEncodeError:  # orjson writes back fewer levels than it reads
        raise Rejection("invalid_json", "nested too deeply for a contract message", envelope_id) from None
    if duplicated:
        raise Rejection("invalid_json", "an object has the same key twice", envelope_id)
    try:
        envelope = Envelope.model_validate(doc)
    except ValidationError as exc:
        _, message = _reason(exc)
        raise Rejection("invalid_envelope", message, envelope_id) from None
    model = INBOUND_TYPES.get(envelope.type)
    if model is None:
        raise Rejection("unknown_type", f"unknown type {envelope.type[:100]!r}", envelope.id)
    fields = envelope.data
    tokens = [name for name in personal_fields_of(model.FACT) if is_token(fields.get(name))]
    if tokens and not sealed:
        message = (
            f"data.{tokens[0]}: values starting with {TOKEN_PREFIX!r} are reserved for sealed personal data"
        )
        raise Rejection("invalid_value", message, envelope.id)
    if tokens:
        fields = open_data(model.FACT, fields, None)
    try:
        parsed = model.model_validate(fields, context={"stored": True} if tokens else None)
    except ValidationError as exc:
        reason, message = _reason(exc)
        raise Rejection(reason, message, envelope.id) from None
    return ParsedFact(envelope=envelope, fact=parsed.to_fact(), document=doc)


def fact_of_stored(envelope: dict[str, Any], keyring: Keyring | None) -> f.Fact:
    """The fact carried by a stored (already accepted) envelope, its personal fields opened
    with ``keyring`` (erased when they cannot be)."""
    model = INBOUND_TYPES[envelope["type"]]
    data = open_data(model.FACT, envelope["data"], keyring)
    fact: f.Fact = model.model_validate(data, context={"stored": True}).to_fact()
    return fact


def fact_of_accepted(envelope: dict[str, Any], keyring: Keyring | None) -> f.Fact:
    """:func:`fact_of_stored` for a fact of the ledger's own log, read back at start-up or
    catch-up: the contract was checked when it was accepted and the chain hash proves these
    are the accepted bytes, so the common types (no personal field, plain fields) are built
    directly from their JSON values instead of validated again (``ledger audit verify``
    still re-validates every stored fact). Anything unexpected goes the validating way."""
    decode = _DIRECT.get(envelope["type"])
    if decode is not None:
        try:
            return decode(envelope["data"])
        except (KeyError, TypeError, ValueError, ArithmeticError):
            pass
    return fact_of_stored(envelope, keyring)


def _json_converter(hint: Any) -> tuple[type, Callable[[Any], Any] | None] | None:
    """For a fact field's type: the JSON type its value must have and how to convert it
    (None: as it is); None when the field is not a plain value."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        return _json_converter(rest[0]) if len(rest) == 1 else None
    if hint is Decimal:
        return (str, shared_decimal)
    if hint is date:
        return (str, shared_date)
    if hint in (str, bool, int):
        return (hint, None)
    if typing.get_origin(hint) is Literal and {type(a) for a in args} == {str}:
        return (str, None)
    return None


def _direct_decoder(model: type[_Data]) -> Callable[[dict[str, Any]], f.Fact] | None:
    """A decoder building ``model``'s fact straight from accepted JSON values, or None when
    the type is not plain enough (personal fields, nested values, its own ``to_fact``).
    A value of another JSON type than the field's raises ``TypeError`` (then the caller
    reads the validating way)."""
    if model.to_fact is not _Data.to_fact or personal_fields_of(model.FACT):
        return None
    hints = typing.get_type_hints(model.FACT)
    converters = {item.name: _json_converter(hints[item.name]) for item in dataclasses.fields(model.FACT)}
    plain = {name: converter for name, converter in converters.items() if converter is not None}
    if len(plain) != len(converters):
        return None
    plain = {
        name: (kind, shared_text if kind is str and name in SHARED_TEXT_FIELDS else convert)
        for name, (kind, convert) in plain.items()
    }
    assert set(plain) == set(model.model_fields), model
    fact_type = model.FACT

    def decode(data: dict[str, Any]) -> f.Fact:
        values: dict[str, Any] = {}
        for name, value in data.items():
            if value is None:
                values[name] = None
                continue
            kind, convert = plain[name]
            if type(value) is not kind:
                raise TypeError(f"{name}: {type(value).__name__}")
            values[name] = value if convert is None else convert(value)
        fact: f.Fact = fact_type(**values)
        return fact

    return decode


#: The types built directly by :func:`fact_of_accepted` and their decoders.
_DIRECT: dict[str, Callable[[dict[str, Any]], f.Fact]] = {
    name: decoder for name, model in INBOUND_TYPES.items() if (decoder := _direct_decoder(model)) is not None
}


def fact_to_data(fact: f.Fact) -> dict[str, Any]:
    """The contract's ``data`` object for a domain fact (the inverse of ``to_fact``)."""
    model = _MODEL_OF_FACT[type(fact)]
    fields = model.model_validate(_fact_fields(fact), context={"stored": True})
    data: dict[str, Any] = fields.model_dump(mode="json", exclude_none=True)
    return data


def type_of_fact(fact: f.Fact) -> str:
    """The contract's CloudEvents ``type`` for a domain fact."""
    return _MODEL_OF_FACT[type(fact)].TYPE


def _fact_fields(fact: f.Fact) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in dataclasses.fields(fact):  # type: ignore[arg-type]
        name = item.name
        value = getattr(fact, name)
        if value is None:
            continue
        out[name] = _json_value(value)
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {item.name: _json_value(getattr(value, item.name)) for item in dataclasses.fields(value)}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
