package main

/*
#include "gompcore.h"
*/
import "C"

import "github.com/gomp-dev/gomp/gomp/owner"

// The Go part of the locks of pybind/ext/sync.c: whether the owner of a lock
// is still alive (gomp/owner). Everything else about the locks is C (see
// ARCHITECTURE.md, "What lives in C and what in Go").

// gompcore_owner_alive reports (1 or 0) whether the lock owner id may still
// be running.
//
//export gompcore_owner_alive
func gompcore_owner_alive(id C.uint32_t) (ret C.int64_t) {
	defer recoverPanic(&ret)
	if owner.Alive(uint32(id)) {
		return 1
	}
	return 0
}
