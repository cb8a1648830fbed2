"""Process and thread pools: Pool and ThreadPool, with the API and the
semantics of the standard library's multiprocessing.pool.

How a pool is built here
------------------------
- Tasks travel to the workers through one gomp SimpleQueue (a ring in shared
  memory with futex wake-ups) and results come back through another. A
  ThreadPool uses queue.SimpleQueue for both, without pickling.
- A worker takes its tasks and sends its results through the rings' C path
  (pybind/ext/ring.c), so it never loads a Go runtime for them: loading one
  cost each worker about 2 ms of CPU at its first task, which made a pool
  slower to start than the standard library's (tests_py/bench/NOTES.md,
  "Pool start time"). A task too large for one ring record, or a ring lock
  that stays held, goes through the core, which the worker then loads.
- Three threads in the process that owns the pool:
    * the feeder turns submitted iterables (map, imap, starmap, ...) into
      tasks and puts them into the task queue;
    * the router takes results from the result queue and hands each one to
      its AsyncResult / MapResult / IMapIterator (found by job id in _cache);
    * the supervisor waits on the workers' sentinels (pidfds) and replaces
      every worker that exits (maxtasksperchild, or a crash).
- apply_async() puts its task into the task queue itself (no hop through the
  feeder thread; small ones in batches, see below), unless it is called from
  one of the pool's own threads (a callback), where waiting for room in the
  ring could deadlock.

Small tasks travel in batches
-----------------------------
Putting, taking, pickling and routing one ring item costs the pool's threads
a few microseconds; for trivial tasks that cost is the whole run. So while
the tasks are small, several go in one ring item and their results come back
in one result item:

- The feeder puts the tasks of a map (or of an imap over a sequence: a
  generator may itself wait for results, so its items go one by one) as
  batches of consecutive tasks of the job, pickled together: from one task
  per item, doubling up to 64 tasks or about 64 KiB of pickle, while the pool
  completes at least 5,000 tasks per second and worker (_Pace: measured over
  the first 2 ms of the submission, then over windows of 20 ms). Slower tasks
  go one per item, as before, so that no worker holds a queue of long tasks
  while another idles.
- apply_async calls of one function from one thread (consecutive job ids)
  gather the same way while the ring still holds tasks for the workers (a
  call of another function starts the judging of the pace afresh); the batch goes
  out when full, or from the feeder thread (woken when a batch starts) as
  soon as the caller lets go of the GIL, and close() puts what is left. A
  call that finds no batch started and no task queued goes at once.
- A worker runs a batch's tasks in order, exactly as single tasks, and sends
  their outcomes as one item (job, first, values, failed offsets); a batch
  that has run for 2 ms sends what it has so far, so a result is never held
  back for long. A result that does not pickle makes the worker send the
  batch's outcomes one by one, so that only that one becomes a
  MaybeEncodingError. The router sets a batch's outcomes in one step
  (MapResult: one slice; an imap iterator: one wake-up).
- A batch carries one claim header standing for all its tasks (index
  first + n * 2**40 for tasks first..first+n-1 of the job; index -n for task
  0 of n consecutive apply_async jobs): a worker killed holding a batch fails
  every task of it whose result had not gone out with WorkerLostError.
- Pools with maxtasksperchild do not batch (a batch would carry a worker past
  its count), nor do ThreadPools and pools with a subclass's queues or
  workers.
- The one thing batching can change: tasks of one map that wait for each
  other. A task that blocks until a later task of the same job has run (a
  Barrier across the tasks, an Event a later task sets) waits for ever if
  that later task sits behind it in its own batch, where the standard
  library would have handed it to another worker. Batching starts only
  after the submission's first 2 ms and only for tasks that finish quickly,
  so a map of a few such tasks goes one task per item. Consecutive
  apply_async calls batch too. Tasks like that should wait with a timeout;
  a pool with maxtasksperchild never batches.

tests_py/bench/NOTES.md has the measurements behind these choices.

A worker that dies does not hang the pool
-----------------------------------------
With the standard library, a worker killed while it runs a task (SIGKILL,
a segfault, os._exit() in the task, the OOM killer) makes that task's result
wait forever: the pool replaces the worker but nobody knows which task was
lost (CPython gh-66587). gomp's pool knows which task every worker holds:

- Tasks are put into the task ring with a 16-byte claim header, the job id
  and the task's index (SimpleQueue._put_task); the rest is the pickle.
- Each worker has a claim slot in the task ring's header. The get that hands
  a task to the worker (SimpleQueue._get_task, in ring.c or the core) records the
  header's (job, index) in that slot in the same step that moves the ring's
  head past the task, under the consumer lock's journal: a worker killed at
  any instruction either left the task in the ring (another worker takes it)
  or has it claimed, even if it died in the middle of the get itself (whoever
  takes the lock over completes the dead worker's claim from the journal).
  The claim stays until the worker comes for its next task (its result was
  sent by then) or exits. gomp/queue/claim.go has the details.
- When a worker exits, the supervisor takes its claim (under the consumer
  lock, so that no replay can come after the look); if a task was held, its
  result fails with WorkerLostError (a ProcessError carrying the worker's pid
  and exit code), the worker is replaced and the other tasks go on. The
  error travels through the result queue, behind any result the worker sent
  before dying, and a task's first report stands: a worker killed after it
  sent its result and before its next get costs nothing.

For map()/map_async() the whole map fails with that error; for imap() the
items of the lost chunk raise it when they are reached. In random-kill storms
(300 tasks on Pool(3), a random worker SIGKILLed 0-50 ms in, 1,000 rounds per
API and start method: tests_py/test_pool_claims.py with GOMP_SLOW=1) every
task ended as a value or a WorkerLostError.

The claims need both ends to be the pool's own: its _setup_queues and its
_repopulate_pool. A subclass that installs other queues or starts its own
workers (joblib, torch.multiprocessing) gets plain tasks; its workers, when
they run worker() with a shared array of slots, mark their task after taking
it, which leaves a window of a few instructions in which a killed worker
loses its task silently, as with the standard library. So do the workers
beyond the ring's 176 claim slots (in a Pool of more than 176 processes).

Other departures from the standard library, both in the direction of not
hanging: an exception raised by a callback or error_callback is printed to
stderr and the result still becomes ready (the standard library's result
handler thread dies and the pool hangs); and a result that cannot be pickled
becomes a MaybeEncodingError, as in the standard library.
"""

import os
import queue
import signal
import sys
import threading
import time
import traceback
import warnings
from _thread import allocate_lock as _allocate_lock
from collections import deque
from functools import partial
from itertools import chain, count, islice
from types import GenericAlias

from . import TimeoutError, _deathwatch, _gomp, get_context, util
from .connection import wait
from .context import ProcessError
from .reduction import ForkingPickler

__all__ = ['Pool', 'ThreadPool']

# The states of a pool (and of its threads).
INIT = 'INIT'
RUN = 'RUN'
CLOSE = 'CLOSE'
TERMINATE = 'TERMINATE'

# Job ids, unique within a process.
job_counter = count()

# Tells the feeder thread to put the pending apply_async calls.
_FLUSH = object()

# Value of a worker's slot when it runs no task.
_IDLE = -1

# At most this many workers of a pool claim their tasks in the ring (the ring
# has 176 claim slots; the tests lower the cap to try the workers beyond it).
_claim_cap = 1 << 30

# Batches of small tasks (see "Small tasks travel in batches" above). A batch
# holds at most _BATCH_MAX tasks and about _BATCH_BYTES of pickle; tasks count
# as small while the pool completes at least _SMALL_RATE of them per second
# and worker (see _Pace). A worker sends
# the results of a batch it has run for _FLUSH_AFTER seconds so far without
# waiting for the rest. The claim header of a batch of n tasks from index i
# carries the index i + n * _BATCH_SPAN (n >= 2).
_BATCH_MAX = 64
_BATCH_BYTES = 1 << 16
_SMALL_RATE = 5000
_RATE_WINDOW = 0.002
_SMALL_WINDOW = 0.02
_FLUSH_AFTER = 0.002
_BATCH_SPAN = 1 << 40


# ---- errors --------------------------------------------------------------------------------


class MaybeEncodingError(Exception):
    """A task's result (or its exception) could not be pickled to travel back
    from the worker; the pickling error and the value are kept as their
    reprs, which always pickle."""

    def __init__(self, exc, value):
        # Kept as attributes too: they survive pickling (the result queue)
        # exactly, where the arguments would be repr'd a second time.
        self.exc, self.value = repr(exc), repr(value)
        super().__init__(self.exc, self.value)

    def __str__(self):
        return "Error sending result: '%s'. Reason: '%s'" % (self.value, self.exc)

    def __repr__(self):
        return f'<{type(self).__name__}: {self}>'


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as text; it becomes
    the __cause__ of that exception in the pool's process, so that printing
    the exception shows where the worker raised it."""

    def __init__(self, tb):
        self.tb = tb

    def __str__(self):
        return self.tb


class WorkerLostError(ProcessError):
    """The worker process running a task exited before sending its result
    (it was killed, crashed, or called os._exit()). Raised by the result of
    that task; the pool replaced the worker and goes on."""

    def __init__(self, message, pid=None, exitcode=None):
        super().__init__(message, pid, exitcode)
        self.pid = pid
        self.exitcode = exitcode

    def __str__(self):
        return self.args[0]


def _describe_exit(exitcode):
    if exitcode is None:
        return 'an unknown exit status'
    if exitcode < 0:
        try:
            return 'signal %s' % signal.Signals(-exitcode).name
        except ValueError:
            return 'signal %d' % -exitcode
    return 'exit code %d' % exitcode


# ---- what travels from a worker ------------------------------------------------------------


def rebuild_exc(exc, tb):
    """Unpickling side of ExceptionWithTraceback (the name and arguments are
    the standard library's, so either side can read the other's results):
    the exception, with the worker's traceback text as its __cause__."""
    exc.__cause__ = RemoteTraceback(tb)
    return exc


class ExceptionWithTraceback:
    """An exception raised by a task, with its traceback formatted in the
    worker (traceback objects do not pickle). It unpickles as the exception
    itself; see rebuild_exc."""

    __slots__ = ('exc', 'tb')

    def __init__(self, exc, tb):
        text = ''.join(traceback.format_exception(type(exc), exc, tb))
        # The triple quotes set the worker's traceback apart when the
        # exception is printed with its cause.
        self.tb = '\n"""\n' + text + '"""'
        self.exc = exc

    def __reduce__(self):
        return rebuild_exc, (self.exc, self.tb)


def _run_chunk(func, items):
    return [func(x) for x in items]


def _run_star_chunk(func, items):
    return [func(*x) for x in items]


def worker(
    inqueue,
    outqueue,
    initializer=None,
    initargs=(),
    maxtasks=None,
    wrap_exception=False,
    slots=None,
    slot=-1,
    claim=None,
):
    """The loop of a pool worker: take a task, run it, send its result; stop
    at None, or after maxtasks tasks.

    claim is None for a queue of plain items (then a worker with slots marks
    its task in slots[2*slot:2*slot+2] once it has it); otherwise the tasks
    carry claim headers (Queue._put_task) and a claim >= 0 is this worker's
    claim slot in the task ring, where the ring records the task the worker
    holds in the step that hands it over."""
    if maxtasks is not None and not (isinstance(maxtasks, int) and maxtasks >= 1):
        raise AssertionError(f'maxtasks {maxtasks!r} is not valid')
    take = inqueue.get if claim is None else partial(inqueue._get_task, claim)
    send = outqueue.put
    mark = None
    at = -1
    if slots is not None:
        mark = memoryview(slots).cast('B').cast('q')
        at = 2 * slot
    if initializer is not None:
        initializer(*initargs)

    done = 0
    while maxtasks is None or done < maxtasks:
        try:
            task = take()
        except (EOFError, OSError):
            task = None  # the pool's end of the queue is gone: nothing more to do
        if task is None:
            break
        if type(task) is bytes:
            # A batch of small tasks (only the pool's own feeder sends them).
            done += _run_batch(ForkingPickler.loads(task), send, wrap_exception, mark, at)
            task = None
            continue
        job, i, func, args, kwds = task
        if mark is not None:
            mark[at + 1] = i
            mark[at] = job
        try:
            outcome = (True, func(*args, **kwds) if kwds else func(*args))
        except Exception as e:
            outcome = (False, ExceptionWithTraceback(e, e.__traceback__) if wrap_exception else e)
        _send_result(send, job, i, outcome)
        if mark is not None:
            mark[at] = _IDLE
        task = func = args = kwds = outcome = None
        done += 1
    if claim is not None and claim >= 0:
        # The last task's result went out: the pool must not report it lost
        # when this worker exits.
        try:
            inqueue._take_claim(claim)
        except (OSError, ValueError):
            pass
    util.debug('pool worker exits after %d tasks', done)


def _send_result(send, job, i, outcome):
    """Send the outcome of task i of job; a result that cannot be pickled
    goes as a MaybeEncodingError instead."""
    try:
        send((job, i, outcome))
    except Exception as e:
        failed = outcome[1].exc if type(outcome[1]) is ExceptionWithTraceback else outcome[1]
        util.debug('pool worker: cannot send the result of task %d of job %d: %r', i, job, e)
        send((job, i, (False, MaybeEncodingError(e, failed))))


def _send_results(send, job, first, values, failed):
    """Send the outcomes of tasks first, first + 1, ... of job in one item:
    (job, first, values, failed), failed listing the offsets in values that
    are exceptions (None: none). first None: the outcomes of task 0 of jobs
    job, job + 1, ... (a batch of apply_async calls). If the item cannot be
    pickled, each outcome goes on its own, so that only the results that do
    not pickle fail."""
    try:
        send((job, first, values, failed))
    except Exception:
        for k, value in enumerate(values):
            outcome = (failed is None or k not in failed, value)
            if first is None:
                _send_result(send, job + k, 0, outcome)
            else:
                _send_result(send, job, first + k, outcome)


def _run_batch(batch, send, wrap_exception, mark, at):
    """Run a batch of tasks in order, as worker() runs single tasks, and send
    their outcomes in one item (or in a few, for a batch that runs long).
    The batch is (job, first, [(func, args, kwds), ...]): tasks first,
    first + 1, ... of job, or with first None task 0 of jobs job, job + 1,
    ... (apply_async calls). Returns its task count."""
    job, first, calls = batch
    n = len(calls)
    if mark is not None:
        mark[at + 1] = -n if first is None else first + n * _BATCH_SPAN
        mark[at] = job
    clock = time.monotonic
    flush_at = clock() + _FLUSH_AFTER
    values = []
    failed = None
    start = 0  # the offset in the batch of values[0]
    for k, (func, args, kwds) in enumerate(calls):
        try:
            values.append(func(*args, **kwds) if kwds else func(*args))
        except Exception as e:
            values.append(ExceptionWithTraceback(e, e.__traceback__) if wrap_exception else e)
            if failed is None:
                failed = []
            failed.append(len(values) - 1)
        func = args = kwds = None
        if k + 1 < n and clock() >= flush_at:
            # Slow tasks: what is done so far goes now, so that batching never
            # holds a result back for long (an imap consumer sees it).
            _send_part(send, job, first, start, values, failed)
            start, values, failed = k + 1, [], None
            flush_at = clock() + _FLUSH_AFTER
    _send_part(send, job, first, start, values, failed)
    if mark is not None:
        mark[at] = _IDLE
    return n


def _send_part(send, job, first, start, values, failed):
    # The outcomes of a batch's tasks from offset start on.
    if first is None:
        _send_results(send, job + start, None, values, failed)
    else:
        _send_results(send, job, first + start, values, failed)


def _owned_worker(owner, *args):
    """worker() in a pool's worker process: the process also ends when the
    pool's owner dies, however it dies (see gomp/_deathwatch.py)."""
    if not _deathwatch.follow(owner, signal.SIGTERM):
        util.debug('pool worker: the pool\'s owner is gone; not starting')
        return
    worker(*args)


def _thread_worker(wake, *args):
    """worker() in a ThreadPool thread: tells the supervisor when it ends."""
    try:
        worker(*args)
    finally:
        wake.poke()


# ---- waking the supervisor -----------------------------------------------------------------


class _Wake:
    """A pipe that wakes the supervisor thread; safe to poke after close."""

    def __init__(self):
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._lock = threading.Lock()
        self._closed = False

    def fileno(self):
        return self._r

    def poke(self):
        with self._lock:
            if not self._closed:
                try:
                    os.write(self._w, b'!')
                except BlockingIOError:
                    pass  # already full of pokes

    def clear(self):
        with self._lock:
            if not self._closed:
                try:
                    while os.read(self._r, 4096):
                        pass
                except BlockingIOError:
                    pass

    def close(self):
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._r)
                os.close(self._w)


class _JobTable(dict):
    """The pool's _cache: job id -> pending result. Emptying it while the
    pool is closing wakes the supervisor, which then shuts the pool down."""

    def __init__(self, engine):
        dict.__init__(self)
        self._engine = engine

    def __delitem__(self, job):
        dict.__delitem__(self, job)
        if not self:
            engine = self._engine
            if engine.state != RUN:
                engine.wake.poke()


class _Pace:
    """How many tasks the feeder puts into the next ring item of one
    submission: one while the tasks are not known to be small; doubling up
    to _BATCH_MAX tasks (and about _BATCH_BYTES of pickle) while they are.
    Tasks are small while the pool completes at least _SMALL_RATE of them
    per second and worker: judged after _RATE_WINDOW seconds, then over
    windows of _SMALL_WINDOW (longer than the interpreter's switch interval,
    during which the router may wait for the GIL while results pile up)."""

    __slots__ = ('engine', 'start', 'then', 'small')

    def __init__(self, engine):
        self.engine = engine
        self.start = time.monotonic()
        self.then = engine.completed
        self.small = False

    def next_size(self, size, per_task):
        """After an item of size tasks (per_task: pickle bytes per task of
        the last batch, 0 if none yet)."""
        now = time.monotonic()
        elapsed = now - self.start
        if elapsed >= (_SMALL_WINDOW if self.small else _RATE_WINDOW):
            engine = self.engine
            done = engine.completed
            self.small = done - self.then >= _SMALL_RATE * engine.processes * elapsed
            self.start, self.then = now, done
        if not self.small:
            return 1
        size = min(2 * size, _BATCH_MAX)
        if per_task:
            size = min(size, max(1, _BATCH_BYTES // per_task))
        return size


class _Failure:
    """Stands in a task stream for the exception its iterable raised at
    position i: that position of the job fails with exc in the pool's own
    process (no worker involved, so no remote traceback)."""

    __slots__ = ('job', 'i', 'exc')

    def __init__(self, job, i, exc):
        self.job = job
        self.i = i
        self.exc = exc


def _tasks_of_claim(job, index):
    """The (job, index) of every task a claim header stands for: a single
    task; index = first + n * _BATCH_SPAN for a batch of tasks first ...
    first + n - 1 of job; index = -n for a batch of apply_async calls, task 0
    of jobs job ... job + n - 1."""
    if index < 0:
        return [(job + k, 0) for k in range(-index)]
    if index >= _BATCH_SPAN:
        n, first = divmod(index, _BATCH_SPAN)
        return [(job, i) for i in range(first, first + n)]
    return [(job, index)]


class _Batchable:
    """A task stream the feeder may put in batches: its iterable is a
    sequence already in memory (a map's list, an imap over a list or range),
    so gathering a batch never waits on the caller's generator (which may
    itself wait for the results of the tasks it yielded so far)."""

    __slots__ = ('tasks',)

    def __init__(self, tasks):
        self.tasks = tasks

    def __iter__(self):
        return iter(self.tasks)


def _task_stream(job, func, iterable):
    i = -1
    try:
        for i, x in enumerate(iterable):
            yield (job, i, func, (x,), None)
    except Exception as e:
        yield _Failure(job, i + 1, e)


# A chunk of at least this many items of a range is sent as a range: a few
# bytes to pickle instead of every int (smaller chunks pickle faster as tuples,
# a range being rebuilt through its reducer).
_RANGE_SLICE_MIN = 128


def _chunk_stream(job, runner, func, iterable, size):
    kind = type(iterable)
    if kind is list or kind is tuple or (kind is range and size >= _RANGE_SLICE_MIN):
        # Slices of the sequence itself: C-speed copies (and for a range, no
        # ints made or pickled in this process at all). The worker iterates a
        # slice exactly as it would the tuple of the same items.
        for i, at in enumerate(range(0, len(iterable), size)):
            yield (job, i, runner, (func, iterable[at : at + size]), None)
        return
    items = iter(iterable)
    i = -1
    try:
        while True:
            chunk = tuple(islice(items, size))
            if not chunk:
                return
            i += 1
            yield (job, i, runner, (func, chunk), None)
    except Exception as e:
        yield _Failure(job, i + 1, e)


# ---- the machinery behind a pool -----------------------------------------------------------


class _Engine:
    """Everything the pool's threads work on. The threads refer to this object,
    never to the Pool, so that an abandoned Pool can be collected (and its
    finalizer can then terminate the engine)."""

    def __init__(
        self,
        ctx,
        make_process,
        processes,
        initializer,
        initargs,
        maxtasks,
        wrap_exception,
        inqueue,
        outqueue,
        use_threads,
        quick_put=None,
        quick_get=None,
        claiming=False,
    ):
        self.ctx = ctx
        self.make_process = make_process
        self.processes = processes
        self.initializer = initializer
        self.initargs = initargs
        self.maxtasks = maxtasks
        self.wrap_exception = wrap_exception
        self.inqueue = inqueue
        self.outqueue = outqueue
        self.use_threads = use_threads
        # How the router takes a result: the queue's get, unless a
        # subclass's _setup_queues installed _quick_get (the stdlib's pool
        # moves tasks and results through _quick_put/_quick_get).
        self.get_result = quick_get or outqueue.get
        self.taskqueue = queue.SimpleQueue()
        self.state = INIT
        self.wake = _Wake()
        self.cache = _JobTable(self)
        self.pool = []
        self.pool_lock = threading.RLock()
        self.set_lock = threading.Lock()
        self.threads = ()
        self.thread_idents = frozenset()
        self.slots = self.mark = None
        # Tasks carry claim headers and each worker claims what it takes in
        # the task ring (see the module documentation); workers beyond the
        # ring's claim slots, and all workers of a pool that does not claim,
        # mark their task in the shared array `slots` instead.
        self.claiming = claiming
        self.num_claims = min(inqueue._num_claims(), _claim_cap) if claiming else 0
        # put_task(job, i, task): how the feeder and apply_async put a task:
        # with its claim header, or else through the queue's put (or the
        # _quick_put a subclass's _setup_queues installed).
        if claiming:
            self.put_task = inqueue._put_task
        else:
            put = quick_put or inqueue.put
            self.put_task = lambda job, i, task: put(task)
        # Small tasks travel in batches when the workers are behind: only
        # between the pool's own feeder and workers (claiming), and not with
        # maxtasksperchild, whose count a batch could overrun.
        self.batching = claiming and maxtasks is None
        self.completed = 0  # tasks reported so far (the router counts them)
        # apply_async calls waiting to go out as one batch (see submit_apply).
        self.apply_lock = threading.Lock()
        self.apply_pending = []
        self.apply_size = 1
        self.apply_nudged = False  # a _FLUSH is on its way to the feeder
        self.apply_pace = _Pace(self)
        self.apply_func = None  # the function of the calls the pace judges
        if not use_threads and (not claiming or processes > self.num_claims):
            from .sharedctypes import RawArray

            self.slots = RawArray('q', 2 * processes)
            self.mark = memoryview(self.slots).cast('B').cast('q')
            for k in range(0, 2 * processes, 2):
                self.mark[k] = _IDLE

    # -- workers --

    def repopulate(self):
        """Start workers until there are `processes` of them."""
        with self.pool_lock:
            for _ in range(self.processes - len(self.pool)):
                if self.use_threads:
                    w = self.make_process(
                        self.ctx,
                        target=_thread_worker,
                        args=(
                            self.wake,
                            self.inqueue,
                            self.outqueue,
                            self.initializer,
                            self.initargs,
                            self.maxtasks,
                            self.wrap_exception,
                        ),
                    )
                    slot = -1
                else:
                    used = {getattr(p, '_gomp_pool_slot', -1) for p in self.pool}
                    slot = min(k for k in range(self.processes) if k not in used)
                    claim, slots = None, self.slots
                    if self.claiming and slot < self.num_claims:
                        claim, slots = slot, None
                    elif self.claiming:
                        claim = -1  # no claim slot left: marks its task in slots
                    w = self.make_process(
                        self.ctx,
                        target=_owned_worker,
                        args=(
                            _deathwatch.identity(),
                            self.inqueue,
                            self.outqueue,
                            self.initializer,
                            self.initargs,
                            self.maxtasks,
                            self.wrap_exception,
                            slots,
                            slot,
                            claim,
                        ),
                    )
                w._gomp_pool_slot = slot
                w.name = w.name.replace('Process', 'PoolWorker')
                w.daemon = True
                w.start()
                self.pool.append(w)
                util.debug('added pool worker %s', w.name)

    def reap(self):
        """Join the workers that exited; fail the task each one held. Returns
        whether any worker exited."""
        reaped = False
        with self.pool_lock:
            for w in list(self.pool):
                if w.exitcode is None:
                    continue
                reaped = True
                w.join()
                self.pool.remove(w)
                util.debug('pool worker %s exited with %r', w.name, w.exitcode)
                slot = getattr(w, '_gomp_pool_slot', -1)
                held = self._held_by(slot)
                if held is None:
                    continue
                for job, i in _tasks_of_claim(*held):
                    err = WorkerLostError(
                        'pool worker %s (pid %s) exited with %s while running task %d of job %d'
                        % (w.name, w.pid, _describe_exit(w.exitcode), i, job),
                        w.pid,
                        w.exitcode,
                    )
                    # Through the result queue: a result the worker sent
                    # before dying is ahead of this one, and wins.
                    try:
                        self.outqueue.put((job, i, (False, err)))
                    except Exception:
                        self.deliver(job, i, (False, err))
        return reaped

    def _held_by(self, slot):
        # The claim (job, index) the exited worker of this slot held, or
        # None (see _tasks_of_claim); the slot is empty afterwards.
        if slot < 0:
            return None
        if self.claiming and slot < self.num_claims:
            try:
                return self.inqueue._take_claim(slot)
            except (OSError, ValueError):
                return None
        if self.mark is None:
            return None
        job, i = self.mark[2 * slot], self.mark[2 * slot + 1]
        self.mark[2 * slot] = _IDLE
        return None if job == _IDLE else (job, i)

    # -- results --

    def deliver(self, job, i, outcome):
        with self.set_lock:
            result = self.cache.get(job)
            if result is not None:
                result._set(i, outcome)

    def deliver_many(self, job, first, values, failed):
        # The outcomes of tasks first, first + 1, ... of job (a batch's).
        with self.set_lock:
            result = self.cache.get(job)
            if result is not None:
                result._set_many(first, values, failed)

    # -- feeding tasks --

    def feed(self, tasks, set_length):
        """Put the tasks of one submission into the task queue, in batches
        while the tasks are small (see _Pace). Returns False if the pool was
        terminated meanwhile."""
        last = -1
        task = more = failure = None
        size = 1  # tasks in the next ring item
        per_task = 0  # pickle bytes per task in the last batch
        pace = _Pace(self) if self.batching and type(tasks) is _Batchable else None
        tasks = iter(tasks)
        try:
            for task in tasks:
                if self.state == TERMINATE:
                    return False
                if type(task) is _Failure:
                    failure = task
                elif size == 1:
                    self._put_one(task)
                    last = task[1]
                else:
                    group = [task]
                    for more in islice(tasks, size - 1):
                        if type(more) is _Failure:
                            failure = more
                            break
                        group.append(more)
                    nbytes = self._put_group(group)
                    if nbytes:
                        per_task = nbytes // len(group) or 1
                    last = group[-1][1]
                    group = more = None
                if failure is not None:
                    last = failure.i
                    self.deliver(failure.job, failure.i, (False, failure.exc))
                    break
                if pace is not None:
                    size = pace.next_size(size, per_task)
            if set_length is not None:
                with self.set_lock:
                    set_length(last + 1)
        finally:
            task = tasks = failure = pace = None
        return True

    def submit_apply(self, task):
        """Put an apply_async task (job, 0, func, args, kwds) from the
        caller's thread. While tasks are small and the ring still holds
        tasks for the workers, consecutive calls of one function gather into
        one batch, put once it is full or by the feeder thread (woken with
        _FLUSH when a batch starts) as soon as the caller lets go of the
        GIL."""
        with self.apply_lock:
            func = task[2]
            if func is not self.apply_func and func != self.apply_func:
                # Another function, of unknown cost: judged afresh (slow
                # calls right after fast ones must not go out in batches).
                self._flush_applies()
                self.apply_func = func
                self.apply_pace = _Pace(self)
                self.apply_size = 1
            pending = self.apply_pending
            if pending and pending[-1][0] + 1 != task[0]:
                self._flush_applies()  # job ids not consecutive: another batch
                pending = self.apply_pending
            if not pending:
                size = self.apply_size = self.apply_pace.next_size(self.apply_size, 0)
                if size == 1 or self.inqueue.empty():
                    self._put_one(task)  # a worker may be waiting for it
                    return
                pending.append(task)
                if not self.apply_nudged:
                    self.apply_nudged = True
                    self.taskqueue.put(_FLUSH)
                return
            pending.append(task)
            if len(pending) >= self.apply_size:
                self._flush_applies()

    def flush_applies(self):
        with self.apply_lock:
            self.apply_nudged = False
            self._flush_applies()

    def _flush_applies(self):
        # Put the pending apply_async calls (apply_lock held).
        pending = self.apply_pending
        if not pending:
            return
        self.apply_pending = []
        if len(pending) == 1:
            self._put_one(pending[0])
            return
        job, n = pending[0][0], len(pending)
        try:
            data = ForkingPickler.dumps((job, None, [t[2:] for t in pending]))
        except Exception:
            for task in pending:
                self._put_one(task)
            return
        try:
            self.put_task(job, -n, data)
        except Exception as e:
            for task in pending:
                self.deliver(task[0], 0, (False, e))

    def _put_one(self, task):
        try:
            self.put_task(task[0], task[1], task)
        except Exception as e:
            self.deliver(task[0], task[1], (False, e))

    def _put_group(self, group):
        # Tasks first, first + 1, ... of one job as one ring item (a single
        # task as itself). Returns the pickle's size (0 when not batched).
        if len(group) == 1:
            self._put_one(group[0])
            return 0
        job, first = group[0][0], group[0][1]
        n = len(group)
        try:
            data = ForkingPickler.dumps((job, first, [t[2:] for t in group]))
        except Exception:
            # One of them does not pickle: each goes on its own, so that
            # only that one fails.
            for task in group:
                self._put_one(task)
            return 0
        try:
            self.put_task(job, first + n * _BATCH_SPAN, data)
        except Exception as e:
            for task in group:
                self.deliver(job, task[1], (False, e))
        return len(data)

    # -- threads --

    def start_threads(self):
        self.state = RUN
        names = ('supervisor', 'feeder', 'router')
        bodies = (self._supervise, self._feed_loop, self._route_loop)
        threads = []
        for name, body in zip(names, bodies):
            t = threading.Thread(target=body, name='gomp-pool-' + name, daemon=True)
            t._state = RUN
            t.start()
            threads.append(t)
        self.threads = tuple(threads)
        self.thread_idents = frozenset(t.ident for t in threads)

    def _supervise(self):
        while True:
            state = self.state
            if state == TERMINATE or (state != RUN and not self.cache):
                break
            if self.reap() and (self.state == RUN or (self.cache and self.state != TERMINATE)):
                try:
                    self.repopulate()
                except Exception:
                    util.debug('could not replace a pool worker:\n%s', traceback.format_exc())
            sentinels = []
            for w in self.pool:
                s = getattr(w, 'sentinel', None)
                if s is not None:
                    sentinels.append(s)
            try:
                wait(sentinels + [self.wake], None)
            except OSError:
                break  # the pool is being torn down
            self.wake.clear()
        util.debug('pool supervisor: done')
        self.taskqueue.put(None)

    def _feed_loop(self):
        take = self.taskqueue.get
        while True:
            item = take()
            if item is None:
                break
            if item is _FLUSH:
                self.flush_applies()
                continue
            tasks, set_length = item
            item = None
            if not self.feed(tasks, set_length):
                break
            tasks = set_length = None
        # No more tasks: tell the router, then every worker.
        try:
            self.outqueue.put(None)
            for _ in range(len(self.pool)):
                self.put_task(-1, 0, None)
        except (OSError, ValueError):
            pass
        util.debug('pool feeder: done')

    def _route_loop(self):
        take = self.get_result
        deliver = self.deliver
        while True:
            try:
                item = take()
            except (OSError, EOFError):
                break
            if item is None:
                break
            if len(item) == 4:
                job, first, values, failed = item
                if first is None:  # task 0 of jobs job, job + 1, ...
                    for k, value in enumerate(values):
                        deliver(job + k, 0, (failed is None or k not in failed, value))
                else:
                    self.deliver_many(job, first, values, failed)
                self.completed += len(values)
                item = values = failed = None
                continue
            job, i, outcome = item
            deliver(job, i, outcome)
            self.completed += 1
            item = outcome = None
        if not self.use_threads and self.state != TERMINATE:
            self._drain_results()
        util.debug('pool router: done')

    def _drain_results(self):
        # Workers may still be sending results nobody waits for (a map whose
        # job failed): keep the result ring moving until they have all exited,
        # so that none of them blocks on a full ring.
        raw = getattr(self.outqueue, '_get_bytes', None)
        if raw is None:
            return
        running = [w.sentinel for w in self.pool if hasattr(w, 'sentinel')]
        while running:
            try:
                while True:
                    raw(False)
            except queue.Empty:
                pass
            except (OSError, EOFError):
                return
            exited = wait(running, 0.01)
            running = [s for s in running if s not in exited]

    # -- shutdown --

    def close(self):
        self.flush_applies()
        self.state = CLOSE
        self.wake.poke()

    def terminate(self):
        util.debug('terminating the pool')
        self.state = TERMINATE
        self.wake.poke()
        me = threading.current_thread()
        if me in self.threads:
            # An abandoned pool collected in one of its own threads (its last
            # reference was a result the router just completed, with the
            # router holding set_lock): finish from a thread of its own
            # rather than wait here for threads that may wait for this one.
            threading.Thread(
                target=self._finish_terminate, args=(me,), daemon=True, name='gomp-pool-terminate'
            ).start()
            return
        self._finish_terminate(me)

    def _finish_terminate(self, me):
        supervisor = feeder = router = None
        if self.threads:
            supervisor, feeder, router = self.threads
        # With gomp's queues, signal the workers first, so that they die
        # while the threads wind down; then those the supervisor may have
        # started meanwhile. Queues of the stdlib's shape (a Pool subclass's
        # _setup_queues) have locks a worker holds while it reads a task or
        # writes a result, and a worker killed holding one would block the
        # feeder or the router for good: there the threads wind down first,
        # with the workers alive, and the workers are signalled last.
        foreign = not self.use_threads and not hasattr(self.inqueue, '_get_bytes')
        signalled = set()
        if not foreign:
            with self.pool_lock:
                self._signal_workers(signalled)
        if supervisor is not None and supervisor is not me:
            supervisor.join()
        pool = list(self.pool)
        if not foreign:
            self._signal_workers(signalled)
        if self.use_threads:
            self._unblock_threads()
        if feeder is not None and feeder is not me:
            self._drain_tasks_while(feeder)
            feeder.join()
        if router is not None:
            try:
                self.outqueue.put(None)
            except Exception:
                pass
            if router is not me:
                router.join()
        if foreign:
            self._signal_workers(signalled)
        if pool and hasattr(pool[0], 'terminate'):
            for w in pool:
                w.join()
        self.wake.close()

    def _signal_workers(self, signalled):
        # SIGTERM to each worker process still running and not signalled yet
        # (thread workers cannot be signalled: see _unblock_threads).
        for w in list(self.pool):
            if w in signalled or not hasattr(w, 'terminate'):
                continue
            signalled.add(w)
            if w.exitcode is None:
                w.terminate()

    def _unblock_threads(self):
        # Thread workers cannot be killed: drop the tasks not started yet and
        # let each thread end after its current task.
        try:
            while True:
                self.inqueue.get_nowait()
        except queue.Empty:
            pass
        for _ in range(len(self.pool)):
            self.inqueue.put(None)

    def _drain_tasks_while(self, feeder):
        # The feeder may wait for room in the task queue, which no worker
        # reads any more: empty it until the feeder has finished. gomp's
        # queues have _get_bytes; a queue of the stdlib's shape that a Pool
        # subclass installed in _setup_queues (joblib's MemmappingPool: a pipe
        # with a reader lock) is drained through its pipe instead.
        raw = getattr(self.inqueue, '_get_bytes', None)
        reader = getattr(self.inqueue, '_reader', None)
        while feeder.is_alive():
            if raw is not None:
                try:
                    raw(True, 0.02)
                except queue.Empty:
                    pass
                except (OSError, EOFError):
                    feeder.join(0.05)
            elif reader is not None:
                self._drain_pipe(reader, getattr(self.inqueue, '_rlock', None))
                feeder.join(0.02)
            else:
                feeder.join(0.05)

    def _drain_pipe(self, reader, rlock):
        # Every task still in the pipe is dropped, so its bytes are thrown
        # away whole, without regard to message boundaries. A worker that is
        # still alive reads under rlock, so the bytes are taken under it too,
        # unless nobody can be reading: the lock's holder is one of the
        # workers, all signalled by now (an idle worker blocks in get() with
        # the lock held, and a dead holder never releases it), or every
        # worker has exited.
        locked = False
        if rlock is not None and not self._held_by_a_worker(rlock):
            locked = rlock.acquire(timeout=0.05)
            if not locked and any(w.exitcode is None for w in self.pool):
                return
        try:
            fd = reader.fileno()
            while reader.poll(0):
                if not os.read(fd, 1 << 16):
                    break
        except (OSError, EOFError, ValueError):
            pass
        finally:
            if locked:
                rlock.release()

    def _held_by_a_worker(self, lock):
        # gomp's Lock knows the pid of its holder; another lock cannot tell.
        owner = getattr(getattr(lock, '_semlock', None), '_owner', None)
        pid = owner() if owner is not None else None
        return bool(pid and pid > 0 and any(w.pid == pid for w in self.pool))

    def join(self):
        me = threading.current_thread()
        for t in self.threads:
            if t is not me:
                t.join()
        for w in list(self.pool):
            w.join()
        if not any(t.is_alive() for t in self.threads):
            self.wake.close()


# ---- results -------------------------------------------------------------------------------
#
# Every result object is registered in the pool's _cache under a job id; the
# engine's router calls its _set(i, outcome) for each task of the job as the
# outcomes come in (with the engine's set_lock held), and the feeder tells an
# imap iterator its length once the whole iterable was read. An outcome is
# (True, value) or (False, exception).


def _call_back(callback, value):
    """Run a user callback in the router thread; an exception it raises is
    reported on stderr instead of killing the router."""
    try:
        callback(value)
    except Exception:
        try:
            sys.stderr.write('Exception in pool callback %r:\n' % (callback,))
            traceback.print_exc()
        except Exception:
            pass


class _Latch:
    """A one-shot event: what an ApplyResult waits on. A lock held from the
    start and released by set(); a waiter takes it and gives it back at
    once, so any number of waiters pass. Cheaper to create than a
    threading.Event (a Condition and its lock), which matters with one per
    apply_async."""

    __slots__ = ('_lock', '_set')

    def __init__(self):
        self._lock = _allocate_lock()
        self._lock.acquire()
        self._set = False

    def set(self):
        if not self._set:
            self._set = True
            self._lock.release()

    def is_set(self):
        return self._set

    def wait(self, timeout=None):
        """Whether it was set within timeout seconds (None: waits for it)."""
        if self._set:
            return True
        if timeout is None:
            got = self._lock.acquire()
        elif timeout > 0:
            got = self._lock.acquire(True, timeout)
        else:
            got = self._lock.acquire(False)
        if got:
            self._lock.release()
        return self._set


class _Job:
    """What all results share: a job id, the registration in the pool's
    _cache, and letting go of the pool once every part of the job is in."""

    def __init__(self, pool):
        self._pool = pool
        self._cache = pool._cache
        self._job = next(job_counter)
        self._cache[self._job] = self

    def _retire(self):
        # `del`, not pop(): the pool's _cache notices when it becomes empty.
        if self._job in self._cache:
            del self._cache[self._job]
        self._pool = None

    __class_getitem__ = classmethod(GenericAlias)


class ApplyResult(_Job):
    """The result of apply_async(), and the base of MapResult: a job of
    _parts tasks whose value is ready once all of them reported. The first
    failure decides the outcome; later parts are still awaited, so that the
    job's tasks are all finished when get() raises."""

    _parts = 1

    def __init__(self, pool, callback, error_callback):
        self._event = _Latch()
        self._callback = callback
        self._error_callback = error_callback
        self._success = True
        self._value = None
        self._reported = bytearray(self._parts)  # per part: 1 once it reported
        self._left = self._parts
        _Job.__init__(self, pool)

    def get(self, timeout=None):
        """The return value; re-raises the exception of a call that raised;
        TimeoutError if it is not in after timeout seconds."""
        if not self._event.wait(timeout):
            raise TimeoutError
        if not self._success:
            raise self._value
        return self._value

    def wait(self, timeout=None):
        """Wait until the result is in, at most timeout seconds."""
        self._event.wait(timeout)

    def ready(self):
        """Whether the result is in."""
        return self._event.is_set()

    def successful(self):
        """Whether the call returned without raising (ValueError before it is in)."""
        if self.ready():
            return self._success
        raise ValueError(f'{self!r} not ready')

    def _keep(self, i, value):
        """Store the value task i returned (one task: it is the value)."""
        self._value = value

    def _set(self, i, outcome):
        # A task whose worker died may be reported lost after its real
        # result came in after all: only the first report counts.
        reported = self._reported
        if i >= len(reported) or reported[i]:
            return
        reported[i] = 1
        self._left -= 1
        ok, value = outcome
        if self._success:
            if ok:
                self._keep(i, value)
            else:
                self._success, self._value = False, value
        if not self._left:
            self._finish(notify=True)

    def _set_many(self, first, values, failed):
        # The outcomes of tasks first, first + 1, ... (a batch's; failed: the
        # offsets in values that are exceptions, or None). While none of
        # them reported yet and none failed, in one step; otherwise task by
        # task, as _set.
        n = len(values)
        end = first + n
        reported = self._reported
        if failed is None and end <= len(reported) and reported.find(1, first, end) < 0:
            reported[first:end] = b'\x01' * n
            self._left -= n
            if self._success:
                self._keep_many(first, values)
            if not self._left:
                self._finish(notify=True)
            return
        for k, value in enumerate(values):
            self._set(first + k, (failed is None or k not in failed, value))

    def _keep_many(self, first, values):
        for k, value in enumerate(values):
            self._keep(first + k, value)

    def _finish(self, notify):
        if notify:
            hook = self._callback if self._success else self._error_callback
            if hook is not None:
                _call_back(hook, self._value)
        self._event.set()
        self._retire()


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of map_async() / starmap_async(): one part per chunk, each
    filling its slice of the list. No chunks (no items, or a chunksize below
    1, as in the standard library): ready at once, with no callback."""

    def __init__(self, pool, chunksize, length, callback, error_callback):
        self._chunksize = chunksize
        self._parts = -(-length // chunksize) if chunksize > 0 else 0
        ApplyResult.__init__(self, pool, callback, error_callback)
        self._value = [None] * length
        if not self._parts:
            self._finish(notify=False)

    def _keep(self, i, values):
        at = i * self._chunksize
        self._value[at : at + len(values)] = values

    def _keep_many(self, first, chunks):
        # Consecutive chunks fill one slice (only the last chunk of the map
        # can be short, and it is the last of its batch).
        values = list(chain.from_iterable(chunks))
        at = first * self._chunksize
        self._value[at : at + len(values)] = values


class IMapIterator(_Job):
    """The iterator returned by imap(): results in the order of the input,
    each as soon as it and every result before it are in."""

    def __init__(self, pool):
        self._cond = threading.Condition(threading.Lock())
        self._out = deque()  # outcomes next() may hand out, in order
        self._released = 0  # how many outcomes went into _out so far
        self._length = None  # the number of tasks, once the feeder knows
        self._early = {}  # index -> outcome that came before its turn
        _Job.__init__(self, pool)

    def __iter__(self):
        return self

    def _release(self, i, outcome):
        """Move what outcome i makes available into _out."""
        if i != self._released:
            # Ahead of its turn: kept until then. (Behind it: reported twice,
            # for a lost task, and the first report stands.)
            if i > self._released:
                self._early.setdefault(i, outcome)
            return
        self._out.append(outcome)
        self._released = n = i + 1
        early = self._early
        while early and n in early:
            self._out.append(early.pop(n))
            self._released = n = n + 1

    def _can_go_on(self):
        return bool(self._out) or self._released == self._length

    def next(self, timeout=None):
        """The next result; TimeoutError if it is not in after timeout seconds."""
        try:
            # A result already released needs no lock (a deque's popleft is
            # atomic), which halves the cost of each item in a batch.
            ok, value = self._out.popleft()
        except IndexError:
            with self._cond:
                if not self._out and not self._cond.wait_for(self._can_go_on, timeout):
                    raise TimeoutError from None
                if not self._out:
                    self._pool = None
                    raise StopIteration from None
                ok, value = self._out.popleft()
        if not ok:
            raise value
        return value

    __next__ = next

    def _set(self, i, outcome):
        with self._cond:
            self._release(i, outcome)
            if self._out:
                self._cond.notify()
            if self._released == self._length:
                self._retire()

    def _set_many(self, first, values, failed):
        # A batch's outcomes (see ApplyResult._set_many): one wake-up for all.
        with self._cond:
            release = self._release
            for k, value in enumerate(values):
                release(first + k, (failed is None or k not in failed, value))
            if self._out:
                self._cond.notify(len(self._out))  # as many waiters as there are results
            if self._released == self._length:
                self._retire()

    def _set_length(self, length):
        with self._cond:
            self._length = length
            if self._released == length:
                self._cond.notify()
                self._retire()


class IMapUnorderedIterator(IMapIterator):
    """The iterator returned by imap_unordered(): results as they come in."""

    def __init__(self, pool):
        IMapIterator.__init__(self, pool)
        self._seen = set()

    def _release(self, i, outcome):
        if i not in self._seen:
            self._seen.add(i)
            self._out.append(outcome)
            self._released += 1


# ---- Pool ----------------------------------------------------------------------------------


def _checked_size(processes, initializer, maxtasksperchild):
    """The number of workers a Pool gets; ValueError / TypeError for
    arguments the pool cannot work with."""
    if initializer is not None and not callable(initializer):
        raise TypeError('initializer must be a callable')
    if maxtasksperchild is not None and (
        not isinstance(maxtasksperchild, int) or maxtasksperchild < 1
    ):
        raise ValueError("maxtasksperchild must be a positive int or None")
    if processes is None:
        processes = os.cpu_count() or 1
    if processes < 1:
        raise ValueError("Number of processes must be at least 1")
    return processes


def _default_chunksize(n_items, n_workers):
    # About four chunks per worker: few enough messages, and still work to
    # share out among the workers while the last chunks are under way.
    return -(-n_items // (4 * n_workers))


def _map_method(name, runner, blocking, doc):
    """Pool.map / starmap / map_async / starmap_async: one submission path,
    differing only in how a chunk calls func and whether to wait."""
    if blocking:

        def method(self, func, iterable, chunksize=None):
            return self._submit_chunks(runner, func, iterable, chunksize, None, None).get()
    else:

        def method(self, func, iterable, chunksize=None, callback=None, error_callback=None):
            return self._submit_chunks(runner, func, iterable, chunksize, callback, error_callback)

    method.__name__ = name
    method.__qualname__ = 'Pool.' + name
    method.__doc__ = doc
    return method


def _imap_method(name, iterator_class, doc):
    """Pool.imap / imap_unordered, which differ in their iterator only."""

    def method(self, func, iterable, chunksize=1):
        return self._submit_lazily(iterator_class, func, iterable, chunksize)

    method.__name__ = name
    method.__qualname__ = 'Pool.' + name
    method.__doc__ = doc
    return method


class Pool:
    """A pool of worker processes running the tasks submitted to it.

    The work itself is done by an _Engine (see the module documentation);
    the Pool checks and packages submissions, keeps the state the API
    promises (RUN, CLOSE, TERMINATE) and hands out result objects."""

    # Until __init__ has got that far; __del__ and repr rely on them.
    _state = INIT
    _engine = None
    _pool = ()

    _wrap_exception = True  # send exceptions back with their traceback text
    _threads = False  # ThreadPool: workers are threads

    def __init__(
        self, processes=None, initializer=None, initargs=(), maxtasksperchild=None, context=None
    ):
        self._processes = _checked_size(processes, initializer, maxtasksperchild)
        self._ctx = context or get_context()
        self._initializer = initializer
        self._initargs = initargs
        self._maxtasksperchild = maxtasksperchild
        self._setup_queues()
        engine = _Engine(
            self._ctx,
            self.Process,
            self._processes,
            initializer,
            initargs,
            maxtasksperchild,
            self._wrap_exception,
            self._inqueue,
            self._outqueue,
            self._threads,
            getattr(self, '_quick_put', None),
            getattr(self, '_quick_get', None),
            self._claims_tasks(),
        )
        # The engine's containers under the names the standard library's
        # pool has (tests and debugging tools look at them).
        self._engine = engine
        self._pool = engine.pool
        self._cache = engine.cache
        self._taskqueue = engine.taskqueue
        self._change_notifier = engine.wake
        try:
            # Through the method, which a subclass may override (the stdlib
            # calls it here too; its later replacements of exited workers
            # do not go through it, nor do ours).
            self._repopulate_pool()
        except BaseException:
            self._stop_started_workers()
            raise
        engine.start_threads()
        self._terminate = util.Finalize(self, engine.terminate, exitpriority=15)
        self._state = RUN

    @staticmethod
    def Process(ctx, *args, **kwds):
        """A new worker (a process of the pool's context)."""
        return ctx.Process(*args, **kwds)

    def _claims_tasks(self):
        # Claiming needs both ends to be ours: the queues of our own
        # _setup_queues and workers started by our own _repopulate_pool (a
        # subclass may start workers that call worker() with plain gets).
        cls = type(self)
        return (
            not self._threads
            and cls._setup_queues is Pool._setup_queues
            and cls._repopulate_pool is Pool._repopulate_pool
            and isinstance(self._inqueue, _gomp.SimpleQueueCore)
        )

    def _setup_queues(self):
        if self._threads:
            self._inqueue, self._outqueue = queue.SimpleQueue(), queue.SimpleQueue()
        else:
            self._inqueue, self._outqueue = self._ctx.SimpleQueue(), self._ctx.SimpleQueue()

    def _stop_started_workers(self):
        # __init__ failed part way through starting the workers.
        started = list(self._pool)
        for w in started:
            if w.exitcode is None:
                w.terminate()
        for w in started:
            w.join()

    def _repopulate_pool(self):
        return self._engine.repopulate()

    def _join_exited_workers(self):
        return self._engine.reap()

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    def __del__(self, _warn=warnings.warn, RUN=RUN):
        if self._state != RUN:
            return
        _warn("unclosed running multiprocessing pool %r" % (self,), ResourceWarning, source=self)
        if self._engine is not None:
            self._engine.wake.poke()

    def __repr__(self):
        return '<{0.__module__}.{0.__qualname__} state={1} pool_size={2}>'.format(
            type(self), self._state, len(self._pool)
        )

    # -- submitting work --

    map = _map_method(
        'map',
        _run_chunk,
        True,
        """\
        list(map(func, iterable)), computed by the workers in chunks of
        chunksize items (by default about four chunks per worker).""",
    )
    starmap = _map_method(
        'starmap',
        _run_star_chunk,
        True,
        """\
        Like map(), with each item of iterable unpacked as func's arguments.""",
    )
    map_async = _map_method(
        'map_async',
        _run_chunk,
        False,
        """\
        map() that returns a MapResult at once; callback gets the list,
        error_callback the first exception.""",
    )
    starmap_async = _map_method(
        'starmap_async',
        _run_star_chunk,
        False,
        """\
        starmap() that returns a MapResult at once.""",
    )

    def _submit_chunks(self, runner, func, iterable, chunksize, callback, error_callback):
        self._check_running()
        items = iterable if hasattr(iterable, '__len__') else list(iterable)
        if chunksize is None:
            chunksize = _default_chunksize(len(items), len(self._pool))
        result = MapResult(self, chunksize, len(items), callback, error_callback)
        if result._parts:
            tasks = _chunk_stream(result._job, runner, func, items, chunksize)
            self._taskqueue.put((_Batchable(tasks), None))
        return result

    imap = _imap_method(
        'imap',
        IMapIterator,
        """\
        An iterator over func(x) for x in iterable, in order; with a
        chunksize above 1 the workers get chunksize items per task.""",
    )
    imap_unordered = _imap_method(
        'imap_unordered',
        IMapUnorderedIterator,
        """\
        Like imap(), with the results in the order they are ready.""",
    )

    def _submit_lazily(self, iterator_class, func, iterable, chunksize):
        # The feeder thread walks the iterable, so it may be endless and
        # results come back while it is still being read.
        self._check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        results = iterator_class(self)
        if chunksize == 1:
            tasks = _task_stream(results._job, func, iterable)
        else:
            tasks = _chunk_stream(results._job, _run_chunk, func, iterable, chunksize)
        if hasattr(iterable, '__len__'):
            tasks = _Batchable(tasks)
        self._taskqueue.put((tasks, results._set_length))
        return results if chunksize == 1 else chain.from_iterable(results)

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        """func(*args, **kwds) in a worker; returns an AsyncResult."""
        self._check_running()
        engine = self._engine
        result = ApplyResult(self, callback, error_callback)
        task = (result._job, 0, func, args, kwds)
        if threading.get_ident() in engine.thread_idents:
            # Called from a callback, in the router thread: putting the task
            # into the ring could wait for room that only the router makes.
            engine.taskqueue.put(((task,), None))
            return result
        if engine.batching:
            engine.submit_apply(task)
            return result
        try:
            engine.put_task(result._job, 0, task)
        except Exception as e:
            engine.deliver(result._job, 0, (False, e))
        return result

    def apply(self, func, args=(), kwds={}):
        """func(*args, **kwds) in a worker; waits for the result."""
        return self.apply_async(func, args, kwds).get()

    # -- lifetime --

    def close(self):
        """No more submissions; the workers exit once the pending work is done."""
        util.debug('closing pool')
        if self._state == RUN:
            self._state = CLOSE
            self._engine.close()

    def join(self):
        """Wait for the workers to exit (after close() or terminate())."""
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("Pool is still running" if self._state == RUN else "In unknown state")
        util.debug('joining pool')
        self._engine.join()

    def terminate(self):
        """Stop the workers now, without finishing the pending work."""
        self._state = TERMINATE
        self._terminate()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc_info):
        self.terminate()

    def __reduce__(self):
        raise NotImplementedError('pool objects cannot be passed between processes or pickled')


# ---- ThreadPool ----------------------------------------------------------------------------


def _worker_thread(ctx, *args, **kwds):
    from .dummy import Process

    return Process(*args, **kwds)


class ThreadPool(Pool):
    """A Pool whose workers are threads of this process: tasks and results
    go through plain in-process queues, nothing is pickled, and a task's
    exception is raised as it is (no remote traceback)."""

    _wrap_exception = False
    _threads = True
    Process = staticmethod(_worker_thread)

    def __init__(self, processes=None, initializer=None, initargs=()):
        super().__init__(processes, initializer, initargs)
