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
	Phase  int64 // 0: no slot reserved yet; 1: reserved
	Done   int64 // payload bytes published so far (streamed items)
	Locked int64 // the caller holds the producer lock
	Frag   int64 // the item is being streamed
}

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
func (r *Ring) size() *int64         { return r.i64(offSize) }
func (r *Ring) overflow() *int64     { return r.i64(offOverflow) }
func (r *Ring) unfinished() *int64   { return r.i64(offUnfinish) }

// ---- producers ---------------------------------------------------------------------------

// reserve takes a slot of a bounded queue (waiting for one until d) and
// counts an unfinished task of a joinable one.
func (r *Ring) reserve(d *deadline) error {
	if r.flags&FlagBounded != 0 {
		sz := r.size()
		for {
			s := atomic.LoadInt64(sz)
			if s < r.maxsize {
				if atomic.CompareAndSwapInt64(sz, s, s+1) {
					break
				}
				continue
			}
			if err := r.waitSpace(d, 0, func() bool { return atomic.LoadInt64(sz) < r.maxsize }); err != nil {
				return err
			}
		}
	}
	if r.flags&FlagJoinable != 0 {
		atomic.AddInt64(r.unfinished(), 1)
	}
	return nil
}

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

// publish makes the records up to newTail visible, wakes consumers and
// makes the queue's eventfd readable when a watcher needs it (see
// watch.go), all before the put returns; the caller holds the producer lock.
func (r *Ring) publish(newTail uint64, all bool) {
	atomic.StoreUint64(r.tail(), newTail)
	n := 1
	if all {
		n = math.MaxInt32
	}
	r.dataSleepers().wake(r.tailWord(), n, &r.dataMisses)
	r.notify()
}

// pushWhole writes item as one record; the caller holds the producer lock
// and checked the room.
func (r *Ring) pushWhole(item []byte) {
	t := atomic.LoadUint64(r.tail())
	n := uint64(len(item))
	r.putHeader(t, uint32(n), kindWhole)
	r.writeAt(t+recHdr, item)
	pc := r.u64(offPutCount)
	atomic.StoreUint64(pc, atomic.LoadUint64(pc)+1)
	r.publish(t+recordSize(n), false)
}

// tryPut writes item as one record if the producer lock is free and the
// ring has room now; it never waits.
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
		r.pushWhole(item)
	}
	unlock(r.plock())
	return ok
}

// putMany writes as many of items, in order, as fit in the ring now, as
// WHOLE records under one producer lock, publishes them at once and returns
// how many. It waits for the lock (the feeder's path) but not for room.
func (r *Ring) putMany(items [][]byte) int {
	dl := newDeadline(time.Second)
	if _, err := lock(r.plock(), &dl); err != nil {
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
		pc := r.u64(offPutCount)
		atomic.StoreUint64(pc, atomic.LoadUint64(pc)+uint64(n))
		r.publish(t, n > 1)
	}
	unlock(r.plock())
	return n
}

// write puts item into the ring, waiting for room and streaming it in
// fragments when it is large. It returns ErrAgain when d ends first, with
// its progress in st (the producer lock stays held once streaming began).
func (r *Ring) write(item []byte, st *PutState, d *deadline) error {
	n := uint64(len(item))
	whole := n <= maxRecord && recordSize(n) <= r.capacity/2
	for {
		if st.Locked == 0 {
			if _, err := lock(r.plock(), d); err != nil {
				return err
			}
			st.Locked = 1
		}
		free := r.free()
		if st.Frag == 0 {
			if whole {
				need := recordSize(n)
				if need <= free {
					r.pushWhole(item)
					r.endPut(st)
					return nil
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
			chunk := min(n, free-recHdr-8, maxRecord)
			t := atomic.LoadUint64(r.tail())
			r.putHeader(t, uint32(chunk+8), kindFirst)
			r.putU64(t+recHdr, n)
			r.writeAt(t+recHdr+8, item[:chunk])
			st.Frag = 1
			st.Done = int64(chunk)
			r.publish(t+recordSize(chunk+8), true)
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
			pc := r.u64(offPutCount)
			atomic.StoreUint64(pc, atomic.LoadUint64(pc)+1)
		}
		r.publish(t+recordSize(chunk), true)
		if kind == kindLast {
			r.endPut(st)
			return nil
		}
	}
}

// endPut releases the producer lock held by st and clears its streaming
// state. A consumer assembling an item that was cut short drops it when it
// meets the next record (or appends an ABORT itself, see waitFragment).
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

// consume moves head past a record; item tells whether it ends an item.
func (r *Ring) consume(newHead uint64, item bool) {
	if item {
		gc := r.u64(offGetCount)
		atomic.StoreUint64(gc, atomic.LoadUint64(gc)+1)
	}
	atomic.StoreUint64(r.head(), newHead)
	if item && r.flags&FlagBounded != 0 {
		atomic.AddInt64(r.size(), -1)
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
	if !tryLock(r.plock()) && !stealIfDead(r.plock()) {
		return
	}
	if atomic.LoadUint64(r.tail()) == head {
		r.putHeader(head, 0, kindAbort)
		r.publish(head+recHdr, true)
	}
	unlock(r.plock())
}

// read takes the next item into buf and returns its size. A size larger than
// len(buf) means that the item was left in the ring: call again with a
// buffer that large. ErrAgain when d ends first; a streamed item being
// assembled keeps the consumer lock in st across calls.
func (r *Ring) read(buf []byte, st *GetState, d *deadline) (int64, error) {
	for {
		if st.Locked == 0 {
			if _, err := lock(r.clock(), d); err != nil {
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
			r.consume(head+size, true)
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
			r.consume(head+size, false)
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

// Full tells whether a bounded queue has all its slots taken.
func (r *Ring) Full() bool {
	return r.flags&FlagBounded != 0 && atomic.LoadInt64(r.size()) >= r.maxsize
}

// Qsize is the number of items put and not yet got (including those still
// in producers' overflow buffers).
func (r *Ring) Qsize() int64 {
	if r.flags&FlagBounded != 0 {
		return max(atomic.LoadInt64(r.size()), 0)
	}
	g := atomic.LoadUint64(r.u64(offGetCount))
	o := atomic.LoadInt64(r.overflow())
	p := atomic.LoadUint64(r.u64(offPutCount))
	return max(int64(p-g)+o, 0)
}

// Unfinished is the count of a joinable queue's unfinished tasks.
func (r *Ring) Unfinished() int64 { return atomic.LoadInt64(r.unfinished()) }

// TaskDone marks one task of a joinable queue done.
func (r *Ring) TaskDone() error {
	u := r.unfinished()
	for {
		v := atomic.LoadInt64(u)
		if v <= 0 {
			return ErrTooManyTaskDone
		}
		if atomic.CompareAndSwapInt64(u, v, v-1) {
			if v == 1 {
				seq := r.u32(offJoinSeq)
				atomic.AddUint32(seq, 1)
				if atomic.LoadUint32(r.u32(offJoinWait)) != 0 {
					futex.Wake(seq, math.MaxInt32)
				}
			}
			return nil
		}
	}
}

// Join waits until every task of a joinable queue is done, at most d
// (ErrAgain then).
func (r *Ring) Join(d time.Duration) error {
	dl := newDeadline(d)
	seq := r.u32(offJoinSeq)
	waiters := r.u32(offJoinWait)
	for {
		s := atomic.LoadUint32(seq)
		if atomic.LoadInt64(r.unfinished()) <= 0 {
			return nil
		}
		left := dl.left()
		if left <= 0 {
			return ErrAgain
		}
		atomic.AddUint32(waiters, 1)
		if atomic.LoadInt64(r.unfinished()) > 0 {
			futex.Wait(seq, s, left)
		}
		leave(waiters)
	}
}
