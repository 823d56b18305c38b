"""The report at 20 and 200 assets and with many strategies: weights charts show the largest assets and one band for
the rest with the legend below the plot, no two series of a chart share a colour, and the paired comparison matrix
fits a 1,280-pixel page (estimated, and measured in a headless Chromium)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from backtesting.backtest import BacktestResult
from evaluation import plots
from evaluation.html import PAGE_PX, matrix_columns, matrix_table, matrix_width_px
from evaluation.plots import TOP_ASSETS, colours, equity_figure, weight_bands, weights_figure
from tests.support.markets import STRATEGY_NAMES

TEMPLATE = "evaluation/templates/report.html"


def result(name: str, n_assets: int, seed: int = 0, days: int = 300) -> BacktestResult:
    """A backtest result whose average weights fall with the asset's index (asset 0 the largest)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.linspace(5.0, 0.5, n_assets), size=days)
    returns = rng.normal(0.0003, 0.01, size=days)
    dates = np.datetime64("2020-01-01") + np.arange(days)
    return BacktestResult(
        name,
        dates,
        returns,
        weights,
        np.zeros(days),
        np.zeros(days),
        np.cumprod(1 + returns),
        tuple(f"A{k}" for k in range(n_assets)),
    )


def many_strategies(n_agents: int = 20) -> dict[str, BacktestResult]:
    agents = {f"ppo_factor200_seed_{i:02d}": result(f"ppo_factor200_seed_{i:02d}", 20, seed=i) for i in range(n_agents)}
    return agents | {name: result(name, 20, seed=100 + i) for i, name in enumerate(STRATEGY_NAMES)}


@pytest.mark.parametrize("n_assets", [20, 200])
def test_a_weights_chart_shows_the_largest_assets_and_one_band_for_the_rest(n_assets):
    backtest = result("ppo", n_assets)

    labels, bands = weight_bands(backtest)

    means = backtest.weights.mean(axis=0)
    largest = np.argsort(-means)[:TOP_ASSETS]
    assert labels == [f"A{k}" for k in largest] + [f"other ({n_assets - TOP_ASSETS} assets)"]
    np.testing.assert_allclose(bands[-1], np.delete(backtest.weights, largest, axis=1).sum(axis=1))
    np.testing.assert_allclose(bands.sum(axis=0), 1.0)


@pytest.mark.parametrize("n_assets", [4, 9, 20, 200])
def test_the_weights_legend_has_at_most_top_plus_one_entries_in_distinct_colours_below_the_plot(n_assets):
    figure = weights_figure(result("ppo", n_assets))
    ax = figure.axes[0]
    figure.canvas.draw()

    entries = [text.get_text() for text in ax.get_legend().get_texts()]
    assert len(entries) == min(n_assets, TOP_ASSETS + 1)
    faces = [tuple(np.round(band.get_facecolor()[0], 6)) for band in ax.collections]
    assert len(faces) == len(entries) and len(set(faces)) == len(faces)
    renderer = figure.canvas.get_renderer()
    assert ax.get_legend().get_window_extent(renderer).y1 < ax.get_window_extent(renderer).y0  # wholly below it


def test_every_line_of_a_many_strategy_chart_has_its_own_colour():
    results = many_strategies()
    figure = equity_figure(results, {n for n in results if n.startswith("ppo")})

    lines = [line for line in figure.axes[0].get_lines() if not line.get_label().startswith("_")]
    assert len(lines) == len(results) == 31
    assert len({to_rgba(line.get_color()) for line in lines}) == 31


@pytest.mark.parametrize("n", [1, 4, 10, 11, 20, 21, 31, 200, 300])
def test_colours_are_distinct_for_any_number_of_series(n):
    assert len(set(colours(n))) == n


def pairwise_of(names: list[str]) -> dict:
    return {
        a: {b: {"annualised_difference": 0.01 * (i - j), "p_value": 0.5} for j, b in enumerate(names) if b != a}
        for i, a in enumerate(names)
    }


def test_the_existing_reports_matrix_stays_one_table():
    names = ["ppo", "dqn", *STRATEGY_NAMES]
    html = matrix_table(pairwise_of(names), {"ppo", "dqn"})

    assert html.count("<table") == 1
    assert matrix_width_px(names, len(names)) <= PAGE_PX


def test_a_matrix_of_many_strategies_is_cut_into_tables_that_fit_and_show_every_pair():
    names = list(many_strategies()) + ["an_agent_with_a_name_far_longer_than_any_row_should_be"]
    html = matrix_table(pairwise_of(names), set(names[:20]))

    tables = html.split("<table")[1:]
    per_table = matrix_columns([n if len(n) <= 40 else n[:40] for n in names])
    assert len(tables) == -(-len(names) // per_table) > 1
    shown = 0
    for table in tables:
        columns = table.split("</tr>")[0].count("<th>") - 1
        assert 1 <= columns <= per_table
        assert matrix_width_px([n[:40] for n in names], columns) <= PAGE_PX
        assert table.count("<tr") == len(names) + 1
        shown += len(re.findall(r"<td>[+-]\d", table))
    assert shown == len(names) * (len(names) - 1)  # every ordered pair once


def test_the_many_strategy_matrix_fits_1280_pixels_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    names = list(many_strategies()) + ["an-agent-whose-name-has-no-underscores-at-all-v2"]
    style = re.search(r"<style>.*</style>", open(TEMPLATE).read(), re.S).group(0)
    page_html = (
        f"<!doctype html><html><head>{style}</head><body>{matrix_table(pairwise_of(names), set())}</body></html>"
    )
    path = tmp_path / "matrix.html"
    path.write_text(page_html, encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(path.as_uri())
        rights = page.evaluate(
            "Array.from(document.querySelectorAll('table')).map(t => t.getBoundingClientRect().right)"
        )
        overflowing = page.evaluate(
            "Array.from(document.querySelectorAll('th, td')).filter(c => c.scrollWidth > c.clientWidth + 1).length"
        )
        page_width = page.evaluate("document.documentElement.scrollWidth")
        browser.close()
    assert len(rights) > 1 and max(rights) <= 1280 and page_width <= 1280, (rights, page_width)
    assert overflowing == 0  # the content fits its cells, nothing is clipped or spills


def test_the_weights_png_is_no_wider_at_200_assets_than_at_4():
    def width(png: bytes) -> int:
        return int.from_bytes(png[16:20], "big")  # the PNG header's IHDR width

    assert width(plots.weights_area(result("ppo", 200))) <= width(plots.weights_area(result("ppo", 4))) + 5
