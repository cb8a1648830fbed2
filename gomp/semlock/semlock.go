// Package semlock holds the slow paths of gomp's semaphores and locks, whose
// state is a word in memory shared between processes (a MAP_SHARED mapping
// that the extension gomp._gomp makes and owns).
//
// The fast paths (an uncontended acquire or release: one atomic operation on
// the word) run in C in the extension, because a call from C into Go costs
// more than the whole uncontended operation. This package does what may wait:
// sleeping on the word (futex), waking sleepers, and deciding whether the
// owner of a lock is dead. (The shared regions themselves, anonymous or named
// files, are made and mapped by the extension, so that a process that never
// waits never loads the Go runtime.)
//
// Two protocols share the futex word format with the C side; both sides must
// agree on them exactly:
//
// Counting semaphore (64-bit word, naturally aligned): the low 32 bits hold
// the value (0..2^31-1), the high 32 bits the number of processes/threads
// registered as sleeping on it. An acquirer takes a token with a CAS that
// decrements the value; a sleeper first adds 1<<32, then sleeps on the low
// half (futex compare value 0). A releaser increments the value with a CAS
// and, if the waiter count it replaced was not zero, wakes one sleeper. A
// sleeper killed while registered leaves the count raised: later releases
// then make a needless wake call (glibc's semaphores share that trait); the
// state stays correct.
//
// Owner-tracked mutex (32-bit word): 0 is free; otherwise bits 0..30 are the
// owner id (see OwnerID) and bit 31 (WaitersBit) says that someone may sleep
// on the word. Acquire is CAS 0 -> id. Release swaps in 0 and wakes one
// sleeper if WaitersBit was set. A sleeper sets WaitersBit before sleeping
// and, once it gets the lock, keeps the bit set (it cannot know whether it
// was the last sleeper), as in Drepper's "Futexes Are Tricky" (mutex 2). An
// owner id names a process (pid plus a tag of its start time), so a waiter
// can find out that the owner died holding the lock and take it over
// (MutexAcquire with checkOwner).
package semlock

import (
	"errors"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gomp-dev/gomp/gomp/futex"
)

// ErrAgain reports that a wait ended (its time was up, or a signal arrived)
// without the semaphore or lock: the caller checks signals and its deadline,
// then calls again.
var ErrAgain = errors.New("semlock: wait slice ended")

const (
	// WaitersBit in a mutex word: a process may be sleeping on the word.
	WaitersBit = 1 << 31
	// OwnerMask selects the owner id of a mutex word.
	OwnerMask = WaitersBit - 1

	semValueMask = 1<<32 - 1
	semWaiter    = 1 << 32
)

// lowHalf is the address of the low 32 bits (the value, the futex word) of a
// semaphore word. gomp runs on little-endian Linux (amd64, arm64), where the
// low half comes first; a big-endian port would add 4 here.
func lowHalf(w *uint64) *uint32 { return (*uint32)(unsafe.Pointer(w)) }

// SemTryAcquire takes one token if the value is positive.
func SemTryAcquire(w *uint64) bool {
	for {
		v := atomic.LoadUint64(w)
		if v&semValueMask == 0 {
			return false
		}
		if atomic.CompareAndSwapUint64(w, v, v-1) {
			return true
		}
	}
}

// SemAcquire waits at most d for a token of the semaphore at w. It returns
// nil with the token taken, or ErrAgain. Between its checks it sleeps on the
// futex, registered in the waiter count only while it may sleep.
func SemAcquire(w *uint64, d time.Duration) error {
	if SemTryAcquire(w) || spin(func() bool { return SemTryAcquire(w) }) {
		return nil
	}
	deadline := time.Now().Add(d)
	atomic.AddUint64(w, semWaiter)
	for {
		v := atomic.LoadUint64(w)
		if v&semValueMask != 0 {
			// Take the token and leave the waiter count in one step.
			if atomic.CompareAndSwapUint64(w, v, v-1-semWaiter) {
				return nil
			}
			continue
		}
		rem := time.Until(deadline)
		if rem <= 0 {
			break
		}
		if err := futex.Wait(lowHalf(w), 0, rem); err == futex.ErrInterrupted {
			break
		} else if err != nil && err != futex.ErrTimeout {
			atomic.AddUint64(w, ^uint64(semWaiter-1))
			return err
		}
	}
	atomic.AddUint64(w, ^uint64(semWaiter-1))
	return ErrAgain
}

// SemWake wakes at most n sleepers of the semaphore at w.
func SemWake(w *uint64, n int) (int, error) {
	return futex.Wake(lowHalf(w), n)
}

// MutexAcquire waits at most d for the mutex at w and takes it for id. With
// checkOwner, an owner found dead (see Alive) is replaced by id: the result
// is then the dead owner's id, otherwise 0. It returns ErrAgain when d
// elapsed first.
func MutexAcquire(w *uint32, id uint32, d time.Duration, checkOwner bool) (uint32, error) {
	try := func() bool { return atomic.LoadUint32(w) == 0 && atomic.CompareAndSwapUint32(w, 0, id) }
	if try() || spin(try) {
		return 0, nil
	}
	deadline := time.Now().Add(d)
	checked := !checkOwner
	for {
		v := atomic.LoadUint32(w)
		if v&OwnerMask == 0 {
			// Free: take it, keeping the waiters bit (others may sleep).
			if atomic.CompareAndSwapUint32(w, v, id|WaitersBit) {
				return 0, nil
			}
			continue
		}
		if !checked {
			checked = true
			if owner := v & OwnerMask; !Alive(owner) {
				if atomic.CompareAndSwapUint32(w, v, id|v&WaitersBit) {
					return owner, nil
				}
				continue
			}
		}
		if v&WaitersBit == 0 && !atomic.CompareAndSwapUint32(w, v, v|WaitersBit) {
			continue
		}
		rem := time.Until(deadline)
		if rem <= 0 {
			return 0, ErrAgain
		}
		switch err := futex.Wait(w, v|WaitersBit, rem); err {
		case nil, futex.ErrTimeout:
		case futex.ErrInterrupted:
			return 0, ErrAgain
		default:
			return 0, err
		}
	}
}

// MutexWake wakes one sleeper of the mutex at w (called by a releaser that
// swapped out a word with WaitersBit set).
func MutexWake(w *uint32) (int, error) {
	return futex.Wake(w, 1)
}

// spinRounds bounds the busy wait (atomic loads, well under a microsecond)
// before sleeping. Measured with two processes contending for a Lock
// (tests_py/bench/bench_sync.py, 2-core VM under load, 21 interleaved
// rounds): 0, 30 and 100 rounds were within noise of each other (median
// 561, 507, 521 ns per pair; stdlib 702), 1000 rounds were worse (609), as
// spinning then takes CPU time from the holder. A short spin is kept: it
// saves a sleep and a wake-up when the holder is about to release.
const spinRounds = 100

func spin(try func() bool) bool {
	for i := 0; i < spinRounds; i++ {
		if try() {
			return true
		}
	}
	return false
}
