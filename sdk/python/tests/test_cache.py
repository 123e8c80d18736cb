"""@secd.cache: a result is computed once per source, arguments and keyword arguments."""

import contextlib
import hashlib
import importlib.util
import io
import os
import pickle
import sys
import tempfile
import textwrap
import unittest
from unittest import mock

import secd

MODULE = """
import secd

CALLS = []

@secd.cache
def clean(rows, scale=1):
    CALLS.append((rows, scale))
    return [r * scale for r in rows if r is not None]
"""


def load_module(path, source):
    """Import `source` from `path` as a fresh module (its own source file, as in a project)."""
    with open(path, "w") as f:
        f.write(textwrap.dedent(source))
    name = "cached_%s" % hashlib.md5(path.encode()).hexdigest()
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an imported project module is (pickle finds its classes)
    spec.loader.exec_module(module)
    return module


def quietly(fn, *args, **kwargs):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = fn(*args, **kwargs)
    return result, out.getvalue()


class CacheTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.cwd = os.getcwd()
        self.work = os.path.join(self.tmp.name, "work")
        os.makedirs(self.work)
        os.chdir(self.work)
        self.env = mock.patch.dict(os.environ, {}, clear=True)
        self.env.start()

    def tearDown(self):
        self.env.stop()
        os.chdir(self.cwd)
        self.tmp.cleanup()

    def module(self, name="v1", source=MODULE):
        folder = os.path.join(self.tmp.name, name)
        os.makedirs(folder, exist_ok=True)
        return load_module(os.path.join(folder, "project.py"), source)

    def test_second_call_with_the_same_arguments_is_not_computed_again(self):
        m = self.module()
        first, said_first = quietly(m.clean, [1, None, 2], scale=3)
        second, said_second = quietly(m.clean, [1, None, 2], scale=3)
        self.assertEqual(first, [3, 6])
        self.assertEqual(second, [3, 6])
        self.assertEqual(len(m.CALLS), 1)
        self.assertIn("Cache not found; recomputing clean", said_first)
        self.assertIn("Using cached result for clean", said_second)

    def test_other_arguments_or_keyword_arguments_are_computed(self):
        m = self.module()
        quietly(m.clean, [1, 2])
        quietly(m.clean, [1, 3])
        quietly(m.clean, [1, 2], scale=2)
        self.assertEqual(len(m.CALLS), 3)

    def test_a_change_to_the_functions_source_recomputes(self):
        quietly(self.module("v1").clean, [1, 2])
        changed = MODULE.replace("return [r * scale", "return [r * scale + 0")
        m2 = self.module("v2", changed)
        _, said = quietly(m2.clean, [1, 2])
        self.assertEqual(len(m2.CALLS), 1)
        self.assertIn("recomputing clean", said)

    def test_results_go_to_the_cache_mount_in_production_and_to_local_cache_elsewhere(self):
        m = self.module()
        quietly(m.clean, [1])
        self.assertEqual(len(os.listdir(os.path.join(self.work, "cache"))), 1)
        mount = os.path.join(self.tmp.name, "mount")
        os.environ.update({"SECD": "PRODUCTION", "SECD_CACHE_DIR": mount})
        self.assertEqual(secd.cache_dir(), os.path.join(mount, "cache"))
        quietly(m.clean, [1])
        self.assertEqual(len(os.listdir(os.path.join(mount, "cache"))), 1)
        self.assertEqual(len(m.CALLS), 2)

    def test_the_file_name_and_format_are_the_original_packages(self):
        m = self.module()
        quietly(m.clean, [1, 2], scale=2)
        import inspect

        source_hash = hashlib.md5(inspect.getsource(m.clean.__wrapped__).encode()).hexdigest()
        key = hashlib.md5(f"clean:{([1, 2],)}:{ {'scale': 2} }:{source_hash}".encode()).hexdigest()
        with open(os.path.join("cache", key), "rb") as f:
            self.assertEqual(pickle.load(f), (source_hash, [2, 4]))

    def test_a_truncated_or_foreign_file_is_recomputed_not_loaded(self):
        m = self.module()
        quietly(m.clean, [5])
        [name] = os.listdir("cache")
        with open(os.path.join("cache", name), "wb") as f:
            f.write(b"\x80\x04truncated")
        result, _ = quietly(m.clean, [5])
        self.assertEqual(result, [5])
        self.assertEqual(len(m.CALLS), 2)
        self.assertEqual(quietly(m.clean, [5])[0], [5])
        self.assertEqual(len(m.CALLS), 2)

    def test_no_temporary_file_is_left_behind(self):
        m = self.module()
        for i in range(5):
            quietly(m.clean, [i])
        self.assertEqual([n for n in os.listdir("cache") if n.startswith(".tmp-")], [])

    def test_values_whose_repr_hides_their_content_do_not_share_a_result(self):
        m = self.module(
            "arrays",
            """
            import secd

            CALLS = []

            class Big:
                def __init__(self, values):
                    self.values = values
                def __repr__(self):  # like numpy: the middle is elided
                    return "Big([%r, ..., %r])" % (self.values[0], self.values[-1])

            @secd.cache
            def total(big):
                CALLS.append(1)
                return sum(big.values)
            """,
        )
        a = m.Big([1, 2, 3, 9])
        b = m.Big([1, 5, 5, 9])
        self.assertEqual(repr(a), repr(b))
        self.assertEqual(quietly(m.total, a)[0], 15)
        self.assertEqual(quietly(m.total, b)[0], 20)
        self.assertEqual(quietly(m.total, m.Big([1, 2, 3, 9]))[0], 15)
        self.assertEqual(len(m.CALLS), 2)

    def test_sets_are_keyed_whatever_their_iteration_order(self):
        m = self.module(
            "sets",
            """
            import secd

            CALLS = []

            @secd.cache
            def count(names):
                CALLS.append(1)
                return len(names)
            """,
        )
        quietly(m.count, {"a", "b", "c"})
        quietly(m.count, {"c", "b", "a"})
        self.assertEqual(len(m.CALLS), 1)

    def test_arguments_that_cannot_be_pickled_run_without_the_cache(self):
        m = self.module(
            "unpicklable",
            """
            import secd

            CALLS = []

            @secd.cache
            def first(it):
                CALLS.append(1)
                return next(it)
            """,
        )
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.assertEqual(quietly(m.first, (x for x in [7]))[0], 7)
            self.assertEqual(quietly(m.first, (x for x in [8]))[0], 8)
        self.assertEqual(len(m.CALLS), 2)
        self.assertIn("not caching first", err.getvalue())


if __name__ == "__main__":
    unittest.main()
