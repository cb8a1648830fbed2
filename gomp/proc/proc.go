// Package proc supervises child processes through pidfds: a reaper goroutine
// waits on every watched child with epoll and reaps it (waitid P_PIDFD) the
// moment it exits, so no child stays a zombie, and its exit status is kept
// for Wait. Only the children handed to Watch are ever reaped: the reaper
// never calls wait(-1), so children started by other code are left alone.
package proc

import (
	"errors"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnknown reports a token this reaper never issued (or already forgot).
var ErrUnknown = errors.New("unknown child")

// ErrTimeout reports that the child was still running at the deadline.
var ErrTimeout = errors.New("child still running")

// Lost is the status of a child that exited but was reaped by other code
// (a waitpid(-1) elsewhere in the process): its exit code is gone.
const Lost = -1 << 20

type child struct {
	pid       int
	pidfd     int // the reaper's own duplicate
	done      chan struct{}
	status    int  // valid once done is closed
	forgotten bool // drop the entry once reaped
}

// Reaper watches children; the zero value is not usable, use NewReaper.
type Reaper struct {
	mu       sync.Mutex
	epfd     int
	next     int64
	children map[int64]*child
	byFd     map[int]int64
	started  bool
}

// NewReaper returns a reaper; its goroutine starts with the first Watch.
func NewReaper() *Reaper {
	return &Reaper{epfd: -1, children: map[int64]*child{}, byFd: map[int]int64{}}
}

// PidfdOpen returns a pidfd for pid (close-on-exec).
func PidfdOpen(pid int) (int, error) {
	fd, _, e := unix.Syscall(unix.SYS_PIDFD_OPEN, uintptr(pid), 0, 0)
	if e != 0 {
		return -1, e
	}
	unix.CloseOnExec(int(fd))
	return int(fd), nil
}

// Watch starts supervising the child whose pidfd is given (the caller keeps
// its descriptor; the reaper uses a duplicate). It returns a token for Wait.
func (r *Reaper) Watch(pid, pidfd int) (int64, error) {
	fd, err := unix.FcntlInt(uintptr(pidfd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			unix.Close(fd)
			return 0, err
		}
		r.started = true
		go r.loop()
	}
	r.next++
	tok := r.next
	c := &child{pid: pid, pidfd: fd, done: make(chan struct{})}
	r.children[tok] = c
	r.byFd[fd] = tok
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		delete(r.children, tok)
		delete(r.byFd, fd)
		unix.Close(fd)
		return 0, err
	}
	return tok, nil
}

func (r *Reaper) loop() {
	events := make([]unix.EpollEvent, 16)
	for {
		n, err := unix.EpollWait(r.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			panic("gomp/proc: epoll_wait: " + err.Error())
		}
		for _, ev := range events[:n] {
			r.reap(int(ev.Fd))
		}
	}
}

// siginfo is the prefix of the kernel's siginfo_t for SIGCHLD (x86-64 and
// arm64 layouts agree on these offsets).
type siginfo struct {
	Signo  int32
	Errno  int32
	Code   int32
	_      int32
	Pid    int32
	UID    uint32
	Status int32
	_      [128 - 28]byte
}

const pPidfd = 3 // P_PIDFD, Linux 5.4

// exitStatus reaps the child of pidfd if it has exited, and returns its exit
// code the way Python reports it (the code, or -signal if a signal ended it;
// Lost if other code reaped it). exited is false while the child runs.
func exitStatus(pidfd int) (status int, exited bool) {
	var si siginfo
	for {
		_, _, e := unix.Syscall6(unix.SYS_WAITID, pPidfd, uintptr(pidfd),
			uintptr(unsafe.Pointer(&si)), unix.WEXITED|unix.WNOHANG, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return Lost, true // ECHILD: someone else reaped it
		case si.Pid == 0:
			return 0, false
		case si.Code == 1: // CLD_EXITED
			return int(si.Status), true
		default: // CLD_KILLED, CLD_DUMPED
			return -int(si.Status), true
		}
	}
}

// reap handles a readable pidfd reported by epoll.
func (r *Reaper) reap(fd int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if tok, ok := r.byFd[fd]; ok {
		r.finishLocked(tok, r.children[tok])
	}
}

// finishLocked reaps the child c of tok if it has exited (r.mu held) and
// reports whether it is done. Both the reaper goroutine and Wait come here:
// whoever sees the exit first records it. A child still running is left
// alone: an event the reaper read for a descriptor that Wait has closed since
// may name a newer child's descriptor with the same number.
func (r *Reaper) finishLocked(tok int64, c *child) bool {
	select {
	case <-c.done:
		return true
	default:
	}
	st, exited := exitStatus(c.pidfd)
	if !exited {
		return false
	}
	c.status = st
	unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, c.pidfd, nil)
	unix.Close(c.pidfd)
	delete(r.byFd, c.pidfd)
	close(c.done)
	if c.forgotten {
		delete(r.children, tok)
	}
	return true
}

// Wait returns the exit status of the child of tok, waiting until the
// deadline (a zero time: do not wait). It returns ErrTimeout if the child is
// still running then. A child that has exited is reaped here if the reaper
// goroutine has not got to it yet, so that a caller that saw its pidfd
// become readable (the sentinel) never waits for that goroutine.
func (r *Reaper) Wait(tok int64, deadline time.Time) (int, error) {
	r.mu.Lock()
	c, ok := r.children[tok]
	done := ok && r.finishLocked(tok, c)
	r.mu.Unlock()
	if !ok {
		return 0, ErrUnknown
	}
	if done {
		return c.status, nil
	}
	if deadline.IsZero() {
		return 0, ErrTimeout
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.done:
		return c.status, nil
	case <-t.C:
		return 0, ErrTimeout
	}
}

// Forget drops tok once its status has been read. A child still running is
// kept under watch so that it is reaped when it exits.
func (r *Reaper) Forget(tok int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.children[tok]
	if !ok {
		return
	}
	select {
	case <-c.done:
		delete(r.children, tok)
	default:
		c.forgotten = true
	}
}
