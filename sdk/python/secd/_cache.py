"""@secd.cache: keep a function's results across runs.

Compatible with the original secd package:
- results live in <mount_path>/cache in a secd run with a cache_dir (SECD_CACHE_DIR is the mount
  path), and in ./cache elsewhere;
- one file per call, named md5("<name>:<args>:<kwargs>:<md5 of the function's source>"), holding
  pickle((source md5, result));
- it prints "Using cached result for f", "Cache not found; recomputing f" or
  "Function code has changed; recomputing f".

What this version does differently, and why:
- The file is written to a temporary name and renamed, so a run stopped mid-write (runfor, a newer
  push) never leaves a truncated result that a later run would load. An unreadable file is
  recomputed, not an error.
- Arguments are keyed by their repr only where repr shows the whole value (None, bool, numbers,
  str, bytes, and lists, tuples and dicts of those): exactly the original's key. Any other value (a
  numpy array, whose repr elides the middle with "...", or an object whose repr is its address) is
  keyed by a hash of its pickle, so two different arrays never share a result. Sets are keyed sorted,
  since their order changes between processes. A call whose arguments cannot be pickled runs
  without the cache (with a warning).
- The key covers the function's own source only: a change in a function it calls does not
  invalidate it (as in the original). Change the cached function, or its arguments, to recompute.
"""

import functools
import hashlib
import inspect
import marshal
import os
import pickle
import sys
import tempfile

from ._env import is_production

_FAITHFUL_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def cache_dir():
    """Where @cache keeps results now: <SECD_CACHE_DIR>/cache in a run with a cache, else ./cache."""
    mount = os.environ.get("SECD_CACHE_DIR")
    if is_production() and mount:
        return os.path.join(mount, "cache")
    return "cache"


def _source_hash(func):
    try:
        text = inspect.getsource(func)
    except (OSError, TypeError):
        # Defined where no source file exists (exec, a REPL): its compiled code stands in.
        code = getattr(func, "__code__", None)
        data = marshal.dumps(code) if code is not None else repr(func).encode()
        return hashlib.md5(data).hexdigest()
    return hashlib.md5(text.encode()).hexdigest()


def _faithful(value, depth=0):
    """True when repr(value) determines value (so the original's repr-based key is safe)."""
    if depth > 20:
        return False
    kind = type(value)
    if kind in _FAITHFUL_SCALARS:
        return True
    if kind in (tuple, list):
        return all(_faithful(v, depth + 1) for v in value)
    if kind is dict:
        return all(_faithful(k, depth + 1) and _faithful(v, depth + 1) for k, v in value.items())
    return False


class _Unkeyable(Exception):
    pass


def _describe(value, depth=0):
    """A text that identifies value by content, for values whose repr does not."""
    if _faithful(value, depth):
        return repr(value)
    kind = type(value)
    if depth <= 20 and kind in (tuple, list):
        inner = ", ".join(_describe(v, depth + 1) for v in value)
        if kind is list:
            return "[%s]" % inner
        return "(%s,)" % inner if len(value) == 1 else "(%s)" % inner
    if depth <= 20 and kind is dict:
        return "{%s}" % ", ".join("%s: %s" % (_describe(k, depth + 1), _describe(v, depth + 1)) for k, v in value.items())
    if depth <= 20 and kind in (set, frozenset):
        return "%s({%s})" % (kind.__name__, ", ".join(sorted(_describe(v, depth + 1) for v in value)))
    try:
        data = pickle.dumps(value, protocol=4)
    except Exception as err:
        raise _Unkeyable("%s.%s cannot be pickled (%s)" % (kind.__module__, kind.__qualname__, err))
    return "<%s.%s sha256:%s>" % (kind.__module__, kind.__qualname__, hashlib.sha256(data).hexdigest())


def _cache_key(func, args, kwargs, source_hash):
    if _faithful(args) and _faithful(kwargs):
        key = f"{func.__name__}:{args}:{kwargs}:{source_hash}"  # the original package's key
    else:
        key = f"{func.__name__}:{_describe(args)}:{_describe(kwargs)}:{source_hash}"
    return hashlib.md5(key.encode()).hexdigest()


def _load(path, source_hash):
    """(True, result) when path holds a result of this source, else (False, reason)."""
    try:
        with open(path, "rb") as f:
            stored = pickle.load(f)
    except FileNotFoundError:
        return False, "missing"
    except Exception:
        return False, "unreadable"
    if not (isinstance(stored, tuple) and len(stored) == 2):
        return False, "unreadable"
    if stored[0] != source_hash:
        return False, "changed"
    return True, stored[1]


def _store(directory, path, source_hash, result):
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump((source_hash, result), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def cache(func):
    """Decorator: return the stored result of an earlier call with the same source and arguments."""
    source_hash = None

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        nonlocal source_hash
        if source_hash is None:
            source_hash = _source_hash(func)
        name = func.__name__
        try:
            key = _cache_key(func, args, kwargs, source_hash)
        except _Unkeyable as err:
            print("secd.cache: not caching %s: %s" % (name, err), file=sys.stderr, flush=True)
            return func(*args, **kwargs)
        directory = cache_dir()
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, key)
        hit, value = _load(path, source_hash)
        if hit:
            print("Using cached result for %s" % name, flush=True)
            return value
        if value == "changed":
            print("Function code has changed; recomputing %s" % name, flush=True)
        else:
            print("Cache not found; recomputing %s" % name, flush=True)
        result = func(*args, **kwargs)
        try:
            _store(directory, path, source_hash, result)
        except Exception as err:
            print("secd.cache: could not store the result of %s: %s" % (name, err), file=sys.stderr, flush=True)
        return result

    return wrapper
