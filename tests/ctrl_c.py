"""A user's Ctrl-C in the middle of a cluster run, for the stop-and-resume tests."""
import os
import signal

import downpour.ps.recorder as recorder_module


def ctrl_c_after_push(monkeypatch, n):
    """A Ctrl-C (SIGINT, as a user's) right after the driver recorded its ``n``-th push: the runner holds it until
    the event ends and takes it at its next safe point, which checkpoints. Returns the real ``Recorder.on_push``, to
    put back."""
    on_push = recorder_module.Recorder.on_push

    def stopping(self, push, record):
        on_push(self, push, record)
        if self.pushes == n:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(recorder_module.Recorder, "on_push", stopping)
    return on_push
