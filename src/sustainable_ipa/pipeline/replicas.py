"""Stage replicas: each a worker process pinned to cores of its own (IPA's container per stage), or a thread.

Processes, because PyTorch's intra-op thread count is process-global in practice: replica threads of one process
all end up with whichever count was set last, and the OS cannot say which stage used which CPU time. A worker
process sets its CPU affinity and torch threads once, and its CPU time is its stage's (`ReplicaReport`).

Forkserver, not fork: GNU OpenMP (libgomp, which torch's Linux wheels ship) is not fork-safe, so a child forked
after the parent ran a parallel region hangs at its own first one (GCC bug 60035, pytorch issues 41197 and 89693;
reproduced with torch 2.14.1 here). The parent has always run models by the time a runner starts, so workers are
forked from multiprocessing's forkserver instead: a fresh interpreter that imports torch and the models' modules
once (`PRELOAD`, and the modules of the pipeline's families) and never runs an op; a worker then starts in about
0.1 s. `prestart(modules)` starts that server early, so that its imports overlap with the parent's model building.

Each stage is written once with `torch.save` and memory-mapped by every replica (`torch.load(mmap=True)`): the
workers run on the parent's very weights, stored once in memory however many replicas there are.

Items travel pickled through one pipe per replica: a request to the worker, its reply back, nothing else. The first
stage's items are the requests' inputs, which the runner keeps alive through the run and which repeat when requests
cycle over a dataset: each is sent to a worker once per run and then named by its id (`InputCache`, the last
`INPUT_CACHE` of them; a frame is ~2.7 MB, ~4 ms to pickle and unpickle). Timestamps are `time.perf_counter()` in
whichever process takes them: CLOCK_MONOTONIC on Linux, one clock for all processes.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import time
import traceback
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch

from sustainable_ipa.pipeline.stage import ItemResult, StageSpec

ISOLATIONS = ("processes", "threads")

# Imported once by the forkserver, so that workers fork with them loaded; a module missing here is imported by each
# worker that unpickles a stage needing it (seconds for ultralytics or transformers), never an error. The modules of
# the pipeline's families are added by `prestart`.
PRELOAD = ["torch", "numpy", "sustainable_ipa.pipeline.replicas"]
_preload = list(PRELOAD)

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
INPUT_CACHE = 32  # first-stage items a worker keeps per run


class InputCache:
    """The last `INPUT_CACHE` items sent, keyed by their id in the parent, kept alike on both ends: the parent's
    copy decides what to send, the worker's holds the items. Both see the same keys in the same order, so they evict
    alike. Only for items alive through the whole run (an id is unique only while its object lives)."""

    def __init__(self):
        self.items: OrderedDict[int, object] = OrderedDict()

    def clear(self) -> None:
        self.items.clear()

    def encode(self, batch: list) -> list[tuple[int, object]]:
        """Parent side: (key, item), or (key, None) for an item the worker holds."""
        wire = []
        for item in batch:
            key = id(item)
            wire.append((key, None if key in self.items else item))
            self._keep(key, None)
        return wire

    def decode(self, wire: list[tuple[int, object]]) -> list:
        """Worker side: the items, from the wire or from the cache."""
        batch = []
        for key, item in wire:
            item = self.items[key] if item is None else item
            self._keep(key, item)
            batch.append(item)
        return batch

    def _keep(self, key: int, item: object) -> None:
        if key in self.items:
            self.items.move_to_end(key)
            return
        self.items[key] = item
        if len(self.items) > INPUT_CACHE:
            self.items.popitem(last=False)


@dataclass(frozen=True)
class ReplicaReport:
    """One replica over one run, measured inside its worker process (nothing here is read back from settings)."""

    stage: str
    index: int
    pid: int
    cores: tuple[int, ...]  # the worker's CPU affinity
    torch_threads: int  # torch.get_num_threads() in the worker
    busy_threads: int  # the worker's OS threads that used CPU in the run (≥ 10 % of the busiest one's CPU time)
    cpu_s: float  # CPU time of the worker over the run, all its threads: the core-seconds its stage used


class WorkerDied(RuntimeError):
    """A worker process ended without being asked to (killed, crashed in native code)."""


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_preload)  # read when the server starts; once it runs, this changes nothing
    return ctx


def prestart(modules: Sequence[str] = ()) -> None:
    """Start the forkserver now, importing `modules` too (the pipeline's families): its imports take seconds and can
    overlap with the parent's own work."""
    from multiprocessing import forkserver

    _preload.extend(m for m in modules if m not in _preload)
    _context()
    forkserver.ensure_running()


def assign_cores(threads: Sequence[int], available: Sequence[int]) -> list[tuple[int, ...]]:
    """Consecutive cores for each replica in turn: disjoint while the threads fit into `available`. Asked for more
    (the config's core budget, checked before any run, refuses that; tests do it on purpose), the assignment wraps
    around and replicas share cores: each still runs its own thread count, and its report shows the overlap."""
    out, at = [], 0
    for n in threads:
        out.append(tuple(sorted({available[(at + j) % len(available)] for j in range(n)})))
        at += n
    return out


def thread_cpu_s() -> dict[int, float]:
    """CPU seconds of each OS thread of this process, from /proc (clock-tick resolution)."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime + stime
    return out


def _error(err: BaseException) -> tuple[str, tuple[BaseException, str]]:
    text = traceback.format_exc()
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:  # an exception that does not round-trip still reaches the parent, as its type and message
        err = RuntimeError(f"{type(err).__name__}: {err}")
    return "error", (err, text)


def _reply(conn, message) -> bool:
    """Send; False when the parent is gone."""
    try:
        conn.send(message)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return False
    except Exception as err:  # outputs that do not pickle: the error goes back instead
        return _reply(conn, _error(err))
    return True


def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed memory for the next batch instead of handing it back to the OS.

    A fresh worker's malloc starts from the defaults (allocations over 128 kB mapped and unmapped each time, the
    heap trimmed above 128 kB free), so every batch faulted its activations in anew: ~110,000 minor page faults
    per 16-request run of the default adaptation's ResNet-18 stage against ~9,000 in a long-lived process, ~10 %
    more CPU time. Allocations up to 32 MB (glibc's ceiling for this setting) now come from the heap, and the heap keeps
    up to 1 GB free. Not glibc (musl): nothing to do."""
    import ctypes

    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass


def _serve(conn, stage_file: str, name: str, index: int, cores: tuple[int, ...], threads: int,
           reuse_inputs: bool) -> None:
    """A worker process: pin, set threads, load the stage, then answer the parent until it stops or is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent ends workers
    try:
        keep_freed_memory()
        os.sched_setaffinity(0, cores)
        torch.set_num_threads(threads)
        stage = torch.load(stage_file, mmap=True, weights_only=False)
    except Exception as err:
        _reply(conn, _error(err))
        return
    if not _reply(conn, ("ready", os.getpid())):
        return
    cpu0, threads0 = time.process_time(), thread_cpu_s()
    inputs = InputCache() if reuse_inputs else None
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone: end with it
        if kind == "batch":
            cpu, began = time.process_time(), time.perf_counter()
            try:
                results = stage(inputs.decode(payload) if inputs is not None else payload)
            except Exception as err:
                reply = _error(err)
            else:
                reply = "done", (results, began, time.perf_counter(), time.process_time() - cpu)
        elif kind == "begin":
            cpu0, threads0 = time.process_time(), thread_cpu_s()
            if inputs is not None:
                inputs.clear()
            reply = "begun", None
        else:  # "end"
            used = [s - threads0.get(tid, 0.0) for tid, s in thread_cpu_s().items()]
            busy = sum(1 for s in used if s > 0 and s >= 0.1 * max(used))
            reply = "report", ReplicaReport(name, index, os.getpid(), tuple(sorted(os.sched_getaffinity(0))),
                                            torch.get_num_threads(), busy, time.process_time() - cpu0)
        if not _reply(conn, reply):
            return


class ProcessReplica:
    """The parent's handle on one worker process. Calls are synchronous: one dispatching thread per replica."""

    def __init__(self, name: str, index: int, threads: int, cores: tuple[int, ...], reuse_inputs: bool = False):
        self.name, self.index, self.threads, self.cores = name, index, threads, cores
        self.inputs = InputCache() if reuse_inputs else None
        self.process = None
        self.conn = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def launch(self, ctx, stage_file: str) -> None:
        self.conn, child_end = ctx.Pipe()
        self.process = ctx.Process(target=_serve, name=f"{self.name}-{self.index}", daemon=True,
                                   args=(child_end, stage_file, self.name, self.index, self.cores, self.threads,
                                         self.inputs is not None))
        self.process.start()
        child_end.close()

    def _receive(self):
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(timeout=1)
            raise WorkerDied(f"the worker of stage {self.name!r} replica {self.index} (pid {self.pid}) ended "
                             f"unexpectedly (exit code {self.process.exitcode})") from None
        if status == "error":
            err, text = value
            err.add_note(f"raised in the worker of stage {self.name!r} replica {self.index} (pid {self.pid}):\n{text}")
            raise err
        return value

    def _call(self, kind: str, payload=None):
        try:
            self.conn.send((kind, payload))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the worker is gone: _receive says how
        return self._receive()

    def wait_ready(self) -> None:
        self._receive()

    def begin_run(self) -> None:
        if self.inputs is not None:
            self.inputs.clear()
        self._call("begin")

    def process_batch(self, batch: list) -> tuple[list[ItemResult], float, float, float]:
        """(results, began_s, ended_s, cpu_s), the times measured in the worker around the stage's call."""
        return self._call("batch", self.inputs.encode(batch) if self.inputs is not None else batch)

    def end_run(self) -> ReplicaReport:
        return self._call("end")

    def terminate(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.terminate()

    def reap(self) -> None:
        if self.pid is not None:  # started
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout=5)
        if self.conn is not None:
            self.conn.close()


class ThreadReplica:
    """A replica as a thread of the parent: one torch thread count for all of them, no CPU time of its own. For
    stages that must share the parent's memory (test fakes that count) and as the benchmarks' baseline."""

    def __init__(self, name: str, index: int, threads: int, stage):
        self.name, self.index, self.threads, self.stage = name, index, threads, stage
        self.pid = None

    def begin_run(self) -> None:
        torch.set_num_threads(self.threads)  # this thread's count, until another replica sets its own

    def process_batch(self, batch: list) -> tuple[list[ItemResult], float, float, float]:
        began = time.perf_counter()
        results = self.stage(batch)
        return results, began, time.perf_counter(), float("nan")

    def end_run(self) -> None:
        return None


def _save_stages(specs: Sequence[StageSpec]) -> tuple[str, list[str]]:
    """Each stage in a file of its own, in shared memory (/dev/shm) where it fits, else in the temp folder."""
    try:
        return _save_in(tempfile.mkdtemp(prefix="sipa-stages-", dir="/dev/shm"), specs)
    except OSError:  # no /dev/shm, or too small for the models (containers often give it 64 MB)
        return _save_in(tempfile.mkdtemp(prefix="sipa-stages-"), specs)


def _save_in(folder: str, specs: Sequence[StageSpec]) -> tuple[str, list[str]]:
    files = [os.path.join(folder, f"{k}-{spec.name}.pt") for k, spec in enumerate(specs)]
    try:
        for spec, path in zip(specs, files):
            try:
                torch.save(spec.stage, path)
            except (pickle.PicklingError, TypeError, AttributeError) as err:
                raise TypeError(f"stage {spec.name!r} cannot go to a worker process ({err}): define its class at "
                                "module level, or run it with isolation='threads'") from err
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, files


def _shutdown(replicas: list[ProcessReplica], folder: list[str]) -> None:
    for replica in replicas:  # all asked first, then waited for: they end together
        replica.terminate()
    for replica in replicas:
        replica.reap()
    replicas.clear()
    for path in folder:
        shutil.rmtree(path, ignore_errors=True)
    folder.clear()


class StageReplicas:
    """Every replica of every stage, per stage in pipeline order. With processes: started by `start()` (the
    workers load their stage and wait), ended by `close()`, also when the owner is collected or the interpreter
    exits; a worker whose parent is gone ends at its next message."""

    def __init__(self, specs: Sequence[StageSpec], isolation: str = "processes", cores: Sequence[int] | None = None):
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation {isolation!r}: one of {', '.join(ISOLATIONS)}")
        self.specs, self.isolation = list(specs), isolation
        self.cores = sorted(os.sched_getaffinity(0)) if cores is None else list(cores)
        self.by_stage: list[list] = []
        self._processes: list[ProcessReplica] = []
        self._folder: list[str] = []
        self._finalizer = None

    @property
    def started(self) -> bool:
        return bool(self.by_stage)

    def start(self) -> None:
        if self.started:
            return
        if self.isolation == "threads":
            self.by_stage = [[ThreadReplica(s.name, i, s.settings.threads, s.stage) for i in range(s.settings.replicas)]
                             for s in self.specs]
            return
        wanted = [(s, i) for s in self.specs for i in range(s.settings.replicas)]
        cores = iter(assign_cores([s.settings.threads for s, _ in wanted], self.cores))
        self.by_stage = [[ProcessReplica(s.name, i, s.settings.threads, next(cores), reuse_inputs=k == 0)
                          for i in range(s.settings.replicas)] for k, s in enumerate(self.specs)]
        self._processes = [r for replicas in self.by_stage for r in replicas]
        self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._folder)
        try:
            ctx = _context()
            folder, stage_files = _save_stages(self.specs)
            self._folder.append(folder)
            for stage_file, replicas in zip(stage_files, self.by_stage):
                for replica in replicas:
                    replica.launch(ctx, stage_file)
            for replica in self._processes:
                replica.wait_ready()
        except BaseException:
            self.close()
            raise
        shutil.rmtree(folder, ignore_errors=True)  # every worker has its stage mapped; the pages stay until it ends
        self._folder.clear()

    def pids(self) -> list[int]:
        return [r.pid for r in self._processes]

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _shutdown once
        self.by_stage = []
