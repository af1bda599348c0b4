"""Every bad input: one line naming the problem and the fix, exit 2, no traceback, no run left RUNNING."""

import json
import socket

import pytest

from helpers import run_main, runs_by_status
from sustainable_ipa.errors import UserError
from sustainable_ipa.experiment import run_job


def coco_folder(tmp_path, corrupt=False, annotated_image=1):
    root = tmp_path / "images"
    root.mkdir(parents=True)
    from ultralytics.utils import ASSETS

    (root / "bus.jpg").write_bytes(b"not a jpeg at all" if corrupt else (ASSETS / "bus.jpg").read_bytes())
    doc = {"images": [{"id": 1, "file_name": "bus.jpg", "width": 810, "height": 1080}],
           "annotations": [{"id": 1, "image_id": annotated_image, "category_id": 1, "bbox": [1, 1, 50, 50], "area": 2500, "iscrowd": 0}],
           "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    return [f"dataset.root={root}", f"dataset.annotations={tmp_path / 'instances.json'}"]


def bad_inputs(tmp_path):
    (tmp_path / "a-file").write_text("")
    (tmp_path / "notes.txt").write_text("not a database, just text\n" * 100)
    return {
        "unknown variant": (["adaptation.detector.variant=yolov5z"], "unknown detector variant 'yolov5z'"),
        "batch size zero": (["adaptation.classifier.batch_size=0"], "adaptation.classifier.batch_size=0 is not allowed"),
        "too many cores": (["adaptation.detector.replicas=3"], "needs 4 cores"),
        "missing dataset folder": (["dataset=coco", "dataset.root=/no/such/folder", "dataset.annotations=/x.json"],
                                   "dataset folder /no/such/folder does not exist"),
        "missing annotations": (["dataset=coco", f"dataset.root={tmp_path}", "dataset.annotations=/no/instances.json"],
                                "annotations file /no/instances.json does not exist"),
        "corrupt image": (["dataset=coco", *coco_folder(tmp_path, corrupt=True)], "is corrupt or not an image"),
        "annotation of an unlisted image": (["dataset=coco", *coco_folder(tmp_path / "unlisted", annotated_image=2)],
                                            "annotation 1 is for image 2, not in its images"),
        "pretrained missing offline": (["weights=pretrained", f"weights_dir={tmp_path}/weights"],
                                       "pretrained weights yolov5nu.pt"),
        "unwritable store": ([f"tracking.uri=sqlite:///{tmp_path}/a-file/mlflow.db"], "cannot create tracking folder"),
        "bad store url": (["tracking.uri=mlruns"], "is not a URL"),
        "cuda without a gpu": (["hardware=cuda"], "no CUDA device"),
        "file store url": ([f"tracking.uri=file://{tmp_path}/store"], "is a file store, which MLflow 3 refuses"),
        "store is a folder": ([f"tracking.uri=sqlite:///{tmp_path}"], "is a folder, not a database file"),
        "store is not a database": ([f"tracking.uri=sqlite:///{tmp_path}/notes.txt"], "file is not a database"),
        "unreachable server": ([f"tracking.uri=http://127.0.0.1:{closed_port()}"], "cannot reach tracking server"),
        "server url with a bad port": (["tracking.uri=http://localhost:99999"], "has no valid port"),
        "price not a number": (["hardware.price_usd_per_core_hour=abc"],
                               "hardware.price_usd_per_core_hour='abc' is not allowed: input should be a valid number"),
        "sla not a number": (["trial.sla_s=soon"], "trial.sla_s='soon' is not allowed"),
    }


def without_proxies(monkeypatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def closed_port() -> int:
    """A local port nothing listens on: bound, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


NAMES = ["unknown variant", "batch size zero", "too many cores", "missing dataset folder", "missing annotations",
         "corrupt image", "annotation of an unlisted image", "pretrained missing offline", "unwritable store", "bad store url", "cuda without a gpu",
         "file store url", "store is a folder", "store is not a database", "unreachable server",
         "server url with a bad port", "price not a number", "sla not a number"]


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_one_clear_error_and_leaves_no_run(name, make_cfg, client, tmp_path, monkeypatch):
    from sustainable_ipa.models import weights

    monkeypatch.setattr(weights, "library_paths", lambda source: ())  # this machine's caches must not matter
    without_proxies(monkeypatch)  # the unreachable server is probed only where no proxy stands between
    if name == "cuda without a gpu":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    overrides, problem = bad_inputs(tmp_path)[name]
    with pytest.raises(UserError) as err:
        run_job(make_cfg(*[o for o in overrides if not o.startswith("weights=")],
                         *[o for o in overrides if o.startswith("weights=")]))
    assert problem in str(err.value) and "Fix:" in str(err.value) and "\n" not in str(err.value)
    if (tmp_path / "mlruns" / "mlflow.db").exists():
        assert not runs_by_status(client, "RUNNING")


def test_a_good_coco_folder_runs(make_cfg, client, tmp_path):
    outcome = run_job(make_cfg("dataset=coco", "trial.requests=2", *coco_folder(tmp_path)))
    assert client.get_run(outcome.run_id).info.status == "FINISHED"


@pytest.mark.parametrize("args,problem", [
    (["adaptation=nope"], "unknown adaptation 'nope'"),
    (["-m", "adaptation=default,nope"], "unknown adaptation 'nope'"),
    (["hardware=tpu"], "unknown hardware 'tpu'"),
    (["adaptation.classifier.batch_size=-1"], "adaptation.classifier.batch_size=-1 is not allowed"),
    (["dataset=coco", "dataset.root=/no/such/folder"], "dataset.annotations is not set"),
])
def test_entry_point_prints_one_line_and_exits_2(args, problem, tmp_path):
    out = run_main([*args, "weights=random"], tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and problem in lines[0], out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_a_server_behind_a_proxy_is_left_to_mlflow(monkeypatch):
    """MLflow reaches it through the proxy; a direct probe would refuse a server that works."""
    from sustainable_ipa.tracking.store import _check_reachable

    without_proxies(monkeypatch)
    uri = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(UserError, match="cannot reach tracking server"):
        _check_reachable(uri, timeout_s=1)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:3128")
    _check_reachable(uri, timeout_s=1)  # no probe, no error
