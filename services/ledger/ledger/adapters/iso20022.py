"""ISO 20022 payment files: pain.001 out (the payouts we order), camt.053/054 in (what the bank did).

Pure functions over typed values: nothing here opens a socket, reads the clock or writes a
file; the only thing read is the pain.001 XSD that ``sepaxml`` ships. The same inputs always
give the same bytes.

Decisions (where ISO 20022, SIX's Swiss Payment Standards (SPS) and the EPC's SEPA rules
leave a choice):

**Message.** pain.001.001.09, the generic ISO 20022 message, namespace
``urn:iso:std:iso:20022:tech:xsd:pain.001.001.09``, default namespace (no prefix),
no ``xsi:schemaLocation``. Every file is validated against the official XSD
(``sepaxml/schemas/pain.001.001.09.xsd``) before it is returned. SPS 2022 and later
(``pain.001.001.09.ch.03``) and the EPC's SEPA guidelines (2019 and later) both use this
namespace and restrict the message; the file keeps inside both restrictions for the only two
kinds of payment it makes:

- **CHF**: a Swiss domestic payment (SPS type "D"): debtor and creditor IBANs in CH or LI;
  no ``SvcLvl``. A CHF payment abroad is a cross-border payment with other rules: refused.
  A QR-IBAN creditor (IID 30000-31999) needs a QR reference, which a payout has not: refused.
- **EUR**: a SEPA credit transfer: ``PmtTpInf/SvcLvl/Cd`` = ``SEPA`` at block level; debtor
  and creditor IBANs in the SEPA zone (schwifty's list).
- Both: ``ChrgBr`` = ``SLEV`` at block level (each side pays its own bank: the only value SEPA
  allows, and one SPS accepts for domestic payments); ``PmtMtd`` = ``TRF``; no ``CtgyPurp``,
  no ``Purp``, no ``InstrId``, no ``LclInstrm`` (none is required, each is one more thing a
  bank can refuse).
- ``BtchBookg`` = ``false``: each transfer is booked on its own, so a return or an
  investigation never blurs a batch total and the statement shows one entry per payout.
- The debtor must have a BIC: ``DbtrAgt`` is mandatory and ``FinInstnId/BICFI`` identifies it
  the same way for SPS and EPC (no ``NOTPROVIDED`` or clearing-member guesswork).
  A creditor's BIC is optional: without one ``CdtrAgt`` is left out (IBAN-only, as SEPA allows
  since 2016 and SPS allows for domestic payments).
- No postal address is written (``Account`` has none). Neither payment type requires one
  when an IBAN identifies the account, except that the EPC rulebook requires the *debtor's*
  address on a EUR payment involving a non-EEA SEPA country (CH, LI, GB, MC, SM, ...);
  most banks fill it in from their records: confirm with the bank, or add a structured
  address to ``Account``.

**Control sums.** ``NbOfTxs`` and ``CtrlSum`` at group and at block level. The group's
``CtrlSum`` is the sum of every amount irrespective of currency, as ISO 20022 defines it.
:func:`validate_pain001` checks them too (the XSD cannot), so a file whose sums were
changed is refused as well as one that breaks the XSD.

**Dates.** ``created_at`` must be timezone-aware; it is written in UTC, without microseconds,
with an explicit offset: ``2025-07-01T08:30:00+00:00`` (an offset rather than ``Z`` or none:
some ISO 20022 profiles require one, every xs:dateTime reader accepts it). ``ReqdExctnDt``
uses its ``Dt`` form (the date form SPS and EPC use, not ``DtTm``), not before
``created_at``'s UTC date and at most :data:`MAX_EXECUTION_AHEAD_DAYS` later.

**Characters.** One rule for both currencies, the lowest common denominator: the SEPA basic
Latin set ``a-z A-Z 0-9 / - ? : ( ) . , ' + space``, which SPS accepts too.

- Free text (names, remittance) is transliterated, deterministically, and the result is
  checked: diacritics are dropped (é -> e, ü -> u, not ue), compatibility forms folded
  (ligatures, no-break spaces, full-width letters), a small table for the rest (ß -> ss,
  æ -> ae, œ -> oe, ø -> o, ł -> l, & -> +, typographic apostrophes -> ', dashes -> -).
  Anything left outside the set (other scripts, emoji, control characters, quotes, @, ...)
  is refused with :class:`InvalidTextError` naming the characters: nothing is silently
  dropped. :func:`payment_text` shows what a text becomes, so the ledger can record exactly
  what the bank received. Names are at most 70 characters *after* transliteration (SPS and
  EPC both limit names to 70): longer names are refused, never truncated (a truncated name
  is a different name, and payee checks compare names). Remittance: 1-140 characters.
- Identifiers (``MsgId``, ``PmtInfId``, ``EndToEndId``) are never changed: 1-35 characters
  from ``A-Z a-z 0-9 . -``, else :class:`InvalidIdentifierError`. ``NOTPROVIDED`` is reserved
  (banks write it where an end-to-end id is missing). End-to-end and payment information ids
  are unique within a file.

**Amounts.** ``Decimal`` only (a float is refused), finite, > 0, at most
:data:`MAX_TRANSFER_AMOUNT`, no more decimals than the currency's minor unit (2 for CHF and
EUR); written with exactly two decimals.

**Limits.** :data:`MAX_TRANSFERS_PER_FILE` transfers per file (and so per block),
:data:`MAX_BLOCKS_PER_FILE` blocks; :data:`MAX_XML_BYTES` for any file read.

**End-to-end ids.** They travel to the beneficiary's bank and come back in camt files;
the ledger matches on them. :func:`derive_end_to_end_id` suggests one: the run id (1-18
characters), a dash and 16 hex digits of SHA-256(run id | beneficiary id | currency), e.g.
``PO20250630-1-7bcffe47b888b8b3``: at most 35 characters, stable when a run is built again,
distinct per beneficiary and currency, no personal data.

**Errors.** Every refusal is a specific subclass of :class:`Iso20022Error` (a ``ValueError``).
Messages name the field and the rule but never quote a name, an IBAN or a remittance text
(logs must not carry them), except :class:`Pain001Error`'s reason, which is the XSD's own
text and may quote the offending value.

**Reading camt.053/054** (:func:`parse_camt`): camt.053 (statement, ``BkToCstmrStmt/Stmt``)
and camt.054 (notification, ``BkToCstmrDbtCdtNtfctn/Ntfctn``), versions .02 to .08, detected
by the root element's namespace; anything else is a :class:`CamtError` naming what was found.
Each transaction detail (``TxDtls``) is one :class:`BankEntry`; an entry without details is one
from the entry itself. Kept: our outgoing transfers, i.e. debit entries (``CdtDbtInd`` DBIT,
not a reversal), and their returns, i.e. credit entries that are a reversal (``RvslInd``
true), a payment return (bank transaction code ``RRTN``) or carry ``RtrInf``. Other credits
(incoming payments) and debit reversals are skipped. A debit's status comes from
``Ntry/Sts`` (``BOOK`` or ``Sts/Cd`` ``BOOK`` -> booked; ``PDNG``, ``FUTR`` -> pending;
``RJCT`` -> rejected; ``INFO`` -> skipped: it will never be posted); a return is "returned"
with ``RtrInf/Rsn/Cd`` (or ``Prtry``) as its reason. Amount: what moved for that transaction
(``TxDtls/Amt``, else ``AmtDtls/TxAmt``, else ``AmtDtls/InstdAmt``, else the entry's amount
when it has a single transaction). ``EndToEndId`` ``NOTPROVIDED`` reads as None; debits
that are not transfers of ours (fees, cards) come with no end-to-end id and the ledger leaves
them unmatched. Untrusted input: at most :data:`MAX_XML_BYTES`, UTF-8 only, any DTD or entity
declaration refused before parsing (XXE, billion laughs), lxml without network, DTD loading
or entity resolution, comments and processing instructions dropped, at most
:data:`MAX_CAMT_ENTRIES` entries.

**Writing camt.054** (:func:`camt054`): a camt.054.001.08 as a bank would send for the given
entries (tests, trying a reconciliation by hand): booked and pending debits
(``PMNT/ICDT/ESCT`` for EUR, ``PMNT/ICDT/DMCT`` for CHF), returns as credits
(``PMNT/ICDT/RRTN`` with ``RtrInf``). Rejections are refused: a bank reports them in a
pain.002, not in a camt.054. Reading what it writes gives back the same entries.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib.resources import files
from typing import Any, Literal, TypeAlias

from lxml import etree
from schwifty import BIC, IBAN
from schwifty.exceptions import NationalChecksumNotVerified, SchwiftyException

from ledger.domain.money import fits_currency, quantum

__all__ = [
    "MAX_BLOCKS_PER_FILE",
    "MAX_CAMT_ENTRIES",
    "MAX_EXECUTION_AHEAD_DAYS",
    "MAX_ID_CHARS",
    "MAX_NAME_CHARS",
    "MAX_REMITTANCE_CHARS",
    "MAX_RUN_ID_CHARS",
    "MAX_TRANSFERS_PER_FILE",
    "MAX_TRANSFER_AMOUNT",
    "MAX_XML_BYTES",
    "PAIN001_NAMESPACE",
    "SUPPORTED_CURRENCIES",
    "Account",
    "AccountCurrencyError",
    "BankEntry",
    "CamtError",
    "DuplicateIdError",
    "EntryStatus",
    "InvalidAmountError",
    "InvalidBicError",
    "InvalidBlockError",
    "InvalidDateError",
    "InvalidIbanError",
    "InvalidIdentifierError",
    "InvalidTextError",
    "Iso20022Error",
    "LimitExceededError",
    "Pain001Error",
    "PaymentBlock",
    "PaymentInputError",
    "Transfer",
    "UnsupportedCurrencyError",
    "XmlErrorKind",
    "XmlInputError",
    "camt054",
    "derive_end_to_end_id",
    "pain001",
    "parse_camt",
    "payment_text",
    "validate_pain001",
]

PAIN001_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
CAMT054_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"
SUPPORTED_CURRENCIES = ("CHF", "EUR")

MAX_ID_CHARS = 35
MAX_NAME_CHARS = 70
MAX_REMITTANCE_CHARS = 140
#: A run id leaves room for "-" and 16 hex digits in a 35-character end-to-end id.
MAX_RUN_ID_CHARS = 18
#: SEPA's (and SPS's) largest single amount.
MAX_TRANSFER_AMOUNT = Decimal("999999999.99")
MAX_TRANSFERS_PER_FILE = 10_000
MAX_BLOCKS_PER_FILE = 100
MAX_EXECUTION_AHEAD_DAYS = 60
#: Any XML read (pain.001 to validate, camt to parse): 32 MiB, ~10,000 detailed entries x 3.
MAX_XML_BYTES = 32 * 1024 * 1024
MAX_CAMT_ENTRIES = 100_000

EntryStatus: TypeAlias = Literal["booked", "pending", "returned", "rejected"]
XmlErrorKind: TypeAlias = Literal[
    "not_bytes",
    "too_large",
    "empty",
    "forbidden_dtd",
    "not_xml",
    "wrong_message",
    "unsupported_version",
    "schema",
    "control_sum",
    "duplicate_id",
    "malformed",
    "too_many_entries",
]

# Errors -----------------------------------------------------------------------------


class Iso20022Error(ValueError):
    """Base of every error of this module."""


class PaymentInputError(Iso20022Error):
    """An input to a payment file was refused before any XML was built."""


class InvalidIbanError(PaymentInputError):
    """Not an IBAN in electronic form: checksum, country, length, structure."""


class InvalidBicError(PaymentInputError):
    """Not a BIC (8 or 11 characters, upper case, known country), or one is missing."""


class InvalidTextError(PaymentInputError):
    """A name or remittance text is empty, too long or has characters with no transliteration."""


class InvalidIdentifierError(PaymentInputError):
    """A message, payment information or end-to-end id breaks the identifier rules."""


class InvalidAmountError(PaymentInputError):
    """Not a finite Decimal > 0 in the currency's minor unit and below the limit."""


class UnsupportedCurrencyError(PaymentInputError):
    """A currency other than CHF or EUR."""


class AccountCurrencyError(PaymentInputError):
    """An account that cannot send or receive this currency's payment type (CHF outside CH/LI,
    EUR outside the SEPA zone, a QR-IBAN creditor)."""


class InvalidBlockError(PaymentInputError):
    """A payment block that is empty, mixes currencies or has a debtor without a BIC."""


class InvalidDateError(PaymentInputError):
    """A naive creation time, or an execution date in the past or too far ahead."""


class LimitExceededError(PaymentInputError):
    """More transfers or blocks than a file may hold."""


class DuplicateIdError(PaymentInputError):
    """An end-to-end or payment information id used twice in one file."""


class XmlInputError(Iso20022Error):
    """An XML document was refused; ``kind`` says why, ``line`` where (when known)."""

    def __init__(self, kind: XmlErrorKind, reason: str, line: int | None = None) -> None:
        self.kind: XmlErrorKind = kind
        self.reason = reason
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{kind}: {where}{reason}")


class Pain001Error(XmlInputError):
    """A pain.001 that is not valid: the XSD's message (line, reason) or a wrong control sum."""


class CamtError(XmlInputError):
    """A document that is not a camt.053/054 this module reads, or hostile input."""


# Text and identifiers ---------------------------------------------------------------

_ID_RE = re.compile(r"[A-Za-z0-9.\-]{1,35}")
_RESERVED_IDS = frozenset({"NOTPROVIDED"})
_TEXT_RE = re.compile(r"[A-Za-z0-9/\-?:().,'+ ]+")
_TRANSLITERATION = {
    "ß": "ss",
    "ẞ": "SS",
    "Æ": "AE",
    "æ": "ae",
    "Œ": "OE",
    "œ": "oe",
    "Ø": "O",
    "ø": "o",
    "Đ": "D",
    "đ": "d",
    "Ð": "D",
    "ð": "d",
    "Ł": "L",
    "ł": "l",
    "Þ": "TH",
    "þ": "th",
    "ı": "i",
    "&": "+",
    "’": "'",
    "‘": "'",
    "ʼ": "'",
    "`": "'",
    "´": "'",
    "‐": "-",
    "‑": "-",
    "‒": "-",
    "–": "-",
    "—": "-",
    "−": "-",
}


def _transliterate(value: str) -> str:
    mapped = "".join(_TRANSLITERATION.get(char, char) for char in value)
    decomposed = unicodedata.normalize("NFKD", mapped)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def payment_text(value: str, *, what: str = "text", max_chars: int = MAX_REMITTANCE_CHARS) -> str:
    """``value`` as it is written in a payment file: transliterated to the SEPA basic Latin
    set (see the module's docstring) and checked, or :class:`InvalidTextError`."""
    assert 0 < max_chars <= MAX_REMITTANCE_CHARS, max_chars
    if not isinstance(value, str):
        raise InvalidTextError(f"{what} must be a str, not {type(value).__name__}")
    if len(value) > 4 * max_chars:  # bound the work before transliterating
        raise InvalidTextError(f"{what} is {len(value)} characters long, the limit is {max_chars}")
    text = _transliterate(value)
    if not text.strip():
        raise InvalidTextError(f"{what} is empty")
    bad = sorted({char for char in text if not _TEXT_RE.fullmatch(char)})
    if bad:
        listed = ", ".join(f"U+{ord(char):04X} {unicodedata.name(char, '(unnamed)')}" for char in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise InvalidTextError(f"{what} has characters a payment file cannot carry: {listed}{more}")
    if text != text.strip(" "):
        raise InvalidTextError(f"{what} starts or ends with a space")
    if len(text) > max_chars:
        raise InvalidTextError(
            f"{what} is {len(text)} characters long once transliterated, the limit is {max_chars}"
        )
    return text


def _check_identifier(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidIdentifierError(f"{what} must be a str, not {type(value).__name__}")
    if len(value) > MAX_ID_CHARS:
        raise InvalidIdentifierError(f"{what} {value!r} is {len(value)} characters long, the limit is 35")
    if not _ID_RE.fullmatch(value):
        raise InvalidIdentifierError(f"{what} {value!r} must be 1-35 characters from A-Z a-z 0-9 . -")
    if value in _RESERVED_IDS:
        raise InvalidIdentifierError(f"{what} {value!r} is reserved (banks write it for a missing id)")
    return value


def derive_end_to_end_id(run_id: str, beneficiary_id: str, currency: str) -> str:
    """A suggested end-to-end id: ``run_id``, a dash, and 16 hex digits of
    SHA-256(run_id | beneficiary_id | currency), e.g. ``PO20250630-1-7bcffe47b888b8b3``.

    At most 35 characters whatever the beneficiary id, only identifier characters, the same
    for the same payout (so building a run again gives the same ids), distinct per
    beneficiary and currency within a run (a collision needs ~2^32 payouts; :func:`pain001`
    refuses duplicates anyway), and no personal data in a reference the beneficiary's bank
    and statements show. ``run_id`` is 1-18 identifier characters."""
    _check_identifier(run_id, "run id")
    if len(run_id) > MAX_RUN_ID_CHARS:
        raise InvalidIdentifierError(f"run id {run_id!r} is longer than {MAX_RUN_ID_CHARS} characters")
    digest = hashlib.sha256(f"{run_id}|{beneficiary_id}|{currency}".encode()).hexdigest()[:16]
    result = f"{run_id}-{digest}"
    assert len(result) <= MAX_ID_CHARS and _ID_RE.fullmatch(result), result
    return result


# Accounts and money -----------------------------------------------------------------

_BIC_RE = re.compile(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")
_CHF_COUNTRIES = frozenset({"CH", "LI"})
_QR_IID_RANGE = range(30000, 32000)


def _parse_iban(value: object, what: str) -> IBAN:
    if not isinstance(value, str):
        raise InvalidIbanError(f"{what} IBAN must be a str, not {type(value).__name__}")
    if len(value) > 64:
        raise InvalidIbanError(f"{what} IBAN is too long ({len(value)} characters)")
    try:
        with warnings.catch_warnings():
            # Countries whose national check digits schwifty cannot verify pass unchecked.
            warnings.simplefilter("ignore", NationalChecksumNotVerified)
            iban = IBAN(value, validate_bban=True)
    except SchwiftyException as exc:
        raise InvalidIbanError(f"{what} IBAN is not valid: {exc}") from None
    if iban.is_aspirational:
        raise InvalidIbanError(
            f"{what} IBAN is of a country ({iban.country_code}) whose IBANs banks may refuse"
        )
    if str(iban.compact) != value:
        raise InvalidIbanError(f"{what} IBAN must be in electronic form (upper case, no spaces)")
    return iban


def _check_bic(value: object, what: str) -> str:
    if not isinstance(value, str) or not _BIC_RE.fullmatch(value):
        raise InvalidBicError(f"{what} BIC {value!r} must be 8 or 11 upper-case letters and digits")
    try:
        BIC(value)
    except SchwiftyException as exc:
        raise InvalidBicError(f"{what} BIC {value!r} is not valid: {exc}") from None
    return value


def _check_currency(value: object, what: str) -> str:
    if value not in SUPPORTED_CURRENCIES:
        raise UnsupportedCurrencyError(f"{what} currency {value!r} is not supported: CHF or EUR only")
    assert isinstance(value, str)
    return value


def _check_reachable(iban_text: str, currency: str, role: Literal["debtor", "creditor"]) -> None:
    iban = IBAN(iban_text)
    if currency == "CHF":
        if iban.country_code not in _CHF_COUNTRIES:
            raise AccountCurrencyError(
                f"a CHF payment is made from and to CH or LI IBANs only; the {role} IBAN "
                f"is in {iban.country_code} (a cross-border CHF payment is not supported)"
            )
        if role == "creditor" and int(iban_text[4:9]) in _QR_IID_RANGE:
            raise AccountCurrencyError(
                "the creditor IBAN is a QR-IBAN, which needs a QR reference: "
                "pay to the creditor's ordinary IBAN"
            )
    elif not iban.in_sepa_zone:
        raise AccountCurrencyError(
            f"a EUR payment is a SEPA credit transfer; the {role} IBAN is in {iban.country_code}, "
            "outside the SEPA zone"
        )


def _check_amount(value: object, currency: str, what: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise InvalidAmountError(f"{what} amount must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise InvalidAmountError(f"{what} amount {value} is not a number")
    if value <= 0:
        raise InvalidAmountError(f"{what} amount {value} must be greater than zero")
    if value > MAX_TRANSFER_AMOUNT:
        raise InvalidAmountError(f"{what} amount {value} is over the limit {MAX_TRANSFER_AMOUNT}")
    if not fits_currency(value, currency):
        raise InvalidAmountError(f"{what} amount {value} has more decimals than {currency} allows (2)")
    return value


def _format_amount(value: Decimal) -> str:
    written = f"{value.quantize(quantum('CHF')):f}"  # CHF and EUR both have two decimals
    assert Decimal(written) == value, (written, value)
    return written


# Inputs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """A debtor (the cooperative, one per currency) or a creditor (an introducer).

    ``name``: the holder, at most 70 characters once transliterated (longer: refused, see the
    module's docstring); ``iban``: electronic form (``CH9300762011623852957``), checked by
    schwifty (checksum, country, length, national format and check digits); ``bic``: 8 or 11
    characters, required for a debtor.
    """

    name: str
    iban: str
    bic: str | None = None

    def __post_init__(self) -> None:
        payment_text(self.name, what="account holder name", max_chars=MAX_NAME_CHARS)
        _parse_iban(self.iban, "account")
        if self.bic is not None:
            _check_bic(self.bic, "account")


@dataclass(frozen=True, slots=True)
class Transfer:
    """One credit transfer to ``creditor`` (a ``CdtTrfTxInf``)."""

    end_to_end_id: str
    amount: Decimal
    currency: str
    creditor: Account
    remittance: str

    def __post_init__(self) -> None:
        _check_identifier(self.end_to_end_id, "end-to-end id")
        currency = _check_currency(self.currency, f"transfer {self.end_to_end_id}")
        _check_amount(self.amount, currency, f"transfer {self.end_to_end_id}")
        if not isinstance(self.creditor, Account):
            raise PaymentInputError(f"transfer {self.end_to_end_id}: creditor must be an Account")
        _check_reachable(self.creditor.iban, currency, "creditor")
        payment_text(self.remittance, what=f"transfer {self.end_to_end_id} remittance")


@dataclass(frozen=True, slots=True)
class PaymentBlock:
    """One ``PmtInf``: the transfers of one currency from one debtor account on one date."""

    payment_information_id: str
    debtor: Account
    currency: str
    execution_date: date
    transfers: tuple[Transfer, ...]

    def __post_init__(self) -> None:
        pid = _check_identifier(self.payment_information_id, "payment information id")
        currency = _check_currency(self.currency, f"block {pid}")
        if not isinstance(self.debtor, Account):
            raise InvalidBlockError(f"block {pid}: debtor must be an Account")
        if self.debtor.bic is None:
            raise InvalidBicError(f"block {pid}: the debtor account needs a BIC (DbtrAgt)")
        _check_reachable(self.debtor.iban, currency, "debtor")
        if isinstance(self.execution_date, datetime) or not isinstance(self.execution_date, date):
            raise InvalidDateError(f"block {pid}: execution date must be a date")
        if not isinstance(self.transfers, tuple):
            raise InvalidBlockError(f"block {pid}: transfers must be a tuple")
        if not self.transfers:
            raise InvalidBlockError(f"block {pid} has no transfer")
        if len(self.transfers) > MAX_TRANSFERS_PER_FILE:
            raise LimitExceededError(
                f"block {pid} has {len(self.transfers)} transfers, a file holds {MAX_TRANSFERS_PER_FILE}"
            )
        for transfer in self.transfers:
            if not isinstance(transfer, Transfer):
                raise InvalidBlockError(f"block {pid}: a {type(transfer).__name__} is not a Transfer")
            if transfer.currency != currency:
                raise InvalidBlockError(
                    f"block {pid} is in {currency}, transfer {transfer.end_to_end_id} in {transfer.currency}"
                )

    @property
    def control_sum(self) -> Decimal:
        """The sum of the block's amounts."""
        return sum((t.amount for t in self.transfers), Decimal(0))


# pain.001 ---------------------------------------------------------------------------


def _utc_timestamp(value: object, what: str) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidDateError(f"{what} must be a timezone-aware datetime, not {value!r}")
    utc = value.astimezone(UTC).replace(microsecond=0)
    return utc.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _check_file(message_id: str, created_at: datetime, blocks: Sequence[PaymentBlock]) -> None:
    _check_identifier(message_id, "message id")
    _utc_timestamp(created_at, "created_at")
    if isinstance(blocks, str | bytes) or not isinstance(blocks, Sequence):
        raise InvalidBlockError("blocks must be a sequence of PaymentBlock")
    if not blocks:
        raise InvalidBlockError("a file needs at least one block")
    if len(blocks) > MAX_BLOCKS_PER_FILE:
        raise LimitExceededError(f"{len(blocks)} blocks, a file holds {MAX_BLOCKS_PER_FILE}")
    if not all(isinstance(block, PaymentBlock) for block in blocks):
        raise InvalidBlockError("blocks must be PaymentBlock values")
    total = sum(len(block.transfers) for block in blocks)
    if total > MAX_TRANSFERS_PER_FILE:
        raise LimitExceededError(f"{total} transfers, a file holds {MAX_TRANSFERS_PER_FILE}")
    today = created_at.astimezone(UTC).date()
    latest = today + timedelta(days=MAX_EXECUTION_AHEAD_DAYS)
    block_ids: set[str] = set()
    transfer_ids: set[str] = set()
    for block in blocks:
        pid = block.payment_information_id
        if not today <= block.execution_date <= latest:
            raise InvalidDateError(
                f"block {pid}: execution date {block.execution_date} must be between {today} "
                f"(created_at's UTC date) and {latest}"
            )
        if pid in block_ids:
            raise DuplicateIdError(f"payment information id {pid} is used twice")
        block_ids.add(pid)
        for transfer in block.transfers:
            if transfer.end_to_end_id in transfer_ids:
                raise DuplicateIdError(f"end-to-end id {transfer.end_to_end_id} is used twice")
            transfer_ids.add(transfer.end_to_end_id)


def _sub(parent: Any, tag: str, text: str | None = None, **attrib: str) -> Any:
    """A child element in ``parent``'s namespace."""
    namespace = etree.QName(parent).namespace
    child = etree.SubElement(parent, f"{{{namespace}}}{tag}", attrib)
    if text is not None:
        child.text = text
    return child


def _serialise(root: Any) -> bytes:
    body: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=True)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def _agent(parent: Any, tag: str, bic: str) -> None:
    _sub(_sub(_sub(parent, tag), "FinInstnId"), "BICFI", bic)


def _iban_account(parent: Any, tag: str, iban: str) -> None:
    _sub(_sub(_sub(parent, tag), "Id"), "IBAN", iban)


def _write_block(parent: Any, block: PaymentBlock) -> None:
    info = _sub(parent, "PmtInf")
    _sub(info, "PmtInfId", block.payment_information_id)
    _sub(info, "PmtMtd", "TRF")
    _sub(info, "BtchBookg", "false")
    _sub(info, "NbOfTxs", str(len(block.transfers)))
    _sub(info, "CtrlSum", _format_amount(block.control_sum))
    if block.currency == "EUR":
        _sub(_sub(_sub(info, "PmtTpInf"), "SvcLvl"), "Cd", "SEPA")
    _sub(_sub(info, "ReqdExctnDt"), "Dt", block.execution_date.isoformat())
    _sub(_sub(info, "Dbtr"), "Nm", payment_text(block.debtor.name, max_chars=MAX_NAME_CHARS))
    _iban_account(info, "DbtrAcct", block.debtor.iban)
    assert block.debtor.bic is not None
    _agent(info, "DbtrAgt", block.debtor.bic)
    _sub(info, "ChrgBr", "SLEV")
    for transfer in block.transfers:
        tx = _sub(info, "CdtTrfTxInf")
        _sub(_sub(tx, "PmtId"), "EndToEndId", transfer.end_to_end_id)
        _sub(_sub(tx, "Amt"), "InstdAmt", _format_amount(transfer.amount), Ccy=transfer.currency)
        if transfer.creditor.bic is not None:
            _agent(tx, "CdtrAgt", transfer.creditor.bic)
        _sub(_sub(tx, "Cdtr"), "Nm", payment_text(transfer.creditor.name, max_chars=MAX_NAME_CHARS))
        _iban_account(tx, "CdtrAcct", transfer.creditor.iban)
        _sub(_sub(tx, "RmtInf"), "Ustrd", payment_text(transfer.remittance))


def pain001(
    *, message_id: str, created_at: datetime, initiating_party: str, blocks: Sequence[PaymentBlock]
) -> bytes:
    """A pain.001.001.09 customer credit transfer initiation (UTF-8 XML), control sums
    (NbOfTxs, CtrlSum) at group and block level, validated against the official XSD
    before it is returned; the same inputs always give the same bytes.

    Raises a :class:`PaymentInputError` subclass for any input refused (see the module's
    docstring for the rules)."""
    _check_file(message_id, created_at, blocks)
    party = payment_text(initiating_party, what="initiating party", max_chars=MAX_NAME_CHARS)
    root = etree.Element(f"{{{PAIN001_NAMESPACE}}}Document", nsmap={None: PAIN001_NAMESPACE})
    initiation = _sub(root, "CstmrCdtTrfInitn")
    header = _sub(initiation, "GrpHdr")
    _sub(header, "MsgId", message_id)
    _sub(header, "CreDtTm", _utc_timestamp(created_at, "created_at"))
    _sub(header, "NbOfTxs", str(sum(len(block.transfers) for block in blocks)))
    _sub(header, "CtrlSum", _format_amount(sum((block.control_sum for block in blocks), Decimal(0))))
    _sub(_sub(header, "InitgPty"), "Nm", party)
    for block in blocks:
        _write_block(initiation, block)
    xml = _serialise(root)
    validate_pain001(xml)
    return xml


# Untrusted XML ----------------------------------------------------------------------

_FORBIDDEN_MARKUP = (b"<!DOCTYPE", b"<!ENTITY")


def _parse_untrusted(xml: object, error: type[XmlInputError]) -> Any:
    """The root element of ``xml``, parsed as hostile input (see the module's docstring)."""
    if not isinstance(xml, bytes):
        raise error("not_bytes", f"expected the file's bytes, got {type(xml).__name__}")
    if len(xml) > MAX_XML_BYTES:
        raise error("too_large", f"{len(xml)} bytes, the limit is {MAX_XML_BYTES}")
    if not xml.strip():
        raise error("empty", "the file is empty")
    for marker in _FORBIDDEN_MARKUP:
        if marker in xml:
            raise error("forbidden_dtd", f"{marker.decode()} found: DTDs and entity declarations are refused")
    parser = etree.XMLParser(
        encoding="utf-8",  # ISO 20022 files are UTF-8; a declared encoding is not trusted
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        raise error("not_xml", f"not well-formed XML: {exc.msg}", exc.lineno) from None
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None:  # cannot happen after the scan above
        raise error("forbidden_dtd", "the document has a DTD")
    return root


def _describe(root: Any) -> str:
    qname = etree.QName(root)
    return f"<{qname.localname}> in namespace {qname.namespace or '(none)'}"


_SCHEMA_LOCK = threading.Lock()


@cache
def _pain001_schema() -> Any:
    """The official pain.001.001.09 XSD as shipped by sepaxml (read once)."""
    xsd = (files("sepaxml") / "schemas" / "pain.001.001.09.xsd").read_bytes()
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
    return etree.XMLSchema(etree.fromstring(xsd, parser))


def validate_pain001(xml: bytes) -> None:
    """Check ``xml`` against the pain.001.001.09 XSD, then its control sums and id uniqueness;
    raise :class:`Pain001Error` with the first problem (the XSD's own message and line)."""
    root = _parse_untrusted(xml, Pain001Error)
    if root.tag != f"{{{PAIN001_NAMESPACE}}}Document":
        raise Pain001Error("wrong_message", f"found {_describe(root)}, expected a pain.001.001.09 Document")
    schema = _pain001_schema()
    with _SCHEMA_LOCK:  # an XMLSchema's error log is shared state
        valid = schema.validate(root)
        errors = [(entry.line, entry.message) for entry in schema.error_log]
    if not valid:
        assert errors
        line, message = errors[0]
        raise Pain001Error("schema", message, line)
    _check_sums(root)


def _check_sums(root: Any) -> None:
    ns = {"p": PAIN001_NAMESPACE}
    group = root.find("p:CstmrCdtTrfInitn", ns)
    totals: list[Decimal] = []
    seen_blocks: set[str] = set()
    seen_transfers: set[str] = set()
    for block in group.findall("p:PmtInf", ns):
        block_id = block.findtext("p:PmtInfId", namespaces=ns)
        if block_id in seen_blocks:
            raise Pain001Error("duplicate_id", f"PmtInfId {block_id} is used twice", block.sourceline)
        seen_blocks.add(block_id)
        amounts: list[Decimal] = []
        for tx in block.findall("p:CdtTrfTxInf", ns):
            e2e = tx.find("p:PmtId/p:EndToEndId", ns)
            if e2e.text in seen_transfers:
                raise Pain001Error("duplicate_id", f"EndToEndId {e2e.text} is used twice", e2e.sourceline)
            seen_transfers.add(e2e.text)
            amount = tx.find("p:Amt/p:InstdAmt", ns)
            if amount is None:
                raise Pain001Error(
                    "control_sum", "an amount is not an InstdAmt: sums unchecked", tx.sourceline
                )
            amounts.append(Decimal(amount.text))
        _check_sum_pair(block, ns, amounts, f"block {block_id}")
        totals.extend(amounts)
    _check_sum_pair(group.find("p:GrpHdr", ns), ns, totals, "group header")


def _check_sum_pair(parent: Any, ns: dict[str, str], amounts: list[Decimal], what: str) -> None:
    count = parent.find("p:NbOfTxs", ns)
    if count is not None and int(count.text) != len(amounts):
        raise Pain001Error(
            "control_sum", f"{what}: NbOfTxs {count.text} but {len(amounts)} transactions", count.sourceline
        )
    control = parent.find("p:CtrlSum", ns)
    total = sum(amounts, Decimal(0))
    if control is not None and Decimal(control.text) != total:
        raise Pain001Error(
            "control_sum",
            f"{what}: CtrlSum {control.text} but the amounts add up to {total}",
            control.sourceline,
        )


# camt.053 / camt.054 ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BankEntry:
    """One of our transfers as the bank reported it (one ``TxDtls``, or an entry without)."""

    end_to_end_id: str | None
    amount: Decimal
    currency: str
    status: EntryStatus
    booking_date: date | None
    bank_reference: str | None
    creditor_iban: str | None
    return_reason: str | None


_CAMT_NS_RE = re.compile(
    r"urn:iso:std:iso:20022:tech:xsd:(?P<message>[a-z]{4}\.\d{3})\.001\.(?P<version>\d{2})"
)
_CAMT_ROOTS = {"camt.053": ("BkToCstmrStmt", "Stmt"), "camt.054": ("BkToCstmrDbtCdtNtfctn", "Ntfctn")}
_CAMT_VERSIONS = frozenset({"02", "03", "04", "05", "06", "07", "08"})
_STATUS_CODES: dict[str, EntryStatus | None] = {
    "BOOK": "booked",
    "PDNG": "pending",
    "FUTR": "pending",
    "RJCT": "rejected",
    "INFO": None,  # information only: never posted
}
_AMOUNT_RE = re.compile(r"\d{1,18}(?:\.\d{1,5})?")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_MAX_FIELD_CHARS = 140


class _Reader:
    """Namespaced look-ups in one camt document, with the checks every value gets."""

    def __init__(self, namespace: str) -> None:
        self.ns = {"c": namespace}

    def _path(self, path: str) -> str:
        return "/".join(f"c:{step}" for step in path.split("/"))

    def find(self, element: Any, path: str) -> Any:
        return element.find(self._path(path), self.ns)

    def findall(self, element: Any, path: str) -> list[Any]:
        return list(element.findall(self._path(path), self.ns))

    def text(self, element: Any, path: str) -> str | None:
        found = self.find(element, path)
        if found is None or found.text is None or not found.text.strip():
            return None
        value = str(found.text).strip()
        if len(value) > _MAX_FIELD_CHARS:
            raise CamtError("malformed", f"{path} is {len(value)} characters long", found.sourceline)
        return value

    def amount(self, element: Any, path: str) -> tuple[Decimal, str] | None:
        found = self.find(element, path)
        if found is None:
            return None
        text = (found.text or "").strip()
        currency = found.get("Ccy") or ""
        if not _AMOUNT_RE.fullmatch(text) or not _CURRENCY_RE.fullmatch(currency):
            raise CamtError("malformed", f"{path}: {text!r} {currency!r} is not an amount", found.sourceline)
        return Decimal(text), currency

    def day(self, element: Any, path: str) -> date | None:
        found = self.find(element, path)
        if found is None:
            return None
        text = self.text(found, "Dt") or self.text(found, "DtTm")
        if text is None:
            raise CamtError("malformed", f"{path} has neither Dt nor DtTm", found.sourceline)
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            raise CamtError("malformed", f"{path}: {text!r} is not a date", found.sourceline) from None


def _message_of(root: Any) -> tuple[str, str]:
    """The (message, version) of a camt root, e.g. ("camt.054", "08"), or CamtError."""
    qname = etree.QName(root)
    match = _CAMT_NS_RE.fullmatch(qname.namespace or "")
    if qname.localname != "Document" or match is None or match["message"] not in _CAMT_ROOTS:
        found = f"{match['message']}.001.{match['version']} " if match else ""
        raise CamtError("wrong_message", f"found {found}{_describe(root)}, expected a camt.053 or camt.054")
    if match["version"] not in _CAMT_VERSIONS:
        raise CamtError(
            "unsupported_version",
            f"{match['message']}.001.{match['version']} is not read here "
            f"(versions {', '.join(sorted(_CAMT_VERSIONS))})",
        )
    return match["message"], match["version"]


def parse_camt(xml: bytes) -> tuple[BankEntry, ...]:
    """Debit entries (our outgoing credit transfers) of a camt.054 (debit/credit notification)
    or camt.053 (statement), versions .02 to .08 (detected by the namespace), and their
    returns; each transaction detail (TxDtls) is one entry, in document order.

    Raises :class:`CamtError` for anything else or hostile input (see the module's docstring)."""
    root = _parse_untrusted(xml, CamtError)
    message, _version = _message_of(root)
    wrapper, report = _CAMT_ROOTS[message]
    read = _Reader(etree.QName(root).namespace)
    body = read.find(root, wrapper)
    if body is None:
        raise CamtError("malformed", f"{message} without {wrapper}", root.sourceline)
    entries: list[BankEntry] = []
    for account_report in read.findall(body, report):
        for entry in read.findall(account_report, "Ntry"):
            entries.extend(_entries_of(read, entry))
            if len(entries) > MAX_CAMT_ENTRIES:
                raise CamtError("too_many_entries", f"more than {MAX_CAMT_ENTRIES} entries", entry.sourceline)
    return tuple(entries)


def _flag(read: _Reader, entry: Any, path: str) -> bool:
    text = read.text(entry, path)
    if text in (None, "false", "0"):
        return False
    if text in ("true", "1"):
        return True
    raise CamtError("malformed", f"{path}: {text!r} is not a boolean", entry.sourceline)


def _status_of(read: _Reader, entry: Any) -> EntryStatus | None:
    status = read.find(entry, "Sts")
    if status is None:
        raise CamtError("malformed", "an entry without Sts", entry.sourceline)
    code = read.text(status, "Cd") or read.text(status, "Prtry") or (status.text or "").strip()
    if code not in _STATUS_CODES:
        raise CamtError("malformed", f"unknown entry status {code!r}", status.sourceline)
    return _STATUS_CODES[code]


def _entries_of(read: _Reader, entry: Any) -> list[BankEntry]:
    """The BankEntry values of one ``Ntry`` (none for what is not ours)."""
    direction = read.text(entry, "CdtDbtInd")
    if direction not in ("CRDT", "DBIT"):
        raise CamtError("malformed", f"CdtDbtInd {direction!r} is neither CRDT nor DBIT", entry.sourceline)
    reversal = _flag(read, entry, "RvslInd")
    details = read.findall(entry, "NtryDtls/TxDtls")
    single = len(details) <= 1
    rows: list[tuple[Any | None, EntryStatus]]
    if direction == "DBIT":
        status = _status_of(read, entry)
        if reversal or status is None:  # a credit taken back, or information only
            return []
        if not details:
            rows = [(None, status)]
        else:  # a TxDtls with RtrInf in a debit is a return we made of an incoming payment
            rows = [(tx, status) for tx in details if read.find(tx, "RtrInf") is None]
    else:
        returned = reversal or read.text(entry, "BkTxCd/Domn/Fmly/SubFmlyCd") == "RRTN"
        if returned and not details:
            rows = [(None, "returned")]
        else:
            rows = [(tx, "returned") for tx in details if returned or read.find(tx, "RtrInf") is not None]
    return [_entry(read, entry, tx, status_of_row, single) for tx, status_of_row in rows]


def _entry(read: _Reader, entry: Any, tx: Any | None, status: EntryStatus, single: bool) -> BankEntry:
    amount = None
    if tx is not None:
        amount = (
            read.amount(tx, "Amt")
            or read.amount(tx, "AmtDtls/TxAmt/Amt")
            or read.amount(tx, "AmtDtls/InstdAmt/Amt")
        )
    if amount is None and single:
        amount = read.amount(entry, "Amt")
    if amount is None:
        raise CamtError(
            "malformed",
            "a transaction of a batch entry has no amount",
            (tx if tx is not None else entry).sourceline,
        )
    end_to_end = read.text(tx, "Refs/EndToEndId") if tx is not None else None
    creditor_iban = None
    reason = None
    reference = read.text(entry, "AcctSvcrRef")
    if tx is not None:
        reference = read.text(tx, "Refs/AcctSvcrRef") or reference
        creditor_iban = read.text(tx, "RltdPties/CdtrAcct/Id/IBAN")
        if status == "returned":
            creditor_iban = creditor_iban or read.text(tx, "RltdPties/DbtrAcct/Id/IBAN")
            reason = read.text(tx, "RtrInf/Rsn/Cd") or read.text(tx, "RtrInf/Rsn/Prtry")
    return BankEntry(
        end_to_end_id=None if end_to_end in (None, "NOTPROVIDED") else end_to_end,
        amount=amount[0],
        currency=amount[1],
        status=status,
        booking_date=read.day(entry, "BookgDt"),
        bank_reference=reference,
        creditor_iban=creditor_iban,
        return_reason=reason,
    )


# camt.054 writer --------------------------------------------------------------------

_REASON_RE = re.compile(r"[A-Z0-9]{1,4}")
_REFERENCE_RE = re.compile(r"[A-Za-z0-9/\-?:().,'+]([A-Za-z0-9/\-?:().,'+ ]{0,33}[A-Za-z0-9/\-?:().,'+])?")


def _check_bank_entry(entry: object, index: int) -> BankEntry:
    what = f"entry {index}"
    if not isinstance(entry, BankEntry):
        raise PaymentInputError(f"{what} is not a BankEntry")
    currency = _check_currency(entry.currency, what)
    _check_amount(entry.amount, currency, what)
    if entry.end_to_end_id is not None:
        _check_identifier(entry.end_to_end_id, f"{what} end-to-end id")
    if entry.status not in ("booked", "pending", "returned"):
        raise PaymentInputError(f"{what}: status {entry.status!r}: a bank reports rejections in a pain.002")
    if entry.status == "booked" and entry.booking_date is None:
        raise InvalidDateError(f"{what}: a booked entry needs a booking date")
    if entry.booking_date is not None and (
        isinstance(entry.booking_date, datetime) or not isinstance(entry.booking_date, date)
    ):
        raise InvalidDateError(f"{what}: booking date must be a date")
    if entry.bank_reference is not None and not _REFERENCE_RE.fullmatch(entry.bank_reference):
        raise InvalidIdentifierError(
            f"{what}: bank reference {entry.bank_reference!r} is not 1-35 plain characters"
        )
    if entry.creditor_iban is not None:
        _parse_iban(entry.creditor_iban, f"{what} creditor")
    if entry.return_reason is not None:
        if entry.status != "returned":
            raise PaymentInputError(f"{what}: a return reason on a {entry.status} entry")
        if not _REASON_RE.fullmatch(entry.return_reason):
            raise PaymentInputError(f"{what}: return reason {entry.return_reason!r} is not an ISO code")
    return entry


def _write_entry(parent: Any, index: int, entry: BankEntry) -> None:
    returned = entry.status == "returned"
    direction = "CRDT" if returned else "DBIT"
    amount = _format_amount(entry.amount)
    ntry = _sub(parent, "Ntry")
    _sub(ntry, "NtryRef", str(index))
    _sub(ntry, "Amt", amount, Ccy=entry.currency)
    _sub(ntry, "CdtDbtInd", direction)
    booked = entry.status == "booked" or (returned and entry.booking_date is not None)
    _sub(_sub(ntry, "Sts"), "Cd", "BOOK" if booked else "PDNG")
    if entry.booking_date is not None:
        _sub(_sub(ntry, "BookgDt"), "Dt", entry.booking_date.isoformat())
        _sub(_sub(ntry, "ValDt"), "Dt", entry.booking_date.isoformat())
    if entry.bank_reference is not None:
        _sub(ntry, "AcctSvcrRef", entry.bank_reference)
    domain = _sub(_sub(ntry, "BkTxCd"), "Domn")
    _sub(domain, "Cd", "PMNT")
    fmly = _sub(domain, "Fmly")
    subfamily = "RRTN" if returned else {"EUR": "ESCT", "CHF": "DMCT"}[entry.currency]
    _sub(fmly, "Cd", "ICDT")
    _sub(fmly, "SubFmlyCd", subfamily)
    tx = _sub(_sub(ntry, "NtryDtls"), "TxDtls")
    refs = _sub(tx, "Refs")
    if entry.bank_reference is not None:
        _sub(refs, "AcctSvcrRef", entry.bank_reference)
    _sub(refs, "EndToEndId", entry.end_to_end_id or "NOTPROVIDED")
    _sub(tx, "Amt", amount, Ccy=entry.currency)
    _sub(tx, "CdtDbtInd", direction)
    if entry.creditor_iban is not None:
        _iban_account(_sub(tx, "RltdPties"), "CdtrAcct", entry.creditor_iban)
    if returned:
        info = _sub(tx, "RtrInf")
        if entry.return_reason is not None:
            _sub(_sub(info, "Rsn"), "Cd", entry.return_reason)


def camt054(
    *, message_id: str, created_at: datetime, account: Account, entries: Sequence[BankEntry]
) -> bytes:
    """A camt.054.001.08 debit notification as a bank would send for ``entries`` on
    ``account`` (for the tests and for trying a reconciliation by hand); :func:`parse_camt`
    reads it back to ``entries``."""
    _check_identifier(message_id, "message id")
    timestamp = _utc_timestamp(created_at, "created_at")
    if not isinstance(account, Account):
        raise PaymentInputError("account must be an Account")
    if len(entries) > MAX_CAMT_ENTRIES:
        raise LimitExceededError(f"{len(entries)} entries, the limit is {MAX_CAMT_ENTRIES}")
    checked = [_check_bank_entry(entry, index) for index, entry in enumerate(entries, start=1)]
    root = etree.Element(f"{{{CAMT054_NAMESPACE}}}Document", nsmap={None: CAMT054_NAMESPACE})
    body = _sub(root, "BkToCstmrDbtCdtNtfctn")
    header = _sub(body, "GrpHdr")
    _sub(header, "MsgId", message_id)
    _sub(header, "CreDtTm", timestamp)
    notification = _sub(body, "Ntfctn")
    _sub(notification, "Id", message_id)
    _sub(notification, "CreDtTm", timestamp)
    acct = _sub(notification, "Acct")
    _sub(_sub(acct, "Id"), "IBAN", account.iban)
    _sub(_sub(acct, "Ownr"), "Nm", payment_text(account.name, max_chars=MAX_NAME_CHARS))
    if account.bic is not None:
        _agent(acct, "Svcr", account.bic)
    for index, entry in enumerate(checked, start=1):
        _write_entry(notification, index, entry)
    xml = _serialise(root)
    assert parse_camt(xml) == tuple(checked), "camt054 writes what parse_camt reads"
    return xml
