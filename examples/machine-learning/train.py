"""Predict readmission from a clinic's visits: read the `clinic` dataset over secd.connect(), clean
it (cached across runs with @secd.cache), train a logistic regression in numpy, and write the model
and its metrics to the outputs folder, which secd pushes back as a results branch.
"""

import json
import os
import time

import numpy as np

import secd

FEATURES = ["age", "bmi", "systolic_bp", "smoker"]
SMOKER_WORDS = {"yes": 1.0, "y": 1.0, "smoker": 1.0, "no": 0.0, "n": 0.0, "non-smoker": 0.0}


def load_visits():
    """Every visit, as rows of plain Python values (the database is only read, never changed)."""
    with secd.connect("clinic") as db:
        with db.cursor() as cursor:
            cursor.execute("SELECT age, bmi, systolic_bp, smoker, readmitted FROM visits ORDER BY id")
            return cursor.fetchall()


@secd.cache
def clean(rows):
    """Drop rows a clinician would not trust and turn the rest into a feature matrix."""
    features, labels, dropped = [], [], 0
    for age, bmi, bp, smoker, readmitted in rows:
        smokes = SMOKER_WORDS.get((smoker or "").strip().lower())
        if age is None or not 0 < age < 120 or bmi is None or bp is None or smokes is None:
            dropped += 1
            continue
        features.append([float(age), float(bmi), float(bp), smokes])
        labels.append(float(readmitted))
    print("cleaned %d visits, dropped %d" % (len(labels), dropped), flush=True)
    return np.array(features), np.array(labels), dropped


def train(x, y, epochs=3000, rate=0.5, l2=1e-3):
    """Logistic regression by gradient descent on standardised features."""
    weights = np.zeros(x.shape[1])
    bias = 0.0
    for _ in range(epochs):
        p = 1.0 / (1.0 + np.exp(-(x @ weights + bias)))
        error = p - y
        weights -= rate * (x.T @ error / len(y) + l2 * weights)
        bias -= rate * error.mean()
    return weights, bias


def main():
    started = time.time()
    rows = load_visits()
    x, y, dropped = clean(rows)
    mean, std = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / std
    # A fixed split: every fifth visit is held out, so reruns give the same metrics.
    test = np.arange(len(y)) % 5 == 0
    weights, bias = train(z[~test], y[~test])
    p = 1.0 / (1.0 + np.exp(-(z[test] @ weights + bias)))
    eps = 1e-12
    metrics = {
        "visits_read": len(rows),
        "visits_dropped": dropped,
        "train_size": int((~test).sum()),
        "test_size": int(test.sum()),
        "test_accuracy": float(((p >= 0.5) == (y[test] == 1)).mean()),
        "test_log_loss": float(-np.mean(y[test] * np.log(p + eps) + (1 - y[test]) * np.log(1 - p + eps))),
        "baseline_accuracy": float(max(y[test].mean(), 1 - y[test].mean())),
        "seconds": round(time.time() - started, 3),
        "production": secd.is_production(),
    }
    model = {
        "features": FEATURES,
        "weights": [float(w) for w in weights],
        "bias": float(bias),
        "standardise": {"mean": [float(m) for m in mean], "std": [float(s) for s in std]},
    }
    out = secd.get_output_path()
    with open(os.path.join(out, "model.json"), "w") as f:
        json.dump(model, f, indent=2)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(json.dumps(metrics), flush=True)


if __name__ == "__main__":
    main()
