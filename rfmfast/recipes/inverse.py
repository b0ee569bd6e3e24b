"""`rfmfast inverse`: iterative matrix inversion, error per epoch and measured order.

Data: a well-conditioned A = Q diag(lambda) Q^T (or Q diag(s) V^T, non-symmetric), Q and V
Haar-random orthogonal (seeded), eigenvalues / singular values evenly spaced in [1, 10].
Methods (rfmfast.linalg): Newton-Schulz from A^T / (||A||_1 ||A||_inf), the deterministic
quadratic oracle, and randomized Kaczmarz with the 1 / ||a_i||^2 step, the stochastic linear
control; both record the forward error ||X - A^{-1}||_F once per epoch. The measured order
q_t = log(e_{t+1}/e_t) / log(e_t/e_{t-1}) should read 2 and 1 near the solution.
The paper's adaptive-step SGD (arXiv 2112.14872) is not among them: only its abstract could be
found, not the method's text (docs/linalg.md).
"""

from __future__ import annotations

import numpy as np

METHODS = ("newton_schulz", "kaczmarz")
LABELS = {
    "newton_schulz": "Newton-Schulz (oracle, order 2)",
    "kaczmarz": "randomized Kaczmarz (control, order 1)",
}
PAPER_NOTE = (
    "adaptive-step SGD (Radhakrishnan, Belkin, Uhler, arXiv 2112.14872): not implemented, "
    "the paper's text was not reachable (docs/linalg.md)"
)


def well_conditioned_matrix(
    d: int = 100,
    eig_min: float = 1.0,
    eig_max: float = 10.0,
    seed: int = 0,
    symmetric: bool = True,
) -> np.ndarray:
    """(d, d) float64: Q diag(lambda) Q^T with lambda evenly spaced in [eig_min, eig_max]
    (symmetric; those are its eigenvalues), or Q diag(lambda) V^T (non-symmetric; they are its
    singular values). Q, V Haar-random orthogonal from numpy's default_rng(seed)."""
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    if not (np.isfinite(eig_min) and np.isfinite(eig_max) and 0 < eig_min <= eig_max):
        raise ValueError(f"need 0 < eig_min <= eig_max, finite; got {eig_min}, {eig_max}")
    import torch

    from .._threads import torch_single_thread

    rng = np.random.default_rng(seed)
    lam = torch.from_numpy(np.linspace(eig_min, eig_max, d))
    with torch_single_thread():  # small QRs: a second (busy) core only costs here

        def haar():
            Q, R = torch.linalg.qr(torch.from_numpy(rng.standard_normal((d, d))))
            return Q * torch.sign(torch.diagonal(R))  # the sign fix makes Q Haar-distributed

        Q = haar()
        V = Q if symmetric else haar()
        return ((Q * lam) @ V.T).numpy()


def near_solution_order(errors, *, near: float = 1e-2, floor: float = 1e-12) -> float:
    """The median measured order over the epochs near the solution: the q_t whose e_t is at
    most ``near * e_0`` and whose e_{t+1} is above ``floor * e_0`` (above the round-off floor).
    NaN when no epoch qualifies."""
    from ..linalg import convergence_order

    e = np.asarray(errors, dtype=np.float64)
    q = convergence_order(e, floor=floor * e[0])
    sel = np.isfinite(q) & (e[1:-1] <= near * e[0])
    return float(np.median(q[sel])) if sel.any() else float("nan")


def run(
    d: int = 100,
    seed: int = 0,
    epochs: int = 200,
    eig_min: float = 1.0,
    eig_max: float = 10.0,
    symmetric: bool = True,
) -> tuple[np.ndarray, dict]:
    """(A, {method: InverseResult}): both methods on well_conditioned_matrix(d, ..., seed),
    recording forward errors. Newton-Schulz runs to 1e-12 (at most 100 iterations); Kaczmarz
    runs ``epochs`` epochs (seed ``seed``). Time: O(d^3) per epoch for both, plus one SVD and
    one LU of A each."""
    from ..linalg import kaczmarz_inverse, newton_schulz_inverse

    A = well_conditioned_matrix(d, eig_min, eig_max, seed, symmetric)
    results = {
        "newton_schulz": newton_schulz_inverse(A, error="forward"),
        "kaczmarz": kaczmarz_inverse(A, epochs=epochs, seed=seed, error="forward"),
    }
    return A, results


def table(results: dict) -> str:
    """One line per method: epochs run, first and last error, why it stopped, and the median
    measured order near the solution (near_solution_order)."""
    head = f"{'method':<14}  {'epochs':>6}  {'e_0':>9}  {'e_last':>9}  {'stop':<10}  {'order':>5}"
    lines = [head]
    for name, r in results.items():
        q = near_solution_order(r.errors)
        lines.append(
            f"{name:<14}  {len(r.errors) - 1:>6}  {r.errors[0]:>9.3e}  {r.errors[-1]:>9.3e}"
            f"  {r.stop:<10}  {q:>5.2f}"
        )
    return "\n".join(lines)


def _running_median(q: np.ndarray, width: int) -> np.ndarray:
    """Median of the finite q in a centred window of ``width`` (NaN where none is)."""
    out = np.full(q.size, np.nan)
    h = width // 2
    for i in range(q.size):
        w = q[max(0, i - h) : i + h + 1]
        w = w[np.isfinite(w)]
        if w.size:
            out[i] = np.median(w)
    return out


def plot(results: dict, title: str, path: str) -> None:
    """PNG: error per epoch, log scale (left); measured order q_t per epoch (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..linalg import convergence_order

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, r in results.items():
        e = r.errors
        style = "o-" if e.size < 40 else "-"
        (line,) = ax1.semilogy(np.arange(e.size), e, style, ms=3, label=LABELS[name])
        q = convergence_order(e, floor=1e-12 * e[0])
        t = np.arange(1, e.size - 1)
        if e.size < 40:
            ax2.plot(t, q, "o-", ms=3, color=line.get_color(), label=name)
        else:  # a stochastic method's orders are noisy: the points and their running median
            ax2.plot(t, q, ".", ms=3, alpha=0.4, color=line.get_color())
            ax2.plot(t, _running_median(q, 21), "-", color=line.get_color(), label=name)
    ax1.set_xlabel("epoch (Newton-Schulz: 1 iteration; Kaczmarz: d row steps)")
    ax1.set_ylabel(r"$\|X - A^{-1}\|_F$")
    ax1.set_title(title)
    ax1.legend(fontsize=8)
    for level in (1, 2):
        ax2.axhline(level, color="gray", lw=0.8, ls="--")
    ax2.set_ylim(-0.5, 3.5)
    ax2.set_xscale("symlog", linthresh=20)
    ax2.set_xlabel("epoch t")
    ax2.set_ylabel(r"$q_t = \log(e_{t+1}/e_t)\ /\ \log(e_t/e_{t-1})$")
    ax2.set_title("measured order (line: running median of 21 epochs)")
    ax2.legend(fontsize=8)
    fig.text(0.01, 0.005, PAPER_NOTE, fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _main(args) -> int:
    from ..cli import UsageError, check_plot_out

    if not 0 < args.eig_min <= args.eig_max:
        raise UsageError(f"need 0 < --eig-min <= --eig-max, got {args.eig_min}, {args.eig_max}")
    check_plot_out(args.out, args.force)
    symmetric = not args.nonsymmetric
    _, results = run(args.d, args.seed, args.epochs, args.eig_min, args.eig_max, symmetric)
    kind = "Q diag(lambda) Q^T" if symmetric else "Q diag(s) V^T"
    title = f"d = {args.d}, A = {kind}, spectrum in [{args.eig_min:g}, {args.eig_max:g}]"
    print(f"inverting {title}, seed {args.seed}, float64")
    print(table(results))
    print(f"not run: {PAPER_NOTE}")
    if args.out:
        plot(results, title, args.out)
        print(f"saved {args.out}")
    return 0


def register(sub) -> None:
    from ..cli import positive_int_arg

    p = sub.add_parser(
        "inverse",
        help="matrix inversion: Newton-Schulz (order 2) vs randomized Kaczmarz (1)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--d", type=positive_int_arg, default=100, help="matrix size (default 100)")
    p.add_argument(
        "--epochs", type=positive_int_arg, default=200, help="Kaczmarz epochs (default 200)"
    )
    p.add_argument("--eig-min", type=float, default=1.0, help="smallest eigenvalue (default 1)")
    p.add_argument("--eig-max", type=float, default=10.0, help="largest eigenvalue (default 10)")
    p.add_argument(
        "--nonsymmetric",
        action="store_true",
        help="A = Q diag(s) V^T (singular values in the range) instead of Q diag(lambda) Q^T",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="inverse.png", help="PNG path ('' for none)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=_main)
