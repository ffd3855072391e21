"""Monthly statements (``statement.issued``, rules R9): the event models (strict on what the
notifier relies on, tolerant of the rest), routing to introducers, clients and advisers, the
directory of registrations, the fr/en texts (figures, commission lines, margins and
rebates, payouts, voids, the link), the PDF link guard, and never a digest."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from notifier.application.formatting import format_money, text_table
from notifier.application.render import Renderer
from notifier.domain.events import (
    KNOWN_KINDS,
    AdviserRegistered,
    ClientRegistered,
    Introducer,
    LedgerEnvelope,
    Party,
    parse_payload,
    party_key,
    party_of_key,
)
from notifier.domain.links import base_problem, fetch_url, link_problem
from notifier.domain.routing import recipient_of
from notifier.domain.signature import introducer_secret, party_secret
from notifier.domain.statements import StatementIssued, statement_filename
from tests.notifier.support import (
    MONTH_VOIDS,
    MonthClose,
    derived_envelopes,
    ledger_event,
    make_rig,
    month_close,
    month_lines,
    registration,
)

NBSP = "\u00a0"
CLOSE: MonthClose = month_close()
RENDERER = Renderer()
PARTIES = [
    ("introducer", "int-marie"),
    ("introducer", "int-carl"),
    ("client", "cli-dupont"),
    ("adviser", "adv-luc"),
    ("adviser", "adv-eva"),
]


def chf(amount: str) -> str:
    return f"CHF{NBSP}{amount}"


def _event(kind: str, party_id: str) -> StatementIssued:
    env = CLOSE.of(kind, party_id)
    payload = parse_payload(env.kind, env.data)
    assert isinstance(payload, StatementIssued)
    return payload


def _party(kind: str, party_id: str, language: str) -> Party:
    return Party.model_validate(
        {"kind": kind, "party_id": party_id, "display_name": f"Name of {party_id}", "language": language}
    )


def _render(kind: str, party_id: str, language: str, *, attached: bool = True) -> tuple[str, str]:
    env = CLOSE.of(kind, party_id)
    rendered = RENDERER.render_statement(
        _event(kind, party_id), _party(kind, party_id, language), env.id, attached=attached
    )
    assert rendered.language == language
    return rendered.subject, rendered.text


def _with(kind: str, who: str, /, **changes: Any) -> dict[str, Any]:
    """The data of ``kind``/``who``'s statement with ``changes`` (``a__b`` is ``data[a][b]``)."""
    data = copy.deepcopy(CLOSE.of(kind, who).data)
    for path, value in changes.items():
        target = data
        *parents, last = path.split("__")
        for name in parents:
            target = target[name]
        target[last] = value
    return data


# the events ------------------------------------------------------------------------------


def test_a_close_issues_one_statement_per_party_with_figures() -> None:
    """March's close issues one statement per party with a figure (ledger ids); cli-nobody and adv-idle none."""
    position = CLOSE.position
    assert sorted((e.data["party_kind"], e.data["party_id"]) for e in CLOSE.envelopes) == sorted(PARTIES)
    assert {e.id for e in CLOSE.envelopes} == {
        f"{position}:statement.issued:{kind}/{party}/2025-03" for kind, party in PARTIES
    }
    assert all(e.kind == "statement.issued" and e.kind in KNOWN_KINDS for e in CLOSE.envelopes)


def test_statement_events_route_to_their_party() -> None:
    """Each statement goes to its party's directory key; registrations go to nobody."""
    keys = {}
    for env in CLOSE.envelopes:
        payload = parse_payload(env.kind, env.data)
        assert payload is not None
        keys[env.data["party_id"]] = recipient_of(env.kind, payload)
    assert keys == {
        "int-marie": "int-marie",
        "int-carl": "int-carl",
        "cli-dupont": "client/cli-dupont",
        "adv-luc": "adviser/adv-luc",
        "adv-eva": "adviser/adv-eva",
    }
    reg = registration("client", "cli-dupont", email_addr="compta@dupont.example")
    payload = parse_payload(reg.kind, reg.data)
    assert isinstance(payload, ClientRegistered) and recipient_of(reg.kind, payload) is None


def test_registrations_fill_the_directory_for_each_kind() -> None:
    """introducer/client/adviser.registered become directory entries keyed without clashes."""
    parties = [
        parse_payload(e.kind, e.data)
        for e in (
            registration("client", "x-1", name="Client X", language="en"),
            registration("adviser", "x-1", email_addr="a@example.org"),
            derived_envelopes(month_lines()[:1])[0],
        )
    ]
    assert isinstance(parties[0], ClientRegistered) and isinstance(parties[1], AdviserRegistered)
    assert isinstance(parties[2], Introducer)
    entries = [p.party() for p in parties]  # type: ignore[union-attr]
    assert [(p.kind, p.party_id, p.key, p.language) for p in entries] == [
        ("client", "x-1", "client/x-1", "en"),
        ("adviser", "x-1", "adviser/x-1", "fr"),
        ("introducer", "int-marie", "int-marie", "fr"),
    ]
    for entry in entries:
        assert party_of_key(entry.key) == (entry.kind, entry.party_id)
    assert party_key("introducer", "int-a") == "int-a"  # as before clients and advisers


def test_a_statement_with_nothing_in_the_month_tells_nobody() -> None:
    """A statement with no figure at all, and the cooperative's own statement, tell nobody."""
    empty = _with(
        "client",
        "cli-dupont",
        statement__rows=[],
        statement__commissions=[],
        statement__commission_totals=[],
        statement__voids=[],
        statement__margins=[],
        statement__rebate_shares=[],
        statement__pass_throughs=[],
        statement__disclosures=[],
    )
    payload = parse_payload("statement.issued", empty)
    assert isinstance(payload, StatementIssued) and recipient_of("statement.issued", payload) is None
    assert parse_payload("statement.issued", {**empty, "party_kind": "cooperative"}) is None


def test_unknown_fields_are_ignored_and_disclosures_are_optional() -> None:
    """Fields the ledger adds change nothing; a view without `disclosures` reads as none."""
    data = _with("client", "cli-dupont", new_top_field=1, statement__new_field={"x": 1})
    data["statement"]["commissions"][0]["new_line_field"] = "y"
    del data["statement"]["disclosures"]
    payload = parse_payload("statement.issued", data)
    assert isinstance(payload, StatementIssued)
    assert payload.statement.disclosures == [] and len(payload.statement.commissions) == 2


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"party_id": "cli-other"}, "the view is another party's"),
        ({"period": "2025-04"}, "the view is another month's"),
        ({"statement__status": "provisional"}, "only closed months are sent"),
        ({"link_expires": "2025-05-02T12:00:00"}, "an expiry without a time zone"),
        ({"pdf_url": "file:///etc/passwd"}, "a link that is not http(s)"),
        ({"statement__close": None}, "no close"),
    ],
)
def test_a_statement_the_notifier_cannot_rely_on_is_invalid(change: dict[str, Any], why: str) -> None:
    """Strict on what the notifier relies on: who, which month, closed, the links."""
    with pytest.raises(ValidationError):
        parse_payload("statement.issued", _with("client", "cli-dupont", **change))


def test_rows_must_hold_the_figures_of_the_statement_kind() -> None:
    """Rows must hold the figures of their kind (introducer: balance, client: rebate), or the event is refused."""
    data = _with("introducer", "int-marie")
    data["statement"]["rows"][0]["closing"] = {
        "owed": "1.00",
        "passed_through": "0.00",
        "outstanding": "1.00",
    }
    with pytest.raises(ValidationError, match="introducer row's closing"):
        parse_payload("statement.issued", data)
    data = _with("client", "cli-dupont")
    del data["statement"]["rows"][0]["movements"]["passed_through"]
    with pytest.raises(ValidationError, match="client row's movements"):
        parse_payload("statement.issued", data)


def test_attachment_name_is_safe() -> None:
    """statement-<kind>-<id>-<period>.pdf, anything outside [A-Za-z0-9_.-] replaced."""
    assert _event("client", "cli-dupont").attachment_name == "statement-client-cli-dupont-2025-03.pdf"
    assert statement_filename("client", 'a"b/c:d', "2025-03") == "statement-client-a_b_c_d-2025-03.pdf"


# rendering -------------------------------------------------------------------------------


def test_client_statement_in_french_lists_each_commission_on_its_invoices() -> None:
    """The client's French e-mail: month, closed, each commission (introducer, rate, amount, donation), rebates, void, link."""
    subject, text = _render("client", "cli-dupont", "fr")
    assert subject == "Votre relevé de mars 2025 : commissions, marges et ristournes"
    for needle in (
        "Bonjour Name of cli-dupont,",
        "Voici votre relevé de mars 2025. Le mois a été clôturé le 2 avril 2025 : ces chiffres ne changeront plus.",
        "Commissions sur vos factures (2) :",
        "  Facture 2025-031 du 10 mars 2025 (conseiller ou conseillère : adv-luc)\n"
        "    Apport          : Marie Dupont (intro-m)\n"
        f"    Taux            : 10{NBSP}% de {chf('2’400.00')} (HT)\n"
        f"    Commission      : {chf('240.00')}\n"
        "    Versée à        : Marie Dupont\n",
        "  Facture 2025-032 du 12 mars 2025 (conseiller ou conseillère : adv-eva)\n"
        "    Apport          : Carl Berger (intro-c)\n"
        f"    Taux            : 10{NBSP}% de {chf('1’500.00')} (HT)\n"
        f"    Commission      : {chf('150.00')}\n"
        "    Versée à        : la coopérative, à qui Carl Berger en fait don\n",
        f"  Total des commissions : {chf('390.00')}",
        f"  - Achat pu-1 chez sup-laptops, revendu le 5 mars 2025 : coût {chf('2’000.00')}, "
        f"revendu {chf('2’080.00')}, marge {chf('80.00')}",
        f"  - Ristourne rb-1 de sup-laptops du 28 mars 2025 (achat pu-1) : {chf('40.00')}",
        f"  - Reversement pt-1 du 30 mars 2025 : {chf('60.00')}",
        f"  - vc-1 du 15 mars 2025 : {chf('30.00')} reçus par adv-luc de sup-laptops "
        "(commission sur la vente des portables)",
        "Ce que la coopérative vous doit, en CHF :\n"
        "                    ouverture  ajustements  mouvements     clôture\n"
        f"  dû                 {chf('0.00')}     {chf('0.00')}  {chf('120.00')}  {chf('120.00')}\n"
        f"  déjà reversé       {chf('0.00')}     {chf('0.00')}   {chf('60.00')}   {chf('60.00')}\n"
        f"  reste à reverser   {chf('0.00')}     {chf('0.00')}   {chf('60.00')}   {chf('60.00')}\n",
        "  - le paiement pay-2 : annulation void-pay-2 du 29 mars 2025, motif : paiement d'un autre "
        "client (demandée par tre-ana, approuvée par tre-luc)",
        "Votre relevé complet est joint en PDF (statement-client-cli-dupont-2025-03.pdf) et se consulte en ligne :\n"
        + CLOSE.of("client", "cli-dupont").data["html_url"]
        + "\nCe lien est valable jusqu'au 2 mai 2025 à 14:00 (fuseau Europe/Zurich).",
        "Référence : 19:statement.issued:client/cli-dupont/2025-03",
    ):
        assert needle in text, needle
    assert "\n\n\n" not in text


def test_client_statement_in_english() -> None:
    """The same statement in English, with the donation and the disclosure worded."""
    subject, text = _render("client", "cli-dupont", "en")
    assert subject == "Your statement for March 2025: commissions, margins and rebates"
    for needle in (
        "Here is your statement for March 2025. The month was closed on 2 April 2025: these figures will not change.",
        "    Introduced by   : Carl Berger (intro-c)\n    Rate            : 10% of CHF\u00a01’500.00 (net)",
        "    Paid to         : the cooperative, as a donation from Carl Berger",
        "Vendor commissions disclosed (1)",
        "  still owed      CHF\u00a00.00     CHF\u00a00.00   CHF\u00a060.00   CHF\u00a060.00",
        "  - payment pay-2: void void-pay-2 of 29 March 2025, reason: paiement d'un autre client",
        "This link is valid until 2 May 2025 at 14:00 (Europe/Zurich time).",
    ):
        assert needle in text, needle


@pytest.mark.parametrize("language", ["fr", "en"])
def test_introducer_statement_has_figures_commissions_payouts_and_voids(language: str) -> None:
    """int-marie's statement: her figures table, her commission line, the payout received, the voided payout."""
    subject, text = _render("introducer", "int-marie", language)
    fr = language == "fr"
    assert subject == (
        "Votre relevé de commissions de mars 2025" if fr else "Your commission statement for March 2025"
    )
    table = (
        "                  ouverture  ajustements  mouvements     clôture\n"
        f"  acquis           {chf('0.00')}     {chf('0.00')}  {chf('240.00')}  {chf('240.00')}\n"
        f"  exigible         {chf('0.00')}     {chf('0.00')}  {chf('240.00')}  {chf('240.00')}\n"
        f"  déjà versé       {chf('0.00')}     {chf('0.00')}  {chf('200.00')}  {chf('200.00')}\n"
        f"  reste à verser   {chf('0.00')}     {chf('0.00')}   {chf('40.00')}   {chf('40.00')}\n"
        if fr
        else "                opening  adjustments   movements     closing\n"
        f"  accrued      {chf('0.00')}     {chf('0.00')}  {chf('240.00')}  {chf('240.00')}\n"
    )
    assert table in text
    line = (
        f"    {chf('240.00')}, soit 10{NBSP}% de {chf('2’400.00')} (apport standard : 10 % la première année, "
        f"5 % la deuxième, année 1), dont {chf('240.00')} exigible"
        if fr
        else f"    {chf('240.00')}, 10% of {chf('2’400.00')} (standard introduction: 10% the first year, "
        f"5% the second, year 1), of which {chf('240.00')} payable"
    )
    assert line in text
    assert (
        f"  - Versement po-1 du 25 mars 2025 par adv-luc : {chf('200.00')}"
        if fr
        else f"  - Payout po-1 of 25 March 2025 from adv-luc: {chf('200.00')}"
    ) in text
    assert "versement saisi deux fois" in text and "void-po-2" in text


@pytest.mark.parametrize("language", ["fr", "en"])
def test_donor_statement_thanks_for_the_donation(language: str) -> None:
    """int-carl (cannot take money) sees his commission donated, is thanked, and has no figures table."""
    _, text = _render("introducer", "int-carl", language)
    if language == "fr":
        assert f"donnée à la coopérative\n  Total : {chf('150.00')}" in text
        assert f"Merci : vous avez donné à la coopérative {chf('150.00')} ce mois-ci." in text
        assert "ouverture" not in text
    else:
        assert f"donated to the cooperative\n  Total: {chf('150.00')}" in text
        assert f"Thank you: you gave the cooperative {chf('150.00')} this month." in text


@pytest.mark.parametrize("language", ["fr", "en"])
def test_adviser_statement_lists_commissions_on_its_invoices_and_its_payouts(language: str) -> None:
    """adv-luc: the commission on his invoice, to whom, his payout and its total, the void."""
    subject, text = _render("adviser", "adv-luc", language)
    if language == "fr":
        assert subject == "Relevé de mars 2025 : commissions d'apport sur vos factures"
        for needle in (
            "  - Facture 2025-031 du 10 mars 2025, client cli-dupont, apport intro-m de Marie Dupont\n"
            f"    {chf('240.00')}, soit 10{NBSP}% de {chf('2’400.00')}, dont {chf('240.00')} exigible",
            f"  - Versement po-1 du 25 mars 2025 à Marie Dupont : {chf('200.00')}\n  Total versé : {chf('200.00')}",
            "annulation void-po-2 du 27 mars 2025, motif : versement saisi deux fois",
        ):
            assert needle in text, needle
    else:
        assert subject == "Statement for March 2025: introduction commissions on your invoices"
        assert f"  - Payout po-1 of 25 March 2025 to Marie Dupont: {chf('200.00')}" in text
        assert f"  Total paid out: {chf('200.00')}" in text


@pytest.mark.parametrize(("kind", "party_id"), PARTIES)
@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_closing_figure_and_commission_amount_is_in_the_text(
    kind: str, party_id: str, language: str
) -> None:
    """Every figure of every row and every commission amount, formatted, is in the text, with the month and link."""
    view = CLOSE.views[(kind, party_id)]
    _, text = _render(kind, party_id, language)  # type: ignore[arg-type]
    for row in view["rows"]:
        for which in ("opening", "adjustments", "movements", "closing"):
            for value in row[which].values():
                assert format_money(Decimal(value), row["currency"], language) in text  # type: ignore[arg-type]
    for line in view["commissions"]:
        assert format_money(Decimal(line["amount"]), line["currency"], language) in text  # type: ignore[arg-type]
        assert line["invoice_id"] in text
    assert ("mars 2025" if language == "fr" else "March 2025") in text
    assert CLOSE.of(kind, party_id).data["html_url"] in text
    assert len([v for v in MONTH_VOIDS.get((kind, party_id), [])]) == text.count("void-")


def test_a_webhook_statement_says_the_pdf_is_online_not_attached() -> None:
    """The webhook carries no PDF: its text points to the page (and its PDF) instead."""
    _, text = _render("client", "cli-dupont", "fr", attached=False)
    assert "joint en PDF" not in text and "Votre relevé complet se consulte en ligne (page et PDF) :" in text


def test_prior_period_adjustments_are_explained() -> None:
    """A row with adjustments (late facts, voids after the previous close) says what they are."""
    data = _with("introducer", "int-marie")
    row = data["statement"]["rows"][0]
    row["adjustments"] = {"accrued": "-10.00", "payable": "0.00", "paid": "0.00", "outstanding": "0.00"}
    payload = parse_payload("statement.issued", data)
    assert isinstance(payload, StatementIssued)
    text = RENDERER.render_statement(payload, _party("introducer", "int-marie", "fr"), "x").text
    assert f"  acquis           {chf('0.00')}   {chf('-10.00')}  {chf('240.00')}" in text
    assert "Ajustements : faits arrivés en retard pour des mois déjà clôturés" in text
    assert "Ajustements :" not in _render("introducer", "int-marie", "fr")[1]


def test_a_month_without_commission_says_so() -> None:
    """A client with only rebates that month is told no commission was paid on its invoices."""
    data = _with("client", "cli-dupont", statement__commissions=[], statement__commission_totals=[])
    payload = parse_payload("statement.issued", data)
    assert isinstance(payload, StatementIssued)
    text = RENDERER.render_statement(payload, _party("client", "cli-dupont", "fr"), "x").text
    assert "Aucune commission n'a été versée sur vos factures de ce mois." in text


def test_link_expiry_is_written_in_the_configured_time_zone() -> None:
    """The link's expiry (UTC in the event) is written in NOTIFIER_TIMEZONE."""
    event = _event("client", "cli-dupont")
    party = _party("client", "cli-dupont", "en")
    text = Renderer(zone=ZoneInfo("America/New_York")).render_statement(event, party, "x").text
    assert "valid until 2 May 2025 at 08:00 (America/New_York time)" in text


def test_text_table_aligns_amount_columns() -> None:
    """Layout only: first column left, amounts right, two spaces apart, header first."""
    assert text_table(["", "a", "bb"], [["x", "1.00", "10.00"], ["long name", "100.00", "1.00"]]) == (
        "                  a     bb\n  x            1.00  10.00\n  long name  100.00   1.00"
    )


# the PDF link guard and the webhook keys ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://ledger.coop.example/statements/client/c.pdf?period=2025-03&sig=x", True),
        ("https://ledger.coop.example:443/statements/client/c.pdf", True),
        ("http://ledger.coop.example/statements/client/c.pdf", False),  # another scheme
        ("https://ledger.coop.example:8443/statements/client/c.pdf", False),  # another port
        ("https://evil.example/statements/client/c.pdf", False),
        ("https://ledger.coop.example.evil.example/statements/c.pdf", False),
        ("https://user:pw@ledger.coop.example/statements/c.pdf", False),
        ("https://ledger.coop.example/admin/c.pdf", False),  # outside the base path
        ("https://ledger.coop.example/statements/../admin", False),
        ("https://ledger.coop.example/statements/%2e%2e/admin", False),
        ("https://ledger.coop.example/statements/c.pdf#x", False),
        ("https://ledger.coop.example/statements/c .pdf", False),
    ],
)
def test_a_pdf_is_fetched_only_under_the_ledgers_base(url: str, allowed: bool) -> None:
    """NOTIFIER_LEDGER_URL is the one base PDFs are fetched from: same scheme, host, port, path."""
    assert (link_problem(url, "https://ledger.coop.example/statements") is None) is allowed


@pytest.mark.parametrize(
    ("url", "public", "internal", "fetched"),
    [
        (
            "https://coop.example/ledger/statements/client/c.pdf?period=2025-03&sig=ab",
            "https://coop.example/ledger",
            "http://ledger:8080",
            "http://ledger:8080/statements/client/c.pdf?period=2025-03&sig=ab",
        ),
        (
            "http://127.0.0.1:8080/statements/client/c.pdf?sig=1",
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/statements/client/c.pdf?sig=1",
        ),
        (
            "https://coop.example/statements/adviser/a.pdf?x=1",
            "https://coop.example/",
            "http://ledger.internal:9000/base/",
            "http://ledger.internal:9000/base/statements/adviser/a.pdf?x=1",
        ),
    ],
)
def test_a_public_link_is_fetched_at_the_same_path_inside(
    url: str, public: str, internal: str, fetched: str
) -> None:
    """A link under NOTIFIER_LEDGER_PUBLIC_URL is fetched at its path and query under NOTIFIER_LEDGER_URL."""
    assert link_problem(url, public) is None
    assert fetch_url(url, public, internal) == fetched


def test_the_ledger_base_url_is_checked() -> None:
    """The base is an http(s) URL with a host, no credentials, query or fragment."""
    assert base_problem("http://127.0.0.1:8080") is None
    for bad in ("ftp://ledger", "https://", "https://u:p@ledger", "https://ledger/?q=1", "ledger:8080"):
        assert base_problem(bad) is not None, bad


def test_each_party_kind_has_its_own_webhook_key() -> None:
    """An introducer's webhook key is unchanged; a client and an adviser of the same id get other keys."""
    assert party_secret("m", "introducer", "x-1") == introducer_secret("m", "x-1")
    keys = {party_secret("m", kind, "x-1") for kind in ("introducer", "client", "adviser")}
    assert len(keys) == 3


# ingest: the directory, waiting, never a digest ---------------------------------------------------


@pytest.mark.asyncio
async def test_a_statement_waits_for_its_partys_registration(tmp_path: Path) -> None:
    """A client's statement waits for its registration, is then sent on both channels once; re-registering changes nothing."""
    rig = make_rig(tmp_path / "n.sqlite3")
    statement = CLOSE.of("client", "cli-dupont")
    await rig.feed([statement])
    assert rig.email.sent == [] and rig.store.counts()["waiting_events"] == 1
    assert rig.store.statement_backlog().waiting == {"client": 1}
    reg = registration(
        "client", "cli-dupont", email_addr="compta@dupont.example", webhook_url="https://dupont.example/h"
    )
    await rig.feed([reg])
    assert [(d.key.alert_id, d.party.key) for d in rig.email.sent + rig.webhook.sent] == [
        (statement.id, "client/cli-dupont"),
        (statement.id, "client/cli-dupont"),
    ]
    assert rig.observer.counts["statement_sent:client:email"] == 1
    again = reg.model_copy(
        update={"id": "99:client.registered:cli-dupont", "data": {**reg.data, "email": "x@y.z"}}
    )
    await rig.feed([again, statement, reg])
    assert len(rig.email.sent) == 1 and rig.store.party("client/cli-dupont").email == "compta@dupont.example"  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_an_introducers_directory_entry_does_not_register_a_client_of_the_same_id(
    tmp_path: Path,
) -> None:
    """Keys are per kind: an introducer and a client sharing an id are two parties."""
    rig = make_rig(tmp_path / "n.sqlite3")
    await rig.feed([registration("introducer", "x-1", email_addr="i@example.org")])
    client_statement = ledger_event(
        "statement.issued",
        "19:statement.issued:client/x-1/2025-03",
        _with("client", "cli-dupont", party_id="x-1", statement__party_id="x-1"),
        19,
    )
    await rig.feed([client_statement])
    assert rig.email.sent == [] and rig.store.counts()["waiting_events"] == 1


@pytest.mark.asyncio
async def test_statements_are_never_digested(tmp_path: Path) -> None:
    """With daily digests for everyone, a statement is still sent at once, alone."""
    rig = make_rig(tmp_path / "n.sqlite3", digest_mode="daily")
    marie = derived_envelopes(month_lines()[:1])  # int-marie's registration (e-mail)
    await rig.feed([*marie, CLOSE.of("introducer", "int-marie")])
    assert [d.key.alert_id for d in rig.email.sent] == [CLOSE.of("introducer", "int-marie").id]
    assert rig.store.counts().get("queued", 0) == 0


@pytest.mark.asyncio
async def test_a_malformed_statement_is_recorded_invalid_and_alerts_nobody(tmp_path: Path) -> None:
    """A statement the notifier cannot rely on is recorded invalid, not sent, not retried."""
    rig = make_rig(tmp_path / "n.sqlite3")
    await rig.feed([registration("client", "cli-dupont", email_addr="c@example.org")])
    bad = CLOSE.of("client", "cli-dupont")
    bad = LedgerEnvelope.model_validate(
        {**bad.model_dump(), "data": {**bad.data, "statement": {**bad.data["statement"], "status": "open"}}}
    )
    await rig.feed([bad])
    assert rig.email.sent == [] and rig.observer.counts["event:invalid"] == 1
    assert rig.store.event(bad.id).state == "invalid"  # type: ignore[union-attr]
