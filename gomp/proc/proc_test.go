package proc

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func start(t *testing.T, args ...string) *os.Process {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process
}

func watch(t *testing.T, r *Reaper, p *os.Process) int64 {
	t.Helper()
	fd, err := PidfdOpen(p.Pid)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	defer syscall.Close(fd)
	tok, err := r.Watch(p.Pid, fd)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestExitCodes(t *testing.T) {
	r := NewReaper()
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"/bin/sh", "-c", "exit 0"}, 0},
		{[]string{"/bin/sh", "-c", "exit 7"}, 7},
		{[]string{"/bin/sh", "-c", "kill -TERM $$"}, -int(syscall.SIGTERM)},
	}
	for _, c := range cases {
		tok := watch(t, r, start(t, c.args...))
		st, err := r.Wait(tok, time.Now().Add(10*time.Second))
		if err != nil || st != c.want {
			t.Errorf("%v: status %d, %v; want %d", c.args, st, err, c.want)
		}
		r.Forget(tok)
	}
}

func TestWaitTimeoutAndReapWithoutWaiting(t *testing.T) {
	r := NewReaper()
	p := start(t, "/bin/sleep", "0.3")
	tok := watch(t, r, p)
	if _, err := r.Wait(tok, time.Time{}); err != ErrTimeout {
		t.Fatalf("Wait(no deadline) on a running child = %v", err)
	}
	if _, err := r.Wait(tok, time.Now().Add(50*time.Millisecond)); err != ErrTimeout {
		t.Fatalf("Wait(50ms) = %v", err)
	}
	r.Forget(tok) // still running: stays watched, reaped when it exits
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// Reaped: signal 0 to a reaped pid fails (no zombie left).
		if err := syscall.Kill(p.Pid, 0); err == syscall.ESRCH {
			r.mu.Lock()
			n := len(r.children)
			r.mu.Unlock()
			if n != 0 {
				t.Fatalf("%d records left after a forgotten child was reaped", n)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the child was not reaped")
}

func TestUnknownToken(t *testing.T) {
	if _, err := NewReaper().Wait(42, time.Time{}); err != ErrUnknown {
		t.Fatalf("Wait(unknown) = %v", err)
	}
}

// A caller that saw the child's pidfd become readable gets the status from a
// Wait that does not wait, whether or not the reaper goroutine ran yet; many
// children in a row also exercise the race between the two reapers (and the
// reuse of a closed descriptor's number by the next child).
func TestWaitAfterSentinelNeverWaits(t *testing.T) {
	r := NewReaper()
	for i := 0; i < 200; i++ {
		p := start(t, "/bin/sh", "-c", "exit 3")
		fd, err := PidfdOpen(p.Pid)
		if err != nil {
			t.Skipf("pidfd_open: %v", err)
		}
		tok, err := r.Watch(p.Pid, fd)
		if err != nil {
			t.Fatal(err)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(pfd, -1)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n != 1 {
				t.Fatalf("poll: %d, %v", n, err)
			}
			break
		}
		st, err := r.Wait(tok, time.Time{})
		if err != nil || st != 3 {
			t.Fatalf("child %d: Wait = %d, %v; want 3", i, st, err)
		}
		r.Forget(tok)
		syscall.Close(fd)
	}
}
