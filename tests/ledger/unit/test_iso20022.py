"""ISO 20022 payment files: pain.001 out (XSD-valid, control sums, deterministic, bad input
refused), camt.053/054 in (round trip, versions, returns), hostile XML refused."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from schwifty import IBAN

from ledger.adapters.iso20022 import (
    MAX_BLOCKS_PER_FILE,
    MAX_TRANSFERS_PER_FILE,
    MAX_XML_BYTES,
    PAIN001_NAMESPACE,
    Account,
    AccountCurrencyError,
    BankEntry,
    CamtError,
    DuplicateIdError,
    InvalidAmountError,
    InvalidBicError,
    InvalidBlockError,
    InvalidDateError,
    InvalidIbanError,
    InvalidIdentifierError,
    InvalidTextError,
    Iso20022Error,
    LimitExceededError,
    Pain001Error,
    PaymentBlock,
    PaymentInputError,
    Transfer,
    UnsupportedCurrencyError,
    camt054,
    derive_end_to_end_id,
    pain001,
    parse_camt,
    payment_text,
    validate_pain001,
)

D = Decimal
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NS = {"p": PAIN001_NAMESPACE}
CREATED_AT = datetime(2025, 7, 1, 8, 30, 12, 345678, tzinfo=UTC)
EXECUTION = date(2025, 7, 2)

CHF_DEBTOR = Account("Coopérative des Conseillers", "CH9300762011623852957", "UBSWCHZH80A")
EUR_DEBTOR = Account("Coopérative des Conseillers", "FR7630006000011234567890189", "AGRIFRPPXXX")
ANNA = Account("Anna Keller", "CH5604835012345678009")
MARC = Account("Marc Favre", "LI21088100002324013AA", "BLFLLI2XXXX")
ZOE = Account("Zoë L’Hôte & Fils", "CH3500762000123456789")
MARIE = Account("Marie Lefèvre", "FR1420041010050500013M02606", "PSSTFRPPXXX")
PAUL = Account("Paul Schmitt", "DE89370400440532013000")
LEA = Account("Léa Bianchi", "IT60X0542811101000000123456")


def iban_with_check_digits(country: str, bban: str) -> str:
    """An IBAN whose ISO 7064 mod 97-10 check digits are right for ``bban``."""
    digits = int("".join(str(int(char, 36)) for char in bban + country + "00"))
    return f"{country}{98 - digits % 97:02d}{bban}"


def transfer(
    e2e: str, amount: str, currency: str, creditor: Account, remittance: str = "Commission juin 2025"
) -> Transfer:
    return Transfer(e2e, D(amount), currency, creditor, remittance)


def chf_block(*transfers: Transfer, pid: str = "PO20250630-1-CHF") -> PaymentBlock:
    return PaymentBlock(pid, CHF_DEBTOR, "CHF", EXECUTION, transfers)


def eur_block(*transfers: Transfer, pid: str = "PO20250630-1-EUR") -> PaymentBlock:
    return PaymentBlock(pid, EUR_DEBTOR, "EUR", EXECUTION, transfers)


def two_blocks() -> list[PaymentBlock]:
    return [
        chf_block(
            transfer("PO20250630-1-anna", "350.00", "CHF", ANNA),
            transfer("PO20250630-1-marc", "1250.05", "CHF", MARC),
            transfer("PO20250630-1-zoe", "0.05", "CHF", ZOE, "Commission juin 2025 (client Müller)"),
        ),
        eur_block(
            transfer("PO20250630-1-marie", "120", "EUR", MARIE),
            transfer("PO20250630-1-paul", "80.50", "EUR", PAUL),
            transfer("PO20250630-1-lea", "999999999.99", "EUR", LEA),
            transfer("PO20250630-1-lea2", "45.00", "EUR", LEA, "Commission mai 2025 (rappel)"),
        ),
    ]


def build(blocks: list[PaymentBlock] | None = None, **overrides: Any) -> bytes:
    arguments: dict[str, Any] = {
        "message_id": "PO20250630-1",
        "created_at": CREATED_AT,
        "initiating_party": "Coopérative des Conseillers",
        "blocks": two_blocks() if blocks is None else blocks,
    }
    arguments.update(overrides)
    return pain001(**arguments)


def official_schema() -> etree.XMLSchema:
    """The XSD read independently of the module under test."""
    xsd = (files("sepaxml") / "schemas" / "pain.001.001.09.xsd").read_bytes()
    return etree.XMLSchema(etree.fromstring(xsd))


def xpath(xml: bytes, path: str) -> list[Any]:
    return list(etree.fromstring(xml).xpath(path, namespaces=NS))


# pain.001: a good file ---------------------------------------------------------------


def test_two_block_file_is_xsd_valid_with_control_sums_and_the_same_bytes_twice() -> None:
    """A CHF (CH debtor) and a EUR (FR debtor) block: XSD-valid, NbOfTxs/CtrlSum equal the inputs at both levels, same bytes twice."""
    blocks = two_blocks()
    xml = build(blocks)
    assert official_schema().validate(etree.fromstring(xml))
    validate_pain001(xml)
    assert xpath(xml, "/p:Document/p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs/text()") == ["7"]
    total = sum((block.control_sum for block in blocks), D(0))
    assert total == D("1000001845.59")
    assert xpath(xml, "//p:GrpHdr/p:CtrlSum/text()") == ["1000001845.59"]
    for block, info in zip(blocks, xpath(xml, "//p:PmtInf"), strict=True):
        assert info.findtext("p:PmtInfId", namespaces=NS) == block.payment_information_id
        assert info.findtext("p:NbOfTxs", namespaces=NS) == str(len(block.transfers))
        assert D(info.findtext("p:CtrlSum", namespaces=NS)) == sum((t.amount for t in block.transfers), D(0))
        amounts = [D(a) for a in info.xpath("p:CdtTrfTxInf/p:Amt/p:InstdAmt/text()", namespaces=NS)]
        assert amounts == [t.amount for t in block.transfers]
        assert set(info.xpath("p:CdtTrfTxInf/p:Amt/p:InstdAmt/@Ccy", namespaces=NS)) == {block.currency}
    assert build(two_blocks()) == xml


def test_the_file_follows_the_documented_decisions() -> None:
    """The file has the documented shape: namespace, UTC CreDtTm, Dt, BtchBookg false, SLEV, SEPA for EUR only, BICs, transliterated names."""
    xml = build()
    assert xml.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="' + PAIN001_NAMESPACE.encode()
    )
    assert xpath(xml, "//p:GrpHdr/p:CreDtTm/text()") == ["2025-07-01T08:30:12+00:00"]
    assert xpath(xml, "//p:GrpHdr/p:InitgPty/p:Nm/text()") == ["Cooperative des Conseillers"]
    assert xpath(xml, "//p:PmtInf/p:PmtMtd/text()") == ["TRF", "TRF"]
    assert xpath(xml, "//p:PmtInf/p:BtchBookg/text()") == ["false", "false"]
    assert xpath(xml, "//p:PmtInf/p:ChrgBr/text()") == ["SLEV", "SLEV"]
    assert xpath(xml, "//p:PmtInf/p:ReqdExctnDt/p:Dt/text()") == ["2025-07-02", "2025-07-02"]
    assert xpath(xml, "//p:PmtInf/p:PmtTpInf/p:SvcLvl/p:Cd/text()") == ["SEPA"]
    assert xpath(xml, "//p:PmtInf[p:PmtTpInf]/p:PmtInfId/text()") == ["PO20250630-1-EUR"]
    assert xpath(xml, "//p:DbtrAgt/p:FinInstnId/p:BICFI/text()") == ["UBSWCHZH80A", "AGRIFRPPXXX"]
    assert xpath(xml, "//p:CdtTrfTxInf[p:CdtrAgt]/p:PmtId/p:EndToEndId/text()") == [
        "PO20250630-1-marc",
        "PO20250630-1-marie",
    ]
    assert "Zoe L'Hote + Fils" in xpath(xml, "//p:Cdtr/p:Nm/text()")
    assert "Commission juin 2025 (client Muller)" in xpath(xml, "//p:RmtInf/p:Ustrd/text()")
    assert not xpath(xml, "//p:CtgyPurp | //p:Purp | //p:InstrId | //p:PstlAdr")


def test_the_same_instant_in_another_zone_gives_the_same_bytes() -> None:
    """created_at is written in UTC without microseconds, so the zone it is given in does not matter."""
    zurich = CREATED_AT.astimezone(ZoneInfo("Europe/Zurich")).replace(microsecond=0)
    assert build(created_at=zurich) == build()


def _valid_name() -> st.SearchStrategy[str]:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyzéèêëàâäïîôöùûüçÉÈÀÇ0123456789 '-.,&’"
    return st.text(alphabet, min_size=1, max_size=70).map(lambda s: re.sub(" +", " ", s).strip()).filter(bool)


def _iban(countries: tuple[str, ...]) -> st.SearchStrategy[str]:
    def make(country: str, seed: int) -> str:
        iban = str(IBAN.random(country_code=country, random=random.Random(seed)).compact)
        return (
            iban
            if country not in ("CH", "LI") or int(iban[4:9]) not in range(30000, 32000)
            else "CH9300762011623852957"
        )

    return st.builds(make, st.sampled_from(countries), st.integers(0, 2**32))


_CREDITORS = {"CHF": ("CH", "LI"), "EUR": ("FR", "DE", "BE", "IT", "ES", "AT", "NL", "CH", "LI", "MC")}
_BIC = st.sampled_from([None, "UBSWCHZH80A", "BNPAFRPP", "COBADEFFXXX", "BLFLLI2XXXX"])
_AMOUNT_CENTS = st.integers(1, 99_999_999_999)


@st.composite
def transfers_of(draw: st.DrawFn, currency: str) -> list[Transfer]:
    count = draw(st.integers(1, 12))
    return [
        Transfer(
            end_to_end_id=f"E{index}-{draw(st.from_regex(r'[A-Za-z0-9.-]{0,25}', fullmatch=True))}",
            amount=D(draw(_AMOUNT_CENTS)).scaleb(-2),
            currency=currency,
            creditor=Account(draw(_valid_name()), draw(_iban(_CREDITORS[currency])), draw(_BIC)),
            remittance=draw(_valid_name()),
        )
        for index in range(count)
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chf=transfers_of("CHF"), eur=transfers_of("EUR"), with_chf=st.booleans())
def test_any_valid_transfers_give_an_xsd_valid_file_whose_sums_add_up(
    chf: list[Transfer], eur: list[Transfer], with_chf: bool
) -> None:
    """Any valid transfers give an XSD-valid file whose control sums are the sums of the amounts, in the order given."""
    blocks = [eur_block(*eur)]
    if with_chf:
        chf = [Transfer(f"C{t.end_to_end_id}", t.amount, t.currency, t.creditor, t.remittance) for t in chf]
        blocks.insert(0, chf_block(*chf))
    xml = build(blocks)
    assert official_schema().validate(etree.fromstring(xml))
    every = [t for block in blocks for t in block.transfers]
    assert xpath(xml, "//p:GrpHdr/p:NbOfTxs/text()") == [str(len(every))]
    assert D(xpath(xml, "//p:GrpHdr/p:CtrlSum/text()")[0]) == sum((t.amount for t in every), D(0))
    for block, info in zip(blocks, xpath(xml, "//p:PmtInf"), strict=True):
        assert D(info.findtext("p:CtrlSum", namespaces=NS)) == sum((t.amount for t in block.transfers), D(0))
    assert xpath(xml, "//p:EndToEndId/text()") == [t.end_to_end_id for t in every]
    assert [D(a) for a in xpath(xml, "//p:InstdAmt/text()")] == [t.amount for t in every]


# pain.001: bad input -------------------------------------------------------------------

FR_BAD_RIB_KEY = iban_with_check_digits("FR", "20041010050500013M02607")  # mod 97 right, RIB key wrong


def _many(count: int, prefix: str) -> tuple[Transfer, ...]:
    return tuple(transfer(f"{prefix}{i}", "1.00", "CHF", ANNA) for i in range(count))


BAD_INPUTS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("iban checksum", lambda: Account("X", "CH9300762011623852958"), InvalidIbanError, "checksum"),
    ("iban country", lambda: Account("X", "XX9300762011623852957"), InvalidIbanError, "country"),
    ("iban length", lambda: Account("X", "CH93007620116238529"), InvalidIbanError, "length"),
    (
        "iban print form",
        lambda: Account("X", "CH93 0076 2011 6238 5295 7"),
        InvalidIbanError,
        "electronic form",
    ),
    ("iban lower case", lambda: Account("X", "ch9300762011623852957"), InvalidIbanError, "electronic form"),
    ("iban national key", lambda: Account("X", FR_BAD_RIB_KEY), InvalidIbanError, "national checksum"),
    ("iban not a str", lambda: Account("X", 9300762011623852957), InvalidIbanError, "must be a str"),  # type: ignore[arg-type]
    ("bic short", lambda: Account("X", "CH9300762011623852957", "UBSWCH"), InvalidBicError, "8 or 11"),
    ("bic lower", lambda: Account("X", "CH9300762011623852957", "ubswchzh"), InvalidBicError, "8 or 11"),
    ("bic country", lambda: Account("X", "CH9300762011623852957", "UBSWZZZH"), InvalidBicError, "country"),
    ("name cyrillic", lambda: Account("Иван", ANNA.iban), InvalidTextError, "U\\+0418"),
    ("name emoji", lambda: Account("Anna 🙂", ANNA.iban), InvalidTextError, "U\\+1F642"),
    ("name newline", lambda: Account("Anna\nKeller", ANNA.iban), InvalidTextError, "U\\+000A"),
    ("name empty", lambda: Account(" ", ANNA.iban), InvalidTextError, "empty"),
    ("name padded", lambda: Account("Anna ", ANNA.iban), InvalidTextError, "space"),
    ("name 71", lambda: Account("A" * 71, ANNA.iban), InvalidTextError, "71 characters"),
    (
        "name grows past 70",
        lambda: Account("Straße" + "a" * 64, ANNA.iban),
        InvalidTextError,
        "71 characters",
    ),
    ("amount zero", lambda: transfer("E1", "0", "CHF", ANNA), InvalidAmountError, "greater than zero"),
    (
        "amount negative",
        lambda: transfer("E1", "-5.00", "CHF", ANNA),
        InvalidAmountError,
        "greater than zero",
    ),
    ("amount 3 decimals", lambda: transfer("E1", "10.005", "EUR", PAUL), InvalidAmountError, "decimals"),
    ("amount over limit", lambda: transfer("E1", "1000000000.00", "EUR", PAUL), InvalidAmountError, "limit"),
    ("amount nan", lambda: transfer("E1", "NaN", "EUR", PAUL), InvalidAmountError, "not a number"),
    ("amount float", lambda: Transfer("E1", 10.5, "EUR", PAUL, "x"), InvalidAmountError, "Decimal"),  # type: ignore[arg-type]
    ("currency usd", lambda: transfer("E1", "10.00", "USD", PAUL), UnsupportedCurrencyError, "USD"),
    ("currency lower", lambda: transfer("E1", "10.00", "chf", ANNA), UnsupportedCurrencyError, "chf"),
    ("e2e 36", lambda: transfer("E" * 36, "1.00", "CHF", ANNA), InvalidIdentifierError, "36 characters"),
    ("e2e slash", lambda: transfer("PO/1", "1.00", "CHF", ANNA), InvalidIdentifierError, "A-Z a-z 0-9"),
    ("e2e space", lambda: transfer("PO 1", "1.00", "CHF", ANNA), InvalidIdentifierError, "A-Z a-z 0-9"),
    ("e2e accent", lambda: transfer("PO-é", "1.00", "CHF", ANNA), InvalidIdentifierError, "A-Z a-z 0-9"),
    ("e2e empty", lambda: transfer("", "1.00", "CHF", ANNA), InvalidIdentifierError, "A-Z a-z 0-9"),
    (
        "e2e reserved",
        lambda: transfer("NOTPROVIDED", "1.00", "CHF", ANNA),
        InvalidIdentifierError,
        "reserved",
    ),
    ("remittance 141", lambda: transfer("E1", "1.00", "CHF", ANNA, "r" * 141), InvalidTextError, "141"),
    (
        "remittance quote",
        lambda: transfer("E1", "1.00", "CHF", ANNA, 'say "hi"'),
        InvalidTextError,
        "U\\+0022",
    ),
    ("chf abroad", lambda: transfer("E1", "1.00", "CHF", PAUL), AccountCurrencyError, "CH or LI"),
    (
        "chf qr-iban",
        lambda: transfer("E1", "1.00", "CHF", Account("Q", "CH4431999123000889012")),
        AccountCurrencyError,
        "QR-IBAN",
    ),
    (
        "eur outside sepa",
        lambda: transfer("E1", "1.00", "EUR", Account("T", "TR330006100519786457841326")),
        AccountCurrencyError,
        "SEPA",
    ),
    ("block empty", chf_block, InvalidBlockError, "no transfer"),
    (
        "block list",
        lambda: PaymentBlock("B1", CHF_DEBTOR, "CHF", EXECUTION, [transfer("E1", "1.00", "CHF", ANNA)]),
        InvalidBlockError,
        "tuple",
    ),  # type: ignore[arg-type]
    ("block mixed", lambda: chf_block(transfer("E1", "1.00", "EUR", ANNA)), InvalidBlockError, "in EUR"),
    (
        "block eur from chf account",
        lambda: PaymentBlock(
            "B1",
            Account("C", "TR330006100519786457841326", "UBSWCHZH80A"),
            "EUR",
            EXECUTION,
            (transfer("E1", "1.00", "EUR", PAUL),),
        ),
        AccountCurrencyError,
        "debtor",
    ),
    (
        "block chf from fr account",
        lambda: PaymentBlock("B1", EUR_DEBTOR, "CHF", EXECUTION, (transfer("E1", "1.00", "CHF", ANNA),)),
        AccountCurrencyError,
        "debtor",
    ),
    (
        "debtor no bic",
        lambda: PaymentBlock("B1", ANNA, "CHF", EXECUTION, (transfer("E1", "1.00", "CHF", MARC),)),
        InvalidBicError,
        "needs a BIC",
    ),
    (
        "block datetime",
        lambda: PaymentBlock("B1", CHF_DEBTOR, "CHF", CREATED_AT, (transfer("E1", "1.00", "CHF", ANNA),)),
        InvalidDateError,
        "must be a date",
    ),
    (
        "block too many",
        lambda: chf_block(*_many(MAX_TRANSFERS_PER_FILE + 1, "E")),
        LimitExceededError,
        "10001 transfers",
    ),
    (
        "file too many",
        lambda: build([chf_block(*_many(5001, "A"), pid="B1"), chf_block(*_many(5000, "B"), pid="B2")]),
        LimitExceededError,
        "10001 transfers",
    ),
    (
        "file too many blocks",
        lambda: build(
            [
                chf_block(transfer(f"E{i}", "1.00", "CHF", ANNA), pid=f"B{i}")
                for i in range(MAX_BLOCKS_PER_FILE + 1)
            ]
        ),
        LimitExceededError,
        "101 blocks",
    ),
    ("file no block", lambda: build([]), InvalidBlockError, "at least one"),
    (
        "file duplicate e2e",
        lambda: build(
            [chf_block(transfer("E1", "1.00", "CHF", ANNA)), eur_block(transfer("E1", "1.00", "EUR", PAUL))]
        ),
        DuplicateIdError,
        "E1",
    ),
    (
        "file duplicate block id",
        lambda: build(
            [
                chf_block(transfer("E1", "1.00", "CHF", ANNA), pid="B"),
                chf_block(transfer("E2", "1.00", "CHF", ANNA), pid="B"),
            ]
        ),
        DuplicateIdError,
        "B is used twice",
    ),
    (
        "file naive time",
        lambda: build(created_at=datetime(2025, 7, 1, 8, 30)),
        InvalidDateError,
        "timezone-aware",
    ),
    (
        "file past execution",
        lambda: build(created_at=datetime(2025, 7, 3, tzinfo=UTC)),
        InvalidDateError,
        "between 2025-07-03",
    ),
    (
        "file far execution",
        lambda: build(created_at=datetime(2025, 4, 1, tzinfo=UTC)),
        InvalidDateError,
        "and 2025-05-31",
    ),
    ("file message id", lambda: build(message_id="PO 2025/06"), InvalidIdentifierError, "message id"),
    ("file party", lambda: build(initiating_party="Coop@Genève"), InvalidTextError, "U\\+0040"),
]


@pytest.mark.parametrize(
    ("thunk", "error", "message"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
def test_bad_input_is_refused_with_a_specific_error(
    thunk: Callable[[], object], error: type[Exception], message: str
) -> None:
    """Each bad input is refused before any XML exists, with its own error class and a message saying what."""
    with pytest.raises(error, match=message) as caught:
        thunk()
    assert isinstance(caught.value, PaymentInputError)


def test_a_transfer_at_the_limits_is_accepted() -> None:
    """The limits themselves pass: 35-char id, 70-char name, 140-char remittance, largest amount, one cent, day 0 and day 60."""
    longest = transfer("E" * 35, "999999999.99", "EUR", Account("N" * 70, PAUL.iban), "r" * 140)
    smallest = transfer("E-1.x", "0.01", "EUR", PAUL)
    for day in (date(2025, 7, 1), date(2025, 8, 30)):
        block = PaymentBlock("B", EUR_DEBTOR, "EUR", day, (longest, smallest))
        validate_pain001(build([block]))


@pytest.mark.parametrize(
    ("given", "written"),
    [
        ("Zoë L’Hôte & Fils", "Zoe L'Hote + Fils"),
        ("Müller-Lüdenscheidt", "Muller-Ludenscheidt"),
        ("Straße", "Strasse"),
        ("Ærøskøbing Œuvre", "AEroskobing OEuvre"),
        ("Łódź", "Lodz"),
        ("ﬁnance\u00a0SA", "finance SA"),
        ("François — Genève", "Francois - Geneve"),
        ("Ｆｕｌｌ", "Full"),
        ("(a/b) ?:.,'+", "(a/b) ?:.,'+"),
    ],
)
def test_text_is_transliterated_to_the_sepa_set(given: str, written: str) -> None:
    """Names and remittance lose their diacritics and fold to the SEPA basic Latin set, deterministically."""
    assert payment_text(given) == written


@given(st.text(max_size=200))
def test_payment_text_either_gives_sepa_text_or_refuses(value: str) -> None:
    """Any text becomes SEPA-set text (unchanged when written again) or is refused with InvalidTextError, never anything else."""
    try:
        text = payment_text(value)
    except InvalidTextError:
        return
    assert re.fullmatch(r"[A-Za-z0-9/\-?:().,'+ ]{1,140}", text)
    assert payment_text(text) == text


# pain.001: tampered files --------------------------------------------------------------


def _line_of(xml: bytes, needle: bytes) -> int:
    return xml[: xml.index(needle)].count(b"\n") + 1


def _tamper_text(xml: bytes, old: bytes, new: bytes) -> tuple[bytes, int]:
    assert old in xml
    return xml.replace(old, new, 1), _line_of(xml, old)


def _remove(xml: bytes, path: str) -> tuple[bytes, int | None]:
    root = etree.fromstring(xml)
    element = root.xpath(path, namespaces=NS)[0]
    element.getparent().remove(element)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8"), None


TAMPERED: list[tuple[str, Callable[[bytes], tuple[bytes, int | None]], str, str]] = [
    (
        "ctrlsum not a number",
        lambda x: _tamper_text(x, b"<CtrlSum>1000001845.59<", b"<CtrlSum>12,50<"),
        "schema",
        "CtrlSum.*'12,50'",
    ),
    ("nboftxs negative", lambda x: _tamper_text(x, b"<NbOfTxs>7<", b"<NbOfTxs>-7<"), "schema", "NbOfTxs"),
    ("iban lower case", lambda x: _tamper_text(x, b"<IBAN>CH93", b"<IBAN>ch93"), "schema", "IBAN"),
    ("currency lower case", lambda x: _tamper_text(x, b'Ccy="EUR"', b'Ccy="eur"'), "schema", "Ccy"),
    (
        "unknown charge bearer",
        lambda x: _tamper_text(x, b"<ChrgBr>SLEV<", b"<ChrgBr>OUR<"),
        "schema",
        "ChrgBr",
    ),
    ("debtor removed", lambda x: _remove(x, "//p:PmtInf/p:Dbtr"), "schema", "DbtrAcct.*not expected"),
    (
        "end-to-end id removed",
        lambda x: _remove(x, "//p:PmtId/p:EndToEndId"),
        "schema",
        "PmtId.*Missing child",
    ),
    (
        "ctrlsum changed",
        lambda x: _tamper_text(x, b"<CtrlSum>1000001845.59<", b"<CtrlSum>1000001845.58<"),
        "control_sum",
        "CtrlSum 1000001845.58 but",
    ),
    (
        "block nboftxs changed",
        lambda x: _tamper_text(x, b"<NbOfTxs>3<", b"<NbOfTxs>4<"),
        "control_sum",
        "NbOfTxs 4 but 3",
    ),
    (
        "amount changed",
        lambda x: _tamper_text(x, b">350.00<", b">350.10<"),
        "control_sum",
        "PO20250630-1-CHF: CtrlSum",
    ),
    (
        "e2e duplicated",
        lambda x: _tamper_text(x, b">PO20250630-1-marc<", b">PO20250630-1-anna<"),
        "duplicate_id",
        "anna is used twice",
    ),
]


@pytest.mark.parametrize(
    ("tamper", "kind", "reason"), [case[1:] for case in TAMPERED], ids=[case[0] for case in TAMPERED]
)
def test_a_tampered_file_fails_validation_with_the_reason(
    tamper: Callable[[bytes], tuple[bytes, int | None]], kind: str, reason: str
) -> None:
    """A changed file is refused: XSD breaks with the XSD's message and line, wrong sums and duplicated ids by the checks after it."""
    tampered, line = tamper(build())
    with pytest.raises(Pain001Error) as caught:
        validate_pain001(tampered)
    assert caught.value.kind == kind
    assert re.search(reason, caught.value.reason), caught.value.reason
    assert caught.value.line is not None
    if line is not None and kind == "schema":
        assert caught.value.line == line


@pytest.mark.parametrize(
    ("xml", "kind"),
    [
        (
            b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"><CstmrCdtTrfInitn/></Document>',
            "wrong_message",
        ),
        (b"<Document><CstmrCdtTrfInitn/></Document>", "wrong_message"),
        (b"not xml at all", "not_xml"),
        (b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Document>&x;</Document>', "forbidden_dtd"),
    ],
)
def test_validate_pain001_refuses_other_documents(xml: bytes, kind: str) -> None:
    """validate_pain001 names what it got instead of a pain.001.001.09, hostile input included."""
    with pytest.raises(Pain001Error) as caught:
        validate_pain001(xml)
    assert caught.value.kind == kind


# camt: round trips ----------------------------------------------------------------------


def _entries_from_pain001(xml: bytes, booking_date: date) -> list[BankEntry]:
    """What the bank books for each transaction of a pain.001, read from the file itself."""
    return [
        BankEntry(
            end_to_end_id=tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS),
            amount=D(tx.findtext("p:Amt/p:InstdAmt", namespaces=NS)),
            currency=tx.find("p:Amt/p:InstdAmt", NS).get("Ccy"),
            status="booked",
            booking_date=booking_date,
            bank_reference=f"BK{index:08d}",
            creditor_iban=tx.findtext("p:CdtrAcct/p:Id/p:IBAN", namespaces=NS),
            return_reason=None,
        )
        for index, tx in enumerate(xpath(xml, "//p:CdtTrfTxInf"), start=1)
    ]


def test_a_camt054_of_a_pain001s_transfers_parses_back_to_the_same_ids_and_amounts() -> None:
    """A pain.001's transfers booked in a camt.054 read back with the same end-to-end ids, amounts and currencies."""
    blocks = two_blocks()
    entries = _entries_from_pain001(build(blocks), date(2025, 7, 2))
    parsed = parse_camt(
        camt054(message_id="N20250702", created_at=CREATED_AT, account=CHF_DEBTOR, entries=entries)
    )
    every = [t for block in blocks for t in block.transfers]
    assert [(e.end_to_end_id, e.amount, e.currency) for e in parsed] == [
        (t.end_to_end_id, t.amount, t.currency) for t in every
    ]
    assert {e.status for e in parsed} == {"booked"}
    assert parsed == tuple(entries)


def test_returned_and_pending_entries_parse_with_their_status() -> None:
    """A returned transfer (RtrInf/Rsn/Cd AC04) reads as "returned" with its reason, a pending one as "pending"."""
    entries = [
        BankEntry(
            "PO20250630-1-anna", D("350.00"), "CHF", "booked", date(2025, 7, 2), "BK1", ANNA.iban, None
        ),
        BankEntry(
            "PO20250630-1-marie", D("120.00"), "EUR", "returned", date(2025, 7, 9), "BK2", MARIE.iban, "AC04"
        ),
        BankEntry("PO20250630-1-paul", D("80.50"), "EUR", "pending", None, None, None, None),
    ]
    xml = camt054(message_id="N2", created_at=CREATED_AT, account=EUR_DEBTOR, entries=entries)
    parsed = parse_camt(xml)
    assert [(e.end_to_end_id, e.status, e.return_reason) for e in parsed] == [
        ("PO20250630-1-anna", "booked", None),
        ("PO20250630-1-marie", "returned", "AC04"),
        ("PO20250630-1-paul", "pending", None),
    ]
    root = etree.fromstring(xml)
    ns = {"c": "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"}
    assert root.xpath("//c:Ntry/c:CdtDbtInd/text()", namespaces=ns) == ["DBIT", "CRDT", "DBIT"]
    assert root.xpath("//c:Ntry/c:Sts/c:Cd/text()", namespaces=ns) == ["BOOK", "BOOK", "PDNG"]
    assert root.xpath("//c:SubFmlyCd/text()", namespaces=ns) == ["DMCT", "RRTN", "ESCT"]


_REASONS = st.sampled_from(["AC01", "AC04", "AC06", "AG01", "AM05", "BE04", "MD07", "RR04"])


@st.composite
def bank_entries(draw: st.DrawFn) -> BankEntry:
    status = draw(st.sampled_from(["booked", "pending", "returned"]))
    currency = draw(st.sampled_from(["CHF", "EUR"]))
    return BankEntry(
        end_to_end_id=draw(st.none() | st.from_regex(r"E[A-Za-z0-9.-]{0,34}", fullmatch=True)),
        amount=D(draw(_AMOUNT_CENTS)).scaleb(-2),
        currency=currency,
        status=status,
        booking_date=draw(st.dates(date(2020, 1, 1), date(2030, 12, 31)))
        if status == "booked"
        else draw(st.none() | st.dates(date(2020, 1, 1), date(2030, 12, 31))),
        bank_reference=draw(st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,34}", fullmatch=True)),
        creditor_iban=draw(
            st.none() | st.sampled_from([ANNA.iban, MARC.iban, MARIE.iban, PAUL.iban, LEA.iban])
        ),
        return_reason=draw(st.none() | _REASONS) if status == "returned" else None,
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(bank_entries(), max_size=20))
def test_any_bank_entries_survive_camt054_and_parse_camt(entries: list[BankEntry]) -> None:
    """Whatever the entries, writing them as a camt.054 and reading it gives them back, in order."""
    xml = camt054(message_id="N1", created_at=CREATED_AT, account=CHF_DEBTOR, entries=entries)
    assert parse_camt(xml) == tuple(entries)


@pytest.mark.parametrize(
    ("entry", "error", "message"),
    [
        (
            BankEntry("E1", D("1.00"), "CHF", "rejected", None, None, None, None),
            PaymentInputError,
            "pain.002",
        ),
        (
            BankEntry("E1", D("1.00"), "CHF", "booked", None, None, None, None),
            InvalidDateError,
            "booking date",
        ),
        (
            BankEntry("E1", D("1.00"), "CHF", "booked", date(2025, 7, 2), None, None, "AC04"),
            PaymentInputError,
            "return reason",
        ),
        (
            BankEntry("E1", D("1.00"), "USD", "pending", None, None, None, None),
            UnsupportedCurrencyError,
            "USD",
        ),
        (
            BankEntry("E 1", D("1.00"), "CHF", "pending", None, None, None, None),
            InvalidIdentifierError,
            "end-to-end",
        ),
        (
            BankEntry("E1", D("1.00"), "CHF", "pending", None, None, "CH00", None),
            InvalidIbanError,
            "creditor",
        ),
    ],
)
def test_camt054_refuses_entries_a_bank_would_not_write(
    entry: BankEntry, error: type[Exception], message: str
) -> None:
    """The camt.054 writer refuses inconsistent entries instead of writing a file that reads back differently."""
    with pytest.raises(error, match=message):
        camt054(message_id="N1", created_at=CREATED_AT, account=CHF_DEBTOR, entries=[entry])


# camt: bank files ---------------------------------------------------------------------

FIXTURE_053_ENTRIES = (
    BankEntry(
        "PO20250630-1-7bcffe47b888b8b3",
        D("120.00"),
        "EUR",
        "booked",
        date(2025, 7, 2),
        "TX-20250702-0001",
        "FR1420041010050500013M02606",
        None,
    ),
    BankEntry(
        "PO20250630-1-b6208370b83bc01b",
        D("80.50"),
        "EUR",
        "booked",
        date(2025, 7, 2),
        "TX-20250702-0002",
        "DE89370400440532013000",
        None,
    ),
    BankEntry(
        "PO20250531-1-06b29ea4506cef02",
        D("45.00"),
        "EUR",
        "returned",
        date(2025, 7, 3),
        "TX-20250703-0007",
        "IT60X0542811101000000123456",
        "AC04",
    ),
)


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_a_camt053_statement_parses_like_a_camt054_with_the_same_entries() -> None:
    """The camt.053 fixture gives its two payouts and the return (the client's credit left out), as a camt.054 of them does."""
    parsed = parse_camt(_fixture("camt053_001_08_statement.xml"))
    assert parsed == FIXTURE_053_ENTRIES
    as_054 = camt054(message_id="N3", created_at=CREATED_AT, account=EUR_DEBTOR, entries=FIXTURE_053_ENTRIES)
    assert parse_camt(as_054) == parsed


def _as_version_04(xml: bytes) -> bytes:
    """The fixture rewritten as camt.053.001.04: status as a plain code, parties without the
    Pty wrapper, no UETR (which .04 does not have)."""
    root = etree.fromstring(xml.replace(b"camt.053.001.08", b"camt.053.001.04"))
    ns = {"c": "urn:iso:std:iso:20022:tech:xsd:camt.053.001.04"}
    for status in root.xpath("//c:Ntry/c:Sts", namespaces=ns):
        code = status[0].text
        status.remove(status[0])
        status.text = code
    for wrapper in root.xpath("//c:RltdPties/*/c:Pty", namespaces=ns):
        party = wrapper.getparent()
        party.remove(wrapper)
        party.extend(list(wrapper))
    for uetr in root.xpath("//c:UETR", namespaces=ns):
        uetr.getparent().remove(uetr)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_the_same_statement_in_version_04_parses_the_same() -> None:
    """camt.053.001.04 (plain status code) is read like .08."""
    rewritten = _as_version_04(_fixture("camt053_001_08_statement.xml"))
    assert b"camt.053.001.04" in rewritten and b"<Sts>BOOK</Sts>" in rewritten
    assert parse_camt(rewritten) == FIXTURE_053_ENTRIES


def test_a_swiss_style_camt054_version_02_parses() -> None:
    """A camt.054.001.02 (amounts in AmtDtls only) gives a batch of two payouts, a pending debit, a fee without id and a return."""
    assert parse_camt(_fixture("camt054_001_02_notification.xml")) == (
        BankEntry(
            "PO20250630-1-5e1f0c2a9d7b3e48",
            D("350.00"),
            "CHF",
            "booked",
            date(2025, 7, 2),
            "ZKB-7731-0001",
            ANNA.iban,
            None,
        ),
        BankEntry(
            "PO20250630-1-93d0a7c4e2b1f658",
            D("150.00"),
            "CHF",
            "booked",
            date(2025, 7, 2),
            "ZKB-7731-0001",
            ZOE.iban,
            None,
        ),
        BankEntry(None, D("99.95"), "CHF", "pending", None, "ZKB-7731-0002", None, None),
        BankEntry(None, D("2.50"), "CHF", "booked", date(2025, 7, 2), "ZKB-7731-0003", None, None),
        BankEntry(
            "PO20250531-1-0a9c4d2e7f6b1835",
            D("75.00"),
            "CHF",
            "returned",
            date(2025, 7, 2),
            "ZKB-RET-0042",
            MARC.iban,
            "AC04",
        ),
    )


def _camt(version: str, entries: str, message: str = "camt.054") -> bytes:
    wrapper, report = {
        "camt.053": ("BkToCstmrStmt", "Stmt"),
        "camt.054": ("BkToCstmrDbtCdtNtfctn", "Ntfctn"),
    }[message]
    return (
        f'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:{message}.001.{version}"><{wrapper}>'
        f"<GrpHdr><MsgId>M</MsgId><CreDtTm>2025-07-02T18:00:00</CreDtTm></GrpHdr>"
        f"<{report}><Id>R</Id><Acct><Id><IBAN>{CHF_DEBTOR.iban}</IBAN></Id></Acct>{entries}</{report}>"
        f"</{wrapper}></Document>"
    ).encode()


def _ntry(direction: str, status: str, extra: str = "", details: str = "", amount: str = "10.00") -> str:
    return (
        f'<Ntry><Amt Ccy="CHF">{amount}</Amt><CdtDbtInd>{direction}</CdtDbtInd>{extra}<Sts>{status}</Sts>'
        f"<BookgDt><DtTm>2025-07-02T10:00:00+02:00</DtTm></BookgDt><AcctSvcrRef>A1</AcctSvcrRef>"
        f"<BkTxCd/>{details}</Ntry>"
    )


def _tx(e2e: str, amount: str | None = "10.00", extra: str = "") -> str:
    amt = f'<Amt Ccy="CHF">{amount}</Amt>' if amount is not None else ""
    return f"<TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs>{amt}{extra}</TxDtls>"


@pytest.mark.parametrize(
    ("ntry", "expected"),
    [
        (_ntry("DBIT", "BOOK"), [(None, "booked", None)]),
        (_ntry("DBIT", "<Cd>PDNG</Cd>"), [(None, "pending", None)]),
        (_ntry("DBIT", "<Prtry>FUTR</Prtry>"), [(None, "pending", None)]),
        (_ntry("DBIT", "RJCT", details=f"<NtryDtls>{_tx('E1')}</NtryDtls>"), [("E1", "rejected", None)]),
        (_ntry("DBIT", "INFO"), []),
        (_ntry("DBIT", "BOOK", "<RvslInd>true</RvslInd>"), []),
        (_ntry("CRDT", "BOOK"), []),
        (_ntry("CRDT", "BOOK", "<RvslInd>1</RvslInd>"), [(None, "returned", None)]),
        (
            _ntry(
                "CRDT",
                "BOOK",
                details=f"<NtryDtls>{_tx('E1')}{_tx('E2', extra='<RtrInf><Rsn><Prtry>X9</Prtry></Rsn></RtrInf>')}</NtryDtls>",
            ),
            [("E2", "returned", "X9")],
        ),
        (
            _ntry(
                "DBIT",
                "BOOK",
                details=f"<NtryDtls><Btch><NbOfTxs>2</NbOfTxs></Btch>{_tx('E1', '4.00')}{_tx('E2', '6.00', '<RtrInf/>')}</NtryDtls>",
            ),
            [("E1", "booked", None)],
        ),
        (_ntry("DBIT", "BOOK", details=f"<NtryDtls>{_tx('E1', None)}</NtryDtls>"), [("E1", "booked", None)]),
    ],
)
def test_which_entries_are_ours_and_their_status(
    ntry: str, expected: list[tuple[str | None, str, str | None]]
) -> None:
    """Debits keep their status (INFO skipped), returns and debit reversals read as returned, other credits and credit reversals are skipped."""
    parsed = parse_camt(_camt("08", ntry))
    assert [(e.end_to_end_id, e.status, e.return_reason) for e in parsed] == expected
    assert all(e.booking_date == date(2025, 7, 2) for e in parsed)


@pytest.mark.parametrize(
    ("xml", "kind", "message"),
    [
        (_camt("08", _ntry("DBIT", "DONE")), "malformed", "unknown entry status 'DONE'"),
        (_camt("08", _ntry("XXXX", "BOOK")), "malformed", "CdtDbtInd"),
        (_camt("08", _ntry("DBIT", "BOOK", amount="1e5")), "malformed", "not an amount"),
        (_camt("08", _ntry("DBIT", "BOOK", "<RvslInd>yes</RvslInd>")), "malformed", "not a boolean"),
        (
            _camt(
                "08",
                _ntry("DBIT", "BOOK", details=f"<NtryDtls>{_tx('E1', None)}{_tx('E2', None)}</NtryDtls>"),
            ),
            "malformed",
            "no amount",
        ),
        (_camt("09", ""), "unsupported_version", "camt.054.001.09"),
        (_camt("01", "", "camt.053"), "unsupported_version", "camt.053.001.01"),
        (_camt("08", "").replace(b"camt.054", b"camt.052"), "wrong_message", "camt.052.001.08"),
        (
            _camt("08", "").replace(b"BkToCstmrDbtCdtNtfctn", b"Other"),
            "malformed",
            "without BkToCstmrDbtCdtNtfctn",
        ),
    ],
)
def test_camt_problems_are_clear_errors(xml: bytes, kind: str, message: str) -> None:
    """A camt that is not what it should be is a CamtError saying what and where."""
    with pytest.raises(CamtError, match=message) as caught:
        parse_camt(xml)
    assert caught.value.kind == kind


@pytest.mark.parametrize("version", ["02", "03", "04", "05", "06", "07", "08"])
@pytest.mark.parametrize("message", ["camt.053", "camt.054"])
def test_every_supported_version_is_detected_by_its_namespace(version: str, message: str) -> None:
    """camt.053 and camt.054 in versions .02 to .08 are read, whichever the namespace says."""
    parsed = parse_camt(
        _camt(version, _ntry("DBIT", "BOOK", details=f"<NtryDtls>{_tx('E1')}</NtryDtls>"), message)
    )
    assert [(e.end_to_end_id, e.amount) for e in parsed] == [("E1", D("10.00"))]


# camt: hostile input --------------------------------------------------------------------


def _xxe(target: str) -> bytes:
    return (
        f'<?xml version="1.0"?><!DOCTYPE Document [<!ENTITY x SYSTEM "{target}">]>'
        f'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn>'
        f"<GrpHdr><MsgId>&x;</MsgId></GrpHdr></BkToCstmrDbtCdtNtfctn></Document>"
    ).encode()


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b']><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">&lol9;</Document>'
)


def test_an_external_entity_is_refused_and_nothing_is_read(tmp_path: Path) -> None:
    """XXE to a local file, /etc/passwd or the network is refused and the secret never shows, even hidden in UTF-16."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-4242")
    for target in (secret.as_uri(), "file:///etc/passwd", "http://127.0.0.1:9/x"):
        with pytest.raises(CamtError) as caught:
            parse_camt(_xxe(target))
        assert caught.value.kind == "forbidden_dtd"
        assert "TOPSECRET" not in str(caught.value)
    utf16 = (
        _xxe(secret.as_uri())
        .decode()
        .replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
    )
    with pytest.raises(CamtError) as caught:
        parse_camt(utf16.encode("utf-16"))
    assert caught.value.kind == "not_xml"
    assert "TOPSECRET" not in str(caught.value)


def test_billion_laughs_is_refused_at_once() -> None:
    """Entity expansion is refused before any entity is expanded, in well under a second."""
    started = time.monotonic()
    with pytest.raises(CamtError) as caught:
        parse_camt(BILLION_LAUGHS)
    assert caught.value.kind == "forbidden_dtd"
    assert time.monotonic() - started < 1


def test_xinclude_is_not_processed(tmp_path: Path) -> None:
    """An XInclude element is just an unknown element: nothing is fetched or read."""
    secret = tmp_path / "secret.xml"
    secret.write_text("<Ntry>TOPSECRET</Ntry>")
    include = f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{secret.as_uri()}"/>'
    assert parse_camt(_camt("08", include)) == ()


@pytest.mark.parametrize(
    ("name", "make", "kind", "message"),
    [
        ("pain.001", build, "wrong_message", "pain.001.001.09"),
        (
            "pdf",
            lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
            "not_xml",
            "not well-formed",
        ),
        ("json", lambda: b'{"entries": []}', "not_xml", "not well-formed"),
        ("truncated", lambda: _fixture("camt053_001_08_statement.xml")[:2000], "not_xml", "not well-formed"),
        ("empty", lambda: b"  \n", "empty", "empty"),
        ("str", lambda: _camt("08", "").decode(), "not_bytes", "str"),
        ("too large", lambda: b" " * (MAX_XML_BYTES + 1), "too_large", str(MAX_XML_BYTES)),
        (
            "external dtd",
            lambda: b'<!DOCTYPE Document SYSTEM "http://127.0.0.1:9/x.dtd"><Document/>',
            "forbidden_dtd",
            "DOCTYPE",
        ),
        ("too deep", lambda: b"<a>" * 5000 + b"</a>" * 5000, "not_xml", "not well-formed"),
        (
            "no namespace",
            lambda: b"<Document><BkToCstmrStmt/></Document>",
            "wrong_message",
            r"namespace \(none\)",
        ),
    ],
)
def test_what_is_not_a_camt_is_a_clear_error(
    name: str, make: Callable[[], Any], kind: str, message: str
) -> None:
    """A pain.001, a PDF, JSON, a cut file, nothing, too much or too deep is a CamtError saying what was found."""
    with pytest.raises(CamtError, match=message) as caught:
        parse_camt(make())
    assert caught.value.kind == kind
    assert isinstance(caught.value, Iso20022Error)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_damaged_camt_files_give_entries_or_a_camt_error(data: st.DataObject) -> None:
    """Random bytes, or the fixture with a byte changed and cut, give entries or a CamtError, never another exception."""
    original = _fixture("camt053_001_08_statement.xml")
    xml = data.draw(
        st.binary(max_size=512)
        | st.builds(
            lambda at, byte, cut: (original[:at] + bytes([byte]) + original[at + 1 :])[:cut],
            st.integers(0, len(original) - 1),
            st.integers(0, 255),
            st.integers(0, len(original)),
        )
    )
    try:
        entries = parse_camt(xml)
    except CamtError:
        return
    assert all(isinstance(entry, BankEntry) for entry in entries)


@pytest.mark.parametrize(
    ("run_id", "beneficiary", "currency", "expected"),
    [
        ("PO20250630-1", "int-marie", "EUR", "PO20250630-1-7bcffe47b888b8b3"),
        ("PO20250630-1", "int-paul", "EUR", "PO20250630-1-b6208370b83bc01b"),
        ("PO20250531-1", "int-lea", "EUR", "PO20250531-1-06b29ea4506cef02"),
    ],
)
def test_end_to_end_ids_derive_from_the_run_and_the_beneficiary(
    run_id: str, beneficiary: str, currency: str, expected: str
) -> None:
    """The suggested derivation gives the ids of the sample statement: run id, a dash, 16 hex digits."""
    assert derive_end_to_end_id(run_id, beneficiary, currency) == expected


@given(
    run_id=st.from_regex(r"[A-Za-z0-9.-]{1,18}", fullmatch=True),
    beneficiaries=st.lists(st.text(min_size=1, max_size=300), min_size=2, max_size=20, unique=True),
    currency=st.sampled_from(["CHF", "EUR"]),
)
def test_derived_end_to_end_ids_are_valid_and_distinct(
    run_id: str, beneficiaries: list[str], currency: str
) -> None:
    """Whatever the beneficiary ids, derived ids are valid, at most 35 characters, distinct and stable."""
    ids = [derive_end_to_end_id(run_id, b, currency) for b in beneficiaries]
    assert len(set(ids)) == len(ids)
    assert all(len(i) <= 35 and re.fullmatch(r"[A-Za-z0-9.-]+", i) for i in ids)
    assert ids == [derive_end_to_end_id(run_id, b, currency) for b in beneficiaries]
    transfer(ids[0], "1.00", currency, ANNA if currency == "CHF" else PAUL)


@pytest.mark.parametrize("run_id", ["", "R" * 19, "PO 2025", "NOTPROVIDED"])
def test_a_bad_run_id_is_refused(run_id: str) -> None:
    """A run id that would not leave room for the digest, or is not an identifier, is refused."""
    with pytest.raises(InvalidIdentifierError):
        derive_end_to_end_id(run_id, "int-marie", "EUR")
