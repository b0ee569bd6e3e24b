"""The MovieLens loader: exact integer ids, today's ratings.csv, errors that name the line, and
its peak memory, on files written here."""

import tracemalloc

import numpy as np
import pytest

from rfmfast.datasets import load_movielens

BIG = 2**53  # float64 cannot tell BIG from BIG + 1


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text.encode("latin-1") if isinstance(text, str) else text)
    return p


def test_ids_are_exact_integers(tmp_path):
    text = f"{BIG}\t1\t3\t{BIG + 1}\n{BIG + 1}\t2\t4\t0\n{2**63 - 1}\t1\t5\t0\n-3\t2\t1\t0\n"
    r = load_movielens(write(tmp_path, "u.data", text))
    np.testing.assert_array_equal(r.user_ids, [-3, BIG, BIG + 1, 2**63 - 1])
    np.testing.assert_array_equal(r.user_ids[r.rows], [BIG, BIG + 1, 2**63 - 1, -3])
    assert r.timestamps[0] == BIG + 1 and r.user_ids.dtype == np.int64


@pytest.mark.parametrize(
    "text, match",
    [
        (
            "1\t2\t3\t4\n1e3\t2\t3\t4\n",
            "line 2: user, item and timestamp must be integers, got user id '1e3'",
        ),
        ("1\t7.0\t3\t4\n", "line 1: .* got item id '7.0'"),
        ("1\t2\t3\t4e2\n", "line 1: .* got timestamp '4e2'"),
        (f"{2**63}\t2\t3\t4\n", "line 1: user id 9223372036854775808 is outside the int64 range"),
        ("1\t2\t3\t4\n\n\n1\tx\t3\t4\n", "line 4: non-numeric item id 'x'"),
        ("1\t2\tfive\t4\n", "line 1: non-numeric rating 'five'"),
        ("1\t2\tinf\t4\n", "line 1: rating is not a finite number"),
        ("1::2::3::4::5\n", "line 1: expected 4 fields"),
        ("1:2::3::4::5\n", "line 1: non-numeric user id '1:2'"),
        ("userId,movieId,rating,timestamp\n1,2,3,4\n1,2,3\n", "line 3: expected 4 fields"),
    ],
)
def test_bad_lines_are_named(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_movielens(write(tmp_path, "ratings", text))


def test_ratings_csv_with_header(tmp_path):
    text = (
        "userId,movieId,rating,timestamp\n"
        "1,296,5.0,1147880044\n"
        "1,306,3.5,1147868817\n"
        "3,296,4.0,1439474476\n"
    )
    r = load_movielens(write(tmp_path, "ratings.csv", text))
    assert r.shape == (2, 2)
    np.testing.assert_array_equal(r.user_ids[r.rows], [1, 1, 3])
    np.testing.assert_array_equal(r.item_ids[r.cols], [296, 306, 296])
    np.testing.assert_array_equal(r.values, [5.0, 3.5, 4.0])
    np.testing.assert_array_equal(r.timestamps, [1147880044, 1147868817, 1439474476])


def test_ratings_csv_with_bom_crlf_and_no_header(tmp_path):
    text = b"\xef\xbb\xbfuserId,movieId,rating,timestamp\r\n1,296,5.0,1\r\n2,296,4.5,2\r\n"
    r = load_movielens(write(tmp_path, "ratings.csv", text))
    np.testing.assert_array_equal(r.values, [5.0, 4.5])
    r = load_movielens(write(tmp_path, "plain.csv", "1,296,5.0,1\n"))
    assert r.shape == (1, 1)


def test_error_far_into_the_file_names_its_line(tmp_path):
    lines = [f"{i % 97 + 1}::{i % 89 + 1}::4::978300760" for i in range(20000)]
    lines[15000] = "1::2::x::3"
    with pytest.raises(ValueError, match="line 15001: non-numeric rating 'x'"):
        load_movielens(write(tmp_path, "ratings.dat", "\n".join(lines) + "\n"))


def test_sparse_ids_take_the_sort_path(tmp_path):
    text = "".join(f"{u}\t{i}\t1\t0\n" for u, i in [(10**15, 1), (5, 10**12), (10**15, 7)])
    r = load_movielens(write(tmp_path, "u.data", text))
    np.testing.assert_array_equal(r.user_ids, [5, 10**15])
    np.testing.assert_array_equal(r.rows, [1, 0, 1])
    np.testing.assert_array_equal(r.item_ids[r.cols], [1, 10**12, 7])


@pytest.mark.parametrize("fmt", ["\t", "::", ","])
def test_peak_memory_under_3x_the_file(tmp_path, fmt):
    """A 2 MB file shaped like MovieLens (ids up to a few thousand, 9-digit timestamps)."""
    rng = np.random.default_rng(0)
    n = 100_000
    cols = (
        rng.integers(1, 6000, n),
        rng.integers(1, 4000, n),
        rng.integers(1, 6, n),
        rng.integers(956703932, 1046454590, n),
    )
    text = "".join(f"{u}{fmt}{i}{fmt}{r}{fmt}{t}\n" for u, i, r, t in zip(*cols))
    path = write(tmp_path, "ratings", text)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        r = load_movielens(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(r.values) == n
    np.testing.assert_array_equal(r.user_ids[r.rows], cols[0])
    assert peak < 3 * size, f"peak {peak / size:.1f}x the file size"
