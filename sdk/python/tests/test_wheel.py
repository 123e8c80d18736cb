"""build_backend/secd_wheel.py: the wheel the leader serves, built with the standard library only."""

import base64
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import unittest
import zipfile
from unittest import mock

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SDK, "build_backend"))

import secd_wheel  # noqa: E402

try:
    import tomllib
except ImportError:  # before Python 3.11: the comparisons with tomllib are skipped
    tomllib = None


def _pyproject():
    with open(os.path.join(SDK, "pyproject.toml"), encoding="utf-8") as f:
        return f.read()


class WheelTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def _copy_of_sdk(self):
        """A copy of the SDK's sources to change without touching the real ones."""
        copy = os.path.join(self.dir.name, "sdk")
        shutil.copytree(SDK, copy, ignore=shutil.ignore_patterns("tests", "__pycache__"))
        return copy

    def test_the_wheel_is_named_after_the_pyproject_name_and_version(self):
        version = secd_wheel.parse_simple_toml(_pyproject())["project"]["version"]
        name, _ = secd_wheel.wheel_bytes(SDK)
        self.assertEqual(name, "secd-%s-py3-none-any.whl" % version)

    def test_it_holds_the_package_and_a_dist_info_whose_RECORD_hashes_every_file(self):
        name, data = secd_wheel.wheel_bytes(SDK)
        version = name.split("-")[1]
        dist_info = "secd-%s.dist-info" % version
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
            self.assertIsNone(zf.testzip())
            package = sorted(n for n in names if n.startswith("secd/"))
            on_disk = sorted(
                "secd/" + f for f in os.listdir(os.path.join(SDK, "secd")) if f.endswith(".py")
            )
            self.assertEqual(package, on_disk)
            self.assertEqual(
                sorted(n for n in names if not n.startswith("secd/")),
                sorted("%s/%s" % (dist_info, f) for f in ("METADATA", "WHEEL", "RECORD", "top_level.txt")),
            )
            self.assertEqual(names[-1], "%s/RECORD" % dist_info)
            rows = [line.split(",") for line in zf.read("%s/RECORD" % dist_info).decode().splitlines()]
            self.assertEqual(sorted(r[0] for r in rows), sorted(names))
            for path, digest, size in rows:
                if path.endswith("/RECORD"):
                    self.assertEqual((digest, size), ("", ""))
                    continue
                body = zf.read(path)
                expected = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
                self.assertEqual(digest, "sha256=" + expected, path)
                self.assertEqual(int(size), len(body), path)
            wheel = zf.read("%s/WHEEL" % dist_info).decode()
            self.assertIn("Root-Is-Purelib: true\n", wheel)
            self.assertIn("Tag: py3-none-any\n", wheel)
            metadata = zf.read("%s/METADATA" % dist_info).decode()
        headers, _, body = metadata.partition("\n\n")
        self.assertIn("Name: secd", headers.splitlines())
        self.assertIn("Version: %s" % version, headers.splitlines())
        self.assertIn('Requires-Dist: PyMySQL>=1.0; extra == "mysql"', headers.splitlines())
        self.assertNotIn("Requires-Dist: PyMySQL>=1.0", headers.splitlines())  # only with the extra
        with open(os.path.join(SDK, "README.md"), encoding="utf-8") as f:
            self.assertEqual(body, f.read())

    def test_two_builds_of_the_same_sources_are_the_same_bytes_with_fixed_dates(self):
        _, first = secd_wheel.wheel_bytes(SDK)
        _, second = secd_wheel.wheel_bytes(SDK)
        self.assertEqual(first, second)
        with zipfile.ZipFile(io.BytesIO(first)) as zf:
            self.assertEqual({i.date_time for i in zf.infolist()}, {(1980, 1, 1, 0, 0, 0)})
            self.assertEqual({i.external_attr >> 16 for i in zf.infolist()}, {0o100644})
        with mock.patch.dict(os.environ, {"SOURCE_DATE_EPOCH": "1767225600"}):  # 2026-01-01
            _, dated = secd_wheel.wheel_bytes(SDK)
        with zipfile.ZipFile(io.BytesIO(dated)) as zf:
            self.assertEqual({i.date_time for i in zf.infolist()}, {(2026, 1, 1, 0, 0, 0)})

    def test_compiled_caches_and_stray_files_outside_the_package_stay_out(self):
        copy = self._copy_of_sdk()
        os.makedirs(os.path.join(copy, "secd", "__pycache__"))
        with open(os.path.join(copy, "secd", "__pycache__", "_env.cpython-311.pyc"), "wb") as f:
            f.write(b"compiled")
        with open(os.path.join(copy, "secd", "old.pyc"), "wb") as f:
            f.write(b"compiled")
        with open(os.path.join(copy, "notes.txt"), "w") as f:
            f.write("not part of the package")
        _, data = secd_wheel.wheel_bytes(copy)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
        self.assertFalse([n for n in names if "pycache" in n or n.endswith(".pyc") or "notes" in n], names)
        _, clean = secd_wheel.wheel_bytes(SDK)
        self.assertEqual(data, clean)

    def test_the_build_refuses_a_version_out_of_step_with_secd(self):
        package_json = os.path.join(self.dir.name, "package.json")
        with open(package_json, "w") as f:
            json.dump({"name": "secd", "version": "9.9.9"}, f)
        out = os.path.join(self.dir.name, "out")
        with self.assertRaises(secd_wheel.BuildError) as caught:
            secd_wheel.build_into(out, SDK, package_json)
        self.assertIn("is not secd's version 9.9.9", str(caught.exception))
        self.assertFalse(os.path.exists(out))

    def test_the_build_replaces_an_older_wheel_and_keeps_other_files(self):
        out = os.path.join(self.dir.name, "out")
        os.makedirs(out)
        for stale in ("secd-0.0.1-py3-none-any.whl", "other-1.0-py3-none-any.whl"):
            open(os.path.join(out, stale), "w").close()
        path = secd_wheel.build_into(out, SDK)
        self.assertEqual(sorted(os.listdir(out)), sorted([os.path.basename(path), "other-1.0-py3-none-any.whl"]))

    def test_the_command_line_says_what_is_wrong_and_exits_2(self):
        copy = self._copy_of_sdk()
        with open(os.path.join(copy, "pyproject.toml"), "w") as f:
            f.write('[project]\nname = "secd"\nversion = "one"\n')
        err = io.StringIO()
        with mock.patch.object(sys, "stderr", err):
            code = secd_wheel.main([os.path.join(self.dir.name, "out"), "--source", copy])
        self.assertEqual(code, 2)
        self.assertIn("[project] version 'one' is not a PEP 440 release version", err.getvalue())

    def test_the_sdist_holds_what_pip_needs_to_build_the_wheel_again(self):
        name, data = secd_wheel.sdist_bytes(SDK)
        version = name[len("secd-"):-len(".tar.gz")]
        _, again = secd_wheel.sdist_bytes(SDK)
        self.assertEqual(data, again)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = tar.getnames()
            root = "secd-%s" % version
            for required in ("PKG-INFO", "pyproject.toml", "README.md", "build_backend/secd_wheel.py", "secd/__init__.py"):
                self.assertIn("%s/%s" % (root, required), names)
            unpacked = os.path.join(self.dir.name, "unpacked")
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(unpacked, **safe)
        rebuilt_name, rebuilt = secd_wheel.wheel_bytes(os.path.join(unpacked, root))
        self.assertEqual((rebuilt_name, rebuilt), secd_wheel.wheel_bytes(SDK))

    def test_the_pep517_hooks_write_into_the_given_folder_from_the_current_one(self):
        out = os.path.join(self.dir.name, "hooks")
        cwd = os.getcwd()
        os.chdir(SDK)
        try:
            self.assertEqual(secd_wheel.get_requires_for_build_wheel(), [])
            wheel = secd_wheel.build_wheel(out)
            sdist = secd_wheel.build_sdist(out)
        finally:
            os.chdir(cwd)
        self.assertEqual(sorted(os.listdir(out)), sorted([wheel, sdist]))


class SimpleTomlTest(unittest.TestCase):
    @unittest.skipIf(tomllib is None, "tomllib needs Python 3.11")
    def test_it_reads_this_pyproject_as_tomllib_does(self):
        self.assertEqual(secd_wheel.parse_simple_toml(_pyproject()), tomllib.loads(_pyproject()))

    def test_it_reads_the_subset_and_names_the_line_it_cannot_read(self):
        parsed = secd_wheel.parse_simple_toml(
            '# c\n[a.b]\nx = "y\\"z" # note\nlist = ["p", "q",]\nt = { text = "MIT" }\nflag = true\n'
        )
        self.assertEqual(parsed, {"a": {"b": {"x": 'y"z', "list": ["p", "q"], "t": {"text": "MIT"}, "flag": True}}})
        for bad, line in (('[p]\nn = 1\n', 2), ('x = """multi\n', 1), ('x = ["a", 2]\n', 1), ("just words\n", 1)):
            with self.assertRaises(secd_wheel.BuildError) as caught:
                secd_wheel.parse_simple_toml(bad, "pyproject.toml")
            self.assertIn("pyproject.toml line %d" % line, str(caught.exception))


if __name__ == "__main__":
    unittest.main()
