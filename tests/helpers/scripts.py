"""Reading a child script's output without ever blocking the test."""
from __future__ import annotations

import json
import subprocess
import threading
import time


class Output:
    """Collects stdout and stderr lines of a Popen in background threads."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._pump, args=(proc.stdout, self.out), daemon=True),
                         threading.Thread(target=self._pump, args=(proc.stderr, self.err), daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, stream, sink):
        for raw in stream:
            with self._cond:
                sink.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pred, timeout: float = 20.0) -> str:
        """First stdout line for which pred(line) is true."""
        if isinstance(pred, str):
            prefix = pred
            pred = lambda line: line.startswith(prefix)  # noqa: E731
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.out:
                    if pred(line):
                        return line
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
                    raise AssertionError(f"script exited (rc={self.proc.returncode}) before the "
                                         f"expected line; stdout={self.out[-20:]} stderr:\n"
                                         f"{self.stderr()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected line not seen within {timeout}s; "
                                         f"stdout={self.out[-20:]} stderr:\n{self.stderr()}")
                self._cond.wait(min(left, 0.2))

    def wait_json(self, field: str, timeout: float = 20.0) -> dict:
        """First stdout line that is a JSON object containing ``field``."""
        def pred(line):
            try:
                obj = json.loads(line)
            except ValueError:
                return False
            return isinstance(obj, dict) and field in obj
        return json.loads(self.wait_line(pred, timeout))

    def wait_exit(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"script did not exit within {timeout}s; stdout={self.out[-20:]}"
                                 f" stderr:\n{self.stderr()}")
        for t in self._threads:
            t.join(5)
        return rc

    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.err)[-6000:]
