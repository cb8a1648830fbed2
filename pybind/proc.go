package main

/*
#include "gompcore.h"
*/
import "C"

import (
	"errors"
	"time"

	"github.com/gomp-dev/gomp/gomp/proc"
	"golang.org/x/sys/unix"
)

var reaper = proc.NewReaper()

// gompcore_proc_watch puts the child pid (with its pidfd) under the reaper
// and returns a token for proc_wait.
//
//export gompcore_proc_watch
func gompcore_proc_watch(pid, pidfd C.int) (ret C.int64_t) {
	defer recoverPanic(&ret)
	tok, err := reaper.Watch(int(pid), int(pidfd))
	if err != nil {
		return code(err)
	}
	return C.int64_t(tok)
}

// gompcore_proc_wait stores the exit status of the child of tok in *status
// (GOMP_STATUS_LOST if other code reaped it) and returns 0, or GOMP_EAGAIN if
// it is still running after slice_ms.
//
//export gompcore_proc_wait
func gompcore_proc_wait(tok C.int64_t, status *C.int64_t, sliceMs C.int) (ret C.int64_t) {
	defer recoverPanic(&ret)
	var deadline time.Time
	if sliceMs > 0 {
		deadline = time.Now().Add(time.Duration(sliceMs) * time.Millisecond)
	}
	st, err := reaper.Wait(int64(tok), deadline)
	switch {
	case errors.Is(err, proc.ErrTimeout):
		return C.GOMP_EAGAIN
	case errors.Is(err, proc.ErrUnknown):
		return code(unix.ECHILD)
	case err != nil:
		return code(err)
	}
	if st == proc.Lost {
		*status = C.GOMP_STATUS_LOST
	} else {
		*status = C.int64_t(st)
	}
	return 0
}

// gompcore_proc_forget releases tok (the child is still reaped if running).
//
//export gompcore_proc_forget
func gompcore_proc_forget(tok C.int64_t) (ret C.int64_t) {
	defer recoverPanic(&ret)
	reaper.Forget(int64(tok))
	return 0
}
