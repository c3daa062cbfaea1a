"""Putting the probe in place, and reading what it wrote, whatever state it ended in.

The probe is six files (the script, its zygote, its children, its tasks, its
codec, the harnesses it shares with the judge); ``install_probe`` copies them side by side into the
scratch folder where the learner's module goes.

The probe writes one JSON line per finished call. A probe that was killed
(time, memory) or whose learner code wrote into the judge's channel still
leaves every line it finished; this module turns its output into the response
the judge reads: the header, the replies by call number, and how it ended.
Only lines that carry the request's key count (the probe's harness writes it
on every line; learner code never has it in reach without introspection). A
line without it, a call answered twice, or a reply the harness itself marked
``tampered`` means the channel was written to on the harness's behalf: those
calls get no reply and the response lists them (the judge fails them and holds
the submission for review). Garbage of any shape (a line nested 200,000 deep,
bytes that are not JSON) is counted, never raised.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

PROBE_SCRIPT = Path(__file__).with_name("probe.py")
PROBE_FILES = ("probe.py", "probe_zygote.py", "probe_children.py", "probe_tasks.py", "probe_codec.py",
               "probe_harness.py")


def install_probe(folder: Path) -> Path:
    """Copy the probe and its helpers into ``folder`` (the sandbox's scratch); return the script's path there."""
    for name in PROBE_FILES:
        shutil.copyfile(PROBE_SCRIPT.with_name(name), folder / name)
    return folder / "probe.py"


def read_probe_output(stdout: bytes, returncode: int | None, timed_out: bool, stderr: bytes = b"",
                      key: str | None = None) -> dict[str, Any]:
    """The response dict for ``grade_submission`` from a finished (or killed) probe's output.

    With ``key`` (the one sent in the request), lines that do not carry it are forged and counted in
    ``forged``; without it (older callers, the judge's unit tests) every well-formed line counts.
    """
    header: dict[str, Any] | None = None
    replies: dict[int, dict[str, Any]] = {}
    tampered: set[int] = set()
    forged = 0
    done = False
    for raw in stdout.splitlines():
        try:
            line = json.loads(raw)
        except (ValueError, RecursionError):
            forged += key is not None and bool(raw.strip())
            continue
        if not isinstance(line, dict):
            forged += key is not None
            continue
        if key is not None and line.get("key") != key:
            forged += 1
            continue
        if line.get("tampered") is True and isinstance(line.get("i"), int):
            tampered.add(line["i"])
        if "probe" in line and header is None:
            header = line
        elif line.get("done") is True:
            done = True
        elif isinstance(line.get("i"), int):
            i = line["i"]
            if i in replies:
                tampered.add(i)
            replies[i] = line
    for i in tampered:
        replies[i] = {"i": i, "error": {"type": "Tampered", "where": None, "message":
                                         "the probe's output channel was written to from your code"}}
    if done:
        ended = "ok"
    elif timed_out:
        ended = "the probe ran out of time"
    else:
        ended = f"the probe stopped (exit status {returncode})"
    tail = stderr.decode("utf-8", "replace")[-2000:]
    return {"header": header, "replies": replies, "ended": ended, "tampered": sorted(tampered), "forged": forged,
            "stderr": tail}
