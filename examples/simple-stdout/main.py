"""Print a small summary and nothing else: secd returns what a run prints as _secd/run.log."""
import platform
import statistics

import secd

readings = [36.6, 37.1, 36.9, 38.2, 37.4, 36.8, 37.0]

print("simple-stdout: %d readings" % len(readings))
print("mean %.2f, median %.2f, max %.1f" % (statistics.mean(readings), statistics.median(readings), max(readings)))
print("in a secd run: %s (Python %s)" % (secd.is_production(), platform.python_version()))
