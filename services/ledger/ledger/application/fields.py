"""The contract's field types: one pattern per kind of value, used both to validate (with
full-string matches) and to publish the JSON Schema, so the code and the schemas can never
disagree (a property test feeds the same inputs to both).

Each validator raises a :class:`~pydantic_core.PydanticCustomError` whose type is the
refusal's reason code (``invalid_id``, ``invalid_amount``, ...).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from ledger.application.values import shared_date, shared_decimal, shared_text
from ledger.domain.money import currencies_by_exponent, is_known_currency
from ledger.domain.personal import ERASED

__all__ = [
    "CONTROL_FREE_PATTERN",
    "DATE_PATTERN",
    "EMAIL_SCHEMA",
    "ENVELOPE_ID_PATTERN",
    "ID_PATTERN",
    "MAX_TEXT_CHARS",
    "MONEY_PATTERN",
    "PERIOD_PATTERN",
    "RATE_PATTERN",
    "RUN_ID_PATTERN",
    "TIMESTAMP_PATTERN",
    "WEBHOOK_URL_SCHEMA",
    "Bic",
    "Currency",
    "Day",
    "EndToEndId",
    "EnvelopeId",
    "EnvelopeText",
    "EnvelopeType",
    "Iban",
    "Id",
    "Money",
    "Period",
    "Rate",
    "RunId",
    "Text",
    "Timestamp",
    "check_text",
    "currency_decimals_schema",
    "has_control_characters",
]

MAX_TEXT_CHARS = 500


def _anchored(body: str) -> str:
    """A full-string pattern that means the same in ECMA-262 (the JSON Schema dialect) and in
    Python's ``re`` (where ``$`` alone also matches before a final newline)."""
    return rf"^{body}$(?![\s\S])"


#: Business ids: opaque, 1-128 letters, digits, ``-``, ``_``, ``.``, ``:``.
ID_PATTERN = _anchored(r"[A-Za-z0-9_.:-]{1,128}")
#: Envelope ids: 1-256 printable ASCII characters, no space.
ENVELOPE_ID_PATTERN = _anchored(r"[\x21-\x7e]{1,256}")
#: Money: a plain decimal below 10^12 (at most 12 integer digits), at most 4 decimals.
MONEY_PATTERN = _anchored(r"(0|[1-9][0-9]{0,11})(\.[0-9]{1,4})?")
RATE_PATTERN = _anchored(r"(0(\.[0-9]{1,6})?|1(\.0{1,6})?)")
#: Business dates and months lie in the ledger's calendar, years 1900 to 9949: a month
#: before the first still exists, and a commission schedule (at most 600 months) from the
#: last day still ends within the calendar (year 9999). Anything outside is a typo.
FIRST_YEAR, LAST_YEAR = 1900, 9949
_YEAR = r"(19[0-9]{2}|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-4][0-9])"
DATE_PATTERN = _anchored(_YEAR + r"-[0-9]{2}-[0-9]{2}")
PERIOD_PATTERN = _anchored(_YEAR + r"-(0[1-9]|1[0-2])")
#: RFC 3339 date-time (section 5.6): full date, ``T``, full time, fraction, ``Z`` or offset.
TIMESTAMP_PATTERN = _anchored(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
#: Printable ASCII without space (CloudEvents ``type``), 1-256 characters.
TYPE_PATTERN = _anchored(r"[\x21-\x7e]{1,256}")
#: An IBAN in its electronic form (the checksum and country format are checked too).
IBAN_PATTERN = _anchored(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
BIC_PATTERN = _anchored(r"[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?")
#: An ISO 20022 end-to-end id as the payout files make them.
END_TO_END_PATTERN = _anchored(r"[A-Za-z0-9.-]{1,35}")
#: A payout run's id: short enough that its transfers' end-to-end ids (the run id, a dash
#: and 16 hex digits) fit ISO 20022's 35 characters.
RUN_ID_PATTERN = _anchored(r"[A-Za-z0-9][A-Za-z0-9.-]{0,17}")
#: Free text: no control characters (C0, DEL; C1 included), whatever the language.
CONTROL_FREE_PATTERN = _anchored(r"[^\x00-\x1f\x7f-\x9f]*")

#: An e-mail address (checked by email-validator) and a webhook URL (http or https, checked
#: by pydantic's URL parser): no control characters, whatever the parsers would drop.
EMAIL_SCHEMA = {
    "type": "string",
    "format": "email",
    "maxLength": 320,
    "pattern": _anchored(r"[^\x00-\x1f\x7f-\x9f\s]+@[^\x00-\x1f\x7f-\x9f\s]+"),
}
WEBHOOK_URL_SCHEMA = {
    "type": "string",
    "format": "uri",
    "minLength": 1,
    "maxLength": 2083,
    "pattern": _anchored(r"[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f-\x9f]+"),
}

_ID = re.compile(ID_PATTERN)
_ENVELOPE_ID = re.compile(ENVELOPE_ID_PATTERN)
_MONEY = re.compile(MONEY_PATTERN)
_RATE = re.compile(RATE_PATTERN)
_DATE = re.compile(DATE_PATTERN)
_DATE_SHAPE = re.compile(_anchored(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"))
_PERIOD_SHAPE = re.compile(_anchored(r"[0-9]{4}-(0[1-9]|1[0-2])"))
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
_IBAN = re.compile(IBAN_PATTERN)
_BIC = re.compile(BIC_PATTERN)
_END_TO_END = re.compile(END_TO_END_PATTERN)
_RUN_ID = re.compile(RUN_ID_PATTERN)
_PERIOD = re.compile(PERIOD_PATTERN)
_TYPE = re.compile(TYPE_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None


def check_text(value: str, what: str) -> None:
    """Refuse control characters in free text (``invalid_value``)."""
    if _CONTROL.search(value) is not None:
        raise PydanticCustomError("invalid_value", "{what} contains a control character", {"what": what})


def is_envelope_id(value: object) -> bool:
    return isinstance(value, str) and _ENVELOPE_ID.fullmatch(value) is not None


def _id(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "an id must be a string")
    if _ID.fullmatch(value) is None:
        raise PydanticCustomError(
            "invalid_id",
            "id {value} is not 1-128 characters of letters, digits, '-', '_', '.', ':'",
            {"value": repr(value[:140])},
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
    if value.startswith("-") and _MONEY.fullmatch(value[1:]) is not None:
        raise PydanticCustomError(
            "negative_amount", "amount {value} is negative", {"value": repr(value[:40])}
        )
    if _MONEY.fullmatch(value) is None:
        raise PydanticCustomError(
            "invalid_amount",
            'amount {value} is not a plain decimal below 10^12 like "1234.50"',
            {"value": repr(value[:40])},
        )
    return shared_decimal(value)


def _rate(value: object) -> Decimal:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise PydanticCustomError(
            "rate_as_number",
            'a rate must be a JSON string like "0.10", not the number {value}',
            {"value": value},
        )
    if not isinstance(value, str) or _RATE.fullmatch(value) is None:
        raise PydanticCustomError(
            "invalid_terms",
            'rate {value} is not a decimal string between 0 and 1 like "0.10"',
            {"value": repr(str(value)[:40])},
        )
    return shared_decimal(value)


def _date(value: object) -> date:
    if not isinstance(value, str) or _DATE_SHAPE.fullmatch(value) is None:
        raise PydanticCustomError(
            "invalid_date", "{value} is not an ISO 8601 date YYYY-MM-DD", {"value": repr(str(value)[:40])}
        )
    if _DATE.fullmatch(value) is None:
        raise PydanticCustomError(
            "invalid_date",
            "{value} is outside the ledger's calendar (years {first} to {last})",
            {"value": value, "first": FIRST_YEAR, "last": LAST_YEAR},
        )
    try:
        return shared_date(value)
    except ValueError:
        raise PydanticCustomError(
            "invalid_date", "{value} is not a calendar date", {"value": value}
        ) from None


def _currency(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "a currency must be a string")
    if not is_known_currency(value):
        raise PydanticCustomError(
            "unknown_currency",
            "{value} is not an ISO 4217 currency with a minor unit",
            {"value": repr(value[:10])},
        )
    return shared_text(value)


def _timestamp(value: object) -> str:
    if not isinstance(value, str) or _TIMESTAMP.fullmatch(value) is None:
        raise PydanticCustomError(
            "invalid_envelope",
            "time {value} is not an RFC 3339 date-time like 2025-01-10T09:00:00Z",
            {"value": repr(str(value)[:40])},
        )
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise PydanticCustomError(
            "invalid_envelope", "time {value} is not a real date and time", {"value": repr(value[:40])}
        ) from None
    return value


def _envelope_id(value: object) -> str:
    if not is_envelope_id(value):
        raise PydanticCustomError(
            "invalid_envelope", "id must be 1-256 printable ASCII characters without spaces"
        )
    assert isinstance(value, str)
    return value


def _period(value: object) -> str:
    if not isinstance(value, str) or _PERIOD_SHAPE.fullmatch(value) is None:
        raise PydanticCustomError(
            "invalid_value", "{value} is not a month YYYY-MM", {"value": repr(str(value)[:20])}
        )
    if _PERIOD.fullmatch(value) is None:
        raise PydanticCustomError(
            "invalid_value",
            "{value} is outside the ledger's calendar (years {first} to {last})",
            {"value": value, "first": FIRST_YEAR, "last": LAST_YEAR},
        )
    return value


def _iban(value: object, info: ValidationInfo) -> str:
    if value == ERASED and isinstance(info.context, dict) and info.context.get("stored"):
        return ERASED  # an erased person's IBAN, read back from the log (never at intake)
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "an IBAN must be a string")
    if _IBAN.fullmatch(value) is None:
        raise PydanticCustomError(
            "invalid_iban",
            "an IBAN is written in its electronic form: country, check digits and account, "
            "capitals and digits, no spaces (e.g. CH9300762011623852957)",
        )
    from schwifty import IBAN
    from schwifty.exceptions import SchwiftyException

    try:
        IBAN(value)
    except SchwiftyException as exc:  # checksum, country, length, bank code
        raise PydanticCustomError(
            "invalid_iban", "not a valid IBAN: {why}", {"why": str(exc)[:120]}
        ) from None
    return value


def _end_to_end(value: object) -> str:
    if not isinstance(value, str) or _END_TO_END.fullmatch(value) is None:
        raise PydanticCustomError("invalid_id", "an end-to-end id is 1-35 letters, digits, '.' or '-'")
    return value


def _run_id(value: object) -> str:
    if not isinstance(value, str) or _RUN_ID.fullmatch(value) is None:
        raise PydanticCustomError(
            "invalid_id",
            "a payout run id is 1-18 letters, digits, '.' or '-', starting with a letter or digit",
        )
    return value


def _bic(value: object) -> str:
    if not isinstance(value, str) or _BIC.fullmatch(value) is None:
        raise PydanticCustomError("invalid_value", "a BIC is 8 or 11 capitals and digits (e.g. UBSWCHZH80A)")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "text must be a string")
    if not 1 <= len(value) <= MAX_TEXT_CHARS:
        raise PydanticCustomError(
            "invalid_data",
            "text must be 1-{limit} characters, not {length}",
            {"limit": MAX_TEXT_CHARS, "length": len(value)},
        )
    check_text(value, "text")
    return value


Id = Annotated[str, PlainValidator(_id), WithJsonSchema({"type": "string", "pattern": ID_PATTERN})]
Money = Annotated[
    Decimal,
    PlainValidator(_money),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "description": "decimal amount below 10^12, at most the currency's minor-unit decimals",
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


@cache
def _currency_schema() -> dict[str, Any]:
    codes = sorted(code for group in currencies_by_exponent().values() for code in group)
    return {"type": "string", "enum": codes, "description": "ISO 4217 code with a minor unit"}


Currency = Annotated[str, PlainValidator(_currency), WithJsonSchema(_currency_schema())]
Iban = Annotated[
    str,
    PlainValidator(_iban),
    WithJsonSchema({"type": "string", "pattern": IBAN_PATTERN, "description": "IBAN, electronic form"}),
]
Bic = Annotated[str, PlainValidator(_bic), WithJsonSchema({"type": "string", "pattern": BIC_PATTERN})]
EndToEndId = Annotated[
    str, PlainValidator(_end_to_end), WithJsonSchema({"type": "string", "pattern": END_TO_END_PATTERN})
]
RunId = Annotated[str, PlainValidator(_run_id), WithJsonSchema({"type": "string", "pattern": RUN_ID_PATTERN})]
Period = Annotated[
    str, PlainValidator(_period), WithJsonSchema({"type": "string", "pattern": PERIOD_PATTERN})
]
Text = Annotated[
    str,
    PlainValidator(_text),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS, "pattern": CONTROL_FREE_PATTERN}
    ),
]
EnvelopeId = Annotated[
    str, PlainValidator(_envelope_id), WithJsonSchema({"type": "string", "pattern": ENVELOPE_ID_PATTERN})
]
Timestamp = Annotated[
    str,
    PlainValidator(_timestamp),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}),
]


def _envelope_text(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 1024 or has_control_characters(value):
        raise PydanticCustomError(
            "invalid_envelope", "must be a string of 1-1024 characters without control characters"
        )
    return value


def _envelope_type(value: object) -> str:
    if not isinstance(value, str) or _TYPE.fullmatch(value) is None:
        raise PydanticCustomError("invalid_envelope", "type must be 1-256 printable ASCII characters")
    return value


#: Short free text of the envelope (source, subject): bounded, no control characters.
EnvelopeText = Annotated[
    str,
    PlainValidator(_envelope_text),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 1024, "pattern": CONTROL_FREE_PATTERN}),
]
EnvelopeType = Annotated[
    str, PlainValidator(_envelope_type), WithJsonSchema({"type": "string", "pattern": TYPE_PATTERN})
]


def currency_decimals_schema(amount_fields: list[str]) -> list[dict[str, Any]]:
    """JSON Schema ``if``/``then`` blocks: the amount fields of a model with a ``currency``
    have at most that currency's minor-unit decimals (what ``too_many_decimals`` checks)."""
    blocks: list[dict[str, Any]] = []
    for exponent, codes in sorted(currencies_by_exponent().items()):
        fraction = "" if exponent == 0 else rf"(\.[0-9]{{1,{exponent}}})?"
        pattern = _anchored(rf"(0|[1-9][0-9]{{0,11}}){fraction}")
        blocks.append(
            {
                "if": {"properties": {"currency": {"enum": sorted(codes)}}, "required": ["currency"]},
                "then": {"properties": {name: {"pattern": pattern} for name in amount_fields}},
            }
        )
    return blocks
