package semlock

import (
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// shared maps an anonymous shared page, as the extension does.
func shared(t *testing.T) unsafe.Pointer {
	t.Helper()
	b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return unsafe.Pointer(&b[0])
}

// semRelease is the C side's release (pybind/ext/sync.c), for the tests.
func semRelease(w *uint64) {
	v := atomic.AddUint64(w, 1) - 1
	if v>>32 != 0 {
		SemWake(w, 1)
	}
}

func mutexRelease(w *uint32) {
	if atomic.SwapUint32(w, 0)&WaitersBit != 0 {
		MutexWake(w)
	}
}

func TestSemAcquireTimesOut(t *testing.T) {
	w := (*uint64)(shared(t))
	start := time.Now()
	if err := SemAcquire(w, 30*time.Millisecond); err != ErrAgain {
		t.Fatalf("SemAcquire on 0 = %v, want ErrAgain", err)
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Fatalf("returned after %v, before its time", el)
	}
	if got := atomic.LoadUint64(w); got != 0 {
		t.Fatalf("word after a timed-out wait = %#x, want 0 (waiter count restored)", got)
	}
}

func TestSemAcquireTakesToken(t *testing.T) {
	w := (*uint64)(shared(t))
	atomic.StoreUint64(w, 2)
	for i := 0; i < 2; i++ {
		if err := SemAcquire(w, time.Millisecond); err != nil {
			t.Fatalf("SemAcquire #%d = %v", i, err)
		}
	}
	if SemTryAcquire(w) {
		t.Fatal("SemTryAcquire succeeded on value 0")
	}
}

func TestSemWakesSleeper(t *testing.T) {
	w := (*uint64)(shared(t))
	done := make(chan error)
	go func() { done <- SemAcquire(w, 5*time.Second) }()
	// Wait until the sleeper registered.
	for atomic.LoadUint64(w)>>32 == 0 {
		time.Sleep(time.Millisecond)
	}
	semRelease(w)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("SemAcquire = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("sleeper not woken")
	}
	if got := atomic.LoadUint64(w); got != 0 {
		t.Fatalf("word = %#x, want 0", got)
	}
}

// Every token released is taken exactly once by contending goroutines.
func TestSemContention(t *testing.T) {
	w := (*uint64)(shared(t))
	const workers, per = 8, 2000
	var taken atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < per; j++ {
				for SemAcquire(w, 20*time.Millisecond) != nil {
				}
				taken.Add(1)
			}
		}()
	}
	for i := 0; i < workers*per; i++ {
		semRelease(w)
	}
	wg.Wait()
	if taken.Load() != workers*per || atomic.LoadUint64(w) != 0 {
		t.Fatalf("taken %d, word %#x", taken.Load(), atomic.LoadUint64(w))
	}
}

// A mutex under contention excludes: a plain counter stays exact. The
// counter is in the shared page too: the race detector does not see the
// happens-before edges of atomics on memory outside the Go heap, and does
// not check plain accesses there either.
func TestMutexExclusion(t *testing.T) {
	page := shared(t)
	w := (*uint32)(page)
	const workers, per = 8, 3000
	counter := (*int)(unsafe.Add(page, 64))
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		id := OwnerID(os.Getpid(), 0)
		go func() {
			defer wg.Done()
			for j := 0; j < per; j++ {
				for {
					if atomic.CompareAndSwapUint32(w, 0, id) {
						break
					}
					if _, err := MutexAcquire(w, id, 20*time.Millisecond, false); err == nil {
						break
					}
				}
				*counter++
				mutexRelease(w)
			}
		}()
	}
	wg.Wait()
	if *counter != workers*per {
		t.Fatalf("counter %d, want %d", *counter, workers*per)
	}
	if v := atomic.LoadUint32(w); v != 0 {
		t.Fatalf("word %#x after all released", v)
	}
}

func TestMutexTimesOutWhileHeld(t *testing.T) {
	w := (*uint32)(shared(t))
	self := selfID(t)
	atomic.StoreUint32(w, self)
	start := time.Now()
	dead, err := MutexAcquire(w, self, 25*time.Millisecond, true)
	if err != ErrAgain || dead != 0 {
		t.Fatalf("MutexAcquire on a lock held by a live owner = %d, %v", dead, err)
	}
	if el := time.Since(start); el < 25*time.Millisecond {
		t.Fatalf("returned after %v", el)
	}
	if v := atomic.LoadUint32(w); v != self|WaitersBit {
		t.Fatalf("word %#x, want owner with the waiters bit", v)
	}
}

func selfID(t *testing.T) uint32 {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return OwnerID(os.Getpid(), st.starttime)
}

// deadChild returns the id of a child process that has exited, reaped or
// left a zombie.
func deadChild(t *testing.T, reap bool) uint32 {
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Skip("cannot start /bin/sh:", err)
	}
	pid := cmd.Process.Pid
	st, err := readStat(pid)
	if err != nil {
		// It may have been reaped already? Not without Wait: it is a zombie at worst.
		t.Fatal(err)
	}
	id := OwnerID(pid, st.starttime)
	if reap {
		cmd.Wait()
	} else {
		// Wait until it is a zombie, leave it unreaped until the test ends.
		for i := 0; i < 500; i++ {
			if s, err := readStat(pid); err == nil && s.state == 'Z' {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Cleanup(func() { cmd.Wait() })
	}
	return id
}

func TestAlive(t *testing.T) {
	self := selfID(t)
	if !Alive(self) {
		t.Fatal("this process is not alive")
	}
	if !Alive(NoOwner) {
		t.Fatal("NoOwner must count as alive")
	}
	other := self ^ 1<<pidBits // same pid, another start time: a recycled pid
	if Alive(other) {
		t.Fatal("a pid with another start-time tag must count as dead")
	}
	if Alive(deadChild(t, true)) {
		t.Fatal("a reaped child counts as alive")
	}
	if Alive(deadChild(t, false)) {
		t.Fatal("a zombie counts as alive")
	}
}

func TestMutexTakesOverFromDeadOwner(t *testing.T) {
	w := (*uint32)(shared(t))
	dead := deadChild(t, true)
	atomic.StoreUint32(w, dead|WaitersBit)
	self := selfID(t)
	// Without checkOwner it waits like any waiter.
	if _, err := MutexAcquire(w, self, 5*time.Millisecond, false); err != ErrAgain {
		t.Fatalf("MutexAcquire without checkOwner = %v, want ErrAgain", err)
	}
	got, err := MutexAcquire(w, self, time.Second, true)
	if err != nil || got != dead {
		t.Fatalf("MutexAcquire = %#x, %v; want the dead owner %#x", got, err, dead)
	}
	if v := atomic.LoadUint32(w); v != self|WaitersBit {
		t.Fatalf("word %#x, want self with the waiters bit kept", v)
	}
}

func TestMutexWakesSleeper(t *testing.T) {
	w := (*uint32)(shared(t))
	self := selfID(t)
	atomic.StoreUint32(w, self)
	done := make(chan error)
	go func() {
		_, err := MutexAcquire(w, self, 5*time.Second, true)
		done <- err
	}()
	for atomic.LoadUint32(w)&WaitersBit == 0 {
		time.Sleep(time.Millisecond)
	}
	mutexRelease(w)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("sleeper not woken")
	}
}

func TestOwnerID(t *testing.T) {
	if OwnerID(0, 5) != NoOwner || OwnerID(1<<22, 5) != NoOwner {
		t.Fatal("out-of-range pids must give NoOwner")
	}
	id := OwnerID(1234, 0x3ff)
	if id&pidMask != 1234 || id>>pidBits != 0x1ff || id&WaitersBit != 0 {
		t.Fatalf("OwnerID = %#x", id)
	}
}

func TestParseStat(t *testing.T) {
	line := "42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10\n"
	st, err := parseStat([]byte(line))
	if err != nil || st.state != 'S' || st.starttime != 987654 {
		t.Fatalf("parseStat = %+v, %v", st, err)
	}
	for _, bad := range []string{"", "42 (x", "42 (x) S 1 2", "42 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 notanumber"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Fatalf("parseStat(%q) accepted", bad)
		}
	}
}
