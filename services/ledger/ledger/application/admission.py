"""Admission: deployment rules a fact must pass to be taken in, beyond the contract.

The contract (``contract.py``, the published schemas) says what a well-formed fact is; an
operator's policy may refuse some well-formed facts where they are recorded. The only rule
today: a party's ``webhook_url`` (introducer, client, adviser) must not point into the
internal network (loopback, private, link-local and metadata addresses, internal names;
see ``coop_runtime.netguard``)
unless the deployment's allow-list names it. The policy applies when facts are taken in
(``ledger serve``, ``ingest``, ``report --events``, with the same settings), never when the
stored log is read back or audited: what was accepted stays accepted.
"""

from __future__ import annotations

from collections.abc import Callable

from coop_runtime.netguard import NO_ALLOW, AllowList, url_problem
from ledger.application.contract import Rejection
from ledger.domain.facts import Fact

__all__ = ["Admission", "admit_everything", "webhook_admission"]

#: Returns the rejection of a well-formed fact, or None to take it in.
Admission = Callable[[Fact], Rejection | None]


def admit_everything(fact: Fact) -> Rejection | None:
    return None


def webhook_admission(allow: AllowList = NO_ALLOW) -> Admission:
    """Refuse webhook URLs into the internal network unless ``allow`` names them."""

    def admit(fact: Fact) -> Rejection | None:
        url = getattr(fact, "webhook_url", None)
        if not isinstance(url, str):
            return None
        problem = url_problem(url, allow=allow, allow_http=False)
        if problem is None:
            return None
        return Rejection(
            "invalid_value",
            f"webhook_url refused: {problem} (LEDGER_WEBHOOK_ALLOW_HOSTS can allow a host deliberately)",
        )

    return admit
