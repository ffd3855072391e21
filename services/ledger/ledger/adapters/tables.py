"""The report as tables for people (``--format table``)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

__all__ = ["print_report_tables"]


def _table(title: str, columns: list[str], numeric: set[str]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left", show_footer=False)
    for column in columns:
        table.add_column(column, justify="right" if column in numeric else "left", no_wrap=True)
    return table


def _with_totals(title: str, rows: list[dict[str, Any]], columns: list[str], money: list[str]) -> Table:
    numeric = set(money) | {"year", "rate", "months"}
    table = _table(title, columns, numeric)
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
        for column in money:
            totals[row["currency"]][column] += Decimal(row[column])
    if rows and money:
        table.add_section()
        for currency, sums in sorted(totals.items()):
            cells = []
            for i, column in enumerate(columns):
                if column in money:
                    cells.append(f"{sums[column]}")
                elif column == "currency":
                    cells.append(currency)
                else:
                    cells.append("TOTAL" if i == 0 else "")
            table.add_row(*cells, style="bold")
    return table


def print_period_tables(statement: dict[str, Any], console: Console) -> None:
    """A month's statement (rules R9): per row, opening, adjustments, movements, closing."""
    close = statement["close"]
    state = (
        f"closed on {close['date']} by {close['closed_by']}, approved by {close['approved_by']} "
        f"(log position {close['position']})"
        if close
        else f"provisional, at log position {statement['head']['position']}"
    )
    console.print(f"[bold]Statement of {statement['period']}[/bold]: {state}")
    for title, rows, who, names in (
        (
            "Commissions per beneficiary",
            statement["balances"],
            "beneficiary_id",
            ("accrued", "payable", "paid", "outstanding"),
        ),
        (
            "Owed back per client",
            statement["rebates"],
            "client_id",
            ("owed", "passed_through", "outstanding"),
        ),
    ):
        columns = [who, "currency", "figure", "opening", "adjustments", "movements", "closing"]
        table = _table(title, columns, {"opening", "adjustments", "movements", "closing"})
        for row in rows:
            for n, name in enumerate(names):
                table.add_row(
                    row[who] if n == 0 else "",
                    row["currency"] if n == 0 else "",
                    name,
                    *(row[part][name] for part in ("opening", "adjustments", "movements", "closing")),
                    end_section=n == len(names) - 1,
                )
        console.print(table if rows else f"{title}: nothing this month.")


def print_report_tables(report: dict[str, Any], console: Console) -> None:
    """Render every section of ``report`` with aligned columns and per-currency totals."""
    head = report["head"]
    console.print(
        f"Commission ledger report  as of {report['as_of'] or 'all dates'}  "
        f"(facts: {head['position']}, head {head['hash'][:16]}…)"
    )
    intro = _table(
        "Introductions",
        [
            "introduction_id",
            "introducer_id",
            "client_id",
            "adviser_id",
            "date",
            "charter_rule",
            "rule",
            "schedule",
            "below_minimum",
        ],
        set(),
    )
    for i in report["introductions"]:
        schedule = ", ".join(
            f"{s['rate']}×{s['months']}m" + (f" [{s['start']}..{s['end']})" if s["start"] else "")
            for s in i["schedule"]
        ) or (f"none (recommended {i['recommended_rate']})" if i["recommended_rate"] else "none")
        intro.add_row(
            i["introduction_id"],
            i["introducer_id"],
            i["client_id"],
            i["adviser_id"],
            i["date"],
            i["charter_rule"],
            i["rule"],
            schedule,
            "yes" if i["below_minimum"] else "",
        )
    console.print(intro)
    console.print(
        _with_totals(
            "Commissions",
            report["commissions"],
            [
                "invoice_id",
                "introduction_id",
                "beneficiary_id",
                "rule",
                "year",
                "rate",
                "base",
                "amount",
                "payable",
                "currency",
            ],
            ["base", "amount", "payable"],
        )
    )
    console.print(
        _with_totals(
            "Balances",
            report["balances"],
            ["beneficiary_id", "currency", "accrued", "payable", "paid", "outstanding"],
            ["accrued", "payable", "paid", "outstanding"],
        )
    )
    console.print(
        _with_totals("Donations", report["donations"], ["donor_id", "currency", "amount"], ["amount"])
    )
    console.print(
        _with_totals(
            "Rebates and margins owed to clients",
            report["rebates"],
            ["client_id", "currency", "margins", "rebate_shares", "owed", "passed_through", "outstanding"],
            ["margins", "rebate_shares", "owed", "passed_through", "outstanding"],
        )
    )
    trial = _table("Trial balance", ["currency", "debits", "credits", "balanced"], {"debits", "credits"})
    for currency, sums in report["trial_balance"].items():
        trial.add_row(
            currency, sums["debits"], sums["credits"], "yes" if sums["debits"] == sums["credits"] else "NO"
        )
    console.print(trial)
    if report.get("voids"):
        voids = _table(
            "Voids (facts taken back, counted nowhere)",
            ["void_id", "target", "date", "reason", "requested_by", "approved_by", "applied"],
            set(),
        )
        for v in report["voids"]:
            voids.add_row(
                v["void_id"],
                f"{v['target_type']} {v['target_id']}",
                v["date"],
                v["reason"],
                v["requested_by"],
                v["approved_by"],
                "yes" if v["applied"] else "not yet (target unknown)",
            )
        console.print(voids)
    if report["anomalies"]:
        anomalies = _table("Anomalies (kept, not counted)", ["kind", "fact_id", "message"], set())
        for a in report["anomalies"]:
            anomalies.add_row(a["kind"], a["fact_id"], a["message"])
        console.print(anomalies)
    if report["rejected"]:
        rejected = _table("Rejected lines", ["line", "id", "reason", "message"], {"line"})
        for r in report["rejected"]:
            rejected.add_row(str(r["line"]), r["id"] or "", r["reason"], r["message"])
        console.print(rejected)
