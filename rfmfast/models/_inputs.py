"""Input conversion for every estimator: dtypes, devices, arrays (numpy, torch, pandas) to
checked tensors, row counts and scikit-learn's feature-name contract. One place, so that
RFM and lin-RFM estimators accept and refuse the same things with the same sentences."""

from __future__ import annotations

import sys
import warnings
from numbers import Real

import numpy as np
import torch
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.validation import _get_feature_names


def torch_dtype(dtype) -> torch.dtype:
    """'float32' | 'float64' | torch dtype | numpy dtype -> torch dtype."""
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.float64):
        return dtype
    name = str(getattr(dtype, "name", dtype))
    if name in ("float32", "float64"):
        return getattr(torch, name)
    raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def resolve_device(device, *, default="auto") -> torch.device | None:
    """A device parameter -> torch.device. None or "auto": ``default``, whose own default
    "auto" means CUDA when torch sees a GPU, else CPU (pass default=None for "where the data
    is"); "cpu", "cuda", "cuda:N" or a torch.device as given.
    Refuses unknown names, non-CPU/CUDA devices and CUDA where torch sees no CUDA device, in
    one sentence."""
    if device is None or (isinstance(device, str) and device == "auto"):
        if not (isinstance(default, str) and default == "auto"):
            return default
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or None, got {device!r}"
        ) from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be a CPU or CUDA device, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {str(device)!r} was requested but torch sees no CUDA device; "
            "use device='cpu' (or 'auto': CUDA when available)"
        )
    return dev


def _pandas():
    """pandas if it is already imported (an input can be a pandas object only then)."""
    return sys.modules.get("pandas")


def _refuse_sparse(x, name: str) -> None:
    if isinstance(x, torch.Tensor) and x.layout != torch.strided:
        raise TypeError(
            f"{name} is a sparse tensor; sparse input is not supported: convert with "
            f"{name}.to_dense() (n x d entries of memory)"
        )
    import scipy.sparse

    if scipy.sparse.issparse(x):
        raise TypeError(
            f"sparse input is not supported ({name} is a {type(x).__name__}); "
            f"convert with {name}.toarray() (n x d entries of memory)"
        )


def _numeric_frame(x, name: str) -> np.ndarray:
    """A pandas DataFrame / Series of numbers, bools or nullable Int64 / Float64 / boolean
    columns -> float64 array; non-numeric columns and missing values (NaN, pd.NA) are refused
    naming the columns."""
    pd = _pandas()
    frame = x.to_frame() if isinstance(x, pd.Series) else x
    types = pd.api.types
    bad = [
        c
        for c, t in frame.dtypes.items()
        if types.is_complex_dtype(t) or not (types.is_numeric_dtype(t) or types.is_bool_dtype(t))
    ]
    if bad:
        raise ValueError(
            f"{name} has non-numeric or complex column(s) {_some(bad)} (dtype "
            f"{frame.dtypes[bad[0]]}); RFM needs real numbers: encode them first "
            "(e.g. sklearn.preprocessing.OneHotEncoder)"
        )
    missing = frame.isna().any()
    if bool(missing.any()):
        raise ValueError(
            f"{name} contains missing values (NaN or NA) in column(s) "
            f"{_some(list(missing[missing].index))}; impute or drop them first"
        )
    a = frame.to_numpy(dtype=np.float64)
    return a[:, 0] if isinstance(x, pd.Series) else a


def _some(items, k: int = 10) -> str:
    items = [str(i) for i in items]
    more = f" and {len(items) - k} more" if len(items) > k else ""
    return "[" + ", ".join(repr(i) for i in items[:k]) + "]" + more


def as_array(x, name: str):
    """numpy, torch, pandas or a nested list of numbers -> (torch tensor or numpy array of a
    real dtype, is_torch).

    pandas DataFrames / Series become float64 arrays (nullable and bool columns included);
    object arrays of numbers are converted; torch tensors are kept (device and all). Sparse,
    complex, non-numeric and ragged inputs get a ValueError / TypeError saying so.
    """
    if x is None:
        raise ValueError(f"{name} is None; an array is required")
    _refuse_sparse(x, name)
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise ValueError(f"Complex data not supported: {name} is {x.dtype}")
        return x.detach(), True
    pd = _pandas()
    if pd is not None and isinstance(x, (pd.DataFrame, pd.Series)):
        return _numeric_frame(x, name), False
    try:
        a = np.asarray(x)
    except Exception as e:  # noqa: BLE001 - report any conversion failure the same way
        raise ValueError(f"{name} could not be converted to an array: {e}") from None
    if a.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} is {a.dtype}")
    if a.dtype == object:
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError) as e:
            bad = next((v for v in a.ravel() if not _is_real(v)), None)
            raise type(e)(
                f"{name} has entries that are not real numbers (e.g. {bad!r}: {e}); "
                "RFM needs numbers (impute missing values, encode categories)"
            ) from None
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    return a, False


def _is_real(v) -> bool:
    return isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)) and v == v


def _to_dtype(t: torch.Tensor, name: str, dtype: torch.dtype, device) -> torch.Tensor:
    """t (any real dtype) -> dtype on device, refusing NaN / inf and finite values beyond the
    target dtype's range (which the cast would turn into inf)."""
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).reshape(len(t), -1).any(1).sum())
        raise ValueError(f"{name} contains NaN or inf (in {bad} row(s)); impute or drop them first")
    big = torch.finfo(dtype).max
    if t.is_floating_point() and torch.finfo(t.dtype).max > big:
        top = float(t.abs().max())
        if top > big:
            raise ValueError(
                f"{name} values exceed {str(dtype)[6:]}'s range (max {big:.2g}; the "
                f"largest |{name}| is {top:.3g}): use dtype='float64' or rescale "
                f"{name}"
            )
    return t.to(device=device, dtype=dtype)


def features(X, name: str, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, bool]:
    """Validated features: (n, d) float tensor on device, and whether the input was torch."""
    a, is_torch = as_array(X, name)
    t = a if is_torch else torch.from_numpy(np.array(a, dtype=np.float64))  # a writable copy
    if t.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features), got shape {tuple(t.shape)}. "
            f"Reshape your data with {name}.reshape(-1, 1) if it has a single "
            f"feature or {name}.reshape(1, -1) if it is a single sample"
        )
    if t.shape[0] == 0 or t.shape[1] == 0:
        what = "sample(s)" if t.shape[0] == 0 else "feature(s)"
        raise ValueError(
            f"{name} is empty: found array with 0 {what} (shape="
            f"{tuple(t.shape)}) while a minimum of 1 is required."
        )
    if not (
        t.is_floating_point()
        or t.dtype in (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8, torch.bool)
    ):
        raise ValueError(f"{name} must be real numbers, got {t.dtype}")
    return _to_dtype(t, name, dtype, device), is_torch


def targets(y, name: str, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, bool]:
    """Regression targets: (n,) or (n, c) -> (n, c) float tensor, and whether y was 1-D."""
    a, is_torch = as_array(y, name)
    t = a if is_torch else torch.from_numpy(np.array(a, dtype=np.float64))
    if t.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    one_d = t.ndim == 1
    return _to_dtype(t[:, None] if one_d else t, name, dtype, device), one_d


def labels(y, name: str) -> np.ndarray:
    """Class labels as a 1-D numpy array: numbers, bools, strings, pandas string / categorical
    Series (their values), or objects of one sortable type. Missing labels are refused."""
    if y is None:
        raise ValueError(f"{name} is None; labels are required")
    _refuse_sparse(y, name)
    pd = _pandas()
    if isinstance(y, torch.Tensor):
        a = y.detach().cpu().numpy()
    elif pd is not None and isinstance(y, (pd.Series, pd.DataFrame)):
        if bool(np.asarray(y.isna()).any()):
            raise ValueError(f"{name} contains missing labels (NaN, None or NA); drop those rows")
        a = y.to_numpy()
    else:
        a = np.asarray(y)
    if a.ndim == 2 and a.shape[1] == 1:
        warnings.warn(
            f"A column-vector {name} was passed when a 1d array was expected; it is "
            f"used as {name}.ravel()",
            DataConversionWarning,
            stacklevel=4,
        )
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels, got shape {a.shape}")
    if a.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} is {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    if a.dtype.kind == "f" and not (a == np.round(a)).all():
        v = a[a != np.round(a)][0]
        raise ValueError(
            f"Unknown label type: continuous ({name} has non-integer values such "
            f"as {v!r}); a classifier needs class labels: use RFMRegressor for a "
            "continuous target"
        )
    if a.dtype == object:
        missing = pd.isna(a) if pd is not None else np.array([v is None or v != v for v in a])
        if bool(np.asarray(missing).any()):
            raise ValueError(f"{name} contains missing labels (NaN, None or NA); drop those rows")
        try:
            np.unique(a)
        except TypeError:
            kinds = sorted({type(v).__name__ for v in a})
            raise ValueError(
                f"{name} mixes label types ({', '.join(kinds)}); use one type (e.g. all strings)"
            ) from None
        plain = np.array(a.tolist())  # str -> '<U', numbers -> int / float: plain classes_
        if plain.dtype.kind in "biufUS" and plain.shape == a.shape:
            a = plain
    return a


def output_dtype(x) -> torch.dtype:
    """The float dtype of an estimator's predictions for the input x: float32 for float32
    input (a numpy array or torch tensor of float32, a pandas DataFrame / Series whose columns
    are all float32), float64 for anything else (float64, integers, bools, lists, other
    frames). The computation runs in the estimator's ``dtype``; only its result is cast."""
    pd = _pandas()
    if pd is not None and isinstance(x, pd.DataFrame):
        f32 = len(x.columns) > 0 and all(t == np.float32 for t in x.dtypes)
    elif isinstance(x, torch.Tensor):
        f32 = x.dtype == torch.float32
    else:
        f32 = getattr(x, "dtype", None) == np.float32
    return torch.float32 if f32 else torch.float64


def sample_weights(sample_weight, n: int, name: str = "sample_weight") -> np.ndarray | None:
    """``sample_weight`` for n samples -> float64 (n,) array, or None (no weights).

    A real number is n copies of it; an array (numpy, torch, a pandas Series, a list) must be
    1-D with n finite entries. Weights must be >= 0 and not all zero (a sample of weight zero
    is as if it were not there). Refused with a ValueError saying which rule failed."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, (bool, np.bool_)):
        raise ValueError(
            f"{name} must be an array of n_samples weights or a number, got {sample_weight!r}"
        )
    if isinstance(sample_weight, Real):
        w = np.full(n, float(sample_weight))
    else:
        a, is_torch = as_array(sample_weight, name)
        w = a.to(torch.float64).cpu().numpy() if is_torch else np.array(a, dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D (n_samples,), got shape {w.shape}; one weight per sample"
            )
        if len(w) != n:
            raise ValueError(f"{name} has {len(w)} entries but X has {n} rows; they must match")
    if not np.isfinite(w).all():
        raise ValueError(f"{name} contains NaN or inf")
    if (w < 0).any():
        i = int(np.argmax(w < 0))
        raise ValueError(
            f"{name} has negative entries (e.g. {w[i]:g} at row {i}); weights must be >= 0"
        )
    if not (w > 0).any():
        raise ValueError(
            f"{name} is all zero: at least one weight must be positive (a sample of weight "
            "zero is as if it were not there)"
        )
    return w


def weighted_ridge(w: np.ndarray | None, reg: float):
    """The weighted ridge sum_i w_i (f(x_i) - y_i)^2 + reg ||f||^2 as the estimators solve it ->
    (keep, weights, reg): keep, the indices of the rows of positive weight (None: every row;
    zero-weight rows leave the problem, and so the predictor); weights, those rows' weights
    divided by their mean (None where they are all equal: the plain problem); reg divided by
    that mean. The minimiser is unchanged by the division: the objective is only scaled."""
    if w is None:
        return None, None, float(reg)
    keep = None if bool((w > 0).all()) else np.flatnonzero(w > 0)
    w = w if keep is None else w[keep]
    mean = float(w.mean())
    reg = float(reg) / mean
    if bool((w == w[0]).all()):
        return keep, None, reg
    return keep, w / mean, reg


def check_rows(nx: int, ny: int, xname="X", yname="y") -> None:
    if nx != ny:
        raise ValueError(f"{xname} has {nx} rows but {yname} has {ny}; they must match")


def check_feature_names(est, X, *, reset: bool, name: str = "X") -> None:
    """scikit-learn's feature-name contract and messages. reset (fit): feature_names_in_ =
    the DataFrame's column names when they are all strings (else no such attribute). Otherwise
    (predict, X_val): unseen names, missing names or the same names in another order are a
    ValueError naming them; names at only one of fit / predict time warn (UserWarning)."""
    names = _get_feature_names(X)
    if reset:
        if names is None:
            est.__dict__.pop("feature_names_in_", None)
        else:
            est.feature_names_in_ = names
        return
    fitted = getattr(est, "feature_names_in_", None)
    cls = type(est).__name__
    if fitted is None or names is None:
        if names is not None:
            warnings.warn(
                f"{name} has feature names, but {cls} was fitted without feature names",
                UserWarning,
                stacklevel=4,
            )
        elif fitted is not None:
            warnings.warn(
                f"{name} does not have valid feature names, but {cls} was fitted with "
                "feature names",
                UserWarning,
                stacklevel=4,
            )
        return
    if len(names) == len(fitted) and (names == fitted).all():
        return
    unseen = sorted(set(names) - set(fitted))
    missing = sorted(set(fitted) - set(names))
    msg = "" if name == "X" else f"{name}: "
    msg += "The feature names should match those that were passed during fit.\n"
    if unseen:
        msg += "Feature names unseen at fit time:\n" + _lines(unseen)
    if missing:
        msg += "Feature names seen at fit time, yet now missing:\n" + _lines(missing)
    if not unseen and not missing:
        moved = [n for n, m in zip(names, fitted) if n != m]
        msg += (
            "Feature names must be in the same order as they were in fit.\n"
            f"Out of place: {_some(moved)}; reorder the columns with "
            f"{name}[model.feature_names_in_]"
        )
    raise ValueError(msg)


def _lines(names, k: int = 5) -> str:
    """scikit-learn's list of feature names in its messages: '- name' lines, at most k."""
    return "".join(f"- {n}\n" for n in names[:k]) + ("- ...\n" if len(names) > k else "")


def centers(spec, X: torch.Tensor, random_state, *, points: str = "training points"):
    """The Nystroem centers an estimator's ``centers`` parameter names, checked before any work:
    (m, d) tensor of X's dtype and device, or None (the exact solve, every point a center).

    spec: None; an int m in [1, n] (m rows of X drawn uniformly at random without replacement,
    sorted, seeded by random_state: the same X and seed give the same centers); or an (m, d)
    array of any kind ``features`` takes (finite, d = X's). points: what X's rows are, for the
    message when m > n (e.g. "training points left after the validation hold-out").
    An int below 1 is the parameter validation's to refuse (InvalidParameterError)."""
    if spec is None:
        return None
    n, d = X.shape
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, (bool, np.bool_)):
        m = int(spec)
        if m < 1:
            raise ValueError(
                f"centers={m}: at least one center is needed (or centers=None: the "
                "exact solve, every point a center)"
            )
        if m > n:
            raise ValueError(
                f"centers={m} is more than the {n} {points}; use at most {n} (or "
                "centers=None: the exact solve, every point a center)"
            )
        rng = np.random.default_rng(random_state)
        idx = torch.from_numpy(np.sort(rng.choice(n, m, replace=False))).to(X.device)
        return X[idx]
    C, _ = features(spec, "centers", X.dtype, X.device)
    if C.shape[1] != d:
        raise ValueError(
            f"centers has {C.shape[1]} features but X has {d}; the centers are points of X's space"
        )
    return C
