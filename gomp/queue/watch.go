package queue

// # Readiness descriptor
//
// A process that waits for a queue with poll/select/epoll (the stdlib's
// connection.wait() on queue._reader, which concurrent.futures uses with the
// workers' sentinels) needs a descriptor that is readable while the ring
// holds a record. Every queue has one eventfd, made with its ring and shared
// by every process that uses the queue (inherited over fork, passed to
// spawn and forkserver children with the ring's memfd); each process's Ring
// owns its copy.
//
// The eventfd is kept level with the ring synchronously, by the producers and
// consumers themselves (no helper goroutine), with a state word in the ring
// header, changed together with the eventfd's counter under a lock (nlock):
//
//   - readySet: the eventfd is readable (its counter is 1);
//   - readyArmed: it is not (counter 0): the next producer must write it.
//
// Under nlock, level() brings the pair level with the ring: when the ring is
// empty and the eventfd set, it reads the eventfd (counter to 0) and arms;
// then, if the ring holds a record (including one that arrived during the
// reset), it writes the eventfd and sets.
//
//   - A producer loads the state after it moved tail (publish) and, when it
//     is armed, runs level() before its put returns. So an item put by a
//     process is readable through the eventfd before that process can exit
//     and its sentinel fire, as with the stdlib's pipe; the exit's flush of
//     the overflow goes through the same publish.
//   - A consumer that finds the ring empty while the state is set runs
//     level() (settle), if some handle watches (Watch; their count is in the
//     header). So the get that takes the last item makes the eventfd
//     unreadable before it returns.
//
// No lost wake-up: a producer that loads "set" does nothing, but either the
// eventfd is readable, or a reset is under way whose store of readyArmed
// comes after that load, and whose look at the ring after the store sees
// the producer's record (a Dekker pair: tail store, state load against
// state store, tail load; all sequentially consistent), and sets again. No
// spurious readiness from a race: a producer that finds the ring empty under
// nlock (a consumer was faster) does not write.
//
// Watch (connection.wait() asks for the descriptor at each call) levels too
// when the pair disagrees with the ring; that also repairs what a process
// killed between publishing and writing left unannounced. A process killed
// while it holds nlock is detected by the next one that waits for it (as
// for the ring's other locks), which levels from scratch.
//
// Queues nobody watches cost nothing: the eventfd is made readable, the state
// set, and nobody resets it, so producers load one word (the state),
// consumers one other (the count of watchers), and nobody makes a system
// call. A watcher killed without unwatching leaves the count up: the resets
// (one read per time the ring runs empty, one write per time it fills
// again) go on, which costs time, not correctness.

import (
	"errors"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// States of the readiness word.
const (
	readySet   = 0
	readyArmed = 1
)

// ErrNoEventfd reports a handle opened without the queue's eventfd.
var ErrNoEventfd = errors.New("queue: this handle has no readiness descriptor")

func (r *Ring) readyWord() *uint32 { return r.u32(offReady) }
func (r *Ring) watchers() *uint32  { return r.u32(offWatchers) }
func (r *Ring) nlock() *uint32     { return r.u32(offNlock) }

var one = [8]byte{1} // 1 as an eventfd write (little-endian)

// notify is called by a producer after it moved tail.
func (r *Ring) notify() {
	if atomic.LoadUint32(r.readyWord()) == readyArmed {
		r.level()
	}
}

// settle is called by consumers after they looked: it resets the eventfd
// when the ring is empty, if anybody watches.
func (r *Ring) settle() {
	if atomic.LoadUint32(r.watchers()) == 0 || atomic.LoadUint32(r.readyWord()) != readySet || !r.Empty() {
		return
	}
	r.level()
}

// level brings the eventfd and the state level with the ring, under nlock.
func (r *Ring) level() {
	w := r.nlock()
	dl := newDeadline(-1)
	stolen, _ := lock(w, &dl) // no end: only a dead owner's lock is taken over
	rw := r.readyWord()
	var b [8]byte
	if stolen {
		// Its owner died in the middle: start from a reset.
		unix.Read(r.efd, b[:])
		atomic.StoreUint32(rw, readyArmed)
	}
	for {
		if r.Empty() {
			if atomic.LoadUint32(rw) == readySet {
				unix.Read(r.efd, b[:]) // EAGAIN only if the counter was 0 already
				atomic.StoreUint32(rw, readyArmed)
			}
			// A producer that loaded "set" before the store above published
			// before it: look again.
			if r.Empty() {
				break
			}
		}
		if atomic.LoadUint32(rw) == readyArmed {
			// Cannot fail: the counter is 0 (armed), far from its maximum.
			unix.Write(r.efd, one[:])
			atomic.StoreUint32(rw, readySet)
		}
		// A consumer that took the last record while this was setting may
		// have found the state still armed and left the reset to us: look
		// again, so that the eventfd is not left readable with the ring empty.
		if !r.Empty() {
			break
		}
	}
	unlock(w)
}

// uneven tells whether the state disagrees with the ring, or nlock is held
// (by a level under way, or by a process that died in one).
func (r *Ring) uneven() bool {
	empty := r.Empty()
	set := atomic.LoadUint32(r.readyWord()) == readySet
	return empty == set || atomic.LoadUint32(r.nlock()) != 0
}

// Watch returns the queue's eventfd (this process's copy), readable while
// the ring holds a record, and counts this handle as a watcher: from now on
// consumers keep it level (see above). It is the same descriptor at every
// call, and is closed with the handle's mapping.
func (q *Queue) Watch() (int, error) {
	q.mu.Lock()
	if q.released {
		q.mu.Unlock()
		return -1, ErrUnknown
	}
	if q.r.efd < 0 {
		q.mu.Unlock()
		return -1, ErrNoEventfd
	}
	if !q.watched {
		q.watched = true
		atomic.AddUint32(q.r.watchers(), 1)
	}
	q.mu.Unlock()
	// Readable since the creation of the queue (nobody watched), stale, or
	// left half done: bring it level.
	if q.r.uneven() {
		q.r.level()
	}
	return q.r.efd, nil
}

// Level brings the eventfd level with the ring if it is not (taking the
// lock of the resets over from a dead holder): for a process that moved the
// ring without this package (the extension's C path) and found that lock
// held.
func (q *Queue) Level() {
	if q.r.efd >= 0 && q.r.uneven() {
		q.r.level()
	}
}

// Unwatch uncounts this handle as a watcher, if it was one. The eventfd
// stays open (it is the queue's).
func (q *Queue) Unwatch() {
	q.mu.Lock()
	if q.watched && !q.unmapped {
		q.watched = false
		leave(q.r.watchers())
	}
	q.mu.Unlock()
}

// Empty tells whether the ring holds no record (and settles the eventfd).
func (q *Queue) Empty() bool {
	if q.r.Empty() {
		q.r.settle()
		return true
	}
	return false
}

// Poll waits until the ring holds a record, at most d: true when it does,
// ErrAgain when d passed first.
func (q *Queue) Poll(d time.Duration) (bool, error) {
	dl := newDeadline(d)
	for {
		head := atomic.LoadUint64(q.r.head())
		if atomic.LoadUint64(q.r.tail()) != head {
			return true, nil
		}
		q.r.settle()
		if err := q.r.waitData(head, &dl, 0); err == ErrAgain {
			return false, err
		}
	}
}
