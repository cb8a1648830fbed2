package queue

// # Counts that survive a killed process
//
// A queue counts its items for qsize(), a bounded queue's slots and a
// JoinableQueue's unfinished tasks. Any of its processes may be SIGKILLed
// between two instructions, so no count may be kept as two words that a
// process changes one after the other (a slot taken in one word, the item
// written into the ring in another: the version 4 layout leaked the slot of
// a producer killed in between, and a bounded queue stayed full for good).
// The counts are derived instead from words that each change in one step,
// or that a journal completes:
//
//	count      = P + H - G    items put and not yet got (qsize)
//	unfinished = P + H - D    tasks not yet done (JoinableQueue)
//
//   - P (putCount) counts the items complete in the ring, G (getCount) those
//     taken out of it, D the task_done() calls. P moves with tail under the
//     producer lock and G with head under the consumer lock; each lock has a
//     journal (below), so that a holder killed between its two stores is
//     completed (or undone) by whoever takes the lock over.
//   - H counts the items that processes took a slot (or a count) for and
//     that are not complete in the ring yet: those waiting in a process's
//     overflow, and the large item a bounded put is streaming. It is the sum
//     of per-process entries, one u64 each (owner id << 32 | count), which
//     only their process changes, with atomic adds. A process that dies
//     leaves its entry behind; whoever notices (reclaim: a put waiting for a
//     slot, join, qsize, full) clears it, which gives back at once every
//     slot and task count of the items the dead process had not delivered.
//     The entry of a dead process may count more than it should (killed
//     after P moved but before its entry did): clearing it is right anyway.
//
// A bounded queue's bound is checked under a small lock (rlock, never held
// while waiting, taken over from a dead owner like the others), together
// with the step that takes the slot: publishing a whole item (P+1), or
// adding to the process's entry (an item for the overflow, or the first
// fragment of a streamed one). Nothing else makes the count grow, and a
// journal's completion never does (see replayP), so the count read under
// rlock never falls short and the bound holds exactly.
//
// # Journals
//
// The producer lock's holder publishes with P first, then tail, after
// noting both new values and a valid flag next to them; the consumer lock's
// holder moves head first, then G. Whoever takes a lock over from a dead
// owner replays its journal: a publish whose P store happened gets its tail
// store (the record was complete before the journal was written), one whose
// P store did not is dropped (no count grew); a get whose head moved gets
// its G, one whose head did not leaves the item in the ring for the next
// consumer. Between the two stores the count is one too high, never too low.
//
// # What a kill costs
//
// A producer killed in put() loses the item it was putting, and the items
// waiting in its overflow (as the stdlib's feeder buffer loses them); their
// slots and task counts come back. A bounded put returns once its item is
// complete in the ring (see Queue.Put), so a producer killed after put()
// returned loses nothing. A consumer killed in get() loses the item only if
// it had received it: for an item in one record, once head moved past it,
// which happens after its bytes were copied into the consumer's buffer; for
// an item streamed in fragments (larger than half the ring), once its first
// fragment was taken. An item received counts as got (its slot is free) and,
// in a JoinableQueue, stays unfinished: the consumer died before task_done(),
// as if it had been killed just after get() returned.

import (
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/gomp-dev/gomp/gomp/futex"
	"github.com/gomp-dev/gomp/gomp/owner"
)

const (
	numEntries = 64 // per-process entries; entry 0 is shared by those without one
	entryShift = 32
	// How often (at most) a process looks for the entries of dead processes.
	reclaimEvery = 10 * time.Millisecond
	// A put waiting for a slot looks again (and for dead holders) this often.
	slotWaitMost = 50 * time.Millisecond
	// The rlock sections are a few stores long: a caller that does not wait
	// (put_nowait) still waits this long for the lock.
	rlockMinWait = 50 * time.Millisecond
)

// errNoSlot reports that a bounded queue has all its slots taken.
var errNoSlot = errors.New("queue: no free slot")

var monoBase = time.Now()

// monoNow is a monotonic clock in nanoseconds, never 0.
func monoNow() int64 { return int64(time.Since(monoBase)) + 1 }

func (r *Ring) entry(i int) *uint64 { return r.u64(offEntries + uintptr(i)*8) }
func (r *Ring) entryHi() *uint32    { return r.u32(offEntryHi) }
func (r *Ring) rlock() *uint32      { return r.u32(offRlock) }
func (r *Ring) putCount() *uint64   { return r.u64(offPutCount) }
func (r *Ring) getCount() *uint64   { return r.u64(offGetCount) }
func (r *Ring) doneCount() *uint64  { return r.u64(offDone) }

// initEntries sets up the entries of a new ring: entry 0 belongs to NoOwner
// (never declared dead), for processes that find no free entry.
func (r *Ring) initEntries() {
	atomic.StoreUint64(r.entry(0), uint64(owner.NoOwner)<<entryShift)
	atomic.StoreUint32(r.entryHi(), 1)
}

func entryOwner(v uint64) uint32 { return uint32(v >> entryShift) }
func entryCount(v uint64) int64  { return int64(uint32(v)) }

// held is H: the sum of the entries' counts. Entries beyond entryHi were
// never claimed.
func (r *Ring) held() int64 {
	hi := min(int(atomic.LoadUint32(r.entryHi())), numEntries)
	var s int64
	for i := 0; i < hi; i++ {
		s += entryCount(atomic.LoadUint64(r.entry(i)))
	}
	return s
}

// count is P + H - G, read so that it is never too low: G first (it only
// grows), then H before P (an item moves from H to P by P growing first).
func (r *Ring) count() int64 {
	g := atomic.LoadUint64(r.getCount())
	h := r.held()
	p := atomic.LoadUint64(r.putCount())
	return int64(p-g) + h
}

// myEntry is the index of this process's entry, claimed on first use.
func (r *Ring) myEntry() int {
	if i := r.ent.Load(); i > 0 {
		return int(i - 1)
	}
	i := r.claimEntry()
	r.ent.Store(int32(i + 1))
	return i
}

func (r *Ring) claimEntry() int {
	if uint32(myTag) == owner.NoOwner {
		return 0
	}
	me := myTag << entryShift
	for pass := 0; pass < 2; pass++ {
		hi := min(int(atomic.LoadUint32(r.entryHi())), numEntries)
		for i := 1; i < hi; i++ {
			if atomic.LoadUint64(r.entry(i))>>entryShift == myTag {
				return i
			}
		}
		for i := 1; i < numEntries; i++ {
			if atomic.CompareAndSwapUint64(r.entry(i), 0, me) {
				for {
					h := atomic.LoadUint32(r.entryHi())
					if h > uint32(i) || atomic.CompareAndSwapUint32(r.entryHi(), h, uint32(i+1)) {
						break
					}
				}
				return i
			}
		}
		r.reclaim(true) // free the entries of dead processes
	}
	return 0
}

// hold adds n items to this process's entry (H grows).
func (r *Ring) hold(n int64) {
	if n != 0 {
		atomic.AddUint64(r.entry(r.myEntry()), uint64(n))
	}
}

// unhold removes n items from this process's entry: they are complete in
// the ring (P grew first) or dropped.
func (r *Ring) unhold(n int64) {
	if n != 0 {
		atomic.AddUint64(r.entry(r.myEntry()), ^uint64(n-1))
	}
}

// lockR takes rlock (the bound's lock) within d, but waits at least
// rlockMinWait: its holders never wait under it. Uncontended, it is one CAS
// and no owner tag: a holder's death is told by its pid (the lock is held
// for a few stores; a pid recycled meanwhile is not a practical concern).
func (r *Ring) lockR(d *deadline) error {
	if atomic.CompareAndSwapUint32(r.rlock(), 0, myPid) {
		return nil
	}
	rd := *d
	if l := rd.left(); l < rlockMinWait {
		rd = newDeadline(rlockMinWait)
	}
	_, err := lock(r.rlock(), &rd)
	return err
}

// unlockR releases rlock (clearing the owner tag that a contended lockR set).
func (r *Ring) unlockR() {
	if atomic.LoadUint64(tagOf(r.rlock())) != 0 {
		atomic.StoreUint64(tagOf(r.rlock()), 0)
	}
	if atomic.SwapUint32(r.rlock(), 0)&lockWaiters != 0 {
		futex.Wake(r.rlock(), 1)
	}
}

// takeSlot takes a slot of a bounded queue for an item that is not in the
// ring yet (H grows): errNoSlot when the queue is full.
func (r *Ring) takeSlot(d *deadline) error {
	if r.count() >= r.maxsize {
		return errNoSlot
	}
	if err := r.lockR(d); err != nil {
		return err
	}
	defer r.unlockR()
	if r.count() >= r.maxsize {
		return errNoSlot
	}
	r.hold(1)
	return nil
}

// waitSlot sleeps until a bounded queue may have a free slot, at most
// slotWaitMost at a time (then it looks for slots held by dead processes);
// ErrAgain once d has passed.
func (r *Ring) waitSlot(d *deadline) error {
	r.reclaim(false)
	if d.left() <= 0 {
		return ErrAgain
	}
	w := newDeadline(min(d.left(), slotWaitMost))
	return r.waitSpace(&w, 0, func() bool { return r.count() < r.maxsize })
}

// ---- journals ------------------------------------------------------------------------------

// publish makes the records up to newTail visible, with items more items
// complete (P grows first, then tail; see the journals above), wakes
// consumers and makes the queue's eventfd readable when a watcher needs it
// (see watch.go), all before the put returns; the caller holds the producer
// lock.
func (r *Ring) publish(newTail uint64, items uint64, all bool) {
	p := atomic.LoadUint64(r.putCount()) + items
	// The journal's words are read only by a process that took the lock
	// over from this one (after its CAS on the lock word): plain stores,
	// kept in order by the atomic stores that follow them.
	*r.u64(offPJTail) = newTail
	*r.u64(offPJPut) = p
	*r.u32(offPJValid) = 1
	if items != 0 {
		atomic.StoreUint64(r.putCount(), p)
	}
	atomic.StoreUint64(r.tail(), newTail)
	*r.u32(offPJValid) = 0
	n := 1
	if all {
		n = math.MaxInt32
	}
	r.dataSleepers().wake(r.tailWord(), n, &r.dataMisses)
	r.notify()
}

// replayP completes or drops the publish of a dead holder of the producer
// lock; the caller took the lock over.
func (r *Ring) replayP() {
	if *r.u32(offPJValid) == 0 {
		return
	}
	if atomic.LoadUint64(r.putCount()) == *r.u64(offPJPut) && atomic.LoadUint64(r.tail()) < *r.u64(offPJTail) {
		atomic.StoreUint64(r.tail(), *r.u64(offPJTail))
		r.dataSleepers().wake(r.tailWord(), math.MaxInt32, &r.dataMisses)
		r.notify()
	}
	*r.u32(offPJValid) = 0
}

// replayC completes the get of a dead holder of the consumer lock whose
// head store happened; the caller took the lock over.
func (r *Ring) replayC() {
	if *r.u32(offCJValid) == 0 {
		return
	}
	if atomic.LoadUint64(r.head()) == *r.u64(offCJHead) {
		r.replayClaim()
		atomic.StoreUint64(r.getCount(), *r.u64(offCJGet))
	}
	*r.u32(offCJValid) = 0
	*r.u64(offCJClaim) = 0
	futex.Wake(r.headWord(), math.MaxInt32)
}

// lockP and lockC take the producer and consumer locks, replaying the
// journal of a dead owner they take them over from.
func (r *Ring) lockP(d *deadline) error {
	stolen, err := lock(r.plock(), d)
	if stolen {
		r.replayP()
	}
	return err
}

func (r *Ring) lockC(d *deadline) error {
	stolen, err := lock(r.clock(), d)
	if stolen {
		r.replayC()
	}
	return err
}

// ---- dead processes ------------------------------------------------------------------------

// reclaim clears the entries of dead processes (giving back their slots and
// task counts) and completes a publish or get that a dead lock holder left
// half done; it wakes the producers waiting for slots and the joiners when
// it freed any. Unless force, it runs at most every reclaimEvery per
// process. It reports whether it freed anything.
func (r *Ring) reclaim(force bool) bool {
	now := monoNow()
	if !force {
		last := r.lastReclaim.Load()
		if now-last < int64(reclaimEvery) || !r.lastReclaim.CompareAndSwap(last, now) {
			return false
		}
	}
	freed := false
	hi := min(int(atomic.LoadUint32(r.entryHi())), numEntries)
	for i := 1; i < hi; i++ {
		v := atomic.LoadUint64(r.entry(i))
		id := entryOwner(v)
		if id == 0 || uint64(id) == myTag || id == owner.NoOwner || owner.Alive(id) {
			continue
		}
		if atomic.CompareAndSwapUint64(r.entry(i), v, 0) && entryCount(v) != 0 {
			freed = true
		}
	}
	if atomic.LoadUint32(r.plock()) != 0 && stealIfDead(r.plock()) {
		r.replayP()
		unlock(r.plock())
	}
	if atomic.LoadUint32(r.clock()) != 0 && stealIfDead(r.clock()) {
		r.replayC()
		unlock(r.clock())
		freed = true
	}
	if freed {
		futex.Wake(r.headWord(), math.MaxInt32)
		r.wakeJoiners()
	}
	return freed
}

// ---- counts --------------------------------------------------------------------------------

// Qsize is the number of items put and not yet got, including those waiting
// in producers' overflows and the one a bounded put is streaming.
func (r *Ring) Qsize() int64 {
	if r.held() != 0 {
		r.reclaim(false)
	}
	return max(r.count(), 0)
}

// Full tells whether a bounded queue has all its slots taken.
func (r *Ring) Full() bool {
	return r.flags&FlagBounded != 0 && r.Qsize() >= r.maxsize
}

// unfinished is P + H - D, read so that it is never too low.
func (r *Ring) unfinished() int64 {
	d := atomic.LoadUint64(r.doneCount())
	h := r.held()
	p := atomic.LoadUint64(r.putCount())
	return int64(p-d) + h
}

// Unfinished is the count of a joinable queue's unfinished tasks, after the
// items held by dead processes are forgotten.
func (r *Ring) Unfinished() int64 {
	if r.held() != 0 {
		r.reclaim(true)
	}
	return r.unfinished()
}

func (r *Ring) wakeJoiners() {
	if r.flags&FlagJoinable == 0 {
		return
	}
	atomic.AddUint32(r.u32(offJoinSeq), 1)
	if atomic.LoadUint32(r.u32(offJoinWait)) != 0 {
		futex.Wake(r.u32(offJoinSeq), math.MaxInt32)
	}
}

// TaskDone marks one task of a joinable queue done (D grows by one). A task
// is normally that of an item got, which is in P; an item still held
// outside the ring counts too (as the stdlib counts the items in its
// buffers), unless its process is dead: that item will never come, so its
// task cannot be done.
func (r *Ring) TaskDone() error {
	d := r.doneCount()
	for {
		v := atomic.LoadUint64(d)
		if int64(atomic.LoadUint64(r.putCount())-v) <= 0 {
			if r.held() == 0 {
				return ErrTooManyTaskDone
			}
			r.reclaim(true)
			if int64(atomic.LoadUint64(r.putCount())-v)+r.held() <= 0 {
				return ErrTooManyTaskDone
			}
		}
		if atomic.CompareAndSwapUint64(d, v, v+1) {
			if r.unfinished() <= 0 {
				r.wakeJoiners()
			}
			return nil
		}
	}
}

// Join waits until every task of a joinable queue is done, at most d
// (ErrAgain then). It looks for tasks of dead producers now and then: their
// items will never come.
func (r *Ring) Join(d time.Duration) error {
	dl := newDeadline(d)
	seq := r.u32(offJoinSeq)
	waiters := r.u32(offJoinWait)
	for {
		s := atomic.LoadUint32(seq)
		if r.unfinished() <= 0 {
			return nil
		}
		left := dl.left()
		if left <= 0 {
			return ErrAgain
		}
		if r.held() != 0 && r.reclaim(false) {
			continue
		}
		atomic.AddUint32(waiters, 1)
		if r.unfinished() > 0 {
			futex.Wait(seq, s, min(left, slotWaitMost))
		}
		leave(waiters)
	}
}
