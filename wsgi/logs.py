"""Logging to [General] log: one logger per configuration, not the process-wide root.

Each app, writer or admin instance gets its own logger object (not registered in the
logging module's global tree), so two configurations in one process (tests, a second
app mounted beside the first) never write into each other's files.

Request lines take a shorter road (RequestLog): one append per request, in the same
format, because the logging module's record objects, caller lookup, formatter and
per-record flush cost more than answering a cached GET.
"""

import logging
import os
import sys
import time


FORMAT = "%(asctime)s %(process)d %(levelname)s %(message)s"


def printable(text: str) -> str:
    """``text`` on one line whatever it holds: control characters (CR, LF, ESC, NUL, ...)
    written as escapes, so text taken from a file or a request never forges or breaks a
    log line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def make_logger(config, role: str) -> logging.Logger:
    logger = logging.Logger(f"fplaneserver.{role}", level=config.loglevel)
    if config.log is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        config.log.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(config.log, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    return logger


# RequestLog remembers the middle of a line ("GET /fplane/20180715?... 100 200") for up to
# this many distinct requests (then it starts afresh), each at most this long: memory
# stays bounded whatever URLs clients send, and a repeated request is formatted once.
DESCRIBED_LIMIT = 1024
DESCRIBED_LENGTH_LIMIT = 512

class RequestLog:
    """Appends one INFO line per request, formatted like make_logger's lines.

    O_APPEND makes each line a single atomic append, so the workers of one service can
    share the file without interleaving, and nothing is buffered to be lost in a crash.
    """

    def __init__(self, config):
        self.enabled = config.loglevel <= logging.INFO
        if config.log is None:
            self._fd = sys.stderr.fileno()
        else:
            config.log.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(config.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._second = None
        self._stamp = ""
        self._described: dict = {}

    def close(self) -> None:
        if self._fd != sys.stderr.fileno():
            os.close(self._fd)

    def request(self, environ, code: int, status: str, seconds: float) -> None:
        """The line of one answered request: client, method, path and query, X-FPlane-Code,
        HTTP status and duration. The middle of a line (method to status, made printable) is
        worked out once per distinct request, the time stamp once a second: formatting them
        was half of what a cached GET cost a worker."""
        if not self.enabled:
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._new_second(second)
        key = (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", ""),
               environ.get("QUERY_STRING"), code, status)
        what = self._described.get(key)
        if what is None:
            what = self._describe(key)
        line = "%s,%03d %d INFO %s %s %.2fms\n" % (self._stamp, (now - second) * 1000, os.getpid(),
                                                  environ.get("REMOTE_ADDR", "-"), what, seconds * 1000)
        os.write(self._fd, line.encode("utf-8", "backslashreplace"))

    def _new_second(self, second: int) -> None:
        self._second = second
        self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))

    def _describe(self, key) -> str:
        method, path, query, code, status = key
        what = printable(f"{method} {path}{'?' if query else ''}{query or ''}") + f" {code} {status[:3]}"
        if len(what) <= DESCRIBED_LENGTH_LIMIT:
            if len(self._described) >= DESCRIBED_LIMIT:
                self._described.clear()
            self._described[key] = what
        return what
