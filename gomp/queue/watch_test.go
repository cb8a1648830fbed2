package queue

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gomp-dev/gomp/gomp/futex"
	"golang.org/x/sys/unix"
)

// sleepsOn tells whether thread tid of this process is in a futex wait on
// word, from the system call it is blocked in (/proc/self/task/TID/syscall:
// the number, then the arguments in hex).
func sleepsOn(t *testing.T, tid int, word *uint32) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/syscall", tid))
	if err != nil {
		t.Skipf("cannot read the thread's system call: %v", err)
	}
	f := strings.Fields(string(b))
	return len(f) > 1 && f[0] == strconv.Itoa(unix.SYS_FUTEX) &&
		f[1] == fmt.Sprintf("0x%x", uintptr(unsafe.Pointer(word)))
}

// readable polls fd for at most d.
func readable(t *testing.T, fd int, d time.Duration) bool {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(d/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return n == 1 && fds[0].Revents&unix.POLLIN != 0
	}
}

// eventfdCount reads the counter of eventfd fd from /proc (without
// touching it).
func eventfdCount(t *testing.T, fd int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "eventfd-count:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("fd %d is not an eventfd", fd)
	return 0
}

// level checks that the eventfd is readable exactly while the ring holds a
// record (at a quiet moment: no put or get under way).
func level(t *testing.T, q *Queue, efd int, when string) {
	t.Helper()
	if r, e := readable(t, efd, 0), q.r.Empty(); r == e {
		t.Fatalf("%s: readable %v with the ring empty %v", when, r, e)
	}
}

func TestWatchFollowsTheRing(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	p := attach(t, fd) // a producer in "another process"
	c := attach(t, fd) // a consumer in a third
	efd, err := q.Watch()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := q.Watch(); again != efd || efd != q.r.Eventfd() {
		t.Fatalf("Watch gave %d then %d, the ring's eventfd is %d", efd, again, q.r.Eventfd())
	}
	level(t, q, efd, "watched, empty")
	// A put of another view makes it readable before it returns.
	write(t, p, []byte("one"))
	level(t, q, efd, "after a put")
	write(t, p, []byte("two"))
	// The get that leaves an item keeps it readable; the one that takes the
	// last resets it before it returns.
	if b := mustGet(t, q, time.Second); string(b) != "one" {
		t.Fatalf("got %q", b)
	}
	level(t, q, efd, "after the first get")
	mustGet(t, q, time.Second)
	level(t, q, efd, "after the last get")
	// A consumer of another view resets the shared eventfd too.
	put(t, p, []byte("three"))
	level(t, q, efd, "after Put")
	mustGet(t, c, time.Second)
	level(t, q, efd, "after another view's get")
	if ok, err := q.Poll(0); ok || err != ErrAgain {
		t.Fatalf("Poll of an empty ring = %v, %v", ok, err)
	}
	write(t, p, []byte("four"))
	if ok, err := q.Poll(0); !ok || err != nil {
		t.Fatalf("Poll = %v, %v", ok, err)
	}
	level(t, q, efd, "after Poll")
	mustGet(t, q, time.Second)
	level(t, q, efd, "after the get")
}

// Puts and gets of random sizes (streamed items too) from several views,
// one at a time: after each, the eventfd is readable exactly while the ring
// holds a record.
func TestWatchLevelAfterEveryOperation(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	views := []*Queue{q, attach(t, fd), attach(t, fd)}
	efd, _ := views[1].Watch()
	rnd := rand.New(rand.NewSource(1))
	var want [][]byte
	for i := 0; i < 3000; i++ {
		v := views[rnd.Intn(len(views))]
		switch k := rnd.Intn(3); {
		case k == 0 || len(want) == 0:
			it := item(0, i, 16+rnd.Intn(1500))
			var st PutState
			if err := v.Write(it, &st, 0); err == ErrAgain {
				v.AbortPut(&st)
				continue // no room
			} else if err != nil {
				t.Fatal(err)
			}
			want = append(want, it)
		case k == 1 && rnd.Intn(20) == 0:
			// An item larger than the ring, streamed while a consumer
			// takes it.
			it := item(1, i, 10000+rnd.Intn(10000))
			done := make(chan error)
			go func() { done <- writeErr(v, it) }()
			for len(want) > 0 {
				if b := mustGet(t, q, 5*time.Second); !bytes.Equal(b, want[0]) {
					t.Fatal("items out of order")
				}
				want = want[1:]
			}
			if b := mustGet(t, q, 5*time.Second); !bytes.Equal(b, it) {
				t.Fatal("streamed item differs")
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		default:
			b := mustGet(t, v, time.Second)
			if !bytes.Equal(b, want[0]) {
				t.Fatal("items out of order")
			}
			want = want[1:]
		}
		level(t, q, efd, "operation "+strconv.Itoa(i))
	}
}

func writeErr(q *Queue, item []byte) error {
	var st PutState
	for {
		err := q.Write(item, &st, 100*time.Millisecond)
		if err != ErrAgain {
			return err
		}
	}
}

// Items that wait in a producer's overflow are announced when the feeder
// puts them in the ring; once Flush (what the exit waits for) returns, they
// are all readable.
func TestWatchOverflowIsAnnouncedBeforeFlushReturns(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	p := attach(t, fd)
	efd, _ := q.Watch()
	for round := 0; round < 50; round++ {
		const n = 12
		for i := 0; i < n; i++ {
			put(t, p, item(round, i, 1000))
		}
		got := 0
		for got < n {
			// Nobody else takes: the descriptor must come up for the rest.
			if !readable(t, efd, time.Minute) {
				t.Fatalf("round %d: lost wake-up with %d of %d got", round, got, n)
			}
			for {
				if _, err := get(q, 0); err != nil {
					break
				}
				got++
			}
		}
		if err := p.Flush(time.Minute); err != nil {
			t.Fatal(err)
		}
		level(t, q, efd, "after the round")
	}
	// The last items stay in the ring: Flush returns after they are readable.
	for i := 0; i < 20; i++ {
		put(t, p, item(9, i, 1000))
		if i%3 == 0 {
			get(q, 0)
		}
		level(t, q, efd, "after a put")
		if err := p.Flush(0); err == nil {
			level(t, q, efd, "after Flush")
		}
	}
	// Drain: the rest comes as the ring makes room.
	for p.Flush(0) != nil || !q.r.Empty() {
		if !readable(t, efd, time.Minute) {
			t.Fatal("lost wake-up while draining")
		}
		get(q, 0)
	}
	level(t, q, efd, "after Flush")
}

// No lost wake-up: many short waits race puts from other views; every
// item put must make the descriptor readable while it is in the ring, and
// the watcher must get them all. A wait that never ends is a lost wake-up
// (the watchdog is a minute: it only turns a hang into a failure).
func TestWatchNoLostWakeups(t *testing.T) {
	q, fd := newTestQueue(t, 1<<16, 0, 0)
	const producers, each = 3, 3000
	var wg sync.WaitGroup
	for k := 0; k < producers; k++ {
		p := attach(t, fd)
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(int64(k)))
			for i := 0; i < each; i++ {
				if rnd.Intn(4) == 0 {
					time.Sleep(time.Duration(rnd.Intn(200)) * time.Microsecond)
				}
				var st PutState
				for {
					err := p.Write(item(k, i, 16+rnd.Intn(64)), &st, 100*time.Millisecond)
					if err == nil {
						break
					}
					if err != ErrAgain {
						t.Errorf("producer %d: %v", k, err)
						return
					}
				}
			}
		}(k)
	}
	efd, err := q.Watch()
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	waits := 0
	for got < producers*each {
		// Wait for the descriptor (as connection.wait does), then take
		// what is there without waiting.
		if !readable(t, efd, time.Minute) {
			t.Fatalf("lost wake-up: nothing readable with %d of %d items got (ring empty: %v)",
				got, producers*each, q.r.Empty())
		}
		waits++
		for {
			_, err := get(q, 0)
			if err == ErrAgain {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got++
		}
	}
	wg.Wait()
	// A producer's write may have raced the last get; the next look settles.
	q.Empty()
	level(t, q, efd, "after everything was got")
	t.Logf("%d items in %d waits", got, waits)
}

// The same with a consumer in another view that takes items too: readiness
// may then be spurious, never lost. The other consumer stops after half the
// items, so that the watcher must take the rest by readiness alone (were it
// to drain the ring to the end, a descriptor that never becomes readable
// would pass).
func TestWatchNoLostWakeupsWithAnotherConsumer(t *testing.T) {
	q, fd := newTestQueue(t, 1<<16, 0, 0)
	p, c := attach(t, fd), attach(t, fd)
	const n = 20000
	var taken, other atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			if err := writeErr(p, item(0, i, 16)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for other.Load() < n/2 {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := get(c, 0); err == nil {
				other.Add(1)
				taken.Add(1)
			}
		}
	}()
	efd, _ := q.Watch()
	mine := 0
	for taken.Load() < n {
		if !readable(t, efd, time.Minute) {
			// Readiness is needed only while an item is there.
			if !q.r.Empty() {
				t.Fatal("lost wake-up: the ring holds an item, the descriptor is not readable")
			}
			continue
		}
		if _, err := get(q, 0); err == nil {
			taken.Add(1)
			mine++
		}
	}
	close(stop)
	wg.Wait()
	q.Empty()
	level(t, q, efd, "at the end")
	if int64(mine)+other.Load() != n || mine < n/2 {
		t.Fatalf("the watcher took %d items, the other consumer %d, of %d", mine, other.Load(), n)
	}
}

// Nobody watches: puts and gets never touch the eventfd (its counter stays
// at the 1 it was made with: no write, no read).
func TestUnwatchedQueueLeavesTheEventfdAlone(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	p := attach(t, fd)
	for i := 0; i < 1000; i++ {
		put(t, p, item(0, i, 100))
		mustGet(t, q, time.Second)
		q.Empty()
	}
	if n := eventfdCount(t, q.r.Eventfd()); n != 1 {
		t.Fatalf("eventfd counter %d, want 1", n)
	}
	// Watched, then unwatched: at most one more write, then nothing.
	efd, _ := q.Watch()
	level(t, q, efd, "watched")
	q.Unwatch()
	for i := 0; i < 1000; i++ {
		put(t, p, item(0, i, 100))
		mustGet(t, q, time.Second)
	}
	if n := eventfdCount(t, efd); n != 1 {
		t.Fatalf("eventfd counter %d, want 1", n)
	}
	if w := atomic.LoadUint32(q.r.watchers()); w != 0 {
		t.Fatalf("%d watchers", w)
	}
}

// A process killed in the middle of a reset (nlock held, the counter read,
// the ring not re-checked) is repaired by the next Watch.
func TestResetOfADeadProcessIsRepaired(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	p := attach(t, fd)
	efd, _ := q.Watch()
	write(t, p, []byte("x"))
	restore := SetPidForTest(deadPid(t))
	if !tryLock(q.r.nlock()) {
		t.Fatal("nlock taken")
	}
	var b [8]byte
	unix.Read(efd, b[:])
	restore()
	if readable(t, efd, 0) {
		t.Fatal("readable")
	}
	if _, err := q.Watch(); err != nil {
		t.Fatal(err)
	}
	level(t, q, efd, "after Watch")
	if atomic.LoadUint32(q.r.nlock()) != 0 {
		t.Fatal("nlock still held")
	}
	mustGet(t, q, time.Second)
	level(t, q, efd, "after the get")
}

func TestUnwatchAndRelease(t *testing.T) {
	r, fd, err := Create(4096, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	defer r.Unmap()
	for i := 0; i < 50; i++ {
		efd, err := unix.FcntlInt(uintptr(r.Eventfd()), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		h, err := Open(fd, efd)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := Lookup(h)
		if w, err := q.Watch(); err != nil || w != efd {
			t.Fatalf("Watch = %d, %v; the handle's eventfd is %d", w, err, efd)
		}
		if i%2 == 0 {
			q.Unwatch()
		}
		if err := Release(h); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.FcntlInt(uintptr(efd), unix.F_GETFD, 0); err == nil {
			t.Fatalf("eventfd %d still open after Release", efd)
		}
		if w := atomic.LoadUint32(r.watchers()); w != 0 {
			t.Fatalf("%d watchers after Release", w)
		}
	}
}
func TestGetReportsAnItemCutShort(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	c := attach(t, fd)
	dead := deadPid(t)
	restore := SetPidForTest(dead)
	var st PutState
	if err := q.Write(item(9, 0, 50000), &st, 10*time.Millisecond); err != ErrAgain || st.Frag == 0 {
		t.Fatalf("write = %v, frag %d", err, st.Frag)
	}
	restore()
	// A get with Report: the consumer appends the abort (the producer is
	// gone) and says so.
	var gs GetState
	gs.Report = 1
	buf := make([]byte, 1<<16)
	var err error
	for end := time.Now().Add(hangGuard); time.Now().Before(end); { // a hang guard
		if _, err = c.Get(buf, &gs, 50*time.Millisecond); err != ErrAgain {
			break
		}
	}
	if err != ErrItemLost || gs.Locked != 0 {
		t.Fatalf("get = %v (locked %d), want ErrItemLost", err, gs.Locked)
	}
	// Again, cut short by a producer that takes the lock over and puts a
	// whole item: the lost item is reported, then the whole one comes.
	restore = SetPidForTest(dead)
	st = PutState{}
	if err := q.Write(item(9, 1, 50000), &st, 10*time.Millisecond); err != ErrAgain {
		t.Fatal(err)
	}
	restore()
	gs = GetState{Report: 1}
	if _, err := c.Get(buf, &gs, 0); err != ErrAgain || gs.Mid == 0 {
		t.Fatalf("get = %v, mid %d", err, gs.Mid)
	}
	write(t, q, []byte("whole"))
	if _, err := c.Get(buf, &gs, time.Second); err != ErrItemLost {
		t.Fatalf("get = %v, want ErrItemLost", err)
	}
	if b := mustGet(t, c, time.Second); string(b) != "whole" {
		t.Fatalf("got %q", b)
	}
}

func TestDiscardDropsTheOverflow(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, 0)
	// Nobody consumes: 100 items of 1 KiB do not fit; the feeder waits for
	// room that never comes.
	for i := 0; i < 100; i++ {
		put(t, q, item(1, i, 1024))
	}
	if q.Pending() == 0 {
		t.Fatal("nothing in the overflow")
	}
	if err := q.Flush(50 * time.Millisecond); err != ErrAgain {
		t.Fatalf("Flush = %v, want ErrAgain (no room)", err)
	}
	// Discard wakes whoever sleeps for room on the head word, the feeder
	// first of all, so that it gives up at once rather than at the end of
	// its slice. A sleeper of the test's own that would sleep an hour shows
	// it (how soon the feeder gives up is a speed, not a test's business).
	head := q.r.headWord()
	h := atomic.LoadUint32(head)
	tids, woken := make(chan int, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- unix.Gettid()
		woken <- futex.Wait(head, h, time.Hour)
	}()
	tid := <-tids
	for end := time.Now().Add(hangGuard); !sleepsOn(t, tid, head); {
		if time.Now().After(end) {
			t.Fatal("hung: the test's sleeper never went to sleep")
		}
		time.Sleep(time.Millisecond)
	}
	q.Discard()
	select {
	case err := <-woken:
		if err != nil {
			t.Fatalf("the test's sleeper: %v, want woken", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("hung: Discard woke nobody sleeping on the head word")
	}
	// The feeder gives up (still no room: without Discard the Flush would
	// time out); the generous timeout is only a hang guard.
	if err := q.Flush(hangGuard); err != nil {
		t.Fatalf("Flush after Discard = %v", err)
	}
	if q.Pending() != 0 || q.r.held() != 0 {
		t.Fatalf("pending %d, held %d", q.Pending(), q.r.held())
	}
	// Later items that do not fit are dropped too; the exit does not wait.
	put(t, q, item(1, 200, 1024))
	if q.Pending() != 0 {
		t.Fatal("an item waits after Discard")
	}
	if err := FlushAll(time.Second); err != nil {
		t.Fatalf("FlushAll = %v", err)
	}
	// What is in the ring is still there for consumers.
	if b := mustGet(t, q, time.Second); len(b) != 1024 {
		t.Fatalf("got %d bytes", len(b))
	}
}
