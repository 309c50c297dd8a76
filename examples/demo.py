"""Set up var/ with a small demo history, for `make run` and for trying the service out.

    python examples/demo.py --config var/config.ini
    python examples/demo.py status      (a fresh hardware status for update_fplane to post)

Writes var/config.ini (from config.ini.example, paths under var/), runs `fplane-admin init`,
generates a few months of synthetic fplane files and imports them with `fplane-admin
import`, the way an operator would: an initial configuration, IFUs installed, an IFU swap,
a spectrograph replacement, a measured position set, a seat losing its spectrograph.
The ids are made up (seeded, so every run builds the same history). It also adds the
station demo-tcs (roles config and positions), its password in var/demo-tcs.password.

`status` prints, with the time stamp of now, the hardware status a TCS would post after
installing one more IFU: post it with update_fplane (`make run` shows the command).
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wsgi import fplane  # noqa: E402
from wsgi.config import SHIPPED_STATIC_ROWS  # noqa: E402

DEMO_STATION = "demo-tcs"

# (valid_from, what happens, file name); applied in order to a working configuration.
HISTORY = (
    ("20180105", "initial configuration: 30 IFUs", "fplane_20180105.txt"),
    ("20180212", "6 IFUs installed (seats 041-046)", "fplane_20180212.txt"),
    ("20180319", "IFU swap: IFU 073 and IFU 039 exchange seats 021 and 024", "fplane_20180319.txt"),
    ("20180423", "spectrograph 008 replaced by 025 (seat 093)", "fplane_20180423.txt"),
    ("20180611", "seat 046 lost its spectrograph (bundle stays)", "fplane_20180611.txt"),
)
POSITIONS = ("20180507", "astrometry run: measured positions of the active IFUs",
             "positions_20180507.txt")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "var" / "config.ini")
    parser.add_argument("what", nargs="?", choices=("history", "status"), default="history",
                        help="history: set up var/ (default); status: print a fresh status")
    args = parser.parse_args(argv)
    if args.what == "status":
        print(json.dumps(demo_status(), indent=1))
        return 0
    config = args.config.absolute()
    var = config.parent
    var.mkdir(parents=True, exist_ok=True)
    if not config.exists():
        write_config(config)
        print(f"wrote {config}")

    admin = [sys.executable, "-m", "writer.admin", "-c", str(config)]
    run(admin + ["init"])

    demo_dir = var / "demo"
    demo_dir.mkdir(exist_ok=True)
    static_rows = fplane.parse_static_rows(SHIPPED_STATIC_ROWS.read_text())[0]
    for valid_from, comment, name, rows in demo_configurations(static_rows):
        path = demo_dir / name
        path.write_text(fplane.render_fplane(rows, [f"demo configuration: {comment}"], full=True))
        run(admin + ["import", str(path), "--valid-from", valid_from, "--comment", comment])

    valid_from, comment, name = POSITIONS
    measured = measured_positions(rows_at("20180423", static_rows))
    path = demo_dir / name
    path.write_text(fplane.render_fplane(measured, [f"demo: {comment}"], full=False))
    run(admin + ["import", str(path), "--valid-from", valid_from, "--positions", "--comment", comment])
    add_demo_station(admin, var / f"{DEMO_STATION}.password")
    run(admin + ["history"])
    return 0


def add_demo_station(admin, password_file: Path) -> None:
    if password_file.exists():
        return
    result = subprocess.run(admin + ["add-station", DEMO_STATION, "--name", "demo TCS",
                                     "--roles", "config;positions"],
                            cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"demo: add-station {DEMO_STATION} failed: {result.stderr.strip()}")
    # The password is the last line; kept where only this user can read it, like a real one.
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(result.stdout.strip().splitlines()[-1] + "\n")
    print(f"added station {DEMO_STATION}, password in {password_file}")


def demo_status() -> dict:
    """The status after the demo history plus one IFU installed on an empty seat, now."""
    static_rows = fplane.parse_static_rows(SHIPPED_STATIC_ROWS.read_text())[0]
    *_, (_, _, _, rows) = demo_configurations(static_rows)
    listed = {r.ifuslot: (r.specid, r.specslot, r.ifuid) for r in rows
              if r.ifuslot in fplane.VIRUS_SLOTS and (r.specid or r.specslot or r.ifuid)}
    empty_seat = min(s for s in fplane.VIRUS_SLOTS if s not in listed)
    listed[empty_seat] = (330, 260, 84)   # ids no demo configuration uses
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"timestamp": now, "spectrographs": [
        {"ifuslot": f"{seat:03d}", "specid": f"{specid:03d}", "specslot": f"{specslot:03d}",
         "ifuid": f"{ifuid:03d}"} for seat, (specid, specslot, ifuid) in sorted(listed.items())]}


def write_config(config: Path) -> None:
    """config.ini.example with its paths pointed into var/, comments kept."""
    text = (REPO / "config.ini.example").read_text()
    settings = {
        "log": "log/fplaneserver.log",
        "station_list": "station_list.csv",
        "data_dir": "data",
        "spool_dir": "spool",
    }
    for key, value in settings.items():
        text, count = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)
        if count != 1:
            sys.exit(f"demo: config.ini.example has {count} '{key} =' lines, expected 1")
    config.write_text(text)


def demo_configurations(static_rows):
    rng = random.Random(20180105)
    named = (21, 24, 93)  # the seats the later steps talk about
    candidates = [s for s in fplane.VIRUS_SLOTS if s not in range(41, 47) and s not in named]
    first_seats = sorted(rng.sample(candidates, 27) + list(named))
    specids = iter(rng.sample(range(301, 330), 29) + rng.sample(range(9, 60), 20))
    specslots = iter(rng.sample(range(101, 260), 60))
    ifuids = iter(rng.sample([i for i in range(1, 84) if i not in (73, 39)], 60))

    seats = {}
    for slot in first_seats:
        seats[slot] = [next(specids), next(specslots), next(ifuids)]
    seats[21][2], seats[24][2], seats[93][0] = 73, 39, 8

    def snapshot():
        return {slot: tuple(ids) for slot, ids in seats.items()}

    states = [snapshot()]
    for slot in range(41, 47):
        seats[slot] = [next(specids), next(specslots), next(ifuids)]
    states.append(snapshot())
    seats[21][2], seats[24][2] = seats[24][2], seats[21][2]
    states.append(snapshot())
    seats[93][0] = 25
    states.append(snapshot())
    seats[46][0] = 0
    states.append(snapshot())

    for (valid_from, comment, name), state in zip(HISTORY, states):
        yield valid_from, comment, name, configuration_rows(state, static_rows)


def rows_at(valid_from, static_rows):
    for when, _, _, rows in demo_configurations(static_rows):
        if when == valid_from:
            return rows
    raise KeyError(valid_from)


def configuration_rows(state, static_rows):
    rows = list(static_rows)
    for slot in fplane.GRID_SLOTS:
        if slot in fplane.LRS2_SLOTS:
            continue
        x, y = fplane.nominal_position(slot)
        specid, specslot, ifuid = state.get(slot, (0, 0, 0))
        rows.append(fplane.Row(slot, x, y, specid, specslot, ifuid, 0.0, 1.0, active=specid != 0))
    return fplane.canonical_order(rows)


def measured_positions(rows):
    """Offsets of a few tenths of an arcsec, as astrometry finds them."""
    rng = random.Random(20180507)
    return tuple(
        fplane.Row(r.ifuslot, round(r.x + rng.uniform(-0.4, 0.4), 3), round(r.y + rng.uniform(-0.4, 0.4), 3),
                   r.specid, r.specslot, r.ifuid, r.ifurot, r.platesc, r.active)
        if r.active and r.ifuslot in fplane.VIRUS_SLOTS else r
        for r in rows
    )


def run(command) -> None:
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"demo: {' '.join(command[2:])} failed with exit status {result.returncode}")


if __name__ == "__main__":
    sys.exit(main())
