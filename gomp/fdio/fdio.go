// Package fdio moves bytes through file descriptors that other processes may
// share (pipes, sockets, files), without ever changing the descriptor's
// O_NONBLOCK flag, which lives in the open file description and would leak to
// every process holding it.
//
// Each operation first tries the transfer without blocking (preadv2/pwritev2
// with RWF_NOWAIT, honoured by pipes and sockets) and otherwise waits with
// poll(2) for at most one slice. Callers keep the progress (done counters,
// header state) between calls, so an operation interrupted at the end of a
// slice resumes where it stopped. That lets the binding drop back to Python
// between slices to run signal handlers (Ctrl-C) without losing bytes.
package fdio

import (
	"errors"
	"time"
	"unsafe"

	"github.com/gomp-dev/gomp/pickle/frame"
	"golang.org/x/sys/unix"
)

// ErrAgain reports that the slice elapsed, or a signal interrupted the wait,
// before the operation completed. The caller checks for signals and calls
// again with the same progress state.
var ErrAgain = errors.New("operation not complete yet")

// ErrEOF reports that the peer closed its end: a read returned 0 bytes.
var ErrEOF = errors.New("end of file")

// noWaitUnsupported reports whether a preadv2/pwritev2 failed with e because
// RWF_NOWAIT is not supported: EOPNOTSUPP (ttys, some character devices) and
// EINVAL (kernels before 4.14) mean the descriptor needs poll followed by a
// plain read or write.
func noWaitUnsupported(e unix.Errno) bool { return e == unix.EOPNOTSUPP || e == unix.EINVAL }

// readNoWait reads into p without blocking. It returns unix.EAGAIN when no
// byte is available, and EOPNOTSUPP or EINVAL when RWF_NOWAIT is not
// supported (see noWaitUnsupported).
func readNoWait(fd int, p []byte) (int, error) {
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	n, _, e := unix.Syscall6(unix.SYS_PREADV2, uintptr(fd), uintptr(unsafe.Pointer(&iov)), 1,
		^uintptr(0), ^uintptr(0), unix.RWF_NOWAIT)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func readBlocking(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Read(fd, p)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// writeNoWait writes the unsent part of a and then b without blocking.
func writeNoWait(fd int, a, b []byte) (int, error) {
	var iov [2]unix.Iovec
	cnt := 0
	for _, p := range [2][]byte{a, b} {
		if len(p) > 0 {
			iov[cnt].Base = &p[0]
			iov[cnt].SetLen(len(p))
			cnt++
		}
	}
	n, _, e := unix.Syscall6(unix.SYS_PWRITEV2, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(cnt),
		^uintptr(0), ^uintptr(0), unix.RWF_NOWAIT)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func writeBlocking(fd int, a, b []byte) (int, error) {
	p := a
	if len(p) == 0 {
		p = b
	}
	for {
		n, err := unix.Write(fd, p)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// Deadline is the end of the current slice. The zero Deadline means "do not
// wait at all": only what the kernel can do immediately is done.
type Deadline struct{ t time.Time }

// NewDeadline returns the deadline that ends ms milliseconds from now
// (ms <= 0: do not wait).
func NewDeadline(ms int) Deadline {
	if ms <= 0 {
		return Deadline{}
	}
	return Deadline{time.Now().Add(time.Duration(ms) * time.Millisecond)}
}

// remainingMs is the poll timeout left in the slice, 0 once it has passed.
func (d Deadline) remainingMs() int {
	if d.t.IsZero() {
		return 0
	}
	r := time.Until(d.t)
	if r <= 0 {
		return 0
	}
	return int((r + time.Millisecond - 1) / time.Millisecond)
}

// wait polls fd for events until the slice ends. It returns nil when fd is
// ready (or in an error/hang-up state that the next transfer will report),
// ErrAgain when the slice ended or a signal arrived.
func wait(fd int, events int16, d Deadline) error {
	ms := d.remainingMs()
	if ms == 0 {
		return ErrAgain
	}
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := unix.Poll(fds[:], ms)
	switch {
	case err == unix.EINTR:
		return ErrAgain
	case err != nil:
		return err
	case n == 0:
		return ErrAgain
	case fds[0].Revents&unix.POLLNVAL != 0:
		return unix.EBADF
	}
	return nil
}

// mayBlockWhenReady reports whether fd is a regular file or block device:
// poll(2) always calls those ready, while RWF_NOWAIT still refuses a transfer
// that has to wait for the disk, so they need a blocking transfer instead.
func mayBlockWhenReady(fd int) bool {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return false
	}
	m := st.Mode & unix.S_IFMT
	return m == unix.S_IFREG || m == unix.S_IFBLK
}

// transfer is the loop of ReadFull and WriteFull: step moves bytes from
// position *done (without blocking, or with blocking after a poll where
// RWF_NOWAIT does not apply), and the loop waits for events on fd between
// attempts until total bytes are done. With eof, a step that moves 0 bytes
// means the peer closed its end.
func transfer(fd int, events int16, total int64, done *int64, d Deadline, eof bool,
	step func(blocking bool) (int, error)) error {
	ready := false
	for *done < total {
		n, err := step(false)
		if e, ok := err.(unix.Errno); ok && (noWaitUnsupported(e) || (e == unix.EAGAIN && ready && mayBlockWhenReady(fd))) {
			if err = wait(fd, events, d); err != nil {
				return err
			}
			n, err = step(true)
		}
		switch {
		case err == unix.EAGAIN:
			if err = wait(fd, events, d); err != nil {
				return err
			}
			ready = true
		case err == unix.EINTR:
			return ErrAgain
		case err != nil:
			return err
		case n == 0 && eof:
			return ErrEOF
		default:
			*done += int64(n)
			ready = false
		}
	}
	return nil
}

// ReadFull reads into p[*done:] until p is full. *done is advanced by every
// byte read, also when an error is returned.
func ReadFull(fd int, p []byte, done *int64, d Deadline) error {
	return transfer(fd, unix.POLLIN, int64(len(p)), done, d, true, func(blocking bool) (int, error) {
		if blocking {
			return readBlocking(fd, p[*done:])
		}
		return readNoWait(fd, p[*done:])
	})
}

// Header is the progress of reading a frame header.
type Header struct {
	Buf [frame.MaxHeader]byte
	Got int64
}

// ReadHeader reads a frame header and returns the announced payload size.
// Like ReadFull it can be resumed after ErrAgain.
func ReadHeader(fd int, h *Header, d Deadline) (int64, error) {
	for {
		size, need, err := frame.ParseHeader(h.Buf[:h.Got])
		if err != nil || need == 0 {
			return size, err
		}
		if err := ReadFull(fd, h.Buf[:need], &h.Got, d); err != nil {
			return 0, err
		}
	}
}

// WriteFull writes head and then body, starting after the first *done bytes
// of the two together, until both are written.
func WriteFull(fd int, head, body []byte, done *int64, d Deadline) error {
	total := int64(len(head) + len(body))
	return transfer(fd, unix.POLLOUT, total, done, d, false, func(blocking bool) (int, error) {
		a, b := head, body
		if *done < int64(len(a)) {
			a = a[*done:]
		} else {
			a, b = nil, b[*done-int64(len(head)):]
		}
		if blocking {
			return writeBlocking(fd, a, b)
		}
		return writeNoWait(fd, a, b)
	})
}

// Poll waits until one of fds is ready for its events or the deadline passes,
// and returns how many are ready (their Revents are set). A signal ends the
// wait early with ErrAgain.
func Poll(fds []unix.PollFd, d Deadline) (int, error) {
	n, err := unix.Poll(fds, d.remainingMs())
	if err == unix.EINTR {
		return 0, ErrAgain
	}
	return n, err
}
