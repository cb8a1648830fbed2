package queue

import (
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

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

func TestWatchFollowsTheRing(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	p := attach(t, fd) // a producer in "another process"
	efd, err := q.Watch()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := q.Watch(); again != efd {
		t.Fatalf("a second Watch made another descriptor: %d, %d", efd, again)
	}
	if readable(t, efd, 0) {
		t.Fatal("readable while empty")
	}
	// An item put by another view wakes the goroutine, which sets it.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		time.Sleep(20 * time.Millisecond)
		write(t, p, []byte("one"))
	}()
	if !readable(t, efd, 5*time.Second) {
		t.Fatal("not readable after a put")
	}
	<-wrote
	write(t, p, []byte("two"))
	// The get that leaves an item keeps it readable; the one that takes the
	// last resets it before it returns.
	if b := mustGet(t, q, time.Second); string(b) != "one" || !readable(t, efd, 0) {
		t.Fatalf("after the first get: %q, readable %v", b, readable(t, efd, 0))
	}
	if b := mustGet(t, q, time.Second); string(b) != "two" || readable(t, efd, 0) {
		t.Fatalf("after the last get: %q, readable %v", b, readable(t, efd, 0))
	}
	// A consumer of another view takes an item: the descriptor stays set
	// until this view looks (Empty, Poll, Get, Watch), not forever.
	write(t, p, []byte("three"))
	if !readable(t, efd, 5*time.Second) {
		t.Fatal("not readable after a put")
	}
	mustGet(t, p, time.Second)
	if !q.Empty() || readable(t, efd, 0) {
		t.Fatal("still readable after Empty() saw the ring empty")
	}
	// Watch itself brings it level at once (no wait for the goroutine).
	write(t, p, []byte("four"))
	if _, err := q.Watch(); err != nil || !readable(t, efd, 0) {
		t.Fatal("Watch after a put did not make it readable at once")
	}
	if ok, err := q.Poll(0); !ok || err != nil {
		t.Fatalf("Poll = %v, %v", ok, err)
	}
	mustGet(t, q, time.Second)
	if ok, err := q.Poll(10 * time.Millisecond); ok || err != ErrAgain {
		t.Fatalf("Poll of an empty ring = %v, %v", ok, err)
	}
}

func TestWatchSeesAnotherViewDrainWithinARecheck(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	p := attach(t, fd)
	efd, _ := q.Watch()
	write(t, p, []byte("x"))
	if !readable(t, efd, 5*time.Second) {
		t.Fatal("not readable")
	}
	mustGet(t, p, time.Second)
	// Nobody of this view looks: the goroutine's periodic check resets it.
	deadline := time.Now().Add(watchRecheck + 2*time.Second)
	for readable(t, efd, 0) {
		if time.Now().After(deadline) {
			t.Fatal("stale readiness outlived the periodic check")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// No lost wake-up: many short waits race puts from other views; every
// item put must make the descriptor readable while it is in the ring, and
// the watcher must get them all. A wait that outlives the watchdog is a
// lost wake-up.
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
		if !readable(t, efd, 10*time.Second) {
			t.Fatalf("lost wake-up: nothing readable for 10 s with %d of %d items got (ring empty: %v)",
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
	if readable(t, efd, 0) {
		t.Fatal("readable after everything was got")
	}
	t.Logf("%d items in %d waits", got, waits)
}

// A watch goroutine asleep on the ring counts as a watcher, so that a
// producer wakes every sleeper: a consumer asleep in a get is not left
// sleeping while the goroutine alone is woken.
func TestWatchDoesNotStealAConsumersWakeup(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	p := attach(t, fd)
	c := attach(t, fd)
	if _, err := q.Watch(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		done := make(chan time.Duration, 1)
		go func() {
			var st GetState
			start := time.Now()
			// One long slice: a wake-up given to the goroutine only would
			// leave this get asleep for the whole second.
			_, err := c.Get(make([]byte, 64), &st, time.Second)
			if err != nil {
				done <- -1
				return
			}
			done <- time.Since(start)
		}()
		time.Sleep(200 * time.Microsecond)
		write(t, p, []byte("x"))
		if d := <-done; d < 0 || d > 500*time.Millisecond {
			t.Fatalf("round %d: the consumer's get took %v (its wake-up went elsewhere)", i, d)
		}
	}
}

func TestUnwatchAndReleaseWhileWatching(t *testing.T) {
	r, fd, err := Create(4096, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for i := 0; i < 50; i++ {
		h, err := Open(fd)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := Lookup(h)
		efd, err := q.Watch()
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			q.Unwatch()
		}
		if err := Release(h); err != nil {
			t.Fatal(err)
		}
		// The goroutine closes the eventfd and the ring is unmapped once
		// it has stopped.
		deadline := time.Now().Add(watchRecheck + 2*time.Second)
		for {
			q.mu.Lock()
			gone := q.unmapped && q.watching == 0
			q.mu.Unlock()
			if gone {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the watch goroutine did not stop")
			}
			time.Sleep(time.Millisecond)
		}
		if _, err := unix.FcntlInt(uintptr(efd), unix.F_GETFD, 0); err == nil {
			// The number may have been reused by now, but not by an eventfd
			// of this test: nothing else opens files here.
			t.Fatalf("eventfd %d still open", efd)
		}
	}
	r.Unmap()
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
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
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
	start := time.Now()
	q.Discard()
	if err := q.Flush(5 * time.Second); err != nil {
		t.Fatalf("Flush after Discard = %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("the feeder took %v to give up", d)
	}
	if q.Pending() != 0 || atomic.LoadInt64(q.r.overflow()) != 0 {
		t.Fatalf("pending %d, overflow count %d", q.Pending(), atomic.LoadInt64(q.r.overflow()))
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
