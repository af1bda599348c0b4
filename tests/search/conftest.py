"""The study tests' config: a tiny space of fast variants, one profiling round, a store under the test's folder."""

from __future__ import annotations

import pytest

from study_workers import SEARCH_TINY


@pytest.fixture
def search_cfg(make_cfg, tmp_path):
    def make(*overrides):
        return make_cfg(*SEARCH_TINY, f"search.storage=sqlite:///{tmp_path}/optuna.db",
                        f"profiling.cache_dir={tmp_path}/profiles", *overrides)
    return make
