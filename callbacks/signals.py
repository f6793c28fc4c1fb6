"""SIGTERM during the SNN evaluation: stop at the next batch, as Lightning's own loops do.

:class:`SigtermFlag` catches the signal while the evaluation runs (also after the trainer's
teardown, where Lightning's handler is gone), :func:`until_sigterm` turns it into
:class:`SIGTERMException` at the next batch (the CLI exits with status 143), and :class:`Repeatable`
does so afresh at every pass over a loader. The conversion callback wraps its loaders in these; the
callback itself holds no signal code.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

__all__ = ["Repeatable", "SigtermFlag", "until_sigterm"]


class SigtermFlag:
    """Catch SIGTERM while the SNN evaluation runs, to stop at the next batch.

    Lightning's own handler is in place while a fit or test runs, but not after the trainer's
    teardown (a fit whose training loop never ran converts in ``on_fit_end``; a direct call to
    :meth:`SNNConversion.evaluate` after ``fit`` returned), where a SIGTERM would otherwise kill the
    process mid-write or be swallowed by another library's handler. The previous handler is called
    too (Lightning's forwards the signal to its DDP workers) and restored afterwards. Main thread only.
    """

    def __init__(self) -> None:
        self.received = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        self.received = True
        if callable(self._previous):
            self._previous(signum, frame)

    def __enter__(self) -> SigtermFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def until_sigterm(trainer: pl.Trainer, batches: Iterable, flag: SigtermFlag | None = None) -> Iterator:
    """``batches``, stopped at the next batch once the process got SIGTERM (Lightning's convention:
    its loops raise :class:`SIGTERMException` too; the CLI turns it into exit status 143)."""
    for batch in batches:
        if getattr(trainer, "received_sigterm", False):
            raise SIGTERMException
        if flag is not None and flag.received:
            # Lightning's handler (gone after the teardown) would pass the signal on to the DDP workers it
            # started; do the same, so that they stop too instead of waiting in a collective
            launcher = getattr(getattr(trainer, "strategy", None), "launcher", None)
            if launcher is not None:
                launcher.kill(signal.SIGTERM)
            raise SIGTERMException
        yield batch


class Repeatable:
    """``until_sigterm`` over ``batches``, afresh at every pass: percentile calibration and the
    light correction read the calibration images more than once."""

    def __init__(self, trainer: pl.Trainer, batches: Iterable, flag: SigtermFlag | None = None) -> None:
        self.trainer, self.batches, self.flag = trainer, batches, flag

    def __iter__(self) -> Iterator:
        return until_sigterm(self.trainer, self.batches, self.flag)
