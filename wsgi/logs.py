"""Logging to [General] log: one logger per configuration, not the process-wide root.

Each app, writer or admin instance gets its own logger object (not registered in the
logging module's global tree), so two configurations in one process (tests, a second
app mounted beside the first) never write into each other's files.
"""

import logging
import sys

FORMAT = "%(asctime)s %(process)d %(levelname)s %(message)s"


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
