"""get_output_path, is_production, datasets: what a project sees in and out of a secd run."""

import json
import os
import tempfile
import unittest
from unittest import mock

import secd


class EnvTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.cwd = os.getcwd()
        os.chdir(self.dir.name)

    def tearDown(self):
        os.chdir(self.cwd)
        self.dir.cleanup()

    def test_output_path_is_OUTPUT_PATH_in_a_run_and_is_created(self):
        target = os.path.join(self.dir.name, "outputs")
        with mock.patch.dict(os.environ, {"OUTPUT_PATH": target}):
            self.assertEqual(secd.get_output_path(), target)
        self.assertTrue(os.path.isdir(target))

    def test_output_path_is_a_local_output_folder_elsewhere(self):
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertEqual(secd.get_output_path(), "output")
        self.assertTrue(os.path.isdir(os.path.join(self.dir.name, "output")))

    def test_production_only_when_secd_says_so(self):
        with mock.patch.dict(os.environ, {"SECD": "PRODUCTION"}):
            self.assertTrue(secd.is_production())
        with mock.patch.dict(os.environ, {"SECD": "production-ish"}):
            self.assertFalse(secd.is_production())
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertFalse(secd.is_production())

    def test_datasets_lists_what_the_run_was_given(self):
        given = {"sales": {"kind": "mysql", "database": "sales_2024"}, "scans": {"kind": "path", "path": "/datasets/scans"}}
        with mock.patch.dict(os.environ, {"SECD_DATASETS": json.dumps(given)}):
            self.assertEqual(secd.datasets(), given)
            self.assertEqual(secd.dataset_path("scans"), "/datasets/scans")
            with self.assertRaisesRegex(ValueError, "MySQL database"):
                secd.dataset_path("sales")
            with self.assertRaisesRegex(KeyError, "not given to this run"):
                secd.dataset_path("other")
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertEqual(secd.datasets(), {})


if __name__ == "__main__":
    unittest.main()
