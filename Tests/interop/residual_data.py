"""Writes a small labelled data file for the residual test model from its fixture inputs
(Tests/PruneCheckTests/Fixtures/pytorch-extra/resnetish.npz), so `prunecheck prune` can run on
it in `make interop`. The labels are arbitrary: the check compares outputs, not accuracy."""
import sys

import numpy as np

r = np.load("Tests/PruneCheckTests/Fixtures/pytorch-extra/resnetish.npz")
x = r["input"].astype(np.float32)
labels = np.arange(len(x)) % 10
np.savez(sys.argv[1], x_train=x, y_train=labels, x_test=x, y_test=labels)
