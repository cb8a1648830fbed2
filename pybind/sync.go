package main

/*
#include "gompcore.h"
*/
import "C"

import (
	"errors"
	"time"
	"unsafe"

	"github.com/gomp-dev/gomp/gomp/semlock"
)

// The slow paths of the semaphores and locks of pybind/ext/sync.c (see
// gomp/semlock for the word protocols). Words are addresses inside shared
// mappings that the extension owns and keeps mapped during each call.

func syncCode(err error) C.int64_t {
	if errors.Is(err, semlock.ErrAgain) {
		return C.GOMP_EAGAIN
	}
	return code(err)
}

func sliceDur(us C.int64_t) time.Duration { return time.Duration(us) * time.Microsecond }

// gompcore_sem_wait waits at most slice_us microseconds for a token of the
// counting semaphore word: 0 when taken, GOMP_EAGAIN when the slice ended.
// (Microseconds, not the milliseconds of other slices: the caller cuts the
// last slice to its deadline exactly.)
//
//export gompcore_sem_wait
func gompcore_sem_wait(word *C.uint64_t, sliceUs C.int64_t) (ret C.int64_t) {
	defer recoverPanic(&ret)
	return syncCode(semlock.SemAcquire((*uint64)(unsafe.Pointer(word)), sliceDur(sliceUs)))
}

// gompcore_sem_wake wakes at most n sleepers of the semaphore word.
//
//export gompcore_sem_wake
func gompcore_sem_wake(word *C.uint64_t, n C.int) (ret C.int64_t) {
	defer recoverPanic(&ret)
	k, err := semlock.SemWake((*uint64)(unsafe.Pointer(word)), int(n))
	if err != nil {
		return syncCode(err)
	}
	return C.int64_t(k)
}

// gompcore_mutex_wait waits at most slice_us microseconds for the
// owner-tracked mutex word and takes it for id. It returns 0 when taken, the id of the previous owner
// (> 0) when that owner was found dead and the lock taken over (only with
// check_owner), or GOMP_EAGAIN when the slice ended.
//
//export gompcore_mutex_wait
func gompcore_mutex_wait(word *C.uint32_t, id C.uint32_t, checkOwner C.int, sliceUs C.int64_t) (ret C.int64_t) {
	defer recoverPanic(&ret)
	dead, err := semlock.MutexAcquire((*uint32)(unsafe.Pointer(word)), uint32(id), sliceDur(sliceUs),
		checkOwner != 0)
	if err != nil {
		return syncCode(err)
	}
	return C.int64_t(dead)
}

// gompcore_mutex_wake wakes one sleeper of the mutex word.
//
//export gompcore_mutex_wake
func gompcore_mutex_wake(word *C.uint32_t) (ret C.int64_t) {
	defer recoverPanic(&ret)
	k, err := semlock.MutexWake((*uint32)(unsafe.Pointer(word)))
	if err != nil {
		return syncCode(err)
	}
	return C.int64_t(k)
}

// gompcore_owner_alive reports (1 or 0) whether the owner id may be running.
//
//export gompcore_owner_alive
func gompcore_owner_alive(id C.uint32_t) (ret C.int64_t) {
	defer recoverPanic(&ret)
	if semlock.Alive(uint32(id)) {
		return 1
	}
	return 0
}
