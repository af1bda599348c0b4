"""The study tests' config: a tiny space of fast variants, one profiling round, a store under the test's folder."""

from __future__ import annotations

import pytest

from study_workers import SEARCH_TINY, write_fake_profiles


@pytest.fixture
def search_cfg(make_cfg, tmp_path):
    """`search_cfg(*overrides)`: the config, its space's profiles made up in the cache (the study tests are about
    the study: tests/search/test_profil*.py measure profiles); `measure=True`: none made up, the job profiles."""
    def make(*overrides, measure: bool = False):
        cfg = make_cfg(*SEARCH_TINY, f"search.storage=sqlite:///{tmp_path}/optuna.db",
                       f"profiling.cache_dir={tmp_path}/profiles", *overrides)
        if not measure:
            write_fake_profiles(cfg)
        return cfg
    return make
