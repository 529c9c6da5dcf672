"""`tfft.child_process`: a run's child process, as `tfft.child_run` starts it, on the terminal's Ctrl-C."""

import pathlib
import signal
import time

import pytest

from tfft import child_process, child_run


def _wait_until(ready, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.05)


def _waits_for_its_config(pid: int) -> bool:
    return "pipe_read" in pathlib.Path(f"/proc/{pid}/wchan").read_text()


def test_a_process_still_loading_tensorflow_leaves_quietly_on_the_terminals_ctrl_c(capfd):
    process = child_run._Process()
    pid = process.child.pid
    try:
        _wait_until(lambda: "libtensorflow" in pathlib.Path(f"/proc/{pid}/maps").read_text())
        assert not _waits_for_its_config(pid)  # still importing
        process.child.send_signal(signal.SIGINT)  # the terminal's Ctrl-C reaches every process of a search
        assert process.child.wait(timeout=30) == child_process.INTERRUPTED
    finally:
        process.discard()
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.slow
def test_a_process_waiting_for_a_config_leaves_quietly_on_the_terminals_ctrl_c(capfd):
    process = child_run._Process()
    try:
        _wait_until(lambda: _waits_for_its_config(process.child.pid))  # importing, then waiting
        process.child.send_signal(signal.SIGINT)
        assert process.child.wait(timeout=30) == child_process.INTERRUPTED
    finally:
        process.discard()
    assert "Traceback" not in capfd.readouterr().err
