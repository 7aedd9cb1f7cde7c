"""Marks shared by the storage contract tests."""

import pytest

# For tests that race threads against one store. mongomock keeps its data in Python
# structures and runs an update, a find_one_and_update or a delete as a read and then a
# write, so two threads may both read a counter before either bumps it: it is not a
# double for atomic single-document operations. These tests run where they are atomic.
ON_ATOMIC_BACKENDS = pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("mongodb", marks=pytest.mark.mongodb)], indirect=True
)
