"""gomp.cluster: the Pool API, unchanged, running its tasks on a Dask cluster.

    from gomp.cluster import Pool

    with Pool(4) as pool:                              # a LocalCluster of 4 processes
        print(pool.map(f, range(100)))
    with Pool(address='tcp://scheduler:8786') as pool:  # a running Dask scheduler
        ...
    with Pool(client=client) as pool:                   # a Client the program already has
        ...

A program written for gomp.Pool (or multiprocessing.Pool) moves from one
machine to many by changing the line that makes the pool. Scheduling,
transport and worker management are Dask's (dask.distributed); this module
only maps the Pool API onto it. It needs the extra: pip install 'gomp-mp[cluster]'.

How the Pool API maps onto Dask
-------------------------------
- Every task of the local Pool (one apply, one chunk of a map) is one Dask
  task, submitted with client.submit() under a key of the pool's own. A
  feeder thread walks the submitted iterables (so imap takes endless ones)
  and keeps at most `processes` tasks in flight: submitted and not finished.
  The results are gomp.pool's own result objects (AsyncResult, MapResult,
  the imap iterators), so order, callbacks and the first-failure rule are
  those of the local Pool. The client's event loop fetches the results of
  finished tasks, many at once; a router thread of the pool's own hands
  them to the result objects and runs the callbacks.
- A task runs inside _call on the worker, which catches its exception and
  sends it back with the worker's traceback as text (gomp.pool's
  ExceptionWithTraceback): get() raises the exception with that traceback as
  its __cause__, as the local Pool does.
- A worker process that dies while it runs a task: Dask would run the task
  again on another worker (up to the scheduler's allowed-failures, 3 by
  default) and then fail it with KilledWorker. The local Pool never runs a
  task twice behind the user's back, so the LocalCluster this module starts
  has distributed.scheduler.allowed-failures = retries (0 unless asked) and a
  KilledWorker becomes gomp.pool.WorkerLostError. The nanny restarts the
  worker and the pool goes on. A scheduler this module did not start keeps
  its own setting, and a scheduler plugin of the pool's (_LostIsFinal)
  makes the pool's own tasks fail after `retries` worker deaths there too.
- initializer(*initargs) runs once in each worker process, through a Dask
  WorkerPlugin, also in workers that join (or are restarted) later.
- A large function shared by all the tasks of a map (a functools.partial
  over a big array, a bound method of a big object) and large arguments of
  starmap items are sent to the cluster once per map with client.scatter()
  and referred to by the tasks, instead of travelling inside every task.

What differs from the local Pool: maxtasksperchild is not supported (Dask
workers are long-lived: a worker restarted while its results wait to be
fetched makes Dask compute them again); terminate() cancels the pool's tasks
but a task already running in a worker of a cluster this module did not
start finishes there (Dask cannot stop a running task without killing its
worker); functions travel with cloudpickle, so lambdas work here and not
in the local Pool; gomp-mp must be installed on the workers.
"""

import os
import pickle
import queue
import sys
import threading
import types
import uuid
import warnings

# A subpackage rather than a module: CPython's suite imports every *.py file
# of the package folder (its import-star test), and this one needs Dask.
try:
    import cloudpickle
    import dask
    import distributed
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError(
        "gomp.cluster runs the Pool API on Dask and needs dask.distributed, "
        "which is not installed: pip install 'gomp-mp[cluster]' "
        "(or: pip install 'dask[distributed]')"
    ) from e

from .. import util
from ..pool import (
    CLOSE,
    INIT,
    RUN,
    TERMINATE,
    ApplyResult,
    AsyncResult,
    ExceptionWithTraceback,
    MapResult,
    MaybeEncodingError,
    WorkerLostError,
    _checked_size,
    _chunk_stream,
    _default_chunksize,
    _Failure,
    _run_chunk,
    _run_star_chunk,
)
from ..pool import Pool as _LocalPool

__all__ = ['Pool', 'AsyncResult', 'WorkerLostError']

# An object whose pickle (the function of a map) or whose sys.getsizeof (an
# argument of a starmap item) is at least this large is scattered once
# instead of travelling inside each task.
SCATTER_MIN = 64 * 1024

# Seconds between looks at the pool's state while the feeder waits for a
# free slot: terminate() is noticed within that time.
_POLL = 0.5


# ---- what runs on the workers --------------------------------------------------------------


def _call(func, args, kwds):
    """Run one task in a worker and return its outcome pickled: (True,
    value), or (False, the exception with its traceback as text).

    Catching here, rather than letting Dask carry the exception, gives the
    local Pool's remote traceback and keeps Dask's own failures (a lost
    worker, a task that could not be unpickled) apart from the task's.
    Pickling here gives the local Pool's answer to a result that does not
    pickle, a MaybeEncodingError (Dask would fail the fetch on the client
    with a TypeError and log it), at no extra cost: Dask passes bytes on
    as they are."""
    try:
        outcome = True, func(*args, **(kwds or {}))
    except Exception as e:
        outcome = False, ExceptionWithTraceback(e, e.__traceback__)
    try:
        return pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        return pickle.dumps((False, MaybeEncodingError(e, outcome[1])), pickle.HIGHEST_PROTOCOL)


class _Initializer(distributed.WorkerPlugin):
    """Runs the pool's initializer once in each worker process."""

    def __init__(self, initializer, initargs):
        self.initializer = initializer
        self.initargs = tuple(initargs)

    def setup(self, worker):
        self.initializer(*self.initargs)


class _LostIsFinal(distributed.SchedulerPlugin):
    """On a scheduler the pool did not start: a task of the pool (its key
    starts with prefix) fails with KilledWorker once `retries` workers died
    while running it, whatever the scheduler's allowed-failures.

    The scheduler counts, per task, the workers that died while running it
    (TaskState.suspicious) and fails the task once the count passes
    allowed_failures. Each time one of the pool's tasks starts processing,
    its count is raised to allowed_failures - retries, so that the next
    death after `retries` of them passes it."""

    def __init__(self, prefix, retries):
        self.prefix = prefix
        self.retries = retries
        self.scheduler = None

    async def start(self, scheduler):
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, **kwargs):
        if finish != 'processing' or not isinstance(key, str) or not key.startswith(self.prefix):
            return
        scheduler = self.scheduler
        ts = scheduler.tasks.get(key) if scheduler is not None else None
        if ts is not None:
            ts.suspicious = max(ts.suspicious, scheduler.allowed_failures - self.retries)


# ---- scattering what all the tasks of a job share ------------------------------------------


def _by_reference(func):
    """Whether func pickles as a reference to its module and name (a
    function, class or builtin its module holds under that name), so is
    small whatever it does. Others, a lambda or a closure, a function of
    __main__ (which cloudpickle sends by value: the workers cannot import
    the client's __main__), a partial or a bound method, carry what they
    refer to."""
    if not isinstance(func, (types.FunctionType, types.BuiltinFunctionType, type)):
        return False
    module = getattr(func, '__module__', None)
    if module is None or module == '__main__':
        return False
    return getattr(sys.modules.get(module), func.__qualname__, None) is func


class _Sharer:
    """The objects of one job (map, starmap, ...) that were scattered: id()
    -> (the object, its Future). Holding the object keeps its id() from
    being reused by another object while the job is fed."""

    def __init__(self, client):
        self.client = client
        self.sent = {}

    def _scatter(self, obj):
        hit = self.sent.get(id(obj))
        if hit is None:
            hit = self.sent[id(obj)] = (obj, self.client.scatter(obj, hash=False))
        return hit[1]

    def func(self, func):
        """func, or its Future if its pickle is large."""
        if id(func) in self.sent:
            return self._scatter(func)
        if _by_reference(func):
            return func
        try:
            # Measured as Dask would send it.
            size = len(cloudpickle.dumps(func, pickle.HIGHEST_PROTOCOL))
        except Exception:
            return func  # fails in submit(), with Dask's message
        return self._scatter(func) if size >= SCATTER_MIN else func

    def items(self, chunk):
        """A starmap chunk with its large arguments replaced by Futures
        (Dask gives a task the values of the Futures in its arguments)."""
        out = []
        for item in chunk:
            if type(item) is tuple and any(self._large(x) for x in item):
                item = tuple(self._scatter(x) if self._large(x) else x for x in item)
            out.append(item)
        return tuple(out)

    def _large(self, x):
        if id(x) in self.sent:
            return True
        try:
            return sys.getsizeof(x) >= SCATTER_MIN
        except Exception:
            return False


# ---- the pool ------------------------------------------------------------------------------


class _Cache(dict):
    """The pool's _cache: job id -> pending result. join() waits for it to
    empty."""

    def __init__(self):
        dict.__init__(self)
        self.cond = threading.Condition()

    def __setitem__(self, job, result):
        with self.cond:
            dict.__setitem__(self, job, result)

    def __delitem__(self, job):
        with self.cond:
            dict.__delitem__(self, job)
            if not self:
                self.cond.notify_all()


class _Runner:
    """What a Pool runs on: the Dask client (and the LocalCluster, when the
    pool started one), the feeder and router threads, and the table of
    tasks in flight. Kept apart from the Pool object, which the threads do
    not refer to, so that a pool nobody closed can be collected: its
    finalizer then shuts the runner down (see Pool.__del__)."""

    def __init__(self, processes, initializer, initargs, address, client, retries, cluster_kwargs):
        self._name = 'gomp-pool-' + uuid.uuid4().hex[:12]
        self._cluster = None
        self._owns_client = client is None
        self._plugin = self._scheduler_plugin = None
        if client is not None:
            self._client = client
        elif address is not None:
            self._client = distributed.Client(address, set_as_default=False)
        else:
            n = processes if processes is not None else (os.cpu_count() or 1)
            kwargs = dict(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # No dashboard, and the scheduler's HTTP endpoints on a free
                # port rather than a warning that 8787 is taken.
                scheduler_kwargs={'dashboard_address': ':0'},
                silence_logs=50,  # logging.CRITICAL: a killed worker is the pool's to report
            )
            kwargs.update(cluster_kwargs or {})
            # The scheduler reads allowed-failures when it starts, inside
            # LocalCluster(): the setting is the pool's alone.
            with dask.config.set({'distributed.scheduler.allowed-failures': retries}):
                self._cluster = distributed.LocalCluster(**kwargs)
            try:
                self._client = distributed.Client(self._cluster, set_as_default=False)
            except BaseException:
                self._cluster.close()
                raise
        try:
            if self._cluster is None:
                self._limit_retries(retries)
            if processes is None:
                processes = sum(self._client.nthreads().values()) or 1
            self.processes = processes
            if initializer is not None:
                self._plugin = self._name + '-init'
                self._client.register_plugin(_Initializer(initializer, initargs), name=self._plugin)
        except BaseException:
            self._unregister_plugins()
            self._release_client()
            raise
        self._cache = _Cache()
        self._lock = threading.Lock()  # results' _set, the in-flight table
        self._inflight = {}  # key -> Future
        self._slots = threading.Semaphore(processes)
        self._taskqueue = queue.SimpleQueue()
        self._results = queue.SimpleQueue()  # (future, job, i, data) for the router
        self._stopping = threading.Event()  # terminate(): the feeder stops
        self._done = threading.Event()  # shutdown() ran
        self._feeder = threading.Thread(
            target=self._feed_loop, daemon=True, name=self._name + '-feeder'
        )
        self._router = threading.Thread(
            target=self._route_loop, daemon=True, name=self._name + '-router'
        )
        self._feeder.start()
        self._router.start()

    def _limit_retries(self, retries):
        # A scheduler the pool did not start runs a task whose worker died
        # again, up to its allowed-failures, for every client. A scheduler
        # plugin of the pool's own makes the pool's tasks fail after
        # `retries` such deaths instead, leaving other clients' tasks alone.
        # It needs gomp on the scheduler's machine; without, the pool warns.
        name = self._name + '-retries'
        try:
            self._client.register_plugin(_LostIsFinal(self._name + '-', retries), name=name)
        except Exception as e:
            warnings.warn(
                "gomp.cluster.Pool could not install its scheduler plugin (%s: %s): a task "
                "whose worker dies is run again as often as the scheduler's "
                "distributed.scheduler.allowed-failures says" % (type(e).__name__, e),
                RuntimeWarning,
                stacklevel=3,
            )
            return
        self._scheduler_plugin = name
        allowed = self._client.run_on_scheduler(_allowed_failures)
        if allowed < retries:
            warnings.warn(
                f"the Dask scheduler runs a task whose worker died at most {allowed} more "
                f"time(s) (distributed.scheduler.allowed-failures), fewer than retries={retries}",
                RuntimeWarning,
                stacklevel=3,
            )

    def _unregister_plugins(self):
        # Plugins stay with a cluster the pool does not own: take them off.
        if self._owns_client and self._cluster is not None:
            return
        if self._plugin is not None:
            try:
                self._client.unregister_worker_plugin(self._plugin)
            except Exception:
                pass
        if self._scheduler_plugin is not None:
            try:
                self._client.unregister_scheduler_plugin(self._scheduler_plugin)
            except Exception:
                pass

    # -- the feeder: task streams -> Dask futures --

    def _feed_loop(self):
        while True:
            item = self._taskqueue.get()
            if item is None:
                break
            tasks, set_length = item
            sharer = _Sharer(self._client)
            n = 0  # how many tasks the stream made (an imap's length)
            for task in tasks:
                if isinstance(task, _Failure):
                    # The iterable raised: that position fails, the rest
                    # of the stream is not read.
                    self._deliver(task.job, task.i, (False, task.exc))
                    n = task.i + 1
                    break
                if not self._take_slot():
                    break  # terminated: pending results stay pending
                self._submit(task, sharer)
                n += 1
            if set_length is not None:
                set_length(n)

    def _take_slot(self):
        while not self._slots.acquire(timeout=_POLL):
            if self._stopping.is_set():
                return False
        if self._stopping.is_set():
            self._slots.release()
            return False
        return True

    def _submit(self, task, sharer):
        job, i, func, args, kwds = task
        key = f'{self._name}-{job}-{i}'
        try:
            if func is _run_chunk or func is _run_star_chunk:
                inner, chunk = args
                inner = sharer.func(inner)
                if func is _run_star_chunk:
                    chunk = sharer.items(chunk)
                args = (inner, chunk)
            fut = self._client.submit(_call, func, args, kwds, key=key, pure=False)
        except Exception as e:
            self._slots.release()
            self._deliver(job, i, (False, e))
            return
        with self._lock:
            self._inflight[key] = fut
        fut.add_done_callback(lambda f, job=job, i=i: self._on_done(f, job, i))

    def _on_done(self, fut, job, i):
        # In Dask's callback thread (one for all the futures of the
        # process): hand a finished task's result to the client's event
        # loop, which fetches many at once, and anything else to the router.
        if fut.status == 'finished':
            self._client.loop.add_callback(self._fetch, fut, job, i)
        else:
            self._results.put((fut, job, i, None))

    async def _fetch(self, fut, job, i):
        # In the client's event loop.
        try:
            data = await self._client.gather(fut, asynchronous=True)
        except BaseException as e:  # asyncio's CancelledError included
            data = e
        self._results.put((fut, job, i, data))

    def _route_loop(self):
        # Outcomes reach the results (and the user's callbacks) from this
        # thread of the pool's own, so a slow callback holds up neither
        # Dask's callback thread nor its event loop.
        while True:
            item = self._results.get()
            if item is None:
                break
            fut, job, i, data = item
            with self._lock:
                self._inflight.pop(fut.key, None)
            self._slots.release()
            try:
                outcome = self._outcome(fut, data)
            except BaseException as e:
                outcome = (False, e)
            fut.release()
            self._deliver(job, i, outcome)

    def _outcome(self, fut, data):
        if isinstance(data, bytes):
            return pickle.loads(data)
        if isinstance(data, BaseException):
            return False, data
        if fut.status == 'cancelled':
            return False, distributed.client.FutureCancelledError(fut.key, 'cancelled')
        exc = fut.exception()
        if isinstance(exc, distributed.KilledWorker):
            return False, _lost(exc)
        return False, exc

    def _deliver(self, job, i, outcome):
        with self._lock:
            result = self._cache.get(job)
            if result is not None:
                result._set(i, outcome)

    # -- the end --

    def wait_idle(self):
        """After close(): wait until every submitted task has reported."""
        self._feeder.join()
        with self._cache.cond:
            self._cache.cond.wait_for(lambda: not self._cache)

    def shutdown(self):
        """Stop feeding, cancel the tasks in flight, stop the threads, and
        release the plugins, the client and the LocalCluster the pool made."""
        if self._done.is_set():
            return
        self._done.set()
        self._stopping.set()
        self._taskqueue.put(None)
        with self._lock:
            futures = list(self._inflight.values())
        if futures:
            try:
                self._client.cancel(futures, force=True)
            except Exception:
                pass
        me = threading.current_thread()
        if me is not self._feeder:
            self._feeder.join()
        self._results.put(None)
        if me is not self._router:
            self._router.join()
        self._unregister_plugins()
        self._release_client()

    def finalize(self):
        # The Pool's finalizer: at exit, in the main thread; for a pool
        # collected unclosed, in whatever thread dropped the last reference
        # or ran the garbage collector, which may be Dask's event loop,
        # where the client's blocking calls cannot run: from a thread of
        # its own there.
        if threading.current_thread() is threading.main_thread():
            self.shutdown()
        else:
            threading.Thread(target=self.shutdown, daemon=True, name=self._name + '-end').start()

    def _release_client(self):
        if self._owns_client and self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        if self._cluster is not None:
            try:
                self._cluster.close()
            except Exception:
                pass


class Pool:
    """The Pool API of gomp.Pool (and multiprocessing.Pool) on a Dask cluster.

    processes: the most tasks in flight at once (a task is one apply or one
      chunk of a map); with neither address nor client, also the number of
      worker processes of the LocalCluster started for the pool. None: the
      CPU count for a LocalCluster, the workers' threads in all for a
      running cluster.
    initializer, initargs: initializer(*initargs) runs once in each worker
      process (also in workers that join later).
    maxtasksperchild: only None (see the module documentation).
    address: a running Dask scheduler ('tcp://host:8786') to connect to.
    client: a distributed.Client to use; the pool leaves it open.
    retries: how many times a task whose worker process died is run again
      on another worker before it fails with WorkerLostError (Dask's
      allowed-failures, for the pool's tasks). 0: never, as with the local
      Pool.
    cluster_kwargs: more keyword arguments for that LocalCluster.
    """

    _state = INIT
    _runner = None

    def __init__(
        self,
        processes=None,
        initializer=None,
        initargs=(),
        maxtasksperchild=None,
        *,
        address=None,
        client=None,
        retries=0,
        cluster_kwargs=None,
    ):
        _checked_size(processes, initializer, maxtasksperchild)
        if maxtasksperchild is not None:
            raise NotImplementedError(
                "gomp.cluster.Pool does not support maxtasksperchild: Dask's workers are "
                "long-lived (restart them with client.restart())"
            )
        if address is not None and client is not None:
            raise ValueError("give address or client, not both")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError("retries must be an int >= 0")
        runner = _Runner(processes, initializer, initargs, address, client, retries, cluster_kwargs)
        self._runner = runner
        self._processes = runner.processes
        # Under the names the local Pool has (results use _cache).
        self._cache = runner._cache
        self._taskqueue = runner._taskqueue
        self._state = RUN
        self._terminate = util.Finalize(self, runner.finalize, exitpriority=15)

    def __del__(self, _warn=warnings.warn, RUN=RUN):
        # As with the local Pool: a warning, and the finalizer releases
        # the cluster.
        if self._state == RUN:
            _warn('unclosed running gomp.cluster pool %r' % (self,), ResourceWarning, source=self)

    def __repr__(self):
        return '<{0.__module__}.{0.__qualname__} state={1} processes={2}>'.format(
            type(self), self._state, getattr(self, '_processes', None)
        )

    @property
    def client(self):
        """The distributed.Client the pool submits to."""
        return self._runner._client

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    # -- submitting work --

    # The local Pool's methods: they submit through this class's
    # _submit_chunks and _submit_lazily.
    map = _LocalPool.map
    starmap = _LocalPool.starmap
    map_async = _LocalPool.map_async
    starmap_async = _LocalPool.starmap_async
    imap = _LocalPool.imap
    imap_unordered = _LocalPool.imap_unordered

    def _submit_chunks(self, runner, func, iterable, chunksize, callback, error_callback):
        self._check_running()
        items = iterable if hasattr(iterable, '__len__') else list(iterable)
        if chunksize is None:
            chunksize = _default_chunksize(len(items), self._processes)
        result = MapResult(self, chunksize, len(items), callback, error_callback)
        if result._parts:
            tasks = _chunk_stream(result._job, runner, func, items, chunksize)
            self._taskqueue.put((tasks, None))
        return result

    # The local Pool's: imap's tasks go to the feeder thread, which walks the
    # iterable (here as there, _taskqueue takes (tasks, set_length) pairs).
    _submit_lazily = _LocalPool._submit_lazily

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        """func(*args, **kwds) on a worker; returns an AsyncResult."""
        self._check_running()
        return self._queue_one(ApplyResult(self, callback, error_callback), func, args, kwds)

    def _queue_one(self, pending, func, args, kwds):
        """Hands pending's one task to the feeder (a batch of one task, with
        no length to set) and returns pending."""
        self._taskqueue.put((((pending._job, 0, func, tuple(args), dict(kwds)),), None))
        return pending

    apply = _LocalPool.apply

    # -- lifetime --

    def close(self):
        """No more submissions; the cluster's resources go once the pending
        work is done (join())."""
        if self._state == RUN:
            self._state = CLOSE
            self._taskqueue.put(None)

    def join(self):
        """Wait for the pending work (after close()), then release the
        LocalCluster or the connection the pool made."""
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("Pool is still running" if self._state == RUN else "In unknown state")
        if self._state == CLOSE:
            self._runner.wait_idle()
        self._end()

    def terminate(self):
        """Cancel the pending work and release the LocalCluster or the
        connection the pool made. Results still pending stay pending, as
        with the local Pool."""
        self._state = TERMINATE
        self._end()

    def _end(self):
        # Here, in the caller's thread (the finalizer would hand the work
        # to another thread outside the main one).
        self._terminate.cancel()
        self._runner.shutdown()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc_info):
        self.terminate()

    def __reduce__(self):
        raise NotImplementedError('pool objects cannot be passed between processes or pickled')


def _allowed_failures(dask_scheduler):
    return dask_scheduler.allowed_failures


def _lost(killed):
    """A KilledWorker as gomp's WorkerLostError (its cause)."""
    worker = killed.last_worker
    address = getattr(worker, 'address', worker)
    pid = getattr(worker, 'pid', None)
    tries = killed.allowed_failures + 1
    err = WorkerLostError(
        'the Dask worker %s (pid %s) running a task of the pool died before the task '
        'finished (the task ran on %d worker%s)' % (address, pid, tries, '' if tries == 1 else 's'),
        pid=pid,
    )
    err.__cause__ = killed
    return err
