"""Operator notifications by email ([Notify] in config.ini), stdlib smtplib only.

Notifications are best-effort. The store is the record of what happened; an email only
tells someone about it. So a commit never waits on, or fails because of, mail: notify()
never raises, and everything it could not deliver (no SMTP configured, server down,
recipients refused) goes to the log with the full body, so nothing is lost.

They are sent by the writer, not the web app: the writer commits outside any request,
so no request waits on SMTP (connecting, a slow relay, a timeout).
"""

import logging
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from wsgi.config import Config

SUBJECT_PREFIX = "[fplaneserver] "


class Notifier:
    """Emails the [Notify] recipients; notify() reports success and never raises."""

    def __init__(self, config: Config, log: logging.Logger, timeout: float = 10.0):
        self._host = config.smtp_host
        self._port = config.smtp_port
        self._sender = config.sender
        self._recipients = config.recipients
        self._log = log
        self._timeout = timeout  # for connecting and for each reply: bounds a stalled server

    def notify(self, subject: str, body: str) -> bool:
        """True if the server accepted the message for at least one recipient."""
        # A Subject header is one line; a line break would also let a caller add headers.
        subject = " ".join(subject.split())
        if not self._host or not self._recipients:
            self._log.warning("notification (no SMTP configured): %s\n%s", subject, body)
            return False
        try:
            refused = self._send(self._message(subject, body))
        except (OSError, smtplib.SMTPException, ValueError) as err:
            # OSError: unreachable or timed out. SMTPException: the server refused (all
            # recipients, the sender, the data) or hung up. ValueError: the email package
            # refused a header, e.g. a line break in [Notify] sender.
            self._log.error("notification not sent (%s): %s\n%s", self._reason(err), subject, body)
            return False
        for address, (code, reply) in sorted(refused.items()):
            self._log.warning("notification refused for %s (%d %s): %s",
                              address, code, _text(reply), subject)
        accepted = len(self._recipients) - len(refused)
        self._log.info("notified %d recipient(s): %s", accepted, subject)
        return True

    def _message(self, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = ", ".join(self._recipients)
        message["Subject"] = SUBJECT_PREFIX + subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="fplaneserver")
        # Quoted-printable keeps the message 7-bit clean, so a relay without 8BITMIME
        # takes non-ASCII text (station names, umlauts) too, and it stays readable.
        message.set_content(body, charset="utf-8", cte="quoted-printable")
        return message

    def _send(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        """Recipients the server refused (address -> code, reply); raises if none accepted."""
        smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        try:
            refused = smtp.send_message(message)
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass  # the message is already accepted: a failed goodbye changes nothing
        finally:
            smtp.close()
        return refused

    def _reason(self, err: Exception) -> str:
        """One line for the log; the server's reply when there is one."""
        if isinstance(err, ValueError):
            return f"bad message header: {err}"
        if isinstance(err, smtplib.SMTPRecipientsRefused):
            detail = "all recipients refused: " + ", ".join(
                f"{address} ({code} {_text(reply)})"
                for address, (code, reply) in sorted(err.recipients.items()))
        elif isinstance(err, smtplib.SMTPResponseException):
            detail = f"{err.smtp_code} {_text(err.smtp_error)}"
        else:
            detail = getattr(err, "strerror", None) or str(err) or type(err).__name__
        return f"{self._host}:{self._port}: {detail}"


def _text(reply: bytes | str) -> str:
    """An SMTP reply as text: smtplib passes the server's bytes, its own errors as str."""
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
