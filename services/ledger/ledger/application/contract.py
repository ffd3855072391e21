"""The public wire contract (``shared/spec/contract.md``) as strict pydantic v2 models.

Inbound messages are CloudEvents 1.0 structured JSON. :func:`parse_envelope` turns raw
bytes into an :class:`Envelope` and a domain fact, or raises :class:`Refusal` with a
specific ``reason`` code and a readable ``message``. The same models generate the JSON
Schema files in ``schemas/`` (see :mod:`ledger.application.schemas`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ledger.domain import facts as f
from ledger.domain.calendar import MAX_MONTHS
from ledger.domain.money import MAX_AMOUNT, fits_currency, is_known_currency, minor_unit_exponent

__all__ = [
    "INBOUND_TYPES",
    "MAX_MESSAGE_BYTES",
    "REASON_CODES",
    "Envelope",
    "ParsedFact",
    "Refusal",
    "fact_to_data",
    "parse_envelope",
]

#: Largest inbound message or ``--events`` line the ledger reads.
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TEXT_CHARS = 500
MAX_TERMS = 24
MAX_PURCHASES_PER_REBATE = 1000

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
ENVELOPE_ID_PATTERN = r"^[\x21-\x7e]{1,256}$"
MONEY_PATTERN = r"^(0|[1-9][0-9]{0,12})(\.[0-9]{1,4})?$"
RATE_PATTERN = r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"

_ID = re.compile(ID_PATTERN)
_ENVELOPE_ID = re.compile(ENVELOPE_ID_PATTERN)
_MONEY = re.compile(MONEY_PATTERN)
_RATE = re.compile(RATE_PATTERN)
_DATE = re.compile(DATE_PATTERN)


class Refusal(Exception):
    """An inbound message the ledger refuses: ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str, envelope_id: str | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.envelope_id = envelope_id


# Field types -------------------------------------------------------------------------


def _id(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "an id must be a string")
    if not _ID.match(value):
        raise PydanticCustomError(
            "invalid_id",
            "id '{value}' is not 1-128 characters of letters, digits, '-', '_', '.', ':'",
            {"value": value[:140]},
        )
    return value


def _money(value: object) -> Decimal:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise PydanticCustomError(
            "money_as_number",
            'money must be a JSON string holding a decimal ("12.50"), not the number {value}',
            {"value": value},
        )
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "money must be a JSON string holding a decimal")
    if value.startswith("-"):
        raise PydanticCustomError("negative_amount", "amount '{value}' is negative", {"value": value[:40]})
    if not _MONEY.match(value):
        raise PydanticCustomError(
            "invalid_amount",
            "amount '{value}' is not a plain decimal below 10^12 like \"1234.50\"",
            {"value": value[:40]},
        )
    amount = Decimal(value)
    assert amount < MAX_AMOUNT
    return amount


def _rate(value: object) -> Decimal:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise PydanticCustomError(
            "rate_as_number",
            'a rate must be a JSON string like "0.10", not the number {value}',
            {"value": value},
        )
    if not isinstance(value, str) or not _RATE.match(value):
        raise PydanticCustomError(
            "invalid_terms",
            "rate '{value}' is not a decimal string between 0 and 1 like \"0.10\"",
            {"value": str(value)[:40]},
        )
    return Decimal(value)


def _date(value: object) -> date:
    if not isinstance(value, str) or not _DATE.match(value):
        raise PydanticCustomError(
            "invalid_date", "'{value}' is not an ISO 8601 date YYYY-MM-DD", {"value": str(value)[:40]}
        )
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "invalid_date", "'{value}' is not a calendar date", {"value": value}
        ) from None


def _currency(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "a currency must be a string")
    if not is_known_currency(value):
        raise PydanticCustomError(
            "unknown_currency",
            "'{value}' is not an ISO 4217 currency with a minor unit",
            {"value": value[:10]},
        )
    return value


Id = Annotated[
    str,
    PlainValidator(_id),
    WithJsonSchema({"type": "string", "pattern": ID_PATTERN}),
]
Money = Annotated[
    Decimal,
    PlainValidator(_money),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "description": "decimal amount, at most the currency's minor-unit decimals",
        }
    ),
]
Rate = Annotated[
    Decimal,
    PlainValidator(_rate),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": RATE_PATTERN, "description": "decimal rate between 0 and 1"}
    ),
]
Day = Annotated[
    date,
    PlainValidator(_date),
    PlainSerializer(date.isoformat, return_type=str),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]
Currency = Annotated[
    str,
    PlainValidator(_currency),
    WithJsonSchema({"type": "string", "pattern": CURRENCY_PATTERN, "description": "ISO 4217 code"}),
]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    TYPE: ClassVar[str]

    def to_fact(self) -> f.Fact:
        raise NotImplementedError


def _check_fits(currency: str, **amounts: Decimal) -> None:
    for name, amount in amounts.items():
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


# Inbound data types -------------------------------------------------------------------


class IntroducerRegisteredV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.introducer.registered.v1"
    introducer_id: Id
    display_name: Text
    email: EmailStr | None = None
    webhook_url: HttpUrl | None = None
    language: Literal["fr", "en"] = "fr"

    def to_fact(self) -> f.Fact:
        return f.IntroducerRegistered(
            self.introducer_id,
            self.display_name,
            self.email,
            str(self.webhook_url) if self.webhook_url is not None else None,
            self.language,
        )


class EligibilityChangedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.introducer.eligibility_changed.v1"
    introducer_id: Id
    can_receive_commission: bool
    effective_date: Day

    def to_fact(self) -> f.Fact:
        return f.EligibilityChanged(self.introducer_id, self.can_receive_commission, self.effective_date)


class TermV1(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    rate: Rate
    months: Annotated[int, Field(ge=1, le=MAX_MONTHS)]


class IntroductionRecordedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.introduction.recorded.v1"
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
        return f.IntroductionRecorded(
            self.introduction_id,
            self.introducer_id,
            self.client_id,
            self.adviser_id,
            self.date,
            terms,
            self.terms_reason,
            self.prior_last_invoice_date,
        )


class InvoiceIssuedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.invoice.issued.v1"
    invoice_id: Id
    adviser_id: Id
    client_id: Id
    issue_date: Day
    currency: Currency
    net_amount: Money
    tax_amount: Money = Decimal(0)

    @model_validator(mode="after")
    def _fits(self) -> InvoiceIssuedV1:
        _check_fits(self.currency, net_amount=self.net_amount, tax_amount=self.tax_amount)
        return self

    def to_fact(self) -> f.Fact:
        return f.InvoiceIssued(
            self.invoice_id,
            self.adviser_id,
            self.client_id,
            self.issue_date,
            self.currency,
            self.net_amount,
            self.tax_amount,
        )


class CreditNoteIssuedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.credit_note.issued.v1"
    credit_note_id: Id
    invoice_id: Id
    issue_date: Day
    net_amount: Money
    tax_amount: Money = Decimal(0)

    def to_fact(self) -> f.Fact:
        return f.CreditNoteIssued(
            self.credit_note_id, self.invoice_id, self.issue_date, self.net_amount, self.tax_amount
        )


class PaymentReceivedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.payment.received.v1"
    payment_id: Id
    invoice_id: Id
    date: Day
    amount: Money

    def to_fact(self) -> f.Fact:
        return f.PaymentReceived(self.payment_id, self.invoice_id, self.date, self.amount)


class PayoutRecordedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.payout.recorded.v1"
    payout_id: Id
    adviser_id: Id
    beneficiary_id: Id
    date: Day
    currency: Currency
    amount: Money

    @model_validator(mode="after")
    def _fits(self) -> PayoutRecordedV1:
        _check_fits(self.currency, amount=self.amount)
        return self

    def to_fact(self) -> f.Fact:
        return f.PayoutRecorded(
            self.payout_id, self.adviser_id, self.beneficiary_id, self.date, self.currency, self.amount
        )


class PurchaseRecordedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.purchase.recorded.v1"
    purchase_id: Id
    client_id: Id
    supplier_id: Id
    date: Day
    currency: Currency
    cost_amount: Money

    @model_validator(mode="after")
    def _fits(self) -> PurchaseRecordedV1:
        _check_fits(self.currency, cost_amount=self.cost_amount)
        return self

    def to_fact(self) -> f.Fact:
        return f.PurchaseRecorded(
            self.purchase_id, self.client_id, self.supplier_id, self.date, self.currency, self.cost_amount
        )


class ResaleInvoicedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.resale.invoiced.v1"
    resale_id: Id
    purchase_id: Id
    date: Day
    amount: Money

    def to_fact(self) -> f.Fact:
        return f.ResaleInvoiced(self.resale_id, self.purchase_id, self.date, self.amount)


class RebateReceivedV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.rebate.received.v1"
    rebate_id: Id
    supplier_id: Id
    date: Day
    currency: Currency
    amount: Money
    purchase_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_PURCHASES_PER_REBATE)]

    @model_validator(mode="after")
    def _check(self) -> RebateReceivedV1:
        _check_fits(self.currency, amount=self.amount)
        if len(set(self.purchase_ids)) != len(self.purchase_ids):
            raise PydanticCustomError("invalid_value", "purchase_ids lists a purchase twice")
        return self

    def to_fact(self) -> f.Fact:
        return f.RebateReceived(
            self.rebate_id, self.supplier_id, self.date, self.currency, self.amount, tuple(self.purchase_ids)
        )


class RebatePassedThroughV1(_Data):
    TYPE: ClassVar[str] = "coop.ledger.rebate.passed_through.v1"
    pass_through_id: Id
    client_id: Id
    date: Day
    currency: Currency
    amount: Money

    @model_validator(mode="after")
    def _fits(self) -> RebatePassedThroughV1:
        _check_fits(self.currency, amount=self.amount)
        return self

    def to_fact(self) -> f.Fact:
        return f.RebatePassedThrough(
            self.pass_through_id, self.client_id, self.date, self.currency, self.amount
        )


INBOUND_TYPES: dict[str, type[_Data]] = {
    model.TYPE: model
    for model in (
        IntroducerRegisteredV1,
        EligibilityChangedV1,
        IntroductionRecordedV1,
        InvoiceIssuedV1,
        CreditNoteIssuedV1,
        PaymentReceivedV1,
        PayoutRecordedV1,
        PurchaseRecordedV1,
        ResaleInvoicedV1,
        RebateReceivedV1,
        RebatePassedThroughV1,
    )
}


# Envelope ------------------------------------------------------------------------------


def _rfc3339(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("invalid_envelope", "time must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PydanticCustomError(
            "invalid_envelope", "time '{value}' is not RFC 3339", {"value": value[:40]}
        ) from None
    if parsed.tzinfo is None or "T" not in value.upper():
        raise PydanticCustomError(
            "invalid_envelope", "time '{value}' needs a date, a time and an offset", {"value": value[:40]}
        )
    return value


def _envelope_id(value: object) -> str:
    if not isinstance(value, str) or not _ENVELOPE_ID.match(value):
        raise PydanticCustomError(
            "invalid_envelope", "id must be 1-256 printable ASCII characters without spaces"
        )
    return value


EnvelopeId = Annotated[
    str, PlainValidator(_envelope_id), WithJsonSchema({"type": "string", "pattern": ENVELOPE_ID_PATTERN})
]
Timestamp = Annotated[
    str, PlainValidator(_rfc3339), WithJsonSchema({"type": "string", "format": "date-time"})
]


class Envelope(BaseModel):
    """A CloudEvents 1.0 structured-mode envelope. Extension attributes are kept."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    specversion: Literal["1.0"]
    id: EnvelopeId
    source: Annotated[str, Field(min_length=1, max_length=1024)]
    type: Annotated[str, Field(min_length=1, max_length=256)]
    time: Timestamp | None = None
    datacontenttype: Literal["application/json"] | None = None
    subject: Annotated[str, Field(max_length=1024)] | None = None
    data: dict[str, Any]

    @model_validator(mode="after")
    def _extensions(self) -> Envelope:
        for name, value in (self.model_extra or {}).items():
            if not re.fullmatch(r"[a-z0-9]{1,20}", name):
                raise PydanticCustomError(
                    "invalid_envelope", "'{name}' is not a CloudEvents attribute name", {"name": name[:40]}
                )
            if not isinstance(value, (str, int, bool)):
                raise PydanticCustomError(
                    "invalid_envelope",
                    "extension '{name}' must be a string, integer or boolean",
                    {"name": name},
                )
        return self


@dataclass(frozen=True, slots=True)
class ParsedFact:
    """An accepted envelope and the fact it carries."""

    envelope: Envelope
    fact: f.Fact
    #: The envelope exactly as received (JSON values), what the log stores.
    document: dict[str, Any]


#: Every reason code a refusal can carry (documented in the README).
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
    }
)

_OUR_CODES = {
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
    elif kind in {"value_error", "literal_error", "enum"} or kind.startswith("url_"):
        reason = "invalid_value"
    else:
        reason = "invalid_data"
    message = f"{where}: {first['msg']}"
    more = len(errors) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return reason, message


def parse_envelope(raw: bytes | str) -> ParsedFact:
    """Validate one inbound message against the contract, or raise :class:`Refusal`."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_MESSAGE_BYTES:
        raise Refusal("too_large", f"message of {size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refusal("invalid_json", f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Refusal("invalid_json", f"expected a JSON object, got {type(doc).__name__}")
    raw_id = doc.get("id")
    envelope_id = raw_id if isinstance(raw_id, str) and _ENVELOPE_ID.match(raw_id) else None
    try:
        envelope = Envelope.model_validate(doc)
    except ValidationError as exc:
        _, message = _reason(exc)
        raise Refusal("invalid_envelope", message, envelope_id) from None
    model = INBOUND_TYPES.get(envelope.type)
    if model is None:
        raise Refusal("unknown_type", f"unknown type {envelope.type[:100]!r}", envelope.id)
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as exc:
        reason, message = _reason(exc)
        raise Refusal(reason, message, envelope.id) from None
    return ParsedFact(envelope=envelope, fact=data.to_fact(), document=doc)


def fact_to_data(fact: f.Fact) -> dict[str, Any]:
    """The contract's ``data`` object for a domain fact (the inverse of ``to_fact``)."""
    model = _MODEL_OF_FACT[type(fact)]
    data: dict[str, Any] = model.model_validate(_fact_fields(fact)).model_dump(mode="json", exclude_none=True)
    return data


def type_of_fact(fact: f.Fact) -> str:
    """The contract's CloudEvents ``type`` for a domain fact."""
    return _MODEL_OF_FACT[type(fact)].TYPE


def _fact_fields(fact: f.Fact) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fact.__dataclass_fields__:
        value = getattr(fact, name)
        if value is None:
            continue
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, date):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = [{"rate": str(t.rate), "months": t.months} if isinstance(t, f.Term) else t for t in value]
        out[name] = value
    return out


_MODEL_OF_FACT: dict[type, type[_Data]] = {
    f.IntroducerRegistered: IntroducerRegisteredV1,
    f.EligibilityChanged: EligibilityChangedV1,
    f.IntroductionRecorded: IntroductionRecordedV1,
    f.InvoiceIssued: InvoiceIssuedV1,
    f.CreditNoteIssued: CreditNoteIssuedV1,
    f.PaymentReceived: PaymentReceivedV1,
    f.PayoutRecorded: PayoutRecordedV1,
    f.PurchaseRecorded: PurchaseRecordedV1,
    f.ResaleInvoiced: ResaleInvoicedV1,
    f.RebateReceived: RebateReceivedV1,
    f.RebatePassedThrough: RebatePassedThroughV1,
}
assert set(_MODEL_OF_FACT.values()) == set(INBOUND_TYPES.values())
