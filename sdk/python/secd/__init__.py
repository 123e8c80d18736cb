"""The secd SDK: what a research project uses inside a secd run (and on a laptop, unchanged).

    import secd

    out = secd.get_output_path()          # /outputs in a run, ./output elsewhere
    if secd.is_production(): ...          # True inside a secd run

    @secd.cache                           # results kept across runs in the cache mount
    def clean(rows): ...

    with secd.connect() as db: ...        # PyMySQL connection to the run's datasets

Only the standard library (and PyMySQL, for connect) is used.
"""

from ._cache import cache, cache_dir
from ._env import dataset_path, datasets, get_output_path, is_production
from ._db import connect

__all__ = [
    "cache",
    "cache_dir",
    "connect",
    "dataset_path",
    "datasets",
    "get_output_path",
    "is_production",
]
