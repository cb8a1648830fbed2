package queue

import (
	"errors"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomp-dev/gomp/gomp/futex"
)

// ErrUnknown reports a handle this process never issued (or released).
var ErrUnknown = errors.New("queue: unknown handle")

// Queue is this process's use of a ring: the ring plus the items this
// process put that did not fit yet (its overflow), which a goroutine feeds
// into the ring in order. Nothing here survives fork: a forked child attaches
// the ring again and starts with an empty overflow, as the stdlib's feeder
// buffer does.
type Queue struct {
	r        *Ring
	npending atomic.Int64 // items in pending (read without mu on the fast path)

	mu          sync.Mutex
	pending     [][]byte
	feeding     bool          // the feeder goroutine runs
	drained     chan struct{} // closed when pending becomes empty
	cancelled   bool          // cancel_join_thread: the exit does not wait
	discarded   bool          // Discard: items that do not fit now are dropped
	discardFlag atomic.Bool   // discarded, for the feeder's waits
	released    bool          // the handle is gone: unmap once nothing uses the ring
	watched     bool          // counted in the ring's watchers (see watch.go)
	unmapped    bool
}

func newQueue(r *Ring) *Queue {
	q := &Queue{r: r, drained: make(chan struct{})}
	close(q.drained)
	return q
}

// Ring returns the shared ring.
func (q *Queue) Ring() *Ring { return q.r }

// Put puts a pickled item into a Queue (not a SimpleQueue) and reports
// whether it went to this process's overflow.
//
// An unbounded queue's put never waits: the item goes straight into the
// ring when it fits and nothing of this process waits before it, else a copy
// goes to the overflow, which a goroutine feeds into the ring.
//
// A bounded queue's put returns once its item is complete in the ring, so
// that a producer killed afterwards loses nothing: it waits for a slot, for
// the producer lock and for room (streaming an item larger than half the
// ring), ErrAgain at the end of each slice with its progress in st. It
// keeps the item in the overflow instead (and holds its slot there) when
// items of this process already wait there (they go first), when st.Mode
// has PutMayBuffer (the caller will not wait longer: put_nowait, or its
// timeout ran out) and a slot is free, or when no consumer has taken
// anything for stallLimit (half a second): with nobody consuming, the ring
// cannot make room, and a producer that fills its own queue before it
// starts the consumers must not block where the stdlib's does not.
func (q *Queue) Put(item []byte, st *PutState, d time.Duration) (bool, error) {
	if q.r.flags&FlagBounded == 0 {
		if q.npending.Load() == 0 && q.r.tryPut(item) {
			return false, nil
		}
		q.r.hold(1)
		q.enqueue(item)
		return true, nil
	}
	return q.putBounded(item, st, d)
}

// stallLimit is how long a bounded put waits for room that no consumer makes
// (head does not move) before it keeps its item in the overflow.
const stallLimit = 500 * time.Millisecond

func (q *Queue) putBounded(item []byte, st *PutState, d time.Duration) (bool, error) {
	r := q.r
	dl := newDeadline(d)
	for {
		if st.Phase == 0 && q.npending.Load() != 0 {
			return q.buffer(item, st, &dl)
		}
		err := r.write(item, st, &dl, writeBounded)
		switch err {
		case nil:
			return false, nil
		case errNoSlot:
			if st.Mode&PutMayBuffer != 0 {
				return false, ErrAgain
			}
			if err := r.waitSlot(&dl); err != nil {
				return false, err
			}
		case ErrAgain:
			// No room (or no producer lock) before the slice ended.
			if st.Mode&PutMayBuffer != 0 || q.stalled(st) {
				return q.buffer(item, st, &dl)
			}
			return false, ErrAgain
		default:
			r.endPut(st)
			return false, err
		}
	}
}

// stalled tells whether head has not moved for stallLimit while this put
// waited (a bounded put waiting for room).
func (q *Queue) stalled(st *PutState) bool {
	h := int64(atomic.LoadUint64(q.r.head()))
	now := monoNow()
	if st.Since == 0 || st.Head != h {
		st.Head, st.Since = h, now
		return false
	}
	return now-st.Since >= int64(stallLimit)
}

// buffer puts a bounded queue's item into the overflow, with a slot: the
// one its stream holds (the stream is cut short: the consumers drop what
// went through), or a free one (ErrAgain when there is none).
func (q *Queue) buffer(item []byte, st *PutState, d *deadline) (bool, error) {
	q.r.endPut(st)
	if st.Phase == 0 {
		if err := q.r.takeSlot(d); err != nil {
			if err == errNoSlot {
				if st.Mode&PutMayBuffer != 0 {
					return false, ErrAgain
				}
				if err := q.r.waitSlot(d); err != nil {
					return false, err
				}
				return false, ErrAgain
			}
			return false, err
		}
	}
	st.Phase = 0
	q.enqueue(item)
	return true, nil
}

// Write puts a pickled item into the ring, waiting for room (SimpleQueue);
// ErrAgain when d ends first, with the progress in st.
func (q *Queue) Write(item []byte, st *PutState, d time.Duration) error {
	dl := newDeadline(d)
	return q.r.write(item, st, &dl, writeDirect)
}

// AbortPut gives up a put or Write in progress: the producer lock is
// released (a streamed item cut short is dropped by the consumers) and the
// slot it held is given back.
func (q *Queue) AbortPut(st *PutState) {
	q.r.endPut(st)
	if st.Phase == 1 {
		q.r.unhold(1)
		st.Phase = 0
	}
}

// Get takes the next item (see Ring.read).
func (q *Queue) Get(buf []byte, st *GetState, d time.Duration) (int64, error) {
	dl := newDeadline(d)
	n, err := q.r.read(buf, st, &dl)
	q.r.settle()
	return n, err
}

// AbortGet gives up a Get; a streamed item being assembled is lost.
func (q *Queue) AbortGet(st *GetState) { q.r.endGet(st) }

// enqueue appends a copy of item to the overflow; the caller made it held
// in the process's entry (see slots.go), which the feeder undoes once the
// item is in the ring.
func (q *Queue) enqueue(item []byte) {
	c := getBuf(len(item))
	copy(c, item)
	q.mu.Lock()
	if q.discarded {
		q.mu.Unlock()
		q.r.unhold(1)
		putBuf(c)
		return
	}
	q.pending = append(q.pending, c)
	q.npending.Add(1)
	if !q.feeding {
		q.feeding = true
		q.drained = make(chan struct{})
		feeders.Add(q)
		go q.feed()
	}
	q.mu.Unlock()
}

// feedBatch is the most items the feeder writes under one producer lock.
const feedBatch = 256

// feed writes the overflow into the ring, oldest first, until it is empty.
func (q *Queue) feed() {
	var st PutState
	batch := make([][]byte, 0, feedBatch)
	for {
		q.mu.Lock()
		if q.discarded {
			q.dropPendingLocked(0)
		}
		if len(q.pending) == 0 {
			q.feeding = false
			q.pending = nil
			close(q.drained)
			q.unmapIfUnusedLocked()
			q.mu.Unlock()
			feeders.Remove(q)
			return
		}
		batch = append(batch[:0], q.pending[:min(len(q.pending), feedBatch)]...)
		q.mu.Unlock()
		n := q.r.putMany(batch)
		if n == 0 {
			// The first does not fit now (or is large): wait for room, or
			// stream it.
			for {
				dl := newDeadline(time.Second)
				dl.stop = &q.discardFlag
				err := q.r.write(batch[0], &st, &dl, writeFed)
				if err == nil {
					break
				}
				if err != ErrAgain || q.discardFlag.Load() {
					// The ring is unusable (corrupted by another process),
					// or this process gave the queue up: the item is not
					// delivered (a streamed item cut short is dropped by
					// the consumers).
					q.r.endPut(&st)
					q.r.unhold(1)
					break
				}
			}
			n = 1
		}
		q.mu.Lock()
		n = min(n, len(q.pending)) // Discard may have dropped them meanwhile
		for i := 0; i < n; i++ {
			putBuf(q.pending[i])
			q.pending[i] = nil
		}
		q.pending = q.pending[n:]
		q.npending.Add(int64(-n))
		q.mu.Unlock()
		clear(batch)
	}
}

// Buffers of the overflow, by size class (powers of two), reused.
const (
	minClass = 6  // 64 bytes
	maxClass = 24 // 16 MiB; larger items get their own allocation
)

var bufPools [maxClass + 1]sync.Pool

func sizeClass(n int) int {
	if n <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(n - 1))
}

func getBuf(n int) []byte {
	c := sizeClass(n)
	if c > maxClass {
		return make([]byte, n)
	}
	if b, ok := bufPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

func putBuf(b []byte) {
	c := sizeClass(cap(b))
	if c > maxClass || cap(b) != 1<<c {
		return
	}
	b = b[:0]
	bufPools[c].Put(&b)
}

// Pending is the number of items in this process's overflow.
func (q *Queue) Pending() int64 { return q.npending.Load() }

// Flush waits until the overflow is empty, at most d (ErrAgain then).
func (q *Queue) Flush(d time.Duration) error {
	q.mu.Lock()
	ch := q.drained
	q.mu.Unlock()
	if d < 0 {
		<-ch
		return nil
	}
	select {
	case <-ch:
		return nil
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return ErrAgain
	}
}

// CancelJoin makes FlushAll (the exit) not wait for this queue's overflow.
func (q *Queue) CancelJoin() {
	q.mu.Lock()
	q.cancelled = true
	q.mu.Unlock()
}

// Discard gives the queue up in this process: the items of its overflow
// that are not in the ring yet, and those that would wait there later, are
// dropped, and the exit does not wait for them. concurrent.futures' broken
// pool needs it (the stdlib's feeder loses them to EPIPE once no reader is
// left): nobody will make room in the ring.
func (q *Queue) Discard() {
	q.mu.Lock()
	q.discarded = true
	q.discardFlag.Store(true)
	q.cancelled = true
	if q.feeding {
		// The feeder holds a batch of the oldest items: it removes those
		// itself; the rest go now.
		q.dropPendingLocked(feedBatch)
	}
	q.mu.Unlock()
	// A feeder waiting for room looks again, and gives up (others wake
	// for nothing).
	futex.Wake(q.r.headWord(), math.MaxInt32)
}

// dropPendingLocked drops the overflow's items but the first keep.
func (q *Queue) dropPendingLocked(keep int) {
	n := len(q.pending)
	if n <= keep {
		return
	}
	for i := keep; i < n; i++ {
		putBuf(q.pending[i])
		q.pending[i] = nil
	}
	q.pending = q.pending[:keep]
	q.npending.Add(int64(keep - n))
	q.r.unhold(int64(n - keep))
}

// release drops the handle's use: the mapping (and the eventfd) goes now,
// or once the feeder has emptied the overflow.
func (q *Queue) release() {
	q.Unwatch()
	q.mu.Lock()
	q.released = true
	q.unmapIfUnusedLocked()
	q.mu.Unlock()
}

// unmapIfUnusedLocked unmaps the ring once the handle is released and no
// goroutine of this process uses it any more.
func (q *Queue) unmapIfUnusedLocked() {
	if q.released && !q.feeding && !q.unmapped {
		q.unmapped = true
		q.r.Unmap()
	}
}

// ---- the queues with an overflow (what the exit waits for) -------------------------------

type feederSet struct {
	mu sync.Mutex
	m  map[*Queue]struct{}
}

var feeders = feederSet{m: map[*Queue]struct{}{}}

func (s *feederSet) Add(q *Queue) {
	s.mu.Lock()
	s.m[q] = struct{}{}
	s.mu.Unlock()
}

func (s *feederSet) Remove(q *Queue) {
	s.mu.Lock()
	delete(s.m, q)
	s.mu.Unlock()
}

// FlushAll waits until every queue of this process whose join was not
// cancelled has fed its overflow into its ring, at most d (ErrAgain then).
// The process calls it at exit so that no item put is lost.
func FlushAll(d time.Duration) error {
	end := time.Now().Add(d)
	for {
		var q *Queue
		feeders.mu.Lock()
		for c := range feeders.m {
			c.mu.Lock()
			skip := c.cancelled
			c.mu.Unlock()
			if !skip {
				q = c
				break
			}
		}
		feeders.mu.Unlock()
		if q == nil {
			return nil
		}
		left := time.Duration(-1)
		if d >= 0 {
			left = time.Until(end)
			if left <= 0 {
				return ErrAgain
			}
		}
		if err := q.Flush(left); err != nil {
			return err
		}
	}
}

// ---- handles -----------------------------------------------------------------------------

// Handles are small integers indexing a copy-on-write table, so that the hot
// path finds its queue with one atomic load.
var (
	tableMu sync.Mutex
	table   atomic.Pointer[[]*Queue]
	freeIDs []int64
)

func init() {
	t := make([]*Queue, 1) // handle 0 is never issued
	table.Store(&t)
}

func register(q *Queue) int64 {
	tableMu.Lock()
	defer tableMu.Unlock()
	old := *table.Load()
	t := make([]*Queue, len(old), len(old)+1)
	copy(t, old)
	var h int64
	if n := len(freeIDs); n > 0 {
		h = freeIDs[n-1]
		freeIDs = freeIDs[:n-1]
		t[h] = q
	} else {
		h = int64(len(t))
		t = append(t, q)
	}
	table.Store(&t)
	return h
}

// Lookup returns the queue of handle h.
func Lookup(h int64) (*Queue, error) {
	t := *table.Load()
	if h <= 0 || h >= int64(len(t)) || t[h] == nil {
		return nil, ErrUnknown
	}
	return t[h], nil
}

// New creates a ring (see Create) and returns its handle, its memfd (the
// caller's) and its eventfd (the handle's: closed when the handle's mapping
// goes).
func New(capacity uint64, maxsize int64, flags uint32) (int64, int, int, error) {
	r, fd, err := Create(capacity, maxsize, flags)
	if err != nil {
		return 0, -1, -1, err
	}
	return register(newQueue(r)), fd, r.Eventfd(), nil
}

// Open attaches the ring in fd (made by New in any process) with the
// queue's eventfd efd, which the handle owns once Open succeeds, and
// returns a handle.
func Open(fd, efd int) (int64, error) {
	r, err := Attach(fd, efd)
	if err != nil {
		return 0, err
	}
	return register(newQueue(r)), nil
}

// Release forgets handle h; its mapping goes once its overflow is fed.
func Release(h int64) error {
	tableMu.Lock()
	old := *table.Load()
	if h <= 0 || h >= int64(len(old)) || old[h] == nil {
		tableMu.Unlock()
		return ErrUnknown
	}
	q := old[h]
	t := make([]*Queue, len(old))
	copy(t, old)
	t[h] = nil
	freeIDs = append(freeIDs, h)
	table.Store(&t)
	tableMu.Unlock()
	q.release()
	return nil
}
