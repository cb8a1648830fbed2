package queue

import (
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gomp-dev/gomp/gomp/futex"
	"github.com/gomp-dev/gomp/gomp/owner"
)

// ErrAgain reports that the caller's slice (or deadline) ended first; the
// operation's progress is in its state and the next call resumes it.
var ErrAgain = errors.New("queue: slice ended")

const (
	lockWaiters = 1 << 31
	lockPidMask = lockWaiters - 1
	// How long a lock waiter sleeps before it checks that the owner lives.
	ownerCheckEvery = 10 * time.Millisecond
	spinTries       = 64
)

var lastQuickCheck atomic.Int64

const quickCheckEvery = 2 * time.Millisecond

// myPid is the lock owner id of this process. The Go runtime (and so this
// variable) is new in every process: a forked child loads a fresh copy.
var myPid = uint32(os.Getpid())

// SetPidForTest replaces the owner id (tests simulate other processes).
func SetPidForTest(pid uint32) (restore func()) {
	old := myPid
	myPid = pid
	return func() { myPid = old }
}

// deadline is the end of a caller's slice. The clock is read only once a
// wait is needed: the operations that complete at once never read it.
type deadline struct {
	d     time.Duration // < 0: no end
	end   time.Time
	timed bool         // end is set
	stop  *atomic.Bool // if set and true, the deadline has passed
}

func newDeadline(d time.Duration) deadline { return deadline{d: d} }

// left is the time remaining (0 once passed); for an infinite deadline, a
// long time.
func (d *deadline) left() time.Duration {
	if d.stop != nil && d.stop.Load() {
		return 0
	}
	if d.d < 0 {
		return time.Hour
	}
	if d.d == 0 {
		return 0
	}
	if !d.timed {
		d.end = time.Now().Add(d.d)
		d.timed = true
		return d.d
	}
	l := time.Until(d.end)
	if l < 0 {
		return 0
	}
	return l
}

// myTag identifies this process as a lock owner beyond its pid: its owner
// id (gomp/owner: the pid and the low bits of its start time), so that a
// recycled pid is not taken for the owner that died (see ownerAlive).
var myTag = uint64(owner.Self())

// Each lock word has a 64-bit owner tag 16 bytes after it (see the layout in
// ring.go): the owner's id (gomp/owner), set by the owner after taking the
// lock and cleared before releasing it. The lock word itself holds the pid
// only (with the waiters bit), so that tests can pose as another pid.
func tagOf(w *uint32) *uint64 {
	return (*uint64)(unsafe.Pointer(uintptr(unsafe.Pointer(w)) + 16))
}

// ownerAlive tells whether the owner pid of lock word w lives: the process
// exists, is not a zombie, and, when its tag is there, is the process that
// took the lock (else the pid was recycled after the owner died).
func ownerAlive(w *uint32, pid uint32) bool {
	if pid == 0 || pid == myPid {
		return true
	}
	if w != nil {
		if tag := uint32(atomic.LoadUint64(tagOf(w))); tag != 0 && tag&owner.PidMask == pid {
			return owner.Alive(tag)
		}
	}
	return owner.PidAlive(int(pid))
}

// pidAlive tells whether process pid exists and is not a zombie.
func pidAlive(pid uint32) bool { return ownerAlive(nil, pid) }

// tryLock takes the lock if it is free, spinning briefly. It does not steal.
func tryLock(w *uint32) bool {
	for i := 0; i < spinTries; i++ {
		v := atomic.LoadUint32(w)
		if v == 0 {
			if atomic.CompareAndSwapUint32(w, 0, myPid) {
				atomic.StoreUint64(tagOf(w), myTag)
				return true
			}
			continue
		}
		if i >= 8 {
			runtime.Gosched()
		}
	}
	return false
}

// stealIfDead takes the lock when its owner is dead; true when taken.
func stealIfDead(w *uint32) bool {
	v := atomic.LoadUint32(w)
	if v == 0 || ownerAlive(w, v&lockPidMask) {
		return false
	}
	if !atomic.CompareAndSwapUint32(w, v, myPid|lockWaiters) {
		return false
	}
	atomic.StoreUint64(tagOf(w), myTag)
	return true
}

// lock takes the lock word w before d ends. It returns stolen=true when the
// lock was taken over from a dead owner (the caller repairs what the owner
// may have left half done), or ErrAgain at the end of the slice.
func lock(w *uint32, d *deadline) (stolen bool, err error) {
	if tryLock(w) {
		return false, nil
	}
	for {
		v := atomic.LoadUint32(w)
		if v == 0 {
			// Taken after contention: keep the waiters bit, there may be others.
			if atomic.CompareAndSwapUint32(w, 0, myPid|lockWaiters) {
				atomic.StoreUint64(tagOf(w), myTag)
				return false, nil
			}
			continue
		}
		left := d.left()
		if left <= 0 {
			// A caller that does not wait (get_nowait) still gets a dead
			// owner's lock, but checks at most every few ms.
			now := time.Now().UnixNano()
			last := lastQuickCheck.Load()
			if now-last > int64(quickCheckEvery) && lastQuickCheck.CompareAndSwap(last, now) &&
				stealIfDead(w) {
				return true, nil
			}
			return false, ErrAgain
		}
		if v&lockWaiters == 0 {
			if !atomic.CompareAndSwapUint32(w, v, v|lockWaiters) {
				continue
			}
			v |= lockWaiters
		}
		if left > ownerCheckEvery {
			left = ownerCheckEvery
		}
		if futex.Wait(w, v, left) == futex.ErrTimeout && stealIfDead(w) {
			return true, nil
		}
	}
}

func unlock(w *uint32) {
	atomic.StoreUint64(tagOf(w), 0)
	if atomic.SwapUint32(w, 0)&lockWaiters != 0 {
		futex.Wake(w, 1)
	}
}
