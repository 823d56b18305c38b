"""EM fits of the regime HMM (``quant.regimes``) under each covariance structure: what each costs in parameters,
how many days of returns it needs, and the best of several EM starts for one structure and one number of regimes.

| covariance | each regime's ``(A, A)`` covariance | its parameters |
|---|---|---|
| ``full`` | its own | ``K A (A + 1) / 2`` |
| ``tied`` | one, shared by every regime | ``A (A + 1) / 2`` |
| ``diag`` | its own variances, no correlation | ``K A`` |
| ``factor`` | ``L S_k L' + diag(psi_k)``: ``F`` factors whose loadings ``L`` all regimes share, each regime with its own factor covariance ``S_k`` and residual variances ``psi_k`` | ``A F - F^2 + K F (F + 1) / 2 + K A`` |

Every structure also has ``K - 1`` start and ``K (K - 1)`` transition probabilities and ``K A`` means (Hamilton
1989). ``full``, ``tied`` and ``diag`` are hmmlearn's ``GaussianHMM``, EM on every parameter. ``factor`` is fitted
in two stages: the loadings are the leading eigenvectors of the returns' correlation matrix (``F`` of them: the
eigenvalues above ``(1 + sqrt(A / T))^2``, the Marchenko-Pastur edge of pure noise; Laloux et al. 1999), a full
``GaussianHMM`` is fitted to the ``F`` component scores, and each regime's residual means and variances are the
posterior-weighted moments of what the components leave. The loadings are identified up to an invertible ``F x F``
transform, which the ``S_k`` absorb: hence ``A F - F^2``. Every structure's log-likelihood is that of its
``A``-dimensional model on the returns, so BIC compares them all; the two-stage factor estimate does not maximise
its likelihood, which can only count against it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from core.errors import ConfigError, DataError
from quant.regimes import MIN_OCCUPANCY, SCALE, RegimeModel

COVARIANCES = ("full", "tied", "diag", "factor")
EM_TOLERANCE = 1e-2  # hmmlearn's default: the smallest gain in log-likelihood (percent units) worth an iteration
TOLERANCE_ASSETS = 4  # ... over 4 assets; the log-likelihood grows with the assets, so the tolerance does too
DAYS_PER_DIMENSION = 10  # a sample covariance of d dimensions is well conditioned from about 10 d days on
EINSUM_MAX_ASSETS = 8  # up to here hmmlearn's own covariance statistics (``_blas_hmm_class``)
RESIDUAL_FLOOR = 1e-3  # factor: the least residual variance, as a share of an asset's variance

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class StructureFit:
    """One EM start's fit of one structure and ``K``: its parameters (every covariance as a full ``(K, A, A)``
    matrix, in the units fitted) and its log-likelihood on the ``n_days`` of returns fitted."""

    covariance: str
    start: int
    n_days: int
    log_likelihood: float
    transition: np.ndarray
    means: np.ndarray
    covariances: np.ndarray


@dataclass(frozen=True, eq=False)
class RegimeFit:
    """What ``select_regimes`` chose: the model, its covariance structure (``quant.regime_em``), its ``K``, the
    factors a factor structure had, its BIC, and the BIC of every candidate that converged, ``{(covariance, K):
    bic}``."""

    model: RegimeModel
    covariance: str
    n_regimes: int
    n_factors: int
    bic: float
    candidates: dict[tuple[str, int], float]


def select_regimes(
    log_returns: np.ndarray,
    n_regimes: int | str = "bic",
    *,
    covariance: str = "auto",
    max_regimes: int = 4,
    seed: int = 0,
    iterations: int = 200,
    restarts: int = 4,
    where: str = "regimes",
) -> RegimeFit:
    """Fit the model to ``(T, A)`` daily log returns (a train split's); ``n_regimes="bic"`` picks ``K`` in
    ``1..max_regimes`` and ``covariance="auto"`` the structure (``full``, ``tied``, ``diag``, ``factor``), jointly,
    with the lowest Bayesian information criterion among the fits that converge and visit every regime at least
    ``MIN_OCCUPANCY`` of the time (on the built-in market's train split BIC otherwise adds a regime of 0.5% that fits
    a few outlier days). Only structures with enough days for their parameters are candidates
    (``quant.regime_em.shortfall``: a full covariance only where the assets are few for the days). Whatever the
    structure, the model carries full ``(K, A, A)`` covariances.

    :raises ConfigError: ``K`` with too many parameters for ``T`` days under every structure asked for, or EM that
        does not converge within ``iterations``; both name ``where``.
    """
    log_returns = np.asarray(log_returns, dtype=np.float64)
    if log_returns.ndim != 2 or not np.isfinite(log_returns).all():
        raise DataError(f"{where}: returns to fit must be a finite (days, assets) array, got shape {log_returns.shape}")
    if covariance != "auto" and covariance not in COVARIANCES:
        raise ConfigError(f"{where}.covariance: '{covariance}' is not one of auto, {', '.join(COVARIANCES)}")
    n_days, n_assets = log_returns.shape
    structures = COVARIANCES if covariance == "auto" else (covariance,)
    scaled = log_returns * SCALE
    n_factors = count_factors(scaled) if "factor" in structures else 0
    feasible: list[tuple[str, int]] = []  # (structure, K) with days enough for its parameters
    for k in range(1, max_regimes + 1) if n_regimes == "bic" else [int(n_regimes)]:
        reasons = {s: shortfall(s, k, n_assets, n_days, n_factors) for s in structures}
        if all(reasons.values()):
            if n_regimes == "bic":
                break  # every structure's needs grow with K
            raise ConfigError(_too_many(where, k, n_assets, n_days, n_factors, reasons))
        feasible += [(s, k) for s in structures if reasons[s] is None]
    # EM finds local optima: on the built-in market's train split two starts of four found the true law's three
    # regimes (log-likelihood -26,889) and two a worse split (-27,176), so keep the best of several. Choosing among
    # several structures, each is first screened with one start per K; only the best one gets the other starts.
    fit_args = {"seed": seed, "iterations": iterations, "n_factors": n_factors}
    screened = len({s for s, _ in feasible}) > 1
    # EM multiplies many small (A, A) matrices: threads cost more than they save (20 assets on 2 busy CPUs: 7 s on one
    # BLAS thread, 62-168 s on all of them).
    with threadpool_limits(limits=1):  # BLAS and OpenMP (k-means starts)
        runs, unconverged = _fit_all(scaled, feasible, range(1 if screened else restarts), **fit_args)
        if screened and runs:
            best = min(_scored(runs, n_regimes, n_factors), key=lambda fit: fit[0])[2].covariance
            more, failed = _fit_all(scaled, [c for c in feasible if c[0] == best], range(1, restarts), **fit_args)
            unconverged += failed
            for candidate, fitted in more.items():
                runs[candidate] = runs.get(candidate, []) + fitted
    fits = _scored(runs, n_regimes, n_factors)
    if not fits:
        if unconverged:
            raise ConfigError(
                f"{where}: EM did not converge in {iterations} iterations for {', '.join(unconverged)}; "
                f"raise {where}.iterations or use fewer regimes"
            )
        raise ConfigError(
            f"{where}: {n_days} days of training returns are too few for even one regime over {n_assets} assets"
        )
    bic, k, fitted = min(fits, key=lambda fit: fit[0])
    order = np.argsort([np.trace(c) for c in fitted.covariances])
    transition = fitted.transition[np.ix_(order, order)]
    model = RegimeModel(
        transition=transition / transition.sum(axis=1, keepdims=True),
        means=fitted.means[order] / SCALE,
        covariances=fitted.covariances[order] / SCALE**2,
        source="fitted",
    )
    chosen_factors = n_factors if fitted.covariance == "factor" else 0
    logger.info("%s: %d regimes, %s covariance (BIC %.0f) over %d assets", where, k, fitted.covariance, bic, n_assets)
    scores = {(fit.covariance, kk): float(b) for b, kk, fit in fits}
    return RegimeFit(model, fitted.covariance, k, chosen_factors, float(bic), scores)


def _fit_all(
    scaled: np.ndarray, candidates: list[tuple[str, int]], starts: range, **fit_args: int
) -> tuple[dict[tuple[str, int], list[StructureFit]], list[str]]:
    """Each candidate's converged fits from ``starts``, and a line for each start that did not converge."""
    runs, unconverged = {}, []
    for structure, k in candidates:
        if len(starts):
            runs[structure, k], failed = fit_structure(scaled, structure, k, starts=starts, **fit_args)
            unconverged += failed
    return runs, unconverged


def _scored(
    runs: dict[tuple[str, int], list[StructureFit]], n_regimes: int | str, n_factors: int
) -> list[tuple[float, int, StructureFit]]:
    """``(BIC, K, fit)`` of each candidate's best start (by log-likelihood, the earliest on a tie), leaving out
    those with a regime visited less than ``MIN_OCCUPANCY`` of the time when BIC chooses ``K``."""
    fits = []
    for (structure, k), fitted in runs.items():
        if not fitted:
            continue
        best = max(fitted, key=lambda fit: (fit.log_likelihood, -fit.start))
        occupancy = RegimeModel(best.transition, best.means, best.covariances).stationary().min()
        if n_regimes == "bic" and occupancy < MIN_OCCUPANCY:
            continue  # a "regime" the chain visits on a handful of days fits outliers, not a state of the market
        parameters = n_parameters(k, best.means.shape[1], structure, n_factors)
        fits.append((-2 * best.log_likelihood + parameters * np.log(best.n_days), k, best))
    return fits


def _too_many(where: str, k: int, n_assets: int, n_days: int, n_factors: int, reasons: dict[str, str | None]) -> str:
    counts = {s: n_parameters(k, n_assets, s, n_factors) for s in reasons}
    if len(reasons) == 1:
        ((structure, reason),) = reasons.items()
        return (
            f"{where}.n_regimes: {k} regimes over {n_assets} assets have {counts[structure]} parameters, too many for "
            f"{n_days} days of training returns ({reason}); use fewer regimes"
        )
    every = "; ".join(f"{s}: {counts[s]} parameters, {reason}" for s, reason in reasons.items())
    return (
        f"{where}.n_regimes: {k} regimes over {n_assets} assets are too many for {n_days} days of training returns "
        f"under every covariance ({every}); use fewer regimes"
    )


def n_parameters(n_regimes: int, n_assets: int, covariance: str = "full", n_factors: int = 0) -> int:
    """Free parameters of the HMM: start, transitions, means and the covariance structure's (table above)."""
    k, a, f = n_regimes, n_assets, n_factors
    covariance_parameters = {
        "full": k * a * (a + 1) // 2,
        "tied": a * (a + 1) // 2,
        "diag": k * a,
        "factor": a * f - f * f + k * f * (f + 1) // 2 + k * a,
    }[covariance]
    return (k - 1) + k * (k - 1) + k * a + covariance_parameters


def shortfall(covariance: str, n_regimes: int, n_assets: int, n_days: int, n_factors: int = 0) -> str | None:
    """Why ``n_days`` of returns are too few for ``covariance`` with ``n_regimes`` regimes, or ``None``.

    A structure needs at least one day per parameter, and ``DAYS_PER_DIMENSION`` days per dimension of each
    covariance it estimates from the days behind it: ``full`` ``K`` matrices of ``A`` dimensions from about
    ``T / K`` days each, ``tied`` one of ``A`` from all ``T``, ``factor`` ``K`` of ``F`` and ``diag`` ``K`` of 1.
    A full covariance is therefore fitted only where the assets are few for the days.
    """
    parameters = n_parameters(n_regimes, n_assets, covariance, n_factors)
    if parameters > n_days:
        return f"{covariance} covariances: more parameters than days"
    if covariance == "factor" and not 1 <= n_factors < n_assets:
        return f"factor covariances: {n_factors} factors above the noise edge over {n_assets} assets"
    dimension, sharing = {"full": (n_assets, n_regimes), "tied": (n_assets, 1), "diag": (1, n_regimes)}.get(
        covariance, (n_factors, n_regimes)
    )
    if n_days < DAYS_PER_DIMENSION * dimension * sharing:
        per = "in each regime" if sharing > 1 else "in all"
        return (
            f"{covariance} covariances of {dimension} dimensions need {DAYS_PER_DIMENSION * dimension} days {per}, "
            f"{DAYS_PER_DIMENSION * dimension * sharing} for {n_regimes} regimes"
        )
    return None


def count_factors(returns: np.ndarray) -> int:
    """Eigenvalues of the ``(T, A)`` returns' correlation matrix above the Marchenko-Pastur edge ``(1 +
    sqrt(A / T))^2``: the factors that stand out of noise (at most ``A - 1``)."""
    n_days, n_assets = returns.shape
    standardised = _standardise(returns)[0]
    centred = standardised - standardised.mean(axis=0)
    values = np.linalg.eigvalsh(centred.T @ centred / n_days)
    edge = (1.0 + np.sqrt(n_assets / n_days)) ** 2
    return min(int((values > edge).sum()), n_assets - 1)


def em_tolerance(n_assets: int) -> float:
    """The EM tolerance for ``n_assets`` (``EM_TOLERANCE`` up to ``TOLERANCE_ASSETS`` assets, in proportion above)."""
    return EM_TOLERANCE * max(1.0, n_assets / TOLERANCE_ASSETS)


def fit_structure(
    returns: np.ndarray,
    covariance: str,
    n_regimes: int,
    *,
    starts: range,
    seed: int,
    iterations: int,
    n_factors: int = 0,
) -> tuple[list[StructureFit], list[str]]:
    """EM from each of ``starts`` (seed ``seed + start``) on ``returns`` (``(T, A)``): the fits that converged
    within ``iterations``, and a line for each that did not."""
    fits, unconverged = [], []
    for start in starts:
        if covariance == "factor":
            fitted = _fit_factor(returns, n_regimes, n_factors, seed, start, iterations)
        else:
            fitted = _fit_gaussian(returns, covariance, n_regimes, seed, start, iterations)
        if isinstance(fitted, str):
            unconverged.append(f"{n_regimes} regimes ({covariance}) from seed {seed + start} ({fitted})")
        else:
            fits.append(fitted)
    return fits, unconverged


def _gaussian_hmm(n_regimes: int, covariance: str, seed: int, iterations: int, n_assets: int):
    model = _blas_hmm_class() if n_assets > EINSUM_MAX_ASSETS else _hmm_class()
    return model(
        n_components=n_regimes,
        covariance_type=covariance,
        n_iter=iterations,
        tol=em_tolerance(n_assets),
        random_state=seed,
    )


def _hmm_class() -> type:
    from hmmlearn.hmm import GaussianHMM

    return GaussianHMM


@functools.cache
def _blas_hmm_class() -> type:
    """hmmlearn's ``GaussianHMM`` (0.3.3) with the full and tied covariances' statistics ``sum_t p_tk x_t x_t'`` as
    one matrix product per regime: hmmlearn's three-operand einsum took 3.6 times as long over a 50-asset fit. Up to
    ``EINSUM_MAX_ASSETS`` the einsum costs little, and keeping it there keeps small markets' fits as they were to
    the bit."""
    from hmmlearn.hmm import GaussianHMM

    class BlasGaussianHMM(GaussianHMM):
        def _needs_sufficient_statistics_for_covars(self) -> bool:
            return "c" in self.params and self.covariance_type in ("spherical", "diag")

        def _accumulate_sufficient_statistics(self, stats, X, lattice, posteriors, fwdlattice, bwdlattice):
            super()._accumulate_sufficient_statistics(stats, X, lattice, posteriors, fwdlattice, bwdlattice)
            if "c" in self.params and self.covariance_type in ("tied", "full"):
                for k in range(self.n_components):
                    stats["obs*obs.T"][k] += (X * posteriors[:, k, None]).T @ X

    return BlasGaussianHMM


def _converged(hmm, iterations: int, n_assets: int) -> str | None:
    """``None``, or the last log-likelihood change of EM that ran out of iterations while still gaining: hmmlearn
    counts running out of iterations as converged; here it is not, unless the last step was small."""
    history = list(hmm.monitor_.history)
    change = history[-1] - history[-2] if len(history) > 1 else np.inf
    if hmm.monitor_.iter >= iterations and change >= em_tolerance(n_assets):
        return f"last log-likelihood change {change:.3g}"
    return None


def _fit_gaussian(
    returns: np.ndarray, covariance: str, n_regimes: int, seed: int, start: int, iterations: int
) -> StructureFit | str:
    hmm = _gaussian_hmm(n_regimes, covariance, seed + start, iterations, returns.shape[1])
    hmm.fit(returns)
    problem = _converged(hmm, iterations, returns.shape[1])
    if problem is not None:
        return problem
    return StructureFit(covariance, start, len(returns), hmm.score(returns), hmm.transmat_, hmm.means_, hmm.covars_)


def _standardise(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns over each asset's standard deviation (1 for an asset that never moves), and those deviations."""
    scale = returns.std(axis=0)
    scale = np.where(scale > 0.0, scale, 1.0)
    return returns / scale, scale


def _fit_factor(
    returns: np.ndarray, n_regimes: int, n_factors: int, seed: int, start: int, iterations: int
) -> StructureFit | str:
    """The two-stage factor fit (module docstring) from one EM start."""
    standardised, scale = _standardise(returns)
    centred = standardised - standardised.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred / len(returns))
    loadings = vectors[:, ::-1][:, :n_factors]  # (A, F), orthonormal, largest eigenvalue first
    scores = standardised @ loadings
    hmm = _gaussian_hmm(n_regimes, "full", seed + start, iterations, n_factors)
    hmm.fit(scores)
    problem = _converged(hmm, iterations, n_factors)
    if problem is not None:
        return problem
    posteriors = hmm.predict_proba(scores)  # (T, K)
    residuals = standardised - scores @ loadings.T
    days_in = np.maximum(posteriors.sum(axis=0)[:, None], 1e-12)  # a regime EM left empty keeps the floor
    residual_means = posteriors.T @ residuals / days_in
    residual_variances = np.maximum(posteriors.T @ residuals**2 / days_in - residual_means**2, RESIDUAL_FLOOR)
    means = (hmm.means_ @ loadings.T + residual_means) * scale
    covariances = loadings @ hmm.covars_ @ loadings.T
    covariances[:, np.arange(len(scale)), np.arange(len(scale))] += residual_variances
    covariances *= np.outer(scale, scale)
    implied = _gaussian_hmm(n_regimes, "full", seed + start, iterations, len(scale))
    implied.startprob_, implied.transmat_, implied.means_, implied.covars_ = (
        hmm.startprob_,
        hmm.transmat_,
        means,
        covariances,
    )
    return StructureFit("factor", start, len(returns), implied.score(returns), hmm.transmat_, means, covariances)
