"""The webhook body: a CloudEvent (structured JSON) carrying the rendered alert and the
ledger event(s) it is about. The body is the same at every attempt; its ``id`` is the
alert id (the ledger event id, or the digest id), so a receiver can drop copies."""

from __future__ import annotations

import orjson

from notifier.application.ports import Delivery

__all__ = ["ALERT_TYPE", "webhook_body"]

ALERT_TYPE = "coop.notifier.alert.v1"


def webhook_body(delivery: Delivery) -> bytes:
    """The exact bytes POSTed (and signed). ``data`` says who (``party_kind``, ``party_id``,
    and ``introducer_id`` for an introducer, as before other parties were told anything)."""
    party = delivery.party
    who: dict[str, str] = {"party_kind": party.kind, "party_id": party.party_id}
    if party.kind == "introducer":
        who["introducer_id"] = party.party_id
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": delivery.key.alert_id,
            "source": "coop-notifier",
            "type": ALERT_TYPE,
            "subject": str(delivery.about.get("kind", "")),
            "datacontenttype": "application/json",
            "data": {
                **who,
                "language": delivery.rendered.language,
                "subject": delivery.rendered.subject,
                "text": delivery.rendered.text,
                "about": delivery.about,
            },
        },
        option=orjson.OPT_SORT_KEYS,
    )
