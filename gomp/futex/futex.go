// Package futex waits on and wakes 32-bit words in memory shared between
// processes (MAP_SHARED mappings). The operations are the kernel's shared
// futexes (no FUTEX_PRIVATE_FLAG), so waiters in different processes that map
// the same page are woken by each other.
//
// It is the Go side's one futex layer, used by the queue rings (gomp/queue);
// the C side's is in pybind/ext/helpers.c, for the locks and for the rings'
// C path (pybind/ext/ring.c), which sleeps and wakes on the same ring words
// with the same protocol (ARCHITECTURE.md, "What lives in C and what in Go").
package futex

import (
	"errors"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	opWait = 0 // FUTEX_WAIT
	opWake = 1 // FUTEX_WAKE
)

// ErrTimeout reports that the wait ended at its deadline.
var ErrTimeout = errors.New("futex wait timed out")

// ErrInterrupted reports that a signal interrupted the wait.
var ErrInterrupted = errors.New("futex wait interrupted")

// Wait blocks while *addr == val, for at most d (d <= 0: does not block).
// It returns nil when woken or when *addr no longer equals val (the caller
// re-checks its condition either way), ErrTimeout when d elapsed, and
// ErrInterrupted when a signal arrived.
func Wait(addr *uint32, val uint32, d time.Duration) error {
	if d <= 0 {
		if atomic.LoadUint32(addr) != val {
			return nil
		}
		return ErrTimeout
	}
	ts := unix.NsecToTimespec(int64(d))
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWait,
		uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
	switch e {
	case 0, unix.EAGAIN:
		return nil
	case unix.ETIMEDOUT:
		return ErrTimeout
	case unix.EINTR:
		return ErrInterrupted
	}
	return e
}

// Wake wakes at most n waiters on addr and returns how many were woken.
func Wake(addr *uint32, n int) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), opWake,
		uintptr(n), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
