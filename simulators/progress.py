"""Live progress line of a simulation run (rich), or nothing when disabled."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table


class ProgressView:
    """Shows elapsed time, status messages, publishes acknowledged, achieved rate, active faults."""

    def __init__(self, enabled: bool, devices: int, console: Console | None = None) -> None:
        self.enabled = enabled
        self.devices = devices
        self._live = Live(console=console or Console(stderr=True), refresh_per_second=4) if enabled else None

    def update(
        self, elapsed_s: float, device_s: float, statuses: int, sent: int, acked: int, faults_active: int
    ) -> None:
        """Redraw: ``statuses`` status messages so far, ``sent`` / ``acked`` all publishes (with online)."""
        if self._live is None:
            return
        t = Table(box=None, show_header=True, header_style="bold")
        for col in ("elapsed", "device time", "devices", "status msgs", "msg/s", "acked", "faults"):
            t.add_column(col, justify="right")
        rate = statuses / elapsed_s if elapsed_s > 0 else 0.0
        t.add_row(
            f"{elapsed_s:7.1f} s", f"{device_s:9.1f} s", str(self.devices), str(statuses), f"{rate:9.1f}",
            f"{acked}/{sent}", str(faults_active),
        )  # fmt: skip
        self._live.update(t, refresh=False)

    def __enter__(self) -> ProgressView:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
