"""Real daily prices built in: the datasets skfolio's wheel ships (no download), in the project's CSV format.

| name | what | dates | assets |
|---|---|---|---|
| ``etf-factors`` | five US factor ETFs: momentum, quality, size, minimum volatility, value | 2014-01-02 .. 2022-12-28 | MTUM, QUAL, SIZE, USMV, VLUE |
| ``sp500-stocks`` | twenty large S&P 500 constituents (``--assets`` picks a subset) | 1990-01-02 .. 2022-12-28 | AAPL, AMD, BAC, ... XOM |
| ``sp500-index`` | the S&P 500 index (a price index: no dividends) | 1990-01-02 .. 2022-12-28 | SP500 |

Terms and caveats (skfolio, BSD-3-Clause; its loaders' own caution): the data are provided for testing and examples,
are stale, and are not for investment or commercial use. The twenty stocks are today's large caps picked with
hindsight, so any backtest on them carries survivorship bias; the index has no dividends, so its returns understate
a holder's. Closes are adjusted closes as skfolio ships them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from core.errors import ConfigError

SAMPLES: dict[str, tuple[str, str]] = {
    "etf-factors": ("load_factors_dataset", "five US factor ETFs (MTUM, QUAL, SIZE, USMV, VLUE), 2014-2022"),
    "sp500-stocks": (
        "load_sp500_dataset",
        "twenty large S&P 500 stocks, 1990-2022 (survivorship bias: picked with hindsight)",
    ),
    "sp500-index": ("load_sp500_index", "the S&P 500 price index (no dividends), 1990-2022"),
}


def sample_frame(name: str, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """The sample ``name`` as a wide frame: ``date`` (ISO) then one close column per asset (only ``assets``, in that
    order, when given).

    :raises ConfigError: an unknown name or asset (naming the choices).
    """
    if name not in SAMPLES:
        raise ConfigError(f"sample: unknown sample '{name}'; choose from {', '.join(SAMPLES)}")
    from skfolio import datasets

    loader: Callable[[], pd.DataFrame] = getattr(datasets, SAMPLES[name][0])
    prices = loader()
    if assets:
        unknown = [a for a in assets if a not in prices.columns]
        if unknown:
            raise ConfigError(f"--assets: {unknown} not in {name} (it has {', '.join(prices.columns)})")
        prices = prices[list(assets)]
    frame = prices.reset_index(drop=True)
    frame.insert(0, "date", pd.to_datetime(prices.index).strftime("%Y-%m-%d"))
    return frame


def write_sample(name: str, out: str | Path, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """Write the sample as a CSV at ``out`` (folders made as needed); the frame written."""
    frame = sample_frame(name, assets)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False, float_format="%.6f")
    return frame
