package queue

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"
)

// task is a pool task as _put_task writes it: the claim header, then the body.
func task(job, idx int64, body string) []byte {
	b := make([]byte, claimSize, claimSize+len(body))
	binary.LittleEndian.PutUint64(b, uint64(job))
	binary.LittleEndian.PutUint64(b[8:], uint64(idx))
	return append(b, body...)
}

func getClaimed(t *testing.T, q *Queue, slot int) []byte {
	t.Helper()
	buf := make([]byte, 1<<16)
	st := GetState{Claim: int64(slot) + 1}
	n, err := q.Get(buf, &st, hangGuard)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func takeClaim(t *testing.T, q *Queue, slot int) (bool, int64, int64) {
	t.Helper()
	held, job, idx, err := q.TakeClaim(slot, hangGuard)
	if err != nil {
		t.Fatal(err)
	}
	return held, job, idx
}

func TestClaimIsMadeByTheGet(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, 0)
	write(t, q, task(7, 3, "body"))
	write(t, q, task(-1, 0, "end")) // never claimed
	if held, _, _ := takeClaim(t, q, 5); held {
		t.Fatal("claim before the get")
	}
	if b := getClaimed(t, q, 5); string(b[claimSize:]) != "body" {
		t.Fatalf("got %q", b)
	}
	// Twice: TakeClaim empties the slot.
	if held, job, idx := takeClaim(t, q, 5); !held || job != 7 || idx != 3 {
		t.Fatalf("claim = %v %d %d", held, job, idx)
	}
	if held, _, _ := takeClaim(t, q, 5); held {
		t.Fatal("claim taken twice")
	}
	write(t, q, task(8, 1, "x"))
	getClaimed(t, q, 5) // the end item
	if held, _, _ := takeClaim(t, q, 5); held {
		t.Fatal("the end item was claimed")
	}
	getClaimed(t, q, 5)
	// The next get clears the slot before it takes an item.
	buf := make([]byte, 64)
	st := GetState{Claim: 6}
	if _, err := q.Get(buf, &st, time.Millisecond); err != ErrAgain {
		t.Fatal(err)
	}
	if held, _, _ := takeClaim(t, q, 5); held {
		t.Fatal("the slot was not cleared by the next get")
	}
	if NumClaims != 176 {
		t.Fatalf("NumClaims = %d: change NUM_CLAIMS in pybind/ext/queue.c too", NumClaims)
	}
}

// A consumer killed after it moved head and before it wrote its claim: the
// journal completes the claim for whoever takes the lock over.
func TestClaimOfAConsumerKilledMidGetIsReplayed(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, 0)
	r := q.r
	write(t, q, task(4, 9, "lost"))
	head := atomic.LoadUint64(r.head())
	n, _ := r.header(head)
	newHead := head + recordSize(uint64(n))
	atomic.StoreUint32(r.clock(), deadPid(t))
	*r.u64(offCJHead) = newHead
	*r.u64(offCJGet) = atomic.LoadUint64(r.getCount()) + 1
	*r.u64(offCJClaim) = 3
	*r.u64(offCJJob) = 5
	*r.u64(offCJIdx) = 9
	*r.u32(offCJValid) = 1
	atomic.StoreUint64(r.head(), newHead) // killed here
	if held, job, idx := takeClaim(t, q, 2); !held || job != 4 || idx != 9 {
		t.Fatalf("claim = %v %d %d", held, job, idx)
	}
	if r.count() != 0 {
		t.Fatalf("count = %d", r.count())
	}
}

// Killed before head moved: the item stays in the ring, unclaimed, and the
// stale journal does not claim the next get's item for the dead consumer.
func TestClaimOfAConsumerKilledBeforeTheStepIsNotMade(t *testing.T) {
	q, _ := newTestQueue(t, 4096, 0, 0)
	r := q.r
	write(t, q, task(4, 9, "kept"))
	atomic.StoreUint32(r.clock(), deadPid(t))
	*r.u64(offCJHead) = atomic.LoadUint64(r.head()) + 64
	*r.u64(offCJClaim) = 3
	*r.u64(offCJJob) = 5
	*r.u64(offCJIdx) = 9
	*r.u32(offCJValid) = 1
	if held, _, _ := takeClaim(t, q, 2); held {
		t.Fatal("claimed an item still in the ring")
	}
	if b := getClaimed(t, q, 0); string(b[claimSize:]) != "kept" {
		t.Fatalf("got %q", b)
	}
	if held, _, _ := takeClaim(t, q, 2); held {
		t.Fatal("a stale journal claimed for the dead consumer")
	}
	if held, job, _ := takeClaim(t, q, 0); !held || job != 4 {
		t.Fatal("the live consumer's claim is missing")
	}
}
