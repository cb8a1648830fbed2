package futex

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sharedWord maps an anonymous shared page, as the package's callers do.
func sharedWord(t *testing.T) *uint32 {
	t.Helper()
	b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return (*uint32)(unsafe.Pointer(&b[0]))
}

func TestWaitTimesOut(t *testing.T) {
	w := sharedWord(t)
	start := time.Now()
	if err := Wait(w, 0, 30*time.Millisecond); err != ErrTimeout {
		t.Fatalf("Wait = %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el < 25*time.Millisecond {
		t.Fatalf("returned after %v, before the timeout", el)
	}
}

func TestWaitValueChanged(t *testing.T) {
	w := sharedWord(t)
	atomic.StoreUint32(w, 1)
	if err := Wait(w, 0, time.Second); err != nil {
		t.Fatalf("Wait on a changed word = %v, want nil", err)
	}
	if err := Wait(w, 0, 0); err != nil {
		t.Fatalf("Wait(0) on a changed word = %v, want nil", err)
	}
	atomic.StoreUint32(w, 0)
	if err := Wait(w, 0, 0); err != ErrTimeout {
		t.Fatalf("Wait(0) on an unchanged word = %v, want ErrTimeout", err)
	}
}

func TestWakeReleasesWaiters(t *testing.T) {
	w := sharedWord(t)
	const n = 4
	var wg sync.WaitGroup
	var woken atomic.Int32
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for atomic.LoadUint32(w) == 0 {
				if err := Wait(w, 0, 5*time.Second); err == ErrTimeout {
					t.Error("waiter timed out")
					return
				}
			}
			woken.Add(1)
		}()
	}
	time.Sleep(20 * time.Millisecond)
	atomic.StoreUint32(w, 1)
	if _, err := Wake(w, n); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if woken.Load() != n {
		t.Fatalf("woken %d of %d", woken.Load(), n)
	}
}
