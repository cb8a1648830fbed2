package owner

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// deadChild returns the id of a child process that has exited: reaped, or
// left a zombie until the test ends.
func deadChild(t *testing.T, reap bool) uint32 {
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Skip("cannot start /bin/sh:", err)
	}
	pid := cmd.Process.Pid
	st, err := ReadStat(pid) // a zombie at worst: not reaped before Wait
	if err != nil {
		t.Fatal(err)
	}
	id := ID(pid, st.StartTime)
	if reap {
		cmd.Wait()
	} else {
		for i := 0; i < 500; i++ {
			if s, err := ReadStat(pid); err == nil && s.State == 'Z' {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Cleanup(func() { cmd.Wait() })
	}
	return id
}

func TestAlive(t *testing.T) {
	self := Self()
	if self == NoOwner || int(self&PidMask) != os.Getpid() {
		t.Fatalf("Self() = %#x", self)
	}
	if !Alive(self) || !PidAlive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
	if !Alive(NoOwner) {
		t.Fatal("NoOwner must count as alive")
	}
	if Alive(self ^ 1<<PidBits) { // same pid, another start time: a recycled pid
		t.Fatal("a pid with another start-time tag must count as dead")
	}
	if Alive(deadChild(t, true)) {
		t.Fatal("a reaped child counts as alive")
	}
	zombie := deadChild(t, false)
	if Alive(zombie) || PidAlive(int(zombie&PidMask)) {
		t.Fatal("a zombie counts as alive")
	}
}

func TestID(t *testing.T) {
	if ID(0, 5) != NoOwner || ID(1<<22, 5) != NoOwner {
		t.Fatal("out-of-range pids must give NoOwner")
	}
	id := ID(1234, 0x3ff)
	if id&PidMask != 1234 || id>>PidBits != 0x1ff || id&(1<<31) != 0 {
		t.Fatalf("ID = %#x", id)
	}
	if NoOwner != 0x7fc00000 {
		t.Fatalf("NoOwner = %#x: the C side (sync.c) and the test vector use 0x7fc00000", NoOwner)
	}
}

// TestStatVectors runs the test vector shared with the C parser.
func TestStatVectors(t *testing.T) {
	f, err := os.Open("testdata/stat_vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		cols := strings.SplitN(line, "\t", 4)
		if len(cols) != 4 {
			t.Fatalf("bad vector line %q", line)
		}
		pid, err1 := strconv.Atoi(cols[0])
		want, err2 := strconv.ParseUint(cols[1], 0, 32)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad vector line %q", line)
		}
		for _, stat := range []string{cols[3], cols[3] + "\n"} {
			if got := FromStat(pid, []byte(stat)); got != uint32(want) {
				t.Errorf("%s: FromStat(%d, %q) = %#x, want %#x", cols[2], pid, stat, got, want)
			}
		}
		n++
	}
	if n < 10 {
		t.Fatalf("only %d vectors", n)
	}
}
