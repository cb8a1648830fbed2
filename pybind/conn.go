package main

/*
#include "gompcore.h"
*/
import "C"

import (
	"unsafe"

	"github.com/gomp-dev/gomp/gomp/fdio"
	"github.com/gomp-dev/gomp/pickle/frame"
)

// cBytes views C memory as a byte slice without copying.
func cBytes(p unsafe.Pointer, n int64) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(p), n)
}

// gompcore_write_frame writes one frame (header, then the n bytes at buf).
// *done counts the bytes of header and payload already written.
//
//export gompcore_write_frame
func gompcore_write_frame(fd C.int, buf unsafe.Pointer, n C.int64_t, done *C.int64_t, sliceMs C.int) (ret C.int64_t) {
	defer recoverPanic(&ret)
	var hdr [frame.MaxHeader]byte
	head := frame.AppendHeader(hdr[:0], int64(n))
	d := int64(*done)
	err := fdio.WriteFull(int(fd), head, cBytes(buf, int64(n)), &d, fdio.NewDeadline(int(sliceMs)))
	*done = C.int64_t(d)
	return code(err)
}

// gompcore_read_full reads until the n bytes at buf are filled; *done counts
// the bytes already there.
//
//export gompcore_read_full
func gompcore_read_full(fd C.int, buf unsafe.Pointer, n C.int64_t, done *C.int64_t, sliceMs C.int) (ret C.int64_t) {
	defer recoverPanic(&ret)
	d := int64(*done)
	err := fdio.ReadFull(int(fd), cBytes(buf, int64(n)), &d, fdio.NewDeadline(int(sliceMs)))
	*done = C.int64_t(d)
	return code(err)
}
