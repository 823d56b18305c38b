"""Which assets an agent allocates for an ``/allocate`` request: the app's (its agents' training assets) whenever the
request names exactly those, in the agents' order; other assets, in the request's order, only for an agent whose
features allow it (``AgentInfo.transfer`` is ``None``: an asset-shared module that observes nothing tied to its
training universe, ``policies.transfer``; a baseline that needs no fitted regime model). Anything else is a 422 that
names both lists and why.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serving.agents import AgentInfo
from serving.http import problem
from serving.schemas import AllocateRequest

SHOWN = 20  # names listed in full in a message; longer lists are cut, with their length


def parse_allocation(body: AllocateRequest, info: AgentInfo) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``(closes (T, K), held (K,), assets)`` of the assets ``info``'s agent allocates for ``body``
    (``allocation_assets``), in that order; a 422 naming the field otherwise."""
    assets = allocation_assets(tuple(body.prices), info)
    closes = np.column_stack([np.asarray(body.prices[a], dtype=np.float64) for a in assets])
    if closes.shape[0] < info.closes_needed:
        raise problem(
            422,
            "body.prices",
            f"need at least {info.closes_needed} closes per asset (oldest first), got {closes.shape[0]}",
        )
    if body.weights is None:
        held = np.full(len(assets), 1.0 / len(assets))
    else:
        if set(body.weights) != set(assets):
            raise problem(422, "body.weights", f"weights must name exactly the assets of prices, {names(assets)}")
        held = np.asarray([body.weights[a] for a in assets], dtype=np.float64)
    return closes, held, assets


def allocation_assets(asked: Sequence[str], info: AgentInfo) -> tuple[str, ...]:
    """The assets ``info``'s agent allocates for a request naming ``asked``, in the order it takes them.

    :raises HTTPException: 422 naming ``body.prices``: the agent cannot allocate those assets (naming the assets it
        was trained on, those asked for, and why)."""
    asked, trained = tuple(asked), tuple(info.assets)
    if set(asked) == set(trained):
        return trained
    if info.transfer is None:
        return asked
    if info.module_kind == "mlp":
        missing, unknown = sorted(set(trained) - set(asked)), sorted(set(asked) - set(trained))
        raise problem(
            422,
            "body.prices",
            f"'{info.name}' was trained on {names(trained)} and allocates exactly those ({info.transfer}); asked for "
            f"{names(asked)}: missing {names(missing)}, unknown {names(unknown)}",
        )
    raise problem(
        422,
        "body.prices",
        f"'{info.name}' allocates only the assets it was trained on, {names(trained)}, not {names(asked)}: "
        f"{info.transfer}",
    )


def can_allocate(info: AgentInfo, assets: Sequence[str]) -> bool:
    """Whether ``info``'s agent can allocate ``assets`` (its training assets, or any when ``transfer`` is None)."""
    return info.transfer is None or set(assets) == set(info.assets)


def names(assets: Sequence[str]) -> str:
    """``assets`` as a list in a message; past ``SHOWN`` names, the first ones and how many there are."""
    assets = list(assets)
    if len(assets) <= SHOWN:
        return str(assets)
    return f"{str(assets[: SHOWN - 2])[:-1]}, ..., {assets[-1]!r}] ({len(assets)} assets)"
