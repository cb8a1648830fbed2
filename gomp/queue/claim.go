package queue

// # Claims: which consumer holds which task
//
// A pool's task ring is read by its workers, and a worker may be killed at
// any instruction. The pool must then tell whether the worker held a task
// (its result fails with WorkerLostError) or not (another worker runs it).
// A mark that the worker writes after get() returns leaves a window in which
// the task is out of the ring but not marked: lost without a word. So the
// mark is made by the get itself, in the same step that takes the item out
// of the ring:
//
//   - An item put for claiming (a pool task) starts with 16 bytes: the job
//     id and the task's index, little-endian int64s (the rest is the pickle).
//   - A consumer that gets with a claim slot (GetState.Claim = slot + 1)
//     records (job + 1, index) in that slot of the ring's claim table when
//     it moves head past the item (the first fragment of a streamed one).
//     The claim is part of the consumer lock's journal: the journal notes
//     the slot and the pair before head moves, and whoever takes the lock
//     over from a dead holder completes the claim if head had moved (see
//     replayC), exactly as it completes getCount. So at every instant, an
//     item is either still in the ring or claimed.
//   - The consumer clears its slot when it comes for its next item (the
//     result of the previous one was sent by then) or when it exits
//     (TakeClaim of its own slot).
//   - The pool, once a worker has exited, takes the worker's claim with
//     TakeClaim, under the consumer lock (so that a replay of the dead
//     worker's journal cannot come after the look).
//
// A claim that outlives its task (a worker killed after sending the result
// and before its next get) names a task whose result is already in the
// result queue, ahead of any report of the loss: the pool keeps the first
// report of a task.
//
// The claim table lives in the ring's header, after the per-process
// entries: numClaims slots of two words, job + 1 (0: no claim) and index.

import (
	"encoding/binary"
	"sync/atomic"
	"time"
)

const (
	offCJClaim = 320  // the consumer journal's claim slot + 1 (0: none)
	offCJJob   = 328  // its job + 1
	offCJIdx   = 336  // its index
	offClaims  = 1280 // [numClaims][2]uint64: job + 1, index
	claimSize  = 16
	// NumClaims is the number of claim slots of a ring.
	NumClaims = (headerSize - offClaims) / claimSize
)

func (r *Ring) claimWords(slot int) (job, idx *uint64) {
	off := uintptr(offClaims + slot*claimSize)
	return r.u64(off), r.u64(off + 8)
}

// claimOf returns the (job + 1, index) pair that the item whose payload
// starts at pos (n bytes of it in this record) carries, or job 0 if it is too
// short to carry one.
func (r *Ring) claimOf(pos uint64, n uint64) (job, idx uint64) {
	if n < claimSize {
		return 0, 0
	}
	var b [claimSize]byte
	r.readAt(pos, b[:])
	job = binary.LittleEndian.Uint64(b[:8]) + 1
	idx = binary.LittleEndian.Uint64(b[8:])
	return job, idx
}

// consumeClaim is consume for an item taken with a claim slot: the claim
// (job + 1, index) is written into the slot in the same journaled step as
// head (and G when item ends an item). The caller holds the consumer lock.
func (r *Ring) consumeClaim(newHead uint64, item bool, slot int, job, idx uint64) {
	if slot < 0 || slot >= NumClaims || job == 0 {
		r.consume(newHead, item)
		return
	}
	g := atomic.LoadUint64(r.getCount())
	if item {
		g++
	}
	*r.u64(offCJHead) = newHead
	*r.u64(offCJGet) = g
	*r.u64(offCJClaim) = uint64(slot) + 1
	*r.u64(offCJJob) = job
	*r.u64(offCJIdx) = idx
	*r.u32(offCJValid) = 1
	atomic.StoreUint64(r.head(), newHead) // the step that hands the item over
	w, i := r.claimWords(slot)
	atomic.StoreUint64(i, idx)
	atomic.StoreUint64(w, job)
	atomic.StoreUint64(r.getCount(), g)
	*r.u32(offCJValid) = 0
	*r.u64(offCJClaim) = 0
	// Head moved already: consume's store of it again is harmless, and it
	// wakes the producers waiting for room.
	r.consume(newHead, false)
}

// replayClaim completes the claim of a dead consumer whose head store
// happened (replayC calls it with the journal still valid).
func (r *Ring) replayClaim() {
	c := *r.u64(offCJClaim)
	if c == 0 || c > NumClaims {
		return
	}
	w, i := r.claimWords(int(c - 1))
	atomic.StoreUint64(i, *r.u64(offCJIdx))
	atomic.StoreUint64(w, *r.u64(offCJJob))
}

// clearClaim empties this consumer's slot before it takes its next item.
func (r *Ring) clearClaim(slot int) {
	if slot < 0 || slot >= NumClaims {
		return
	}
	w, _ := r.claimWords(slot)
	if atomic.LoadUint64(w) != 0 {
		atomic.StoreUint64(w, 0)
	}
}

// TakeClaim returns and clears the claim in slot: held tells whether there
// was one, job and idx are the task's. It takes the consumer lock (taking it
// over from a dead holder completes that holder's claim first), so call it
// once the slot's consumer is gone, or from that consumer itself. ErrAgain
// when d ends before the lock is free.
func (q *Queue) TakeClaim(slot int, d time.Duration) (held bool, job, idx int64, err error) {
	r := q.r
	if slot < 0 || slot >= NumClaims {
		return false, 0, 0, nil
	}
	dl := newDeadline(d)
	if err := r.lockC(&dl); err != nil {
		return false, 0, 0, err
	}
	w, i := r.claimWords(slot)
	j := atomic.LoadUint64(w)
	x := atomic.LoadUint64(i)
	atomic.StoreUint64(w, 0)
	unlock(r.clock())
	if j == 0 {
		return false, 0, 0, nil
	}
	return true, int64(j - 1), int64(x), nil
}
