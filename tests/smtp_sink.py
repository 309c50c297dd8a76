"""A real SMTP server on loopback for tests, stdlib only: code under test talks SMTP over a
socket exactly as it would to a relay, and the test reads what arrived.

    with SmtpSink(refuse={"nobody@example.org"}) as sink:
        ...  # send to 127.0.0.1:sink.port
        [received] = sink.wait_for(1)
        received.message["Subject"], received.message.get_content()

It speaks the plain SMTP a client needs (no extensions, no TLS, no AUTH) and accepts
every message, except that RCPT TO for an address in ``refuse`` gets 550.
"""

import email
import email.policy
import re
import socketserver
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage

HOST = "127.0.0.1"
_ADDRESS = re.compile(rb"\s*<([^>]*)>")  # the <path> after FROM: / TO:, parameters ignored


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]  # the accepted recipients only
    message: EmailMessage  # parsed with email.policy.default; line ends are "\n"


class SmtpSink:
    """Listens on 127.0.0.1 (``.port``) from construction until close(); thread-safe."""

    def __init__(self, refuse: Iterable[str] = ()):
        self.refused = frozenset(address.lower() for address in refuse)
        self._received: list[Received] = []
        self._changed = threading.Condition()
        self._server = _Server((HOST, 0), _Session, sink=self)
        # A short poll interval: close() waits for serve_forever to notice the shutdown.
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def messages(self) -> list[Received]:
        """What has arrived so far, oldest first (a copy)."""
        with self._changed:
            return list(self._received)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        """All messages once at least ``n`` have arrived; AssertionError after ``timeout`` s."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._received) >= n, timeout):
                raise AssertionError(f"{len(self._received)} message(s) arrived within "
                                     f"{timeout} s, expected {n}")
            return list(self._received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> "SmtpSink":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _add(self, received: Received) -> None:
        with self._changed:
            self._received.append(received)
            self._changed.notify_all()


class _Server(socketserver.ThreadingTCPServer):
    # Session threads must not keep close() or the test process waiting on a client that
    # never hangs up.
    daemon_threads = True

    def __init__(self, address, handler, sink: SmtpSink):
        self.sink = sink
        super().__init__(address, handler)


class _Session(socketserver.StreamRequestHandler):
    """One client connection: a loop of command -> reply until QUIT or hang-up."""

    timeout = 10  # seconds a silent client may hold its thread

    def handle(self) -> None:
        sink: SmtpSink = self.server.sink
        self._reply("220 smtp-sink ready")
        mail_from: str | None = None
        rcpt_tos: list[str] = []
        while line := self.rfile.readline():
            verb, _, argument = line.rstrip(b"\r\n").partition(b" ")
            verb = verb.upper()
            if verb == b"EHLO":
                self._reply("250-smtp-sink", "250 HELP")
            elif verb == b"HELO":
                self._reply("250 smtp-sink")
            elif verb == b"MAIL":
                address = _address(argument, b"FROM:")
                if address is None:
                    self._reply("501 syntax: MAIL FROM:<address>")
                else:
                    mail_from, rcpt_tos = address, []
                    self._reply("250 OK")
            elif verb == b"RCPT":
                address = _address(argument, b"TO:")
                if mail_from is None:
                    self._reply("503 MAIL FROM first")
                elif address is None:
                    self._reply("501 syntax: RCPT TO:<address>")
                elif address.lower() in sink.refused:
                    self._reply(f"550 <{address}>: recipient refused")
                else:
                    rcpt_tos.append(address)
                    self._reply("250 OK")
            elif verb == b"DATA":
                if not rcpt_tos:
                    self._reply("503 RCPT TO first")
                    continue
                self._reply("354 end data with <CR><LF>.<CR><LF>")
                data = self._read_data()
                if data is None:
                    return  # hung up mid-message: nothing was delivered
                message = email.message_from_bytes(data, policy=email.policy.default)
                sink._add(Received(mail_from, tuple(rcpt_tos), message))
                mail_from, rcpt_tos = None, []
                self._reply("250 OK")
            elif verb == b"RSET":
                mail_from, rcpt_tos = None, []
                self._reply("250 OK")
            elif verb == b"NOOP":
                self._reply("250 OK")
            elif verb == b"QUIT":
                self._reply("221 bye")
                return
            else:
                self._reply("502 command not implemented")

    def _read_data(self) -> bytes | None:
        """The message up to the lone "." line, dot-unstuffed, "\\n" line ends; None on hang-up."""
        lines = []
        while line := self.rfile.readline():
            line = line.rstrip(b"\r\n")
            if line == b".":
                return b"".join(part + b"\n" for part in lines)
            # The client doubled every leading dot so a line "." cannot end the data early.
            lines.append(line[1:] if line.startswith(b".") else line)
        return None

    def _reply(self, *lines: str) -> None:
        self.wfile.write("".join(line + "\r\n" for line in lines).encode("utf-8"))


def _address(argument: bytes, keyword: bytes) -> str | None:
    """The address in "FROM:<a@b> BODY=8BITMIME" (keyword FROM:), or None if malformed."""
    if not argument.upper().startswith(keyword):
        return None
    match = _ADDRESS.match(argument, len(keyword))
    return match.group(1).decode("utf-8", "replace") if match else None
