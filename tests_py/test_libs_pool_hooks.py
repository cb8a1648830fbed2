"""The hooks of the stdlib's Pool that subclasses in the wild override
(issue 15): _repopulate_pool, called once by Pool.__init__ to start the
workers, and _quick_put/_quick_get, which a subclass's _setup_queues may
install as the way tasks go out and results come back. torch.multiprocessing
ships such a subclass (torch/multiprocessing/pool.py, a Pool with its own
worker function); each test runs the same subclass over gomp's Pool and over
the stdlib's and expects the same behaviour."""

import os

import pytest

import gomp
import gomp.pool
from conftest import stdlib_peer

# Defined at module level so that forked workers find them.
STARTED_BY_HOOK = []


def hooked_worker(pool_module, *args):
    """The worker function of a subclass (torch's clean_worker calls the
    stdlib's pool.worker with the same arguments, then collects garbage)."""
    pool_module.worker(*args)


def report_pid(x):
    return os.getpid(), x * x


def subclass_of(pool_module, ctx):
    class HookedPool(pool_module.Pool):
        """Starts its workers itself, as torch's Pool does (written for the
        Process staticmethod of Python 3.8+, which takes the context)."""

        puts = gets = 0

        def _setup_queues(self):
            self._inqueue = self._ctx.SimpleQueue()
            self._outqueue = self._ctx.SimpleQueue()
            send, recv = self._inqueue._writer.send, self._outqueue._reader.recv

            def quick_put(obj):
                self.puts += 1
                send(obj)

            def quick_get():
                self.gets += 1
                return recv()

            self._quick_put = quick_put
            self._quick_get = quick_get

        def _repopulate_pool(self):
            for _ in range(self._processes - len(self._pool)):
                args = (
                    pool_module,
                    self._inqueue,
                    self._outqueue,
                    self._initializer,
                    self._initargs,
                    self._maxtasksperchild,
                    self._wrap_exception,
                )
                w = self.Process(self._ctx, target=hooked_worker, args=args)
                self._pool.append(w)
                w.name = 'HookedWorker-%d' % len(self._pool)
                w.daemon = True
                w.start()

    return HookedPool


def torch_shaped_subclass_of(pool_module):
    class TorchShapedPool(pool_module.Pool):
        """torch's _repopulate_pool as written: self.Process without the
        context, which Python 3.8+'s Pool.Process requires."""

        def _repopulate_pool(self):
            for _ in range(self._processes - len(self._pool)):
                w = self.Process(target=hooked_worker, args=(pool_module,))
                self._pool.append(w)
                w.start()

    return TorchShapedPool


def implementations():
    std = stdlib_peer('multiprocessing')
    std_pool = stdlib_peer('multiprocessing.pool')
    return [
        pytest.param(gomp.pool, gomp.get_context('fork'), id='gomp'),
        pytest.param(std_pool, std.get_context('fork'), id='stdlib'),
    ]


@pytest.mark.parametrize('pool_module, ctx', implementations())
def test_repopulate_pool_override_starts_the_workers(pool_module, ctx):
    with subclass_of(pool_module, ctx)(2, context=ctx) as pool:
        names = sorted(w.name for w in pool._pool)
        pids = {w.pid for w in pool._pool}
        results = pool.map(report_pid, range(20), chunksize=1)
        assert [r for _, r in results] == [x * x for x in range(20)]
        assert {pid for pid, _ in results} <= pids
        assert names == ['HookedWorker-1', 'HookedWorker-2']
        # Every task went out through _quick_put and every result came back
        # through _quick_get.
        assert pool.puts >= 20 and pool.gets >= 20
        assert pool.apply_async(report_pid, (3,)).get(60)[1] == 9
    pool.join()


@pytest.mark.parametrize('pool_module, ctx', implementations())
def test_torch_shaped_repopulate_pool_fails_as_in_the_stdlib(pool_module, ctx):
    # torch.multiprocessing.Pool is the stdlib's own Pool on Python 3; its
    # pool.py subclass only ran on Python < 3.3 and raises this TypeError
    # with the stdlib of today. gomp raises the same.
    with pytest.raises(TypeError):
        torch_shaped_subclass_of(pool_module)(2, context=ctx)
