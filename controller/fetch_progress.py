"""Progress of a download: a rich bar on a terminal, else a log line every ``LOG_EVERY_BYTES``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

LOG_EVERY_BYTES = 10 * 2**20


@contextlib.contextmanager
def download_progress(label: str = "downloading") -> Iterator[Callable[[int], None]]:
    """Yields ``on_bytes(bytes_so_far)``."""
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TransferSpeedColumn

        with Progress(
            SpinnerColumn(), TextColumn(label), DownloadColumn(), TransferSpeedColumn(), console=console
        ) as progress:
            task = progress.add_task(label, total=None)
            yield lambda n: progress.update(task, completed=n)
        return
    logged = 0

    def log_line(n: int) -> None:
        nonlocal logged
        if n - logged >= LOG_EVERY_BYTES:
            logged = n - n % LOG_EVERY_BYTES
            print(f"{label}: {n / 2**20:.0f} MiB", file=sys.stderr, flush=True)

    yield log_line
