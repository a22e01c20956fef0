"""The Trainer keywords of a benchmark's CPU run: one device, no logger, no progress bar.

Kept in one place so every script measures the same configuration (scripts that vary the device,
the precision or the strategy spell their keywords out instead).
"""

from __future__ import annotations

from typing import Any

QUIET_CPU: dict[str, Any] = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False}
