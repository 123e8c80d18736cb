"""The run's environment as secd sets it (OUTPUT_PATH, SECD, SECD_DATASETS)."""

import json
import os


def is_production():
    """True inside a secd run (the node sets SECD=PRODUCTION)."""
    return os.environ.get("SECD") == "PRODUCTION"


def get_output_path():
    """The folder whose contents secd pushes back: $OUTPUT_PATH in a run, ./output elsewhere.

    The folder is created if it is missing.
    """
    path = os.environ.get("OUTPUT_PATH") or "output"
    os.makedirs(path, exist_ok=True)
    return path


def datasets():
    """The run's datasets by name, as secd granted them.

    Each value is {"kind": "mysql", "database": <MySQL database>} or
    {"kind": "path", "path": "/datasets/<name>"}. Empty outside secd or when nothing was granted.
    """
    text = os.environ.get("SECD_DATASETS")
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def dataset_path(name):
    """Where the file dataset `name` is mounted (read-only) in the run: /datasets/<name>."""
    entry = datasets().get(name)
    if entry is None:
        raise KeyError(
            "dataset %r was not given to this run (granted: %s)" % (name, ", ".join(sorted(datasets())) or "none")
        )
    if entry.get("kind") != "path":
        raise ValueError("dataset %r is a MySQL database: read it with secd.connect(%r)" % (name, name))
    return entry["path"]
