package queue

// # Readiness descriptor (watch)
//
// A process that waits for a queue with poll/select/epoll (the stdlib's
// connection.wait() on queue._reader, which concurrent.futures uses) asks
// for a watch on its handle: an eventfd of this process that is readable
// while the ring holds a record. Nothing changes for the processes and
// handles that do not ask.
//
// The eventfd is kept level with the ring by two parties of the watching
// process, serialized by the watch's mutex: refresh() reads the ring and
// sets or resets the eventfd to match.
//
//   - A goroutine (one per watch) sleeps while the ring is empty, counted as a
//     data sleeper (so producers of every process wake it, see publish) and as
//     a watcher (so that they wake every sleeper rather than one: the one
//     woken could be the goroutine while a consumer also sleeps). Woken, it
//     refreshes: the eventfd becomes readable. While it is readable the
//     goroutine waits for this process to reset it.
//   - This process's consumer side refreshes after each get, empty() and
//     poll(): the get that takes the last record resets the eventfd before it
//     returns, so a wait() that follows sleeps (no spurious readiness for a
//     single consumer) and the goroutine, kicked, sleeps on the ring again.
//
// No lost wake-up: whenever the eventfd is reset, the ring is read again
// after the reset (by the goroutine, kicked), under the sleeper count that
// producers check after publishing. A consumer in another process that
// takes the last record does not reset this process's eventfd (that would
// cost every consumer a wake-up for the watchers' sake): readiness may then
// be stale until this process's next get/empty/poll, or the goroutine's
// periodic check (watchRecheck). A recv() after such a stale wait() blocks
// until the next item, as a read of the stdlib's pipe does when another
// reader took the message first.
//
// Every sleep of the goroutine is bounded by watchRecheck, so even a wake-up
// lost to a producer killed between publishing and waking costs at most that.
//
// Fork: the goroutine and the eventfd's owner are this Go runtime's; a
// forked child has neither (it closes the inherited eventfd in C and makes
// its own watch on first use).

import (
	"encoding/binary"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomp-dev/gomp/gomp/futex"
	"golang.org/x/sys/unix"
)

// watchRecheck bounds every sleep of a watch goroutine.
const watchRecheck = time.Second

type watch struct {
	r    *Ring
	efd  int           // the eventfd (EFD_NONBLOCK|EFD_CLOEXEC); closed by the goroutine
	kick chan struct{} // a refresh reset the eventfd (capacity 1)
	stop atomic.Bool

	mu   sync.Mutex
	set  bool // the eventfd's counter is non-zero
	dead bool // the eventfd is closed
}

// watchWaiters counts the watch goroutines asleep on the ring (see publish).
func (r *Ring) watchWaiters() *uint32 { return r.u32(offWatchWait) }

// refresh sets the eventfd when the ring holds a record and resets it when
// it holds none; it returns whether the eventfd is set.
func (w *watch) refresh() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dead {
		return false
	}
	full := !w.r.Empty()
	if full && !w.set {
		var one [8]byte
		binary.LittleEndian.PutUint64(one[:], 1)
		// Cannot fail but with a counter at its maximum, which set excludes.
		unix.Write(w.efd, one[:])
		w.set = true
	} else if !full && w.set {
		var b [8]byte
		unix.Read(w.efd, b[:])
		w.set = false
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return w.set
}

// run is the watch goroutine; done is called once it has stopped and closed
// the eventfd.
func (w *watch) run(done func()) {
	for !w.stop.Load() {
		if w.refresh() {
			t := time.NewTimer(watchRecheck)
			select {
			case <-w.kick:
			case <-t.C:
			}
			t.Stop()
		} else {
			w.r.waitRecord(watchRecheck, &w.stop)
		}
	}
	w.mu.Lock()
	w.dead = true
	unix.Close(w.efd)
	w.mu.Unlock()
	done()
}

// halt asks the goroutine to stop; it does not wait for it.
func (w *watch) halt() {
	w.stop.Store(true)
	select {
	case w.kick <- struct{}{}:
	default:
	}
	// Sleepers of other processes wake for nothing and sleep again.
	futex.Wake(w.r.tailWord(), math.MaxInt32)
}

// waitRecord sleeps until the ring holds a record, at most d, as a watcher
// (see publish). It counts itself as a watcher before it counts itself as a
// data sleeper, so that a producer that sees the latter sees the former.
func (r *Ring) waitRecord(d time.Duration, stop *atomic.Bool) {
	ww := r.watchWaiters()
	atomic.AddUint32(ww, 1)
	s := r.dataSleepers()
	slot := s.enter()
	head := atomic.LoadUint64(r.head())
	if atomic.LoadUint64(r.tail()) == head && !stop.Load() {
		futex.Wait(r.tailWord(), uint32(head), d)
	}
	s.exit(slot)
	leave(ww)
}

// Watch returns the eventfd that is readable while the ring holds a record,
// making it (and its goroutine) on first use. The eventfd is this
// process's; Unwatch or Release closes it. It refreshes the eventfd, so that
// a wait that asks for the descriptor after an item was put in any process
// finds it readable at once, without waiting for the goroutine to run.
func (q *Queue) Watch() (int, error) {
	if w := q.watch.Load(); w != nil {
		w.refresh()
		return w.efd, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if w := q.watch.Load(); w != nil {
		return w.efd, nil
	}
	if q.released {
		return -1, ErrUnknown
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, err
	}
	w := &watch{r: q.r, efd: efd, kick: make(chan struct{}, 1)}
	w.refresh()
	q.watching++
	q.watch.Store(w)
	go w.run(q.watchEnded)
	return efd, nil
}

// Unwatch stops the watch, if any: its eventfd is closed (by its goroutine,
// at once or within watchRecheck).
func (q *Queue) Unwatch() {
	if w := q.watch.Swap(nil); w != nil {
		w.halt()
	}
}

// refreshWatch brings the watch's eventfd level with the ring (this
// process's consumer side calls it after it took or looked).
func (q *Queue) refreshWatch() {
	if w := q.watch.Load(); w != nil {
		w.refresh()
	}
}

// Empty tells whether the ring holds no record (and refreshes the watch).
func (q *Queue) Empty() bool {
	e := q.r.Empty()
	q.refreshWatch()
	return e
}

// Poll waits until the ring holds a record, at most d: true when it does,
// ErrAgain when d passed first.
func (q *Queue) Poll(d time.Duration) (bool, error) {
	dl := newDeadline(d)
	defer q.refreshWatch()
	for {
		head := atomic.LoadUint64(q.r.head())
		if atomic.LoadUint64(q.r.tail()) != head {
			return true, nil
		}
		if err := q.r.waitData(head, &dl, 0); err == ErrAgain {
			return false, err
		}
	}
}

// watchEnded is called by a watch goroutine that has stopped.
func (q *Queue) watchEnded() {
	q.mu.Lock()
	q.watching--
	q.unmapIfUnusedLocked()
	q.mu.Unlock()
}
