"""The station list: who may post, with which roles, and how a password is checked
(contract sections 5 and 7).

``station_list.csv`` holds one station a line::

    station_id,name,roles,password_hash
    tcs,Telescope control system,config,scrypt$16384$8$1$<salt b64>$<hash b64>
    astrometry,Astrometry pipeline,config;positions,scrypt$16384$8$1$...

Roles are among ``config`` and ``positions``, separated by ``;``. Blank lines and lines
starting with ``#`` are ignored. Passwords are random (``fplane-admin add-station`` and
``passwd`` make them) and stored only as salted scrypt hashes; the hash names its own
parameters so they can be raised later without touching existing lines.

The web app keeps one StationList per worker. It re-reads the file when it changes (an
``os.stat`` per check), so ``add-station`` and ``passwd`` take effect without restarting
workers. A line that cannot be used is skipped and named in ``problems``, never fatal:
one bad hand edit must not lock out every other station.
"""

import base64
import binascii
import csv
import hashlib
import hmac
import io
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from wsgi import codes
from wsgi.files import write_atomically
from wsgi.responses import CodedError

HEADER = ("station_id", "name", "roles", "password_hash")
HEADER_LINE = ",".join(HEADER) + "\n"
ROLES = frozenset({"config", "positions"})
STATION_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
STATION_ID_RULE = "1 to 64 letters, digits, '_', '.' or '-'"

# Parameters for new hashes: ~16 MiB and some tens of ms per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN, SALT_BYTES = 2**14, 8, 1, 32, 16
# What a hash read from the file may ask for. A tampered or mistyped line must not make
# each check take minutes or gigabytes: n*r*p bounds the work (at most 128 times the
# default, about a second), 128*n*r*p the memory (256 MiB).
MAX_N, MAX_R, MAX_P, MAX_WORK = 2**20, 32, 16, 2**21
MAX_PASSWORD_BYTES = 1024  # longer ones are refused before hashing (no DoS by huge input)
_SMALL_NUMBER = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class Station:
    station_id: str
    name: str
    roles: frozenset[str]
    password_hash: str


# -- passwords ---------------------------------------------------------------------------

def new_password() -> str:
    return secrets.token_urlsafe(24)  # 192 random bits, 32 characters, shell- and URL-safe


def hash_password(password: str) -> str:
    """``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(_password_bytes(password), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN)
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     _b64(salt), _b64(digest)))


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; never raises (a bad hash never matches)."""
    try:
        secret = _password_bytes(password)
        n, r, p, salt, expected = _parse_hash(encoded)
        actual = _scrypt(secret, salt, n, r, p, len(expected))
    except (ValueError, TypeError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


def hash_problem(encoded: str) -> str | None:
    """Why ``encoded`` is not a usable password hash, or None when it is."""
    try:
        _parse_hash(encoded)
    except ValueError as err:
        return str(err)
    return None


def _password_bytes(password: str) -> bytes:
    if not isinstance(password, str):
        raise TypeError("a password is text")
    secret = password.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
    if len(secret) > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password is at most {MAX_PASSWORD_BYTES} bytes")
    return secret


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    if not isinstance(encoded, str):
        raise ValueError("not a password hash")
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not a password hash of the form scrypt$N$r$p$salt$hash")
    if not all(_SMALL_NUMBER.fullmatch(part) for part in parts[1:4]):
        raise ValueError("not a password hash of the form scrypt$N$r$p$salt$hash")
    n, r, p = (int(part) for part in parts[1:4])
    try:
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("not a password hash of the form scrypt$N$r$p$salt$hash") from None
    if (n < 2 or n > MAX_N or n & (n - 1) or not 1 <= r <= MAX_R or not 1 <= p <= MAX_P
            or n * r * p > MAX_WORK):
        raise ValueError(f"scrypt parameters N={n} r={r} p={p} are out of bounds "
                         f"(N a power of 2 up to {MAX_N}, N*r*p up to {MAX_WORK})")
    if not 8 <= len(salt) <= 64 or not 16 <= len(digest) <= 64:
        raise ValueError("password hash salt or digest has an implausible length")
    return n, r, p, salt, digest


def _scrypt(secret: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL refuses more than maxmem (default 32 MiB); allow what the bounded parameters need.
    maxmem = 128 * r * (n + p + 2) + 2**20
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- the file ----------------------------------------------------------------------------

def parse_roles(text: str) -> frozenset[str]:
    """``config``, ``config;positions`` or ``config,positions`` -> the set; ValueError if unknown."""
    words = [w.strip().lower() for w in re.split(r"[;,]", text or "")]
    roles = frozenset(w for w in words if w)
    unknown = sorted(roles - ROLES)
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r} (roles: {', '.join(sorted(ROLES))})")
    return roles


def format_roles(roles) -> str:
    return ";".join(sorted(roles))


def valid_station_id(station_id) -> bool:
    return isinstance(station_id, str) and STATION_ID.fullmatch(station_id) is not None


def _fields(line: str) -> list[str] | None:
    """The stripped CSV fields of one line, or None for a blank or comment line."""
    text = line.rstrip("\r\n")
    if not text.strip() or text.lstrip().startswith("#"):
        return None
    # Line by line, not one csv.reader over the file: an unbalanced quote on one line must
    # not swallow the lines after it, and problems name the right line number.
    try:
        return [field.strip() for field in next(csv.reader([text]))]
    except csv.Error:
        return [text]  # reported as a wrong column count


def parse_station_list(text: str) -> tuple[dict[str, Station], list[str]]:
    """(station_id -> Station, problems); unusable lines are skipped and named in problems."""
    stations: dict[str, Station] = {}
    first_line: dict[str, int] = {}
    problems: list[str] = []
    seen_content = False
    for number, line in enumerate(text.splitlines(), 1):
        fields = _fields(line)
        if fields is None:
            continue
        if not seen_content:
            seen_content = True
            if [f.lower() for f in fields] == list(HEADER):
                continue
            problems.append(f"line {number}: expected the header {','.join(HEADER)}")
        if len(fields) != len(HEADER):
            problems.append(f"line {number}: {len(fields)} columns instead of {len(HEADER)} "
                            f"({','.join(HEADER)}); skipped")
            continue
        station_id, name, roles_text, password_hash = fields
        if not valid_station_id(station_id):
            problems.append(f"line {number}: station id {station_id[:70]!r} is not "
                            f"{STATION_ID_RULE}; skipped")
            continue
        if station_id in first_line:
            problems.append(f"line {number}: station {station_id!r} is already on line "
                            f"{first_line[station_id]}; skipped")
            continue
        first_line[station_id] = number
        try:
            roles = parse_roles(roles_text)
        except ValueError as err:
            problems.append(f"line {number}: station {station_id!r}: {err}; skipped")
            continue
        why = hash_problem(password_hash)
        if why is not None:
            problems.append(f"line {number}: station {station_id!r}: password_hash is {why}; "
                            f"skipped (fplane-admin passwd {station_id} sets a new one)")
            continue
        stations[station_id] = Station(station_id, name, roles, password_hash)
    return stations, problems


class StationList:
    """The stations of ``path``, re-read whenever the file changes.

    ``warn`` (e.g. a logger's ``warning``) is called with each problem of each load,
    a missing or unreadable file included; ``problems`` keeps those of the last load.
    """

    def __init__(self, path, warn=None):
        self.path = Path(path)
        self._warn = warn
        self._lock = threading.Lock()
        self._signature = object()  # matches no stat: the first look loads the file
        self._stations: dict[str, Station] = {}
        self.problems: list[str] = []

    def get(self, station_id: str) -> Station | None:
        self._refresh()
        return self._stations.get(station_id)

    def stations(self) -> list[Station]:
        self._refresh()
        return sorted(self._stations.values(), key=lambda s: s.station_id)

    def authenticate(self, station_id: str, password: str, role: str) -> Station:
        """The station, or CodedError 206 (unknown), 203 (wrong password), 204 (lacks
        ``role``), checked in that order. Messages never contain the password."""
        if not valid_station_id(station_id):
            raise CodedError(codes.UNKNOWN_STATION,
                             f"station unknown: a station id is {STATION_ID_RULE}")
        station = self.get(station_id)
        if station is None:
            raise CodedError(codes.UNKNOWN_STATION,
                             f"station unknown: {station_id!r} is not in the station list "
                             f"(fplane-admin add-station adds it)")
        # scrypt on every check, on purpose: a wrong guess costs what a right one does.
        if not verify_password(password, station.password_hash):
            raise CodedError(codes.WRONG_PASSWORD,
                             f"wrong password for station {station_id!r} "
                             f"(fplane-admin passwd {station_id} sets a new one)")
        if role not in station.roles:
            has = f"its roles: {format_roles(station.roles)}" if station.roles else "it has no roles"
            raise CodedError(codes.NOT_ALLOWED,
                             f"station {station_id!r} is not allowed to post {role} ({has})")
        return station

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            signature = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError as err:
            signature = ("unreadable", err.errno)
        if signature == self._signature:
            return
        with self._lock:
            if signature != self._signature:
                self._load(signature)

    def _load(self, signature) -> None:
        try:
            with open(self.path, "rb") as f:
                # The signature of what is read, taken before reading: a write during the
                # read changes the file's stat again, so the next look reloads.
                st = os.fstat(f.fileno())
                signature = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                data = f.read()
            text = data.decode("utf-8-sig")
        except OSError as err:
            # (``signature`` stays what _refresh saw: a directory or a file without read
            # permission is stat-able, and must not be re-read and warned about per request.)
            stations = {}
            problems = [f"{self.path}: cannot read the station list ({err.strerror}); "
                        f"every station is unknown"]
        except UnicodeDecodeError as err:
            stations = {}
            problems = [f"{self.path}: not UTF-8 text (byte {err.start}); every station is unknown"]
        else:
            stations, problems = parse_station_list(text)
            problems = [f"{self.path}: {problem}" for problem in problems]
        self._stations = stations
        self.problems = problems
        self._signature = signature
        if self._warn is not None:
            for problem in problems:
                self._warn(problem)


# -- changing the file (fplane-admin) ----------------------------------------------------

def add_station(path, station_id: str, name: str, roles) -> str:
    """Append a station with a new random password; returns the password (stored hashed only).

    ``roles`` is text (``config;positions``) or a collection of role names. Other lines
    of the file stay as they are. ValueError says why a station cannot be added."""
    path = Path(path)
    if not valid_station_id(station_id):
        raise ValueError(f"station id {station_id[:70]!r} is not {STATION_ID_RULE}")
    name = _checked_name(name)
    roles = parse_roles(roles) if isinstance(roles, str) else parse_roles(";".join(roles))
    if not roles:
        raise ValueError(f"give at least one role ({', '.join(sorted(ROLES))})")
    text = _read_for_change(path, missing_ok=True)
    lines = _station_lines(text, station_id)
    if lines:
        raise ValueError(f"station {station_id!r} is already in {path} (line {lines[0][0] + 1}); "
                         f"fplane-admin passwd {station_id} sets a new password")
    if not text.strip():
        text = HEADER_LINE
    elif not text.endswith("\n"):
        text += "\n"
    password = new_password()
    text += _csv_line([station_id, name, format_roles(roles), hash_password(password)])
    write_atomically(path, text.encode("utf-8"), mode=0o600)
    return password


def set_password(path, station_id: str) -> str:
    """Give a station a new random password; returns it. Other lines stay as they are."""
    path = Path(path)
    if not valid_station_id(station_id):
        raise ValueError(f"station id {station_id[:70]!r} is not {STATION_ID_RULE}")
    text = _read_for_change(path, missing_ok=False)
    lines = _station_lines(text, station_id)
    if not lines:
        raise ValueError(f"station {station_id!r} is not in {path} (fplane-admin add-station)")
    if len(lines) > 1:
        numbers = " and ".join(str(index + 1) for index, _ in lines)
        raise ValueError(f"station {station_id!r} is on lines {numbers} of {path}; "
                         f"remove the extra line by hand first")
    [(index, fields)] = lines
    if len(fields) != len(HEADER):
        raise ValueError(f"line {index + 1} of {path} has {len(fields)} columns instead of "
                         f"{len(HEADER)}; fix it by hand first")
    password = new_password()
    all_lines = text.splitlines(keepends=True)
    ending = "\r\n" if all_lines[index].endswith("\r\n") else "\n"
    all_lines[index] = _csv_line([*fields[:3], hash_password(password)]).replace("\n", ending)
    write_atomically(path, "".join(all_lines).encode("utf-8"), mode=0o600)
    return password


def _checked_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValueError("give the station a name (--name)")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError("a station name is one line of text (no control characters)")
    if len(name) > 200:
        raise ValueError("a station name is at most 200 characters")
    return name


def _read_for_change(path: Path, missing_ok: bool) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        if missing_ok:
            return ""
        raise ValueError(f"{path}: no station list (fplane-admin init makes one)") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read the station list ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}); fix it by hand") from None


def _station_lines(text: str, station_id: str) -> list[tuple[int, list[str]]]:
    """(index, fields) of every line whose first column is ``station_id``."""
    found = []
    for index, line in enumerate(text.splitlines()):
        fields = _fields(line)
        if fields and fields[0] == station_id and [f.lower() for f in fields] != list(HEADER):
            found.append((index, fields))
    return found


def _csv_line(fields) -> str:
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(fields)
    return line.getvalue()
