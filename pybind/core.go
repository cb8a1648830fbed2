// Command pybind is the Go core library loaded by the extension gomp._gomp
// (pybind/ext/): a thin C ABI over the packages under gomp/ and pickle/.
// "pybind" means the binding to Python; it has nothing to do with pybind11.
// It holds no logic: each export converts arguments, calls a Go package, and
// turns the outcome into a result code (see gompcore.h and ARCHITECTURE.md,
// "The core's C ABI"). Every export recovers panics.
package main

/*
#include "gompcore.h"
static inline const char *gomp_signature(void) { return GOMPCORE_SIGNATURE; }
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
	"unsafe"

	"github.com/gomp-dev/gomp/gomp/fdio"
	"github.com/gomp-dev/gomp/pickle/frame"
	"golang.org/x/sys/unix"
)

func main() {}

// Error texts travel with their result, never through a process-global
// "last error": a failing export files the text under a fresh number and
// returns GOMP_ETEXT minus that number (times two, plus one for a panic), and
// the caller collects it with gompcore_error_text(result). Two threads that
// fail at once get their own texts. Of the texts nobody collects, only the
// errTextSlots most recent are kept.
const errTextSlots = 64

var errTexts struct {
	sync.Mutex
	next  int64
	texts map[int64]string // by number: the texts not collected yet
}

// fileError keeps text for one result and returns that result.
func fileError(text string, panicked bool) C.int64_t {
	errTexts.Lock()
	if errTexts.texts == nil {
		errTexts.texts = make(map[int64]string)
	}
	errTexts.next++
	seq := errTexts.next
	errTexts.texts[seq] = text
	if len(errTexts.texts) > errTextSlots {
		oldest := seq
		for k := range errTexts.texts {
			oldest = min(oldest, k)
		}
		delete(errTexts.texts, oldest)
	}
	errTexts.Unlock()
	n := seq << 1
	if panicked {
		n |= 1
	}
	return C.GOMP_ETEXT - C.int64_t(n)
}

// takeError returns (and forgets) the text filed for result r.
func takeError(r int64) (string, bool) {
	if r > int64(C.GOMP_ETEXT) {
		return "", false
	}
	seq := (int64(C.GOMP_ETEXT) - r) >> 1
	errTexts.Lock()
	defer errTexts.Unlock()
	t, ok := errTexts.texts[seq]
	delete(errTexts.texts, seq)
	return t, ok
}

// code maps a Go error to the result codes of gompcore.h.
func code(err error) C.int64_t {
	var errno unix.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, fdio.ErrAgain):
		return C.GOMP_EAGAIN
	case errors.Is(err, fdio.ErrEOF):
		return C.GOMP_EEOF
	case errors.Is(err, frame.ErrBadLength):
		return C.GOMP_EBADLEN
	case errors.As(err, &errno) && errno > 0 && errno < 4096:
		return -C.int64_t(errno)
	}
	return fileError(err.Error(), false)
}

// recoverPanic turns a panic in an export into a GOMP_ETEXT result (the
// panic's text and stack); deferred by every export that calls into Go
// packages.
func recoverPanic(ret *C.int64_t) {
	if r := recover(); r != nil {
		*ret = fileError(fmt.Sprintf("%v\n%s", r, debug.Stack()), true)
	}
}

// gompcore_abi_signature copies the text of the function list this library
// was built from into buf and returns its length (see gompcore.h).
//
//export gompcore_abi_signature
func gompcore_abi_signature(buf *C.char, capacity C.int64_t) C.int64_t {
	sig := C.GoString(C.gomp_signature())
	if capacity > 0 {
		dst := cBytes(unsafe.Pointer(buf), int64(capacity))
		n := copy(dst[:len(dst)-1], sig)
		dst[n] = 0
	}
	return C.int64_t(len(sig))
}

// gompcore_error_text copies the text of the GOMP_ETEXT result r into buf
// (NUL-terminated, cut to capacity) and forgets it. It returns the text's full
// length, or -1 when there is none (r is not such a result, or its text was
// collected already or dropped).
//
//export gompcore_error_text
func gompcore_error_text(r C.int64_t, buf *C.char, capacity C.int64_t) C.int64_t {
	s, ok := takeError(int64(r))
	if !ok {
		return -1
	}
	if capacity > 0 {
		dst := cBytes(unsafe.Pointer(buf), int64(capacity))
		n := copy(dst[:len(dst)-1], s)
		dst[n] = 0
	}
	return C.int64_t(len(s))
}

// gompcore_selftest exercises the binding from tests: 1 panics, 2 returns a
// plain Go error, 3 does goroutine-, timer- and GC-heavy work (what hangs an
// inherited runtime after fork) and returns a checksum; 1000 and above
// returns the error "selftest error <what>" (tests of concurrent errors).
//
//export gompcore_selftest
func gompcore_selftest(what C.int64_t) (ret C.int64_t) {
	defer recoverPanic(&ret)
	switch what {
	case 1:
		var m map[string]int
		m["boom"] = 1 // assignment to a nil map: a runtime panic
	case 2:
		return code(errors.New("selftest error"))
	case 3:
		return C.int64_t(churn(8, 8<<20))
	}
	if what >= 1000 {
		return code(fmt.Errorf("selftest error %d", int64(what)))
	}
	return 0
}

// churn runs n goroutines that allocate total bytes between them, sleep on
// timers and report over a channel, then forces a garbage collection.
func churn(n, total int) int {
	results := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var keep [][]byte
			sum := 0
			for a := 0; a < total/n; a += 64 << 10 {
				b := make([]byte, 64<<10)
				b[len(b)-1] = byte(i)
				sum += int(b[len(b)-1])
				if a%(1<<20) == 0 {
					keep = append(keep, b)
				}
			}
			time.Sleep(200 * time.Microsecond)
			results <- sum + len(keep)
		}(i)
	}
	wg.Wait()
	close(results)
	total = 0
	for v := range results {
		total += v
	}
	runtime.GC()
	return total
}

// errTextBase is GOMP_ETEXT as a Go value (for tests, which cannot use cgo).
func errTextBase() int64 { return int64(C.GOMP_ETEXT) }
