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
    found instead by an active-set search started from accelerated projected gradient (``_active_set_batch``):
    exact where it ends on a face that satisfies the KKT conditions, and ``growth_optimal_weights`` (SLSQP) for any
    problem where it does not.

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


def _active_set_batch(mu: np.ndarray, cov: np.ndarray, pg_steps: int = 300) -> np.ndarray:
    """``growth_optimal_batch`` for many assets (written here: scipy solves one QP at a time, which at 20 assets and
    thousands of days was minutes per path).

    Accelerated projected gradient on the simplex finds the optimal face's likely support; a primal active-set loop
    then solves each face's KKT system exactly for all unfinished problems at once, dropping the most negative
    weight or adding the asset whose gradient most exceeds the face's multiplier, until every problem satisfies the
    KKT conditions. Problems still unfinished after ``2 A`` rounds go to SLSQP one at a time.
    """
    n_problems, n_assets = mu.shape
    drift = mu + 0.5 * np.diagonal(cov, axis1=1, axis2=2)
    # Per-problem scale so both terms are of order one (as growth_optimal_weights does).
    scale = 1.0 / np.maximum(
        np.maximum(np.abs(drift).max(axis=1), np.diagonal(cov, axis1=1, axis2=2).max(axis=1)), 1e-12
    )
    drift, scaled = drift * scale[:, None], cov * scale[:, None, None]
    scaled = scaled + 1e-12 * np.trace(scaled, axis1=1, axis2=2)[:, None, None] * np.eye(n_assets)
    weights = _projected_gradient(drift, scaled, pg_steps)
    support = weights > 1e-9
    out = np.empty_like(weights)
    todo = np.arange(n_problems)
    for _ in range(2 * n_assets):
        face, nu = _face_solve(drift[todo], scaled[todo], support[todo])
        negative = support[todo] & (face < -1e-12)
        gap = drift[todo] - np.einsum("nab,nb->na", scaled[todo], face) - nu[:, None]
        gap[support[todo]] = -np.inf
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


def _projected_gradient(drift: np.ndarray, cov: np.ndarray, steps: int) -> np.ndarray:
    """``(N, A)`` approximate maximisers of ``w . drift - w' cov w / 2`` on the simplex (FISTA, step ``1 / L``)."""
    n_problems, n_assets = drift.shape
    vector = np.ones((n_problems, n_assets)) / np.sqrt(n_assets)
    for _ in range(30):  # power iteration for each problem's largest eigenvalue L
        vector = np.einsum("nab,nb->na", cov, vector)
        vector /= np.linalg.norm(vector, axis=1, keepdims=True) + 1e-300
    lipschitz = 1.1 * np.einsum("na,nab,nb->n", vector, cov, vector) + 1e-12
    weights = point = np.full((n_problems, n_assets), 1.0 / n_assets)
    momentum = 1.0
    for _ in range(steps):
        step = point + (drift - np.einsum("nab,nb->na", cov, point)) / lipschitz[:, None]
        new = _project_simplex(step)
        next_momentum = (1.0 + np.sqrt(1.0 + 4.0 * momentum**2)) / 2.0
        point = new + (momentum - 1.0) / next_momentum * (new - weights)
        weights, momentum = new, next_momentum
    return weights


def _project_simplex(values: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row onto the probability simplex (Duchi et al. 2008), vectorised."""
    n_assets = values.shape[1]
    ordered = -np.sort(-values, axis=1)
    excess = np.cumsum(ordered, axis=1) - 1.0
    positive = ordered - excess / np.arange(1, n_assets + 1) > 0
    last = n_assets - 1 - np.argmax(positive[:, ::-1], axis=1)
    threshold = excess[np.arange(values.shape[0]), last] / (last + 1)
    return np.maximum(values - threshold[:, None], 0.0)


def _face_solve(drift: np.ndarray, cov: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stationary points on each problem's face ``support`` (``(N, A)`` bool): ``C_SS w + nu 1 = drift_S``,
    ``1'w = 1``, ``w`` zero off the face. Returns ``w`` ``(N, A)`` and ``nu`` ``(N,)``."""
    n_problems, n_assets = drift.shape
    pair = support[:, :, None] & support[:, None, :]
    system = np.zeros((n_problems, n_assets + 1, n_assets + 1))
    system[:, :n_assets, :n_assets] = np.where(pair, cov, 0.0) + np.eye(n_assets) * ~support[:, :, None]
    system[:, :n_assets, n_assets] = system[:, n_assets, :n_assets] = support
    rhs = np.concatenate([np.where(support, drift, 0.0), np.ones((n_problems, 1))], axis=1)
    solution = np.linalg.solve(system, rhs[..., None])[..., 0]
    return solution[:, :n_assets], solution[:, n_assets]


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
