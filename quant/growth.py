"""Growth-optimal long-only portfolios: the solvers every oracle and growth baseline shares.

Expected daily log growth of a portfolio rebalanced to weights ``w`` (``(K,)``, long-only, summing to 1) when
log returns are ``N(mu, cov)``, to second order (Merton 1969; Kelly 1956 in continuous time):

    g(w) = w . (mu + diag(cov) / 2) - w' cov w / 2

``growth_optimal_weights`` solves one problem, ``growth_optimal_batch`` many at once, ``growth_optimal_net_of_costs``
decides net of a trade's cost; ``mixture_inputs`` turns regime probabilities into the one-day predictive mixture's
moments. The synthetic market's oracles built on them are ``envs.oracle``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def expected_log_growth(weights: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> float:
    """``g(w)`` above, per day. ``weights`` ``(K,)``, ``mu`` ``(K,)``, ``cov`` ``(K, K)``."""
    return float(weights @ (mu + 0.5 * np.diag(cov)) - 0.5 * weights @ cov @ weights)


def growth_optimal_weights(mu: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Long-only weights maximising ``g(w)`` on the simplex (concave problem; SLSQP from equal weights).

    :param mu: ``(K,)`` mean daily log returns.
    :param cov: ``(K, K)`` daily log-return covariance.
    :returns: ``(K,)`` weights, non-negative, summing to 1.
    """
    mu = np.asarray(mu, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    n_assets = mu.shape[0]
    drift = mu + 0.5 * np.diag(cov)
    # Scale by a typical daily magnitude so the solver's tolerances are meaningful.
    scale = 1.0 / max(float(np.abs(drift).max()), float(np.abs(np.diag(cov)).max()), 1e-12)

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        value = w @ drift - 0.5 * w @ cov @ w
        return -scale * value, -scale * (drift - cov @ w)

    result = minimize(
        objective,
        np.full(n_assets, 1.0 / n_assets),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n_assets,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    weights = np.clip(result.x, 0.0, None)
    return weights / weights.sum()


def growth_optimal_batch(mu: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``growth_optimal_weights`` for ``N`` problems at once, exactly.

    The optimum of a concave quadratic on the simplex lies in the relative interior of one face, where the KKT
    conditions are one linear system; every face's system is solved for all ``N`` problems in one batched call and
    the best feasible solution kept. ``A`` assets have ``2^A - 1`` faces, so beyond 10 assets the optimal face is
    found instead by an active-set search (``_active_set_batch``): exact where it ends on a face that satisfies the
    KKT conditions, and ``growth_optimal_weights`` (SLSQP) for any problem where it does not.

    :param mu: ``(N, A)`` mean daily log returns; :param cov: ``(N, A, A)`` covariances.
    :returns: ``(N, A)`` weights, non-negative, summing to 1.
    """
    mu = np.asarray(mu, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    n_problems, n_assets = mu.shape
    if n_assets > 10:
        return _active_set_batch(mu, cov)
    drift = mu + 0.5 * np.diagonal(cov, axis1=1, axis2=2)
    best, best_value = np.zeros((n_problems, n_assets)), np.full(n_problems, -np.inf)
    ridge = (
        1e-12 * np.trace(cov, axis1=1, axis2=2)[:, None, None]
    )  # keeps a face of perfectly correlated assets solvable
    for support in range(1, 2**n_assets):
        idx = [j for j in range(n_assets) if support >> j & 1]
        size = len(idx)
        # Stationarity on the face: C_SS w + nu 1 = drift_S, with 1'w = 1.
        system = np.zeros((n_problems, size + 1, size + 1))
        system[:, :size, :size] = cov[:, idx][:, :, idx] + ridge * np.eye(size)
        system[:, :size, size] = system[:, size, :size] = 1.0
        rhs = np.concatenate([drift[:, idx], np.ones((n_problems, 1))], axis=1)
        face = np.linalg.solve(system, rhs[..., None])[..., :size, 0]
        feasible = (face >= -1e-12).all(axis=1)
        weights = np.zeros((n_problems, n_assets))
        weights[:, idx] = np.clip(face, 0.0, None)
        value = np.einsum("na,na->n", weights, drift) - 0.5 * np.einsum("na,nab,nb->n", weights, cov, weights)
        better = feasible & (value > best_value)
        best[better], best_value[better] = weights[better], value[better]
    return best / best.sum(axis=1, keepdims=True)


def _active_set_batch(mu: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``growth_optimal_batch`` for many assets (written here: scipy solves one QP at a time, which at 20 assets and
    thousands of days was minutes per path).

    A primal active-set search run for all problems at once: start at each problem's best single asset, solve the
    face's KKT system exactly, then drop the most negative weight or add the asset whose gradient most exceeds the
    face's multiplier, until every problem satisfies the KKT conditions. Growth-optimal portfolios hold few assets
    (2.8 of 20, 4.2 of 200 on average on the synthetic factor markets' regime mixtures), so each face's system is
    small. Problems still unfinished after ``2 A`` rounds go to SLSQP one at a time.
    """
    n_problems, n_assets = mu.shape
    variances = np.diagonal(cov, axis1=1, axis2=2)
    # Per-problem scale so both terms are of order one (as growth_optimal_weights does); the covariances are scaled
    # as their rows are gathered, never copied whole (at 200 assets a batch of them is gigabytes).
    drift = mu + 0.5 * variances
    scale = 1.0 / np.maximum(np.maximum(np.abs(drift).max(axis=1), variances.max(axis=1)), 1e-12)
    drift = drift * scale[:, None]
    ridge = 1e-12 * variances.sum(axis=1) * scale  # keeps a face of perfectly correlated assets solvable
    support = np.zeros((n_problems, n_assets), dtype=bool)
    support[np.arange(n_problems), np.argmax(drift - 0.5 * variances * scale[:, None], axis=1)] = True
    out = np.empty((n_problems, n_assets))
    todo = np.arange(n_problems)
    for _ in range(2 * n_assets):
        face, gradient, nu = _face_solve(drift[todo], cov, todo, scale[todo], ridge[todo], support[todo])
        negative = support[todo] & (face < -1e-12)
        gap = np.where(support[todo], -np.inf, gradient - nu[:, None])
        outside = gap.max(axis=1) > 1e-10
        done = ~negative.any(axis=1) & ~outside
        out[todo[done]] = np.clip(face[done], 0.0, None)
        rows = np.flatnonzero(negative.any(axis=1))
        support[todo[rows], np.argmin(np.where(negative[rows], face[rows], np.inf), axis=1)] = False
        rows = np.flatnonzero(~negative.any(axis=1) & outside)
        support[todo[rows], np.argmax(gap[rows], axis=1)] = True
        todo = todo[~done]
        if todo.size == 0:
            break
    for i in todo:  # cycling or a degenerate face: the general solver
        out[i] = growth_optimal_weights(mu[i], cov[i])
    return out / out.sum(axis=1, keepdims=True)


def _face_solve(
    drift: np.ndarray, cov: np.ndarray, which: np.ndarray, scale: np.ndarray, ridge: np.ndarray, support: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stationary point on the face ``support`` (``(n, A)`` bool) of problems ``which`` (``cov[which] * scale``,
    plus ``ridge`` on the diagonal): ``C_SS w + nu 1 = drift_S``, ``1'w = 1``, ``w`` zero off the face. Only the
    face's rows of ``cov`` are gathered, so a system is as small as the largest face. Returns ``w`` ``(n, A)``, the
    gradient ``drift - C w`` ``(n, A)`` and ``nu`` ``(n,)``."""
    n_problems, n_assets = drift.shape
    size = int(support.sum(axis=1).max())
    index = np.argsort(~support, axis=1, kind="stable")[:, :size]  # each face's assets first, then padding
    valid = np.take_along_axis(support, index, axis=1)
    rows = cov[which[:, None], index] * scale[:, None, None]  # (n, S, A): the face's rows
    block = np.take_along_axis(rows, index[:, None, :], axis=2) + ridge[:, None, None] * np.eye(size)
    system = np.zeros((n_problems, size + 1, size + 1))
    pair = valid[:, :, None] & valid[:, None, :]
    system[:, :size, :size] = np.where(pair, block, 0.0) + np.eye(size) * ~valid[:, :, None]
    system[:, :size, size] = system[:, size, :size] = valid
    rhs = np.concatenate([np.where(valid, np.take_along_axis(drift, index, axis=1), 0.0), np.ones((n_problems, 1))], 1)
    solution = np.linalg.solve(system, rhs[..., None])[..., 0]
    on_face = np.where(valid, solution[:, :size], 0.0)
    weights = np.zeros((n_problems, n_assets))
    np.put_along_axis(weights, index, on_face, axis=1)
    return weights, drift - np.einsum("nsa,ns->na", rows, on_face), solution[:, size]


def growth_optimal_net_of_costs(mu: np.ndarray, cov: np.ndarray, held: np.ndarray, cost_rate: float) -> np.ndarray:
    """Long-only weights maximising ``g(w) - cost_rate * sum|w - held|``: the one-day growth net of the trade's cost.

    Solved with SLSQP over ``w`` and ``u >= |w - held|`` (a smooth problem with linear constraints).
    """
    mu, cov, held = (np.asarray(x, dtype=np.float64) for x in (mu, cov, held))
    n_assets = mu.shape[0]
    drift = mu + 0.5 * np.diag(cov)
    scale = 1.0 / max(float(np.abs(drift).max()), float(np.abs(np.diag(cov)).max()), 1e-12)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        w, u = x[:n_assets], x[n_assets:]
        value = w @ drift - 0.5 * w @ cov @ w - cost_rate * u.sum()
        return -scale * value, -scale * np.concatenate([drift - cov @ w, -cost_rate * np.ones(n_assets)])

    eye = np.eye(n_assets)
    constraints = [
        {
            "type": "eq",
            "fun": lambda x: x[:n_assets].sum() - 1.0,
            "jac": lambda x: np.r_[np.ones(n_assets), np.zeros(n_assets)],
        },
        {
            "type": "ineq",
            "fun": lambda x: x[n_assets:] - (x[:n_assets] - held),
            "jac": lambda x: np.hstack([-eye, eye]),
        },
        {"type": "ineq", "fun": lambda x: x[n_assets:] + (x[:n_assets] - held), "jac": lambda x: np.hstack([eye, eye])},
    ]
    result = minimize(
        objective,
        np.r_[held, np.zeros(n_assets)],
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n_assets + [(0.0, 2.0)] * n_assets,
        constraints=constraints,
        options={"ftol": 1e-14, "maxiter": 500},
    )
    weights = np.clip(result.x[:n_assets], 0.0, None)
    return weights / weights.sum()


def mixture_inputs(
    probabilities: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of the growth-optimal problem for the one-day predictive mixture: ``sum_k p_k g_k(w)`` is ``g(w)`` with
    mean ``p @ mu`` and covariance ``sum_k p_k S_k`` (the second-order growth of each regime, averaged).

    :param probabilities: ``(N, K)``; :param means: ``(K, A)``; :param covariances: ``(K, A, A)``.
    """
    return probabilities @ means, np.einsum("nk,kij->nij", probabilities, covariances)
