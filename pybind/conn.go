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

// gompcore_read_header reads a frame header and returns the payload size.
//
//export gompcore_read_header
func gompcore_read_header(fd C.int, st *C.gomp_hdr, sliceMs C.int) (ret C.int64_t) {
	defer recoverPanic(&ret)
	var h fdio.Header
	h.Got = int64(st.got)
	copy(h.Buf[:], cBytes(unsafe.Pointer(&st.buf[0]), frame.MaxHeader))
	size, err := fdio.ReadHeader(int(fd), &h, fdio.NewDeadline(int(sliceMs)))
	st.got = C.int64_t(h.Got)
	copy(cBytes(unsafe.Pointer(&st.buf[0]), frame.MaxHeader), h.Buf[:])
	if err != nil {
		return code(err)
	}
	return C.int64_t(size)
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
