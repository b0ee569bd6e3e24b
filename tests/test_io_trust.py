"""Model files: corruption, foreign files and crafted contents are refused with one clear error,
and loading never runs code from the file."""

import os
import pickle

import numpy as np
import pytest
import torch

from rfmfast import RFMClassifier, RFMRegressor
from rfmfast.models import _io

BAD = "not an rfmfast model file \\(or corrupted\\)"


def fitted(cls=RFMRegressor, **kw):
    rng = np.random.default_rng(0)
    X = rng.normal(0, 0.5, (40, 4))
    y = X[:, 0] * X[:, 1] if cls is RFMRegressor else np.where(X[:, 0] > 0, "a", "b")
    return cls(iters=1, dtype="float64", **kw).fit(X, y), X


@pytest.fixture
def saved(tmp_path):
    m, X = fitted()
    path = tmp_path / "model.pt"
    m.save(path)
    return m, X, path


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_flipped_bytes_are_refused(saved, where):
    _, _, path = saved
    data = bytearray(path.read_bytes())
    at = {"start": 0, "middle": len(data) // 2, "end": len(data) - 64}[where]
    for k in range(at, at + 64):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=BAD):
        RFMRegressor.load(path)


def test_truncated_and_empty_files_are_refused(saved):
    _, _, path = saved
    data = path.read_bytes()
    for cut in (data[:-100], data[:20], b""):
        path.write_bytes(cut)
        with pytest.raises(ValueError, match=BAD):
            RFMRegressor.load(path)


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a model\n")
    with pytest.raises(ValueError, match=BAD):
        RFMRegressor.load(path)


def test_plain_torch_file_is_refused(tmp_path):
    """A torch.save file (the layout without header and checksum) is not taken on trust."""
    path = tmp_path / "plain.pt"
    torch.save({"format": "rfmfast.rfm/1", "class": "RFMRegressor"}, path)
    with pytest.raises(ValueError, match=BAD):
        RFMRegressor.load(path)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


@pytest.mark.parametrize("wrapped", [False, True])
def test_malicious_pickle_does_not_execute(tmp_path, monkeypatch, wrapped):
    """A raw pickle, and one inside a well-formed container (valid header and checksum)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    if wrapped:
        import hashlib
        import io

        buf = io.BytesIO()
        torch.save({"format": "rfmfast.rfm/1", "payload": _Boom()}, buf)
        body = buf.getvalue()
        path.write_bytes(_io.MAGIC + hashlib.sha256(body).digest() + body)
    else:
        path.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(ValueError, match=BAD):
        RFMRegressor.load(path)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def _rewrite(path, edit):
    """Re-save the payload of ``path`` after ``edit(blob)``: a well-formed file with bad
    contents."""
    blob = _io.load(path, "rfmfast.rfm/1")
    edit(blob)
    _io.save(path, blob)


@pytest.mark.parametrize(
    "edit, what",
    [
        (lambda b: b.pop("state"), "state"),
        (lambda b: b["state"].pop("alpha"), "alpha"),
        (lambda b: b["state"].update(alpha=b["state"]["alpha"][:-1]), "alpha"),
        (lambda b: b["state"].update(alpha=b["state"]["alpha"].float()), "alpha"),
        (lambda b: b["state"].update(X=b["state"]["X"][:, :-1]), "M"),
        (lambda b: b["state"].update(M=torch.ones(3, 3, dtype=torch.float64)), "M"),
        (lambda b: b["state"].update(M=torch.ones(4, dtype=torch.float64)), "M"),
        (lambda b: b["state"].update(X=b["state"]["X"].tolist()), "X"),
        (
            lambda b: b["state"].update(X=torch.full((40, 4), float("nan"), dtype=torch.float64)),
            "X",
        ),
        (lambda b: b["state"].update(best_iter=-1), "best_iter"),
        (lambda b: b["state"].update(best_iter=True), "best_iter"),
        (lambda b: b["state"].update(n_outputs=3), "n_outputs"),
        (lambda b: b["state"].update(history="x"), "history"),
        (lambda b: b["state"].update(feature_names=["a"]), "feature_names"),
        (lambda b: b["params"].update(dtype="float32"), "dtype"),
        (lambda b: b["params"].update(colour="red"), "colour"),
        (lambda b: b["params"].pop("kernel"), "kernel"),
        (lambda b: b["params"].update(iters=-2), "iters"),
        (lambda b: b.update(format="something/9"), "format"),
        (lambda b: b.update(params=[1, 2]), "params"),
    ],
)
def test_inconsistent_contents_are_refused(saved, edit, what):
    _, _, path = saved
    _rewrite(path, edit)
    with pytest.raises(ValueError, match=f"{BAD}.*{what}"):
        RFMRegressor.load(path)


def test_classifier_classes_are_checked(tmp_path):
    m, _ = fitted(RFMClassifier)
    path = tmp_path / "clf.pt"
    m.save(path)
    _rewrite(path, lambda b: b["state"].update(classes=["a"]))
    with pytest.raises(ValueError, match=f"{BAD}.*classes"):
        RFMClassifier.load(path)
    m.save(path)
    _rewrite(path, lambda b: b["state"].update(classes_dtype="not a dtype"))
    with pytest.raises(ValueError, match=f"{BAD}.*classes_dtype"):
        RFMClassifier.load(path)


def test_round_trip_still_exact_and_save_is_atomic(saved, tmp_path):
    m, X, path = saved
    m2 = RFMRegressor.load(path)
    np.testing.assert_array_equal(m.predict(X), m2.predict(X))
    assert path.read_bytes()[: len(_io.MAGIC)] == _io.MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary left over


def test_feature_names_round_trip(tmp_path):
    pd = pytest.importorskip("pandas")
    m, X = fitted()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    m.fit(frame, X[:, 0] * X[:, 1])
    m.save(tmp_path / "m.pt")
    m2 = RFMRegressor.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(m2.feature_names_in_, m.feature_names_in_)
    np.testing.assert_array_equal(m2.predict(frame), m.predict(frame))
    with pytest.raises(ValueError, match="feature names"):
        m2.predict(frame[["b", "a", "c", "d"]])


def test_numpy_scalar_parameters_round_trip(tmp_path):
    m, X = fitted(bandwidth=np.float64(10.0), diag=np.bool_(True), agop_samples=np.int64(30))
    m.save(tmp_path / "m.pt")
    m2 = RFMRegressor.load(tmp_path / "m.pt")
    assert m2.get_params() == m.get_params() and type(m2.get_params()["diag"]) is bool
    np.testing.assert_array_equal(m2.predict(X), m.predict(X))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        RFMRegressor.load(tmp_path / "nope.pt")
