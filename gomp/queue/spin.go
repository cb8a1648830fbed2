package queue

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Waiting briefly: a consumer's spin before it sleeps on an empty ring.
//
// When the producer runs on another CPU, the item it is about to put
// arrives within microseconds, sooner than a sleeping process is woken (on
// an idle vCPU of a VM that costs tens of microseconds, more than a whole
// request and answer). So before a consumer sleeps it yields its CPU (the
// producer may be waiting for this very CPU) and looks at tail again, for up
// to spinNs. It does so:
//   - for the rest of a streamed item it is assembling: the producer is at
//     work on it;
//   - for the next item, only when this process put an item within the
//     last spinNs: the answer to a request just put (a pool's result, the
//     other end of a ping-pong), or a worker's next task right after it put
//     the last one's result. A consumer that has been idle sleeps at once,
//     and so does the consumer of a stream (it only takes): spinning there
//     made it take each item the moment it was published, one by one, and
//     the stream slower (bench_queues.py, 1 producer and 1 consumer of
//     tuples: ×0.67).
//
// A spin only pays when the producer runs on another CPU, or when the yield
// hands this CPU to it; on one CPU the scheduler need not do the latter
// (EEVDF keeps running a yielding task while the task it would switch to is
// not yet eligible), and then the window runs out with nothing gained. So
// each ring keeps, in this process, a penalty: a window that runs out
// doubles it (1, 2, 4 ... 64) and a window that sees an item come halves
// it; while it is n, only one wait in n+1 spins, the others sleep at once.
// Spinning goes on where most windows pay, and fades where most do not.
//
// pybind/ext/conn.c applies the same rules to connections (its "waiting
// briefly"): one spin policy per language, as with the futex layers.
const spinNs = 50_000

// lastPut is monoNow when this process last published an item, in any
// ring.
var lastPut atomic.Int64

// spinState is one ring's penalty in this process.
type spinState struct {
	penalty atomic.Int32 // see above: 0, 1, 2, 4 ... 64
	skip    atomic.Int32 // waits left that sleep at once
}

// maxPenalty bounds the waits that sleep at once between two windows.
const maxPenalty = 64

// spinWindows and spinHits count the waits for a next item that opened a
// spin window and those of them whose item came during it (SpinStats).
var spinWindows, spinHits atomic.Uint64

// SpinStats returns (windows, hits): waits for a next item in this process
// that spun, and those the spin served.
func SpinStats() (uint64, uint64) { return spinWindows.Load(), spinHits.Load() }

// spinForData yields the CPU and looks at tail again until it moves from
// head (true) or the window runs out (false: the caller sleeps). mid tells
// a wait for the rest of a streamed item; the window never outlasts left,
// the caller's time.
func (r *Ring) spinForData(head uint64, mid bool, left time.Duration) bool {
	if !mid {
		if monoNow()-lastPut.Load() >= spinNs {
			return false
		}
		if s := r.spin.skip.Load(); s > 0 {
			r.spin.skip.CompareAndSwap(s, s-1)
			return false
		}
		spinWindows.Add(1)
	}
	end := monoNow() + min(spinNs, int64(left))
	for {
		unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		if atomic.LoadUint64(r.tail()) != head {
			p := r.spin.penalty.Load() / 2
			r.spin.penalty.Store(p)
			r.spin.skip.Store(p)
			if !mid {
				spinHits.Add(1)
			}
			return true
		}
		if monoNow() >= end {
			p := min(max(2*r.spin.penalty.Load(), 1), maxPenalty)
			r.spin.penalty.Store(p)
			r.spin.skip.Store(p)
			return false
		}
	}
}
