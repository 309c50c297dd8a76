"""The writer's heartbeat: a small JSON file in the data directory, rewritten by the writer
as it works and while it idles, read by the web app and fplane-admin to tell whether a
writer is alive and what it has done.

Written by temporary file + rename, so a reader never sees half of one; not fsynced,
because a heartbeat lost in a crash is stale anyway, which is what it should then say.
"""

import json
import os
import secrets
from pathlib import Path

FILENAME = "writer.heartbeat"


def heartbeat_path(data_dir: Path) -> Path:
    return Path(data_dir) / FILENAME


def write_heartbeat(data_dir: Path, fields: dict) -> None:
    target = heartbeat_path(data_dir)
    temporary = target.with_name(f".{FILENAME}.{secrets.token_hex(4)}")
    try:
        temporary.write_text(json.dumps(fields, indent=1) + "\n", "utf-8")
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)   # a full disk must not fill up with half beats
        raise


def read_heartbeat(data_dir: Path) -> dict | None:
    """The last heartbeat, or None when no writer has ever beaten (or it is unreadable)."""
    try:
        fields = json.loads(heartbeat_path(data_dir).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return fields if isinstance(fields, dict) else None
