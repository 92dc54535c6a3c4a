"""Caps that keep hostile input from exhausting memory or disk. Checked before allocating."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_rows: int = 8192
    max_columns: int = 8192
    max_frames: int = 20_000
    max_pixel_bytes: int = 4 * 1024**3  # decoded pixel bytes of one instance
    max_file_bytes: int = 8 * 1024**3
    # a deflated data set (transfer syntax 1.2.840.10008.1.2.1.99) may not inflate beyond this
    max_inflated_bytes: int = 4 * 1024**3 + 64 * 1024**2
    # zip archives
    max_zip_entries: int = 200_000
    max_zip_total_bytes: int = 64 * 1024**3  # declared uncompressed total
    max_zip_entry_bytes: int = 4 * 1024**3
    max_zip_ratio: float = 200.0  # uncompressed / compressed, for entries above 1 MiB
    max_zip_depth: int = 0  # nested archives are skipped with a reason


DEFAULT_LIMITS = Limits()
