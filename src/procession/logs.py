"""Structured logs: one line per record, JSON or logfmt (``Settings.log_format``), each naming the request
it belongs to.

``REQUEST_ID`` is the request being served (set by ``api.observe``) or the one that started the background
work being done (``engine.tasks``: every task carries the id of the request that added it, ``store.tasks``);
every record is stamped with it when made (the record factory, installed with this module).
A record's ``fields`` (``log.info("...", extra={"fields": {...}})``) are written as keys of their own.

No line holds a secret: what is logged on purpose names no key, password or credential, and a message that
quotes one by accident (a bearer token, a key of this service, ``password=...``) has it masked here.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from contextvars import ContextVar
from typing import Any, TextIO

import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("procession.request_id", default=None)
_make_record = logging.getLogRecordFactory()


def _record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """A record stamped with the request it was written for, whenever and wherever it is formatted."""
    record = _make_record(*args, **kwargs)
    record.request_id = REQUEST_ID.get()
    return record


logging.setLogRecordFactory(_record)

_SECRETS = re.compile(
    r"(?i)(bearer\s+|(?:password|passwd|secret|token|api[_-]?key|authorization|credentials?)[\"']?\s*[:=]\s*[\"']?)"
    r"[^\s\"',;&]+"
    r"|\bprk_[A-Za-z0-9_-]{8,}"  # a key of this service (``teams.KEY_PREFIX``), wherever it appears
)
_PLAIN = re.compile(r"[A-Za-z0-9_.:/@+-]+")


def masked(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``***``."""
    return _SECRETS.sub(lambda m: (m.group(1) or "") + "***", text)


class Structured(logging.Formatter):
    """A record as one line: ``time level logger msg request_id ...fields [exc]``, as JSON or logfmt."""

    def __init__(self, style: str) -> None:
        super().__init__()
        self.logfmt = style == "logfmt"
        self._second, self._text = -1, ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # the same second's text, made once
            self._second, self._text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        line: dict[str, Any] = {
            "time": f"{self._text}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": masked(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exc"] = masked(self.formatException(record.exc_info))
        if not self.logfmt:
            return orjson.dumps(line, default=str).decode()
        return " ".join(f"{k}={_logfmt(v)}" for k, v in line.items())


def _logfmt(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if text and _PLAIN.fullmatch(text) else orjson.dumps(text).decode()


def style_for(setting: str, stream: TextIO) -> str:
    """``json`` or ``logfmt``: as set, or for ``auto`` logfmt on a terminal, JSON otherwise."""
    if setting != "auto":
        return setting
    return "logfmt" if stream.isatty() else "json"


class Buffered(logging.StreamHandler):
    """Lines gathered and written to the stream together: at once for a WARNING or worse, when ``LINES`` are
    waiting, and otherwise by a thread every ``EVERY_S`` (and at exit: ``logging.shutdown`` flushes). A line
    per request written and flushed on its own would be a system call per request."""

    LINES, EVERY_S = 256, 0.2

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.waiting: list[str] = []
        threading.Thread(target=self._flushing, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:  # under the handler's lock (``Handler.handle``)
        try:
            self.waiting.append(self.format(record))
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING or len(self.waiting) >= self.LINES:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self.waiting:
                lines, self.waiting = self.waiting, []
                self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()

    def _flushing(self) -> None:
        while True:
            time.sleep(self.EVERY_S)
            if self.waiting:
                try:
                    self.flush()
                except ValueError:  # the stream was closed (at exit): nothing more to write
                    return


def configure(*, style: str = "auto", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Every record of the process, structured, to ``stream`` (stderr); uvicorn's own logs go the same way."""
    stream = stream or sys.stderr
    handler = Buffered(stream)
    handler.setFormatter(Structured(style_for(style, stream)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # what no line holds is not gathered: the thread, the process, where each call was made (the logging
    # HOWTO's "Optimization")
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


# libraries whose INFO lines are one per call or job: an outbound call's URL (a webhook's may hold a token in
# its path), procrastinate's job lines (the task engine logs its own)
QUIET = ("httpx", "httpcore", "procrastinate", "urllib3")
