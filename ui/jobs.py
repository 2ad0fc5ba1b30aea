"""Training in background threads: at most one per session and a server-wide cap.

The registry below holds the trainings and downloads of the whole server (the rest of the
server-wide state is listed in :mod:`ui.shared`). A session refers to its job by id (kept in
:mod:`ui.state`); the Train page polls the job's :meth:`Job.view` from an
``st.fragment(run_every=...)`` so the rest of the app stays usable while a model trains.
Nothing here imports streamlit: the thread never touches the session.

A finished job writes a new file in the runs folder (atomically, through
``cl.checkpoints.save_checkpoint``); a cancelled or failed one writes no model, so models saved
earlier are never touched.

A training belongs to the server, not to a browser tab. Its id is the stem of the file it will
save (``NAME``, the Train page's ``?run=NAME``) and beside that file it keeps

- ``NAME.run.json``: its record (settings, status, progress, the loss curve, the per-epoch
  measures, the card when done, the owner's key hashed), rewritten every
  :data:`RECORD_EVERY_S` seconds while it runs and once when it ends, so a reload, another tab,
  a copied link or another replica reads the same run;
- ``NAME.replay.npz``: the per-epoch embeddings of a sample of test images (the Embedding
  page's replay), written when the model is saved.

A record that still says "running" but is neither in this process's registry nor rewritten for
:data:`STALE_AFTER_S` seconds belongs to a server that stopped: :func:`lookup` reports it as
interrupted (nothing was saved).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cl import allocator
from cl.checkpoints import write_atomically
from cl.errors import ConfigError, UserError

from . import demo

if TYPE_CHECKING:
    from cl.training import ResolvedConfig

log = logging.getLogger("contrastive-explorer.jobs")

MAX_LOSS_POINTS = 4000
MAX_SNAPSHOT_POINTS = 1000
MAX_SNAPSHOT_FRAMES = 30  # longer runs keep every other frame (always the latest)
KEEP_FINISHED = 32
MEASURE_SAMPLE = 256  # test images measured per epoch (a fixed, seeded sample)
MEASURE_SHARE = 0.03  # at most this share of a training's time goes to the per-epoch measures
MEASURE_FIRST_GUESS_S = 0.05  # the cost assumed before the first measurement
RECORD_EVERY_S = 2.0  # a running training's record is rewritten this often (its heartbeat)
STALE_AFTER_S = 30.0  # a "running" record not rewritten for this long: its server stopped
RECORD_FORMAT = "contrastive-explorer-run/1"
ALIVE = ("queued", "loading", "training", "evaluating", "saving", "mapping")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


class CapacityError(UserError):
    """The server runs as many trainings as it allows, or this session already runs one."""


def max_train_seconds() -> float | None:
    """A server-wide limit on one training's duration ($CL_APP_MAX_TRAIN_SECONDS; capped in demo
    mode, see :mod:`ui.demo`)."""
    return demo.max_train_seconds()


def max_concurrent() -> int:
    """Trainings running at once on this server ($CL_MAX_TRAININGS, default 2; at most 2 in demo mode)."""
    return demo.max_trainings()


EXPECTED_RUN_BYTES = 2_000_000  # room a new run needs under the quota (our checkpoints are 0.5-1.1 MB)


def owner_hash(owner: str) -> str:
    """What a record keeps of its owner's key: a hash (the key itself stays with the browser)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:32]


def record_path(checkpoint: str | os.PathLike) -> Path:
    """``NAME.run.json`` beside ``NAME.safetensors``."""
    p = Path(checkpoint)
    return p.with_name(f"{p.stem}.run.json")


def replay_path(checkpoint: str | os.PathLike) -> Path:
    """``NAME.replay.npz`` beside ``NAME.safetensors``: the per-epoch embeddings (the replay)."""
    p = Path(checkpoint)
    return p.with_name(f"{p.stem}.replay.npz")


@dataclass
class Job:
    id: str
    session: str  # the owner's key (ui.state.owner_key: the browser's, surviving a reload)
    config: ResolvedConfig
    out: Path
    knn_per_epoch: bool = True
    snapshots: bool = True
    tensorboard: Path | None = None  # a TensorBoard run folder (cl.tensorboard_log), when asked for
    status: str = "queued"  # queued, loading, training, evaluating, saving, mapping, done, cancelled, failed
    message: str = ""
    created: float = field(default_factory=time.time)
    finished: float | None = None
    progress: dict = field(default_factory=dict)
    losses: list = field(default_factory=list)  # (global_step, epoch, loss)
    loss_stride: int = 1
    history: list = field(default_factory=list)
    snapshot_data: dict | None = None  # {"indices", "labels", "epochs", "embeddings"}
    train_note: str = ""
    test_note: str = ""
    card: dict | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    record_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one writer at a time
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.status in ALIVE

    @property
    def run_id(self) -> str:
        """The run's id in links (``?run=``): the stem of the file it saves."""
        return self.out.stem

    def view(self) -> dict:
        """A consistent copy for rendering (the thread keeps writing)."""
        with self.lock:
            return {
                "id": self.id, "run": self.run_id, "status": self.status, "message": self.message,
                "alive": self.alive, "here": True, "owner": owner_hash(self.session),
                "progress": dict(self.progress), "losses": list(self.losses), "history": [dict(h) for h in self.history],
                "config": self.config, "out": str(self.out), "train_note": self.train_note,
                "test_note": self.test_note, "card": self.card, "created": self.created, "finished": self.finished,
                "cancel_requested": self.cancel_event.is_set(),
                "tensorboard": str(self.tensorboard) if self.tensorboard else None,
            }

    def record(self) -> dict:
        """What :func:`save_record` writes (JSON-safe)."""
        with self.lock:
            return {
                "format": RECORD_FORMAT, "run": self.run_id, "status": self.status, "message": self.message,
                "owner": owner_hash(self.session), "config": _plain(asdict(self.config)),
                "progress": _plain(dict(self.progress)), "losses": [list(x) for x in self.losses],
                "history": _plain([dict(h) for h in self.history]), "train_note": self.train_note,
                "test_note": self.test_note, "card": _plain(self.card), "created": self.created,
                "finished": self.finished, "updated": time.time(), "cancel_requested": self.cancel_event.is_set(),
            }

    def _set(self, **kw) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, v)


_LOCK = threading.Lock()
_JOBS: dict[str, Job] = {}


def get(job_id: str | None) -> Job | None:
    if not job_id:
        return None
    with _LOCK:
        return _JOBS.get(job_id)


def by_run(run_id: str | None) -> Job | None:
    """The job of this process whose run id (file stem) is ``run_id``."""
    if not run_id:
        return None
    with _LOCK:
        return next((j for j in _JOBS.values() if j.run_id == run_id), None)


def owned(owner: str) -> list[Job]:
    """This owner's jobs in this process, newest first."""
    with _LOCK:
        return sorted((j for j in _JOBS.values() if j.session == owner), key=lambda j: j.created, reverse=True)


def _plain(value):
    """``value`` with NumPy scalars and tuples made JSON-safe."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def save_record(job: Job) -> None:
    """Write the job's record beside its checkpoint, atomically (a reader never sees half a file)."""
    # The snapshot and its rename under one lock: a heartbeat taken while the job ran can never
    # land after the final record and make a finished run look as if it still ran.
    with job.record_lock:
        try:
            write_atomically(record_path(job.out), json.dumps(job.record(), separators=(",", ":")).encode())
        except (OSError, TypeError, ValueError) as err:  # a record is a convenience: the training goes on
            log.warning("could not write the record of %s: %s", job.run_id, err)


def _save_replay(job: Job) -> None:
    snap = job.snapshot_data
    if not snap or not snap.get("embeddings"):
        return
    buf = io.BytesIO()
    try:
        np.savez_compressed(buf, indices=np.asarray(snap["indices"]), labels=np.asarray(snap["labels"]),
                            epochs=np.asarray(snap["epochs"], dtype=np.int64),
                            embeddings=np.stack(snap["embeddings"]).astype(np.float16),
                            dataset=np.array(str(snap["dataset"])))
        write_atomically(replay_path(job.out), buf.getvalue())
    except (OSError, ValueError) as err:
        log.warning("could not save the replay of %s: %s", job.run_id, err)


def load_replay(checkpoint: str | os.PathLike) -> dict | None:
    """The per-epoch embeddings saved beside a checkpoint (``None`` when it has none); read
    without unpickling."""
    path = replay_path(checkpoint)
    try:
        with np.load(path, allow_pickle=False) as z:
            emb = z["embeddings"]
            return {"indices": z["indices"], "labels": z["labels"], "epochs": [int(e) for e in z["epochs"]],
                    "embeddings": [emb[i] for i in range(len(emb))], "dataset": str(z["dataset"])}
    except (OSError, KeyError, ValueError):
        return None


def lookup(run_id: str | None, runs_dir: str | os.PathLike) -> dict | None:
    """What is known of run ``run_id``: this process's job (live), else its record in the runs
    folder, else ``None``. A record another server still rewrites is live (``here`` False); one
    left "running" by a server that stopped is reported as ``interrupted``."""
    if not run_id or not _RUN_ID.fullmatch(run_id) or run_id.endswith(".part"):
        return None
    job = by_run(run_id)
    if job is not None:
        return job.view()
    out = Path(runs_dir) / f"{run_id}.safetensors"
    try:
        rec = json.loads(record_path(out).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("format") != RECORD_FORMAT:
        return None
    from types import SimpleNamespace

    status = str(rec.get("status", "failed"))
    alive = status in ALIVE
    if alive and time.time() - float(rec.get("updated") or 0) > STALE_AFTER_S:
        status, alive = "interrupted", False
        rec["message"] = ("the server stopped while this training ran (a restart or an update); nothing was saved. "
                          "Start it again to train this model.")
    return {"id": None, "run": run_id, "status": status, "message": str(rec.get("message", "")), "alive": alive,
            "here": False, "owner": rec.get("owner"), "progress": rec.get("progress") or {},
            "losses": [tuple(x) for x in rec.get("losses") or []], "history": rec.get("history") or [],
            "config": SimpleNamespace(**(rec.get("config") or {})), "out": str(out),
            "train_note": rec.get("train_note", ""), "test_note": rec.get("test_note", ""), "card": rec.get("card"),
            "created": rec.get("created"), "finished": rec.get("finished"),
            "cancel_requested": bool(rec.get("cancel_requested"))}


def running() -> list[Job]:
    with _LOCK:
        return [j for j in _JOBS.values() if j.alive]


def cancel(job_id: str | None) -> None:
    job = get(job_id)
    if job is not None:
        job.cancel_event.set()


def _prune() -> None:
    finished = sorted((j for j in _JOBS.values() if not j.alive), key=lambda j: j.finished or 0)
    for j in finished[:-KEEP_FINISHED] if len(finished) > KEEP_FINISHED else []:
        _JOBS.pop(j.id, None)


def file_part(dataset: str) -> str:
    """A data set's (or a model's) name as a portable file-name part: an uploaded image set by its
    own file name (``archive:ID`` of ``my photos.zip`` -> ``my-photos``); never a ``:``, which
    Windows cannot store."""
    name = Path(display_name(dataset)).stem if dataset.startswith("archive:") else dataset
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:60]
    return slug or "images"


def display_name(dataset: str) -> str:
    """How a person names a data set: an uploaded image set by its own file name."""
    if dataset.startswith("archive:"):
        try:
            from cl.archive import read_manifest

            return read_manifest(dataset[len("archive:"):]).archive_name
        except UserError:
            pass
    return dataset


def run_filename(config) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return (f"{file_part(config.dataset)}-{config.augmentation}-{config.loss}-{stamp}-{uuid.uuid4().hex[:6]}"
            ".safetensors")


def tensorboard_dir(runs_dir: Path) -> Path:
    """Where the Train page's TensorBoard runs go, one sub-folder per model (``tensorboard --logdir`` it)."""
    return Path(runs_dir) / "tensorboard"


def start(session: str, config, runs_dir: Path, knn_per_epoch: bool = True, snapshots: bool = True,
          checkpoints_dir: Path | None = None, tensorboard: bool = False) -> Job:
    """Validate, reserve a slot and start the thread; raise a UserError when refused.
    ``tensorboard``: also write a TensorBoard run under :func:`tensorboard_dir`, named as the model."""
    from cl.data import dataset_spec
    from cl.training import resolve_config

    limit_s = max_train_seconds()
    if demo.enabled() and config.threads is None:
        # Two trainings share the demo server's cores with every visitor: one thread each keeps
        # pages responsive and saves ~100 MB of per-thread scratch memory per training.
        config = replace(config, threads=1)
    if limit_s is not None:
        config = replace(config, time_budget=min(config.time_budget or limit_s, limit_s))
    resolved = resolve_config(config)  # ConfigError on a bad value, before any slot is taken
    dataset_spec(resolved.dataset)
    runs_dir = Path(runs_dir)
    if checkpoints_dir is not None:
        try:
            if runs_dir.resolve() == Path(checkpoints_dir).resolve():
                raise ConfigError("the runs folder must not be the shipped checkpoints folder")
        except OSError:
            pass
    _check_writable(runs_dir)  # fail now, not after minutes of training
    filename, tb_run = run_filename(resolved), None
    if tensorboard:
        if demo.enabled():
            raise ConfigError("this demo server keeps no TensorBoard logs; on your own machine: python -m cl train "
                              "... --tensorboard DIR")
        from cl.tensorboard_log import check_run_dir

        tb_run = check_run_dir(tensorboard_dir(runs_dir) / Path(filename).stem)  # TensorBoard installed, folder new
    _deleted, fits = demo.enforce_quota(runs_dir, incoming=EXPECTED_RUN_BYTES)
    if not fits:
        raise CapacityError("the demo server's disk quota for trained models is full with the models of "
                            "visitors who are still here; please try again later")
    with _LOCK:
        mine = [j for j in _JOBS.values() if j.alive and j.session == session]
        if mine:
            raise CapacityError("this session is already training a model; wait for it or cancel it first")
        alive = [j for j in _JOBS.values() if j.alive]
        limit = max_concurrent()
        if len(alive) >= limit:
            raise CapacityError(
                f"the server is already running {len(alive)} training{'s' if len(alive) != 1 else ''} "
                f"(limit {limit}); please try again when one has finished. Every other page keeps working.")
        job = Job(uuid.uuid4().hex[:12], session, resolved, runs_dir / filename,
                  knn_per_epoch=knn_per_epoch, snapshots=snapshots, tensorboard=tb_run)
        _JOBS[job.id] = job
        demo.SESSIONS.own(session, job.out)
        _prune()
    save_record(job)  # a reload or a link finds it from the first moment
    job.thread = threading.Thread(target=_run, args=(job,), name=f"cl-train-{job.id}", daemon=True)
    job.thread.start()
    threading.Thread(target=_keep_record, args=(job,), name=f"cl-record-{job.id}", daemon=True).start()
    return job


def _keep_record(job: Job) -> None:
    """Rewrite a running job's record every RECORD_EVERY_S (its heartbeat); the last write is
    :func:`_run`'s, after the job ended."""
    while job.alive:
        time.sleep(RECORD_EVERY_S)
        if job.alive:
            save_record(job)


def _check_writable(folder: Path) -> None:
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-", suffix=".part"):
            pass
    except OSError as err:
        raise ConfigError(f"cannot save models in {folder}: {err.strerror or err}; set CL_RUNS_DIR to a "
                          f"writable folder") from None


def _lower_priority_in_demo() -> None:
    """In demo mode a training thread yields the CPU to visitors' pages: it raises its own nice
    value (Linux schedules threads as tasks, so this is this thread only; with one torch thread a
    training runs its kernels on it). Pages stay quick; trainings run in the gaps."""
    if not demo.enabled():
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not permitted: trainings keep their priority
        pass


def _run(job: Job) -> None:
    _lower_priority_in_demo()
    try:
        _train(job)
    except UserError as err:
        job._set(status="failed", message=str(err), finished=time.time())
    except MemoryError:
        job._set(status="failed", message="out of memory; use a smaller batch size or data set", finished=time.time())
    except Exception as err:  # noqa: BLE001 - the thread must always end in a final state
        log.error("training job %s failed:\n%s", job.id, traceback.format_exc())
        job._set(status="failed", message=f"training failed unexpectedly ({type(err).__name__}: {err})",
                 finished=time.time())
    finally:
        save_record(job)
        # glibc keeps freed heap pages for reuse: without this a server's resident size stays at
        # its busiest moment's peak long after the trainings that caused it (measured in one
        # process: two digits trainings peak at ~1,350 MB and leave 1,234 MB resident; trimmed, 870 MB).
        allocator.return_freed_memory()


def _train(job: Job) -> None:
    from cl.evaluation import embed, knn_accuracy
    from cl.measures import measures_on_sample
    from cl.workflow import load_training_data, make_model

    c = job.config
    job._set(status="loading", message=f"loading {display_name(c.dataset)}")
    train_set, test_set = load_training_data(c.dataset, download=False)
    job._set(train_note=train_set.describe(), test_note=test_set.describe())

    snap_idx = None
    if job.snapshots:
        n = len(test_set)
        snap_idx = np.arange(n) if n <= MAX_SNAPSHOT_POINTS else np.sort(
            np.random.default_rng(0).permutation(n)[:MAX_SNAPSHOT_POINTS])
        job._set(snapshot_data={"indices": snap_idx, "labels": test_set.labels.numpy()[snap_idx],
                                "epochs": [], "embeddings": [], "dataset": c.dataset})

    def progress(ev: dict) -> None:
        with job.lock:
            job.progress = dict(ev)
            if ev["global_step"] % job.loss_stride == 0:
                job.losses.append((ev["global_step"], ev["epoch"], float(ev["loss"])))
                if len(job.losses) > MAX_LOSS_POINTS:
                    job.losses = job.losses[::2]
                    job.loss_stride *= 2

    # Alignment, uniformity and effective rank per epoch, on a fixed sample of test images, within
    # MEASURE_SHARE of the training's time: an epoch is measured only when the time spent measuring
    # so far plus the last measurement's cost fits that share of the training time elapsed.
    n_test = len(test_set)
    measure_idx = np.sort(np.random.default_rng(1).permutation(n_test)[:min(n_test, MEASURE_SAMPLE)])
    budget = {"spent": 0.0, "last": MEASURE_FIRST_GUESS_S}

    def on_epoch_end(model, epoch: int) -> dict:
        extra = {}
        if job.knn_per_epoch and not job.cancel_event.is_set():
            extra["knn_acc"], extra["knn_scored"] = knn_accuracy(model, test_set, with_count=True)
            elapsed = float(job.progress.get("elapsed", 0.0)) if job.progress else 0.0
            if budget["spent"] + budget["last"] <= MEASURE_SHARE * elapsed:
                m = measures_on_sample(model, test_set.images[measure_idx], test_set.labels.numpy()[measure_idx],
                                       c.augmentation, seed=0)
                budget["spent"] += m["seconds"]
                budget["last"] = m["seconds"]
                extra.update({"alignment": m["alignment"], "uniformity": m["uniformity"], "rankme": m["rankme"],
                              "measured_on": int(len(measure_idx)), "measure_seconds": m["seconds"]})
        if snap_idx is not None and not job.cancel_event.is_set():
            emb = embed(model, test_set.images[snap_idx]).astype(np.float16)
            with job.lock:
                snap = job.snapshot_data
                snap["epochs"].append(epoch)
                snap["embeddings"].append(emb)
                if len(snap["epochs"]) > MAX_SNAPSHOT_FRAMES:  # bounded memory: thin out, keep the latest
                    keep = sorted(set(range(0, len(snap["epochs"]), 2)) | {len(snap["epochs"]) - 1})
                    snap["epochs"] = [snap["epochs"][i] for i in keep]
                    snap["embeddings"] = [snap["embeddings"][i] for i in keep]
        with job.lock:
            job.history.append({"epoch": epoch, **extra})
        return extra

    def on_stage(stage: str, message: str) -> None:
        job._set(status=stage, message=message)

    made = make_model(c, job.out, train_set=train_set, test_set=test_set, made_by="app", progress=progress,
                      should_stop=job.cancel_event.is_set, on_epoch_end=on_epoch_end, on_stage=on_stage,
                      tensorboard=job.tensorboard)
    result = made.result
    with job.lock:
        # the library's per-epoch rows (loss, seconds, images/s) replace our partial ones
        job.history = [dict(h) for h in result.history]
    if made.stopped == "cancelled":
        job._set(status="cancelled", finished=time.time(),
                 message=f"cancelled after {len(result.history)} of {c.epochs} epochs; nothing was saved "
                         f"and models saved earlier are untouched")
        return
    if made.stopped == "cancelled_before_save":
        job._set(status="cancelled", finished=time.time(),
                 message="cancelled before saving; nothing was saved and models saved earlier are untouched")
        return
    if not job.cancel_event.is_set():
        _map(job)
    stopped = "" if result.stopped == "completed" else f" (stopped early: {result.stopped.replace('_', ' ')})"
    demo.enforce_quota(job.out.parent)  # a finished run may take the folder over: oldest ended runs go
    _save_replay(job)  # before "done": whoever sees it done finds its replay
    job._set(snapshot_data=None)  # kept on disk, read by whoever replays it
    job._set(status="done", card=made.card.to_dict(), finished=time.time(),
             message=f"saved {job.out.name}: {len(result.history)} epoch(s) in {result.seconds:.1f} s{stopped}")


# What a new model's Embedding page opens on: the t-SNE of its test gallery (a few seconds for
# 2,000 images), and PCA; UMAP stays a click away (its first run compiles for tens of seconds).
MAP_METHODS = ("tsne", "pca")


def _map(job: Job) -> None:
    """Compute the saved model's map of its test gallery next to it (``layouts/NAME.npz``), as the
    shipped models have theirs. A failure here costs the map, never the model."""
    from cl.layouts import build_layouts

    job._set(status="mapping", message=f"computing the t-SNE map of its test images ({job.test_note})")
    try:
        build_layouts(job.out, progress=None, methods=MAP_METHODS)
    except UserError as err:
        log.info("no map for %s: %s", job.out.name, err)
    except Exception:  # noqa: BLE001 - any failure in a background job is logged and shown as failed
        log.error("map of %s failed:\n%s", job.out.name, traceback.format_exc())


def wait(job: Job, timeout: float) -> bool:
    """Block until the job ends (tests); True when it ended."""
    if job.thread is None:
        return not job.alive
    job.thread.join(timeout)
    return not job.alive


# ------------------------------------------------------------------------------ data downloads
# What torchvision fetches (compressed bytes), so a download can show real progress by watching
# the files grow. One download per data set at a time, shared by every session that asks.
DOWNLOAD_FILES = {
    "mnist": (("MNIST",), 11_594_722),
    "fashion-mnist": (("FashionMNIST",), 30_878_645),
    "cifar10": (("cifar-10-python.tar.gz", "cifar-10-batches-py"), 170_498_071),
}


@dataclass
class Download:
    name: str
    root: Path
    status: str = "running"  # running, done, failed
    message: str = ""
    started: float = field(default_factory=time.time)
    thread: threading.Thread | None = field(default=None, repr=False)

    def bytes_so_far(self) -> int:
        total = 0
        for part in DOWNLOAD_FILES.get(self.name, ((), 0))[0]:
            path = self.root / part
            if path.is_file():
                total += path.stat().st_size
            elif path.is_dir():
                total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return total

    def view(self) -> dict:
        expected = DOWNLOAD_FILES.get(self.name, ((), 0))[1]
        done = self.bytes_so_far()
        return {"name": self.name, "status": self.status, "message": self.message, "bytes": done,
                "expected": expected, "elapsed": time.time() - self.started,
                "fraction": 1.0 if self.status == "done" else (min(0.99, done / expected) if expected else 0.0)}


_DOWNLOADS: dict[str, Download] = {}


def start_download(name: str) -> Download:
    """Start (or join) the download of a data set's train and test splits."""
    from cl.data import resolve_data_dir

    root = resolve_data_dir()
    with _LOCK:
        current = _DOWNLOADS.get(name)
        if current is not None and current.status == "running":
            return current
        dl = Download(name, root)
        _DOWNLOADS[name] = dl

    def work():
        from cl.data import load_dataset

        try:
            got = load_dataset(name, "train", download=True, allow_gallery=False)
            dl.message = f"downloaded: {got.describe()}"
            dl.status = "done"
        except UserError as err:
            dl.message, dl.status = str(err), "failed"
        except Exception as err:  # noqa: BLE001 - any failure in a background job is logged and shown as failed
            log.error("download of %s failed:\n%s", name, traceback.format_exc())
            dl.message, dl.status = f"download failed ({type(err).__name__}: {err})", "failed"

    dl.thread = threading.Thread(target=work, name=f"cl-download-{name}", daemon=True)
    dl.thread.start()
    return dl


def download(name: str) -> Download | None:
    with _LOCK:
        return _DOWNLOADS.get(name)
