"""The private Optuna names behind sustainable_ipa.compat.optuna_private, checked against the pinned version: an
upgrade that moves, reshapes or stops calling one fails here, naming it, before anything else breaks quietly."""

import importlib
import inspect
import pickle
import warnings

import grpc
import numpy as np
import optuna
import pytest

from sustainable_ipa.compat.optuna_private import (Heartbeat, InterceptedGrpcStorageProxy, compute_hypervolume,
                                                   optuna_table_names, rdb_behind, study_storage)

PRIVATE = [  # (dotted name, the parameters the compat module passes)
    ("optuna._hypervolume.compute_hypervolume", ["loss_vals", "reference_point", "assume_pareto"]),
    ("optuna.storages._heartbeat.BaseHeartbeat._get_stale_trial_ids", ["self", "study_id"]),
    ("optuna.storages.GrpcStorageProxy._setup", ["self"]),
    ("optuna.storages._grpc.client.create_insecure_channel", ["host", "port"]),
    ("optuna.storages._grpc.client.GrpcClientCache", ["grpc_client"]),
    ("optuna.storages._grpc.auto_generated.api_pb2_grpc.StorageServiceStub", ["channel"]),
    ("optuna.storages._grpc.auto_generated.api_pb2_grpc.add_StorageServiceServicer_to_server", ["servicer", "server"]),
    ("optuna.storages._grpc.servicer.OptunaStorageProxyService", ["storage"]),
    ("optuna.storages._rdb.models.BaseModel.metadata", None),
]


def resolve(dotted: str):
    """The object a dotted name names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            found = getattr(found, attr)
        return found
    raise ImportError(dotted)


@pytest.mark.parametrize("name, parameters", PRIVATE, ids=[name for name, _ in PRIVATE])
def test_each_private_name_exists_with_the_parameters_the_compat_module_passes(name, parameters):
    where = f"optuna {optuna.__version__}: {name}, used by sustainable_ipa/compat/optuna_private.py"
    try:
        found = resolve(name)
    except (ImportError, AttributeError) as err:
        pytest.fail(f"{where}, is gone ({err})")
    if parameters is not None:
        assert list(inspect.signature(found).parameters) == parameters, f"{where}, takes other parameters"


def test_compute_hypervolume_is_the_area_dominated_below_the_reference():
    loss = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert compute_hypervolume(loss, np.array([3.0, 3.0])) == pytest.approx(3.0)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::optuna.exceptions.ExperimentalWarning")
def test_fail_stale_trials_fails_what_a_heartbeat_storage_calls_stale():
    class StaleRunning(Heartbeat, optuna.storages.InMemoryStorage):
        def record_heartbeat(self, trial_id):
            pass

        def stale_trial_ids(self, study_id):
            running = self.get_all_trials(study_id, states=(optuna.trial.TrialState.RUNNING,))
            return [self.get_trial_id_from_study_id_trial_number(study_id, t.number) for t in running]

        def get_heartbeat_interval(self):
            return 1

        def get_heartbeat_stale_trial_callback(self):
            return None

    study = optuna.create_study(storage=StaleRunning())
    study.ask()
    optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.get_trials()]
    assert states == [optuna.trial.TrialState.FAIL], (
        f"optuna {optuna.__version__}: fail_stale_trials no longer calls BaseHeartbeat._get_stale_trial_ids, which "
        "sustainable_ipa/compat/optuna_private.py's Heartbeat implements")


class Refused(Exception):
    pass


class RefuseEveryCall(grpc.UnaryUnaryClientInterceptor):
    def intercept_unary_unary(self, continuation, details, request):
        raise Refused(details.method)


class RefusingProxy(InterceptedGrpcStorageProxy):
    def interceptor(self):
        return RefuseEveryCall()


def test_every_call_of_the_grpc_proxy_client_goes_through_the_interceptor_also_after_pickling():
    where = (f"optuna {optuna.__version__}: GrpcStorageProxy no longer makes its channel in _setup or calls through "
             "self._stub, which sustainable_ipa/compat/optuna_private.py replaces")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = RefusingProxy(host="localhost", port=1)  # no server: the interceptor refuses before any connection
    for client in (proxy, pickle.loads(pickle.dumps(proxy))):
        try:
            client.get_all_studies()
        except Refused:
            continue
        except grpc.RpcError:  # a call that reached for the server: not through the interceptor
            pass
        pytest.fail(where)
    proxy.close()


def test_optunas_table_names_are_its_schema_without_alembics():
    names = optuna_table_names()
    assert {"studies", "trials", "trial_values"} <= names
    assert "alembic_version" not in names  # MLflow's store has one too: it must not read as Optuna's


def test_a_studys_storage_and_the_database_behind_optunas_cache(tmp_path):
    rdb = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(storage=rdb)
    assert isinstance(study_storage(study), optuna.storages.BaseStorage)
    assert rdb_behind(study_storage(study)) is rdb
    assert rdb_behind(optuna.storages.InMemoryStorage()) is None
    rdb.engine.dispose()
