"""Operator email (writer/notify.py) against a real SMTP server on loopback (tests/smtp_sink.py).

What an operator sees: the message in their mailbox, or, when it cannot be sent, a log
record with the subject and body. notify() never raises.
"""
import logging
import socket
import time
from email.utils import parsedate_to_datetime

import pytest

from tests.smtp_sink import HOST, SmtpSink
from tests.support import free_port, write_config
from wsgi.config import load_config
from writer.notify import Notifier

SENDER = "fplane@example.org"
OPS = "ops@example.org"
NIGHT = "night@example.org"


class Records(logging.Handler):
    """Keeps what was logged: the writer's logger is not in the logging tree, so no caplog."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def records() -> Records:
    return Records()


@pytest.fixture
def log(records) -> logging.Logger:
    logger = logging.Logger("fplaneserver.writer", level=logging.DEBUG)
    logger.addHandler(records)
    return logger


@pytest.fixture
def sink():
    with SmtpSink(refuse={"nobody@example.org"}) as sink:
        yield sink


def notifier(tmp_path, log, port: int, *, host: str = HOST, sender: str = SENDER,
             recipients: str = f"{OPS} {NIGHT}", timeout: float = 2.0) -> Notifier:
    """A Notifier built from a real config.ini, as the writer builds it."""
    path = write_config(tmp_path, Notify={"smtp_host": host, "smtp_port": port,
                                          "sender": sender, "recipients": recipients})
    return Notifier(load_config(path), log, timeout=timeout)


def test_the_message_reaches_every_recipient(tmp_path, log, records, sink):
    sent = notifier(tmp_path, log, sink.port).notify("new hardware in 3 seats", "IFUSLOT 021\n")

    assert sent is True
    [received] = sink.wait_for(1)
    assert received.mail_from == SENDER
    assert received.rcpt_tos == (OPS, NIGHT)
    message = received.message
    assert message["From"] == SENDER
    assert message["To"] == f"{OPS}, {NIGHT}"
    assert message["Subject"] == "[fplaneserver] new hardware in 3 seats"
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == "IFUSLOT 021\n"
    assert parsedate_to_datetime(message["Date"]).utcoffset() is None  # UTC, "-0000"
    assert message["Message-ID"].endswith("@fplaneserver>")
    assert records.at(logging.INFO) == ["notified 2 recipient(s): new hardware in 3 seats"]
    assert records.at(logging.WARNING) == records.at(logging.ERROR) == []


@pytest.mark.parametrize("body", [
    "Zürich ü, Ångström, 東京\n",
    "a lone dot below must not end the message\n.\n..two dots\n.one dot\n",
    "a long line " + "x" * 300 + "\n",
], ids=["non-ascii", "leading-dots", "long-line"])
def test_the_body_arrives_exactly_as_written(tmp_path, log, sink, body):
    assert notifier(tmp_path, log, sink.port).notify("body check", body) is True

    [received] = sink.wait_for(1)
    assert received.message.get_content() == body


def test_a_line_break_in_the_subject_cannot_add_headers(tmp_path, log, sink):
    sent = notifier(tmp_path, log, sink.port).notify("held\nBcc: someone@example.com", "body\n")

    assert sent is True
    [received] = sink.wait_for(1)
    assert received.message["Subject"] == "[fplaneserver] held Bcc: someone@example.com"
    assert received.message["Bcc"] is None
    assert received.rcpt_tos == (OPS, NIGHT)


@pytest.mark.parametrize("host, recipients", [("", f"{OPS} {NIGHT}"), (HOST, "")],
                         ids=["no-smtp-host", "no-recipients"])
def test_without_smtp_or_recipients_the_notification_is_only_logged(
        tmp_path, log, records, sink, host, recipients):
    sent = notifier(tmp_path, log, sink.port, host=host, recipients=recipients).notify(
        "version 12 committed", "first line\nsecond line\n")

    assert sent is False
    assert records.at(logging.WARNING) == [
        "notification (no SMTP configured): version 12 committed\nfirst line\nsecond line\n"]
    assert sink.messages == []


def test_a_server_that_is_down_is_logged_with_the_body_not_raised(tmp_path, log, records):
    port = free_port()  # nothing listens there
    started = time.monotonic()

    sent = notifier(tmp_path, log, port, timeout=0.5).notify("update held for review", "seat 021\n")

    assert sent is False
    assert time.monotonic() - started < 1
    [error] = records.at(logging.ERROR)
    assert error.startswith(f"notification not sent ({HOST}:{port}: ")
    assert error.endswith("): update held for review\nseat 021\n")
    assert records.at(logging.INFO) == []


def test_a_server_that_never_answers_times_out(tmp_path, log, records):
    # Connections complete in the kernel's backlog, but no greeting ever comes.
    with socket.create_server((HOST, 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()

        sent = notifier(tmp_path, log, port, timeout=0.2).notify("update held", "seat 021\n")

        assert sent is False
        assert time.monotonic() - started < 1
    [error] = records.at(logging.ERROR)
    assert error.startswith(f"notification not sent ({HOST}:{port}: ")
    assert error.endswith("timed out): update held\nseat 021\n")


def test_a_refused_recipient_is_logged_and_the_others_still_get_it(tmp_path, log, records, sink):
    sent = notifier(tmp_path, log, sink.port, recipients=f"nobody@example.org {OPS}").notify(
        "version 12 committed", "body\n")

    assert sent is True
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == (OPS,)
    assert received.message["To"] == f"nobody@example.org, {OPS}"
    assert records.at(logging.WARNING) == [
        "notification refused for nobody@example.org (550 <nobody@example.org>: recipient refused):"
        " version 12 committed"]
    assert records.at(logging.INFO) == ["notified 1 recipient(s): version 12 committed"]


def test_all_recipients_refused_is_logged_with_the_body(tmp_path, log, records, sink):
    sent = notifier(tmp_path, log, sink.port, recipients="nobody@example.org").notify(
        "version 12 committed", "body\n")

    assert sent is False
    assert records.at(logging.ERROR) == [
        f"notification not sent ({HOST}:{sink.port}: all recipients refused: nobody@example.org"
        " (550 <nobody@example.org>: recipient refused)): version 12 committed\nbody\n"]
    assert sink.messages == []


def test_a_sender_that_cannot_be_a_header_is_logged_not_raised(tmp_path, log, records, sink):
    # config.ini allows continuation lines, so [Notify] sender can hold a line break.
    sent = notifier(tmp_path, log, sink.port, sender="fplane@example.org\n  more").notify(
        "version 12 committed", "body\n")

    assert sent is False
    [error] = records.at(logging.ERROR)
    assert error.startswith("notification not sent (bad message header: ")
    assert error.endswith("): version 12 committed\nbody\n")
    assert sink.messages == []
