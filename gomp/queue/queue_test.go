package queue

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomp-dev/gomp/gomp/owner"
	"golang.org/x/sys/unix"
)

// hangGuard is how long a test waits for something that must happen before
// it calls it a hang: a watchdog, not a speed claim (speed is measured by the
// benchmarks, never asserted by a test).
const hangGuard = 60 * time.Second

func newTestQueue(t *testing.T, capacity uint64, maxsize int64, flags uint32) (*Queue, int) {
	t.Helper()
	r, fd, err := Create(capacity, maxsize, flags)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	testEfds.Store(fd, r.Eventfd())
	t.Cleanup(func() { testEfds.Delete(fd) })
	q := newQueue(r)
	t.Cleanup(func() {
		q.Flush(5 * time.Second)
		q.release()
	})
	return q, fd
}

// testEfds maps the memfd of each ring of newTestQueue to its eventfd.
var testEfds sync.Map

// attach opens a second view of the ring, as another process would (with
// its own copy of the eventfd).
func attach(t *testing.T, fd int) *Queue {
	t.Helper()
	e, _ := testEfds.Load(fd)
	efd, err := unix.FcntlInt(uintptr(e.(int)), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Attach(fd, efd)
	if err != nil {
		unix.Close(efd)
		t.Fatal(err)
	}
	q := newQueue(r)
	t.Cleanup(func() {
		q.Flush(5 * time.Second)
		q.release()
	})
	return q
}

func mustGet(t *testing.T, q *Queue, d time.Duration) []byte {
	t.Helper()
	b, err := get(q, d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// get takes one item, growing the buffer as the caller in C does.
func get(q *Queue, d time.Duration) ([]byte, error) {
	buf := make([]byte, 64)
	var st GetState
	for {
		n, err := q.Get(buf, &st, d)
		if err == ErrAgain && st.Mid != 0 {
			continue // finish an item begun, as the C caller does
		}
		if err != nil {
			q.AbortGet(&st)
			return nil, err
		}
		if n <= int64(len(buf)) {
			return buf[:n], nil
		}
		buf = make([]byte, n)
	}
}

func put(t *testing.T, q *Queue, item []byte) {
	t.Helper()
	var st PutState
	if _, err := q.Put(item, &st, time.Second); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, q *Queue, item []byte) {
	t.Helper()
	var st PutState
	for {
		err := q.Write(item, &st, 100*time.Millisecond)
		if err == nil {
			return
		}
		if err != ErrAgain {
			t.Fatal(err)
		}
	}
}

func item(producer, i int, size int) []byte {
	if size < 16 {
		size = 16
	}
	b := make([]byte, size)
	binary.LittleEndian.PutUint64(b, uint64(producer))
	binary.LittleEndian.PutUint64(b[8:], uint64(i))
	for k := 16; k < size; k++ {
		b[k] = byte(i + k)
	}
	return b
}

func TestCreateAttachValidate(t *testing.T) {
	q, fd := newTestQueue(t, 5000, 3, FlagJoinable)
	if q.r.Capacity() != 8192 || q.r.Maxsize() != 3 || q.r.Flags() != FlagJoinable|FlagBounded {
		t.Fatalf("capacity %d maxsize %d flags %d", q.r.Capacity(), q.r.Maxsize(), q.r.Flags())
	}
	q2 := attach(t, fd)
	if q2.r.Capacity() != 8192 || q2.r.Maxsize() != 3 || q2.r.Flags() != q.r.Flags() {
		t.Fatal("attached view differs")
	}
	// A file that is not a ring is refused.
	f, err := unix.MemfdCreate("x", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(f)
	unix.Ftruncate(f, headerSize+minCapacity)
	if _, err := Attach(f, -1); err != ErrBadRing {
		t.Fatalf("Attach of a zero file = %v", err)
	}
}

func TestOrderAndCounts(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	c := attach(t, fd)
	if !c.r.Empty() || c.r.Qsize() != 0 {
		t.Fatal("new queue not empty")
	}
	for i := 0; i < 1000; i++ {
		put(t, q, item(0, i, 16+i%100))
	}
	if got := c.r.Qsize(); got != 1000 {
		t.Fatalf("qsize %d", got)
	}
	for i := 0; i < 1000; i++ {
		b := mustGet(t, c, time.Second)
		if !bytes.Equal(b, item(0, i, 16+i%100)) {
			t.Fatalf("item %d differs", i)
		}
	}
	if c.r.Qsize() != 0 || !c.r.Empty() {
		t.Fatalf("qsize %d after draining", c.r.Qsize())
	}
	if _, err := get(c, 0); err != ErrAgain {
		t.Fatalf("get on empty = %v", err)
	}
}

func TestGetTimesOut(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, 0)
	t0 := time.Now()
	if _, err := get(q, 50*time.Millisecond); err != ErrAgain {
		t.Fatal(err)
	}
	if el := time.Since(t0); el < 45*time.Millisecond {
		t.Fatalf("returned after %v", el)
	}
}

func TestBoundedReserve(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 2, 0)
	put(t, q, []byte("a"))
	put(t, q, []byte("b"))
	if !q.r.Full() {
		t.Fatal("not full")
	}
	var st PutState
	if _, err := q.Put([]byte("c"), &st, 20*time.Millisecond); err != ErrAgain || st.Phase != 0 {
		t.Fatalf("put into a full queue = %v (phase %d)", err, st.Phase)
	}
	done := make(chan error)
	go func() {
		var st PutState
		_, err := q.Put([]byte("c"), &st, 5*time.Second)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if string(mustGet(t, q, time.Second)) != "a" {
		t.Fatal("order")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if q.r.Qsize() != 2 {
		t.Fatalf("qsize %d", q.r.Qsize())
	}
}

func TestOverflowKeepsOrder(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	c := attach(t, fd)
	const n = 5000
	over := 0
	for i := 0; i < n; i++ {
		var st PutState
		o, err := q.Put(item(0, i, 100), &st, 0)
		if err != nil {
			t.Fatal(err)
		}
		if o {
			over++
		}
	}
	if over == 0 {
		t.Fatal("nothing overflowed a 4 KiB ring")
	}
	if q.r.Qsize() != n {
		t.Fatalf("qsize %d with overflow", q.r.Qsize())
	}
	for i := 0; i < n; i++ {
		if b := mustGet(t, c, 5*time.Second); !bytes.Equal(b, item(0, i, 100)) {
			t.Fatalf("item %d differs", i)
		}
	}
	if err := q.Flush(time.Second); err != nil {
		t.Fatal(err)
	}
	if q.Pending() != 0 || c.r.Qsize() != 0 {
		t.Fatalf("pending %d qsize %d", q.Pending(), c.r.Qsize())
	}
}

func TestLargeItemsStream(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	c := attach(t, fd)
	sizes := []int{10, 3000, 100000, 20, 4090, 4096, 1 << 20, 7}
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		for i, s := range sizes {
			var st PutState
			q.Put(item(1, i, s), &st, time.Second)
		}
	}()
	for i, s := range sizes {
		b := mustGet(t, c, 10*time.Second)
		if !bytes.Equal(b, item(1, i, s)) {
			t.Fatalf("item %d (%d bytes) differs (got %d bytes)", i, s, len(b))
		}
	}
	if c.r.Qsize() != 0 {
		t.Fatalf("qsize %d", c.r.Qsize())
	}
}

func TestManyProducersConsumers(t *testing.T) {
	q, fd := newTestQueue(t, 8192, 0, 0)
	const producers, consumers, per = 4, 3, 3000
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		pq := attach(t, fd)
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				size := 16 + (i*7+p)%300
				if i%500 == 0 {
					size = 20000 // streamed through the small ring
				}
				var st PutState
				if p%2 == 0 {
					pq.Put(item(p, i, size), &st, time.Second)
				} else {
					for pq.Write(item(p, i, size), &st, time.Second) == ErrAgain {
					}
				}
			}
		}(p)
	}
	var mu sync.Mutex
	seen := make([][]bool, producers)
	for i := range seen {
		seen[i] = make([]bool, per)
	}
	var total atomic.Int64
	var cwg sync.WaitGroup
	errs := make(chan error, consumers)
	var failed atomic.Bool
	defer failed.Store(true)
	for k := 0; k < consumers; k++ {
		cq := attach(t, fd)
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			fail := func(err error) {
				failed.Store(true)
				errs <- err
			}
			// Each consumer sees each producer's items in order; together
			// they see every item once.
			last := make([]int, producers)
			for i := range last {
				last[i] = -1
			}
			for total.Load() < producers*per && !failed.Load() {
				b, err := get(cq, 50*time.Millisecond)
				if err == ErrAgain {
					continue
				}
				if err != nil {
					fail(err)
					return
				}
				p := int(binary.LittleEndian.Uint64(b))
				i := int(binary.LittleEndian.Uint64(b[8:]))
				if p < 0 || p >= producers || i < 0 || i >= per {
					fail(fmt.Errorf("bad item %d/%d", p, i))
					return
				}
				size := 16 + (i*7+p)%300
				if i%500 == 0 {
					size = 20000
				}
				if !bytes.Equal(b, item(p, i, size)) {
					fail(fmt.Errorf("item %d/%d corrupted (%d bytes)", p, i, len(b)))
					return
				}
				if i <= last[p] {
					fail(fmt.Errorf("item %d/%d after %d", p, i, last[p]))
					return
				}
				last[p] = i
				mu.Lock()
				dup := seen[p][i]
				seen[p][i] = true
				mu.Unlock()
				if dup {
					fail(fmt.Errorf("item %d/%d twice", p, i))
					return
				}
				total.Add(1)
			}
		}()
	}
	cwg.Wait()
	if failed.Load() {
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if total.Load() != producers*per {
		t.Fatalf("got %d items", total.Load())
	}
	if q.r.Qsize() != 0 {
		t.Fatalf("qsize %d", q.r.Qsize())
	}
}

// deadPid returns the pid of a process that has exited and been reaped.
func deadPid(t *testing.T) uint32 {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	return uint32(cmd.Process.Pid)
}

func TestConsumerLockOfDeadProcessIsTaken(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, 0)
	put(t, q, []byte("x"))
	atomic.StoreUint32(q.r.clock(), deadPid(t)) // a consumer died holding the lock
	b := mustGet(t, q, time.Second)
	if string(b) != "x" {
		t.Fatalf("got %q", b)
	}
	// A non-blocking get also takes it over (rate-limited check).
	put(t, q, []byte("y"))
	atomic.StoreUint32(q.r.clock(), deadPid(t))
	time.Sleep(3 * quickCheckEvery)
	if b, err := get(q, 0); err != nil || string(b) != "y" {
		t.Fatalf("get_nowait = %q, %v", b, err)
	}
}

func TestProducerDiesMidStream(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	c := attach(t, fd)
	// Simulate another process that streamed the first part of a large item
	// and died holding the producer lock.
	dead := deadPid(t)
	restore := SetPidForTest(dead)
	var st PutState
	big := item(9, 0, 50000)
	if err := q.Write(big, &st, 10*time.Millisecond); err != ErrAgain || st.Frag == 0 {
		t.Fatalf("write = %v, frag %d", err, st.Frag)
	}
	restore()
	// The consumer assembles what is there, finds the producer gone, drops
	// the item; the next item comes through.
	done := make(chan []byte)
	go func() {
		b, _ := get(c, 5*time.Second)
		done <- b
	}()
	time.Sleep(30 * time.Millisecond)
	write(t, q, []byte("after"))
	if b := <-done; string(b) != "after" {
		t.Fatalf("got %d bytes %q", len(b), b)
	}
	// Without another producer: the consumer appends the abort itself.
	restore = SetPidForTest(dead)
	st = PutState{}
	if err := q.Write(big, &st, 10*time.Millisecond); err != ErrAgain {
		t.Fatal(err)
	}
	restore()
	if _, err := get(c, 100*time.Millisecond); err != ErrAgain {
		t.Fatalf("get of a dropped item = %v", err)
	}
	if c.r.Empty() != true {
		t.Fatal("ring not empty after the abort")
	}
	write(t, q, []byte("again"))
	if b := mustGet(t, c, time.Second); string(b) != "again" {
		t.Fatalf("got %q", b)
	}
}

func TestConsumerDiesMidStream(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	c := attach(t, fd)
	big := item(3, 0, 4<<20)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() {
		defer wg.Done()
		var st PutState
		for q.Write(big, &st, time.Second) == ErrAgain {
		}
	}()
	// A consumer takes the first fragments and gives up (as a killed one
	// would leave them).
	buf := make([]byte, len(big))
	var st GetState
	for st.Mid == 0 || st.Got < 5000 {
		n, err := c.Get(buf, &st, 0)
		if err != nil && err != ErrAgain {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatal("the whole item came at once")
		}
	}
	c.AbortGet(&st)
	go func() {
		defer wg.Done()
		var st PutState
		for q.Write([]byte("next"), &st, time.Second) == ErrAgain {
		}
	}()
	// The rest of the item is skipped.
	if b := mustGet(t, c, 10*time.Second); string(b) != "next" {
		t.Fatalf("got %d bytes", len(b))
	}
	if c.r.Qsize() != 0 {
		t.Fatalf("qsize %d", c.r.Qsize())
	}
}

func TestCorruptRingIsAnError(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, 0)
	put(t, q, []byte("abc"))
	h := atomic.LoadUint64(q.r.head())
	q.r.putHeader(h, 99999, kindWhole)
	if _, err := get(q, 0); err != ErrBadRing {
		t.Fatalf("get of a corrupt record = %v", err)
	}
	q.r.putHeader(h, 3, 77)
	if _, err := get(q, 0); err != ErrBadRing {
		t.Fatalf("get of an unknown kind = %v", err)
	}
}

func TestTaskDoneJoin(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, FlagJoinable)
	if err := q.r.TaskDone(); err != ErrTooManyTaskDone {
		t.Fatal(err)
	}
	put(t, q, []byte("a"))
	put(t, q, []byte("b"))
	if q.r.Join(10*time.Millisecond) != ErrAgain {
		t.Fatal("join returned with tasks left")
	}
	done := make(chan error)
	go func() { done <- q.r.Join(5 * time.Second) }()
	q.r.TaskDone()
	time.Sleep(10 * time.Millisecond)
	q.r.TaskDone()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if q.r.Unfinished() != 0 {
		t.Fatal(q.r.Unfinished())
	}
}

func TestHandles(t *testing.T) {
	h, fd, efd, err := New(4096, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	efd2, err := unix.FcntlInt(uintptr(efd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := Open(fd, efd2)
	if err != nil {
		t.Fatal(err)
	}
	q, err := Lookup(h)
	if err != nil {
		t.Fatal(err)
	}
	put(t, q, []byte("z"))
	q2, _ := Lookup(h2)
	if string(mustGet(t, q2, time.Second)) != "z" {
		t.Fatal("handles do not share the ring")
	}
	if err := Release(h); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup(h); err != ErrUnknown {
		t.Fatal("released handle still found")
	}
	if err := Release(h); err != ErrUnknown {
		t.Fatal("double release")
	}
	Release(h2)
}

func TestFlushAllWaitsAndCancel(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	for i := 0; i < 200; i++ {
		var st PutState
		q.Put(item(0, i, 200), &st, 0)
	}
	if q.Pending() == 0 {
		t.Fatal("no overflow")
	}
	if err := FlushAll(20 * time.Millisecond); err != ErrAgain {
		t.Fatalf("FlushAll with a full ring = %v", err)
	}
	q.CancelJoin()
	if err := FlushAll(20 * time.Millisecond); err != nil {
		t.Fatalf("FlushAll after cancel = %v", err)
	}
	c := attach(t, fd)
	for i := 0; i < 200; i++ {
		mustGet(t, c, 5*time.Second)
	}
}

func TestDeadSleepersAreUncounted(t *testing.T) {
	q, _ := newTestQueue(t, 1<<20, 0, 0)
	dead := deadPid(t)
	// Two consumers killed while they slept. (A producer killed in its
	// sleep costs at most one wake-up: its spaceNeed is reset by it.)
	ds := q.r.dataSleepers()
	for i := 0; i < 2; i++ {
		ds.enter()
		atomic.StoreUint32(&ds.slots[i], dead)
	}
	// A live sleeper of this process stays counted.
	live := ds.enter()
	for i := 0; i < repairAfter+10; i++ {
		put(t, q, []byte("x"))
	}
	for i := 0; i < repairAfter+10; i++ {
		mustGet(t, q, time.Second)
	}
	if c := atomic.LoadUint32(ds.count); c != 1 {
		t.Fatalf("consumer count %d, want 1 (the live one)", c)
	}
	ds.exit(live)
	if c := atomic.LoadUint32(ds.count); c != 0 {
		t.Fatalf("count %d after the live sleeper left", c)
	}
	// Sleepers are still woken. The get would sleep an hour without the
	// wake-up; the watchdog only turns that into a failure.
	done := make(chan []byte, 1)
	go func() {
		b, _ := get(q, time.Hour)
		done <- b
	}()
	for atomic.LoadUint32(ds.count) == 0 {
		time.Sleep(time.Millisecond) // until the get sleeps (or is about to)
	}
	put(t, q, []byte("y"))
	select {
	case b := <-done:
		if string(b) != "y" {
			t.Fatalf("got %q", b)
		}
	case <-time.After(hangGuard):
		t.Fatal("hung: the sleeper was not woken")
	}
}

func TestRecycledPidIsNotTheOwner(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, 0)
	put(t, q, []byte("x"))
	other := uint32(os.Getppid()) // a live process that is not this one
	st, err := owner.ReadStat(int(other))
	if err != nil {
		t.Skip("cannot read the parent's start time")
	}
	// The lock is held by a live process that is the owner (its tag
	// matches): a get that does not wait finds it busy.
	atomic.StoreUint32(q.r.clock(), other)
	atomic.StoreUint64(tagOf(q.r.clock()), uint64(owner.ID(int(other), st.StartTime)))
	time.Sleep(3 * quickCheckEvery)
	if _, err := get(q, 0); err != ErrAgain {
		t.Fatalf("get from a queue whose consumer lock a live owner holds = %v", err)
	}
	// The owner died and its pid now belongs to a process started later:
	// the lock is taken over.
	atomic.StoreUint64(tagOf(q.r.clock()), uint64(owner.ID(int(other), st.StartTime+1)))
	if b := mustGet(t, q, time.Second); string(b) != "x" {
		t.Fatalf("got %q", b)
	}
	if atomic.LoadUint64(tagOf(q.r.clock())) != 0 {
		t.Fatal("the tag stays after unlock")
	}
}
