"""Warnings as plain lines: one line each in the run's log, never a Python source line.

Library code calls :func:`warn`.  A run (``asc_keras.orchestration.run.run``, the ablation, the width
search) routes those warnings -- and every Python ``warnings.warn`` raised while it runs, by us or
by the libraries under us -- to its log as ``WARNING: <message>`` with :func:`warnings_to`.
Outside a run, :func:`warn` prints the message alone on stderr (logging's last resort).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

LOGGER = logging.getLogger("asc_keras")


def warn(message: str) -> None:
    """Report something the user should know that does not stop the work."""
    LOGGER.warning(message)


class _LineHandler(logging.Handler):
    def __init__(self, log: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        self._log(f"WARNING: {record.getMessage()}")


@contextmanager
def warnings_to(log: Callable[[str], None]) -> Iterator[None]:
    """While active, every warning (ours and Python's) reaches ``log`` as one plain line."""
    handler = _LineHandler(log)
    LOGGER.addHandler(handler)
    propagate, LOGGER.propagate = LOGGER.propagate, False
    with warnings.catch_warnings():

        def show(message, category, filename, lineno, file=None, line=None):
            log(f"WARNING: {category.__name__}: {message}")

        warnings.showwarning = show
        try:
            yield
        finally:
            LOGGER.removeHandler(handler)
            LOGGER.propagate = propagate
