"""Sticky assignment that moves only the clients it must: each arm owns ranges of the unit interval.

A client id hashes to a point in [0, 1) (``unit_point``, the experiment's salt included so that two experiments
shuffle independently); the arm whose ranges hold the point serves it. Changing the shares keeps every arm's ranges
as far as its new share allows: an arm that shrinks gives up the end of its ranges, an arm that grows takes the freed
pieces. Ramping a challenger from 10% to 20% therefore moves 10% of the clients (the total variation distance
between the splits), not the whole population as re-hashing with the split in the salt does.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import ConfigError

Ranges = tuple[tuple[float, float], ...]
_EPS = 1e-12


def unit_point(salt: str, client_id: str) -> float:
    """Where ``client_id`` lies in [0, 1): the first 8 bytes of SHA-256 of ``salt:client_id``."""
    digest = hashlib.sha256(f"{salt}:{client_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _length(ranges: Ranges) -> float:
    return sum(b - a for a, b in ranges)


def _trim(ranges: Ranges, keep: float) -> tuple[Ranges, Ranges]:
    """The first ``keep`` of ``ranges`` (in order) and the rest."""
    kept: list[tuple[float, float]] = []
    freed: list[tuple[float, float]] = []
    left = keep
    for a, b in ranges:
        if left >= b - a - _EPS:
            kept.append((a, b))
            left -= b - a
        elif left > _EPS:
            kept.append((a, a + left))
            freed.append((a + left, b))
            left = 0.0
        else:
            freed.append((a, b))
    return tuple(kept), tuple(freed)


def _merge(ranges: list[tuple[float, float]]) -> Ranges:
    out: list[tuple[float, float]] = []
    for a, b in sorted(r for r in ranges if r[1] - r[0] > _EPS):
        if out and abs(out[-1][1] - a) <= _EPS:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return tuple(out)


@dataclass(frozen=True)
class BucketLayout:
    """Arm -> ranges of [0, 1) that partition it."""

    ranges: tuple[tuple[str, Ranges], ...]

    @classmethod
    def initial(cls, shares: Mapping[str, float]) -> BucketLayout:
        """Contiguous ranges in name order."""
        normalised = normalise(shares)
        start, out = 0.0, []
        for name, share in normalised.items():
            out.append((name, ((start, start + share),) if share > 0 else ()))
            start += share
        return cls(_close_gap(tuple(out)))

    def shares(self) -> dict[str, float]:
        return {name: _length(r) for name, r in self.ranges}

    def arm(self, point: float) -> str:
        """The arm serving ``point``."""
        last = None
        for name, ranges in self.ranges:
            for a, b in ranges:
                if a <= point < b:
                    return name
                last = name
        if last is None:
            raise ConfigError("bucket layout: no arm has a share")
        return last  # point == 1.0 rounding: the last range's arm

    def resized(self, shares: Mapping[str, float]) -> BucketLayout:
        """The same layout with new shares, moving the least traffic (arms absent from ``shares`` get 0)."""
        target = normalise(shares)
        current = dict(self.ranges)
        kept: dict[str, Ranges] = {}
        free: list[tuple[float, float]] = []
        for name, ranges in current.items():
            keep, freed = _trim(ranges, target.get(name, 0.0))
            kept[name] = keep
            free.extend(freed)
        pool = list(_merge(free))
        out: dict[str, list[tuple[float, float]]] = {name: list(kept.get(name, ())) for name in target}
        for name in sorted(target):
            need = target[name] - _length(tuple(out[name]))
            while need > _EPS and pool:
                a, b = pool[0]
                take = min(need, b - a)
                out[name].append((a, a + take))
                need -= take
                if b - (a + take) > _EPS:
                    pool[0] = (a + take, b)
                else:
                    pool.pop(0)
        layout = tuple((name, _merge(out[name])) for name in sorted(target))
        return BucketLayout(_close_gap(layout))

    def moved_fraction(self, other: BucketLayout) -> float:
        """Share of [0, 1) whose arm differs between the two layouts."""
        cuts = sorted({0.0, 1.0} | {x for _, rs in self.ranges + other.ranges for r in rs for x in r})
        moved = 0.0
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            mid = (a + b) / 2.0
            if b - a > _EPS and self.arm(mid) != other.arm(mid):
                moved += b - a
        return moved

    def as_json(self) -> dict[str, list[list[float]]]:
        return {name: [[a, b] for a, b in ranges] for name, ranges in self.ranges}

    @classmethod
    def from_json(cls, record: Mapping[str, list[list[float]]]) -> BucketLayout:
        return cls(
            tuple((name, tuple((float(a), float(b)) for a, b in ranges)) for name, ranges in sorted(record.items()))
        )


def normalise(shares: Mapping[str, float]) -> dict[str, float]:
    """Shares scaled to sum 1, in name order; non-finite, negative or all-zero shares are a ``ConfigError``."""
    if not shares or any(not math.isfinite(s) or s < 0 for s in shares.values()) or sum(shares.values()) <= 0:
        raise ConfigError(f"split: shares must be non-negative with a positive sum, got {dict(shares)}")
    total = float(sum(shares.values()))
    return {name: shares[name] / total for name in sorted(shares)}


def _close_gap(layout: tuple[tuple[str, Ranges], ...]) -> tuple[tuple[str, Ranges], ...]:
    """Float rounding can leave the top of [0, 1) unowned: the arm owning the highest range extends to 1."""
    top_name, top = None, 0.0
    for name, ranges in layout:
        for _, b in ranges:
            if b >= top:
                top_name, top = name, b
    if top_name is None or top >= 1.0:
        return layout
    return tuple(
        (name, ranges[:-1] + ((ranges[-1][0], 1.0),) if name == top_name and ranges else ranges)
        for name, ranges in layout
    )
