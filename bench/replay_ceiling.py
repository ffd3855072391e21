"""The unavoidable work of replaying a history, for ``bench/report_replay.py`` to compare with.

    .venv/bin/python bench/replay_ceiling.py HISTORY.jsonl

Per line: one read, one JSON parse with pydantic-native validation (``validate_json``: the
CloudEvents envelope's attributes, and ``data`` as an object of JSON values), one canonical
dump (sorted keys) and two SHA-256 hashes (the fact digest and the chain link). No domain
rules, no books, no report: what any replay of the same file must at least do. Prints the
number of facts and the last chain hash (so the work cannot be skipped).
"""

from __future__ import annotations

import hashlib
import struct
import sys
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

_Json = StrictStr | StrictInt | StrictBool | None | list[Any] | dict[str, Any]


class Envelope(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    specversion: Literal["1.0"]
    id: Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,256}$")]
    source: Annotated[str, Field(min_length=1, max_length=1024)]
    type: Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,256}$")]
    time: Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+)$")] | None = None
    datacontenttype: Literal["application/json"] | None = None
    subject: str | None = None
    data: dict[str, _Json]


def main() -> None:
    validate = Envelope.__pydantic_validator__.validate_json
    previous = b"0" * 64
    count = 0
    with open(sys.argv[1], "rb") as lines:
        for line in lines:
            envelope = validate(line)
            body = orjson.dumps(
                envelope.__dict__ | (envelope.__pydantic_extra__ or {}), option=orjson.OPT_SORT_KEYS
            )
            count += 1
            hashlib.sha256(body).hexdigest()
            link = hashlib.sha256(
                struct.pack(">QI", count, 64) + previous + struct.pack(">Q", len(body)) + body
            )
            previous = link.hexdigest().encode()
    print(count, previous.decode())


if __name__ == "__main__":
    main()
