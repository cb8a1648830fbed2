package fdio

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gomp-dev/gomp/pickle/frame"
	"golang.org/x/sys/unix"
)

func pipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

func socketpair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// sendFrame writes a whole frame, resuming after every slice.
func sendFrame(fd int, payload []byte) error {
	var hdr [frame.MaxHeader]byte
	head := frame.AppendHeader(hdr[:0], int64(len(payload)))
	var done int64
	for {
		err := WriteFull(fd, head, payload, &done, NewDeadline(20))
		if !errors.Is(err, ErrAgain) {
			return err
		}
	}
}

// recvFrame reads a whole frame, resuming after every slice.
func recvFrame(fd int) ([]byte, error) {
	var h Header
	var size int64
	var err error
	for {
		size, err = ReadHeader(fd, &h, NewDeadline(20))
		if !errors.Is(err, ErrAgain) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	var done int64
	for {
		err = ReadFull(fd, buf, &done, NewDeadline(20))
		if !errors.Is(err, ErrAgain) {
			return buf, err
		}
	}
}

// framePattern is the payload of frame i, n bytes that differ from one
// position to the next and from one frame to the next (with no period
// that divides the pipe's or the socket's buffer sizes), so that a byte
// lost, repeated, reordered or taken from another frame shows.
func framePattern(i, n int) []byte {
	p := make([]byte, n)
	x := uint32(i*2654435761 + 1)
	for j := range p {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		p[j] = byte(x)
	}
	return p
}

// sum names a payload by its SHA-256 for a failure message.
func sum(p []byte) string {
	return fmt.Sprintf("sha256 %x", sha256.Sum256(p))
}

func TestFramesThroughPipeAndSocket(t *testing.T) {
	for _, kind := range []string{"pipe", "socketpair"} {
		var r, w int
		if kind == "pipe" {
			r, w = pipe(t)
		} else {
			r, w = socketpair(t)
		}
		sizes := []int{0, 1, 4, 4095, 4096, 65536, 1 << 20, 5<<20 + 3}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, n := range sizes {
				if err := sendFrame(w, framePattern(i, n)); err != nil {
					t.Errorf("%s send %d: %v", kind, n, err)
					return
				}
			}
		}()
		for i, n := range sizes {
			got, err := recvFrame(r)
			if err != nil {
				t.Fatalf("%s recv %d: %v", kind, n, err)
			}
			if want := framePattern(i, n); !bytes.Equal(got, want) {
				t.Fatalf("%s frame %d: got %d bytes (%s), want %d (%s)", kind, i,
					len(got), sum(got), n, sum(want))
			}
		}
		wg.Wait()
	}
}

func TestSliceEndsWithoutData(t *testing.T) {
	r, _ := pipe(t)
	var h Header
	start := time.Now()
	if _, err := ReadHeader(r, &h, NewDeadline(30)); !errors.Is(err, ErrAgain) {
		t.Fatalf("ReadHeader on an empty pipe = %v, want ErrAgain", err)
	}
	if time.Since(start) < 25*time.Millisecond {
		t.Fatal("the slice ended early")
	}
	if _, err := ReadHeader(r, &h, NewDeadline(0)); !errors.Is(err, ErrAgain) {
		t.Fatalf("a zero slice = %v, want ErrAgain", err)
	}
}

func TestResumeAfterPartialHeader(t *testing.T) {
	r, w := pipe(t)
	hdr := frame.AppendHeader(nil, 1<<33) // the 12-byte form
	var h Header
	for i := range hdr {
		unix.Write(w, hdr[i:i+1])
		size, err := ReadHeader(r, &h, NewDeadline(0))
		if i < len(hdr)-1 {
			if !errors.Is(err, ErrAgain) || h.Got != int64(i+1) {
				t.Fatalf("after %d bytes: err %v, got %d", i+1, err, h.Got)
			}
			continue
		}
		if err != nil || size != 1<<33 {
			t.Fatalf("complete header: size %d, err %v", size, err)
		}
	}
}

func TestEOF(t *testing.T) {
	r, w := pipe(t)
	unix.Write(w, []byte{0, 0, 0, 9, 'a', 'b'})
	unix.Close(w)
	buf := make([]byte, 9)
	var h Header
	size, err := ReadHeader(r, &h, NewDeadline(20))
	if err != nil || size != 9 {
		t.Fatalf("header: %d, %v", size, err)
	}
	var done int64
	if err := ReadFull(r, buf, &done, NewDeadline(20)); !errors.Is(err, ErrEOF) || done != 2 {
		t.Fatalf("ReadFull at end of file = %v after %d bytes, want ErrEOF after 2", err, done)
	}
}

func TestWriteToClosedPeer(t *testing.T) {
	a, b := socketpair(t)
	unix.Close(b)
	var done int64
	err := WriteFull(a, []byte{0, 0, 0, 1}, []byte{1}, &done, NewDeadline(20))
	if !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("write to a closed peer = %v, want EPIPE", err)
	}
}

func TestRegularFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "frames")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	payload := make([]byte, 3<<20)
	rand.New(rand.NewSource(1)).Read(payload)
	if err := sendFrame(int(f.Fd()), payload); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	got, err := recvFrame(int(f.Fd()))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("frame through a file: %d bytes, %v", len(got), err)
	}
}

func TestPollReportsReadyAndHangup(t *testing.T) {
	r, w := pipe(t)
	fds := []unix.PollFd{{Fd: int32(r), Events: unix.POLLIN}}
	if n, err := Poll(fds, NewDeadline(0)); n != 0 || err != nil {
		t.Fatalf("empty pipe: %d, %v", n, err)
	}
	unix.Close(w)
	if n, err := Poll(fds, NewDeadline(20)); n != 1 || err != nil || fds[0].Revents&unix.POLLHUP == 0 {
		t.Fatalf("closed writer: %d, %v, revents %x", n, err, fds[0].Revents)
	}
}

// FuzzReadFrames feeds arbitrary bytes through a pipe to the frame reader:
// it must never panic, never read past the bytes a header announces, and
// return either frames, ErrBadLength or ErrEOF.
func FuzzReadFrames(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2, 'x', 'y'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xfe})
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Skip(err)
		}
		defer unix.Close(p[0])
		if len(in) > 60000 {
			in = in[:60000] // stays within the pipe buffer: no writer goroutine needed
		}
		unix.Write(p[1], in)
		unix.Close(p[1])
		consumed := 0
		for {
			var h Header
			size, err := ReadHeader(p[0], &h, NewDeadline(20))
			consumed += int(h.Got)
			if err != nil {
				if !errors.Is(err, ErrEOF) && !errors.Is(err, frame.ErrBadLength) {
					t.Fatalf("header: %v", err)
				}
				return
			}
			if size > int64(len(in)-consumed) {
				size = int64(len(in) - consumed + 1) // the data ends first
			}
			buf := make([]byte, size)
			var done int64
			err = ReadFull(p[0], buf, &done, NewDeadline(20))
			consumed += int(done)
			if consumed > len(in) {
				t.Fatalf("consumed %d of %d bytes", consumed, len(in))
			}
			if err != nil {
				if !errors.Is(err, ErrEOF) {
					t.Fatalf("payload: %v", err)
				}
				return
			}
		}
	})
}
