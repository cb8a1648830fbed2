package queue

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomp-dev/gomp/gomp/owner"
)

// deadEntry fills a free entry as a dead process would leave it, holding n
// items, and returns its index.
func deadEntry(t *testing.T, r *Ring, n int64) int {
	t.Helper()
	id := owner.ID(int(deadPid(t)), 0)
	for i := 1; i < numEntries; i++ {
		if atomic.CompareAndSwapUint64(r.entry(i), 0, uint64(id)<<entryShift|uint64(n)) {
			for {
				h := atomic.LoadUint32(r.entryHi())
				if h > uint32(i) || atomic.CompareAndSwapUint32(r.entryHi(), h, uint32(i+1)) {
					break
				}
			}
			return i
		}
	}
	t.Fatal("no free entry")
	return 0
}

func TestSlotsOfADeadProcessComeBack(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 3, 0)
	put(t, q, []byte("a"))
	deadEntry(t, q.r, 2) // a producer died with two items in its overflow
	if got := q.r.count(); got != 3 {
		t.Fatalf("count %d before the reclaim", got)
	}
	// A put waiting for a slot finds the dead producer's.
	var st PutState
	for {
		_, err := q.Put([]byte("b"), &st, 100*time.Millisecond)
		if err == nil {
			break
		}
		if err != ErrAgain {
			t.Fatal(err)
		}
	}
	if q.r.Qsize() != 2 || q.r.held() != 0 {
		t.Fatalf("qsize %d held %d", q.r.Qsize(), q.r.held())
	}
}

func TestQsizeForgetsADeadProcess(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 4, 0)
	deadEntry(t, q.r, 4)
	time.Sleep(2 * reclaimEvery)
	if q.r.Qsize() != 0 || q.r.Full() {
		t.Fatalf("qsize %d full %v", q.r.Qsize(), q.r.Full())
	}
}

func TestJoinForgetsTheTasksOfADeadProducer(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, FlagJoinable)
	put(t, q, []byte("a"))
	deadEntry(t, q.r, 1)
	if q.r.unfinished() != 2 {
		t.Fatalf("unfinished %d", q.r.unfinished())
	}
	mustGet(t, q, time.Second)
	if err := q.r.TaskDone(); err != nil {
		t.Fatal(err)
	}
	if err := q.r.Join(5 * time.Second); err != nil {
		t.Fatalf("join = %v", err)
	}
	if err := q.r.TaskDone(); err != ErrTooManyTaskDone {
		t.Fatalf("extra task_done = %v", err)
	}
}

// The task of an item a dead producer held cannot be done: task_done()
// for it is one too many, and the count never goes below zero.
func TestTaskDoneSkipsTheItemsOfDeadProcesses(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, FlagJoinable)
	put(t, q, []byte("a"))
	deadEntry(t, q.r, 1)
	mustGet(t, q, time.Second)
	if err := q.r.TaskDone(); err != nil {
		t.Fatal(err)
	}
	if err := q.r.TaskDone(); err != ErrTooManyTaskDone {
		t.Fatalf("task_done for a dead producer's item = %v", err)
	}
	if u := q.r.Unfinished(); u != 0 {
		t.Fatalf("unfinished %d", u)
	}
	put(t, q, []byte("b"))
	mustGet(t, q, time.Second)
	if err := q.r.TaskDone(); err != nil {
		t.Fatal(err)
	}
	if err := q.r.Join(time.Second); err != nil {
		t.Fatal(err)
	}
}

// A producer killed after its P store and before its tail store: the item
// counts, and whoever takes the lock over publishes it.
func TestPublishCompletedAfterDeath(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 2, 0)
	r := q.r
	tail := atomic.LoadUint64(r.tail())
	it := []byte("half published")
	r.putHeader(tail, uint32(len(it)), kindWhole)
	r.writeAt(tail+recHdr, it)
	*r.u64(offPJTail) = tail + recordSize(uint64(len(it)))
	*r.u64(offPJPut) = atomic.LoadUint64(r.putCount()) + 1
	*r.u32(offPJValid) = 1
	atomic.StoreUint64(r.putCount(), *r.u64(offPJPut))
	atomic.StoreUint32(r.plock(), deadPid(t))
	if r.Qsize() != 1 || !r.Empty() {
		t.Fatalf("qsize %d empty %v", r.Qsize(), r.Empty())
	}
	if b := mustGet(t, q, 5*time.Second); string(b) != string(it) {
		t.Fatalf("got %q", b)
	}
	if r.Qsize() != 0 {
		t.Fatalf("qsize %d", r.Qsize())
	}
}

// A producer killed before its P store: nothing is published, no count grew.
func TestPublishDroppedAfterDeath(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 2, 0)
	r := q.r
	tail := atomic.LoadUint64(r.tail())
	*r.u64(offPJTail) = tail + 64
	*r.u64(offPJPut) = atomic.LoadUint64(r.putCount()) + 1
	*r.u32(offPJValid) = 1
	atomic.StoreUint32(r.plock(), deadPid(t))
	put(t, q, []byte("next"))
	if b := mustGet(t, q, time.Second); string(b) != "next" {
		t.Fatalf("got %q", b)
	}
	if r.Qsize() != 0 || !r.Empty() {
		t.Fatalf("qsize %d empty %v", r.Qsize(), r.Empty())
	}
}

// A consumer killed after its head store and before its G store: the next
// one completes the count, so the slot is free again.
func TestGetCompletedAfterDeath(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 1, 0)
	r := q.r
	put(t, q, []byte("taken"))
	head := atomic.LoadUint64(r.head())
	newHead := head + recordSize(5)
	*r.u64(offCJHead) = newHead
	*r.u64(offCJGet) = atomic.LoadUint64(r.getCount()) + 1
	*r.u32(offCJValid) = 1
	atomic.StoreUint64(r.head(), newHead)
	atomic.StoreUint32(r.clock(), deadPid(t))
	if !r.Full() {
		t.Fatal("the count should be one too high until the journal is replayed")
	}
	// The producer waiting for a slot takes the dead consumer's lock over.
	var st PutState
	for i := 0; ; i++ {
		_, err := q.Put([]byte("next"), &st, 100*time.Millisecond)
		if err == nil {
			break
		}
		if err != ErrAgain || i > 50 {
			t.Fatal(err)
		}
	}
	if b := mustGet(t, q, time.Second); string(b) != "next" {
		t.Fatalf("got %q", b)
	}
	if r.Qsize() != 0 {
		t.Fatalf("qsize %d", r.Qsize())
	}
}

func TestBoundedPutWaitsForRoomThenIsInTheRing(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 4, 0)
	c := attach(t, fd)
	put(t, q, item(0, 0, 1500))
	put(t, q, item(0, 1, 1500))
	// No room for a third item: the put waits (it is not buffered).
	var st PutState
	if over, err := q.Put(item(0, 2, 1500), &st, 30*time.Millisecond); err != ErrAgain || over {
		t.Fatalf("put = %v, %v", over, err)
	}
	if q.Pending() != 0 {
		t.Fatal("buffered")
	}
	mustGet(t, c, time.Second)
	if over, err := q.Put(item(0, 2, 1500), &st, time.Second); err != nil || over {
		t.Fatalf("put = %v, %v", over, err)
	}
	if q.r.Qsize() != 2 || q.Pending() != 0 {
		t.Fatalf("qsize %d pending %d", q.r.Qsize(), q.Pending())
	}
}

func TestBoundedPutMayBuffer(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 3, 0)
	c := attach(t, fd)
	put(t, q, item(0, 0, 2500))
	st := PutState{Mode: PutMayBuffer}
	over, err := q.Put(item(0, 1, 2500), &st, 0)
	if err != nil || !over {
		t.Fatalf("put = %v, %v", over, err)
	}
	if q.r.Qsize() != 2 || q.r.held() != 1 {
		t.Fatalf("qsize %d held %d", q.r.Qsize(), q.r.held())
	}
	for i := 0; i < 2; i++ {
		if b := mustGet(t, c, 5*time.Second); string(b) != string(item(0, i, 2500)) {
			t.Fatalf("item %d differs", i)
		}
	}
	if err := q.Flush(time.Second); err != nil || q.r.held() != 0 || q.r.Qsize() != 0 {
		t.Fatalf("flush %v held %d qsize %d", err, q.r.held(), q.r.Qsize())
	}
}

func TestBoundedPutWithNoConsumerBuffersAfterAStall(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 3, 0)
	put(t, q, item(0, 0, 2500))
	var st PutState
	t0 := time.Now()
	for {
		over, err := q.Put(item(0, 1, 2500), &st, 20*time.Millisecond)
		if err == nil {
			if !over {
				t.Fatal("in the ring without room")
			}
			break
		}
		if err != ErrAgain || time.Since(t0) > 30*time.Second {
			t.Fatal(err)
		}
	}
	if q.r.Qsize() != 2 {
		t.Fatalf("qsize %d", q.r.Qsize())
	}
	// The part of the item streamed before the stall is dropped; the item
	// comes whole from the overflow.
	c := attach(t, fd)
	for i := 0; i < 2; i++ {
		if b := mustGet(t, c, 5*time.Second); string(b) != string(item(0, i, 2500)) {
			t.Fatalf("item %d differs (%d bytes)", i, len(b))
		}
	}
}

func TestBoundedStreamHoldsItsSlot(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 2, 0)
	c := attach(t, fd)
	big := item(3, 0, 20000)
	var st PutState
	if _, err := q.Put(big, &st, 20*time.Millisecond); err != ErrAgain || st.Phase != 1 || st.Frag == 0 {
		t.Fatalf("phase %d frag %d", st.Phase, st.Frag)
	}
	if q.r.Qsize() != 1 || q.r.held() != 1 {
		t.Fatalf("qsize %d held %d while streaming", q.r.Qsize(), q.r.held())
	}
	done := make(chan []byte)
	go func() { b, _ := get(c, 10*time.Second); done <- b }()
	for {
		_, err := q.Put(big, &st, 50*time.Millisecond)
		if err == nil {
			break
		}
		if err != ErrAgain {
			t.Fatal(err)
		}
	}
	if b := <-done; string(b) != string(big) {
		t.Fatalf("got %d bytes", len(b))
	}
	if q.r.Qsize() != 0 || q.r.held() != 0 {
		t.Fatalf("qsize %d held %d", q.r.Qsize(), q.r.held())
	}
	// Given up in the middle: the slot comes back.
	st = PutState{}
	if _, err := q.Put(big, &st, 20*time.Millisecond); err != ErrAgain || st.Phase != 1 {
		t.Fatalf("phase %d", st.Phase)
	}
	q.AbortPut(&st)
	if q.r.held() != 0 {
		t.Fatalf("held %d after AbortPut", q.r.held())
	}
}

func TestOverflowIsHeldUntilFed(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, FlagJoinable)
	c := attach(t, fd)
	for i := 0; i < 10; i++ {
		put(t, q, item(0, i, 1000))
	}
	if q.r.Qsize() != 10 || q.r.Unfinished() != 10 || q.r.held() == 0 {
		t.Fatalf("qsize %d unfinished %d held %d", q.r.Qsize(), q.r.Unfinished(), q.r.held())
	}
	for i := 0; i < 10; i++ {
		mustGet(t, c, 5*time.Second)
		if err := c.r.TaskDone(); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Flush(time.Second); err != nil || q.r.held() != 0 || q.r.Unfinished() != 0 {
		t.Fatalf("flush %v held %d unfinished %d", err, q.r.held(), q.r.Unfinished())
	}
}
