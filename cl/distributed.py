"""Training on several processes: PyTorch's own engine (``torchrun``, ``torch.distributed``,
``DistributedDataParallel``), and the few helpers the trainer needs around it.

``torchrun --nproc-per-node N -m cl train ...`` starts N copies of the command and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each; :func:`session` reads
them and joins the process group (gloo on CPU, NCCL on CUDA). Nothing here starts, watches or
stops processes: torchrun does, and it ends every rank when one fails.

The split of one global batch of ``B`` items over ``W`` ranks is :func:`share_sizes`: rank ``r``
takes the ``r``-th of ``W`` contiguous slices whose sizes differ by at most one, so the slices
concatenated in rank order are the global batch. :func:`gather_rows` undoes the split for
embeddings, with gradients (``torch.distributed.nn.functional.all_gather``): its backward sums
every rank's gradient for a rank's rows, so with ``L`` computed identically on every rank a
rank's local gradient is ``W * dL/dtheta`` restricted to its rows, and DDP's average over ranks
gives exactly the one-process gradient ``dL/dtheta``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

# torch is imported inside the functions: the command line imports this module for its error
# handling, and commands that never train should not pay for torch.


@dataclass(frozen=True)
class Context:
    """This process's place in a multi-process training."""

    rank: int
    world_size: int
    local_rank: int
    backend: str


_CURRENT: Context | None = None
_JOINED: Context | None = None  # the last group this process joined, kept for reporting its errors


def launched_rank() -> int | None:
    """This process's rank when a launcher (torchrun) started it among two or more, else None."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        return None
    return rank if world > 1 else None


def current() -> Context | None:
    """The context of the running multi-process training, or None (one process)."""
    return _CURRENT


def is_main() -> bool:
    """True on rank 0, and in a plain single-process run: the process that writes and reports."""
    return _CURRENT is None or _CURRENT.rank == 0


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo for CPU ones (the two backends PyTorch ships for them)."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def session(device: torch.device):
    """Join the process group torchrun set up for this process, for the duration of a ``with``.

    Yields the :class:`Context`, or None when this process was started alone (then nothing is
    initialised and training runs as one process). On CUDA each process takes the GPU numbered by
    its ``LOCAL_RANK``, so ``--nproc-per-node`` should not exceed the GPUs per node."""
    global _CURRENT, _JOINED
    from .errors import ConfigError

    if launched_rank() is None or _CURRENT is not None:
        yield _CURRENT
        return
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run one process")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"training on several processes needs --device cpu or cuda, not {device.type}")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {local_rank} has no GPU: {torch.cuda.device_count()} on this node; "
                              "start at most that many processes per node")
        torch.cuda.set_device(local_rank)
    backend = backend_for(device)
    dist.init_process_group(backend=backend)
    _CURRENT = _JOINED = Context(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    try:
        yield _CURRENT
    finally:
        _CURRENT = None
        dist.destroy_process_group()


def device_for(device: torch.device) -> torch.device:
    """The device this rank trains on: its own GPU (``cuda:LOCAL_RANK``) under NCCL."""
    import torch

    if _CURRENT is not None and device.type == "cuda":
        return torch.device("cuda", _CURRENT.local_rank)
    return device


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` as DDP trains it: on CUDA its BatchNorm layers become ``SyncBatchNorm`` (statistics
    over the global batch); on CPU PyTorch's SyncBatchNorm does not run, so each rank normalises
    with its own share's statistics. Unchanged in a single-process run."""
    if _CURRENT is None:
        return model
    import torch
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(model)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain encoder inside DDP (what is evaluated and saved)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def share_sizes(n: int, world_size: int) -> list[int]:
    """Items of a global batch of ``n`` taken by each rank, in rank order (as ``np.array_split``)."""
    base, extra = divmod(n, world_size)
    return [base + (1 if r < extra else 0) for r in range(world_size)]


def my_share(items: np.ndarray) -> np.ndarray:
    """This rank's contiguous slice of the global batch ``items`` (all of it in one process)."""
    if _CURRENT is None:
        return items
    sizes = share_sizes(len(items), _CURRENT.world_size)
    start = sum(sizes[: _CURRENT.rank])
    return items[start:start + sizes[_CURRENT.rank]]


def gather_rows(t: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every rank's rows of ``t`` concatenated in rank order, differentiable (identity alone).

    ``sizes[r]`` is rank ``r``'s row count; the collective needs equal shapes, so each rank pads
    to the largest with zeros and the padding is cut off again."""
    if _CURRENT is None:
        return t
    import torch
    import torch.distributed.nn.functional as dist_nn

    longest = max(sizes)
    if t.shape[0] < longest:
        t = torch.cat([t, t.new_zeros((longest - t.shape[0], *t.shape[1:]))])
    with warnings.catch_warnings():
        # deprecated in favour of the functional collectives, whose autograd support is not
        # documented for gloo; this one's backward is the summed gradient we rely on
        warnings.simplefilter("ignore", FutureWarning)
        # the group passed explicitly: all_gather's default is the world group current when
        # torch.distributed.nn.functional was first imported, stale after a later session
        parts = dist_nn.all_gather(t, group=torch.distributed.group.WORLD)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


def sum_over_ranks(values: list[float]) -> list[float]:
    """Element-wise sums of ``values`` over every rank (the values themselves in one process)."""
    if _CURRENT is None:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if _CURRENT.backend == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on any rank, so that every rank stops at the same step."""
    if _CURRENT is None:
        return flag
    return sum_over_ranks([1.0 if flag else 0.0])[0] > 0


def agree(fn):
    """Run ``fn()`` on every rank; when it raised a :class:`~cl.errors.UserError` on any rank, raise
    one on every rank with the first such message (naming the ranks when not all failed), marked
    ``every_rank`` so that only rank 0 prints it. For the steps that can fail on some ranks only,
    such as loading data that one node lacks."""
    from .errors import UserError

    if _CURRENT is None:
        return fn()
    import torch.distributed as dist

    value, message = None, None
    try:
        value = fn()
    except UserError as err:
        message = (type(err), str(err))
    messages: list = [None] * _CURRENT.world_size
    dist.all_gather_object(messages, message)
    failed = [r for r, m in enumerate(messages) if m is not None]
    if failed:
        cls, text = messages[failed[0]]
        if len(failed) < _CURRENT.world_size:
            text = f"rank {', '.join(map(str, failed))} of {_CURRENT.world_size}: {text}"
        try:
            shared = cls(text)
        except TypeError:  # a class that takes other arguments
            shared = UserError(text)
        raise on_every_rank(shared)
    return value


def on_every_rank(err: BaseException) -> BaseException:
    """Mark ``err`` as raised identically on every rank (it came from values all ranks share)."""
    err.every_rank = True  # type: ignore[attr-defined]  # a marker attribute, read only under torchrun
    return err


def should_print(err: BaseException) -> bool:
    """Whether this process prints ``err``: always alone; under torchrun rank 0 prints errors every
    rank shares (the command line before joining the group, :func:`agree`'s, a diverged loss), and
    any rank prints its own."""
    rank = _JOINED.rank if _JOINED is not None else launched_rank()
    if not rank:
        return True
    return not (_JOINED is None or getattr(err, "every_rank", False))


def lost_peer(err: BaseException) -> bool:
    """True for the error a rank sees when another rank died mid-collective (that rank reports,
    and torchrun ends the rest), so that this one can stay quiet."""
    if _JOINED is None:
        return False
    import torch.distributed

    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(err, dist_error):
        return True  # NCCL's and the store's errors
    # gloo raises a plain RuntimeError: "[...pair.cc:561] Connection closed by peer [...]"
    text = str(err)
    return isinstance(err, RuntimeError) and any(m in text for m in _GLOO_PEER_LOST)


_GLOO_PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def prefix(err: BaseException | None = None) -> str:
    """``"rank R of W: "`` for this rank's own error under torchrun; "" alone and for an error
    every rank shares (:func:`agree` names the failing ranks itself)."""
    if _JOINED is None or getattr(err, "every_rank", False):
        return ""
    return f"rank {_JOINED.rank} of {_JOINED.world_size}: "
