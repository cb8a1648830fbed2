package semlock

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func selfID(t *testing.T) uint32 {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return OwnerID(os.Getpid(), st.starttime)
}

// deadChild returns the id of a child process that has exited: reaped, or
// left a zombie until the test ends.
func deadChild(t *testing.T, reap bool) uint32 {
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Skip("cannot start /bin/sh:", err)
	}
	pid := cmd.Process.Pid
	st, err := readStat(pid) // a zombie at worst: not reaped before Wait
	if err != nil {
		t.Fatal(err)
	}
	id := OwnerID(pid, st.starttime)
	if reap {
		cmd.Wait()
	} else {
		for i := 0; i < 500; i++ {
			if s, err := readStat(pid); err == nil && s.state == 'Z' {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Cleanup(func() { cmd.Wait() })
	}
	return id
}

func TestAlive(t *testing.T) {
	self := selfID(t)
	if !Alive(self) {
		t.Fatal("this process is not alive")
	}
	if !Alive(NoOwner) {
		t.Fatal("NoOwner must count as alive")
	}
	if Alive(self ^ 1<<pidBits) { // same pid, another start time: a recycled pid
		t.Fatal("a pid with another start-time tag must count as dead")
	}
	if Alive(deadChild(t, true)) {
		t.Fatal("a reaped child counts as alive")
	}
	if Alive(deadChild(t, false)) {
		t.Fatal("a zombie counts as alive")
	}
}

func TestOwnerID(t *testing.T) {
	if OwnerID(0, 5) != NoOwner || OwnerID(1<<22, 5) != NoOwner {
		t.Fatal("out-of-range pids must give NoOwner")
	}
	id := OwnerID(1234, 0x3ff)
	if id&pidMask != 1234 || id>>pidBits != 0x1ff || id&(1<<31) != 0 {
		t.Fatalf("OwnerID = %#x", id)
	}
}

func TestParseStat(t *testing.T) {
	line := "42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10\n"
	st, err := parseStat([]byte(line))
	if err != nil || st.state != 'S' || st.starttime != 987654 {
		t.Fatalf("parseStat = %+v, %v", st, err)
	}
	for _, bad := range []string{"", "42 (x", "42 (x) S 1 2",
		"42 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 notanumber"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Fatalf("parseStat(%q) accepted", bad)
		}
	}
}
