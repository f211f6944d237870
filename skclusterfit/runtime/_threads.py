"""Torch threads for the work: small networks on small batches run on one thread.

PyTorch's intra-op pool has one thread per core. A network of a few million
FLOPs per sample, trained on batches of 32, gives each thread microseconds of
work between synchronisations, and the threads spin while they wait: on a
shared 2-core machine the digits demonstration cost 255 CPU-seconds with two
threads against 23 with one, for the same result. As scikit-learn limits its
thread pools to what the work can use (``threadpoolctl``), the loops here
count the FLOPs of one step and ask for at most one thread per
:data:`FLOPS_PER_THREAD`; they never ask for more threads than the process
has (``OMP_NUM_THREADS``, ``torch.set_num_threads``).

A side effect that matters to users: the last digits of a float32 sum depend
on how it is split between threads, so a network trained on one thread gives
the same numbers whatever the machine's thread count.
"""

import contextlib
import weakref

import torch

#: Work (multiply-adds count as two FLOPs) that makes a second thread worth
#: having: about 20 ms of one core's time per step, i.e. a few hundred
#: microseconds per operator for the networks of this package.
FLOPS_PER_THREAD = 1e9

_forward_flops = weakref.WeakKeyDictionary()  # network -> {sample shape: FLOPs}


def forward_flops(network, sample_shape):
    """FLOPs of ``network``'s forward pass on one sample, or None if it cannot be counted.

    Counted once per network and sample shape (torch's ``FlopCounterMode``
    on one zero sample, in eval mode and without gradients, so that no
    BatchNorm statistic or random generator moves).
    """
    shapes = _forward_flops.setdefault(network, {})
    key = tuple(int(s) for s in sample_shape)
    if key not in shapes:
        shapes[key] = _count_forward_flops(network, key)
    return shapes[key]


def _count_forward_flops(network, sample_shape):
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(network.parameters(), None)
    if parameter is None:
        return None
    was_training = network.training
    try:
        network.eval()
        x = torch.zeros((1, *sample_shape), dtype=parameter.dtype, device=parameter.device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            network(x)
        return counter.get_total_flops()
    except Exception:  # a network that takes other input: leave the threads alone
        return None
    finally:
        network.train(was_training)


def threads_for(network, sample_shape, batch_size, *, training):
    """How many torch threads one step of ``network`` on ``batch_size`` samples can use.

    A training step costs about three forward passes (forward, and backward
    through activations and weights). Never more than
    ``torch.get_num_threads()``; that count when the FLOPs cannot be counted.

    Examples
    --------
    >>> import torch
    >>> from skclusterfit.runtime._threads import threads_for
    >>> threads_for(torch.nn.Linear(64, 10), (64,), 32, training=True)
    1
    """
    available = max(1, torch.get_num_threads())
    if available == 1:
        return 1
    n_parameters = sum(p.numel() for p in network.parameters())
    # Every weight is used at least once per sample: a lower bound, free to compute,
    # that spares counting the FLOPs of a large network.
    passes = 3 if training else 1
    if 2 * n_parameters * batch_size * passes >= FLOPS_PER_THREAD * available:
        return available
    flops = forward_flops(network, sample_shape)
    if flops is None:
        return available
    return int(min(available, max(1, flops * batch_size * passes // FLOPS_PER_THREAD)))


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run a block with at most ``n_threads`` torch intra-op threads, then restore.

    Examples
    --------
    >>> import torch
    >>> from skclusterfit.runtime._threads import torch_threads
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    before = torch.get_num_threads()
    if n_threads >= before:
        yield
        return
    torch.set_num_threads(max(1, int(n_threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
