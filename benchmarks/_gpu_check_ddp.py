"""Step 7 of gpu_check.sh (``--gpus N``): tests/_distributed_fit.py under
``torchrun --nproc_per_node=N`` with the GPUs visible (NCCL; gloo in the dry
run) and in one process, then the two compared as tests/test_distributed.py
does: every rank the same model, and the student's linear probe within 0.01.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "_distributed_fit.py")
sys.path.insert(0, os.path.join(ROOT, "tests"))
import _distributed_fit  # noqa: E402

nproc = int(sys.argv[1]) if len(sys.argv) > 1 else 2


def run(out, n):
    os.makedirs(out, exist_ok=True)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
    command = [sys.executable, *(launcher if n > 1 else []), SCRIPT, out]
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return [dict(np.load(os.path.join(out, f"rank{r}.npz"))) for r in range(n)]


def probe(result, y_train, y_test):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(result["train_features"], y_train)
    return model.score(result["test_features"], y_test)


with tempfile.TemporaryDirectory() as tmp:
    ranks = run(os.path.join(tmp, "many"), nproc)
    one = run(os.path.join(tmp, "one"), 1)[0]
_, _, y_train, y_test = _distributed_fit.data()
for rank in ranks[1:]:
    for key in ("labels", "train_features", "test_features"):
        np.testing.assert_array_equal(rank[key], ranks[0][key])
many, single = probe(ranks[0], y_train, y_test), probe(one, y_train, y_test)
agreement = np.mean(ranks[0]["labels"] == one["labels"])
print(f"{nproc} processes: every rank holds the same model; pseudo-label agreement with "
      f"one process {agreement:.4f}; linear probe {many:.4f} vs one process {single:.4f}")
assert abs(many - single) <= 0.01, (many, single)
