"""Builds the secd SDK's wheel (and sdist) with the standard library only: a PEP 517 backend.

The cluster has no package index and a researcher's laptop may have no network, so the build must not
fetch setuptools. A pure-Python wheel is a zip with a fixed layout, written here directly:

    secd/...                          the package, as in sdk/python/secd (compiled caches left out)
    secd-<version>.dist-info/METADATA core metadata 2.1 from pyproject.toml [project], README as body
    secd-<version>.dist-info/WHEEL    Root-Is-Purelib, Tag: py3-none-any
    secd-<version>.dist-info/RECORD   every file's urlsafe-base64 sha256 and size; RECORD itself last

The bytes depend only on the sources: entries sorted, each dated SOURCE_DATE_EPOCH (else 1980-01-01,
the earliest a zip can say) with fixed permissions, so two builds of one tree give one wheel.

Used three ways: `npm run build` runs this file
(`python3 sdk/python/build_backend/secd_wheel.py dist/sdk --package-json package.json`), which also
refuses a version out of step with secd's; pip calls build_wheel/build_sdist for `pip install ./sdk/python`;
the tests import it.
"""

import base64
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import time
import zipfile

PURE_TAG = "py3-none-any"
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


class BuildError(Exception):
    """A problem in the sources that stops the build; the message names the file and the field."""


# ---------------------------------------------------------------------------------------- pyproject


def _load_toml(text, where):
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        return parse_simple_toml(text, where)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BuildError("%s: %s" % (where, err))


_KEY = r"[A-Za-z0-9_-]+"
_STRING = r'"(?:[^"\\]|\\.)*"'


def _toml_string(token, where, line_no):
    # A TOML basic string is a JSON string but for \U escapes, which this package does not use.
    try:
        return json.loads(token)
    except ValueError:
        raise BuildError("%s line %d: cannot read the string %s" % (where, line_no, token))


def _toml_value(text, where, line_no):
    text = text.strip()
    if re.fullmatch(_STRING, text):
        return _toml_string(text, where, line_no)
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("["):
        if not re.fullmatch(r"\[\s*(?:%s\s*,\s*)*(?:%s\s*,?\s*)?\]" % (_STRING, _STRING), text):
            raise BuildError("%s line %d: only one-line arrays of strings are understood here: %s" % (where, line_no, text))
        return [_toml_string(s, where, line_no) for s in re.findall(_STRING, text)]
    m = re.fullmatch(r"\{(.*)\}", text)
    if m:
        table = {}
        for part in filter(None, (p.strip() for p in m.group(1).split(","))):
            k, eq, v = part.partition("=")
            if not eq or not re.fullmatch(_KEY, k.strip()):
                raise BuildError("%s line %d: cannot read inline table entry %r" % (where, line_no, part))
            table[k.strip()] = _toml_value(v, where, line_no)
        return table
    raise BuildError("%s line %d: only strings, booleans, string arrays and inline tables are understood here: %s" % (where, line_no, text))


def parse_simple_toml(text, where="pyproject.toml"):
    """The TOML this package's pyproject.toml uses, for Pythons without tomllib (before 3.11).

    Tables, dotted table names, and one-line values: strings, booleans, arrays of strings, inline
    tables. Anything else is an error naming the line, never a silent misreading.
    """
    root = {}
    table = root
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"\[\s*(%s(?:\.%s)*)\s*\](\s*#.*)?" % (_KEY, _KEY), line)
        if m:
            table = root
            for part in m.group(1).split("."):
                table = table.setdefault(part, {})
            continue
        m = re.fullmatch(r"(%s)\s*=\s*(.+?)(\s+#[^\"]*)?" % _KEY, line)
        if not m:
            raise BuildError("%s line %d: cannot read %r" % (where, line_no, raw))
        table[m.group(1)] = _toml_value(m.group(2), where, line_no)
    return root


def read_project(source_dir):
    """pyproject.toml's [project] table, checked for what the wheel needs."""
    path = os.path.join(source_dir, "pyproject.toml")
    with open(path, encoding="utf-8") as f:
        project = _load_toml(f.read(), path).get("project")
    if not isinstance(project, dict):
        raise BuildError("%s has no [project] table" % path)
    for key in ("name", "version"):
        if not isinstance(project.get(key), str) or not project[key]:
            raise BuildError("%s: [project] %s must be a non-empty string" % (path, key))
    if not re.fullmatch(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*", project["name"]):
        raise BuildError("%s: [project] name %r is not a valid package name" % (path, project["name"]))
    if not re.fullmatch(r"\d+(?:\.\d+)*(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?", project["version"]):
        raise BuildError("%s: [project] version %r is not a PEP 440 release version" % (path, project["version"]))
    return project


def _dist_name(project):
    """The name as wheel file names spell it (PEP 427: runs of -_. become _)."""
    return re.sub(r"[-_.]+", "_", project["name"])


def wheel_name(project):
    return "%s-%s-%s.whl" % (_dist_name(project), project["version"], PURE_TAG)


def metadata_text(source_dir, project):
    """Core metadata 2.1 (METADATA in the wheel, PKG-INFO in the sdist)."""
    lines = ["Metadata-Version: 2.1", "Name: %s" % project["name"], "Version: %s" % project["version"]]
    if project.get("description"):
        lines.append("Summary: %s" % project["description"])
    license_ = project.get("license")
    if isinstance(license_, dict) and license_.get("text"):
        lines.append("License: %s" % license_["text"])
    if project.get("requires-python"):
        lines.append("Requires-Python: %s" % project["requires-python"])
    for dep in project.get("dependencies", []):
        lines.append("Requires-Dist: %s" % dep)
    for extra, deps in sorted(project.get("optional-dependencies", {}).items()):
        lines.append("Provides-Extra: %s" % extra)
        for dep in deps:
            lines.append('Requires-Dist: %s; extra == "%s"' % (dep, extra))
    body = ""
    readme = project.get("readme")
    if isinstance(readme, str):
        try:
            with open(os.path.join(source_dir, readme), encoding="utf-8") as f:
                body = f.read()
        except OSError as err:
            raise BuildError("pyproject.toml names readme %r, which cannot be read: %s" % (readme, err.strerror))
        lines.append("Description-Content-Type: %s" % ("text/markdown" if readme.endswith(".md") else "text/plain"))
    return "\n".join(lines) + "\n\n" + body


# -------------------------------------------------------------------------------------------- files


def package_files(source_dir, package):
    """(path in the archive, bytes) of every file of the package, sorted; caches and links left out."""
    root = os.path.join(source_dir, package)
    if not os.path.isfile(os.path.join(root, "__init__.py")):
        raise BuildError("%s is not a Python package (no __init__.py)" % root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS and not os.path.islink(os.path.join(dirpath, d)))
        for name in filenames:
            full = os.path.join(dirpath, name)
            if name.endswith(_SKIPPED_SUFFIXES) or os.path.islink(full) or not os.path.isfile(full):
                continue
            rel = os.path.relpath(full, source_dir).replace(os.sep, "/")
            with open(full, "rb") as f:
                found.append((rel, f.read()))
    return sorted(found)


_ZIP_EPOCH = 315532800  # 1980-01-01 00:00:00 UTC: a zip cannot say anything earlier


def _epoch():
    """The date every archive entry carries: SOURCE_DATE_EPOCH (reproducible builds), else 1980-01-01."""
    given = os.environ.get("SOURCE_DATE_EPOCH", "")
    return max(int(given), _ZIP_EPOCH) if given.isdigit() else _ZIP_EPOCH


def _record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _zip_entry(zf, name, data, date_time):
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so that the permission bits below mean what they say everywhere
    info.external_attr = 0o100644 << 16
    zf.writestr(info, data, compresslevel=9)


def wheel_bytes(source_dir):
    """(file name, bytes) of the wheel of the package in source_dir."""
    project = read_project(source_dir)
    dist_info = "%s-%s.dist-info" % (_dist_name(project), project["version"])
    package = _dist_name(project)
    entries = package_files(source_dir, package)
    entries.append(("%s/METADATA" % dist_info, metadata_text(source_dir, project).encode("utf-8")))
    wheel = "Wheel-Version: 1.0\nGenerator: secd_wheel\nRoot-Is-Purelib: true\nTag: %s\n" % PURE_TAG
    entries.append(("%s/WHEEL" % dist_info, wheel.encode()))
    entries.append(("%s/top_level.txt" % dist_info, ("%s\n" % package).encode()))
    record = "".join("%s,%s,%d\n" % (name, _record_hash(data), len(data)) for name, data in entries)
    record += "%s/RECORD,,\n" % dist_info
    entries.append(("%s/RECORD" % dist_info, record.encode()))

    buffer = io.BytesIO()
    date_time = time.gmtime(_epoch())[:6]
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries:
            _zip_entry(zf, name, data, date_time)
    return wheel_name(project), buffer.getvalue()


def sdist_bytes(source_dir):
    """(file name, bytes) of a source archive pip or `python -m build` can build the wheel from."""
    project = read_project(source_dir)
    base = "%s-%s" % (_dist_name(project), project["version"])
    files = package_files(source_dir, _dist_name(project))
    files += [(rel, _read(source_dir, rel)) for rel in ("pyproject.toml", "build_backend/secd_wheel.py")]
    if isinstance(project.get("readme"), str):
        files.append((project["readme"], _read(source_dir, project["readme"])))
    files.append(("PKG-INFO", metadata_text(source_dir, project).encode("utf-8")))
    mtime = _epoch()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, data in sorted(files):
            info = tarfile.TarInfo("%s/%s" % (base, rel))
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    return base + ".tar.gz", gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def _read(source_dir, rel):
    with open(os.path.join(source_dir, rel), "rb") as f:
        return f.read()


def _write(directory, name, data):
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, ".%s.partial" % name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(directory, name))
    return name


# ------------------------------------------------------------------------------ PEP 517 interface


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    """PEP 517: write the wheel into wheel_directory and return its file name (cwd is the source tree)."""
    name, data = wheel_bytes(os.getcwd())
    return _write(wheel_directory, name, data)


def build_sdist(sdist_directory, config_settings=None):
    """PEP 517: write the source archive into sdist_directory and return its file name."""
    name, data = sdist_bytes(os.getcwd())
    return _write(sdist_directory, name, data)


# --------------------------------------------------------------------------------------------- CLI


def package_json_version(path):
    try:
        with open(path, encoding="utf-8") as f:
            version = json.load(f).get("version")
    except (OSError, ValueError) as err:
        raise BuildError("cannot read the version of secd from %s: %s" % (path, err))
    if not isinstance(version, str):
        raise BuildError("%s has no string \"version\"" % path)
    return version


def build_into(out_dir, source_dir, package_json=None):
    """Write the wheel into out_dir, replacing earlier secd wheels there; returns its path."""
    project = read_project(source_dir)
    if package_json is not None:
        expected = package_json_version(package_json)
        if project["version"] != expected:
            raise BuildError(
                "the SDK's version %s (%s) is not secd's version %s (%s): set [project] version to %s"
                % (project["version"], os.path.join(source_dir, "pyproject.toml"), expected, package_json, expected)
            )
    name, data = wheel_bytes(source_dir)
    if os.path.isdir(out_dir):
        prefix = "%s-" % _dist_name(project)
        for old in os.listdir(out_dir):
            if old.startswith(prefix) and old.endswith(".whl") and old != name:
                os.unlink(os.path.join(out_dir, old))
    return os.path.join(out_dir, _write(out_dir, name, data))


def main(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="secd_wheel.py", description="Build the secd SDK's wheel into OUT_DIR.")
    parser.add_argument("out_dir")
    parser.add_argument("--source", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), help="the SDK folder (default: this file's parent)")
    parser.add_argument("--package-json", help="secd's package.json: refuse to build when its version differs")
    args = parser.parse_args(argv)
    try:
        path = build_into(args.out_dir, args.source, args.package_json)
    except BuildError as err:
        print("secd_wheel: %s" % err, file=sys.stderr)
        return 2
    print("secd_wheel: built %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
