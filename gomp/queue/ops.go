package queue

import (
	"errors"
	"math"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gomp-dev/gomp/gomp/futex"
)

// ErrTooManyTaskDone reports task_done() without a matching put.
var ErrTooManyTaskDone = errors.New("task_done() called too many times")

// Items up to this size can be one WHOLE record (the header's length field
// is 32 bits); larger ones, and those that would take more than half of the
// ring, are streamed in fragments.
const maxRecord = 1 << 30

// PutState is the progress of one put across slices (kept by the caller).
type PutState struct {
	Phase  int64 // 1: this put holds a slot in the process's entry (a bounded stream begun)
	Done   int64 // payload bytes published so far (streamed items)
	Locked int64 // the caller holds the producer lock
	Frag   int64 // the item is being streamed
	// Set by the caller: PutMayBuffer.
	Mode int64
	// A bounded put waiting for room: head when last seen moving, and when
	// (monoNow), to tell consumers that are slow from none at all.
	Head  int64
	Since int64
}

// PutMayBuffer (PutState.Mode): a bounded put that cannot complete in the
// ring now keeps the item in the process's overflow if a slot is free (the
// caller's timeout ran out, or it does not wait: put_nowait), rather than
// failing with Full: Full means maxsize items, as with the stdlib.
const PutMayBuffer = 1

// GetState is the progress of one get across slices (kept by the caller).
type GetState struct {
	Locked int64 // the caller holds the consumer lock
	Mid    int64 // a streamed item is being assembled
	Total  int64 // its size
	Got    int64 // bytes of it received
	// Set by the caller: an item being assembled that its producer left
	// unfinished (it died) ends the get with ErrItemLost instead of being
	// dropped silently.
	Report int64
	// Set by the caller: its claim slot + 1 (0: none). The item taken is
	// claimed in that slot in the step that takes it (see claim.go).
	Claim int64
}

// ErrItemLost reports (to a get with Report set) that the item it was
// receiving was cut short: its producer died in the middle of putting it.
var ErrItemLost = errors.New("queue: the item being received was cut short: its producer died while putting it")

func (r *Ring) plock() *uint32       { return r.u32(offPlock) }
func (r *Ring) clock() *uint32       { return r.u32(offClock) }
func (r *Ring) tail() *uint64        { return r.u64(offTail) }
func (r *Ring) head() *uint64        { return r.u64(offHead) }
func (r *Ring) dataWaiters() *uint32 { return r.u32(offDataWait) }
func (r *Ring) spaceWaiter() *uint32 { return r.u32(offSpaceWait) }
func (r *Ring) spaceNeed() *uint64   { return r.u64(offSpaceNeed) }

// ---- producers ---------------------------------------------------------------------------

// free is the room in the ring as seen by the producer lock holder.
func (r *Ring) free() uint64 {
	return r.capacity - (atomic.LoadUint64(r.tail()) - atomic.LoadUint64(r.head()))
}

// waitSpace sleeps until ready() or until consumers move head, at most
// until d; ErrAgain once d has passed. need is the free room at which the
// consumers wake the sleeper (0: at every item taken); producers waiting
// for bytes ask for a good share of the ring, so that a consumer does not
// pay a wake-up per item while a producer trails it.
func (r *Ring) waitSpace(d *deadline, need uint64, ready func() bool) error {
	h := atomic.LoadUint32(r.headWord())
	if ready() {
		return nil
	}
	left := d.left()
	if left <= 0 {
		return ErrAgain
	}
	s := r.spaceSleepers()
	slot := s.enter()
	sn := r.spaceNeed()
	for {
		v := atomic.LoadUint64(sn)
		if need >= v || atomic.CompareAndSwapUint64(sn, v, need) {
			break
		}
	}
	if !ready() {
		futex.Wait(r.headWord(), h, left)
	}
	s.exit(slot)
	return nil
}

// bytesNeed is the room a producer waiting for want bytes asks to be woken at.
func (r *Ring) bytesNeed(want uint64) uint64 { return max(want, r.capacity/4) }

// leave uncounts a waiter (never below zero: see wake).
func leave(w *uint32) {
	for {
		v := atomic.LoadUint32(w)
		if v == 0 || atomic.CompareAndSwapUint32(w, v, v-1) {
			return
		}
	}
}

// A sleeper counts itself in a waiter count and, while it sleeps, records
// its pid in one of waitSlots slots next to the count. A sleeper killed in
// its sleep never uncounts itself, which would cost every later put or get a
// futex call that wakes nobody; after repairAfter such calls in a row, the
// waker clears the slots of dead processes and uncounts them.
const (
	waitSlots   = 16
	repairAfter = 1024
)

// sleepers is a waiter count with its slots.
type sleepers struct {
	count *uint32
	slots *[waitSlots]uint32
}

func (r *Ring) dataSleepers() sleepers {
	return sleepers{r.dataWaiters(), (*[waitSlots]uint32)(unsafe.Pointer(r.u32(offDataSlots)))}
}

func (r *Ring) spaceSleepers() sleepers {
	return sleepers{r.spaceWaiter(), (*[waitSlots]uint32)(unsafe.Pointer(r.u32(offSpaceSlots)))}
}

// enter counts a sleeper and returns its slot (-1: none free).
func (s sleepers) enter() int {
	atomic.AddUint32(s.count, 1)
	for i := range s.slots {
		if atomic.LoadUint32(&s.slots[i]) == 0 && atomic.CompareAndSwapUint32(&s.slots[i], 0, myPid) {
			return i
		}
	}
	return -1
}

// exit undoes enter.
func (s sleepers) exit(slot int) {
	if slot >= 0 {
		atomic.CompareAndSwapUint32(&s.slots[slot], myPid, 0)
	}
	leave(s.count)
}

// wake wakes up to n sleepers on word when any is counted. misses is this
// process's tally of wake-ups that found nobody.
func (s sleepers) wake(word *uint32, n int, misses *int32) {
	if atomic.LoadUint32(s.count) == 0 {
		return
	}
	if k, _ := futex.Wake(word, n); k > 0 {
		atomic.StoreInt32(misses, 0)
		return
	}
	if atomic.AddInt32(misses, 1) < repairAfter {
		return
	}
	atomic.StoreInt32(misses, 0)
	for i := range s.slots {
		p := atomic.LoadUint32(&s.slots[i])
		if p != 0 && !pidAlive(p) && atomic.CompareAndSwapUint32(&s.slots[i], p, 0) {
			leave(s.count)
		}
	}
}

// How a write accounts for its item (see slots.go).
type writeMode int

const (
	// writeDirect: nothing held; the item counts once complete (SimpleQueue).
	writeDirect writeMode = iota
	// writeFed: an item from this process's overflow, held in its entry.
	writeFed
	// writeBounded: a bounded put, which takes its slot with its first
	// record (a whole item under rlock; a streamed one in the entry).
	writeBounded
)

// pushWhole writes item as one record and publishes it; the caller holds
// the producer lock and checked the room. A bounded put checks the bound
// under rlock with the publish (errNoSlot when full: nothing is published).
func (r *Ring) pushWhole(item []byte, mode writeMode, d *deadline) error {
	t := atomic.LoadUint64(r.tail())
	n := uint64(len(item))
	// Beyond tail, the area is the lock holder's: the copy need not wait
	// for rlock.
	r.putHeader(t, uint32(n), kindWhole)
	r.writeAt(t+recHdr, item)
	if mode == writeBounded {
		if err := r.lockR(d); err != nil {
			return err
		}
		if r.count() >= r.maxsize {
			r.unlockR()
			return errNoSlot
		}
		r.publish(t+recordSize(n), 1, false)
		r.unlockR()
		return nil
	}
	r.publish(t+recordSize(n), 1, false)
	if mode == writeFed {
		r.unhold(1)
	}
	return nil
}

// tryPut writes item as one record if the producer lock is free and the
// ring has room now; it never waits (an unbounded Queue's put).
func (r *Ring) tryPut(item []byte) bool {
	n := uint64(len(item))
	if n > maxRecord || recordSize(n) > r.capacity/2 {
		return false
	}
	if !tryLock(r.plock()) {
		return false
	}
	ok := recordSize(n) <= r.free()
	if ok {
		r.pushWhole(item, writeDirect, nil)
	}
	unlock(r.plock())
	return ok
}

// putMany writes as many of items (from this process's overflow), in order,
// as fit in the ring now, as WHOLE records under one producer lock,
// publishes them at once and returns how many. It waits for the lock (the
// feeder's path) but not for room.
func (r *Ring) putMany(items [][]byte) int {
	dl := newDeadline(time.Second)
	if err := r.lockP(&dl); err != nil {
		return 0
	}
	t := atomic.LoadUint64(r.tail())
	free := r.capacity - (t - atomic.LoadUint64(r.head()))
	n := 0
	for _, item := range items {
		l := uint64(len(item))
		if l > maxRecord || recordSize(l) > r.capacity/2 || recordSize(l) > free {
			break
		}
		r.putHeader(t, uint32(l), kindWhole)
		r.writeAt(t+recHdr, item)
		t += recordSize(l)
		free -= recordSize(l)
		n++
	}
	if n > 0 {
		r.publish(t, uint64(n), n > 1)
		r.unhold(int64(n))
	}
	unlock(r.plock())
	return n
}

// write puts item into the ring, waiting for room and streaming it in
// fragments when it is large. It returns ErrAgain when d ends first, with
// its progress in st (the producer lock stays held once streaming began),
// and, for a bounded put, errNoSlot when the queue is full (the lock is
// released then).
func (r *Ring) write(item []byte, st *PutState, d *deadline, mode writeMode) error {
	n := uint64(len(item))
	whole := n <= maxRecord && recordSize(n) <= r.capacity/2
	for {
		if st.Locked == 0 {
			if err := r.lockP(d); err != nil {
				return err
			}
			st.Locked = 1
		}
		free := r.free()
		if st.Frag == 0 {
			if whole {
				need := recordSize(n)
				if need <= free {
					err := r.pushWhole(item, mode, d)
					r.endPut(st)
					return err
				}
				// Wait for room without the lock: other producers may go on.
				r.endPut(st)
				if err := r.waitSpace(d, r.bytesNeed(need), func() bool { return r.free() >= need }); err != nil {
					return err
				}
				continue
			}
			// A large item: start streaming once a useful share is free.
			minFirst := recHdr + 8 + r.capacity/8
			if free < minFirst {
				r.endPut(st)
				if err := r.waitSpace(d, r.bytesNeed(minFirst), func() bool { return r.free() >= minFirst }); err != nil {
					return err
				}
				continue
			}
			if mode == writeBounded && st.Phase == 0 {
				// The slot is held in this process's entry while the item
				// streams: a kill gives it back (see slots.go).
				if err := r.takeSlot(d); err != nil {
					r.endPut(st)
					return err
				}
				st.Phase = 1
			}
			chunk := min(n, free-recHdr-8, maxRecord)
			t := atomic.LoadUint64(r.tail())
			r.putHeader(t, uint32(chunk+8), kindFirst)
			r.putU64(t+recHdr, n)
			r.writeAt(t+recHdr+8, item[:chunk])
			st.Frag = 1
			st.Done = int64(chunk)
			r.publish(t+recordSize(chunk+8), 0, true)
			continue
		}
		rem := n - uint64(st.Done)
		want := recHdr + align8(min(rem, r.capacity/8))
		if free < want {
			// Streaming: keep the lock while waiting for room.
			if err := r.waitSpace(d, r.bytesNeed(want), func() bool { return r.free() >= want }); err != nil {
				return err
			}
			continue
		}
		chunk := min(rem, free-recHdr, maxRecord)
		kind := uint32(kindMid)
		if chunk == rem {
			kind = kindLast
		}
		t := atomic.LoadUint64(r.tail())
		r.putHeader(t, uint32(chunk), kind)
		r.writeAt(t+recHdr, item[st.Done:uint64(st.Done)+chunk])
		st.Done += int64(chunk)
		if kind == kindLast {
			r.publish(t+recordSize(chunk), 1, true)
			if mode == writeFed || st.Phase == 1 {
				r.unhold(1)
				st.Phase = 0
			}
			r.endPut(st)
			return nil
		}
		r.publish(t+recordSize(chunk), 0, true)
	}
}

// endPut releases the producer lock held by st and clears its streaming
// state (a slot st holds stays held: see Queue.AbortPut). A consumer
// assembling an item that was cut short drops it when it meets the next
// record (or appends an ABORT itself, see abortIfProducerGone).
func (r *Ring) endPut(st *PutState) {
	if st.Locked != 0 {
		st.Locked = 0
		unlock(r.plock())
	}
	st.Frag, st.Done = 0, 0
}

// ---- consumers ---------------------------------------------------------------------------

// waitData sleeps until tail moves from head, at most until d.
func (r *Ring) waitData(head uint64, d *deadline, most time.Duration) error {
	left := d.left()
	if left <= 0 {
		return ErrAgain
	}
	if most > 0 && left > most {
		left = most
	}
	s := r.dataSleepers()
	slot := s.enter()
	var err error
	if atomic.LoadUint64(r.tail()) == head {
		err = futex.Wait(r.tailWord(), uint32(head), left)
	}
	s.exit(slot)
	return err
}

// consume moves head past a record; item tells whether it ends an item
// (then G grows after head, with the consumer lock's journal: see slots.go).
func (r *Ring) consume(newHead uint64, item bool) {
	if item {
		*r.u64(offCJHead) = newHead
		*r.u64(offCJGet) = atomic.LoadUint64(r.getCount()) + 1
		*r.u64(offCJClaim) = 0 // no claim: a stale one must not replay
		*r.u32(offCJValid) = 1
		atomic.StoreUint64(r.head(), newHead)
		atomic.StoreUint64(r.getCount(), *r.u64(offCJGet))
		*r.u32(offCJValid) = 0
	} else {
		atomic.StoreUint64(r.head(), newHead)
	}
	if atomic.LoadUint32(r.spaceWaiter()) != 0 {
		// Wake the producers once the room the least needy of them asked
		// for is free (see waitSpace).
		sn := r.spaceNeed()
		need := atomic.LoadUint64(sn)
		if need == 0 || r.capacity-(atomic.LoadUint64(r.tail())-newHead) >= need {
			// A need lowered meanwhile stays for the next item.
			atomic.CompareAndSwapUint64(sn, need, math.MaxUint64)
			r.spaceSleepers().wake(r.headWord(), math.MaxInt32, &r.spaceMisses)
		}
	}
}

func (r *Ring) endGet(st *GetState) {
	if st.Locked != 0 {
		st.Locked = 0
		unlock(r.clock())
	}
	st.Mid, st.Total, st.Got = 0, 0, 0
}

// abortIfProducerGone is called by a consumer assembling a streamed item
// while the ring is empty: if it can take the producer lock (free, or its
// owner dead), no producer is writing the item any more, and it appends an
// ABORT record so that the item is dropped.
func (r *Ring) abortIfProducerGone(head uint64) {
	if !tryLock(r.plock()) {
		if !stealIfDead(r.plock()) {
			return
		}
		r.replayP()
	}
	if atomic.LoadUint64(r.tail()) == head {
		r.putHeader(head, 0, kindAbort)
		r.publish(head+recHdr, 0, true)
	}
	unlock(r.plock())
}

// read takes the next item into buf and returns its size. A size larger than
// len(buf) means that the item was left in the ring: call again with a
// buffer that large. ErrAgain when d ends first; a streamed item being
// assembled keeps the consumer lock in st across calls.
func (r *Ring) read(buf []byte, st *GetState, d *deadline) (int64, error) {
	slot := int(st.Claim) - 1
	for {
		if st.Locked == 0 && st.Mid == 0 && slot >= 0 {
			// Coming for the next item: the last one's result went out.
			r.clearClaim(slot)
		}
		if st.Locked == 0 {
			if err := r.lockC(d); err != nil {
				return 0, err
			}
			st.Locked = 1
		}
		head := atomic.LoadUint64(r.head())
		tail := atomic.LoadUint64(r.tail())
		if head == tail {
			if st.Mid != 0 {
				err := r.waitData(head, d, ownerCheckEvery)
				if err == ErrAgain {
					return 0, err
				}
				if err == futex.ErrTimeout {
					r.abortIfProducerGone(head)
				}
				continue
			}
			r.endGet(st)
			if atomic.LoadUint32(r.plock()) != 0 {
				// A producer killed between its two stores left an item
				// counted but not visible (see replayP).
				r.reclaim(false)
			}
			if err := r.waitData(head, d, 0); err == ErrAgain {
				return 0, err
			}
			continue
		}
		used := tail - head
		if used < recHdr || used > r.capacity || head&7 != 0 {
			r.endGet(st)
			return 0, ErrBadRing
		}
		n, kind := r.header(head)
		size := recordSize(uint64(n))
		if size > used {
			r.endGet(st)
			return 0, ErrBadRing
		}
		if st.Mid != 0 && st.Report != 0 && (kind == kindWhole || kind == kindFirst || kind == kindAbort) {
			// The item being assembled ends here unfinished.
			if kind == kindAbort {
				r.consume(head+size, false)
			}
			r.endGet(st)
			return 0, ErrItemLost
		}
		switch kind {
		case kindWhole:
			st.Mid, st.Total, st.Got = 0, 0, 0 // an unfinished item before it is dropped
			if int64(n) > int64(len(buf)) {
				r.endGet(st)
				return int64(n), nil
			}
			r.readAt(head+recHdr, buf[:n])
			if slot >= 0 {
				job, idx := r.claimOf(head+recHdr, uint64(n))
				r.consumeClaim(head+size, true, slot, job, idx)
			} else {
				r.consume(head+size, true)
			}
			r.endGet(st)
			return int64(n), nil
		case kindFirst:
			st.Mid, st.Total, st.Got = 0, 0, 0
			if n < 8 {
				r.endGet(st)
				return 0, ErrBadRing
			}
			total := r.getU64(head + recHdr)
			chunk := uint64(n) - 8
			if chunk > total || total > math.MaxInt64 {
				r.endGet(st)
				return 0, ErrBadRing
			}
			if total > uint64(len(buf)) {
				r.endGet(st)
				return int64(total), nil
			}
			r.readAt(head+recHdr+8, buf[:chunk])
			st.Mid, st.Total, st.Got = 1, int64(total), int64(chunk)
			if slot >= 0 {
				// A streamed item is received once its first fragment is:
				// claimed there.
				job, idx := r.claimOf(head+recHdr+8, chunk)
				r.consumeClaim(head+size, false, slot, job, idx)
			} else {
				r.consume(head+size, false)
			}
		case kindMid, kindLast:
			last := kind == kindLast
			if st.Mid == 0 || st.Got+int64(n) > st.Total || (last && st.Got+int64(n) != st.Total) ||
				st.Total > int64(len(buf)) {
				// The rest of an item whose start another consumer took
				// (and died or gave up with): skip it.
				st.Mid, st.Total, st.Got = 0, 0, 0
				r.consume(head+size, last)
				continue
			}
			r.readAt(head+recHdr, buf[st.Got:st.Got+int64(n)])
			st.Got += int64(n)
			r.consume(head+size, last)
			if last {
				total := st.Total
				r.endGet(st)
				return total, nil
			}
		case kindAbort:
			st.Mid, st.Total, st.Got = 0, 0, 0
			r.consume(head+size, false)
		default:
			r.endGet(st)
			return 0, ErrBadRing
		}
	}
}

// ---- counts ------------------------------------------------------------------------------

// Empty tells whether the ring holds no record.
func (r *Ring) Empty() bool {
	return atomic.LoadUint64(r.head()) == atomic.LoadUint64(r.tail())
}
