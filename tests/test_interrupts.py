"""A Ctrl-C that Python drops (raised inside a ``__del__``) still stops the sweep."""

from __future__ import annotations

import os
import signal

import pytest

from hpo import interrupts


class InterruptedWhileCollected:
    """Ctrl-C arrives while this object is collected: Python ignores the KeyboardInterrupt."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_python_drops_is_raised_at_the_next_check():
    with interrupts.delivered():
        interrupts.check()  # nothing pending
        collected = InterruptedWhileCollected()
        del collected  # "Exception ignored in ...": the KeyboardInterrupt is gone
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    interrupts.check()  # forgotten once the sweep is over
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
