"""The two ways a remote multiplexer receives: core NATS and JetStream.

Both keep the NATS subscriptions equal to the subjects the open streams need
(:class:`Wanted`: a set of patterns that never overlap, so each message
arrives once) and hand each message to a :class:`Sink`.

Core NATS is at-most-once: while the remote side is disconnected, or when
nats-py drops messages for a slow subscription, messages are lost, and the
sink is told so (a gap).

JetStream: one ephemeral push consumer at a time, filtered on the wanted
subjects, starting at the stream sequence after the last one delivered. It
is replaced (from that same point) when the wanted subjects change, when the
connection comes back, when heartbeats stop, or when a consumer sequence is
skipped; messages at or below the last delivered sequence are skipped, so
nothing is delivered twice. A gap is reported only when the stream's first
sequence has moved past what was missed (the stream no longer holds it).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Protocol

import anyio

from .._log import RateLimitedLog, log
from ._conn import GAP_HEADER

__all__ = ["Sink", "Wanted", "run_core", "run_jetstream"]


class Sink(Protocol):
    """Where a feed hands what it receives."""

    label: str
    last_sequence: int
    resumes: int

    def scrub(self, text: str) -> str: ...

    async def deliver(self, data: bytes) -> None: ...

    def gap(self) -> None: ...


class Wanted:
    """The subjects the open streams need, and a way to wait for changes."""

    def __init__(self) -> None:
        self.subjects: list[str] = []
        self.version = 0
        self.synced = 0
        self._changed = anyio.Event()
        self._synced = anyio.Event()

    def set(self, subjects: list[str]) -> None:
        if subjects != self.subjects:
            self.subjects = subjects
            self.version += 1
            self._changed.set()

    def poke(self) -> None:
        """Make the feed redo its subscriptions (after a reconnection)."""
        self.version += 1
        self._changed.set()

    async def changed(self, version: int) -> None:
        while self.version == version:
            self._changed = anyio.Event()
            await self._changed.wait()

    def mark_synced(self, version: int) -> None:
        self.synced = max(self.synced, version)
        self._synced.set()

    async def wait_synced(self) -> None:
        target = self.version
        while self.synced < target:
            self._synced = anyio.Event()
            await self._synced.wait()


async def _retry_pause(sink: Sink, what: str, exc: BaseException, logger: RateLimitedLog) -> None:
    text = sink.scrub(str(exc))
    logger("%s: %s failed (%s: %s); retrying", sink.label, what, type(exc).__name__, text)
    await anyio.sleep(0.2)


async def run_core(nc: Any, wanted: Wanted, sink: Sink, pending_limit: int) -> None:
    """Keep core subscriptions equal to the wanted subjects, forever.

    Args:
        nc: The nats-py client.
        wanted: The subjects to hold.
        sink: Where messages go.
        pending_limit: nats-py's per-subscription buffer, in messages.
    """
    subs: dict[str, Any] = {}
    live: set[str] = set()
    warn = RateLimitedLog(logging.WARNING)

    def make_cb(subject: str) -> Any:
        async def cb(msg: Any) -> None:
            if subject not in live:
                return  # replaced by a wider subject: it delivers this one
            headers = msg.headers
            if headers and GAP_HEADER in headers:
                sink.gap()
                return
            await sink.deliver(msg.data)

        return cb

    while True:
        version = wanted.version
        target = list(wanted.subjects)
        try:
            for subject in target:
                if subject not in subs:
                    subs[subject] = await nc.subscribe(
                        subject, cb=make_cb(subject), pending_msgs_limit=pending_limit
                    )
            live.clear()
            live.update(target)
            for subject in [s for s in subs if s not in live]:
                await subs.pop(subject).unsubscribe()
            await nc.flush(timeout=5)
        except Exception as exc:
            await _retry_pause(sink, "subscribing", exc, warn)
            continue
        wanted.mark_synced(version)
        await wanted.changed(version)


async def run_jetstream(
    nc: Any, stream: str, wanted: Wanted, sink: Sink, deliver: str | int, heartbeat: float
) -> None:
    """Feed the sink from a JetStream stream, resuming after every interruption.

    Args:
        nc: The nats-py client.
        stream: The stream's name.
        wanted: The subjects to filter on.
        sink: Where messages go; its ``last_sequence`` is where to resume.
        deliver: ``"new"`` (from now), ``"all"`` (from the stream's start) or
            a stream sequence to start at.
        heartbeat: The consumer's idle heartbeat, in seconds.
    """
    from nats.js import api
    from nats.js.errors import NotFoundError

    jsm = nc.jsm()
    warn = RateLimitedLog(logging.WARNING)
    first = True
    idle = False
    while True:
        version = wanted.version
        if not wanted.subjects:  # no stream: no consumer (it would take everything)
            wanted.mark_synced(version)
            await wanted.changed(version)
            idle = not first  # nobody read meanwhile: start again from now
            continue
        try:
            info = await jsm.stream_info(stream)
        except NotFoundError as exc:
            await _retry_pause(sink, f"finding JetStream stream {stream!r}", exc, warn)
            continue
        except Exception as exc:
            await _retry_pause(sink, "reading the stream's state", exc, warn)
            continue
        state = info.state
        if idle:
            sink.last_sequence = max(sink.last_sequence, state.last_seq)
            idle = False
        if first:
            if deliver == "new":
                sink.last_sequence = state.last_seq
            elif deliver == "all":
                sink.last_sequence = max(0, state.first_seq - 1)
            else:
                sink.last_sequence = int(deliver) - 1
                if int(deliver) < state.first_seq:
                    sink.gap()
                    sink.last_sequence = state.first_seq - 1
            first = False
        elif sink.last_sequence > state.last_seq:
            # The stream was deleted and made again: its sequences restarted.
            sink.gap()
            sink.last_sequence = max(0, state.first_seq - 1)
        elif sink.last_sequence + 1 < state.first_seq:
            log.warning(
                "%s: JetStream stream %r no longer holds sequences %d to %d",
                sink.label,
                stream,
                sink.last_sequence + 1,
                state.first_seq - 1,
            )
            sink.gap()
            sink.last_sequence = state.first_seq - 1
        run = _Consumer(nc, sink, heartbeat)
        subjects = list(wanted.subjects)
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=sink.last_sequence + 1,
            ack_policy=api.AckPolicy.NONE,
            flow_control=True,
            idle_heartbeat=heartbeat,
            inactive_threshold=max(10.0, 5 * heartbeat),
            mem_storage=True,
            num_replicas=1,
            max_deliver=1,
        )
        if len(subjects) == 1:
            config.filter_subject = subjects[0]
        else:
            config.filter_subjects = subjects
        name = None
        try:
            sub = await nc.subscribe(nc.new_inbox(), cb=run.on_msg, pending_msgs_limit=1 << 16)
            config.deliver_subject = sub.subject
            try:
                created = await jsm.add_consumer(stream, config)
                name = created.name
                wanted.mark_synced(version)
                await run.watch(wanted, version)
            finally:
                run.stop()
                # (Suppressed: the consumer is gone with a restarted server.)
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(1),
                    contextlib.suppress(Exception),
                ):
                    await sub.unsubscribe()
                    if name is not None and nc.is_connected:
                        await jsm.delete_consumer(stream, name)
        except Exception as exc:
            await _retry_pause(sink, "creating the JetStream consumer", exc, warn)
            continue
        sink.resumes += 1


class _Consumer:
    """One push consumer's deliveries: order checks, flow control, liveness."""

    def __init__(self, nc: Any, sink: Sink, heartbeat: float) -> None:
        self._nc = nc
        self._sink = sink
        self._heartbeat = heartbeat
        self._cseq = 0
        self._broken = anyio.Event()
        self._seen = True
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    async def watch(self, wanted: Wanted, version: int) -> None:
        """Return when this consumer must be replaced."""
        async with anyio.create_task_group() as tg:

            async def on_change() -> None:
                await wanted.changed(version)
                tg.cancel_scope.cancel()

            async def on_broken() -> None:
                await self._broken.wait()
                tg.cancel_scope.cancel()

            async def on_silence() -> None:
                while True:
                    self._seen = False
                    await anyio.sleep(self._heartbeat * 3)
                    if not self._seen:
                        log.info("%s: JetStream consumer went silent; resuming", self._sink.label)
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(on_change)
            tg.start_soon(on_broken)
            tg.start_soon(on_silence)

    async def on_msg(self, msg: Any) -> None:
        if self._stopped:
            return
        self._seen = True
        headers = msg.headers
        if headers and headers.get("Status") == "100":
            stalled = headers.get("Nats-Consumer-Stalled")
            if msg.reply or stalled:  # flow control: we are keeping up
                await self._nc.publish(msg.reply or stalled, b"")
            last = headers.get("Nats-Last-Consumer")
            if last is not None and int(last) != self._cseq:
                self._broken.set()  # a delivery was lost on the way
            return
        meta = msg.metadata
        cseq, sseq = meta.sequence.consumer, meta.sequence.stream
        if cseq != self._cseq + 1:
            self._stopped = True
            self._broken.set()
            return
        self._cseq = cseq
        sink = self._sink
        if sseq <= sink.last_sequence:
            return  # delivered before a resume
        sink.last_sequence = sseq
        if headers and GAP_HEADER in headers:
            sink.gap()
            return
        await sink.deliver(msg.data)
