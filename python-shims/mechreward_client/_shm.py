"""POSIX shared-memory segments for a co-located sidecar (docs/shared-memory.md).

A segment is created under a random ``mechreward-`` name, gets a random nonce at offset 0, is registered
with the server (which opens it, checks the nonce and keeps its file descriptor), and is unlinked right
after that, registered or not: from then on only the two open mappings keep it alive, so a SIGKILL of
either side leaves nothing in /dev/shm. The RPCs are the clients' business; this module only owns memory.

Segments are per process (a forked child must not write into its parent's segments) and are handed out one
call at a time, so concurrent calls (threads, overlapped async batches) never share one.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from multiprocessing import shared_memory

from . import _constants as C
from ._wire import PreparedBatch, ShmRef, copy_into

log = logging.getLogger("mechreward_client")


def _aligned(n: int) -> int:
    return (n + C.SHM_ALIGN - 1) // C.SHM_ALIGN * C.SHM_ALIGN


def segment_bytes_for(batch: PreparedBatch) -> int:
    """Segment bytes a batch needs: the header (nonce) plus every sequence at an aligned offset."""
    return C.SHM_DATA_OFFSET + sum(_aligned(a.nbytes) for a in batch.arrays)


class Segment:
    """One created segment; ``registered`` once the server accepted it."""

    def __init__(self, capacity: int) -> None:
        self.shm = shared_memory.SharedMemory(name=C.SHM_KEY_PREFIX + secrets.token_hex(12), create=True, size=capacity)
        self.key = self.shm.name.lstrip("/")
        self._unlinked = False
        try:
            # Reserve the pages now: on a full tmpfs (Docker's 64 MB /dev/shm) writing into a sparse segment
            # would kill this process with SIGBUS; fallocate fails cleanly with ENOSPC instead.
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(self.shm._fd, 0, capacity)
        except OSError:
            self.close()
            raise
        self.capacity = capacity
        self.nonce = secrets.token_bytes(C.SHM_NONCE_BYTES)
        self.shm.buf[: len(self.nonce)] = self.nonce
        self.registered = False

    @property
    def region(self) -> str:
        return self.key

    def unlink(self) -> None:
        """Remove the name (the memory lives on in the mappings). Safe to call twice."""
        if not self._unlinked:
            self._unlinked = True
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass

    def fill(self, batch: PreparedBatch) -> list[ShmRef]:
        """Copy every sequence in (one copy each) and return the descriptors."""
        refs = []
        offset = C.SHM_DATA_OFFSET
        for array in batch.arrays:
            copy_into(self.shm.buf, offset, array)
            refs.append(ShmRef(self.region, offset, array.nbytes))
            offset += _aligned(array.nbytes)
        return refs

    def view(self, ref: ShmRef) -> memoryview:
        return self.shm.buf[ref.offset : ref.offset + ref.byte_size]

    def close(self) -> None:
        self.unlink()
        try:
            self.shm.close()
        except BufferError:  # a view still exported (an in-flight bytes fallback): the GC unmaps it later
            pass


class SegmentPool:
    """Free registered segments of this process, and whether shared memory works with this server at all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._free: list[Segment] = []
        self.client_id = secrets.token_hex(16)
        self.disabled_reason: str | None = None
        self.registering = False

    def _check_process(self) -> None:
        # After a fork the inherited segments are shared with the parent: forget them (never unregister
        # them: they are the parent's) and start with a new client id.
        if self._pid != os.getpid():
            self._reset()

    @property
    def enabled(self) -> bool:
        with self._lock:
            self._check_process()
            return self.disabled_reason is None

    def identity(self) -> str:
        with self._lock:
            self._check_process()
            return self.client_id

    def take(self, need: int, *, create: bool = True) -> tuple[Segment | None, list[Segment]]:
        """A free registered segment of at least ``need`` bytes, else a new unregistered one (or None when
        ``create`` is false or shared memory is off). Also returns too-small free segments to retire."""
        with self._lock:
            self._check_process()
            if self.disabled_reason is not None:
                return None, []
            for i, segment in enumerate(self._free):
                if segment.capacity >= need:
                    return self._free.pop(i), []
            retire, self._free = self._free, []
        if not create:
            return None, retire
        capacity = max(need, C.SHM_MIN_SEGMENT_BYTES)
        capacity = 1 << (capacity - 1).bit_length()
        try:
            return Segment(capacity), retire
        except OSError as error:  # no room in /dev/shm (see --shm-size), or no POSIX shared memory here
            log.info("no shared-memory segment of %d bytes (%s); this call sends bytes", capacity, error)
            return None, retire

    def give_back(self, segment: Segment) -> None:
        with self._lock:
            if self._pid == os.getpid() and self.disabled_reason is None:
                self._free.append(segment)
                return
        segment.close()

    def disable(self, reason: str) -> list[Segment]:
        """Shared memory does not work with this server (not co-located, --shm off, too old): bytes from now on."""
        with self._lock:
            self._check_process()
            self.disabled_reason = reason
            retire, self._free = self._free, []
            return retire

    def drain(self) -> list[Segment]:
        """Every free segment, for close()."""
        with self._lock:
            if self._pid != os.getpid():
                return []
            retire, self._free = self._free, []
            return retire
