"""profiling.lazy=true: the study profiles each option when a trial first needs it, and only that."""

from __future__ import annotations

import csv
import re

import optuna
import pytest
from rich.console import Console

from helpers import runs_by_status
from sustainable_ipa.errors import UserError
from sustainable_ipa.fingerprint import this_machine
from sustainable_ipa.search.configurations import is_new_configuration
from sustainable_ipa.search.lazy_profiles import choice_space
from sustainable_ipa.search.profiler import cache_path, missing_profiles
from sustainable_ipa.search.search_job import search_job
from sustainable_ipa.search.space import SearchSpace, StageChoice, PipelineChoice


def test_the_part_of_the_space_a_choice_needs_is_its_lines_over_every_batch_size(search_cfg):
    cfg = search_cfg()
    space = SearchSpace.from_config(cfg.search.space, cfg.pipeline, 3)
    choice = PipelineChoice(detector=StageChoice("yolov5n", 2, 1, 2, "fp32", "torch"),
                            classifier=StageChoice("resnet34", 1, 1, 1, "fp32", "torch"))
    keys = missing_profiles(choice_space(space, choice), None)
    assert sorted(keys) == sorted([("detector", "yolov5n", b, 1, "fp32", "torch") for b in (1, 2)]
                                  + [("classifier", "resnet34", b, 1, "fp32", "torch") for b in (1, 4)])


def test_a_lazy_study_profiles_only_the_options_its_trials_visit(search_cfg, client, tmp_path):
    console = Console(record=True, width=300)
    cfg = search_cfg("search.n_trials=2", "profiling.lazy=true", measure=True)
    outcome = search_job(cfg, console)
    text = console.export_text()
    # the plan first: what the whole space would take at most
    space = SearchSpace.from_config(cfg.search.space, cfg.pipeline, 3)
    whole = len(missing_profiles(space, None))
    assert re.search(rf"profiling plan \(profiling.lazy=true\): {whole} profiles in the space, 0 cached; each option "
                     r"is profiled when a trial first needs it: at most \d+ timed", text)
    assert text.index("profiling plan") < re.search(r"(?m)^profiled ", text).start()
    # what was profiled is exactly the lines of the configurations evaluated, over their batch sizes
    visited = [space.choice_from_params(t.params) for t in outcome.study.trials
               if t.state == optuna.trial.TrialState.COMPLETE and is_new_configuration(t)]
    needed = {key for choice in visited for key in missing_profiles(choice_space(space, choice), None)}
    with open(cache_path(tmp_path / "profiles", "cpu", this_machine())) as f:
        cached = {(r["stage"], r["variant"], int(r["batch_size"]), int(r["threads"]), r["precision"], r["runtime"])
                  for r in csv.DictReader(f)}
    assert cached == needed and len(cached) < whole
    [profiling] = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                     filter_string="tags.adaptation = 'profiling'")
    assert profiling.info.status == "FINISHED" and profiling.data.params["profiling.lazy"] == "True"
    timed, fitted = int(profiling.data.params["profiles_timed"]), int(profiling.data.params["profiles_fitted"])
    assert timed + fitted == len(needed)
    assert not runs_by_status(client, "RUNNING")
    # a second study drawing the same options (the same seed) profiles nothing: they are cached
    again = Console(record=True, width=300)
    search_job(search_cfg("search.n_trials=2", "profiling.lazy=true", "search.study_name=again", measure=True), again)
    assert not re.search(r"(?m)^profiled ", again.export_text()) and " 0 cached" not in again.export_text()


def test_lazy_profiling_and_a_budget_are_one_clear_line(search_cfg):
    with pytest.raises(UserError, match="profiling.lazy=true and profiling.budget_s=60") as err:
        search_job(search_cfg("profiling.lazy=true", "profiling.budget_s=60", measure=True))
    assert "\n" not in str(err.value)
