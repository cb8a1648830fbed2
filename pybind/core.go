// Command pybind is the Go core library loaded by the extension gomp._gomp:
// a thin C ABI over the packages under gomp/ and pickle/. It holds no logic:
// each export converts arguments, calls a Go package, and turns the outcome
// into a result code (see gompcore.h). Every export recovers panics.
package main

/*
#include "gompcore.h"
static const char *gomp_signature(void) { return GOMPCORE_SIGNATURE; }
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

var (
	lastErrMu sync.Mutex
	lastErr   string
)

func setLastError(s string) {
	lastErrMu.Lock()
	lastErr = s
	lastErrMu.Unlock()
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
	setLastError(err.Error())
	return C.GOMP_EOTHER
}

// recoverPanic turns a panic in an export into GOMP_EPANIC; deferred by every
// export that calls into Go packages.
func recoverPanic(ret *C.int64_t) {
	if r := recover(); r != nil {
		setLastError(fmt.Sprintf("%v\n%s", r, debug.Stack()))
		*ret = C.GOMP_EPANIC
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

// gompcore_last_error copies the text of the last GOMP_EPANIC or GOMP_EOTHER
// into buf and returns its full length.
//
//export gompcore_last_error
func gompcore_last_error(buf *C.char, capacity C.int64_t) C.int64_t {
	lastErrMu.Lock()
	s := lastErr
	lastErrMu.Unlock()
	if capacity > 0 {
		dst := cBytes(unsafe.Pointer(buf), int64(capacity))
		n := copy(dst[:len(dst)-1], s)
		dst[n] = 0
	}
	return C.int64_t(len(s))
}

// gompcore_selftest exercises the binding from tests: 1 panics, 2 returns a
// plain Go error, 3 does goroutine-, timer- and GC-heavy work (what hangs an
// inherited runtime after fork) and returns a checksum.
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
