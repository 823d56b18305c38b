"""The per-asset layout asset-shared policies read: every number lands in its asset's row, for any universe size."""

import numpy as np
import pytest
import torch

from envs.features import feature_names, observation_size
from envs.layout import AssetLayout


@pytest.mark.parametrize("n_assets", [1, 4, 20])
@pytest.mark.parametrize("extras, regimes, base", [((), 0, False), (("vix",), 3, True)])
def test_split_puts_every_feature_in_its_asset_row(n_assets, extras, regimes, base):
    assets = tuple(f"A{k}" for k in range(n_assets))
    layout = AssetLayout(window_days=3, n_extras=len(extras), n_regimes=regimes, base=base)
    names = feature_names(assets, 3, extras, n_regimes=regimes, base="equal_weight" if base else "none")
    size = observation_size(n_assets, 3, len(extras), regimes, base)
    assert layout.size(n_assets) == size == len(names)
    assert layout.n_assets(size) == n_assets
    index = np.arange(size, dtype=np.float64)
    per_asset, market = layout.split(np.stack([index, index + 0.5]))
    assert per_asset.shape == (2, n_assets, layout.per_asset) and market.shape == (2, layout.n_global)
    for k, asset in enumerate(assets):
        row = [names[int(i)] for i in per_asset[0, k]]
        assert all(name.endswith((f"[{asset}]", f" {asset}]")) or f"[{asset}," in name for name in row), row
        assert row[0] == f"logret_pct[{asset}, t-0]" and row[-1] == f"weight[{asset}]"
    assert [names[int(i)] for i in market[0]] == [n for n in names if n.startswith(("extra", "regime"))]
    torch_rows, torch_market = layout.split(torch.from_numpy(index[None]))
    np.testing.assert_array_equal(torch_rows.numpy()[0], per_asset[0])
    np.testing.assert_array_equal(torch_market.numpy()[0], market[0])


def test_a_size_that_fits_no_universe_is_refused():
    with pytest.raises(ValueError, match="does not fit this layout"):
        AssetLayout(window_days=3).n_assets(11)
    assert AssetLayout.from_json(AssetLayout(5, 1, 2, True).to_json()) == AssetLayout(5, 1, 2, True)
