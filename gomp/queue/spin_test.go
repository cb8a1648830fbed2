package queue

import (
	"testing"
	"time"
)

// The spin's rules (spin.go), checked on one view of a ring: which waits
// open a window, what the penalty does, and that an item published during a
// window ends it. Nothing here measures speed.

func TestAnIdleConsumerDoesNotSpin(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, 0)
	r := q.Ring()
	lastPut.Store(monoNow() - 2*spinNs)
	w0, _ := SpinStats()
	if r.spinForData(0, false, time.Second) {
		t.Fatal("an empty ring reported an item")
	}
	if w, _ := SpinStats(); w != w0 {
		t.Fatalf("an idle consumer opened %d windows", w-w0)
	}
}

func TestWindowsThatRunOutDoubleThePenalty(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, 0)
	r := q.Ring()
	w0, _ := SpinStats()
	opened := 0
	// 40 waits, each right after this process put an item, on a ring
	// that stays empty: windows at waits 1, 3, 6, 11, 20, 37 (each one that
	// runs out doubles how many of the next waits sleep at once).
	for range 40 {
		lastPut.Store(monoNow())
		w, _ := SpinStats()
		r.spinForData(0, false, time.Second)
		if w2, _ := SpinStats(); w2 != w {
			opened++
		}
	}
	if opened != 6 {
		t.Fatalf("40 waits opened %d windows, want 6", opened)
	}
	if p := r.spin.penalty.Load(); p != 32 {
		t.Fatalf("penalty %d after 6 windows that ran out, want 32", p)
	}
	if w, _ := SpinStats(); w-w0 != 6 {
		t.Fatalf("SpinStats counted %d windows, want 6", w-w0)
	}
	// The penalty stops at maxPenalty.
	for range 1000 {
		lastPut.Store(monoNow())
		r.spinForData(0, false, time.Second)
	}
	if p := r.spin.penalty.Load(); p != maxPenalty {
		t.Fatalf("penalty %d, want it capped at %d", p, maxPenalty)
	}
}

func TestAnItemDuringTheWindowEndsItAndHalvesThePenalty(t *testing.T) {
	q, fd := newTestQueue(t, 4096, 0, 0)
	r := q.Ring()
	producer := attach(t, fd)
	r.spin.penalty.Store(8)
	w0, h0 := SpinStats()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Put once the consumer is inside a window (a put before it would
		// be seen before any window opens, which proves nothing).
		for w, _ := SpinStats(); w == w0; w, _ = SpinStats() {
			time.Sleep(time.Microsecond)
		}
		put(t, producer, []byte("x"))
	}()
	var got bool
	var before, after int32
	deadline := time.Now().Add(hangGuard)
	for !got && time.Now().Before(deadline) {
		// A window lasts at most spinNs and the producer is scheduled by
		// the machine: open windows (no waits skipped) until its item comes.
		r.spin.skip.Store(0)
		lastPut.Store(monoNow())
		before = r.spin.penalty.Load()
		got = r.spinForData(0, false, time.Second)
		after = r.spin.penalty.Load()
	}
	<-done
	if !got {
		t.Fatal("the item never came during a window")
	}
	if _, h := SpinStats(); h-h0 != 1 {
		t.Fatalf("%d hits counted, want 1", h-h0)
	}
	if after != before/2 || r.spin.skip.Load() != after {
		t.Fatalf("penalty %d -> %d (skip %d) after a window that paid, want it halved", before, after, r.spin.skip.Load())
	}
	if b := mustGet(t, q, time.Second); string(b) != "x" {
		t.Fatalf("got %q", b)
	}
}
