"""sd_notify: tell systemd we are READY, our STATUS, WATCHDOG pings, STOPPING, RELOADING.

The datagram protocol on $NOTIFY_SOCKET (a path, or an abstract socket starting with '@');
every call is a no-op when the variable is unset, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address: str | None = ("\0" + addr[1:] if addr.startswith("@") else addr) or None
        self._sock: socket.socket | None = None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        ok = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_interval: float | None = int(usec) / 2e6 if ok else None  # ping at half the timeout

    def send(self, *fields: str) -> bool:
        if self.address is None:
            return False
        if self._sock is None:
            # Non-blocking: a datagram socket whose reader lags (its queue holds 10 messages by
            # default) would otherwise stall the daemon's event loop in sendto. A dropped STATUS or
            # WATCHDOG is superseded by the next one.
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError:
            return False  # systemd gone or socket removed: never fatal for the daemon

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        monotonic_usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)
        return self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
