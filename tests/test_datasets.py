"""The MovieLens loader on few-line samples written here, and its errors."""

import numpy as np
import pytest

from rfmfast.datasets import load_movielens, split_ratings

U_DATA = (
    "196\t242\t3\t881250949\n"
    "186\t302\t3\t891717742\n"
    "22\t377\t1\t878887116\n"
    "196\t377\t5\t881251000\n"
)
RATINGS_DAT = "1::1193::5::978300760\n1::661::3::978302109\n6040::1193::4.5::956703932\n\n"


def test_u_data(tmp_path):
    p = tmp_path / "u.data"
    p.write_text(U_DATA)
    r = load_movielens(p)
    assert r.shape == (3, 3)
    np.testing.assert_array_equal(r.user_ids, [22, 186, 196])
    np.testing.assert_array_equal(r.item_ids, [242, 302, 377])
    np.testing.assert_array_equal(r.user_ids[r.rows], [196, 186, 22, 196])
    np.testing.assert_array_equal(r.item_ids[r.cols], [242, 302, 377, 377])
    np.testing.assert_array_equal(r.values, [3, 3, 1, 5])
    assert r.timestamps[0] == 881250949 and r.rows.dtype == np.int64


def test_ratings_dat(tmp_path):
    p = tmp_path / "ratings.dat"
    p.write_text(RATINGS_DAT)
    r = load_movielens(str(p))
    assert r.shape == (2, 2)
    np.testing.assert_array_equal(r.user_ids[r.rows], [1, 1, 6040])
    np.testing.assert_array_equal(r.item_ids[r.cols], [1193, 661, 1193])
    np.testing.assert_allclose(r.values, [5, 3, 4.5])


@pytest.mark.parametrize(
    "text, match",
    [
        ("1\t2\t3\n", "line 1: expected 4 fields"),
        ("1\t2\t3\t4\n1\tx\t3\t4\n", "line 2: non-numeric"),
        ("1.5\t2\t3\t4\n", "line 1: user, item and timestamp must be integers"),
        ("1\t2\tnan\t4\n", "line 1: rating is not a finite number"),
        ("\n\n", "holds no ratings"),
    ],
)
def test_bad_files(tmp_path, text, match):
    p = tmp_path / "u.data"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_movielens(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ratings file"):
        load_movielens(tmp_path / "nope.data")


def test_split_ratings():
    a = split_ratings(1000, 0.2, seed=3)
    assert a.sum() == 200
    np.testing.assert_array_equal(a, split_ratings(1000, 0.2, seed=3))
    assert not np.array_equal(a, split_ratings(1000, 0.2, seed=4))
    with pytest.raises(ValueError, match="test_fraction"):
        split_ratings(10, 1.0)


def test_synthetic_ratings_shape_skew_and_scale():
    from rfmfast.datasets import synthetic_ratings

    R = synthetic_ratings(200, 1000, 20_000, min_per_user=20, seed=1)
    assert R.shape == (200, 1000) and len(R.values) == 20_000
    counts = np.bincount(R.rows, minlength=200)
    assert counts.min() >= 20 and counts.max() <= 300  # the cap: max_share 0.3 of the items
    assert counts.max() > 4 * np.median(counts)  # a power law: a few very active users
    key = R.rows * 1000 + R.cols
    assert len(np.unique(key)) == len(key) and np.all(np.diff(key) > 0)  # sorted, no duplicates
    assert set(np.unique(R.values)) <= set(np.arange(1, 11) / 2)  # half stars 0.5..5
    assert 3.0 < R.values.mean() < 4.0
    again = synthetic_ratings(200, 1000, 20_000, min_per_user=20, seed=1)
    np.testing.assert_array_equal(again.values, R.values)
    with pytest.raises(ValueError, match="must lie in"):
        synthetic_ratings(10, 10, 101)
    with pytest.raises(ValueError, match="raise max_share"):
        synthetic_ratings(10, 100, 900)
    with pytest.raises(ValueError, match="scale must be"):
        synthetic_ratings(10, 100, 50, scale=(5, 1, 0.5))
