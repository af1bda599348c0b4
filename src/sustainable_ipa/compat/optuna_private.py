"""Optuna names without a public equivalent (optuna==5.0.0 in requirements.lock), each with why no public API serves.
Public ones used elsewhere: `optuna.storages.GrpcStorageProxy`, `optuna.storages.get_storage` (the caching wrapper
that `run_grpc_proxy_server`'s docs prescribe for a proxy), `BaseStorage.get_trial_id_from_study_id_trial_number`."""

from __future__ import annotations

import abc

import optuna
# A point set's hypervolume: Optuna's only public hypervolume is `plot_hypervolume_history`, a figure of a study.
from optuna._hypervolume import compute_hypervolume
# What GrpcStorageProxy's `_setup` builds its client from; no public way to pass it another channel.
from optuna.storages._grpc.client import GrpcClientCache, create_insecure_channel
# Optuna runs heartbeat threads and fails stale trials only for storages that are instances of this class.
from optuna.storages._heartbeat import BaseHeartbeat

__all__ = ["compute_hypervolume", "Heartbeat", "InterceptedGrpcStorageProxy", "add_proxy_service",
           "optuna_table_names", "study_storage", "rdb_behind"]


class Heartbeat(BaseHeartbeat):
    """Optuna's heartbeat contract for a storage of our own, its one private hook under a public name."""

    @abc.abstractmethod
    def stale_trial_ids(self, study_id: int) -> list[int]:
        """IDs of the study's running trials whose heartbeat is stale."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:  # what `optuna.storages.fail_stale_trials` calls
        return self.stale_trial_ids(study_id)


class InterceptedGrpcStorageProxy(optuna.storages.GrpcStorageProxy):
    """Optuna's gRPC proxy client whose every call goes through `interceptor()`: GrpcStorageProxy makes its channel in
    `_setup`, called by its constructor (and on unpickling), with no parameter for an interceptor."""

    @abc.abstractmethod
    def interceptor(self):
        """A `grpc.UnaryUnaryClientInterceptor`; called once per channel made."""

    def _setup(self) -> None:
        import grpc  # grpc and its stubs: imported when a proxy is used, as Optuna itself does
        from optuna.storages._grpc.auto_generated import api_pb2_grpc

        self._channel = grpc.intercept_channel(create_insecure_channel(self._host, self._port), self.interceptor())
        self._stub = api_pb2_grpc.StorageServiceStub(self._channel)
        self._cache = GrpcClientCache(self._stub)


def add_proxy_service(server, storage: optuna.storages.BaseStorage) -> None:
    """Optuna's storage proxy service, serving `storage`, on a `grpc.Server` of our own making: the public
    `run_grpc_proxy_server` makes its own with SO_REUSEPORT on (a second proxy on a port in use would share it
    silently) and blocks from start to end, with no moment to say it listens nor a graceful stop."""
    from optuna.storages._grpc import servicer
    from optuna.storages._grpc.auto_generated import api_pb2_grpc

    api_pb2_grpc.add_StorageServiceServicer_to_server(servicer.OptunaStorageProxyService(storage), server)


def optuna_table_names() -> set[str]:
    """The tables of Optuna's RDB schema, from its SQLAlchemy models: no public API lists them."""
    from optuna.storages._rdb import models  # SQLAlchemy: imported when a database is opened, as Optuna does

    return set(models.BaseModel.metadata.tables)


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage object a study calls (`Study._storage`): no public accessor, and bench/bench_storage.py times its
    calls."""
    return study._storage


def rdb_behind(storage: optuna.storages.BaseStorage) -> optuna.storages.RDBStorage | None:
    """The RDBStorage inside the cache `create_study` wraps one in (`_CachedStorage._backend`), or None for another
    storage: the cache does not expose it, and bench/bench_storage.py closes its connections between jobs."""
    backend = getattr(storage, "_backend", None)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None
