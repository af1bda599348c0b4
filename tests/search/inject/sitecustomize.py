"""Test-only, loaded by a worker started with PYTHONPATH=tests/search/inject: the first trial evaluated whose number
is SIPA_TEST_HANG_TRIAL or later (one proposed again is answered, not evaluated), by whichever worker claims it first,
stays in flight (its MLflow run open, its heartbeat beating) until the test kills the worker, after writing the
trial's number to SIPA_TEST_HANG_MARK/<pid>. Everything else is `python src/search.py` unchanged.

Profile-evaluator trials take under a millisecond, so a SIGKILL sent at a random moment lands between trials as
often as in one, and which trial it interrupts is chance; holding one chosen trial makes "killed mid-trial" the
case every run, without making the other trials slow."""

import os

if os.environ.get("SIPA_TEST_HANG_TRIAL"):
    import time
    from pathlib import Path

    from sustainable_ipa.search import evaluators, study

    HANG = int(os.environ["SIPA_TEST_HANG_TRIAL"])
    MARK = Path(os.environ["SIPA_TEST_HANG_MARK"])
    current: list[int] = []
    real_suggest, real_evaluate = study.suggest, evaluators.ProfileEvaluator.evaluate

    def suggest(trial, space):
        current[:] = [trial.number]
        return real_suggest(trial, space)

    def evaluate(self, choice, parent_run_id=None):
        if current and current[0] >= HANG and claim():
            tmp = MARK / f".{os.getpid()}"
            tmp.write_text(str(current[0]))
            tmp.rename(MARK / str(os.getpid()))
            while True:
                time.sleep(60)
        return real_evaluate(self, choice, parent_run_id)

    def claim() -> bool:
        try:
            (MARK / ".claimed").mkdir()  # atomic: one worker of all holds a trial
            return True
        except FileExistsError:
            return False

    study.suggest = suggest
    evaluators.ProfileEvaluator.evaluate = evaluate
