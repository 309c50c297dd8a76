"""config.ini, read once at the edge into a frozen object with typed values and absolute paths.

The web app, the writer and the admin tool share one file. Every problem (a missing file,
section or key, a value of the wrong kind, an unknown key) raises ConfigError with one line
naming the file, the section and the key, so a bad deployment stops at start-up with a
message an operator can act on instead of failing on the first request.
"""

import configparser
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wsgi import fplane

STORE_FILENAME = "fplane.sqlite"


class ConfigError(Exception):
    """config.ini cannot be used; str() is one line naming the file, section and key."""


@dataclass(frozen=True)
class Config:
    path: Path
    # [General]
    log: Path | None  # None: log to standard error
    loglevel: int
    station_list: Path
    data_dir: Path
    spool_dir: Path
    # [Server]
    max_body: int
    cors_origins: tuple[str, ...]
    # [Site]
    timezone: ZoneInfo
    static_rows_file: Path | None
    static_rows: tuple[fplane.Row, ...]
    # [Update]
    max_age: int
    max_future: int
    # [Writer]
    writer_sleep: float
    max_attempts: int
    # [Notify]
    smtp_host: str
    smtp_port: int
    sender: str
    recipients: tuple[str, ...]

    @property
    def store_path(self) -> Path:
        return self.data_dir / STORE_FILENAME


@dataclass(frozen=True)
class Setting:
    """One key of config.ini: where it is, its default (None: required), the Config field
    it fills, how its text is read (a _Reader method), and a note for /sys/config."""
    section: str
    key: str
    default: str | None
    field: str
    read: str
    note: str = ""


# Every key, once: load_config, the unknown-key check and /sys/config all come from here.
# An unknown key in one of these sections is an error: a typo ("datadir") must not
# silently fall back to a default.
SETTINGS = (
    Setting("General", "log", "", "log", "optional_path"),
    Setting("General", "loglevel", "INFO", "loglevel", "loglevel"),
    Setting("General", "station_list", None, "station_list", "path"),
    Setting("General", "data_dir", None, "data_dir", "path"),
    Setting("General", "spool_dir", None, "spool_dir", "path"),
    Setting("Server", "max_body", "1048576", "max_body", "positive_int", "bytes"),
    Setting("Server", "cors_origins", "", "cors_origins", "words"),
    Setting("Site", "timezone", "America/Chicago", "timezone", "timezone"),
    Setting("Site", "static_rows", "", "static_rows_file", "optional_path"),
    Setting("Update", "max_age", "21600", "max_age", "positive_int", "seconds"),
    Setting("Update", "max_future", "600", "max_future", "whole_seconds", "seconds"),
    Setting("Writer", "sleep", "5", "writer_sleep", "sleep_seconds", "seconds"),
    Setting("Writer", "max_attempts", "3", "max_attempts", "positive_int"),
    Setting("Notify", "smtp_host", "", "smtp_host", "text"),
    Setting("Notify", "smtp_port", "25", "smtp_port", "port"),
    Setting("Notify", "sender", "fplaneserver@localhost", "sender", "text"),
    Setting("Notify", "recipients", "", "recipients", "words"),
)
SECTIONS = tuple(dict.fromkeys(s.section for s in SETTINGS))


def default(section: str, key: str) -> str | None:
    """The value config.ini falls back to for [section] key (None: the key is required)."""
    return next(s.default for s in SETTINGS if (s.section, s.key) == (section, key))


def load_config(path) -> Config:
    path = Path(path).absolute()
    parser = configparser.ConfigParser(interpolation=None)
    try:
        # read_file, not read(): read() silently skips a file it cannot open.
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file: {err.strerror}") from None
    except (configparser.Error, UnicodeDecodeError) as err:
        one_line = " ".join(str(err).split())
        raise ConfigError(f"{path}: not a valid ini file: {one_line}") from None

    reader = _Reader(path, _checked_values(parser, path))
    fields = {s.field: getattr(reader, s.read)(s.section, s.key) for s in SETTINGS}
    return Config(path=path, static_rows=reader.static_rows("Site", "static_rows",
                                                            fields["static_rows_file"]), **fields)


def _checked_values(parser, path) -> dict[str, dict[str, str]]:
    """Section -> key -> stripped text, defaults filled in; raises for missing or unknown keys."""
    unknown_sections = sorted(set(parser.sections()) - set(SECTIONS))
    if unknown_sections:
        # A misspelt section ("[Writter]") would otherwise silently fall back to defaults.
        raise ConfigError(f"{path}: [{unknown_sections[0]}]: unknown section "
                          f"(known: {', '.join(SECTIONS)})")
    values = {}
    for section in SECTIONS:
        keys = {s.key: s.default for s in SETTINGS if s.section == section}
        given = dict(parser.items(section)) if parser.has_section(section) else None
        if given is None and any(default is None for default in keys.values()):
            raise ConfigError(f"{path}: section [{section}] is missing")
        given = given or {}
        unknown = sorted(set(given) - set(keys))
        if unknown:
            raise ConfigError(
                f"{path}: [{section}] {unknown[0]}: unknown key (known: {', '.join(keys)})"
            )
        section_values = {}
        for key, default in keys.items():
            value = given.get(key, default)
            value = value.strip() if value is not None else None
            if not value and default is None:
                raise ConfigError(f"{path}: [{section}] {key} is missing or empty")
            section_values[key] = value
        values[section] = section_values
    return values


class _Reader:
    """Typed accessors that name the file, section and key in every error."""

    def __init__(self, path: Path, values):
        self._path = path
        self._values = values

    def _fail(self, section, key, why):
        value = self._values[section][key]
        raise ConfigError(f"{self._path}: [{section}] {key} = {value!r}: {why}")

    def path(self, section, key) -> Path:
        # Relative paths are relative to the config file, not to whatever directory
        # uWSGI or cron happened to start in.
        return (self._path.parent / self._values[section][key]).resolve()

    def optional_path(self, section, key) -> Path | None:
        return self.path(section, key) if self._values[section][key] else None

    def number(self, section, key, kind, minimum, maximum=None):
        text = self._values[section][key]
        try:
            value = kind(text)
        except ValueError:
            self._fail(section, key, f"not {'a whole number' if kind is int else 'a number'}")
        if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" + (f" and at most {maximum}" if maximum is not None else "")
            self._fail(section, key, f"must be {bounds}")
        return value

    def positive_int(self, section, key) -> int:
        return self.number(section, key, int, minimum=1)

    def whole_seconds(self, section, key) -> int:
        return self.number(section, key, int, minimum=0)

    def sleep_seconds(self, section, key) -> float:
        return self.number(section, key, float, minimum=0.01)

    def port(self, section, key) -> int:
        return self.number(section, key, int, minimum=1, maximum=65535)

    def text(self, section, key) -> str:
        return self._values[section][key]

    def words(self, section, key) -> tuple[str, ...]:
        return tuple(self._values[section][key].replace(",", " ").split())

    def loglevel(self, section, key) -> int:
        level = logging.getLevelName(self._values[section][key].upper())
        if not isinstance(level, int):
            self._fail(section, key, "not a log level (DEBUG, INFO, WARNING, ERROR)")
        return level

    def timezone(self, section, key) -> ZoneInfo:
        try:
            return ZoneInfo(self._values[section][key])
        except (ZoneInfoNotFoundError, ValueError):
            self._fail(section, key, "not an IANA time zone name (e.g. America/Chicago)")

    def static_rows(self, section, key, path: Path | None) -> tuple[fplane.Row, ...]:
        """The rows of the file [section] key names (read as optional_path)."""
        if path is None:
            return (fplane.REFERENCE_ROW,)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            self._fail(section, key, f"cannot read it: {getattr(err, 'strerror', None) or err}")
        rows, problems = fplane.parse_static_rows(text)
        if problems:
            self._fail(section, key, problems[0])
        return rows
