package main

/*
#include "gompcore.h"
*/
import "C"

import (
	"unsafe"

	"github.com/gomp-dev/gomp/gomp/fdio"
	"github.com/gomp-dev/gomp/pickle/frame"
	"golang.org/x/sys/unix"
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

// gompcore_poll waits until one of the n descriptors is ready, at most
// timeout_ms, and returns how many are; revents receives each one's events.
//
//export gompcore_poll
func gompcore_poll(fds *C.int32_t, events, revents *C.int16_t, n C.int, timeoutMs C.int) (ret C.int64_t) {
	defer recoverPanic(&ret)
	var small [8]unix.PollFd
	pfd := small[:0]
	if int(n) > len(small) {
		pfd = make([]unix.PollFd, 0, int(n))
	}
	cf := unsafe.Slice(fds, int(n))
	ce := unsafe.Slice(events, int(n))
	for i := range cf {
		pfd = append(pfd, unix.PollFd{Fd: int32(cf[i]), Events: int16(ce[i])})
	}
	k, err := fdio.Poll(pfd, fdio.NewDeadline(int(timeoutMs)))
	if err != nil {
		return code(err)
	}
	cr := unsafe.Slice(revents, int(n))
	for i := range pfd {
		cr[i] = C.int16_t(pfd[i].Revents)
	}
	return C.int64_t(k)
}
