"""Clocks and memory: timing one call, interleaving candidates, the copy
bandwidth every cell is compared with, and a warm CPU heap."""

import ctypes
import ctypes.util
import platform
import statistics
import time

try:
    import resource  # Unix only: page-fault counts
except ImportError:
    resource = None

import torch


class Timer:
    """Times one call of fn. CUDA: events on the current stream; CPU: a host clock."""

    def __init__(self, device):
        self.device = device

    def __call__(self, fn):
        if self.device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        begin = time.perf_counter()
        fn()
        return time.perf_counter() - begin


def minor_page_faults():
    """Page faults this process has taken so far; 0 where the OS cannot say."""
    if resource is None:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def interleaved_medians(fns, timer, warmup, min_reps, max_reps, budget_s):
    """Median seconds and median host page faults per call for each fn, the
    candidates taking turns so that drift on a shared machine hits all of
    them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    seconds = {name: [] for name in fns}
    faults = {name: [] for name in fns}

    def sample(name, fn):
        before = minor_page_faults()
        seconds[name].append(timer(fn))
        faults[name].append(minor_page_faults() - before)

    for name, fn in fns.items():
        sample(name, fn)
    per_round = sum(ts[0] for ts in seconds.values())
    reps = int(min(max_reps, max(min_reps, budget_s / max(per_round, 1e-9))))
    for _ in range(reps - 1):
        for name, fn in fns.items():
            sample(name, fn)
    return (
        {name: statistics.median(v) for name, v in seconds.items()},
        {name: statistics.median(v) for name, v in faults.items()},
    )


def copy_bandwidth(device, nbytes, timer):
    """Bytes read plus written per second by a large copy_ into a preallocated tensor."""
    src = torch.empty(nbytes // 4, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    t = interleaved_medians({"copy": lambda: dst.copy_(src)}, timer, 3, 10, 50, 1.0)[0]["copy"]
    return 2 * src.numel() * 4 / t


def keep_freed_memory_mapped(pool_bytes):
    """Makes glibc serve every allocation from one heap that it never gives
    back to the kernel, and faults pool_bytes of it in up front. By default
    glibc maps each block over 32 MiB afresh, and first touch of each fresh
    page faults: at 2^24 float32 elements that costs more than the op itself,
    and which candidate pays it depends on what the others freed before. On
    warm memory, as under a caching allocator, every candidate is timed on its
    kernels (the tables show page faults per call). True if set."""
    path = ctypes.util.find_library("c")
    if platform.system() != "Linux" or path is None:
        return False
    libc = ctypes.CDLL(path)
    if not hasattr(libc, "mallopt"):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    if not (libc.mallopt(m_mmap_max, 0) and libc.mallopt(m_trim_threshold, -1)):
        return False
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    pool = libc.malloc(ctypes.c_size_t(pool_bytes))
    if pool:
        ctypes.memset(pool, 0, pool_bytes)
        libc.free(pool)
    return True
